"""The one environment loop: reset with a seed, act, step, tell the caller, reset when an episode
ends (the perception-action cycle of §3.1.2, Figure 4: perceive, act, the world moves on).

:func:`ebmgraph.agent.collect.collect` (transitions for training world models) and
:func:`ebmgraph.agent.mpc.run_episode` (a planner's or a policy's episode) both step environments
through :func:`rollout`; what differs between them is what they record (the callbacks), not how
the environment is stepped, seeded, ended or probed. The environment's facts besides its
observation (:func:`ebmgraph.agent.envs.env_facts`, a maze's xy) are read here, at each reset and
after each step, and handed to the callbacks.

Nothing here catches an exception: Ctrl-C's ``KeyboardInterrupt`` (and the CLI's SIGTERM, raised
as one) unwinds through the caller's ``finally`` blocks, which close the environment and the
progress bar.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

from .envs import env_facts


class Transition(NamedTuple):
    """One ``env.step`` as the loop saw it (a named tuple: cheap to make at every step).

    ``obs``/``next_obs`` are the observations before and after the action (``[*S]`` as the env gives
    them: float arrays, or ``[H, W, 3]`` uint8 images), ``action`` what ``act`` returned (``[*A]``
    float32 for a Box, an ``int`` for a Discrete space). ``facts`` is :func:`env_facts` before the
    action (at ``t == 0`` the reset's, ``at_reset=True``), ``next_facts`` after it. ``last``: the
    episode ends here (terminated, truncated, or ``max_steps`` reached).
    """

    episode: int  # the episode's number within this rollout (0, 1, ...)
    t: int  # the step within its episode (0, 1, ...)
    obs: Any
    action: Any
    reward: float
    terminated: bool
    truncated: bool
    next_obs: Any
    info: dict  # the step's info (e.g. "success")
    facts: dict
    next_facts: dict
    last: bool


def rollout(env, act: Callable[[Any], Any], *, seed: int | None, options: dict | None = None,
            steps: int | None = None, episodes: int | None = None, max_steps: int | None = None,
            reset: Callable | None = None, on_reset: Callable | None = None,
            on_step: Callable[[Transition], None] | None = None) -> int:
    """Step ``env`` with ``act`` until ``steps`` transitions in all or ``episodes`` episodes are done.

    The first reset takes ``seed``; later ones none (the environment continues its own seeded
    generator), as gymnasium's seeding intends. An episode ends when the env says terminated or
    truncated, or after ``max_steps`` of its steps; a rollout that reaches ``steps`` stops at once,
    mid-episode if need be, and never resets after its last step.

    Args:
        act: ``observation -> action`` for ``env.step``; a policy with memory resets it in ``on_reset``.
        options: passed to every ``env.reset`` (e.g. a maze's ``{"task_id": 3}``).
        reset: ``seed -> (obs, info)`` instead of ``env.reset(seed=seed, options=options)`` (the oracle
            navigator picks its own start).
        on_reset: ``(episode, obs, info, facts)`` after every reset, ``facts`` being
            ``env_facts(env, at_reset=True)``.
        on_step: ``Transition`` after every step (a recorder, a progress bar).

    Returns:
        the number of steps taken.
    """
    if steps is None and episodes is None:
        raise ValueError("rollout needs steps or episodes to end")
    for name, v in (("steps", steps), ("episodes", episodes), ("max_steps", max_steps)):
        if v is not None and v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v}")
    if reset is None:
        def reset(s):
            return env.reset(seed=s, options=options)
    total = episode = 0
    while True:
        obs, info = reset(seed if episode == 0 else None)
        facts = env_facts(env, at_reset=True)
        if on_reset is not None:
            on_reset(episode, obs, info, facts)
        t = 0
        while True:
            action = act(obs)
            nxt, r, term, trunc, info = env.step(action)
            nfacts = env_facts(env)
            last = bool(term or trunc) or (max_steps is not None and t + 1 >= max_steps)
            if on_step is not None:
                on_step(Transition(episode, t, obs, action, r, term, trunc, nxt, info, facts, nfacts, last))
            t, total = t + 1, total + 1
            if steps is not None and total >= steps:
                return total
            if last:
                break
            obs, facts = nxt, nfacts
        episode += 1
        if episodes is not None and episode >= episodes:
            return total


__all__ = ["Transition", "rollout"]
