"""Regression tests for issue 10's spec and training defects, one section per defect."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ebmgraph

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "ebmgraph" / "train"


# ----------------------------------------------------------------------------- 8: data order in train/order.py
def test_data_order_helpers_live_in_order_module():
    from ebmgraph.train import order, samplers

    for name in ("step_generator", "epoch_order", "shard"):
        assert callable(getattr(order, name)), name
        assert not hasattr(samplers, name), f"{name} is still in samplers.py"
    # samplers keeps the negative samplers
    for name in ("uniform", "corrupt", "langevin", "most_offending", "GeneratorNet"):
        assert hasattr(samplers, name), name
    assert torch.equal(order.epoch_order(10, 3, 1), order.epoch_order(10, 3, 1))
    tree = ast.parse((TRAIN / "trainer.py").read_text())
    froms = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("order", "epoch_order") in froms and not any(m == "samplers" for m, _ in froms)


def test_train_package_imports_no_private_names_and_order_has_no_cycle():
    for path in TRAIN.glob("*.py"):
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.ImportFrom) and n.module != "__future__":
                bad = [a.name for a in n.names if a.name.startswith("_")]
                assert not bad, f"{path.name} imports private {bad} from {n.module}"
    # order.py stands alone (torch only), so neither samplers nor the trainer can form a cycle through it
    tree = ast.parse((TRAIN / "order.py").read_text())
    mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert mods <= {"torch", "__future__"}, mods
    out = subprocess.run([sys.executable, "-c", "import ebmgraph.train.order, ebmgraph.train.samplers"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
