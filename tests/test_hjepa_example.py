"""examples/hjepa_maze.py (Figure 15): the windows it cuts (never across an episode, held-out episodes
last), the seeded sensor-noise variant, and the comparison it reports, on a small synthetic walk."""
from __future__ import annotations

import importlib.util

import numpy as np
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
    ex = _example()
    path, _ = _data(tmp_path)
    _, test = ex.windows(str(path))
    ebm = ebmgraph.compile(ROOT / ex.SPEC, seed=0)
    out = ex.compare(ebm, test)
    for k in ("level2_nerr", "chained_level1_nerr", "chained_level1_abstract_action_nerr", "level1_one_step_nerr"):
        assert np.isfinite(out[k]) and out[k] > 0
    assert out["windows"] == len(test["x"])
