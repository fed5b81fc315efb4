"""Regression tests for issue 10's spec and training defects, one section per defect."""
from __future__ import annotations

import ast
import os
import stat
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


# ----------------------------------------------------------------------------- 3: long sums, short messages
_SUM_SPEC = "name: g\nvariables:\n  x: {observed: [3]}\nmodules:\n  A: mlp(3, 4, 1)\nenergy:\n  E: %s\n"


def _signed_sum(n: int) -> tuple[str, float]:
    """``A(x) + 2*A(x) - 3*A(x) ...`` with n terms, and its total coefficient of A(x)."""
    text, coef = "A(x)", 1.0
    for i in range(1, n):
        c, op = i % 5 + 1, "-" if i % 4 == 0 else "+"
        text += f" {op} {c}*A(x)"
        coef += c if op == "+" else -c
    return text, coef


@pytest.mark.parametrize("n", [61, 62, 200, 1000])
def test_long_flat_sum_parses_checks_compiles_and_round_trips(n):
    text, coef = _signed_sum(n)
    g = ebmgraph.loads(_SUM_SPEC % text, "long.yaml")
    ebm = ebmgraph.compile(g, seed=0)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        e, a = ebm.energy(x=x).total, ebm.mods["A"](x).squeeze(-1)
    torch.testing.assert_close(e, coef * a, rtol=1e-4, atol=1e-4)
    again = ebmgraph.loads(ebmgraph.dumps(g))
    assert again == g and ebmgraph.dumps(again) == ebmgraph.dumps(g)


def test_short_sums_keep_their_left_to_right_tree():
    from ebmgraph.ir import BinOp, expr_str

    g = ebmgraph.loads(_SUM_SPEC % "A(x) + A(x) - A(x) + A(x)")
    e = g.energies[0].value
    assert isinstance(e, BinOp) and e.op == "+" and e.left.op == "-" and e.left.left.op == "+"
    assert expr_str(e) == "A(x) + A(x) - A(x) + A(x)"


def _nested_groups(levels: int) -> str:
    """``x + (x + (...) + x ...) + x ...``: each group a 16-term chain whose second term nests deeper."""
    text = "x"
    for _ in range(levels):
        text = "x + (" + text + ") + " + " + ".join(["x"] * 14)
    return text


def test_nested_groups_within_the_depth_limit_parse():
    g = ebmgraph.loads(_SUM_SPEC % f"sq_dist({_nested_groups(3)})")
    assert ebmgraph.loads(ebmgraph.dumps(g)) == g


@pytest.mark.parametrize("text,needle", [
    (" + ".join(["A(x)"] * 500) + " + x.y", "attribute"),
    (" + ".join(["A(x)"] * 500) + " + A(x)[1]", "indexed"),
    (" + ".join(["A(x)"] * 500) + " + A(x, k=1)", "keyword"),
    (" + ".join(["A(x)"] * 500) + " % A(x)", "Mod"),
    (" + ".join(["A(x)"] * 500) + " + _x", "_x"),
    ("F(" * 70 + "x" + ")" * 70, "nested too deeply"),
    (_nested_groups(5), "nested too deeply"),  # 16-term groups inside each other: the depth adds up
    (" + ".join(["A(x)"] * 3000), "longer than"),
    ("+".join(["x"] * 4990), ""),  # within the length limit, past Python's parser: still a SpecError
    (" + ".join(["A(x)"] * 300) + " +", "cannot parse"),
])
def test_errors_quote_at_most_about_80_characters_of_an_expression(text, needle):
    with pytest.raises(ebmgraph.SpecError) as info:
        ebmgraph.check(ebmgraph.loads(_SUM_SPEC % text, "f.yaml"))
    msg = str(info.value)
    assert msg.startswith("f.yaml:7:") and needle in msg, msg[:300]
    assert len(msg) < 220, msg[:300]
    assert "…" in msg or len(text) <= 80


