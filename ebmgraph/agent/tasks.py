"""Partially observed tasks built on gymnasium's own environments (registered under ``ebmgraph/``).

``ebmgraph/PendulumGoalCue-v0`` is Pendulum-v1 (its physics as installed, with gravity ``g = 2`` so
that every angle can be held with the env's ±2 torque) whose goal — an angle the pendulum must be
brought to and held at — is shown only in the first observation of the episode. Afterwards the
observation carries no trace of it, so an agent that does not remember the goal cannot reach it:
the task of the world-state memory (§3.3, §4.9, eq. 15–20; specs/fig02_memory_goal.yaml).

Observation ``[cos θ, sin θ, θ̇, seen, cos θ_g, sin θ_g]``: ``seen`` is 1 and the goal's direction is
given on the first observation only (zeros after). Reward ``−(d² + 0.1 θ̇² + 0.001 u²)`` with ``d``
the angle to the goal; ``info["success"]`` (at the last step) says whether the pendulum stayed
within :data:`TOLERANCE` of the goal for each of the last :data:`HOLD` steps.
"""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

GOALS = (0.0, math.pi / 2, math.pi, -math.pi / 2)  # θ_g: up, left, down, right (θ = 0 is upright)
TOLERANCE = 0.25  # rad
HOLD = 50  # steps
GRAVITY = 2.0
IDS = ("ebmgraph/PendulumGoalCue-v0",)


def _angle(x):
    return (x + math.pi) % (2 * math.pi) - math.pi


class PendulumGoalCue(gym.Wrapper):
    """Pendulum-v1 with a goal angle seen once (see the module docstring).

    ``reset(options={"goal": k})`` picks goal ``GOALS[k]``; otherwise the reset's seed does.
    """

    def __init__(self, env):
        super().__init__(env)
        low = np.array([-1, -1, -8, 0, -1, -1], np.float32)
        self.observation_space = gym.spaces.Box(low, -low + np.array([0, 0, 0, 1, 0, 0], np.float32),
                                                dtype=np.float32)
        self.goal, self.inside = 0.0, 0

    def _obs(self, o, first: bool):
        cue = [1.0, math.cos(self.goal), math.sin(self.goal)] if first else [0.0, 0.0, 0.0]
        return np.concatenate([np.asarray(o, np.float32), np.asarray(cue, np.float32)])

    def reset(self, *, seed=None, options=None):
        o, info = self.env.reset(seed=seed)
        options = dict(options or {})
        k = options.get("goal")
        if k is None:
            k = int(self.env.np_random.integers(len(GOALS)))
        if not (isinstance(k, (int, np.integer)) and 0 <= k < len(GOALS)):
            raise ValueError(f"goal must be an integer in 0..{len(GOALS) - 1}, got {k!r}")
        self.goal, self.inside = GOALS[int(k)], 0
        return self._obs(o, True), {**info, "goal": int(k), "goal_angle": self.goal}

    def step(self, action):
        o, _, term, trunc, info = self.env.step(action)
        th, thdot = self.env.unwrapped.state
        d = _angle(float(th) - self.goal)
        u = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -2.0, 2.0))
        reward = -(d * d + 0.1 * float(thdot) ** 2 + 0.001 * u * u)
        self.inside = self.inside + 1 if abs(d) < TOLERANCE else 0
        info = {**info, "angle_to_goal": d, "success": self.inside >= HOLD}
        return self._obs(o, False), reward, term, trunc, info


def make_pendulum_goal_cue(g: float = GRAVITY, **kwargs):
    """The entry point gymnasium calls for ``ebmgraph/PendulumGoalCue-v0``."""
    return PendulumGoalCue(gym.make("Pendulum-v1", g=g, **kwargs))


def register() -> None:
    """Register ebmgraph's tasks with gymnasium (idempotent)."""
    if IDS[0] not in gym.registry:
        gym.register(id=IDS[0], entry_point="ebmgraph.agent.tasks:make_pendulum_goal_cue")
