"""Environments and how a compiled spec meets them (§3.1.2, Figure 4: perceive, plan, act).

An environment comes from gymnasium by id, as installed (nothing here simulates one). A
:class:`Binding` says which spec variable receives the observation, which action array the
planner fills, how long the horizon is, and how a planned action becomes the environment's:
a float vector inside the action box, or an integer for ``Discrete(n)``. Every mismatch
between spec and environment is an :class:`EnvMismatch` naming both sides.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .. import ir
from ..errors import SpecError

CLASSIC = ("Pendulum-v1", "CartPole-v1", "MountainCarContinuous-v0", "Acrobot-v1")


class EnvMismatch(SpecError):
    """The spec and the environment do not fit (shapes, domains, unknown id)."""


def _sdl_environment(render: bool) -> None:
    """The one process-wide side effect of making an environment: SDL's settings, in ``os.environ``.

    gymnasium's classic-control renderer is pygame, whose SDL installs its own SIGINT and SIGTERM
    handlers at its first ``init``; they turn the signal into an SDL quit event that nothing here
    reads, so ``timeout``, ``kill`` and job schedulers could not stop a run that records frames.
    ``SDL_NO_SIGNAL_HANDLERS=1`` keeps Python's handlers (and the CLI's clean exit on SIGTERM).
    Frames are drawn off screen: no display and no sound device (``dummy`` drivers), so a headless
    machine does not complain. Each is a default (``setdefault``): a value the user set is kept.
    """
    import os

    os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")
    if render:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")


# Facts an environment tells an episode besides its observation (a maze: the point's xy and the goal's), one
# function per kind of environment: ``(applies(env) -> bool, facts(env, at_reset) -> {name: array})``.
# Environments register theirs (ebmgraph.agent.maze does); the episode loop knows no environment.
INFO_HOOKS: list = []


def register_facts(applies, facts) -> None:
    """Add an environment kind's facts (``facts(env, at_reset)`` for the envs where ``applies(env)``)."""
    INFO_HOOKS.append((applies, facts))


def env_facts(env, at_reset: bool = False) -> dict:
    """The facts of the first registered kind that applies to ``env`` (``{}`` when none does)."""
    for applies, facts in INFO_HOOKS:
        if applies(env):
            return facts(env, at_reset)
    return {}


def make_env(env_id: str, *, render: bool = False, **kwargs):
    """``gymnasium.make(env_id)``; an unknown id is an :class:`EnvMismatch` listing ids that work here.

    Sets SDL's environment variables first (:func:`_sdl_environment`: no signal handlers of its
    own, off-screen drivers when rendering), the one process-wide side effect.
    """
    import gymnasium as gym

    _sdl_environment(render)
    if render:
        kwargs["render_mode"] = "rgb_array"
    from . import maze, swm, tasks

    if maze.FACTS not in INFO_HOOKS:
        register_facts(*maze.FACTS)
    if maze.is_maze(env_id):
        try:
            return maze.make_maze(env_id, render=render, **kwargs)
        except ImportError as exc:
            raise EnvMismatch(f"{env_id} needs ogbench ({exc}): pip install 'ebmgraph[maze]' (ogbench==1.2.2, "
                              f"mujoco==3.17.0)") from None
    if swm.is_swm(env_id):
        if swm.FACTS not in INFO_HOOKS:
            register_facts(*swm.FACTS)
        try:
            return swm.make_swm(env_id, render=render, **kwargs)
        except ImportError as exc:
            raise EnvMismatch(f"{env_id}: {exc}") from None
        except gym.error.Error as exc:
            raise EnvMismatch(f"unknown environment id {env_id!r} ({type(exc).__name__}: {exc}); stable-worldmodel's "
                              f"tested here: {', '.join(swm.ENVS)}") from None
    if env_id.startswith("ebmgraph/"):
        tasks.register()
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as exc:  # NameNotFound, VersionNotFound, NamespaceNotFound, DependencyNotInstalled...
        known = ", ".join(CLASSIC + tasks.IDS + maze.MAZES + swm.ENVS)
        raise EnvMismatch(f"unknown environment id {env_id!r} ({type(exc).__name__}: {exc}); installed and "
                          f"tested here: {known}") from None


