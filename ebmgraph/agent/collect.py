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
from .envs import make_env
from .loop import rollout


def _random_action(space, rng: np.random.Generator):
    import gymnasium as gym

    if isinstance(space, gym.spaces.Discrete):
        return int(rng.integers(0, space.n))
    return rng.uniform(space.low, space.high).astype(np.float32)


SWM_EPISODE = 100  # stable-worldmodel's envs have no time limit; the peers collect 100-step episodes
COLUMNS = ("obs", "action", "reward", "terminated", "truncated", "next_obs", "episode", "t")


def collect(env_id: str, steps: int, *, planner=None, seed: int = 0, repeat: int = 1, epsilon: float = 0.0,
            out=None, progress: bool = True, oracle: bool = False, noise: float = 0.2) -> dict:
    """Step ``env_id`` for ``steps`` transitions and (if ``out``) write them to ``out``: ``.npz`` transitions,
    or ``.h5`` episodes, written as each ends, that ``train`` cuts into windows of K steps (:class:`_EpisodeStream`).

    The environment is stepped by :func:`ebmgraph.agent.loop.rollout` (the loop ``plan`` uses too).

    Args:
        planner: an :class:`ebmgraph.agent.Planner` to act with (default: uniform random actions).
        seed: seeds the first reset, the action space and the random policy; later episodes
            continue the environment's own seeded generator.
        repeat: hold each random action this many steps (explores further in MountainCar).
        epsilon: with a planner, take a random action with this probability (exploration).
        oracle: act with OGBench's noisy oracle navigator (point mazes; :mod:`ebmgraph.agent.maze`):
            each episode starts at a random open cell and heads for random goal cells in turn; or with a
            stable-worldmodel env's own data policy (``swm/``: :class:`ebmgraph.agent.swm.Expert`).
        noise: the oracle's action noise (standard deviation).

    Returns:
        the arrays (as numpy) and ``_meta`` (a dict); with an ``.h5`` out, all but the frames (on disk only).
    """
    _check_arguments(steps, repeat, epsilon, out)
    rng = np.random.default_rng(seed)
    env, nav = _make(env_id, planner, oracle, noise, rng)
    env.action_space.seed(seed)
    policy = _Policy(env.action_space, planner, nav, rng, repeat, epsilon)
    stream = out is not None and str(out).endswith(".h5")
    cols = {k: [] for k in (*COLUMNS, "xy")}
    facts = _FACT_COLUMNS.get(_kind(env_id), ()) if stream or nav is not None else ()
    writer = _EpisodeStream(out, facts) if stream else None
    bar = progress_bar(total=steps, disable=not progress, desc=f"collect {env_id}", unit="step")

    def record(tr) -> None:
        if writer is not None:
            writer.step(tr)  # frames go to disk episode by episode; only the small columns stay in memory
        elif facts:
            cols["xy"].append(np.asarray(tr.facts["xy"], np.float32))
        for k, v in zip(COLUMNS, (tr.obs, tr.action, tr.reward, tr.terminated, tr.truncated, tr.next_obs,
                                  tr.episode, tr.t)):
            if writer is None or k not in ("obs", "next_obs"):
                cols[k].append(v)
        bar.update(1)

    try:
        rollout(env, policy, seed=seed, steps=steps, reset=nav.reset if nav is not None else None,
                on_reset=policy.begin, on_step=record)
        arrays = _arrays(cols, env.observation_space)
        meta = _meta(env_id, seed, steps, planner, nav, noise, repeat, epsilon, int(arrays["episode"][-1]) + 1)
        if writer is not None:
            writer.close(meta)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
        env.close()
    if out is not None and not stream:
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays, _meta=np.array(json.dumps(meta)))
        atomic_write_bytes(out, buf.getvalue())
    return {**arrays, "_meta": meta}


# per-frame facts an episode store keeps besides the frames, by kind of environment (the probe's positions, the
# state stable-worldmodel's evaluation sets its envs to)
_FACT_COLUMNS = {"maze": ("xy",), "swm": ("xy", "state")}


def _kind(env_id: str) -> str:
    from .maze import is_maze
    from .swm import is_swm

    return "maze" if is_maze(env_id) else "swm" if is_swm(env_id) else ""


