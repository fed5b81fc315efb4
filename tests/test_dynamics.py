"""gymnasium's classic-control dynamics and costs in torch (``ebmgraph/dynamics.py``) against
the installed gymnasium: next state, reward and termination step by step, gradients, the
module kinds' shape rules, and planning specs whose energy equals minus a real rollout's return.

Precision of the environments (gymnasium 1.4): Pendulum, CartPole and Acrobot keep their
internal state and reward in float64 (only the returned observation is cast to float32), so
those compare at 1e-10. MountainCarContinuous computes a step in float64 from a float64
state, then *stores* the state as float32: its next state compares at float32 precision
(2 ulp), its reward and termination (computed before the cast) at 1e-10 / exactly.
"""
from __future__ import annotations

import ast
import functools
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import ebmgraph
from ebmgraph import dynamics as dyn
from ebmgraph.modules import KINDS, ShapeError

gym = pytest.importorskip("gymnasium")

N = 2000  # states per environment (CartPole and Acrobot step each with every action)
F64 = torch.float64
F32_ULP = 2.0**-23  # float32 relative spacing


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=F64)


def _env(env_id: str):
    env = gym.make(env_id)
    env.reset(seed=0)
    return env


# ----------------------------------------------------------------------------- samples
def _pendulum_samples(rng):
    th = rng.uniform(-2 * math.pi, 2 * math.pi, N)  # the env's angle is not wrapped
    speed = rng.uniform(-8, 8, N)
    edge = rng.random(N) < 0.3  # near ±8, where the speed clip binds
    speed[edge] = rng.choice([-1, 1], edge.sum()) * rng.uniform(7.0, 8.0, edge.sum())
    u = rng.uniform(-3, 3, N)  # beyond ±2: the torque clip
    return np.stack([th, speed], 1), u[:, None], [np.array([x]) for x in u]


def _cartpole_samples(rng):
    st = np.stack([rng.uniform(-3, 3, N), rng.uniform(-2, 2, N), rng.uniform(-0.3, 0.3, N), rng.uniform(-2, 2, N)], 1)
    st = np.repeat(st, 2, 0)  # every state with both actions
    acts = np.tile([0, 1], N)
    return st, np.eye(2)[acts], [int(a) for a in acts]


def _mountaincar_samples(rng):
    third = N // 3
    pos = np.concatenate([rng.uniform(-1.3, 0.7, third),            # the whole range and beyond
                          rng.uniform(-1.25, -1.05, third),         # the left wall
                          rng.uniform(0.3, 0.62, N - 2 * third)])   # the goal and the right clip
    vel = np.concatenate([rng.uniform(-0.08, 0.08, third), rng.uniform(-0.08, 0.01, third),
                          rng.uniform(-0.02, 0.08, N - 2 * third)])
    a = rng.uniform(-1.5, 1.5, N)  # beyond ±1: the force clip (the reward reads the raw action)
    return np.stack([pos, vel], 1), a[:, None], [np.array([x]) for x in a]


def _acrobot_samples(rng):
    m1, m2 = 1.1 * 4 * math.pi, 1.1 * 9 * math.pi  # beyond the velocity bounds
    st = np.stack([rng.uniform(-math.pi, math.pi, N), rng.uniform(-math.pi, math.pi, N),
                   rng.uniform(-m1, m1, N), rng.uniform(-m2, m2, N)], 1)
    st = np.repeat(st, 3, 0)
    acts = np.tile([0, 1, 2], N)
    return st, np.eye(3)[acts], [int(a) for a in acts]


def _angles_to_obs(st, angles):
    """[cos, sin] for each angle column, other columns as they are, in the env's order."""
    cols = []
    for j in range(st.shape[1]):
        cols += [np.cos(st[:, j]), np.sin(st[:, j])] if j in angles else [st[:, j]]
    return np.stack(cols, 1)


