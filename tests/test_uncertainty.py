"""Planning under uncertainty (§4.8, Figure 17): the stochastic variant ebmgraph/PendulumGainNoise-v0
(the motor's hidden gain) and its spec with a sampled latent, whose sampled energy is checked
against the true dynamics with the same draws."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT

import ebmgraph
from ebmgraph import agent
from ebmgraph.agent import tasks
from ebmgraph.agent.envs import make_env
from ebmgraph.dynamics import PendulumDynamics

ENV = "ebmgraph/PendulumGainNoise-v0"
SPEC = ROOT / "examples/specs/pendulum_gain_noise.yaml"


def test_the_hidden_gain_scales_the_torque_pendulum_v1_applies():
    env = make_env(ENV)
    ref = make_env("Pendulum-v1")
    o, _ = env.reset(seed=3)
    ref.reset(seed=3)
    assert abs(np.arctan2(o[1], o[0])) <= tasks.START[0] + 1e-6  # starts near upright
    gains = []
    rng = np.random.default_rng(0)
    for _ in range(200):
        u = float(rng.uniform(-2, 2))
        ref.unwrapped.state = np.array(env.unwrapped.state)  # the same state, then the applied torque
        o, r, term, trunc, info = env.step(np.array([u], np.float32))
        ro, *_ = ref.step(np.clip(np.array([u * info["gain"]], np.float32), -2, 2))
        np.testing.assert_allclose(o, ro, atol=1e-5)
        gains.append(info["gain"])
        if term or trunc:
            break
    g = np.asarray(gains)
    assert len(g) == 200 and trunc  # Pendulum's 200 steps
    assert abs(g.mean() - 1) < 0.15 and 0.35 < g.std() < 0.65  # N(1, 0.5²)
    env.reset(seed=3)
    again = [env.step(np.array([1.0], np.float32))[4]["gain"] for _ in range(5)]
    np.testing.assert_allclose(again, g[:5])  # the seed fixes the noise
    env.close()
    ref.close()
    with pytest.raises(ValueError, match="sigma"):
        tasks.PendulumGainNoise(make_env("Pendulum-v1"), sigma=-1)


def test_the_specs_sampled_rollout_is_the_true_dynamics_under_the_drawn_gain():
    """The energy with z given equals the pendulum's cost along gymnasium's dynamics with torque u·(1 + 0.5 z)."""
    ebm = ebmgraph.compile(SPEC, sizes={"T": 5})
    g = torch.Generator().manual_seed(0)
    x = torch.tensor([[1.0, 0.1, 0.3]])
    x = torch.cat([x[:, :2] / x[:, :2].norm(dim=1, keepdim=True), x[:, 2:]], 1)
    a = 4 * torch.rand(1, 5, 1, generator=g) - 2
    z = torch.randn(1, 5, 1, generator=g)
    out = ebm.energy(x=x, a=a, z=z)
    step = PendulumDynamics().double()
    s, want = x.double(), 0.0
    for t in range(5):
        th = torch.atan2(s[:, 1], s[:, 0])
        want += float(th ** 2 + 0.1 * s[:, 2] ** 2 + 0.001 * a[0, t, 0].double().clamp(-2, 2) ** 2)
        s = step(s, (a[:, t] * (1 + 0.5 * z[:, t])).double())
    assert float(out.terms["cost"]) == pytest.approx(want, rel=1e-4)


def test_a_risk_planner_minimizes_mean_plus_spread_over_the_same_draws():
    ebm = ebmgraph.compile(SPEC, sizes={"T": 8})
    p = agent.make_planner(ebm, ENV, method="mppi", settings={"samples": 64, "sigma": 1.5, "temperature": 0.1,
                                                             "risk": 1.0, "n_draws": 8})
    env = make_env(ENV)
    ep = agent.run_episode(env, p, seed=0, max_steps=3)
    env.close()
    assert ep.length == 3 and all(abs(float(np.asarray(u)[0])) <= 2 for u in ep.actions)
    obs = {"x": torch.as_tensor(ep.observations[0])[None].float()}
    r = ebmgraph.minimize(ebm, obs, over=["a"], method="mppi", samples=64, iters=3, risk=1.0, n_draws=8, seed=1)
    assert r.info["sampled"] == ["z"]
    # the reported energy is mean + 1·std of the energy over the draws the planner used
    from ebmgraph.infer.gibbs import gibbs_draws

    draws = gibbs_draws(ebm, "z", 8, torch.Generator().manual_seed(1), ebm.dtype, ebm.device)
    E = torch.stack([ebm.energy(**obs, a=r.values["a"], z=draws[i:i + 1]).total[0] for i in range(8)])
    assert float(r.energy[0]) == pytest.approx(float(E.mean() + E.std(unbiased=False)), rel=1e-4)
