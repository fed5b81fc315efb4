"""One environment loop (issue 27, item 5): ``collect`` and ``run_episode`` both step environments through
:func:`ebmgraph.agent.loop.rollout`.

The loop's bookkeeping is checked in closed form on a counting environment (every observation, reset seed
and fact is known in advance); ``collect`` and ``run_episode`` against values recorded from the two
separate loops they had before (commit f073c88, same seeds), and against each other (the same seeded
episode, stepped by either, is the same episode)."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT

import ebmgraph
from ebmgraph import agent
from ebmgraph.agent import envs
from ebmgraph.agent.collect import collect
from ebmgraph.agent.loop import Transition, rollout

gym = pytest.importorskip("gymnasium")
EX = ROOT / "examples" / "specs"


class Counter(gym.Env):
    """obs = the step within the episode (``[1]`` float32); terminates after ``length`` steps; reward = the
    action; ``info["success"]`` at the end. Records the seed and options of every reset, renders its step."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, length: int):
        self.length, self.n, self.resets = length, 0, []

    def reset(self, *, seed=None, options=None):
        self.resets.append((seed, options))
        self.n = 0
        return np.array([0.0], np.float32), {"episode": len(self.resets) - 1, "name": "not a number"}

    def step(self, action):
        self.n += 1
        return (np.array([self.n], np.float32), float(np.asarray(action).reshape(-1)[0]), self.n >= self.length,
                False, {"success": self.n >= self.length})

    def render(self):
        return self.n


@pytest.fixture
def counter_facts(monkeypatch):
    """The counter's facts: its step as ``xy`` always, ``goal_xy`` = its length at a reset."""
    def facts(env, at_reset):
        u = env.unwrapped
        return {"xy": np.array([u.n, -u.n], np.float64), **({"goal_xy": np.array([u.length, 0.0])} if at_reset else {})}

    monkeypatch.setattr(envs, "INFO_HOOKS", [(lambda e: isinstance(e.unwrapped, Counter), facts)])


def test_rollout_counts_steps_episodes_and_resets_in_closed_form(counter_facts):
    env, seen, resets = Counter(3), [], []
    n = rollout(env, lambda obs: np.array([0.5], np.float32), seed=11, options={"k": 1}, steps=7,
                on_reset=lambda *a: resets.append(a), on_step=seen.append)
    assert n == 7 and all(isinstance(tr, Transition) for tr in seen)
    assert [(tr.episode, tr.t) for tr in seen] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0)]
    # the first reset takes the seed, later ones continue the env's own generator; none after the last step
    assert env.resets == [(11, {"k": 1}), (None, {"k": 1}), (None, {"k": 1})]
    assert [r[0] for r in resets] == [0, 1, 2] and [r[2]["episode"] for r in resets] == [0, 1, 2]
    assert [float(tr.obs[0]) for tr in seen] == [0, 1, 2, 0, 1, 2, 0]
    assert [float(tr.next_obs[0]) for tr in seen] == [1, 2, 3, 1, 2, 3, 1]
    assert [tr.last for tr in seen] == [False, False, True] * 2 + [False]  # the 7th step ends no episode
    assert [tr.terminated for tr in seen] == [tr.last for tr in seen]
    # facts before each action (the reset's at t = 0, with the goal) and after it
    assert [float(tr.facts["xy"][0]) for tr in seen] == [0, 1, 2, 0, 1, 2, 0]
    assert [float(tr.next_facts["xy"][0]) for tr in seen] == [1, 2, 3, 1, 2, 3, 1]
    assert ["goal_xy" in tr.facts for tr in seen] == [tr.t == 0 for tr in seen]
    assert all("goal_xy" in r[3] for r in resets)


def test_rollout_ends_episodes_at_max_steps_and_counts_episodes(counter_facts):
    env, seen = Counter(10), []
    assert rollout(env, lambda obs: np.zeros(1, np.float32), seed=0, episodes=2, max_steps=4, on_step=seen.append) == 8
    assert [(tr.episode, tr.t, tr.last, tr.terminated) for tr in seen] == \
        [(e, t, t == 3, False) for e in range(2) for t in range(4)]
    assert len(env.resets) == 2
    with pytest.raises(ValueError, match="steps or episodes"):
        rollout(env, lambda obs: 0, seed=0)
    with pytest.raises(ValueError, match="max_steps must be a positive integer, got 0"):
        rollout(env, lambda obs: 0, seed=0, episodes=1, max_steps=0)


