"""OGBench's point mazes (§4.4–4.8: goal-reaching with world models), as installed from PyPI.

``pointmaze-{medium,large,giant}-navigate-v0`` come from ``ogbench.make_env_and_datasets(id,
env_only=True)``: nothing is downloaded. The observation is the point's xy ``[2]``, the action a
displacement ``[2]`` in ``[-1, 1]`` (the env moves ``0.2·a`` per step, walls stop it), an episode is
1,000 steps, success is xy within 1.0 of the goal (``info["success"]``), and the five evaluation
tasks are ``reset(options={"task_id": k})``, k = 1..5; the goal's xy is ``info["goal"]``.

Data are generated here, never downloaded, following OGBench's *navigate* protocol: a noisy
oracle navigator (:class:`OracleNavigator`) heads for the next waypoint of a BFS over the maze's
cells (the env's ``get_oracle_subgoal``) toward a random goal cell, and draws a new goal cell on
arrival; Gaussian noise of standard deviation ``noise`` is added to its unit-speed action.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

MAZES = ("pointmaze-medium-navigate-v0", "pointmaze-large-navigate-v0", "pointmaze-giant-navigate-v0")
PREFIXES = ("pointmaze-", "visual-pointmaze-")
VISUAL = "visual-"  # visual-pointmaze-*: the same maze observed as 64×64 pixels (ob_type="pixels")


def is_maze(env_id: str) -> bool:
    return env_id.startswith(PREFIXES)


def _is_maze_env(env) -> bool:
    u = env.unwrapped
    return hasattr(u, "get_xy") and hasattr(u, "cur_goal_xy")


def _maze_facts(env, at_reset: bool) -> dict:
    """The point's xy at every step (whatever the observation: pixels too) and the goal's xy at the reset."""
    out = {"xy": np.asarray(env.unwrapped.get_xy(), np.float64)}
    if at_reset:
        out["goal_xy"] = np.asarray(env.unwrapped.cur_goal_xy, np.float64)
    return out


FACTS = (_is_maze_env, _maze_facts)  # registered by envs.make_env (envs.register_facts)


def make_maze(env_id: str, *, render: bool = False, **kwargs):
    """``ogbench.make_env_and_datasets(env_id, env_only=True)``; shadows off when rendering (5–7× faster).

    ``visual-pointmaze-*`` is the same maze with ``ob_type="pixels", width=64, height=64``: the
    observation is OGBench's top-down 64×64×3 image (uint8; the floor coloured by position) and the
    reset's ``info["goal"]`` the goal's image.
    """
    import os

    os.environ.setdefault("MUJOCO_GL", "egl")  # off-screen rendering on a headless machine (before mujoco loads)
    # Mesa's software EGL (llvmpipe) loads the system's libLLVM with global symbols; Triton's libtriton.so loaded
    # after it binds its own LLVM's static initializers to that library and the process dies (SIGSEGV in
    # llvm::cl::Option::addArgument; seen in tests: a maze, then a plan that imports Triton). Loading Triton
    # first keeps each LLVM to itself.
    try:
        import triton  # noqa: F401
    except ImportError:
        pass
    import ogbench  # an ImportError becomes make_env's EnvMismatch naming the extra

    pixels = env_id.startswith(VISUAL)
    if pixels:
        env_id = env_id[len(VISUAL):]
        kwargs.update(ob_type="pixels", width=64, height=64)
    if render and not pixels:
        kwargs.setdefault("render_mode", "rgb_array")
        kwargs.setdefault("width", 200)
        kwargs.setdefault("height", 200)
    env = SeededReset(ogbench.make_env_and_datasets(env_id, env_only=True, **kwargs))
    if render or pixels:
        m = env.unwrapped.model
        m.vis.quality.shadowsize = 0
        m.light_castshadow[:] = 0
    return env


class SeededReset(gym.Wrapper):
    """OGBench draws the start's (and goal's) position noise from numpy's global generator, which a
    reset's seed does not reach; this wrapper seeds it from the reset's seed (and seeds the action
    space, which the reset samples from), so that a seeded episode is reproducible."""

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            np.random.seed(seed)
            self.env.unwrapped.action_space.seed(seed)
        return self.env.reset(seed=seed, options=options)


def free_cells(env) -> list[tuple[int, int]]:
    """The maze's open cells ``(i, j)`` (``maze_map == 0``)."""
    grid = env.unwrapped.maze_map
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(grid == 0))]


class OracleNavigator:
    """OGBench's navigate data policy for point mazes: toward the BFS waypoint, with noise.

    Args:
        env: a point-maze env (made with :func:`make_maze`, ``terminate_at_goal=False``).
        noise: standard deviation of the Gaussian added to the unit-speed action.
        rng: the generator for start cells, goal cells and noise.
    """

    def __init__(self, env, noise: float, rng: np.random.Generator):
        if not noise >= 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.env, self.noise, self.rng = env, float(noise), rng
        self.cells = free_cells(env)
        self.goal_xy = None

    def _new_goal(self):
        u = self.env.unwrapped
        ij = self.cells[int(self.rng.integers(len(self.cells)))]
        u.set_goal(goal_ij=ij)
        self.goal_xy = np.asarray(u.cur_goal_xy, np.float64)

    def reset(self, seed=None):
        """Start at a random open cell with a random goal cell; returns ``(obs, info)``."""
        a, b = (self.cells[int(k)] for k in self.rng.integers(len(self.cells), size=2))
        obs, info = self.env.reset(seed=seed, options={"task_info": {"init_ij": a, "goal_ij": b}})
        self.goal_xy = np.asarray(self.env.unwrapped.cur_goal_xy, np.float64)
        return obs, info

    def act(self, obs) -> np.ndarray:
        u = self.env.unwrapped
        xy = np.asarray(u.get_xy(), np.float64)
        if np.linalg.norm(xy - self.goal_xy) < 1.0:
            self._new_goal()
        sub, _ = u.get_oracle_subgoal(xy, self.goal_xy)
        # in the goal's cell the waypoint is the cell's centre: aim at the goal itself
        if u.xy_to_ij(xy) == u.xy_to_ij(self.goal_xy):
            sub = self.goal_xy
        d = np.asarray(sub, np.float64) - xy
        n = np.linalg.norm(d)
        a = d / n if n > 1e-8 else np.zeros(2)
        a = a + self.noise * self.rng.standard_normal(2)
        return np.clip(a, -1.0, 1.0).astype(np.float32)
