"""ebmgraph/train/hjepa.py (§4.6, Figure 15): the windows it cuts (never across an episode, held-out
episodes last, seeded sensor noise), the comparison's normalized errors against closed forms and against
the spec's own generated code; and examples/hjepa_maze.py, which calls them, runs end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from conftest import ROOT

import ebmgraph
from ebmgraph.train.episodes import EpisodeError
from ebmgraph.train.hjepa import compare_predictions, hjepa_windows

SPEC = ROOT / "examples/specs/pointmaze_hjepa.yaml"
LENGTHS = (60, 25, 19, 47, 60)  # 19: too short for a window of 20


def _tagged(tmp_path, lengths=LENGTHS, name="tag.npz"):
    """collect's .npz rows whose obs name their place: obs = (episode, step), action = (step, -episode)."""
    ep = np.concatenate([np.full(n, e) for e, n in enumerate(lengths)])
    t = np.concatenate([np.arange(n) for n in lengths])
    obs = np.stack([ep, t], 1).astype(np.float32)
    nxt = np.stack([ep, t + 1], 1).astype(np.float32)
    act = np.stack([t, -ep], 1).astype(np.float32)
    np.savez(tmp_path / name, obs=obs, next_obs=nxt, action=act, episode=ep)
    return tmp_path / name, obs


def test_windows_keep_episodes_apart_and_the_last_episodes_are_held_out(tmp_path):
    path, _ = _tagged(tmp_path)
    train, test = hjepa_windows(path, stride=5, held_out=0.2)
    # by hand: episode of T steps gives (T - 20) // 5 + 1 windows when T >= 20; round(5 * 0.8) = 4 train episodes
    assert len(train["x"]) == 9 + 2 + 0 + 6 and len(test["x"]) == 9
    for part, eps in ((train, (0, 1, 2, 3)), (test, (4,))):
        x, a = part["x"], part["a"]
        assert x.shape[1:] == (20, 2) and a.shape[1:] == (20, 2) and x.dtype == a.dtype == torch.float32
        assert bool((x[:, :, 0] == x[:, :1, 0]).all())  # one episode per window
        assert set(x[:, 0, 0].int().tolist()) == {e for e in eps if LENGTHS[e] >= 20}
        assert bool((x[:, :, 1] - x[:, :1, 1] == torch.arange(20.0)).all())  # consecutive steps
        assert bool((x[:, 0, 1] % 5 == 0).all())  # stride 5 from each episode's start
        torch.testing.assert_close(a, torch.stack([x[:, :, 1], -x[:, :, 0]], -1))  # a[t] is taken from x[t]
    # every start of every long-enough episode, exactly once
    starts = sorted((int(e), int(t)) for e, t in torch.cat([train["x"], test["x"]])[:, 0].tolist())
    assert starts == [(e, t) for e, n in enumerate(LENGTHS) for t in range(0, n - 19, 5)]


def test_the_noise_is_one_seeded_draw_per_step_of_the_data(tmp_path):
    path, obs = _tagged(tmp_path)
    clean, _ = hjepa_windows(path)
    n1, t1 = hjepa_windows(path, noise=0.5, seed=3)
    n2, _ = hjepa_windows(path, noise=0.5, seed=3)
    n3, _ = hjepa_windows(path, noise=0.5, seed=4)
    torch.testing.assert_close(n1["x"], n2["x"], rtol=0, atol=0)
    assert not torch.equal(n1["x"], n3["x"])
    torch.testing.assert_close(n1["a"], clean["a"], rtol=0, atol=0)  # actions carry no noise
    # the reference: the rows of obs + 0.5 · N(0, 1) drawn with numpy's seed [3, 31], cut where the clean
    # windows say each window starts (the clean obs name episode and step; step rows are cumulative)
    noisy = obs + 0.5 * np.random.default_rng([3, 31]).standard_normal(obs.shape).astype(np.float32)
    first = np.concatenate([[0], np.cumsum(LENGTHS)[:-1]])
    for part, ref in ((n1, clean), (t1, hjepa_windows(path)[1])):
        rows = first[ref["x"][:, 0, 0].long().numpy()] + ref["x"][:, 0, 1].long().numpy()
        np.testing.assert_array_equal(part["x"].numpy(), noisy[rows[:, None] + np.arange(20)])


