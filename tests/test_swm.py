"""stable-worldmodel's TwoRoom through ebmgraph (issue 29): the env observed as the pixels its own evaluation loop
shows a policy, collected with its own data policy into an episode store, and ``World.evaluate`` run over that
store with (start, goal) pairs set from it. Oracles: the frames World renders, a policy that replays the stored
actions (it must reach every goal), and per-episode planning for the batched planner."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

swm_mod = pytest.importorskip("ebmgraph.agent.swm")
try:
    swm_mod.import_swm()
except ImportError as exc:  # the extra is installed by make test; a user without it skips these
    pytest.skip(f"stable-worldmodel not installed: {exc}", allow_module_level=True)

import ebmgraph  # noqa: E402
from ebmgraph.agent.collect import SWM_EPISODE, collect  # noqa: E402
from ebmgraph.agent.envs import EnvMismatch, make_env  # noqa: E402
from ebmgraph.agent.batch import BatchState, padded_rows, plan_batch  # noqa: E402
from ebmgraph.agent.mpc import PlanState, make_planner, plan_step  # noqa: E402
from ebmgraph.agent import swm_eval  # noqa: E402
from ebmgraph.cli import main  # noqa: E402
from ebmgraph.train.episodes import Episodes  # noqa: E402

EX = Path(__file__).resolve().parents[1] / "examples" / "specs"
ENV = "swm/TwoRoom-v1"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    p = tmp_path_factory.mktemp("tworoom") / "tr.h5"
    collect(ENV, 1500, oracle=True, noise=2.0, seed=0, out=p, progress=False)
    return p


def test_frames_are_the_pixels_world_shows_a_policy():
    import stable_worldmodel as swm

    env = make_env(ENV)
    obs, info = env.reset(seed=3)
    world = swm.World(ENV, num_envs=1, image_shape=(64, 64), max_episode_steps=10)
    world.reset(seed=0)
    u = world.envs.envs[0].unwrapped
    u._set_state(np.asarray(info["state"]))  # World's env put where ours is, then rendered by its wrapper
    frame = swm_mod.resize(swm_mod._as_image(u.render()), 64)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    np.testing.assert_array_equal(obs, frame)
    # the goal frame is the agent drawn at the target
    u._set_state(np.asarray(info["goal_state"]))
    np.testing.assert_array_equal(info["goal"], swm_mod.resize(swm_mod._as_image(u.render()), 64))
    env.close()


def test_collect_stores_frames_states_and_actions_that_agree(store):
    ep = Episodes(store)
    assert set(ep.frames) == {"obs", "state", "xy"} and ep.frames["obs"] == (64, 64, 3)
    assert ep.lengths.sum() == 1500 and ep.lengths.max() <= SWM_EPISODE
    e = int(np.argmax(ep.lengths))
    w = ep.window(e, 0, int(ep.lengths[e]))
    # TwoRoom moves the agent by 5 px times the clipped action unless a wall or the border stops it
    step = np.diff(w["state"], axis=0)
    free = np.all(np.abs(np.clip(w["action"], -1, 1) * 5.0 - step) < 1e-3, axis=1)
    assert free.mean() > 0.6, free.mean()
    np.testing.assert_array_equal(w["xy"], w["state"][:, :2])
    assert np.abs(w["action"]).max() <= 1.0


class _Replay:
    """A World policy that replays the stored actions from each env's start (it knows the (episode, start) pairs)
    and checks that World shows it the stored frames: the start's at t = 0 and the goal's throughout."""

    def __init__(self, ep, eps, starts, offset):
        self.ep, self.eps, self.starts, self.offset, self.t = ep, eps, starts, offset, 0
        self.frames_ok = True

    def set_env(self, env):
        self.env = env

    def get_action(self, info, **_):
        acts = []
        for i, (e, s) in enumerate(zip(self.eps, self.starts)):
            w = self.ep.window(int(e), int(s), self.offset)
            if self.t == 0:
                self.frames_ok &= bool(np.array_equal(info["pixels"][i, -1], w["obs"][0]))
            self.frames_ok &= bool(np.array_equal(info["goal"][i, -1], w["obs"][-1]))
            acts.append(w["action"][min(self.t, self.offset - 1)])
        self.t += 1
        return np.stack(acts)


def test_world_evaluate_over_the_store_sets_each_start_and_goal_from_it(store):
    """Replaying the stored actions reaches every stored goal (the dynamics are deterministic), and the frames
    World shows are the stored ones: the (episode, start) pairs, the offset and the setters line up."""
    import stable_worldmodel as swm

    ep = Episodes(store)
    eps, starts = swm_eval.pick_starts(ep.lengths, np.arange(len(ep)), 10, 8, seed=42)
    assert np.all(starts + 10 <= ep.lengths[eps])
    world = swm.World(ENV, num_envs=8, image_shape=(64, 64), max_episode_steps=40)
    pol = _Replay(ep, eps, starts, 10)
    world.set_policy(pol)
    setters = [{"method": "_set_state", "args": {"state": {"value": "state", "in_dataset": True}}},
               {"method": "_set_goal_state", "args": {"goal_state": {"value": "goal_state", "in_dataset": True}}}]
    res = world.evaluate(dataset=swm_eval.StoreDataset(ep), episodes_idx=eps.tolist(), start_steps=starts.tolist(),
                         goal_offset=10, eval_budget=20, callables=setters)
    assert pol.frames_ok
    assert res["success_rate"] == 100.0


def test_pick_starts_is_the_peers_draw_and_refuses_too_few():
    L = np.array([30, 5, 40])
    e, s = swm_eval.pick_starts(L, np.arange(3), 25, 6, seed=42)
    assert np.all(s + 25 <= L[e]) and set(e) <= {0, 2}
    again = swm_eval.pick_starts(L, np.arange(3), 25, 6, seed=42)
    assert np.array_equal(e, again[0]) and np.array_equal(s, again[1])
    with pytest.raises(ValueError, match="only 22 start steps"):
        swm_eval.pick_starts(L, np.arange(3), 25, 23, seed=0)


def test_a_batch_of_episodes_plans_as_each_one_alone():
    """plan_batch over N observations with per-episode goals gives each episode the plan it gets alone
    (gradient descent: no random draws, rows independent)."""
    ebm = ebmgraph.compile(EX / "tworoom_plan.yaml", sizes={"T": 4}, seed=0).eval()
    pl = make_planner(ebm, ENV, method="gradient", settings={"steps": 5, "lr": 0.1}, from_info={"goal": "goal"})
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (3, 64, 64, 3)).astype(np.uint8)
    goals = rng.integers(0, 256, (3, 64, 64, 3)).astype(np.uint8)
    acts, st = plan_batch(pl, obs, {"goal": goals}, BatchState())
    for i in range(3):
        g = {"goal": torch.as_tensor(goals[i], dtype=ebm.dtype)[None]}
        a, _, _ = plan_step(pl, obs[i], PlanState(given=g, rng=pl.initial_rng()))
        np.testing.assert_allclose(acts[i], a, atol=1e-5)
    # a masked episode keeps its plan; the live ones are planned in order
    acts2, st2 = plan_batch(pl, obs, {"goal": goals}, st, live=np.array([True, False, True]))
    assert acts2.shape == (2, 2)
    torch.testing.assert_close(st2.plan[1], st.plan[1])


def test_plan_evaluates_with_the_peers_loop_from_the_cli(store, tmp_path, capsys):
    assert main(["plan", str(EX / "tworoom_plan.yaml"), "--env", ENV, "--from-info", "goal=goal", "--size", "T=4",
                 "--eval-data", str(store), "--episodes", "4", "--goal-offset", "10", "--budget", "12",
                 "--out", str(tmp_path / "ev"), "--json"]) == 0
    import json

    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["episodes"] == 4 and len(r["successes"]) == 4 and 0 <= r["success_rate"] <= 100
    assert r["protocol"].startswith("stable-worldmodel")
    assert Path(r["files"]["episodes"]).is_file() and Path(r["files"]["gif"]).is_file()


def test_recorded_episodes_start_on_the_stored_frame_and_end_on_the_last_one(store, tmp_path):
    """evaluate(record=k) keeps the first k envs' frames: each starts on the stored start frame, its goal is the
    stored frame goal_offset steps later, it holds at most budget + 1 frames; the picture has one row per env."""
    from PIL import Image

    from ebmgraph.agent import report

    ebm = ebmgraph.compile(EX / "tworoom_plan.yaml", sizes={"T": 4}, seed=0).eval()
    pl = make_planner(ebm, ENV, method="mppi", settings={"samples": 16}, from_info={"goal": "goal"})
    ep = Episodes(store)
    r = swm_eval.evaluate(pl, ep, env_id=ENV, goal_offset=10, budget=12, episodes=4, seed=3, record=3)
    assert len(r["frames"]) == len(r["goals"]) == 3
    for i in range(3):
        e, t = int(r["episodes"][i]), int(r["starts"][i])
        w = ep.window(e, t, 10, fields=["obs"])["obs"]
        np.testing.assert_array_equal(r["frames"][i][0], w[0])
        np.testing.assert_array_equal(r["goals"][i], w[-1])
        assert 2 <= len(r["frames"][i]) <= 13
    png = report.start_goal_final(r["frames"], r["goals"], r["successes"], tmp_path / "e.png", width=64)
    with Image.open(png) as im:
        assert im.size[0] == 3 * 64 + 4 * 4 and im.size[1] > 3 * 64
    gif = report.gif(report.beside(r["frames"][0], r["goals"][0]), tmp_path / "e.gif", every=1, width=130)
    with Image.open(gif) as im:
        assert im.n_frames == len(r["frames"][0]) and im.size == (64 * 2 + 2, 64)
    assert "frames" not in swm_eval.evaluate(pl, ep, env_id=ENV, goal_offset=10, budget=4, episodes=2, seed=3)


def test_every_from_info_value_reaches_the_planner_and_a_wrong_key_is_named(store, monkeypatch):
    """Besides the goal frame, each --from-info VAR=KEY is read from World's infos per step: at the first decision
    `state` is the stored state at each pair's start; a key World does not give is a clear error listing those it
    gives."""
    from types import SimpleNamespace

    seen = []

    def fake_plan_batch(planner, obs, given, state, rows):
        seen.append({k: np.array(v) for k, v in given.items()})
        return np.zeros((len(rows), 2), np.float32), state

    monkeypatch.setattr(swm_eval, "plan_batch", fake_plan_batch)
    stub = SimpleNamespace(binding=SimpleNamespace(from_info={"goal": "goal", "st": "state"}, low=np.zeros(2)))
    ep = Episodes(store)
    r = swm_eval.evaluate(stub, ep, env_id=ENV, goal_offset=10, budget=3, episodes=4, seed=5)
    first = seen[0]
    for i, (e, t) in enumerate(zip(r["episodes"], r["starts"])):
        w = ep.window(int(e), int(t), 10, fields=["obs", "state"])
        np.testing.assert_allclose(first["st"][i], w["state"][0])
        np.testing.assert_array_equal(first["goal"][i], w["obs"][-1])
    stub.binding.from_info = {"goal": "goal", "st": "nope"}
    with pytest.raises(ValueError, match=r"no 'nope' \(they have .*state"):
        swm_eval.evaluate(stub, ep, env_id=ENV, goal_offset=10, budget=3, episodes=4, seed=5)


def test_eval_data_refuses_an_env_that_is_not_stable_worldmodels(store, capsys):
    assert main(["plan", str(EX / "tworoom_plan.yaml"), "--env", "Pendulum-v1", "--eval-data", str(store)]) == 1
    assert "stable-worldmodel's evaluation loop" in capsys.readouterr().err


def test_without_the_extra_the_error_names_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "stable_worldmodel", None)  # import fails as if not installed
    with pytest.raises(EnvMismatch, match=r"ebmgraph\[swm\]"):
        make_env(ENV)


def test_pusht_collects_with_its_own_data_policy(tmp_path):
    """PushT's WeakPolicy (random pushes near the block) drives collect; the store keeps the 7-d state per frame,
    whose first two values are the pusher's position (what the probe reads as xy)."""
    p = tmp_path / "pt.h5"
    collect("swm/PushT-v1", 40, oracle=True, seed=0, out=p, progress=False)
    ep = Episodes(p)
    assert ep.frames == {"obs": (64, 64, 3), "state": (7,), "xy": (2,)} and ep.meta["policy"].endswith("WeakPolicy")
    w = ep.window(0, 0, int(ep.lengths[0]))
    np.testing.assert_array_equal(w["xy"], w["state"][:, :2])
    assert np.abs(w["action"]).max() <= 1.0 and np.ptp(w["xy"], axis=0).max() > 1.0  # the pusher moved