class _EpisodeStream:
    """Episodes written to an ``.h5`` store as they end (:class:`ebmgraph.train.episodes.EpisodeWriter`): the
    frames ``obs`` ``[T + 1, ...]`` and the facts (``xy``, ``state``) per frame, the steps ``action``,
    ``reward``, ``terminated``, ``truncated`` ``[T, ...]``. Published under its name at :meth:`close`; a
    collect that fails or is stopped leaves no file."""

    def __init__(self, out, facts):
        from ..train.episodes import EpisodeWriter

        self.w = EpisodeWriter(out)
        self.facts, self.cur = tuple(facts), None

    def step(self, tr) -> None:
        if self.cur is None:
            self.cur = {"obs": [tr.obs], **{f: [tr.facts[f]] for f in self.facts}, "action": [], "reward": [],
                        "terminated": [], "truncated": []}
        c = self.cur
        c["obs"].append(tr.next_obs)
        for f in self.facts:
            c[f].append(tr.next_facts[f])
        for k, v in (("action", tr.action), ("reward", tr.reward), ("terminated", tr.terminated),
                     ("truncated", tr.truncated)):
            c[k].append(v)
        if tr.last:
            self.flush()

    def flush(self) -> None:
        if self.cur is None:
            return
        c, self.cur = self.cur, None
        odt = np.uint8 if np.asarray(c["obs"][0]).dtype == np.uint8 else np.float32
        frames = {"obs": np.asarray(c["obs"], odt), **{f: np.asarray(c[f], np.float32) for f in self.facts}}
        acts = c["action"]
        steps = {"action": np.asarray(acts, np.int64) if isinstance(acts[0], int) else np.asarray(acts, np.float32),
                 "reward": np.asarray(c["reward"], np.float32), "terminated": np.asarray(c["terminated"], bool),
                 "truncated": np.asarray(c["truncated"], bool)}
        self.w.add(frames=frames, steps=steps)

    def close(self, meta: dict) -> None:
        import json as _json

        self.flush()
        self.w.f.attrs["meta"] = _json.dumps(meta)
        self.w.close()

    def abort(self) -> None:
        self.w.abort()


def _check_arguments(steps: int, repeat: int, epsilon: float, out) -> None:
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    if repeat < 1:
        raise ValueError(f"repeat must be a positive integer, got {repeat}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    if out is not None:
        check_writable(out)  # a path that cannot be written fails now, not after the last step


def _make(env_id: str, planner, oracle: bool, noise: float, rng: np.random.Generator):
    """``(env, navigator)``: the environment, and the oracle navigator acting in it (None without ``oracle``)."""
    from .swm import is_swm

    if not oracle:
        return make_env(env_id, **({"max_episode_steps": SWM_EPISODE} if is_swm(env_id) else {})), None
    from .maze import OracleNavigator, is_maze

    from .swm import Expert, is_swm

    if planner is not None or not (is_maze(env_id) or is_swm(env_id)):
        raise ValueError(f"the oracle (OGBench's navigator, stable-worldmodel's data policies) acts in point mazes "
                         f"and swm/ envs without a planner, not in {env_id}")
    if is_swm(env_id):
        env = make_env(env_id, max_episode_steps=SWM_EPISODE)
        return env, Expert(env, noise, rng)
    env = make_env(env_id, terminate_at_goal=False)
    return env, OracleNavigator(env, noise, rng)


class _Policy:
    """``collect``'s actions: the oracle navigator's, a planner's (a random one with probability
    ``epsilon``), or uniform random ones held ``repeat`` steps. Its memory (the held action, the plan)
    restarts with each episode; the planner's random state restarts from its seed."""

    def __init__(self, space, planner, nav, rng: np.random.Generator, repeat: int, epsilon: float):
        self.space, self.planner, self.nav, self.rng = space, planner, nav, rng
        self.repeat, self.epsilon = repeat, epsilon
        self.begin()

    def begin(self, *_reset) -> None:
        from .mpc import PlanState

        self.t, self.held, self.state = 0, None, PlanState()

    def __call__(self, obs):
        t, self.t = self.t, self.t + 1
        if self.nav is not None:
            return self.nav.act(obs)
        if self.planner is not None and not (self.epsilon and self.rng.random() < self.epsilon):
            from .mpc import plan_step

            action, self.state, _ = plan_step(self.planner, obs, self.state)
            return action
        if self.planner is not None:
            return _random_action(self.space, self.rng)
        if self.held is None or t % self.repeat == 0:
            self.held = _random_action(self.space, self.rng)
        return self.held


def _arrays(cols: dict, space) -> dict:
    """The recorded columns as arrays: images stay integers (uint8: a quarter of float32's size), everything
    else is float32; actions int64 for a Discrete space."""
    odt = space.dtype if np.issubdtype(space.dtype, np.integer) else np.float32
    arrays = {k: np.asarray(cols[k], odt) for k in ("obs", "next_obs") if cols[k]}
    arrays |= {"reward": np.asarray(cols["reward"], np.float32), "terminated": np.asarray(cols["terminated"], bool),
              "truncated": np.asarray(cols["truncated"], bool), "episode": np.asarray(cols["episode"], np.int32),
              "t": np.asarray(cols["t"], np.int32)}
    acts = cols["action"]
    arrays["action"] = np.asarray(acts, np.int64) if isinstance(acts[0], int) else np.asarray(acts, np.float32)
    if len(cols["xy"]):
        arrays["xy"] = np.asarray(cols["xy"], np.float32)  # the point's position (pixels observe it only as an image)
    return arrays


def _meta(env_id, seed, steps, planner, nav, noise, repeat, epsilon, episodes) -> dict:
    import gymnasium

    return {"env_id": env_id, "seed": seed, "steps": steps, "episodes": episodes,
            "policy": (getattr(nav, "label", f"oracle navigator (noise {noise})") if nav is not None else "random" if planner is None
                       else f"plan {planner.ebm.graph.name} ({planner.method})"),
            "repeat": repeat, "epsilon": epsilon, "gymnasium": gymnasium.__version__,
            "python": platform.python_version(), "date": datetime.date.today().isoformat()}


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