def test_bad_stores_and_settings_are_refused_in_one_line_naming_the_file(tmp_path):
    path, _ = _tagged(tmp_path)
    with pytest.raises(ValueError, match="held_out must be in"):
        hjepa_windows(path, held_out=0.0)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        hjepa_windows(path, noise=-1.0)
    with pytest.raises(ValueError, match="even integer"):
        hjepa_windows(path, length=7)
    two, _ = _tagged(tmp_path, (30, 30), "two.npz")
    with pytest.raises(EpisodeError, match=r"two\.npz: 2 episodes leave 2 to train on and 0 held out"):
        hjepa_windows(two, held_out=0.2)
    np.savez(tmp_path / "noact.npz", obs=np.zeros((40, 2)), next_obs=np.zeros((40, 2)), episode=np.zeros(40))
    with pytest.raises(EpisodeError, match=r"noact\.npz: H-JEPA windows need frames 'obs' and steps 'action'"):
        hjepa_windows(tmp_path / "noact.npz")
    with pytest.raises(EpisodeError, match="missing.npz: no such file"):
        hjepa_windows(tmp_path / "missing.npz")


def _motion(tmp_path):
    """Test windows of data that move exactly as ``x[t+1] = x[t] + 0.2·a[t]`` (float64)."""
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (5 * 60, 2))
    ep = np.repeat(np.arange(5), 60)
    walk = [np.concatenate([np.zeros((1, 2)), np.cumsum(0.2 * a[ep == e], 0)]) for e in range(5)]
    obs = np.concatenate([w[:-1] for w in walk])
    np.savez(tmp_path / "walk.npz", obs=obs, next_obs=np.concatenate([w[1:] for w in walk]), action=a, episode=ep)
    _, test = hjepa_windows(tmp_path / "walk.npz")
    return test["x"].double(), test["a"].double()


def _nerr(pred, truth):
    """By hand, in numpy: mean squared distance over the total variance of ``truth [N, S]``."""
    return ((pred - truth) ** 2).sum(1).mean() / ((truth - truth.mean(0)) ** 2).sum(1).mean()


def test_the_comparison_against_closed_forms(tmp_path):
    """Identity encoders and Pred1 the exact motion: chaining Pred1 with the window's own actions
    a[9..18] reproduces the second half (error 0), one level-1 step is exact (0), a level-2 predictor
    answering the mean of s2_1 scores 1 (the normalisation), one answering ``s2_0`` (the identity: "no
    change") scores what the first and second halves' means give by hand, and holding abar = mean a[5..14]
    for ten steps misses by x[9] + 0.2·k·abar, k = 1..10, written out here."""
    x, act = _motion(tmp_path)
    s2_1 = x[:, 10:].mean(1)
    ident = lambda v: v  # noqa: E731
    mods = {"Enc1": ident, "Enc2": ident, "Pred1": lambda h, u: h + 0.2 * u,
            "Pred2": lambda s, abar: s2_1.mean(0).expand_as(s)}
    out = compare_predictions(types.SimpleNamespace(mods=mods), {"x": x, "a": act})
    assert out["windows"] == len(x) == 9
    assert out["chained_level1_nerr"] == pytest.approx(0.0, abs=1e-12)
    assert out["level1_one_step_nerr"] == pytest.approx(0.0, abs=1e-12)
    assert out["level2_nerr"] == pytest.approx(1.0, rel=1e-12)
    xn, an = x.numpy(), act.numpy()
    truth = xn[:, 10:].mean(1)
    held = np.stack([xn[:, 9] + 0.2 * k * an[:, 5:15].mean(1) for k in range(1, 11)], 1).mean(1)
    want = _nerr(held, truth)
    assert out["chained_level1_abstract_action_nerr"] == pytest.approx(want, rel=1e-9)
    assert want > 0.01  # holding the abstract action does lose something here
    assert out["s2_std"] == pytest.approx(truth.std(0, ddof=1).mean(), rel=1e-12)
    # Pred2 the identity ("nothing changes in ten steps"): the first half's mean against the second's
    mods["Pred2"] = lambda s, abar: s
    out = compare_predictions(types.SimpleNamespace(mods=mods), {"x": x, "a": act})
    assert out["level2_nerr"] == pytest.approx(_nerr(xn[:, :10].mean(1), truth), rel=1e-12)
    assert out["level2_nerr"] > 0.01