# env id, samples, internal state -> observation (float64), torch modules, state is stored in float32
ENVS = {
    "pendulum": ("Pendulum-v1", _pendulum_samples, lambda st: _angles_to_obs(st, {0}),
                 dyn.PendulumDynamics, dyn.PendulumCost, None),
    "cartpole": ("CartPole-v1", _cartpole_samples, lambda st: st,
                 dyn.CartPoleDynamics, dyn.CartPoleCost, dyn.cartpole_terminated),
    "mountaincar": ("MountainCarContinuous-v0", _mountaincar_samples, lambda st: st,
                    dyn.MountainCarDynamics, dyn.MountainCarCost, dyn.mountaincar_terminated),
    "acrobot": ("Acrobot-v1", _acrobot_samples, lambda st: _angles_to_obs(st, {0, 1}),
                dyn.AcrobotDynamics, dyn.AcrobotCost, dyn.acrobot_terminated),
}


@functools.cache
def _real(name: str):
    """Step the real env once from each sampled internal state: inputs and what it returned."""
    env_id, sample, to_obs, *_ = ENVS[name]
    states, a_torch, a_env = sample(np.random.default_rng(len(name)))
    env = _env(env_id)
    nxt, obs, rew, term = [], [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # out-of-space states and actions are the point here
        for st, act in zip(states, a_env):
            env.reset()  # clears CartPole's steps_beyond_terminated
            env.unwrapped.state = st.copy()
            o, r, te, _, _ = env.step(act)
            nxt.append(np.asarray(env.unwrapped.state, dtype=np.float64))
            obs.append(o)
            rew.append(r)
            term.append(te)
    return dict(s=_t(to_obs(states)), a=_t(a_torch), raw=states, next_state=np.array(nxt),
                next=_t(to_obs(np.array(nxt))), obs=torch.as_tensor(np.array(obs)), reward=_t(rew),
                terminated=torch.as_tensor(term))


def _mismatches(name: str) -> dict[str, tuple[float, float]]:
    """{quantity: (error, tolerance)} of the torch modules (float64) against the real env."""
    _, _, _, Dyn, Cost, term = ENVS[name]
    d = _real(name)
    nxt = Dyn()(d["s"], d["a"])
    out = {}
    if name == "mountaincar":  # the env stores its state in float32
        want = d["next"].float()
        scale = want.abs().double() * 2 * F32_ULP
        out["next state (float32)"] = (((nxt.float().double() - want.double()).abs() - scale).max().item(), 1e-12)
    else:
        out["next state"] = ((nxt - d["next"]).abs().max().item(), 1e-10)
    # the returned observation is float32 everywhere
    out["observation"] = (((nxt.float() - d["obs"]).abs().double() / (1 + d["obs"].abs().double())).max().item(),
                          2 * F32_ULP)
    cost = Cost()(d["s"], d["a"])
    if name == "cartpole":
        # one step from a reset always pays +1; the cost is 1 for a state outside the bounds:
        # that of the state stepped from, and (as the env's `terminated`) that of the next one
        out["reward"] = ((d["reward"] - 1).abs().max().item(), 0.0)
        out["cost"] = ((cost - term(d["s"]).double()).abs().max().item() + (
            (Cost()(nxt, d["a"]) - d["terminated"].double()).abs().max().item()), 0.0)
    else:
        out["cost = -reward"] = ((cost + d["reward"]).abs().max().item(), 1e-10)
    if term is not None:
        out["terminated"] = (float((term(nxt) != d["terminated"]).sum()), 0.0)
    return out


# ----------------------------------------------------------------------------- against the real env
@pytest.mark.parametrize("name", list(ENVS))
def test_matches_gymnasium_step(name):
    errs = _mismatches(name)
    bad = {k: v for k, v in errs.items() if not v[0] <= v[1]}
    assert not bad, f"{name}: (error, tolerance) {bad}"


def test_samples_exercise_every_clip_and_termination():
    """The comparisons above would catch a missing clip only if the clips bind; they do."""
    p = _real("pendulum")
    assert (p["a"].abs() > 2).float().mean() > 0.2
    assert (np.abs(p["next_state"][:, 1]) == 8).mean() > 0.05

    c = _real("cartpole")
    assert 0.2 < c["terminated"].float().mean() < 0.8
    x, th = c["next"][:, 0].abs(), c["next"][:, 2].abs()
    assert ((x > 2.4) & (x < 2.5)).sum() > 10 and ((th > dyn.CARTPOLE_THETA_LIMIT) & (th < math.radians(15))).sum() > 10

    m = _real("mountaincar")
    pos, vel = m["next_state"][:, 0], m["next_state"][:, 1]
    p0, v0, a0 = m["raw"][:, 0], m["raw"][:, 1], np.clip(m["a"][:, 0].numpy(), -1, 1)
    v_before_reset = np.clip(v0 + a0 * 0.0015 - 0.0025 * np.cos(3 * p0), -0.07, 0.07)
    assert ((pos == np.float32(-1.2)) & (vel == 0) & (v_before_reset < -1e-4)).sum() > 50  # the wall reset
    assert (np.abs(v_before_reset) == 0.07).sum() > 50 and (pos == np.float32(0.6)).sum() > 20
    assert (m["a"].abs() > 1).float().mean() > 0.2 and m["terminated"].sum() > 50

    ac = _real("acrobot")
    assert (np.abs(ac["next_state"][:, 2]) == 4 * math.pi).sum() > 50
    assert (np.abs(ac["next_state"][:, 3]) == 9 * math.pi).sum() > 50
    assert 0.05 < ac["terminated"].float().mean() < 0.95


MUTANTS = [
    ("pendulum", "PENDULUM_G", 9.8), ("pendulum", "PENDULUM_MAX_SPEED", math.inf),
    ("pendulum", "PENDULUM_MAX_TORQUE", math.inf), ("pendulum", "PENDULUM_DT", 0.049),
    ("cartpole", "CARTPOLE_GRAVITY", 9.81), ("cartpole", "CARTPOLE_MASSPOLE", 0.11),
    ("cartpole", "CARTPOLE_TAU", 0.021), ("cartpole", "CARTPOLE_X_LIMIT", 2.5),
    ("cartpole", "CARTPOLE_THETA_LIMIT", math.radians(15)),
    ("mountaincar", "MOUNTAINCAR_POWER", 0.0016), ("mountaincar", "MOUNTAINCAR_MAX_SPEED", math.inf),
    ("mountaincar", "MOUNTAINCAR_MIN_POSITION", -math.inf), ("mountaincar", "MOUNTAINCAR_MAX_POSITION", math.inf),
    ("mountaincar", "MOUNTAINCAR_MAX_ACTION", math.inf), ("mountaincar", "MOUNTAINCAR_GOAL_POSITION", 0.5),
    ("acrobot", "ACROBOT_GRAVITY", 9.81), ("acrobot", "ACROBOT_DT", 0.19),
    ("acrobot", "ACROBOT_MAX_VEL_1", math.inf), ("acrobot", "ACROBOT_MAX_VEL_2", math.inf),
]


@pytest.mark.parametrize("name,const,value", MUTANTS, ids=[f"{c}={v}" for _, c, v in MUTANTS])
def test_a_wrong_constant_fails_the_comparison(monkeypatch, name, const, value):
    monkeypatch.setattr(dyn, const, value)
    errs = _mismatches(name)
    assert any(e > tol for e, tol in errs.values()), f"{const}={value} went unnoticed: {errs}"


@pytest.mark.parametrize("name", list(ENVS))
def test_float32_keeps_dtype_and_agrees(name):
    _, _, _, Dyn, Cost, _ = ENVS[name]
    d = _real(name)
    s, a = d["s"][:200], d["a"][:200]
    n64, n32 = Dyn()(s, a), Dyn()(s.float(), a.float())
    assert n32.dtype == torch.float32 and Cost()(s.float(), a.float()).dtype == torch.float32
    # Acrobot's RK4 at ±9π rad/s amplifies float32 rounding; the others stay near 1 ulp
    torch.testing.assert_close(n32.double(), n64, rtol=1e-4 if name == "acrobot" else 1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- gradients
def _inside(name, rng, n=4):
    """Points away from every clip and termination boundary, so finite differences are smooth."""
    if name == "pendulum":
        th, w, u = rng.uniform(-3, 3, n), rng.uniform(-3, 3, n), rng.uniform(-1.5, 1.5, n)
        return np.stack([np.cos(th), np.sin(th), w], 1), u[:, None]
    if name == "cartpole":
        s = np.stack([rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), rng.uniform(-0.1, 0.1, n), rng.uniform(-1, 1, n)], 1)
        return s, rng.dirichlet([1, 1], n)  # a relaxed one-hot: the force is linear in it
    if name == "mountaincar":
        return np.stack([rng.uniform(-1.0, 0.3, n), rng.uniform(-0.03, 0.03, n)], 1), rng.uniform(-0.8, 0.8, (n, 1))
    th1, th2 = rng.uniform(-math.pi, math.pi, n), rng.uniform(-math.pi, math.pi, n)
    s = np.stack([np.cos(th1), np.sin(th1), np.cos(th2), np.sin(th2), rng.uniform(-2, 2, n), rng.uniform(-3, 3, n)], 1)
    return s, rng.dirichlet([1, 1, 1], n)


@pytest.mark.parametrize("name", list(ENVS))
def test_gradcheck(name):
    _, _, _, Dyn, Cost, _ = ENVS[name]
    s, a = (_t(x).requires_grad_() for x in _inside(name, np.random.default_rng(7)))
    nxt = Dyn()(s, a)
    if name == "acrobot":
        assert (nxt[:, 4].abs() < 4 * math.pi).all() and (nxt[:, 5].abs() < 9 * math.pi).all()
    assert torch.autograd.gradcheck(Dyn(), (s, a))
    cost = Cost(shaping=0.5) if name == "cartpole" else Cost()
    assert torch.autograd.gradcheck(cost, (s, a))
    g = torch.autograd.grad(nxt.sum() + cost(s, a).sum(), (s, a))
    assert all(x.abs().sum() > 0 for x in g)  # the gradients are not vacuously zero


def test_cartpole_shaping_is_a_bowl_around_upright():
    s = _t([[0.0, 0, 0, 0], [1.2, 0, 0, 0], [0, 0, dyn.CARTPOLE_THETA_LIMIT / 2, 0], [3.0, 0, 0, 0]])
    a = _t(np.eye(2)[[0, 1, 0, 1]])
    torch.testing.assert_close(dyn.CartPoleCost()(s, a), _t([0, 0, 0, 1]))
    torch.testing.assert_close(dyn.CartPoleCost(shaping=0.1)(s, a), _t([0, 0.025, 0.025, 1 + 0.1 * (3 / 2.4) ** 2]))


# ----------------------------------------------------------------------------- module kinds
KIND_WIDTHS = {"pendulum": (3, 1), "cartpole": (4, 2), "mountaincar": (2, 1), "acrobot": (6, 3)}


@pytest.mark.parametrize("env", list(KIND_WIDTHS))
def test_kind_shape_rules(env):
    S, A = KIND_WIDTHS[env]
    dyn_kind, cost_kind = KINDS[env], KINDS[f"{env}_cost"]
    assert (dyn_kind.role, cost_kind.role) == ("function", "energy")
    assert dyn_kind.shape((), {}, [(S,), (A,)]) == (S,)
    assert cost_kind.shape((), {}, [(S,), (A,)]) == ()
    for kind in (dyn_kind, cost_kind):
        with pytest.raises(ShapeError, match=rf"reads s as .*\[{S}\]; got \[{S + 1}\]"):
            kind.shape((), {}, [(S + 1,), (A,)])
        with pytest.raises(ShapeError, match=rf"reads a as .*\[{A}\]; got \[{A + 1}\]"):
            kind.shape((), {}, [(S,), (A + 1,)])
        with pytest.raises(ShapeError, match=r"called as .*\(s, a\), got 1"):
            kind.shape((), {}, [(S,)])
        with pytest.raises(ShapeError, match="0 integer argument"):
            kind.shape((S,), {}, [(S,), (A,)])


def test_dynamics_imports_nothing_from_ebmgraph():
    tree = ast.parse(Path(dyn.__file__).read_text())
    mods = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    mods += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in mods if m.startswith("ebmgraph") or m == ""], mods
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level], "relative import"


