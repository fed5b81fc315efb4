"""N episodes planned together (issue 29): one batched :func:`ebmgraph.minimize` per step over every live
episode (:func:`plan_batch`), two levels top-down per row (Figure 16), and :func:`run_parallel` stepping N
environments (``ebmgraph plan --parallel N``). The one-episode loop these batch is :mod:`ebmgraph.agent.mpc`'s.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SpecError
from ..infer import minimize
from .envs import env_facts, make_env
from .mpc import WARM, Episode, Planner, PlanError, Results, shift_plan


@dataclass(frozen=True)
class BatchState:
    """:class:`PlanState` for N episodes planned together: each one's shifted plan ``[N, T, ...]`` (None before
    the first decision) and the one random stream they share."""

    plan: torch.Tensor | None = None
    rng: torch.Tensor | None = None
    step: int = 0


def plan_batch(planner: Planner, observations, given: dict | None, state: BatchState,
               live: np.ndarray | None = None) -> tuple[np.ndarray, BatchState]:
    """One decision for N episodes at once: a single batched :func:`ebmgraph.minimize` over the live ones.

    Args:
        observations: ``[N, *S]``, one observation per episode.
        given: ``{variable: [N, *shape]}`` per episode (e.g. each one's goal frame) or ``[*shape]`` for all.
        state: ``BatchState()`` before the first decision (the planner's seeded stream), else the previous call's.
        live: bool ``[N]``: the episodes to plan (default all); the others keep their plans and get no action.

    Returns:
        ``(actions [n_live, *A] for the live episodes, in order, next state)``.
    """
    b, ebm = planner.binding, planner.ebm
    if b.discrete or b.carry or planner.warm_policy is not None:
        raise PlanError("plan_batch plans continuous actions without carried state or a warm-start policy")
    if planner.upper is not None and planner.upper_settings.get("mode", "top_down") != "top_down":
        raise PlanError("plan_batch plans two levels top-down only (--upper-mode top_down)")
    obs = np.asarray(observations)
    n = len(obs)
    idx = np.flatnonzero(np.ones(n, bool) if live is None else np.asarray(live, bool))

    def tensor(v):
        v = np.asarray(v)
        x = torch.as_tensor(v if v.flags.writeable else v.copy(), device=ebm.device)  # a broadcast view is read-only
        return x.to(ebm.dtype) if not x.is_floating_point() or x.dtype != ebm.dtype else x

    observed = {b.obs: tensor(obs[idx])}
    for k, v in {**b.given, **(given or {})}.items():
        v = np.asarray(v)
        observed[k] = tensor(v[idx] if v.shape[1:] == tuple(ebm.var_shape(k)) and len(v) == n
                             else np.broadcast_to(v, (len(idx), *ebm.var_shape(k))))
    if planner.upper is not None:
        observed.update(_subgoals(planner, observed))
    gen = torch.Generator()
    gen.set_state(state.rng if state.rng is not None else planner.initial_rng())
    settings = dict(planner.settings)
    if planner.warm_start and state.plan is not None and planner.method in WARM and "init" not in settings:
        settings["init"] = {b.action: state.plan[torch.as_tensor(idx)]}
    try:
        r = minimize(ebm, observed, over=[b.action], method=planner.method, generator=gen, **settings)
    except SpecError as exc:
        raise PlanError(f"planning at step {state.step}: {exc.message if hasattr(exc, 'message') else exc}",
                        exc.loc, exc.symbols) from exc
    plan = (r.info.get("mean") or r.values)[b.action].detach()
    full = state.plan.clone() if state.plan is not None else torch.zeros((n, *plan.shape[1:]), dtype=plan.dtype)
    full[torch.as_tensor(idx)] = shift_plan({b.action: plan}, b.action)[b.action]
    first = r.values[b.action][:, 0].detach().cpu().numpy().astype(np.float32).reshape(len(idx), *b.low.shape)
    return np.clip(first, b.low, b.high), BatchState(full, gen.get_state(), state.step + 1)


def _subgoals(planner: Planner, observed: dict) -> dict:
    """Level 2 for a batch, top-down (Figure 16): each row's level-1 state and goal become abstract states, the
    upper level's first move on its cheapest path sets that row's sub-goal (the next abstract state's centroid,
    or the goal itself once the goal's abstract state is next or reached)."""
    from ..infer.hierarchical import level1

    us, up = planner.upper_settings, planner.upper
    goal, state = us.get("goal", "goal"), us.get("state", "s")
    sub = us.get("subgoal") or goal
    s1 = level1(planner.ebm, observed, state)
    g1 = level1(planner.ebm, observed, goal)
    here = up.encode(s1.detach().cpu().numpy().reshape(len(s1), -1))
    target = up.encode(g1.detach().cpu().numpy().reshape(len(g1), -1))
    rows = []
    for i, (h, t) in enumerate(zip(here, target)):
        j = up.ranked(int(h), int(t))[0][0]
        rows.append(g1[i] if j == t or h == t else
                    torch.as_tensor(up.centroids[j], dtype=g1.dtype, device=g1.device).reshape(g1.shape[1:]))
    return {sub: torch.stack(rows)}


def padded_rows(live: np.ndarray) -> np.ndarray:
    """``live`` (bool ``[N]``) with finished rows switched on until the count is a power of two (or N)."""
    n, k = len(live), int(live.sum())
    want = min(n, 1 << max(0, (k - 1).bit_length()))
    rows = live.copy()
    rows[np.flatnonzero(~live)[:want - k]] = True
    return rows


def run_parallel(env_id: str, planner: Planner, *, episodes: int = 1, seed: int = 0, parallel: int = 1,
                 max_steps: int | None = None, progress: bool = True, options: list[dict] | None = None) -> Results:
    """``episodes`` seeded episodes (seeds ``seed, seed+1, ...``) run ``parallel`` at a time: that many environments
    step together and every step plans all live ones in one batched :func:`ebmgraph.minimize`
    (:func:`plan_batch`; ``ebmgraph plan --parallel N``). An episode's seconds per decision are the batched call's
    time divided by the episodes it planned. Values the reset's info gives (``Binding.from_info``, a goal frame)
    are per episode; an episode that ends waits for the others of its group.
    """
    from ..util import progress as progress_bar

    if parallel < 1:
        raise ValueError(f"parallel must be a positive integer, got {parallel}")
    b = planner.binding
    envs = [make_env(env_id) for _ in range(min(parallel, episodes))]
    limit = getattr(getattr(envs[0], "spec", None), "max_episode_steps", None)
    bar = progress_bar(total=episodes * (max_steps or limit or 0) or None, disable=not progress,
                       desc=f"plan {env_id} x{len(envs)}", unit="step")
    out, rng = [], None
    try:
        for first in range(0, episodes, len(envs)):
            group = list(range(first, min(first + len(envs), episodes)))
            eps = [Episode(seed=seed + i) for i in group]
            obs, given = [], {k: [] for k in b.from_info}
            for env, i, ep in zip(envs, group, eps):
                o, info = env.reset(seed=seed + i, options=options[i % len(options)] if options else None)
                facts = env_facts(env, at_reset=True)  # a maze's goal_xy, the point's xy (the paths' picture)
                ep.reset_info.update({k: v for k, v in facts.items() if k != "xy"})
                if "xy" in facts:
                    ep.positions.append(facts["xy"])
                obs.append(np.asarray(o))
                for var, key in b.from_info.items():
                    if key not in info:
                        raise PlanError(f"{var} comes from the reset's info[{key!r}], which {env_id} did not give")
                    given[var].append(np.asarray(info[key]))
            live = np.ones(len(group), bool)
            state = BatchState(None, rng if rng is not None else planner.initial_rng(), 0)
            while live.any():
                t0 = time.perf_counter()
                # the live episodes are planned, padded with finished ones up to a power of two: a compiled planner
                # sees a few batch shapes, not one per number of episodes still running
                rows = padded_rows(live)
                acts, state = plan_batch(planner, np.stack(obs), {k: np.stack(v) for k, v in given.items()}, state,
                                         rows)
                dt = (time.perf_counter() - t0) / int(live.sum())
                acts = dict(zip(np.flatnonzero(rows), acts))
                for j in np.flatnonzero(live):
                    a = acts[j]
                    ep, env = eps[j], envs[j]
                    o, r, term, trunc, info = env.step(a)
                    ep.ret += float(r)
                    ep.length += 1
                    ep.seconds.append(dt)
                    ep.actions.append(np.asarray(a))
                    nf = env_facts(env)
                    if "xy" in nf:
                        ep.positions.append(nf["xy"])
                    ep.terminated = bool(term)
                    if "success" in info:
                        ep.success = bool(info["success"])
                    obs[j] = np.asarray(o)
                    bar.update(1)
                    if term or trunc or (max_steps is not None and ep.length >= max_steps):
                        live[j] = False
            rng = state.rng
            out.extend(eps)
            bar.set_postfix({"mean": f"{np.mean([e.ret for e in out]):.1f}"})
    finally:
        bar.close()
        for env in envs:
            env.close()
    return Results(env_id, planner.method, dict(planner.settings), out)


__all__ = ["BatchState", "plan_batch", "padded_rows", "run_parallel"]
