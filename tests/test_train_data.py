"""Data loaders of the trainer: Pendulum transitions and sequences against gymnasium's own
dynamics, the .npz loader (round trip, no pickles), and seeded digit views."""
import math

import numpy as np
import pytest
import torch

from ebmgraph.train import get_dataset, load_npz, pendulum
from ebmgraph.train.data import digit_view, digits, pendulum_sequences


def _gym_step(obs, a):
    """gymnasium's Pendulum-v1 step from the state (θ, θ̇) behind an observation (cos θ, sin θ, θ̇)."""
    import gymnasium as gym

    env = gym.make("Pendulum-v1")
    env.reset(seed=0)
    out = []
    for o, u in zip(obs.double().numpy(), a.numpy()):
        env.unwrapped.state = np.array([math.atan2(o[1], o[0]), o[2]])
        out.append(env.step(u)[0])
    env.close()
    return torch.tensor(np.asarray(out), dtype=torch.float32)


def test_pendulum_transitions_follow_gymnasium_dynamics_and_are_seeded():
    d = pendulum(300, seed=3, episode=50)
    assert {k: tuple(v.shape) for k, v in d.tensors.items()} == {"s": (300, 3), "a": (300, 1), "s_next": (300, 3)}
    assert float(d.tensors["a"].abs().max()) <= 2.0
    torch.testing.assert_close(d.tensors["s"][:, 0] ** 2 + d.tensors["s"][:, 1] ** 2, torch.ones(300))
    torch.testing.assert_close(_gym_step(d.tensors["s"], d.tensors["a"]), d.tensors["s_next"], atol=1e-5, rtol=0)
    again, other = pendulum(300, seed=3, episode=50), pendulum(300, seed=4, episode=50)
    for k in d.tensors:
        assert torch.equal(d.tensors[k], again.tensors[k])
    assert not torch.equal(d.tensors["s"], other.tensors["s"])
    # within an episode, each transition starts where the previous one ended
    torch.testing.assert_close(d.tensors["s"][1:50], d.tensors["s_next"][:49])


def test_pendulum_sequences_shapes_dynamics_and_seed():
    d = pendulum_sequences(40, horizon=6, seed=1)
    obs, a = d.tensors["obs"], d.tensors["a"]
    assert obs.shape == (40, 7, 3) and a.shape == (40, 6, 1) and d.tensors["x"].shape == (40, 3)
    assert torch.equal(d.tensors["x"], obs[:, 0])
    nxt = _gym_step(obs[:, :-1].reshape(-1, 3), a.reshape(-1, 1)).view(40, 6, 3)
    torch.testing.assert_close(nxt, obs[:, 1:], atol=1e-5, rtol=0)
    assert torch.equal(get_dataset("pendulum_sequences", seed=1, n=40, horizon=6).tensors["obs"], obs)
    assert not torch.equal(pendulum_sequences(40, horizon=6, seed=2).tensors["obs"], obs)


def test_npz_round_trip_and_refusal_of_pickled_arrays(tmp_path):
    g = np.random.default_rng(0)
    x, y, lab = g.standard_normal((20, 5)), g.standard_normal((20, 2, 3)).astype(np.float32), np.arange(20) % 3
    p = tmp_path / "mine.npz"
    np.savez(p, x=x, y=y, labels=lab)
    d = get_dataset(str(p))
    assert d.name == "mine" and set(d.tensors) == {"x", "y"}
    np.testing.assert_allclose(d.tensors["x"].numpy(), x.astype(np.float32))
    np.testing.assert_array_equal(d.tensors["y"].numpy(), y)
    np.testing.assert_array_equal(d.labels.numpy(), lab)
    assert len(d) == 20 and d.batch(torch.tensor([3, 5]))["y"].shape == (2, 2, 3)
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=x, meta=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(ValueError, match="pickled"):
        load_npz(bad)
    ragged = tmp_path / "ragged.npz"
    np.savez(ragged, x=x, y=y[:5])
    with pytest.raises(ValueError, match="first dimension"):
        load_npz(ragged)


def test_digit_views_are_seeded_and_keep_the_digit():
    X, _ = digits()
    v1 = digit_view(X[:50], torch.Generator().manual_seed(0), rotate=15, scale=0.1)
    v2 = digit_view(X[:50], torch.Generator().manual_seed(0), rotate=15, scale=0.1)
    v3 = digit_view(X[:50], torch.Generator().manual_seed(1), rotate=15, scale=0.1)
    assert torch.equal(v1, v2) and not torch.equal(v1, v3)
    assert v1.shape == (50, 64) and float(v1.min()) >= 0 and float(v1.max()) <= 1
    # with every augmentation off the view is the image itself
    assert torch.equal(digit_view(X[:50], torch.Generator(), shift=0, noise=0.0, erase=0), X[:50])
    # a view stays nearer its own image than other digits' images, on average
    d = torch.cdist(v1, X[:50])
    assert float(d.diagonal().mean()) < float(d.mean())


def test_embedded_demo_spec_matches_its_example_copy():
    """The demo's spec lives in the package (examples/ is not installed); the example file is a copy."""
    from pathlib import Path

    import ebmgraph
    from ebmgraph.train.report import SPEC_TEXT

    example = Path(__file__).resolve().parents[1] / "examples/specs/train_jepa_vicreg_digits.yaml"
    assert ebmgraph.loads(SPEC_TEXT) == ebmgraph.load(example)
