"""World-state memory in a partially observed task (§3.3, §4.9): ebmgraph/PendulumGoalCue-v0 shows
the goal once; specs/fig02_memory_goal.yaml writes it to an associative memory that the agent
carries between decisions (Binding.carry, ``plan --carry``), and reads it back in the cost."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import ROOT

import ebmgraph
from ebmgraph import agent
from ebmgraph.agent import EnvMismatch
from ebmgraph.agent import tasks
from ebmgraph.agent.envs import make_env
from ebmgraph.cli import main

SPEC = ROOT / "specs" / "fig02_memory_goal.yaml"
ENV = "ebmgraph/PendulumGoalCue-v0"
Q_GOAL = {"q_goal": np.array([4.0], np.float32)}
EMPTY = {"m": np.zeros(16, np.float32), **Q_GOAL}


def test_the_goal_is_seen_only_in_the_first_observation():
    env = make_env(ENV)
    seen_goals = set()
    for seed in range(12):
        obs, info = env.reset(seed=seed)
        k = info["goal"]
        seen_goals.add(k)
        np.testing.assert_allclose(obs[3:], [1.0, math.cos(tasks.GOALS[k]), math.sin(tasks.GOALS[k])], atol=1e-6)
        for _ in range(3):
            obs, *_ = env.step(np.zeros(1, np.float32))
            assert obs[3:].tolist() == [0.0, 0.0, 0.0]
    assert seen_goals == set(range(len(tasks.GOALS)))  # the seed picks among all goals
    # the same seed, the same goal; options override it; a bad goal is an error
    assert env.reset(seed=3)[1]["goal"] == env.reset(seed=3)[1]["goal"]
    assert env.reset(seed=3, options={"goal": 2})[1]["goal"] == 2
    with pytest.raises(ValueError, match="goal must be an integer"):
        env.reset(seed=0, options={"goal": 7})
    env.close()


def test_success_means_holding_the_goal_for_the_last_steps():
    """Hanging still at θ = π succeeds exactly when the goal is 'down', and only after HOLD steps."""
    env = make_env(ENV)
    for k, want in [(2, True), (0, False), (1, False)]:
        env.reset(seed=0, options={"goal": k})
        env.unwrapped.state = np.array([math.pi, 0.0])
        flags = [env.step(np.zeros(1, np.float32))[4]["success"] for _ in range(tasks.HOLD)]
        assert flags[-1] is want and not any(flags[:-1])
        d = env.step(np.zeros(1, np.float32))[4]["angle_to_goal"]
        assert abs(abs(d) - abs(tasks._angle(math.pi - tasks.GOALS[k]))) < 1e-6
    env.close()


def test_the_carried_memory_keeps_the_goal_and_a_forgetting_one_does_not():
    ebm = ebmgraph.compile(SPEC, seed=0)
    p = agent.make_planner(ebm, ENV, method="mppi", settings={"samples": 32}, given=Q_GOAL, carry={"m": "m1"})
    env = make_env(ENV)
    obs, info = env.reset(seed=0, options={"goal": 1})
    state = agent.PlanState()
    for step in range(30):
        a, state, _ = agent.plan_step(p, obs, state)
        obs, *_ = env.step(a)
    env.close()
    read = ebm.mods["Read"](state.carried["m"], torch.tensor([[4.0]]))[0]
    goal = torch.tensor([math.cos(math.pi / 2), math.sin(math.pi / 2)])
    torch.testing.assert_close(read, goal / 1.1, atol=1e-4, rtol=0)  # the goal, 1 / (1 + γ) of it
    assert int((state.carried["m"][0, 12:] > 0).sum()) == 2  # the goal's slot and the scratch slot


def test_with_memory_the_agent_reaches_goals_it_cannot_reach_without():
    """Four goals, one episode each (seeds 0..3): the carried memory reaches all four; the same
    spec with the memory emptied every decision reaches at most the one it may fall into."""
    def successes(carry, given):
        ebm = ebmgraph.compile(SPEC, seed=0)
        p = agent.make_planner(ebm, ENV, method="mppi", settings={"sigma": 1.5, "temperature": 0.1, "samples": 128},
                               given=given, carry=carry, seed=0)
        env = make_env(ENV)
        eps = [agent.run_episode(env, p, seed=k, options={"goal": k}) for k in range(4)]
        env.close()
        return [e.success for e in eps]

    with_memory = successes({"m": "m1"}, Q_GOAL)
    without = successes(None, EMPTY)
    assert with_memory == [True] * 4, with_memory
    assert sum(without) <= 1, without


def test_carry_errors_are_clear():
    ebm = ebmgraph.compile(SPEC)
    with pytest.raises(EnvMismatch, match="q is not an observed variable"):
        agent.make_planner(ebm, ENV, given=Q_GOAL, carry={"q": "m1"})
    with pytest.raises(EnvMismatch, match="keep its shape"):
        agent.make_planner(ebm, ENV, given=Q_GOAL, carry={"m": "g"})
    with pytest.raises(EnvMismatch, match="one function"):
        agent.make_planner(ebm, ENV, given=Q_GOAL, carry={"m": "nope"})
    with pytest.raises(EnvMismatch, match="observes x, m besides given"):
        agent.make_planner(ebm, ENV, given=Q_GOAL)
    moving = ebmgraph.loads(SPEC.read_text().replace("m1: Write(m, q, Cue(x))", "m1: Write(m, q, Dir(s[1]))"))
    with pytest.raises(EnvMismatch, match="depends on a"):
        agent.make_planner(ebmgraph.compile(moving), ENV, given=Q_GOAL, carry={"m": "m1"})


def test_plan_cli_carries_memory_and_reports_success(tmp_path, capsys):
    """``plan --carry m=m1`` carries the memory between decisions: the command's agent scores what the library's
    carrying agent scores, and clearly more than the same agent with its memory emptied before every decision
    (which sees the goal in the first observation only, and forgets it)."""
    steps, goal = 20, 3
    rc = main(["plan", str(SPEC), "--env", ENV, "--carry", "m=m1", "--given", "q_goal=4", "--method", "mppi",
               "--set", "samples=32", "--episodes", "1", "--max-steps", str(steps), "--reset", f"goal={goal}",
               "--no-frames", "--quiet", "--json", "--out", str(tmp_path / "run")])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and summary["successes"] == 0  # 20 steps cannot hold the goal for 50

    def ret(carry, given):
        p = agent.make_planner(ebmgraph.compile(SPEC, seed=0), ENV, method="mppi", settings={"samples": 32},
                               given=given, carry=carry, seed=0)
        return agent.run(ENV, p, episodes=1, seed=0, max_steps=steps, progress=False,
                         options=[{"goal": goal}]).returns[0]

    carried, forgetful = ret({"m": "m1"}, Q_GOAL), ret(None, EMPTY)
    assert summary["returns"][0] == pytest.approx(carried, abs=1e-3)
    # measured (goal 3, seed 0, 20 steps): carrying -64.6, emptied every decision -103.5
    assert carried > forgetful + 20, (carried, forgetful)
    with pytest.raises(SystemExit, match="--carry takes VARIABLE=FUNCTION"):
        main(["plan", str(SPEC), "--env", ENV, "--carry", "m", "--quiet"])


# ----------------------------------------------------------------------------- Mode-1 warm-starting Mode-2
def _policy_and_planner(**kw):
    pol = agent.Mode1(ebmgraph.compile(ROOT / "examples/specs/pendulum_policy.yaml", seed=0), "a_tilde", "Pendulum-v1")
    ebm = ebmgraph.compile(ROOT / "examples/specs/pendulum_mpc.yaml", sizes={"T": 6}).double()
    return pol, agent.make_planner(ebm, "Pendulum-v1", warm_policy=pol, **kw)


def test_the_warm_policy_proposes_its_actions_along_the_models_states():
    """The proposal is ``a[t] = clip(A(s[t]))`` with ``s[t+1] = F(s[t], a[t])``, written out here from the policy's
    raw network (not through ``Mode1.act``): a policy scaled up to ask for torques beyond the box has its
    actions clipped to it, and the model's states follow the clipped actions."""
    from ebmgraph.dynamics import PendulumDynamics

    pol, p = _policy_and_planner(method="mppi", settings={"samples": 8})
    net = pol.ebm.mods["A"]
    last = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # a confident policy: its raw torques leave the box [-2, 2] at most steps
        last.weight.mul_(100.0)
        last.bias.mul_(100.0)
    x = torch.tensor([[0.3, -0.95, 1.2]], dtype=torch.float64)
    plan = p.policy_plan({"x": x})["a"]
    assert plan.shape == (1, 6, 1)
    s, raw, want = x, [], []
    with torch.no_grad():
        for _ in range(6):  # by hand: a[t] = clip(A(s[t]), -2, 2), s[t+1] = F(s[t], a[t])
            r = net(s.to(torch.float32)).double()
            raw.append(float(r))
            a = r.clamp(-2.0, 2.0)
            want.append(a)
            s = PendulumDynamics()(s, a)
    torch.testing.assert_close(plan, torch.stack(want, 1), rtol=1e-6, atol=1e-6)
    # the box binds (measured raw torques: -4.6, -0.96, 2.4, 3.0, 2.9, 2.1), and the proposal stays inside it
    assert sum(abs(r) > 2.0 for r in raw) >= 3 and any(abs(r) < 2.0 for r in raw), raw
    assert float(plan.abs().max()) <= 2.0


def test_a_warm_policy_is_the_plans_starting_point():
    """A gradient planner that barely moves (one step of 1e-9) returns its starting point: the policy's action."""
    pol, p = _policy_and_planner(method="gradient", settings={"steps": 1, "lr": 1e-9})
    obs = np.array([0.3, -0.95, 1.2], np.float32)
    a, _, d = agent.plan_step(p, obs, agent.PlanState())
    np.testing.assert_allclose(a, pol(obs), rtol=1e-5, atol=1e-6)


def test_warm_policy_errors_are_clear():
    with pytest.raises(EnvMismatch, match="no state array z"):
        _policy_and_planner(method="mppi", warm_state="z")
    with pytest.raises(EnvMismatch, match="takes a warm start"):
        pol = agent.Mode1(ebmgraph.compile(ROOT / "examples/specs/pendulum_policy.yaml"), "a_tilde", "Pendulum-v1")
        agent.make_planner(ebmgraph.compile(ROOT / "examples/specs/cartpole_mpc.yaml"), "CartPole-v1",
                           method="beam", warm_policy=pol)