def _space_text(space) -> str:
    import gymnasium as gym

    if isinstance(space, gym.spaces.Discrete):
        return f"Discrete({space.n})"
    if isinstance(space, gym.spaces.Box):
        return f"Box({list(space.shape)}, [{float(np.min(space.low)):.4g}, {float(np.max(space.high)):.4g}])"
    return type(space).__name__


def check_observation(ebm, obs: str, space, env_id: str) -> None:
    """``obs`` (one value, not an array) has the shape of the environment's Box observations."""
    import gymnasium as gym

    g, ov = ebm.graph, ebm.graph.var(obs)
    if ov.index is not None:
        raise EnvMismatch(f"{obs} is an array; the observation goes into one value [S]")
    if not isinstance(space, gym.spaces.Box):
        raise EnvMismatch(f"{env_id} observes {_space_text(space)}; ebmgraph plans from Box observations")
    want = tuple(ebm.var_shape(obs))
    if tuple(space.shape) != want:
        raise EnvMismatch(f"{g.name}'s {obs} is {list(want)}, but {env_id} observes {list(space.shape)}",
                          ov.loc, (obs,))


@dataclass(frozen=True)
class Binding:
    """How a compiled spec meets an environment.

    Attributes:
        obs: the observed variable that receives each observation ``[1, *S]``.
        action: the action array the planner minimizes over (its first element is acted on).
        T: the action array's length (the planning horizon).
        discrete: actions are integers (``Discrete(n)``); else float vectors.
        low, high: the environment's action box (continuous), for clipping what is sent.
        given: other observed variables, fixed for the whole episode (e.g. a goal).
        carry: ``{observed variable: function}``: state the agent carries between decisions
            (world-state memory, §3.3): the variable starts each episode at zeros and, after
            each decision, takes the function's value (e.g. ``{m: m1}`` with ``m1: Write(m, q, r)``).
        from_info: ``{observed variable: key}``: values the env's reset gives in ``info`` (a goal).
    """

    obs: str
    action: str
    T: int
    discrete: bool
    env_id: str = ""
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    given: dict = field(default_factory=dict)
    carry: dict = field(default_factory=dict)
    from_info: dict = field(default_factory=dict)

    def reset_values(self, info: dict, ebm) -> dict:
        """``{var: [1, *shape]}`` from the reset's ``info`` (e.g. a maze's goal, ``info["goal"]``)."""
        out = {}
        for var, key in self.from_info.items():
            if key not in info:
                raise EnvMismatch(f"{var} comes from the reset's info[{key!r}], but {self.env_id}'s reset gave "
                                  f"{', '.join(map(repr, info)) or 'no info'}")
            x = torch.as_tensor(np.asarray(info[key], np.float64), dtype=ebm.dtype, device=ebm.device)
            if tuple(x.shape) != tuple(ebm.var_shape(var)):
                raise EnvMismatch(f"info[{key!r}] has shape {list(x.shape)}; {var} is {list(ebm.var_shape(var))}")
            out[var] = x[None]
        return out

    def observed(self, observation, ebm) -> dict:
        """``{obs: [1, *S], **given}`` as tensors of the model's dtype and device."""
        x = torch.as_tensor(np.asarray(observation), dtype=ebm.dtype, device=ebm.device)[None]
        out = {self.obs: x}
        for k, v in self.given.items():
            out[k] = torch.as_tensor(np.asarray(v), device=ebm.device)
            out[k] = (out[k].to(ebm.dtype) if out[k].is_floating_point() else out[k])[None]
        return out

    def to_env(self, first: torch.Tensor):
        """The first planned action as the environment takes it."""
        if self.discrete:
            return int(first.reshape(-1)[0])
        a = first.detach().cpu().numpy().astype(np.float32).reshape(self.low.shape)
        return np.clip(a, self.low, self.high)


