"""Regression tests for issue 10's spec and training defects, one section per defect."""
from __future__ import annotations

import ast
import os
import stat
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


# ----------------------------------------------------------------------------- 6: written files honour the umask
@pytest.fixture
def umask():
    """Set the process umask for one test, restoring the old one after."""
    old = os.umask(0o022)
    try:
        yield lambda m: os.umask(m)
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_atomic_writes_honour_the_umask(tmp_path, umask):
    from ebmgraph.util import atomic_write_bytes, atomic_write_text

    for mask, want in ((0o022, 0o644), (0o027, 0o640), (0o002, 0o664), (0o077, 0o600)):
        umask(mask)
        p = tmp_path / f"new-{mask:03o}.bin"
        atomic_write_bytes(p, b"x")
        assert _mode(p) == want, (oct(mask), oct(_mode(p)))
    umask(0o022)
    # an existing file keeps its mode (here: private, and group-writable)
    for mode in (0o600, 0o664):
        p = tmp_path / f"old-{mode:03o}.txt"
        p.write_text("old")
        p.chmod(mode)
        atomic_write_text(p, "new")
        assert p.read_text() == "new" and _mode(p) == mode
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_model_checkpoint_and_metrics_files_are_0644_under_umask_022(tmp_path, umask):
    from ebmgraph.train import Contrastive, Trainer, get_dataset

    umask(0o022)
    ebm = ebmgraph.compile(ROOT / "examples/specs/train_moons.yaml", seed=0)
    data = get_dataset("moons", n=128)
    Trainer(Contrastive(ebm, "hinge"), data, epochs=1, batch=64, out=tmp_path, progress=False).fit()
    # resuming rewrites metrics.csv (rows past the checkpoint dropped) through the atomic writer
    Trainer(Contrastive(ebmgraph.compile(ROOT / "examples/specs/train_moons.yaml", seed=0), "hinge"), data,
            epochs=2, batch=64, out=tmp_path, progress=False).fit(resume=True)
    files = [tmp_path / "model.safetensors", tmp_path / "metrics.csv", tmp_path / "ckpt" / "state.json",
             *(tmp_path / "ckpt").glob("*.safetensors")]
    assert len(files) == 5
    for p in files:
        assert _mode(p) == 0o644, (p.name, oct(_mode(p)))
    ebm.save(tmp_path / "w.safetensors")
    ebmgraph.save(ebm.graph, tmp_path / "spec.yaml")
    assert _mode(tmp_path / "w.safetensors") == _mode(tmp_path / "spec.yaml") == 0o644