# ----------------------------------------------------------------------------- 4: a spec that is not UTF-8
@pytest.mark.parametrize("raw,line,col,byte", [
    (b"name: g\nvariables:\n  x: {observed: [3]}\n  caf\xc3\xa9\xff: {observed: [1]}\n", 4, 7, 0xFF),
    (b"name: caf\xe9\n", 1, 10, 0xE9),  # Latin-1
    (b"name: g\r\ndescription: ok\r\n\r\n# \xe2\x82\n", 4, 3, 0xE2),  # a cut multi-byte sequence
])
def test_non_utf8_spec_error_gives_line_and_column(tmp_path, capsys, raw, line, col, byte):
    from ebmgraph.cli import main

    p = tmp_path / "bad.yaml"
    p.write_bytes(raw)
    with pytest.raises(ebmgraph.SpecError) as info:
        ebmgraph.load(p)
    err = info.value
    assert (err.loc.line, err.loc.col) == (line, col)
    assert str(err).startswith(f"{p}:{line}:{col}: ") and f"0x{byte:02x}" in str(err), str(err)
    assert main(["check", str(p)]) == 1
    assert capsys.readouterr().err.startswith(f"{p}:{line}:{col}: error: ")


# ----------------------------------------------------------------------------- 5: data take the declared shape
def _cli(argv: list[str]) -> int:
    from ebmgraph.cli import main

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(argv)
    finally:
        torch.set_num_threads(n)


def test_conv2d_spec_with_image_shaped_views_trains_on_digits_views(tmp_path):
    spec = ROOT / "examples/specs/train_jepa_conv_digits.yaml"
    assert ebmgraph.compile(spec).var_shape("x") == (1, 8, 8)
    out = tmp_path / "run"
    assert _cli(["train", str(spec), "--data", "digits_views", "--loss", "vicreg", "--epochs", "1",
                 "--batch", "256", "--out", str(out), "--quiet"]) == 0
    assert (out / "model.safetensors").exists()
    steps = (out / "metrics.csv").read_text().strip().splitlines()[1:]
    assert len(steps) == 1797 // 256


def test_data_that_do_not_fit_the_declared_shape_are_a_clear_error(tmp_path, capsys):
    from ebmgraph.train import Regularized, Trainer, get_dataset

    text = (ROOT / "examples/specs/train_jepa_conv_digits.yaml").read_text()
    bad = tmp_path / "conv9.yaml"
    bad.write_text(text.replace("[1, 8, 8]", "[1, 8, 9]").replace("conv2d(1, 8, 8,", "conv2d(1, 8, 9,"))
    assert _cli(["train", str(bad), "--data", "digits_views", "--loss", "vicreg", "--epochs", "1",
                 "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "[64] (64 values)" in err and "[1, 8, 9] (72 values)" in err and "Traceback" not in err, err
    # the Python API reshapes as the command line does, and keeps the stored tensors flat
    data = get_dataset("digits_views")
    tr = Trainer(Regularized(ebmgraph.compile(ROOT / "examples/specs/train_jepa_conv_digits.yaml")), data,
                 epochs=1, batch=64, progress=False)
    assert tr.data.batch(torch.arange(3))["x"].shape == (3, 1, 8, 8) and data.tensors["img"].shape == (1797, 64)


# ----------------------------------------------------------------------------- 2: a metrics row cut by a kill
def test_resume_drops_a_metrics_row_cut_short_by_a_kill(tmp_path):
    import csv

    from ebmgraph.train import Contrastive, Trainer, get_dataset

    spec, data = ROOT / "examples/specs/train_moons.yaml", get_dataset("moons", n=256)

    def trainer(epochs):
        return Trainer(Contrastive(ebmgraph.compile(spec, seed=0), "hinge"), data, epochs=epochs, batch=64,
                       out=tmp_path, progress=False)

    trainer(1).fit()
    with open(tmp_path / "metrics.csv", "a") as f:
        f.write("1,1")  # a kill while step 5's row was being written
    hist = trainer(2).fit(resume=True)
    assert hist["start_step"] == 4 and len(hist["loss"]) == 4
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["global_step"]) for r in rows] == list(range(1, 9))
    assert all(None not in r.values() for r in rows)
