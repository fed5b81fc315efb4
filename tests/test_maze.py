"""OGBench's point mazes as installed (issue 13's foundation): the environment, the noisy oracle
navigator that generates the local navigate-style data, the goal from the reset's info, reset options
cycled over episodes, and a flat planner end to end on one short task."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("ogbench")

import ebmgraph  # noqa: E402
from ebmgraph import agent  # noqa: E402
from ebmgraph.agent import EnvMismatch  # noqa: E402
from ebmgraph.agent.collect import collect, read_meta  # noqa: E402
from ebmgraph.agent.envs import make_env  # noqa: E402
from ebmgraph.agent.maze import OracleNavigator, free_cells  # noqa: E402
from ebmgraph.cli import main  # noqa: E402

MEDIUM = "pointmaze-medium-navigate-v0"

# the point moves 0.2·a per step where no wall is in the way: a wall-blind model of the maze
KNOWN = """
name: pointmaze_wall_blind
figure: 4
index: {t: 0..T-1}
sizes: {T: 10}
variables:
  x: {observed: [2]}
  goal: {observed: [2]}
  a[t]: {action: [2], bounds: [-1, 1]}
modules:
  Step: scale(0.2, 0.2)
functions:
  s[0]: identity(x)
  s[t+1]: s[t] + Step(a[t])
energy:
  D[t]: sq_dist(s[t+1], goal)