def test_run_episode_records_what_the_loop_reports(counter_facts):
    """Frames every 2nd step plus the last, positions before each action, the reset's numeric info and
    facts (not xy), success from the last step's info, the return."""
    env = Counter(5)
    acts = iter([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    ep = agent.run_episode(env, None, seed=4, record=True, frame_every=2, options={"o": 1},
                           policy=lambda obs: np.array([next(acts)], np.float32))
    assert env.resets == [(4, {"o": 1})]
    assert ep.length == 5 and ep.terminated and ep.success is True and len(ep.seconds) == 5
    assert ep.frames == [0, 2, 4, 5]
    assert [float(o[0]) for o in ep.observations] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(np.array(ep.positions)[:, 0], [0, 1, 2, 3, 4])
    assert sorted(ep.reset_info) == ["episode", "goal_xy"]  # "name" is not numeric; xy is a position
    np.testing.assert_allclose(ep.rewards, [0.1, 0.2, 0.3, 0.4, 0.5], rtol=1e-6)
    assert ep.ret == pytest.approx(1.5, rel=1e-6)
    cut = agent.run_episode(Counter(5), None, seed=0, max_steps=2, policy=lambda obs: np.zeros(1, np.float32))
    assert cut.length == 2 and not cut.terminated and cut.success is False


# ----------------------------------------------------------------------------- the same episodes as before
def _sums(d):
    return {k: (float(d[k].astype(np.float64).sum()), float(np.abs(d[k].astype(np.float64)).sum()))
            for k in ("obs", "action", "reward", "next_obs")}


# recorded with the loops as they were before (f073c88): episodes' ends, sums and |sums| of the columns
BEFORE = {
    ("Pendulum-v1", 250, 3, 1): ([199], [], {"obs": (-127.62093848641962, 869.053558842279),
                                             "action": (11.142020411789417, 230.7487720400095),
                                             "reward": (-1834.1837141513824, 1834.1837141513824),
                                             "next_obs": (-124.3370473375544, 872.659222134389)}),
    ("CartPole-v1", 120, 0, 1): ([17, 33, 44, 58, 69, 84, 108], [17, 33, 44, 58, 69, 84, 108],
                                 {"obs": (-3.4194178126272163, 149.4564563634558), "action": (66.0, 66.0),
                                  "reward": (120.0, 120.0), "next_obs": (-4.7929806049432955, 171.54600551656767)}),
    ("MountainCarContinuous-v0", 90, 0, 30): ([], [], {"obs": (-55.90623139729723, 56.0011837775819),
                                                       "action": (-33.13668519258499, 49.57208722829819),
                                                       "reward": (-3.38954356033355, 3.38954356033355),
                                                       "next_obs": (-56.201946335379034, 56.30950767407194)}),
}


@pytest.mark.parametrize("key", list(BEFORE), ids=lambda k: k[0])
def test_collect_gives_the_episodes_it_gave_before(key):
    env_id, steps, seed, repeat = key
    ends, terms, sums = BEFORE[key]
    d = collect(env_id, steps, seed=seed, repeat=repeat, progress=False)
    assert np.flatnonzero(d["terminated"] | d["truncated"]).tolist() == ends
    assert np.flatnonzero(d["terminated"]).tolist() == terms
    assert d["_meta"]["episodes"] == len(ends) + 1
    got = _sums(d)
    for k, want in sums.items():
        np.testing.assert_allclose(got[k], want, rtol=1e-9, err_msg=k)


def test_collect_with_a_planner_and_epsilon_gives_the_episodes_it_gave_before():
    """CartPole, a 4-step exhaustive planner, a random action 80% of the time: the pole falls at step 51,
    the planner's state restarts with the second episode."""
    cp = agent.make_planner(ebmgraph.compile(EX / "cartpole_mpc.yaml", sizes={"T": 4}), "CartPole-v1", seed=2)
    d = collect("CartPole-v1", 80, planner=cp, epsilon=0.8, seed=5, progress=False)
    assert np.flatnonzero(d["terminated"]).tolist() == [51] and d["_meta"]["episodes"] == 2
    assert np.packbits(d["action"].astype(bool)).tobytes().hex() == "a9371316f75b93b85614"
    np.testing.assert_allclose(_sums(d)["obs"], (-4.559223357762676, 67.89274874777766), rtol=1e-9)


def test_run_gives_the_pendulum_returns_it_gave_before():
    """Two 25-step episodes planned with the true dynamics (MPPI, the acting defaults), the planner's random
    state carried from the first into the second."""
    p = agent.make_planner(ebmgraph.compile(EX / "pendulum_mpc.yaml", sizes={"T": 8}), "Pendulum-v1", seed=0)
    res = agent.run("Pendulum-v1", p, episodes=2, seed=0, max_steps=25, progress=False)
    assert [e.length for e in res.episodes] == [25, 25] and res.method == "mppi"
    np.testing.assert_allclose(res.returns, [-120.90601246960634, -0.4782136972645793], rtol=0, atol=1e-3)
    np.testing.assert_allclose(np.ravel(res.episodes[0].actions[:3]), [-1.284835934638977, -2.0, -2.0], atol=1e-5)


def test_collect_and_run_episode_step_the_same_episode():
    """collect's first random episode, replayed as a policy by run_episode with the same reset seed, gives the
    same observations and rewards: one loop, one seeding."""
    d = collect("Pendulum-v1", 200, seed=7, progress=False)
    acts = iter(d["action"])
    env = envs.make_env("Pendulum-v1")
    try:
        ep = agent.run_episode(env, None, seed=7, policy=lambda obs: next(acts))
    finally:
        env.close()
    assert ep.length == 200
    np.testing.assert_array_equal(np.asarray(ep.observations, np.float32), d["obs"])
    np.testing.assert_array_equal(np.asarray(ep.rewards, np.float32), d["reward"])
