"""Planning under uncertainty (§4.8, Figure 17): the stochastic variants ebmgraph/PendulumGainNoise-v0
(the motor's hidden gain) and ebmgraph/PointPitNoise-v0 (hidden command noise beside a pit), their
specs with a sampled latent, whose sampled energy is checked against the true dynamics with the same
draws and against a Monte-Carlo estimate of the env's own cost."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT

import ebmgraph
from ebmgraph import agent
from ebmgraph.agent import tasks
from ebmgraph.agent.envs import make_env
from ebmgraph import dynamics as dyn
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


def _gain_noise_cost(th: float, thdot: float, plan: np.ndarray, seeds=range(400)) -> np.ndarray:
    """The env's achieved cost of the open-loop ``plan [T]`` from (θ, θ̇), one per seed: a Monte-Carlo
    estimate over the env's own hidden gain, independent of the planner's draws."""
    env = make_env(ENV)
    out = []
    for sd in seeds:
        env.reset(seed=int(sd))
        env.unwrapped.state = np.array([th, thdot])
        out.append(-sum(env.step(np.array([u], np.float32))[1] for u in plan))
    env.close()
    return np.asarray(out)


def test_a_risk_planner_minimizes_mean_plus_spread_over_the_same_draws():
    ebm = ebmgraph.compile(SPEC, sizes={"T": 8})
    # the agent, risk-averse (λ = 5) and risk-neutral, from a swing where the torque's hidden gain spreads the
    # outcome (the spread grows with |u|): the same seed, hence the same draws and candidates for both
    th, thdot = 2.5, 2.0
    obs0 = np.array([np.cos(th), np.sin(th), thdot], np.float32)
    plans = {}
    for lam in (0.0, 5.0):
        p = agent.make_planner(ebm, ENV, method="mppi", settings={"samples": 128, "iters": 3, "sigma": 1.5,
                                                                 "temperature": 0.1, "risk": lam, "n_draws": 16})
        _, _, d = agent.plan_step(p, obs0, agent.PlanState())
        plans[lam] = d.plan["a"][0, :, 0].numpy()
    neutral, averse = (_gain_noise_cost(th, thdot, plans[k]) for k in (0.0, 5.0))
    # judged by the env's own noise: the risk-averse plan's spread is well below the neutral plan's (measured
    # on planner seeds 0-5: 0.33-0.45 of it), and so is its mean + 5·std, the objective it was asked for
    assert averse.std() < 0.6 * neutral.std(), (averse.std(), neutral.std())
    assert averse.mean() + 5 * averse.std() < neutral.mean() + 5 * neutral.std(), \
        (averse.mean(), averse.std(), neutral.mean(), neutral.std())
    obs = {"x": torch.as_tensor(obs0)[None]}
    r = ebmgraph.minimize(ebm, obs, over=["a"], method="mppi", samples=64, iters=3, risk=1.0, n_draws=8, seed=1)
    assert r.info["sampled"] == ["z"]
    # the reported energy is mean + 1·std of the energy over the draws the planner used
    from ebmgraph.infer.gibbs import gibbs_draws

    draws = gibbs_draws(ebm, "z", 8, torch.Generator().manual_seed(1), ebm.dtype, ebm.device)
    # the prior R(z) defines the draws and is not part of the spread: the cost term alone
    E = torch.stack([ebm.energy(**obs, a=r.values["a"], z=draws[i:i + 1]).terms["cost"][0] for i in range(8)])
    assert float(r.energy[0]) == pytest.approx(float(E.mean() + E.std(unbiased=False)), rel=1e-4)


PIT = "ebmgraph/PointPitNoise-v0"
PIT_SAMPLED = ROOT / "examples/specs/point_pit_noise.yaml"
PIT_POINT = ROOT / "examples/specs/point_pit.yaml"


def test_the_pit_env_is_the_models_motion_and_cost_under_its_hidden_noise():
    env = make_env(PIT)
    o, _ = env.reset(seed=5)
    np.testing.assert_array_equal(o, [0, 0])
    F, C = dyn.PointPitDynamics().double(), dyn.PointPitCost().double()
    rng = np.random.default_rng(1)
    s, noise, pits = torch.zeros(1, 2, dtype=torch.float64), [], 0
    for t in range(30):
        a = rng.uniform(-1, 1, 2)
        if t < 15:
            a = np.array([0.4, -0.3])  # into the pit
        o, r, term, trunc, info = env.step(a.astype(np.float32))
        applied = torch.as_tensor(a.astype(np.float32), dtype=torch.float64)[None] + 0.5 * torch.as_tensor(info["noise"])[None]
        s = F(s, applied)
        np.testing.assert_allclose(o, s[0].numpy(), atol=1e-5)
        assert r == pytest.approx(-float(C(s, applied)), abs=1e-9)
        noise.append(info["noise"])
        pits += info["in_pit"]
    assert trunc and not term and pits > 0  # 30 steps, and the walk down did reach the pit
    n = np.asarray(noise)
    assert abs(n.mean()) < 0.4 and 0.7 < n.std() < 1.3
    env.reset(seed=5)
    np.testing.assert_array_equal(env.step(np.zeros(2, np.float32))[4]["noise"], noise[0])  # seeded
    env.close()
    with pytest.raises(ValueError, match="sigma"):
        tasks.PointPitNoise(sigma=-0.1)


def _open_loop_cost(a: np.ndarray, seeds) -> np.ndarray:
    """The env's achieved cost of the open-loop plan ``a [T, 2]`` from its start, one per seed."""
    env = make_env(PIT)
    out = []
    for sd in seeds:
        env.reset(seed=int(sd))
        out.append(-sum(env.step(u.astype(np.float32))[1] for u in a))
    env.close()
    return np.asarray(out)