def test_the_live_envs_are_planned_in_a_few_batch_shapes():
    """World's finished envs are padded in up to a power of two (a compiled planner sees few shapes); every live
    env is always planned."""
    rng = np.random.default_rng(0)
    for n in (1, 5, 50):
        for _ in range(20):
            live = rng.random(n) < rng.random()
            if not live.any():
                continue
            rows = padded_rows(live)
            k = int(rows.sum())
            assert (rows | ~live).all() and (k == n or k & (k - 1) == 0) and k < 2 * live.sum() + 1


def test_two_levels_in_a_batch_set_each_episodes_subgoal_as_alone():
    """plan_batch with an upper level (top-down): every row's sub-goal and plan are those plan_step's two-level
    planning gives that episode alone (gradient descent: deterministic), for rows whose goal is far and near."""
    from ebmgraph.infer.hierarchical import AbstractGraph

    ebm = ebmgraph.compile(EX / "tworoom_plan_two.yaml", sizes={"T": 3}, seed=0).eval()
    rng = np.random.default_rng(1)
    obs = rng.integers(0, 256, (3, 64, 64, 3)).astype(np.uint8)
    goals = np.concatenate([rng.integers(0, 256, (2, 64, 64, 3)), obs[2:3]]).astype(np.uint8)  # row 2: at its goal
    with torch.no_grad():
        enc = ebm.evaluate({"x": torch.as_tensor(np.concatenate([obs, goals]), dtype=ebm.dtype)}, outputs=["s[0]"])["s[0]"]
    # a chain of abstract states through the encodings: 0 -> 1 -> ... (the data's moves)
    walk = torch.cat([enc[:1] + (enc[3:4] - enc[:1]) * f for f in np.linspace(0, 1, 12)]).numpy()
    up = AbstractGraph.fit(walk, np.zeros(len(walk)), clusters=6, pool=1, dims=tuple(range(32)), seed=0)
    us = {"goal": "g", "subgoal": "sub", "state": "s", "mode": "top_down"}
    pl = make_planner(ebm, ENV, method="gradient", settings={"steps": 3, "lr": 0.1}, from_info={"goal": "goal"},
                      upper=up, upper_settings=us)
    acts, _ = plan_batch(pl, obs, {"goal": goals}, BatchState())
    for i in range(3):
        g = {"goal": torch.as_tensor(goals[i], dtype=ebm.dtype)[None]}
        a, _, d = plan_step(pl, obs[i], PlanState(given=g, rng=pl.initial_rng()))
        np.testing.assert_allclose(acts[i], a, atol=1e-5)
