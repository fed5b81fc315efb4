"""Transitions from a real environment, for training world models (§3.1.2: the world model is
learned from what the agent sees).

``collect(env_id, steps)`` steps a gymnasium environment with a random policy (optionally
holding each action for ``repeat`` steps) or with a planner, and writes one ``.npz``:

==============  ===============================================================
``obs``         ``[N, *S]`` float32, the observation the action was taken in
``action``      ``[N, *A]`` float32 (Box) or ``[N]`` int64 (Discrete)
``reward``      ``[N]`` float32
``terminated``  ``[N]`` bool (the MDP ended), ``truncated`` ``[N]`` bool (time limit)
``next_obs``    ``[N, *S]`` float32, the observation after the action
``episode``     ``[N]`` int32 episode number, ``t`` ``[N]`` int32 step within it
``_meta``       a JSON string: env id, seed, policy, steps, episodes, versions, date
==============  ===============================================================

The file is written once, at the end, through a temporary file and a rename: a killed
``collect`` leaves the previous file (if any) as it was and never a half-written one.
Array names match the variables of a world-model spec (``obs``, ``action``, ``next_obs``), so
``ebmgraph train SPEC --data DATA.npz`` trains on it directly.
"""
from __future__ import annotations

import datetime
import io
import json
import platform

import numpy as np

from ..util import atomic_write_bytes, check_writable, progress as progress_bar, read_npz
from .envs import env_facts, make_env


def _random_action(space, rng: np.random.Generator):
    import gymnasium as gym

    if isinstance(space, gym.spaces.Discrete):
        return int(rng.integers(0, space.n))
    return rng.uniform(space.low, space.high).astype(np.float32)


def collect(env_id: str, steps: int, *, planner=None, seed: int = 0, repeat: int = 1, epsilon: float = 0.0,
            out=None, progress: bool = True, oracle: bool = False, noise: float = 0.2) -> dict:
    """Step ``env_id`` for ``steps`` transitions and (if ``out``) write them to ``out`` (``.npz``).

    Args:
        planner: an :class:`ebmgraph.agent.Planner` to act with (default: uniform random actions).
        seed: seeds the first reset, the action space and the random policy; later episodes
            continue the environment's own seeded generator.
        repeat: hold each random action this many steps (explores further in MountainCar).
        epsilon: with a planner, take a random action with this probability (exploration).
        oracle: act with OGBench's noisy oracle navigator (point mazes; :mod:`ebmgraph.agent.maze`):
            each episode starts at a random open cell and heads for random goal cells in turn.
        noise: the oracle's action noise (standard deviation).

    Returns:
        the arrays (as numpy) and ``_meta`` (a dict).
    """
    from .mpc import PlanState, plan_step

    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    if repeat < 1:
        raise ValueError(f"repeat must be a positive integer, got {repeat}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    if out is not None:
        check_writable(out)  # a path that cannot be written fails now, not after the last step
    rng = np.random.default_rng(seed)
    nav = None
    if oracle:
        from .maze import OracleNavigator, is_maze

        if planner is not None or not is_maze(env_id):
            raise ValueError(f"the oracle navigator acts in OGBench's point mazes without a planner, not in {env_id}")
        env = make_env(env_id, terminate_at_goal=False)
        nav = OracleNavigator(env, noise, rng)
    else:
        env = make_env(env_id)
    env.action_space.seed(seed)
    cols = {k: [] for k in ("obs", "action", "reward", "terminated", "truncated", "next_obs", "episode", "t", "xy")}
    pixels = nav is not None and len(env.observation_space.shape) == 3
    obs, _ = nav.reset(seed=seed) if nav is not None else env.reset(seed=seed)
    episode = t = 0
    held, state = None, PlanState()
    bar = progress_bar(total=steps, disable=not progress, desc=f"collect {env_id}", unit="step")
    try:
        for i in range(steps):
            if nav is not None:
                if pixels:
                    cols["xy"].append(np.asarray(env_facts(env)["xy"], np.float32))
                action = nav.act(obs)
            elif planner is not None and not (epsilon and rng.random() < epsilon):
                action, state, _ = plan_step(planner, obs, state)
            elif planner is not None:
                action = _random_action(env.action_space, rng)
            else:
                if held is None or t % repeat == 0:
                    held = _random_action(env.action_space, rng)
                action = held
            nxt, r, term, trunc, _ = env.step(action)
            for k, v in (("obs", obs), ("action", action), ("reward", r), ("terminated", term), ("truncated", trunc),
                         ("next_obs", nxt), ("episode", episode), ("t", t)):
                cols[k].append(v)
            obs, t = nxt, t + 1
            if term or trunc:
                obs, _ = nav.reset() if nav is not None else env.reset()
                episode, t, held, state = episode + 1, 0, None, PlanState()
            bar.update(1)
    finally:
        bar.close()
        env.close()
    import gymnasium

    # images stay integers (uint8: a quarter of float32's size); everything else is float32
    odt = env.observation_space.dtype if np.issubdtype(env.observation_space.dtype, np.integer) else np.float32
    arrays = {"obs": np.asarray(cols["obs"], odt), "next_obs": np.asarray(cols["next_obs"], odt),
              "reward": np.asarray(cols["reward"], np.float32), "terminated": np.asarray(cols["terminated"], bool),
              "truncated": np.asarray(cols["truncated"], bool), "episode": np.asarray(cols["episode"], np.int32),
              "t": np.asarray(cols["t"], np.int32)}
    acts = cols["action"]
    arrays["action"] = np.asarray(acts, np.int64) if isinstance(acts[0], int) else np.asarray(acts, np.float32)
    meta = {"env_id": env_id, "seed": seed, "steps": steps, "episodes": int(arrays["episode"][-1]) + 1,
            "policy": (f"oracle navigator (noise {noise})" if nav is not None else "random" if planner is None
                       else f"plan {planner.ebm.graph.name} ({planner.method})"),
            "repeat": repeat, "epsilon": epsilon, "gymnasium": gymnasium.__version__,
            "python": platform.python_version(), "date": datetime.date.today().isoformat()}
    if nav is not None and len(cols["xy"]):
        arrays["xy"] = np.asarray(cols["xy"], np.float32)  # the point's position (pixels observe it only as an image)
    if out is not None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays, _meta=np.array(json.dumps(meta)))
        atomic_write_bytes(out, buf.getvalue())
    return {**arrays, "_meta": meta}


def read_meta(path) -> dict:
    """The ``_meta`` record of a collected ``.npz`` (loaded without pickle; ``{}`` when it has none).

    Raises:
        ValueError: naming ``path``: not a readable ``.npz`` (:func:`ebmgraph.util.read_npz`), or a
            ``_meta`` that is not a JSON object.
    """
    rec = read_npz(path, ["_meta"], required=False).get("_meta")
    if rec is None:
        return {}
    try:
        meta = json.loads(str(rec))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: its _meta record is not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: its _meta record is not a JSON object")
    return meta
