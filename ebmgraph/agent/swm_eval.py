"""stable-worldmodel's evaluation loop with an ebmgraph planner (issue 29): ``World.evaluate`` in its dataset-driven
mode over held-out episodes of an ebmgraph episode store (:class:`StoreDataset`), start and goal ``goal_offset``
steps apart, ``eval_budget`` steps, its own success test (the env's ``terminated``); the planner wrapped as its
policy (:class:`PlannerPolicy`), all live episodes planned in one batched minimize per step. The environments
themselves are :mod:`ebmgraph.agent.swm`'s.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from .batch import BatchState, padded_rows, plan_batch
from .swm import SIZE, import_swm


class StoreDataset:
    """What ``World.evaluate(dataset=...)`` reads, over an ebmgraph episode store: columns ``pixels``
    (``[T, 3, S, S]`` uint8 tensors, as its HDF5 reader gives) and ``state`` (the env's state per frame)."""

    column_names = ["pixels", "state"]

    def __init__(self, episodes, pixels: str = "obs", state: str = "state"):
        self.ep, self.pixels, self.state = episodes, pixels, state

    def load_chunk(self, episodes_idx, start, end) -> list[dict]:
        import torch

        out = []
        for e, s, t in zip(np.asarray(episodes_idx), np.asarray(start), np.asarray(end)):
            w = self.ep.window(int(e), int(s), int(t - s - 1), fields=[self.pixels, self.state])
            out.append({"pixels": torch.from_numpy(np.ascontiguousarray(w[self.pixels])).permute(0, 3, 1, 2),
                        "state": torch.from_numpy(np.asarray(w[self.state], np.float32))})
        return out


def pick_starts(lengths: np.ndarray, episodes: np.ndarray, goal_offset: int, n: int, seed: int):
    """``(episode, start)`` pairs as the peers pick them (stable-worldmodel's ``eval_wm.py``): over every step
    of the given episodes that has ``goal_offset`` more steps after it, ``n`` drawn without replacement by
    ``default_rng(seed)``, sorted. Raises ValueError when fewer than ``n`` steps qualify."""
    rows = [(int(e), s) for e in episodes for s in range(int(lengths[e]) - goal_offset + 1)]
    if len(rows) < n:
        raise ValueError(f"only {len(rows)} start steps have {goal_offset} steps after them in the held-out "
                         f"episodes; {n} are needed (collect more or longer episodes)")
    pick = np.sort(np.random.default_rng(seed).choice(len(rows), n, replace=False))
    return np.asarray([rows[i][0] for i in pick]), np.asarray([rows[i][1] for i in pick])


class PlannerPolicy:
    """An ebmgraph planner as a stable-worldmodel policy: ``World`` hands over the stacked infos of its N envs
    each step; all live envs are planned in one batched :func:`ebmgraph.minimize` toward their goal frames
    (:func:`ebmgraph.agent.batch.plan_batch`). Decision times are kept in ``seconds`` (one entry per batched
    call, with the number of envs it planned)."""

    def __init__(self, planner, goal_var: str, record: int = 0):
        from stable_worldmodel.policy import BasePolicy

        self._base = BasePolicy
        self.planner, self.goal_var = planner, goal_var
        self.type, self.seconds = "ebmgraph", []
        self.env = None
        self.state = None
        self.record = record  # the first `record` envs' frames are kept (pictures): self.frames[i] per env
        self.frames: list[list[np.ndarray]] = []
        self.goals: list[np.ndarray] = []

    def set_env(self, env):
        self.env = env
        self.state = None

    def get_action(self, info: dict, **_) -> np.ndarray:
        obs = np.asarray(info["pixels"])[:, -1]
        goal = np.asarray(info["goal"])[:, -1]
        # every other value the spec reads from the infos (plan --from-info VAR=KEY, e.g. st=state, gst=goal_state:
        # the env's state is the stored one at the start and the env's own after each step)
        given = {self.goal_var: goal}
        for var, key in getattr(self.planner.binding, "from_info", {}).items():
            if var != self.goal_var:
                if key not in info:
                    raise ValueError(f"--from-info {var}={key}: World's infos have no {key!r} (they have "
                                   f"{', '.join(sorted(k for k in info if not k.startswith('_')))})")
                given[var] = np.asarray(info[key])[:, -1]
        n = len(obs)
        live = ~np.asarray(info.get("terminated", np.zeros((n, 1), bool))).reshape(n).astype(bool)
        if self.state is None:
            self.state = BatchState()
        if self.record:
            _keep_frames(self.frames, self.goals, obs, goal, live, self.record)
        out = np.zeros((n, *self.planner.binding.low.shape), np.float32)
        if live.any():
            # the live envs are planned, padded with finished ones up to a power of two: a compiled planner is built
            # for a few batch shapes, not once per number of envs still running, and finished envs cost little
            rows = padded_rows(live)
            t0 = time.perf_counter()
            acts, self.state = plan_batch(self.planner, obs, given, self.state, rows)
            self.seconds.append((time.perf_counter() - t0, int(live.sum())))
            out[live] = acts[live[rows]]
        return out


def _keep_frames(frames: list, goals: list, obs: np.ndarray, goal: np.ndarray, live: np.ndarray, k: int) -> None:
    """Append each of the first ``k`` envs' frame while it is live (a finished env's frame stays its last)."""
    k = min(k, len(obs))
    if not frames:
        frames.extend([] for _ in range(k))
        goals.extend(np.array(goal[i]) for i in range(k))
    for i in range(k):
        if live[i]:
            frames[i].append(np.array(obs[i]))


def evaluate(planner, store, *, env_id: str = "swm/TwoRoom-v1", goal_var: str = "goal", held_out=None,
             goal_offset: int = 25, budget: int = 50, episodes: int = 50, seed: int = 42, size: int = SIZE,
             record: int = 0) -> dict:
    """Success rate of ``planner`` under stable-worldmodel's dataset-driven ``World.evaluate`` (``planner`` None:
    its ``RandomPolicy``, seeded with ``seed``, the baseline to state beside a result; an object with
    ``get_action(info)``: that stable-worldmodel policy as it is).

    ``episodes`` envs start at ``(episode, start)`` pairs drawn from ``held_out`` episodes of ``store`` (all of
    them by default) as the peers draw them (:func:`pick_starts`, seed ``seed``); each env is set to the
    stored state at ``start`` (``_set_state``) with the target at the stored state ``goal_offset`` steps later
    (``_set_goal_state``), and its goal frame is the stored frame there. Success is the env's ``terminated``
    at any step within ``budget`` steps.

    Returns:
        ``success_rate`` (percent), ``successes`` (bool per env), ``episodes``/``starts``, ``seconds`` per
        batched decision and ``ms_per_decision`` (batched time divided by the envs it planned, median), and the
        wall time; with ``record`` (a planner's run), ``frames`` (the first ``record`` envs' frames, the last one
        each env's final frame) and ``goals`` (their goal frames).
    """
    from ..train.episodes import Episodes

    swm = import_swm()
    ep = store if hasattr(store, "window") else Episodes(store)
    held = np.arange(len(ep)) if held_out is None else np.asarray(held_out)
    eps, starts = pick_starts(ep.lengths, held, goal_offset, episodes, seed)
    world = swm.World(env_id, num_envs=episodes, image_shape=(size, size), max_episode_steps=2 * budget)
    if planner is None:  # the baseline beside every figure: stable-worldmodel's own uniform random policy
        policy = swm.policy.RandomPolicy(seed=seed)
        policy.seconds = []
    elif hasattr(planner, "get_action"):  # a stable-worldmodel policy as it is (a reference line, e.g. a script's)
        policy = planner
        policy.seconds = getattr(policy, "seconds", [])
    else:
        policy = PlannerPolicy(planner, goal_var, record=record)
    world.set_policy(policy)
    setters = [{"method": "_set_state", "args": {"state": {"value": "state", "in_dataset": True}}},
               {"method": "_set_goal_state", "args": {"goal_state": {"value": "goal_state", "in_dataset": True}}}]
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # World's own gym.make keeps gymnasium's checker: its per-step warnings
        warnings.filterwarnings("ignore", message=".*WARN:")
        res = world.evaluate(dataset=StoreDataset(ep), episodes_idx=eps.tolist(), start_steps=starts.tolist(),
                             goal_offset=goal_offset, eval_budget=budget, callables=setters)
    wall = time.perf_counter() - t0
    per = [s / max(k, 1) for s, k in policy.seconds]
    extra = {}
    if record and isinstance(policy, PlannerPolicy):
        # the frame each env ended on: World's infos after the last step (a finished env's infos stay as they were)
        last = np.asarray(world.infos["pixels"])[:, -1]
        for i, f in enumerate(policy.frames):
            f.append(np.array(last[i]))
        extra = {"frames": policy.frames, "goals": policy.goals}
    return {**extra, "success_rate": float(res["success_rate"]), "successes": np.asarray(res["episode_successes"], bool),
            "episodes": eps, "starts": starts, "seconds": policy.seconds,
            "ms_per_decision": 1000 * float(np.median(per)) if per else float("nan"), "wall_s": wall,
            "goal_offset": goal_offset, "budget": budget, "seed": seed}
