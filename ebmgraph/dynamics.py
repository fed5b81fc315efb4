"""True world models for the planning modes of §3.1.2 (Fig. 3–4): gymnasium 1.4's
classic-control dynamics and per-step costs as batched, differentiable torch modules.

Each ``*Dynamics`` maps ``(s [N, S], a [N, A]) -> s_next [N, S]`` on the environment's
*observation*; each ``*Cost`` maps ``(s, a) -> [N]``, the cost of taking ``a`` in ``s``
(= -reward). Both work in float32 and float64 (every constant is a Python float, so the
inputs' dtype is kept) and are differentiable wherever the environment's math is; clips
are piecewise (zero gradient where they bind). ``terminated(s) -> bool [N]`` follows each
environment's termination test.

Discrete actions reach modules one-hot (``ir.Discrete``). Forces and torques are *linear*
in the one-hot (``F = 10 (a_1 - a_0)``), which is exact for a one-hot and gives a relaxed
one-hot (probabilities) its expected force, so gradient planners can work on relaxations.

Angles: observations carry ``[cos θ, sin θ]``; the modules recover θ with ``atan2``. Every
formula reads angles only through sin/cos (plus θ̇), so the 2π ambiguity, Pendulum's
``angle_normalize`` and Acrobot's ``wrap`` are all invisible in the observation (they
change nothing but rounding, ~1e-15).

Constants are module-level names read at call time (tests patch them to prove that a
wrong constant fails the comparison with the real environment).

This module sits below ``modules.py``: it imports nothing from ``ebmgraph``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "PendulumDynamics", "PendulumCost",
    "CartPoleDynamics", "CartPoleCost", "cartpole_terminated",
    "MountainCarDynamics", "MountainCarCost", "mountaincar_terminated",
    "AcrobotDynamics", "AcrobotCost", "acrobot_terminated",
    "PointPitDynamics", "PointPitCost",
]


# ============================================================================= Pendulum-v1
# gymnasium Pendulum-v1 (classic_control/pendulum.py), default g=10.0
PENDULUM_G = 10.0
PENDULUM_MASS = 1.0
PENDULUM_LENGTH = 1.0
PENDULUM_DT = 0.05
PENDULUM_MAX_SPEED = 8.0
PENDULUM_MAX_TORQUE = 2.0


class PendulumDynamics(nn.Module):
    """Pendulum-v1: ``s = [cos θ, sin θ, θ̇] [N, 3]``, ``a = [u] [N, 1]`` -> ``[N, 3]``.

    The torque is clipped to ±2 and the new speed to ±8 (in that order, as the env);
    the angle integrates with the *new* speed (semi-implicit Euler, dt = 0.05). ``g`` is the
    env's gravity (``gymnasium.make("Pendulum-v1", g=...)``, default 10).
    """

    def __init__(self, g: float | None = None):
        super().__init__()
        self.g = None if g is None else float(g)  # None: PENDULUM_G, read at each call

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        th = torch.atan2(s[:, 1], s[:, 0])
        thdot = s[:, 2]
        u = a[:, 0].clamp(-PENDULUM_MAX_TORQUE, PENDULUM_MAX_TORQUE)
        # the env's coefficients 3g/(2l) and 3/(ml²), in its order of operations
        k_grav = 3 * (PENDULUM_G if self.g is None else self.g) / (2 * PENDULUM_LENGTH)
        k_torque = 3.0 / (PENDULUM_MASS * PENDULUM_LENGTH**2)
        thdot_new = thdot + (k_grav * torch.sin(th) + k_torque * u) * PENDULUM_DT
        thdot_new = thdot_new.clamp(-PENDULUM_MAX_SPEED, PENDULUM_MAX_SPEED)
        th_new = th + thdot_new * PENDULUM_DT
        return torch.stack([torch.cos(th_new), torch.sin(th_new), thdot_new], dim=-1)


class PendulumCost(nn.Module):
    """Pendulum-v1 cost ``θ² + 0.1 θ̇² + 0.001 u²`` of the *current* state, u clipped -> ``[N]``.

    θ = atan2(sin, cos) already lies in [-π, π], where the env's ``angle_normalize`` is the
    identity up to the sign of ±π, which the square removes.
    """

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        th = torch.atan2(s[:, 1], s[:, 0])
        thdot = s[:, 2]
        u = a[:, 0].clamp(-PENDULUM_MAX_TORQUE, PENDULUM_MAX_TORQUE)
        return th**2 + 0.1 * thdot**2 + 0.001 * (u**2)


# ============================================================================= CartPole-v1
# gymnasium CartPole-v1 (classic_control/cartpole.py), euler integrator (the default)
CARTPOLE_GRAVITY = 9.8
CARTPOLE_MASSCART = 1.0
CARTPOLE_MASSPOLE = 0.1
CARTPOLE_HALF_LENGTH = 0.5  # the env's `length` is half the pole's length
CARTPOLE_FORCE = 10.0
CARTPOLE_TAU = 0.02
CARTPOLE_X_LIMIT = 2.4
CARTPOLE_THETA_LIMIT = 12 * 2 * math.pi / 360  # 12°, written as the env writes it (same float)


def cartpole_terminated(s: torch.Tensor) -> torch.Tensor:
    """CartPole-v1 termination: ``|x| > 2.4`` or ``|θ| > 12°`` (strict) -> bool ``[N]``."""
    x, th = s[:, 0], s[:, 2]
    return (x < -CARTPOLE_X_LIMIT) | (x > CARTPOLE_X_LIMIT) | (th < -CARTPOLE_THETA_LIMIT) | (th > CARTPOLE_THETA_LIMIT)


class CartPoleDynamics(nn.Module):
    """CartPole-v1: ``s = [x, ẋ, θ, θ̇] [N, 4]``, ``a`` one-hot ``[N, 2]`` -> ``[N, 4]``.

    Value 1 pushes right (+10 N), value 0 left (-10 N); explicit Euler with τ = 0.02.
    No clipping: the env has none (it terminates instead).
    """

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        x, x_dot, th, th_dot = s.unbind(-1)
        force = CARTPOLE_FORCE * (a[:, 1] - a[:, 0])
        total_mass = CARTPOLE_MASSPOLE + CARTPOLE_MASSCART
        polemass_length = CARTPOLE_MASSPOLE * CARTPOLE_HALF_LENGTH
        cos, sin = torch.cos(th), torch.sin(th)
        temp = (force + polemass_length * th_dot**2 * sin) / total_mass
        th_acc = (CARTPOLE_GRAVITY * sin - cos * temp) / (
            CARTPOLE_HALF_LENGTH * (4.0 / 3.0 - CARTPOLE_MASSPOLE * cos**2 / total_mass))
        x_acc = temp - polemass_length * th_acc * cos / total_mass
        # explicit Euler: every update reads the old state
        return torch.stack([x + CARTPOLE_TAU * x_dot, x_dot + CARTPOLE_TAU * x_acc,
                            th + CARTPOLE_TAU * th_dot, th_dot + CARTPOLE_TAU * th_acc], dim=-1)


class CartPoleCost(nn.Module):
    """CartPole-v1 cost ``1[s outside the termination bounds]`` of the *current* state -> ``[N]``.

    The env pays +1 for every step taken before termination (the step that terminates
    included) and 0 after it. Charging 1 for each step that *starts* outside the bounds is
    therefore ``1 - reward`` per step while the failure persists, and over an episode that
    starts inside the bounds the summed cost is ``T - Σ reward``: the same minimizers, as the
    offset T is constant. (A pole that re-enters the bounds is charged 0 again, whereas the
    env keeps paying 0; a planner only gains by avoiding the exit, so this does not matter.)

    The indicator has zero gradient almost everywhere. ``shaping > 0`` adds
    ``shaping · ((x / 2.4)² + (θ / 12°)²)``: a smooth bowl around the upright, centred cart
    whose value is below ``2 · shaping`` inside the bounds, so gradient planners see which way
    is safe while sampling planners (MPPI, CEM) still rank by the indicator for small
    ``shaping``. The default 0 is exactly the env's signal.
    """

    def __init__(self, shaping: float = 0.0):
        super().__init__()
        self.shaping = float(shaping)

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        cost = cartpole_terminated(s).to(s.dtype)
        if self.shaping:
            cost = cost + self.shaping * ((s[:, 0] / CARTPOLE_X_LIMIT) ** 2 + (s[:, 2] / CARTPOLE_THETA_LIMIT) ** 2)
        return cost


# ============================================================================= MountainCarContinuous-v0
# gymnasium MountainCarContinuous-v0 (classic_control/continuous_mountain_car.py), goal_velocity=0
MOUNTAINCAR_MIN_ACTION = -1.0
MOUNTAINCAR_MAX_ACTION = 1.0
MOUNTAINCAR_MIN_POSITION = -1.2
MOUNTAINCAR_MAX_POSITION = 0.6
MOUNTAINCAR_MAX_SPEED = 0.07
MOUNTAINCAR_GOAL_POSITION = 0.45
MOUNTAINCAR_GOAL_VELOCITY = 0.0
MOUNTAINCAR_POWER = 0.0015
MOUNTAINCAR_GRAVITY = 0.0025  # the env's literal in -0.0025 cos(3 p)
MOUNTAINCAR_GOAL_REWARD = 100.0
MOUNTAINCAR_ACTION_COST = 0.1


def mountaincar_terminated(s: torch.Tensor) -> torch.Tensor:
    """MountainCarContinuous-v0 termination: ``position >= 0.45 and velocity >= 0`` -> bool ``[N]``."""
    return (s[:, 0] >= MOUNTAINCAR_GOAL_POSITION) & (s[:, 1] >= MOUNTAINCAR_GOAL_VELOCITY)


class MountainCarDynamics(nn.Module):
    """MountainCarContinuous-v0: ``s = [position, velocity] [N, 2]``, ``a [N, 1]`` -> ``[N, 2]``.

    The force is the action clipped to [-1, 1]; the velocity is clipped to ±0.07, the
    position to [-1.2, 0.6], and a car that reaches the left wall while moving left stops
    (velocity 0), all in the env's order.
    """

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        pos, vel = s[:, 0], s[:, 1]
        force = a[:, 0].clamp(MOUNTAINCAR_MIN_ACTION, MOUNTAINCAR_MAX_ACTION)
        vel = vel + (force * MOUNTAINCAR_POWER - MOUNTAINCAR_GRAVITY * torch.cos(3 * pos))
        vel = vel.clamp(-MOUNTAINCAR_MAX_SPEED, MOUNTAINCAR_MAX_SPEED)
        pos = pos + vel
        # the env tests `position == min_position` after clipping, i.e. raw position <= min;
        # testing before the clip avoids comparing a float32 tensor with a float64 literal
        at_wall = pos <= MOUNTAINCAR_MIN_POSITION
        pos = pos.clamp(MOUNTAINCAR_MIN_POSITION, MOUNTAINCAR_MAX_POSITION)
        vel = torch.where(at_wall & (vel < 0), torch.zeros_like(vel), vel)
        return torch.stack([pos, vel], dim=-1)


class MountainCarCost(nn.Module):
    """MountainCarContinuous-v0 cost ``0.1 a² - 100 · 1[the step reaches the goal]`` -> ``[N]``.

    As the env: the action penalty uses the *unclipped* action (the env clips only the
    force), and the goal bonus is paid on the step whose *next* state satisfies
    :func:`mountaincar_terminated`, so the cost steps the dynamics internally from (s, a).
    """

    def __init__(self):
        super().__init__()
        self.dynamics = MountainCarDynamics()

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        reached = mountaincar_terminated(self.dynamics(s, a)).to(s.dtype)
        return a[:, 0] ** 2 * MOUNTAINCAR_ACTION_COST - MOUNTAINCAR_GOAL_REWARD * reached


# ============================================================================= Acrobot-v1
# gymnasium Acrobot-v1 (classic_control/acrobot.py), "book" dynamics (the default), no torque noise
ACROBOT_DT = 0.2
ACROBOT_LINK_LENGTH_1 = 1.0
ACROBOT_LINK_MASS_1 = 1.0
ACROBOT_LINK_MASS_2 = 1.0
ACROBOT_LINK_COM_1 = 0.5
ACROBOT_LINK_COM_2 = 0.5
ACROBOT_LINK_MOI = 1.0
ACROBOT_GRAVITY = 9.8
ACROBOT_MAX_VEL_1 = 4 * math.pi
ACROBOT_MAX_VEL_2 = 9 * math.pi
ACROBOT_TORQUES = (-1.0, 0.0, 1.0)  # action values 0, 1, 2


def acrobot_terminated(s: torch.Tensor) -> torch.Tensor:
    """Acrobot-v1 termination: the tip above the bar, ``-cos θ1 - cos(θ1 + θ2) > 1`` -> bool ``[N]``."""
    c1, s1, c2, s2 = s[:, 0], s[:, 1], s[:, 2], s[:, 3]
    return -c1 - (c1 * c2 - s1 * s2) > 1.0


def _acrobot_derivs(th1, th2, dth1, dth2, torque):
    """Time derivatives (θ̇1, θ̇2, θ̈1, θ̈2) of the two-link arm (Sutton & Barto's "book" form)."""
    m1, m2 = ACROBOT_LINK_MASS_1, ACROBOT_LINK_MASS_2
    l1, lc1, lc2 = ACROBOT_LINK_LENGTH_1, ACROBOT_LINK_COM_1, ACROBOT_LINK_COM_2
    i1 = i2 = ACROBOT_LINK_MOI
    g = ACROBOT_GRAVITY
    cos2, sin2 = torch.cos(th2), torch.sin(th2)
    inertia1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * cos2) + i1 + i2
    inertia2 = m2 * (lc2**2 + l1 * lc2 * cos2) + i2
    grav2 = m2 * lc2 * g * torch.cos(th1 + th2 - math.pi / 2.0)
    coupling1 = (-m2 * l1 * lc2 * dth2**2 * sin2 - 2 * m2 * l1 * lc2 * dth2 * dth1 * sin2
                 + (m1 * lc1 + m2 * l1) * g * torch.cos(th1 - math.pi / 2) + grav2)
    # the "book" variant keeps the centripetal term -m2 l1 lc2 θ̇1² sin θ2 that "nips" drops
    ddth2 = ((torque + inertia2 / inertia1 * coupling1 - m2 * l1 * lc2 * dth1**2 * sin2 - grav2)
             / (m2 * lc2**2 + i2 - inertia2**2 / inertia1))
    ddth1 = -(inertia2 * ddth2 + coupling1) / inertia1
    return dth1, dth2, ddth1, ddth2


