"""Episodes on disk (HDF5) read in windows: windows never cross an episode's end, the store equals the
``.npz`` it came from window for window, and bad stores or windows are clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ebmgraph.train.episodes import EpisodeError, Episodes, EpisodeWriter, Windows, split_episodes


def _episodes(rng, lengths):
    """Episodes whose every frame and step carries (episode, step) so a window shows where it came from."""
    out = []
    for e, T in enumerate(lengths):
        frames = np.stack([np.full(T + 1, e), np.arange(T + 1)], 1).astype(np.float32)
        steps = np.stack([np.full(T, e), np.arange(T)], 1).astype(np.float32) + rng.uniform(0, 0.1, (T, 2))
        out.append((frames, steps.astype(np.float32)))
    return out


def _write(path, eps):
    with EpisodeWriter(path, chunk=4, meta={"env": "test"}) as w:
        for frames, steps in eps:
            w.add(frames={"obs": frames}, steps={"action": steps})


def test_a_window_never_crosses_an_episode_and_every_window_is_there(tmp_path):
    rng = np.random.default_rng(0)
    lengths = [5, 1, 9, 3, 12]
    _write(tmp_path / "e.h5", _episodes(rng, lengths))
    store = Episodes(tmp_path / "e.h5")
    assert store.lengths.tolist() == lengths and store.meta == {"env": "test"}
    for K, stride in ((1, 1), (3, 1), (3, 2), (9, 4)):
        w = Windows(store, K, stride=stride)
        want = sum((T - K) // stride + 1 for T in lengths if T >= K)
        assert len(w) == want
        b = w.batch(np.arange(len(w)))
        assert b["obs"].shape == (want, K + 1, 2) and b["action"].shape == (want, K, 2)
        # one episode per window, consecutive steps from its start
        assert bool((b["obs"][:, :, 0] == b["obs"][:, :1, 0]).all())
        assert bool((b["action"][:, :, 0].floor() == b["obs"][:, :1, 0]).all())
        steps = b["obs"][:, :, 1]
        assert bool((steps[:, 1:] - steps[:, :-1] == 1).all())
        assert bool((steps[:, 0] % stride == 0).all())


def test_the_store_equals_the_npz_it_came_from(tmp_path):
    """collect's .npz (obs, action, next_obs, episode rows) and the HDF5 store give the same windows."""
    rng = np.random.default_rng(1)
    eps = _episodes(rng, [6, 4, 8])
    rows = {"obs": [], "action": [], "next_obs": [], "episode": []}
    for e, (frames, steps) in enumerate(eps):
        rows["obs"].append(frames[:-1]), rows["next_obs"].append(frames[1:])
        rows["action"].append(steps), rows["episode"].append(np.full(len(steps), e))
    np.savez(tmp_path / "d.npz", **{k: np.concatenate(v) for k, v in rows.items()})
    _write(tmp_path / "d.h5", eps)
    a, b = Windows(Episodes(tmp_path / "d.npz"), 3), Windows(Episodes(tmp_path / "d.h5"), 3)
    assert len(a) == len(b) == 4 + 2 + 6
    idx = torch.randperm(len(a), generator=torch.Generator().manual_seed(0))[:7]
    ba, bb = a.batch(idx), b.batch(idx)
    for k in ("obs", "action"):
        torch.testing.assert_close(ba[k], bb[k])


def test_names_and_splits(tmp_path):
    _write(tmp_path / "e.h5", _episodes(np.random.default_rng(2), [4] * 10))
    train, test = split_episodes(10, 0.2)
    assert train.tolist() == list(range(8)) and test.tolist() == [8, 9]
    w = Windows(Episodes(tmp_path / "e.h5"), 2, names={"obs": "o", "action": "a"}, which=test)
    b = w.batch([0, len(w) - 1])
    assert set(b) == {"o", "a"} and b["o"][0, 0, 0] == 8 and b["o"][1, 0, 0] == 9


def test_bad_stores_and_windows_are_clear_errors(tmp_path):
    _write(tmp_path / "e.h5", _episodes(np.random.default_rng(3), [3, 4]))
    with pytest.raises(EpisodeError, match=r"no episode is long enough for a window of 5 steps \(the longest has 4\)"):
        Windows(Episodes(tmp_path / "e.h5"), 5)
    cut = tmp_path / "cut.h5"
    cut.write_bytes((tmp_path / "e.h5").read_bytes()[:600])
    with pytest.raises(EpisodeError, match="cut.h5: not a readable episode store"):
        Episodes(cut)
    with pytest.raises(EpisodeError, match="no such file"):
        Episodes(tmp_path / "missing.h5")
    with pytest.raises(EpisodeError, match="T \\+ 1 frames and T steps"):
        with EpisodeWriter(tmp_path / "bad.h5") as w:
            w.add(frames={"obs": np.zeros((3, 2))}, steps={"action": np.zeros((3, 1))})
    assert not (tmp_path / "bad.h5").exists() and not list(tmp_path.glob(".bad.h5*"))  # nothing half-written


def test_a_failed_writer_leaves_the_previous_store(tmp_path):
    p = tmp_path / "e.h5"
    _write(p, _episodes(np.random.default_rng(4), [3]))
    before = p.read_bytes()
    with pytest.raises(RuntimeError):
        with EpisodeWriter(p) as w:
            w.add(frames={"obs": np.zeros((4, 2))}, steps={"action": np.zeros((3, 1))})
            raise RuntimeError("killed")
    assert p.read_bytes() == before and not list(tmp_path.glob(".e.h5*"))