def _check_carry(ebm, carry: dict, observed: list[str]) -> None:
    """Each carried variable is observed and its update is a function of its shape that no
    action or latent feeds (it is perception, computed once per decision)."""
    import networkx as nx

    g, chk = ebm.graph, ebm.checked
    funcs = list(dict.fromkeys(f.target.name for f in g.functions))
    for var, fn in carry.items():
        if var not in observed:
            raise EnvMismatch(f"carry {var}={fn}: {var} is not an observed variable of {g.name} (observed: "
                              f"{', '.join(observed)})")
        if g.var(var).index is not None or fn not in funcs or fn in chk.lengths:
            raise EnvMismatch(f"carry {var}={fn}: {var} must be one value and {fn} one function of {g.name} "
                              f"(functions: {', '.join(funcs)})")
        if tuple(chk.shapes[fn]) != tuple(ebm.var_shape(var)):
            raise EnvMismatch(f"carry {var}={fn}: {fn} is {list(chk.shapes[fn])}, {var} is "
                              f"{list(ebm.var_shape(var))}; the carried value must keep its shape")
        feeds = {n for n, _ in nx.ancestors(chk.elements, (fn, 0))}
        moving = sorted(v.name for v in g.variables if v.role in ("action", "latent") and v.name in feeds)
        if moving:
            raise EnvMismatch(f"carry {var}={fn}: {fn} depends on {', '.join(moving)}, which the planner "
                              f"minimizes over; a carried state is computed from observations only")


def bind(ebm, env, *, obs: str | None = None, action: str | None = None, given: dict | None = None,
         carry: dict | None = None, from_info: dict | None = None) -> Binding:
    """Match a compiled spec with an environment's spaces, or say exactly what does not fit.

    Args:
        obs: the variable receiving the observation (default: the only observed variable
            not in ``given``).
        action: the action array (default: the only action variable).
        given: values for other observed variables, ``{name: array of its shape}``.
        carry: ``{observed variable: function}`` carried between decisions (:class:`Binding`).
        from_info: ``{observed variable: key of the reset's info}`` (:class:`Binding`).
    """
    import gymnasium as gym

    g = ebm.graph
    env_id = getattr(getattr(env, "spec", None), "id", "") or type(env).__name__
    given, carry, from_info = dict(given or {}), dict(carry or {}), dict(from_info or {})
    observed = [v.name for v in g.variables if v.role == "observed"]
    _check_carry(ebm, carry, observed)
    bad = sorted(set(from_info) - set(observed))
    if bad:
        raise EnvMismatch(f"from_info {', '.join(bad)}: not observed variables of {g.name} (observed: "
                          f"{', '.join(observed)})")
    unknown = sorted(set(given) - set(observed))
    if unknown:
        raise EnvMismatch(f"given {', '.join(unknown)}: not observed variables of {g.name} (observed: "
                          f"{', '.join(observed)})")
    free = [n for n in observed if n not in given and n not in carry and n not in from_info]
    if obs is None:
        if len(free) != 1:
            raise EnvMismatch(f"{g.name} observes {', '.join(free) or 'nothing'} besides given values; name the "
                              f"one that receives {env_id}'s observation (obs=..., --obs) and give the others (given=..., "
                              f"--given; or from_info=..., --from-info for what the reset's info holds)")
        obs = free[0]
    elif obs not in free:
        raise EnvMismatch(f"{obs} is not an observed variable of {g.name} (observed: {', '.join(observed)})")
    rest = [n for n in free if n != obs]
    if rest:
        raise EnvMismatch(f"{g.name} also observes {', '.join(rest)}: give values for them (given=..., --given)")
    check_observation(ebm, obs, env.observation_space, env_id)
    for k, v in given.items():
        shp = tuple(np.asarray(v).shape)
        if shp != tuple(ebm.var_shape(k)) and not isinstance(g.var(k).domain, ir.Discrete):
            raise EnvMismatch(f"given {k} has shape {list(shp)}; {g.name} declares {list(ebm.var_shape(k))}")
    acts = [v.name for v in g.variables if v.role == "action"]
    if action is None:
        if len(acts) != 1:
            raise EnvMismatch(f"{g.name} has action variables {', '.join(acts) or '(none)'}; a Mode-2 plan "
                              f"needs one action array a[t] (name it with action=...)")
        action = acts[0]
    elif action not in acts:
        raise EnvMismatch(f"{action} is not an action variable of {g.name} (actions: {', '.join(acts)})")
    av = g.var(action)
    if av.index is None:
        raise EnvMismatch(f"{action} is one action, not a sequence a[t]; receding-horizon control plans an array",
                          av.loc, (action,))
    T = int(ebm.checked.lengths[action])
    aspace = env.action_space
    if isinstance(aspace, gym.spaces.Discrete):
        if not isinstance(av.domain, ir.Discrete) or av.domain.K != aspace.n or ebm.var_shape(action)[1:] != (aspace.n,):
            have = f"discrete with {av.domain.K} values" if isinstance(av.domain, ir.Discrete) else \
                f"continuous {list(ebm.var_shape(action)[1:])}"
            raise EnvMismatch(f"{env_id} acts with {_space_text(aspace)}, but {g.name}'s {action}[t] is {have}",
                              av.loc, (action,))
        return Binding(obs, action, T, True, env_id, given=given, carry=carry, from_info=from_info)
    if isinstance(aspace, gym.spaces.Box):
        shape = tuple(ebm.var_shape(action)[1:])
        if isinstance(av.domain, ir.Discrete) or shape != tuple(aspace.shape):
            have = f"discrete with {av.domain.K} values" if isinstance(av.domain, ir.Discrete) else f"{list(shape)}"
            raise EnvMismatch(f"{env_id} acts with {_space_text(aspace)}, but {g.name}'s {action}[t] is {have}",
                              av.loc, (action,))
        return Binding(obs, action, T, False, env_id, np.asarray(aspace.low, np.float32),
                       np.asarray(aspace.high, np.float32), given, carry, from_info)
    raise EnvMismatch(f"{env_id} acts with {_space_text(aspace)}; ebmgraph plans Box or Discrete actions")


