"""examples/hjepa_maze.py (Figure 15): the windows it cuts (never across an episode, held-out episodes
last), the seeded sensor-noise variant, and the comparison it reports, on a small synthetic walk."""
from __future__ import annotations

import importlib.util
import types

import numpy as np
import pytest
import torch
from conftest import ROOT

import ebmgraph


def _example():
    spec = importlib.util.spec_from_file_location("hjepa_maze", ROOT / "examples/hjepa_maze.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _data(tmp_path, episodes=5, steps=60):
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (episodes * steps, 2)).astype(np.float32)
    ep = np.repeat(np.arange(episodes), steps)
    obs = np.concatenate([np.cumsum(0.2 * a[ep == e], 0) for e in range(episodes)]).astype(np.float32)
    path = tmp_path / "walk.npz"
    np.savez(path, obs=obs, action=a, episode=ep)
    return path, obs


def test_windows_keep_episodes_apart_and_the_noise_is_seeded(tmp_path):
    ex = _example()
    path, obs = _data(tmp_path)
    train, test = ex.windows(str(path))
    assert train["x"].shape[1:] == (20, 2) and len(train["x"]) == 4 * 9 and len(test["x"]) == 9  # 4 + 1 episodes
    np.testing.assert_array_equal(train["x"][0].numpy(), obs[:20])  # clean without noise
    np.testing.assert_array_equal(test["x"][0].numpy(), obs[240:260])  # held out: the last episode
    n1, _ = ex.windows(str(path), noise=0.5, seed=3)
    n2, _ = ex.windows(str(path), noise=0.5, seed=3)
    n3, _ = ex.windows(str(path), noise=0.5, seed=4)
    torch.testing.assert_close(n1["x"], n2["x"])
    assert not torch.equal(n1["x"], n3["x"])
    d = (n1["x"] - train["x"]).numpy()
    assert 0.4 < d.std() < 0.6
    np.testing.assert_allclose(d[0, 5:], d[1, :15], atol=1e-6)  # one draw per step: overlapping windows agree


def test_the_comparison_reports_normalized_errors_of_all_three_predictions(tmp_path):
    """``compare``'s errors on a model whose answers are known in closed form: the data move exactly as
    ``x[t+1] = x[t] + 0.2·a[t]``, both encoders are the identity and Pred1 is that motion, so chaining
    Pred1 with the window's own actions a[9..18] reproduces the second half exactly (error 0), one
    level-1 step is exact (0), a level-2 predictor that answers the held-out mean of s2_1 scores
    exactly 1 (the normalisation), and holding abar for ten steps misses by what is written out here."""
    ex = _example()
    rng = np.random.default_rng(0)
    episodes, steps = 5, 60
    a = rng.uniform(-1, 1, (episodes * steps, 2)).astype(np.float64)
    ep = np.repeat(np.arange(episodes), steps)
    obs = np.concatenate([np.concatenate([np.zeros((1, 2)), np.cumsum(0.2 * a[ep == e], 0)[:-1]])
                          for e in range(episodes)])  # x[t+1] = x[t] + 0.2 a[t] within each episode
    path = tmp_path / "walk.npz"
    np.savez(path, obs=obs.astype(np.float32), action=a.astype(np.float32), episode=ep)
    _, test = ex.windows(str(path))
    x, act = test["x"].double(), test["a"].double()
    s2_1 = x[:, 10:].mean(1)
    ident = lambda v: v  # noqa: E731
    mods = {"Enc1": ident, "Enc2": ident, "Pred1": lambda h, u: h + 0.2 * u,
            "Pred2": lambda s, abar: s2_1.mean(0).expand_as(s)}
    out = ex.compare(types.SimpleNamespace(mods=mods), {"x": x, "a": act})
    assert out["windows"] == len(x) == 9
    assert out["chained_level1_nerr"] == pytest.approx(0.0, abs=1e-9)  # float32 data: exact to rounding
    assert out["level1_one_step_nerr"] == pytest.approx(0.0, abs=1e-9)
    assert out["level2_nerr"] == pytest.approx(1.0, rel=1e-12)
    # abar = mean(a[5..14]) held from x[9]: the k-th step predicts x[9] + 0.2·k·abar, k = 1..10
    xn, an = x.numpy(), act.numpy()
    held = np.stack([xn[:, 9] + 0.2 * k * an[:, 5:15].mean(1) for k in range(1, 11)], 1).mean(1)
    truth = xn[:, 10:].mean(1)
    want = ((held - truth) ** 2).sum(1).mean() / ((truth - truth.mean(0)) ** 2).sum(1).mean()
    assert out["chained_level1_abstract_action_nerr"] == pytest.approx(want, rel=1e-9)
    assert want > 0.01  # holding the abstract action does lose something here
    # the trained spec's modules go through the same code: finite numbers for every window
    ebm = ebmgraph.compile(ROOT / ex.SPEC, seed=0)
    real = ex.compare(ebm, test)
    assert real["windows"] == len(test["x"]) and all(np.isfinite(v) for v in real.values())