"""


def test_the_noiseless_oracle_solves_all_five_medium_tasks():
    env = make_env(MEDIUM, terminate_at_goal=False)
    u = env.unwrapped
    nav = OracleNavigator(env, 0.0, np.random.default_rng(0))
    steps = []
    for k in range(1, 6):
        env.reset(seed=k, options={"task_id": k})
        nav.goal_xy = np.asarray(u.cur_goal_xy)
        for t in range(1000):
            if np.linalg.norm(np.asarray(u.get_xy()) - nav.goal_xy) < 1.0:
                break
            env.step(nav.act(None))
        steps.append(t)
    env.close()
    assert max(steps) < 400, steps  # reached, and by a short path (OGBench's medium tasks are 88-163 steps here)


def test_collected_navigate_data_moves_as_the_env_and_covers_the_maze(tmp_path):
    out = tmp_path / "maze.npz"
    data = collect(MEDIUM, 3000, oracle=True, noise=0.2, seed=3, out=out, progress=False)
    meta = read_meta(out)
    assert meta["policy"] == "oracle navigator (noise 0.2)" and meta["episodes"] == 3
    obs, act, nxt = data["obs"], data["action"], data["next_obs"]
    assert obs.shape == (3000, 2) and act.shape == (3000, 2) and np.abs(act).max() <= 1.0
    free = np.linalg.norm(nxt - (obs + 0.2 * act), axis=1) < 1e-3
    assert 0.7 < free.mean() < 1.0  # most steps move freely; some meet a wall (so walls are in the data)
    env = make_env(MEDIUM)
    cells = {env.unwrapped.xy_to_ij(p) for p in obs}
    assert len(cells) >= 0.6 * len(free_cells(env))  # the navigator wanders the maze, not one corridor
    env.close()
    # same seed, same data
    again = collect(MEDIUM, 3000, oracle=True, noise=0.2, seed=3, progress=False)
    np.testing.assert_array_equal(again["action"], act)
    with pytest.raises(ValueError, match="point mazes"):
        collect("Pendulum-v1", 10, oracle=True, progress=False)


def test_the_goal_comes_from_the_reset_and_tasks_cycle(monkeypatch):
    """Every plan is made toward the goal the env's reset placed for the episode's task (read here from the
    env itself, ``cur_goal_xy``), and the tasks cycle over episodes."""
    from ebmgraph.agent import mpc

    seen = []  # the goal each planning call was given
    real = mpc.minimize

    def spy(ebm, observed, *a, **kw):
        seen.append(np.asarray(observed["goal"], np.float64).reshape(-1).copy())
        return real(ebm, observed, *a, **kw)

    monkeypatch.setattr(mpc, "minimize", spy)

    def placed(task, seed):  # the goal the env's reset puts down for this task and seed (noise included)
        e = make_env(MEDIUM)
        e.reset(seed=seed, options={"task_id": task})
        g = np.asarray(e.unwrapped.cur_goal_xy, np.float64)
        e.close()
        return g

    goals = {(k, sd): placed(k, sd) for k, sd in [(3, 0), (1, 0), (2, 1), (1, 2)]}
    assert len({tuple(g) for g in goals.values()}) == 4  # four different goals: a wrong one cannot pass
    ebm = ebmgraph.compile(ebmgraph.loads(KNOWN))
    p = agent.make_planner(ebm, MEDIUM, method="mppi", settings={"samples": 16}, from_info={"goal": "goal"})
    env = make_env(MEDIUM)
    ep = agent.run_episode(env, p, seed=0, options={"task_id": 3}, max_steps=3)
    env.close()
    assert ep.length == 3 and len(seen) == 3
    for g in seen:
        np.testing.assert_allclose(g, goals[3, 0], rtol=0, atol=1e-5)
    seen.clear()
    res = agent.run(MEDIUM, p, episodes=3, seed=0, max_steps=2, progress=False,
                    options=[{"task_id": 1}, {"task_id": 2}])
    starts = [np.asarray(e.observations[0]) for e in res.episodes]  # task 1 starts at (0, 0), task 2 at (0, 20)
    assert np.linalg.norm(starts[0] - starts[2]) < 1.5 and np.linalg.norm(starts[0] - starts[1]) > 15
    assert len(seen) == 6
    for i, key in enumerate([(1, 0), (1, 0), (2, 1), (2, 1), (1, 2), (1, 2)]):  # 2 decisions per episode (seed i)
        np.testing.assert_allclose(seen[i], goals[key], rtol=0, atol=1e-5, err_msg=f"decision {i}, (task, seed) {key}")
    with pytest.raises(EnvMismatch, match="observes x, goal besides given values.*--from-info"):
        agent.make_planner(ebm, MEDIUM)
    with pytest.raises(EnvMismatch, match="info\\['nope'\\]"):
        bad = agent.make_planner(ebm, MEDIUM, from_info={"goal": "nope"})
        e = make_env(MEDIUM)
        agent.run_episode(e, bad, seed=0, max_steps=1)


def test_a_flat_planner_reaches_a_goal_in_the_open_and_stalls_behind_a_wall(tmp_path, capsys):
    """Medium's task 1 ((0, 0) to (20, 20)) lies along a path that greedy descent on the distance can follow;
    task 3 ((8, 16) to (4, 12)) is behind a wall, where a 10-step wall-blind plan stalls."""
    spec = tmp_path / "known.yaml"
    spec.write_text(KNOWN)
    rc = main(["plan", str(spec), "--env", MEDIUM, "--from-info", "goal=goal", "--reset", "task_id=1,3",
               "--method", "mppi", "--set", "samples=32", "--episodes", "2", "--max-steps", "300", "--no-frames",
               "--quiet", "--json", "--out", str(tmp_path / "run")])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0
    assert summary["lengths"][0] < 300 and summary["returns"][0] == 1.0  # reached (the episode ends at the goal)
    assert summary["lengths"][1] == 300 and summary["returns"][1] == 0.0  # stalled at a wall
    assert summary["successes"] == 1


def test_missing_ogbench_is_a_clear_error(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ogbench(name, *a, **k):
        if name == "ogbench":
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ogbench)
    with pytest.raises(EnvMismatch, match="needs ogbench"):
        make_env(MEDIUM)
    torch.manual_seed(0)


def test_the_visual_maze_observes_pixels_and_its_goal_as_an_image(tmp_path):
    env = make_env("visual-" + MEDIUM)
    o, info = env.reset(seed=0, options={"task_id": 1})
    assert o.shape == (64, 64, 3) and o.dtype == np.uint8 and info["goal"].shape == (64, 64, 3)
    o2, *_ = env.step(np.array([1.0, 0.0], np.float32))
    assert np.abs(o2.astype(int) - o.astype(int)).sum() > 0  # the point moved in the picture
    again, _ = env.reset(seed=0, options={"task_id": 1})
    np.testing.assert_array_equal(again, o)
    env.close()
    data = collect("visual-" + MEDIUM, 20, oracle=True, seed=0, progress=False)
    assert data["obs"].dtype == np.uint8 and data["obs"].shape == (20, 64, 64, 3) and data["xy"].shape == (20, 2)