def test_the_sampled_objective_is_the_envs_expected_cost_of_the_plan():
    """A Monte-Carlo estimate over the env's own noise agrees with the planner's reported mean energy."""
    ebm = ebmgraph.compile(PIT_SAMPLED, sizes={"T": 8})
    x = {"x": torch.zeros(1, 2)}
    r = ebmgraph.minimize(ebm, x, over=["a"], method="mppi", samples=64, iters=3, risk=0.0, n_draws=2000, seed=0)
    a = r.values["a"][0].numpy()
    mc = _open_loop_cost(a, range(1500))
    assert float(r.energy[0]) == pytest.approx(mc.mean(), abs=4 * mc.std() / np.sqrt(len(mc)) + 0.05)
    # the point model's energy of the same plan is its noise-free cost, which the noise makes worse
    point = float(ebmgraph.compile(PIT_POINT, sizes={"T": 8}).energy(x=x["x"], a=r.values["a"]).total[0])
    quiet = tasks.PointPitNoise(sigma=0.0)
    quiet.reset(seed=0)
    assert point == pytest.approx(-sum(quiet.step(u)[1] for u in a), rel=1e-5)
    assert mc.mean() > point + 4 * mc.std() / np.sqrt(len(mc))


def test_sampling_the_noise_keeps_the_plan_away_from_the_pit():
    """Beside the pit's edge, the point planner's plan risks the pit (judged by the env's noise); the
    sampled planner's does much less, at no worse expected cost."""
    x = {"x": torch.tensor([[1.2, 0.0]])}
    kw = dict(over=["a"], method="mppi", samples=256, iters=6, sigma=0.5, temperature=0.1, seed=0)
    point = ebmgraph.minimize(ebmgraph.compile(PIT_POINT, sizes={"T": 8}), x, **kw).values["a"][0].numpy()
    sampled = ebmgraph.minimize(ebmgraph.compile(PIT_SAMPLED, sizes={"T": 8}), x, risk=1.0, n_draws=64,
                                **kw).values["a"][0].numpy()

    def judged(a, seeds=range(400)):  # the plan from (1.2, 0): expected pit steps and cost under the env
        env = make_env(PIT)
        F = dyn.PointPitDynamics()
        pits, costs = [], []
        for sd in seeds:
            env.reset(seed=int(sd))
            env.unwrapped.pos = np.array([1.2, 0.0])
            c = p = 0
            for u in a:
                _, rw, *_, info = env.step(u.astype(np.float32))
                c, p = c - rw, p + info["in_pit"]
            pits.append(p)
            costs.append(c)
        env.close()
        return np.mean(pits), np.mean(costs)

    pit_p, cost_p = judged(point)
    pit_s, cost_s = judged(sampled)
    assert pit_s < 0.5 * pit_p and pit_p > 0.3
    assert cost_s <= cost_p