# ----------------------------------------------------------------------------- through the compiler
SPEC = """
name: {name}_true
index: {{t: 0..T-1}}
sizes: {{T: 5}}
variables:
  x: {{observed: [{S}]}}
  a[t]: {action}
modules:
  Pred: fixed({name})
{cost_decl}
functions:
  s[0]: identity(x)
  s[t+1]: Pred(s[t], a[t])
energy:
  cost[t]: {cost_call}(s[t], a[t])
"""
ACTIONS = {"pendulum": "{action: [1], bounds: [-2, 2]}", "cartpole": "{action: discrete, values: 2}",
           "mountaincar": "{action: [1], bounds: [-1, 1]}", "acrobot": "{action: discrete, values: 3}"}


def _spec(name: str, inline: bool = False) -> str:
    cost_decl = "" if inline else f"  C: {name}_cost"
    return SPEC.format(name=name, S=KIND_WIDTHS[name][0], action=ACTIONS[name], cost_decl=cost_decl,
                       cost_call=f"{name}_cost" if inline else "C")


def _starts(name, rng, B):
    """Internal env states to roll out from; CartPole starts inside its bounds, near enough to fail."""
    if name == "pendulum":
        return np.stack([rng.uniform(-math.pi, math.pi, B), rng.uniform(-8, 8, B)], 1)
    if name == "cartpole":
        return np.stack([rng.uniform(-2.3, 2.3, B), rng.uniform(-2, 2, B), rng.uniform(-0.2, 0.2, B),
                         rng.uniform(-2, 2, B)], 1)
    if name == "mountaincar":
        return np.stack([rng.uniform(0.3, 0.45, B), rng.uniform(0.0, 0.07, B)], 1)
    return np.stack([rng.uniform(-math.pi, math.pi, B), rng.uniform(-math.pi, math.pi, B),
                     rng.uniform(-4, 4, B), rng.uniform(-9, 9, B)], 1)


