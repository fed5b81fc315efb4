import os
import tempfile

os.environ.setdefault("TRITON_INTERPRET", "1")
# compiled planner packages built during the suite go to a temporary folder, never the user's ~/.cache
os.environ.setdefault("EBMGRAPH_CACHE_DIR", tempfile.mkdtemp(prefix="ebmgraph-test-cache-"))

import sys
from pathlib import Path

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers on two cores: one intra-op thread each, or tiny ops spin against each other
    torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
