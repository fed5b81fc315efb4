"""The benchmark commands run end to end (their numbers are not asserted: speed is never a test)."""
import math
import subprocess
import sys

import pytest
import torch

from conftest import ROOT


def test_bench_compiler_runs_and_paths_agree(capsys):
    from ebmgraph.cli import main

    assert main(["bench", "compiler", "--batch", "8", "--T", "4", "--reps", "1"]) == 0
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and "x |" in ln]
    assert len(rows) == 3
    assert all(float(r.split("|")[4]) < 1e-4 for r in rows)  # every path computes the same energy


def test_bench_rollout_quick_smoke_in_the_interpreter():
    proc = subprocess.run([sys.executable, "-m", "ebmgraph.cli", "bench", "rollout", "--quick", "--device", "cpu",
                           "--no-compile"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    fused = [ln for ln in proc.stdout.splitlines() if "fused/traj" in ln]
    assert fused and "failed" not in fused[0]
    relerr = float(fused[0].split()[5])
    assert relerr < 1e-5


def _benchmarks(monkeypatch):
    """The repository's benchmarks/ folder (beside ebmgraph/, not installed with it) made importable."""
    monkeypatch.syspath_prepend(str(ROOT))


def test_bench_scaling_runs_and_fits_an_exponent(capsys, monkeypatch):
    """The scaling benchmark's figures: one row per horizon asked for, in order, positive times, and each
    exponent the slope of log time against log T between neighbouring rows (recomputed here). Whether time
    grows with T is a measurement, not asserted (speed is never a test)."""
    from ebmgraph.cli import main

    _benchmarks(monkeypatch)
    from benchmarks.suite import bench_scaling

    rows = bench_scaling((16, 64, 256), reps=1)
    assert [r["T"] for r in rows] == [16, 64, 256]
    assert all(r[k] > 0 for r in rows for k in ("check", "compile"))
    assert "check_exponent" not in rows[0] and "compile_exponent" not in rows[0]
    for prev, r in zip(rows, rows[1:]):
        for k in ("check", "compile"):
            want = (math.log(r[k]) - math.log(prev[k])) / (math.log(r["T"]) - math.log(prev["T"]))
            assert r[f"{k}_exponent"] == pytest.approx(want, rel=1e-9, abs=1e-12), (k, r)
    assert main(["bench", "scaling", "--T", "16", "64", "--reps", "1"]) == 0
    table = [ln.split("|")[1:-1] for ln in capsys.readouterr().out.splitlines() if ln.startswith("| 16 ")
             or ln.startswith("| 64 ")]
    assert [c[0].strip() for c in table] == ["16", "64"]
    assert all(float(c[2]) > 0 for c in table)  # compile seconds, printed to the millisecond
    assert table[0][3].strip() == "" and math.isfinite(float(table[1][4]))  # an exponent from the second row on


def test_bench_planners_runs_small(capsys):
    """The planner table prints every column it can (mctx and pytorch-mppi only where installed)."""
    from ebmgraph.cli import main

    assert main(["bench", "planners", "--batches", "1", "3", "--sims", "4", "--horizon-mcts", "3", "--actions", "2",
                 "--samples", "16", "--horizon", "4", "--iters", "1", "--reps", "1", "--runs", "1",
                 "--no-compile"]) == 0
    out = capsys.readouterr().out
    default = [ln for ln in out.splitlines() if "ebmgraph MCTS default" in ln]
    eager = [ln for ln in out.splitlines() if "ebmgraph MCTS compile=False" in ln]
    assert len(default) == 2 and len(eager) == 2
    # the default and the eager search choose the same actions (agree = 1.00, against the eager search)
    assert all(float(ln.split()[-2]) == 1.0 for ln in default + eager)
    for name in ("ebmgraph CEM", "plain PyTorch CEM", "ebmgraph MPPI", "plain PyTorch MPPI"):
        assert any(ln.strip().startswith(name + " ") for ln in out.splitlines()), name


@pytest.mark.parametrize("leaf", ["rollout", "critic"])
def test_mctx_given_ebmgraphs_rule_visits_the_root_as_ebmgraph_does(leaf, monkeypatch):
    """The benchmark's claim that mctx runs ebmgraph's algorithm: with ebmgraph's UCT rule and leaf
    values (its replayed random completions, or the critic), mctx's root visit counts equal ebmgraph's
    on every problem (skipped without the bench extra)."""
    pytest.importorskip("mctx")
    import jax
    import jax.numpy as jnp
    import numpy as np

    _benchmarks(monkeypatch)
    from benchmarks.planners import mcts_problem, mctx_uct_search, stay_critic
    from ebmgraph.infer import MCTS

    jax.config.update("jax_enable_x64", True)
    ebm = mcts_problem(L=4, K=3, seed=1).double()
    x = torch.randn(12, 4, generator=torch.Generator().manual_seed(8)).double()
    crit = {"critic": stay_critic(ebm)} if leaf == "critic" else {}
    ours = MCTS(ebm, {"x": x}, ["a"], seed=3, **crit).search(30).info["root_visits"].numpy()
    theirs = np.asarray(mctx_uct_search(ebm, 30, leaf=leaf, seed=3)(jnp.asarray(x.numpy()), jax.random.PRNGKey(5)))
    np.testing.assert_array_equal(theirs, ours)
    assert len({tuple(r) for r in ours.tolist()}) > 1  # the problems differ, so the equality says something