@pytest.mark.parametrize("name", list(ENVS))
def test_compiled_energy_is_minus_the_return(name):
    T, B = 5, 24
    rng = np.random.default_rng(3)
    env_id, _, to_obs, *_ = ENVS[name]
    starts = _starts(name, rng, B)
    if name in ("cartpole", "acrobot"):
        acts = rng.integers(0, KIND_WIDTHS[name][1], (B, T))
        env_acts = [[int(a) for a in row] for row in acts]
        a_in = torch.as_tensor(acts)  # integer values [B, T]; the compiler one-hots them
    else:
        # inside the spec's action bounds (the compiled energy refuses values outside them; the clip
        # beyond them is tested on the modules above)
        hi = 1.0 if name == "mountaincar" else 1.5
        acts = rng.uniform(-hi, hi, (B, T, 1))
        env_acts = [[np.array(a) for a in row] for row in acts]
        a_in = _t(acts)
    env = _env(env_id)
    ret = np.zeros(B)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stepping on after CartPole terminates is the env's "undefined", paid 0
        for b in range(B):
            env.reset()
            env.unwrapped.state = starts[b].copy()
            for t in range(T):
                ret[b] += env.step(env_acts[b][t])[1]

    ebm = ebmgraph.compile(_spec(name), sizes={"T": T}).double()
    E = ebm.energy(x=_t(to_obs(starts)), a=a_in)
    want = -_t(ret)
    if name == "cartpole":
        want = want + T  # 1 per step outside the bounds = 1 - reward per step (see CartPoleCost)
        assert 0 < (E.total > 0).sum() < B, "some rollouts should fail within T steps, some not"
    torch.testing.assert_close(E.total, want, rtol=0, atol=1e-10)
    ref = ebm.reference_energy(x=_t(to_obs(starts)), a=a_in)
    torch.testing.assert_close(ref.total, E.total, rtol=0, atol=1e-12)