DEFAULT_METHOD_HELP = ("default: mppi for continuous action arrays (one batched rollout of 256 sampled action "
                       "sequences per decision, warm-started from the shifted plan: milliseconds, no gradients "
                       "through the world model, fine with box bounds and non-smooth costs; gradient descent "
                       "takes seconds per decision and stalls in local minima); auto for discrete ones "
                       "(exhaustive search when small, dynamic programming on chains, beam search otherwise)")


def default_method(ebm, action: str | None = None) -> str:
    """The planning method used when none is named: ``mppi`` for a continuous action array,
    ``auto`` (:func:`ebmgraph.minimize`'s choice by domain: exhaustive, DP, beam) for a discrete one.

    MPPI, because receding-horizon control re-plans every step from a warm start: one
    iteration of 256 sampled sequences (``ACTING_DEFAULTS``) costs milliseconds per decision
    and needs no gradient through the dynamics, where ``auto``'s projected L-BFGS took 1-3.7 s
    per decision on Pendulum-v1 and scored worse (issue 28).

    Args:
        ebm: the compiled planning spec.
        action: the action array planned over (default: the spec's only action variable; with
            none or several, ``auto``, and :func:`bind` says what is wrong).
    """
    acts = [v for v in ebm.graph.variables if v.role == "action" and (action is None or v.name == action)]
    if len(acts) != 1:
        return "auto"
    return "auto" if isinstance(acts[0].domain, ir.Discrete) else "mppi"


def horizon_sizes(graph: ir.Graph, action: str | None, H: int, compile_fn) -> dict[str, int]:
    """The ``sizes`` that give the action array ``H`` steps (the size its index range reads).

    ``compile_fn(sizes) -> CompiledEBM``; the range may be ``0..T-1`` or ``0..T`` (the length is
    affine in the size), so the size is found by two compilations at most.
    """
    from ..check import size_names

    acts = [v for v in graph.variables if v.role == "action" and (action is None or v.name == action)]
    if len(acts) != 1 or acts[0].index is None:
        raise EnvMismatch(f"--horizon needs one action array in {graph.name}")
    names = size_names(graph)
    if len(names) != 1:
        raise EnvMismatch(f"--horizon: {graph.name} has sizes {', '.join(names) or '(none)'}; set the horizon's "
                          f"size with --size NAME=H instead")
    name = names[0]
    ebm = compile_fn({name: H})
    L = int(ebm.checked.lengths[acts[0].name])
    if L != H:
        ebm = compile_fn({name: 2 * H - L})
        L = int(ebm.checked.lengths[acts[0].name])
    if L != H:
        raise EnvMismatch(f"no value of {name} gives {acts[0].name} {H} steps")
    return {name: ebm.checked.sizes[name]}