class AcrobotDynamics(nn.Module):
    """Acrobot-v1: ``s = [cos θ1, sin θ1, cos θ2, sin θ2, θ̇1, θ̇2] [N, 6]``, ``a`` one-hot
    ``[N, 3]`` (torque -1, 0, +1) -> ``[N, 6]``.

    One classical RK4 step of dt = 0.2 (the env integrates over ``t = [0, dt]``), then the
    velocities are clipped to ±4π and ±9π. The env's angle wrap is implicit in cos/sin.
    """

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        y = torch.stack([torch.atan2(s[:, 1], s[:, 0]), torch.atan2(s[:, 3], s[:, 2]), s[:, 4], s[:, 5]], dim=-1)
        lo, mid, hi = ACROBOT_TORQUES
        torque = lo * a[:, 0] + mid * a[:, 1] + hi * a[:, 2]

        def f(y):
            return torch.stack(_acrobot_derivs(*y.unbind(-1), torque), dim=-1)

        h = ACROBOT_DT
        k1 = f(y)
        k2 = f(y + h / 2.0 * k1)
        k3 = f(y + h / 2.0 * k2)
        k4 = f(y + h * k3)
        y = y + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        th1, th2, dth1, dth2 = y.unbind(-1)
        return torch.stack([torch.cos(th1), torch.sin(th1), torch.cos(th2), torch.sin(th2),
                            dth1.clamp(-ACROBOT_MAX_VEL_1, ACROBOT_MAX_VEL_1),
                            dth2.clamp(-ACROBOT_MAX_VEL_2, ACROBOT_MAX_VEL_2)], dim=-1)


