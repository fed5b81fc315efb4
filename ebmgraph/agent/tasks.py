"""ebmgraph's own tasks, registered with gymnasium under ``ebmgraph/``: two built on gymnasium's
Pendulum-v1 (a goal seen once; a hidden motor gain) and one stochastic point task (``PointPitNoise``).

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

from .. import dynamics as dyn

GOALS = (0.0, math.pi / 2, math.pi, -math.pi / 2)  # θ_g: up, left, down, right (θ = 0 is upright)
TOLERANCE = 0.25  # rad
HOLD = 50  # steps
GRAVITY = 2.0
IDS = ("ebmgraph/PendulumGoalCue-v0", "ebmgraph/PendulumGainNoise-v0", "ebmgraph/PointPitNoise-v0")
GAIN_NOISE = 0.5  # the std of the torque's hidden gain noise
PIT_NOISE = 0.5  # the std of PointPitNoise's hidden command noise
START = (0.3, 0.5)  # PendulumGainNoise starts with |θ| <= 0.3 rad, |θ̇| <= 0.5 rad/s: near upright


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


class PendulumGainNoise(gym.Wrapper):
    """Pendulum-v1 (as installed) whose motor has a hidden gain: the torque applied is
    ``clip(u · (1 + σ·ε), ±2)`` with ``ε ~ N(0, 1)`` drawn afresh each step (seeded by the reset) and
    never observed. The task is to hold the pendulum upright from a start near it (:data:`START`).
    The stochastic variant of §4.8 (Figure 17): a large torque is a risky one.

    ``info["gain"]`` is the step's realized gain (for analysis; the agent does not read it).
    """

    def __init__(self, env, sigma: float = GAIN_NOISE):
        super().__init__(env)
        if not sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)
        self.rng = np.random.default_rng(0)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng([seed, 17])
        return self.env.reset(seed=seed, options={"x_init": START[0], "y_init": START[1], **(options or {})})

    def step(self, action):
        u = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        gain = 1.0 + self.sigma * float(self.rng.standard_normal())
        applied = np.clip(np.array([u * gain], np.float32), -2.0, 2.0)
        o, r, term, trunc, info = self.env.step(applied)
        # the reward charges the commanded torque (what the agent chose), as Pendulum-v1 does its own
        th, thdot = self.env.unwrapped.state
        uc = float(np.clip(u, -2.0, 2.0))
        reward = -(_angle(float(th)) ** 2 + 0.1 * float(thdot) ** 2 + 0.001 * uc * uc)
        return o, reward, term, trunc, {**info, "gain": gain}


def make_pendulum_gain_noise(sigma: float = GAIN_NOISE, **kwargs):
    """The entry point gymnasium calls for ``ebmgraph/PendulumGainNoise-v0``."""
    return PendulumGainNoise(gym.make("Pendulum-v1", **kwargs), sigma)


class PointPitNoise(gym.Env):
    """A point that moves like the point maze's (``xy += 0.2 · a`` with ``a`` in [−1, 1]²) from (0, 0)
    to the goal (4, 0), past a pit that lies just below the straight path (x in [1, 3], y < −0.1).
    The actuator adds hidden noise: the command applied is ``clip(a + σ·ε, −1, 1)``, ``ε ~ N(0, I)``
    drawn afresh each step (seeded by the reset) and never observed — the stochastic variant of §4.8
    (Figure 17) in which a plan that grazes the pit is a risky one.

    Each step costs the distance of the new position to the goal, plus 5 if it lies in the pit
    (:class:`ebmgraph.dynamics.PointPitCost`; the reward is minus that). 30 steps, no termination:
    the achieved cost of an episode is minus its return. ``info["noise"]`` is the step's ε and
    ``info["in_pit"]`` whether it ended in the pit (for analysis; the agent reads neither).
    """

    metadata = {"render_modes": []}

    def __init__(self, sigma: float = PIT_NOISE):
        if not sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)
        self.observation_space = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.rng = np.random.default_rng(0)
        self.pos = np.zeros(2, np.float64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.rng = np.random.default_rng([seed, 23])
        self.pos = np.zeros(2, np.float64)
        return self.pos.astype(np.float32), {}

    def step(self, action):
        a = np.asarray(action, dtype=np.float64).reshape(2)
        eps = self.rng.standard_normal(2)
        applied = np.clip(a + self.sigma * eps, -1.0, 1.0)
        self.pos = np.clip(self.pos + dyn.POINTPIT_STEP * applied, -10.0, 10.0)
        (gx, gy), (x0, x1, y0) = dyn.POINTPIT_GOAL, dyn.POINTPIT_PIT
        in_pit = bool(x0 <= self.pos[0] <= x1 and self.pos[1] < y0)
        cost = math.hypot(self.pos[0] - gx, self.pos[1] - gy) + dyn.POINTPIT_PENALTY * in_pit
        return self.pos.astype(np.float32), -cost, False, False, {"noise": eps, "in_pit": in_pit}


def make_pendulum_goal_cue(g: float = GRAVITY, **kwargs):
    """The entry point gymnasium calls for ``ebmgraph/PendulumGoalCue-v0``."""
    return PendulumGoalCue(gym.make("Pendulum-v1", g=g, **kwargs))


def register() -> None:
    """Register ebmgraph's tasks with gymnasium (idempotent)."""
    if IDS[0] not in gym.registry:
        gym.register(id=IDS[0], entry_point="ebmgraph.agent.tasks:make_pendulum_goal_cue")
    if IDS[1] not in gym.registry:
        gym.register(id=IDS[1], entry_point="ebmgraph.agent.tasks:make_pendulum_gain_noise", max_episode_steps=200)
    if IDS[2] not in gym.registry:
        gym.register(id=IDS[2], entry_point="ebmgraph.agent.tasks:PointPitNoise", max_episode_steps=30)