def test_the_comparison_of_a_known_linear_level1(tmp_path):
    """Enc1 a fixed linear map W, Pred1 the identity (``s1[t+1] ≈ s1[t]``): every prediction of the second
    half is then ``x[9] W`` and one step predicts ``x[t] W`` for ``x[t+1] W``, all written out in numpy."""
    x, act = _motion(tmp_path)
    W = torch.tensor([[1.0, 2.0, 0.0], [-1.0, 0.5, 3.0]], dtype=torch.float64)  # [2, 3]
    mods = {"Enc1": lambda v: v @ W, "Enc2": lambda v: v, "Pred1": lambda h, u: h,
            "Pred2": lambda s, abar: s + abar @ W}
    out = compare_predictions(types.SimpleNamespace(mods=mods), {"x": x, "a": act})
    xn, an, Wn = x.numpy(), act.numpy(), W.numpy()
    truth = xn[:, 10:].mean(1) @ Wn
    assert out["chained_level1_nerr"] == pytest.approx(_nerr(xn[:, 9] @ Wn, truth), rel=1e-9)
    assert out["chained_level1_abstract_action_nerr"] == pytest.approx(out["chained_level1_nerr"], rel=1e-12)
    assert out["level2_nerr"] == pytest.approx(_nerr((xn[:, :10].mean(1) + an[:, 5:15].mean(1)) @ Wn, truth),
                                               rel=1e-9)
    s1 = xn @ Wn  # [N, 20, 3]
    flat = s1.reshape(-1, 3)
    one = ((s1[:, :-1] - s1[:, 1:]) ** 2).sum(-1).mean() / ((flat - flat.mean(0)) ** 2).sum(-1).mean()
    assert out["level1_one_step_nerr"] == pytest.approx(one, rel=1e-9)
    assert out["s1_std"] == pytest.approx(flat.std(0, ddof=1).mean(), rel=1e-12)


def test_the_comparison_reads_the_spec_as_its_generated_code_does(tmp_path):
    """On examples/specs/pointmaze_hjepa.yaml's modules (seed 0, untrained), the level-2 error's numerator
    is the mean of the spec's energy term D2 and the one-step error's the mean of D1 over its 19 steps, as
    the compiled forward computes them: the halves, the pooling and abar = mean a[5..14] agree with the spec."""
    path, _ = _tagged(tmp_path)
    _, test = hjepa_windows(path, noise=0.3)
    ebm = ebmgraph.compile(SPEC, seed=0)
    out = compare_predictions(ebm, test)
    with torch.no_grad():
        v = ebm.evaluate({"x": test["x"], "a": test["a"]}, outputs=["s1", "s2_1", "energy:D1", "energy:D2"])
    s2_1, s1 = v["s2_1"], v["s1"].reshape(-1, 16)
    var2 = ((s2_1 - s2_1.mean(0)) ** 2).sum(1).mean()
    var1 = ((s1 - s1.mean(0)) ** 2).sum(1).mean()
    assert out["windows"] == len(test["x"]) == 9
    assert out["level2_nerr"] == pytest.approx(float(v["energy:D2"].mean() / var2), rel=1e-5)
    assert out["level1_one_step_nerr"] == pytest.approx(float(v["energy:D1"].mean() / 19 / var1), rel=1e-5)
    with pytest.raises(ValueError, match=r"needs modules .* lacks \['Pred2'\]"):
        compare_predictions(types.SimpleNamespace(mods={k: ebm.mods[k] for k in ("Enc1", "Pred1", "Enc2")}), test)


def test_the_example_script_runs(tmp_path):
    """One process (about 9 s of CPU here, most of it importing torch): the script trains one epoch and
    writes its report."""
    path, _ = _tagged(tmp_path)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    r = subprocess.run([sys.executable, "examples/hjepa_maze.py", "--data", str(path), "--epochs", "1",
                        "--batch", "8", "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out / "hjepa_compare.json").read_text())
    assert (res["train_windows"], res["windows"], res["epochs"]) == (17, 9, 1)
    assert "held-out windows: level-2 predictor" in r.stdout