class AcrobotCost(nn.Module):
    """Acrobot-v1 cost: 1 per step unless the step reaches the goal (then 0) -> ``[N]``.

    The env's reward is -1 unless the *next* state is terminal, so the cost steps the
    dynamics internally from (s, a) and tests :func:`acrobot_terminated` there.
    """

    def __init__(self):
        super().__init__()
        self.dynamics = AcrobotDynamics()

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return 1.0 - acrobot_terminated(self.dynamics(s, a)).to(s.dtype)


# ============================================================================= ebmgraph/PointPitNoise-v0
# ebmgraph's own stochastic task (agent/tasks.py, §4.8): a point moving at the point maze's speed
# toward a goal past a pit; the env adds hidden noise to the command, the model below is noise-free
POINTPIT_STEP = 0.2                # xy += 0.2 * clip(a, -1, 1) per step (the point maze's open-cell motion)
POINTPIT_GOAL = (4.0, 0.0)
POINTPIT_PIT = (1.0, 3.0, -0.1)    # the pit: x in [1, 3] and y < -0.1, just below the straight path
POINTPIT_PENALTY = 5.0             # cost of each step ending in the pit


class PointPitDynamics(nn.Module):
    """``s = [x, y] [N, 2]``, ``a = [vx, vy] [N, 2]`` -> ``s + 0.2 · clip(a, -1, 1)``."""

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return s + POINTPIT_STEP * a.clamp(-1.0, 1.0)


class PointPitCost(nn.Module):
    """The cost of being at ``s``: distance to the goal plus 5 inside the pit -> ``[N]`` (``a`` unused).

    The env charges it on the state each step ends in, so a spec reads it as ``C(s[t+1], a[t])``.
    """

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        gx, gy = POINTPIT_GOAL
        x0, x1, y0 = POINTPIT_PIT
        dist = torch.sqrt((s[:, 0] - gx) ** 2 + (s[:, 1] - gy) ** 2)
        pit = (s[:, 0] >= x0) & (s[:, 0] <= x1) & (s[:, 1] < y0)
        return dist + POINTPIT_PENALTY * pit.to(s.dtype)