def test_inline_kinds_and_options_through_the_spec_checker():
    ebm = ebmgraph.compile(_spec("acrobot", inline=True)).double()
    assert ebm.energy(**ebm.random_inputs(3, seed=0)).total.shape == (3,)
    shaped = _spec("cartpole").replace("C: cartpole_cost", "C: cartpole_cost(shaping=0.25)")
    ebm = ebmgraph.compile(shaped).double()
    assert ebm.mods["C"].shaping == 0.25
    x, a = _t([[1.2, 0, 0, 0]]), torch.ones(1, 5, dtype=torch.long)  # inside the bounds for all 5 steps
    assert ebmgraph.compile(_spec("cartpole")).double().energy(x=x, a=a).total.item() == 0
    assert ebm.energy(x=x, a=a).total.item() > 5 * 0.25 * 0.5**2 * 0.9  # the bowl: x ≈ 1.2 = half the limit
    with pytest.raises(ebmgraph.SpecError, match="non-negative"):
        ebmgraph.compile(_spec("cartpole").replace("C: cartpole_cost", "C: cartpole_cost(shaping=-1)"))
    with pytest.raises(ebmgraph.SpecError, match="takes no option"):
        ebmgraph.compile(_spec("pendulum").replace("C: pendulum_cost", "C: pendulum_cost(shaping=1)"))
    with pytest.raises(ebmgraph.SpecError, match=r"reads a as the torque, \[1\]; got \[2\]"):
        ebmgraph.compile(_spec("pendulum").replace("{action: [1], bounds: [-2, 2]}", "{action: [2]}"))
    with pytest.raises(ebmgraph.SpecError, match=r"one-hot push .*\[2\]; got \[3\]"):
        ebmgraph.compile(_spec("cartpole").replace("values: 2", "values: 3"))


def test_pendulum_gravity_option_matches_gymnasium():
    """``pendulum(g=2)`` steps as ``gymnasium.make("Pendulum-v1", g=2.0)`` (the goal-cue task's physics)."""
    import gymnasium as gym

    env = gym.make("Pendulum-v1", g=2.0)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    f = dyn.PendulumDynamics(g=2.0)
    errs = []
    for _ in range(50):
        th, thdot, u = rng.uniform(-np.pi, np.pi), rng.uniform(-6, 6), rng.uniform(-2, 2)
        env.unwrapped.state = np.array([th, thdot])
        obs, *_ = env.step(np.array([u], np.float32))
        s = torch.tensor([[np.cos(th), np.sin(th), thdot]], dtype=torch.float64)
        got = f(s, torch.tensor([[u]], dtype=torch.float64))[0].numpy()
        errs.append(np.abs(got - obs).max())
    assert max(errs) < 1e-5
    # and g=10's dynamics differ from it by far more than that on the same samples
    assert (dyn.PendulumDynamics(g=10.0)(s, torch.tensor([[u]], dtype=torch.float64))[0].numpy() - obs).__abs__().max() > 1e-3
