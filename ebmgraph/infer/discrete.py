"""Search over discrete latents and actions: exhaustive, dynamic programming, beam, mixed.

Discrete values are integer indices (``[B]`` for a single variable, ``[B, L]`` for an
array ``a[t]``); the model sees them one-hot (§4.5, discrete latents).

Partial energies come from the element graph of the checked spec: each energy step
``("energy:NAME", t)`` reads a set of elements ``(var, pos)`` — its *scope* — through
the functions (a rolled-out state ``s[t+1] = Pred(s[t], a[t])`` reads ``a[0..t]``).
"""
from __future__ import annotations

import math

import torch

from ..conventions import tile_rows
from ..errors import SpecError
from .core import Problem, initial_values


def _slots(prob: Problem, names: list[str]) -> list[tuple[str, int, int]]:
    """The discrete elements ``(name, pos, K)`` in enumeration order."""
    out = []
    for n in names:
        shape = prob.shape(n)
        L = shape[0] if shape else 1
        out += [(n, i, prob.K(n)) for i in range(L)]
    return out


def configs(prob: Problem, names: list[str], start: int, stop: int) -> dict:
    """Configurations ``start..stop-1`` of the joint discrete space as ``{name: [N, *shape]}``."""
    slots = _slots(prob, names)
    idx = torch.arange(start, stop, device=prob.device)
    digits = []
    for _, _, K in reversed(slots):  # last slot varies fastest
        digits.append(idx % K)
        idx = idx // K
    digits = digits[::-1]
    out, i = {}, 0
    for n in names:
        shape = prob.shape(n)
        L = shape[0] if shape else 1
        v = torch.stack(digits[i:i + L], 1)
        out[n] = v if shape else v[:, 0]
        i += L
    return out


def space_size(prob: Problem, names: list[str]) -> int:
    return math.prod(K for _, _, K in _slots(prob, names))


def exhaustive(prob: Problem, *, max_configs: int = 1_000_000, chunk: int = 65536, init: dict | None = None,
               generator=None):
    """Evaluate every joint configuration of the discrete variables; exact.

    Args:
        max_configs: refuse larger spaces (K^n) with an error naming the size.
        chunk: rows per evaluated batch (``B * configs``).
    """
    names = prob.over
    for n in names:
        if not prob.is_discrete(n):
            raise SpecError(f"exhaustive search enumerates discrete variables; {n} is continuous "
                            f"(method='mixed' enumerates the discrete ones and minimizes the rest)")
    N = space_size(prob, names)
    if N > max_configs:
        raise SpecError(f"exhaustive search over {N} configurations exceeds max_configs={max_configs}; "
                        f"use method='dp', 'beam' or 'mcts'")
    x0 = initial_values(prob, init)
    B = prob.B
    with torch.no_grad():
        best_f = prob.objective(x0, 1)
        best = dict(x0)
        step = max(1, chunk // max(B, 1))
        trace = [best_f]
        for s in range(0, N, step):
            c = configs(prob, names, s, min(N, s + step))
            n = next(iter(c.values())).shape[0]
            f = prob.objective({k: tile_rows(v, B) for k, v in c.items()}, n).view(B, n)
            fk, j = f.min(1)
            better = fk < best_f
            for k, v in c.items():
                cand = v[j]
                best[k] = torch.where(better.view(-1, *[1] * (cand.dim() - 1)), cand, best[k])
            best_f = torch.where(better, fk, best_f)
            trace.append(best_f)
    return prob.result(best, trace, "exhaustive", {"configs": N})


# ----------------------------------------------------------------------------- chain structure
def chain_factors(prob: Problem, name: str):
    """Unary ``[B, L, K]`` and pairwise ``[B, L-1, K, K]`` tables of a chain energy, plus a constant ``[B]``.

    Applies when every energy step reads at most two *consecutive* elements
    ``name[i], name[i+1]`` of the one discrete array minimized over (a chain CRF /
    HMM: ``pair[t]: P(z[t], z[t+1])``, ``unary[t]: U(x[t], z[t])``). The tables are
    filled with ``K²`` evaluations: configuration ``(p, q)`` puts ``p`` at even and ``q``
    at odd positions, so every step sees every combination of its two values once.

    Raises:
        SpecError: explaining which energy step breaks the chain structure.
    """
    shape = prob.shape(name)
    if len(shape) != 1:
        raise SpecError(f"dynamic programming needs a time-indexed discrete array such as z[t]; {name} is not one")
    L, K, B = shape[0], prob.K(name), prob.B
    scopes = prob.scopes()
    for node, sc in scopes.items():
        pos = sorted(p for (_, p) in sc)
        if len(pos) > 2 or (len(pos) == 2 and pos[1] - pos[0] != 1):
            els = ", ".join(f"{name}[{p}]" for p in pos)
            raise SpecError(f"dynamic programming needs a chain: every energy step may read at most two consecutive "
                            f"elements of {name}, but {node[0][7:]}[{node[1]}] reads {els} (e.g. through a state "
                            f"rolled out from earlier actions, which makes a deterministic-transition shortest path "
                            f"over continuous states: DP over discrete states does not apply; use beam or mcts)")
    p = torch.arange(K, device=prob.device)
    P, Q = p.repeat_interleave(K), p.repeat(K)  # [K*K]: (p, q) pairs
    pos = torch.arange(L, device=prob.device)
    z = torch.where((pos % 2 == 0)[None], P[:, None], Q[:, None])  # [K*K, L]
    with torch.no_grad():
        out = prob.evaluate({name: tile_rows(z, B)}, K * K)
    unary = torch.zeros(B, L, K, dtype=prob.dtype, device=prob.device)
    pair = torch.zeros(B, max(L - 1, 0), K, K, dtype=prob.dtype, device=prob.device)
    const = torch.zeros(B, dtype=prob.dtype, device=prob.device)
    for term, tot in out.terms.items():
        if term in out.steps:
            cols = out.steps[term].view(B, K, K, -1)
            positions = prob.step_columns(term)
        else:
            cols = tot.view(B, K, K, 1)
            positions = [0]
        for j, t in enumerate(positions):
            sc = sorted(p for (_, p) in scopes.get((f"energy:{term}", t), frozenset()))
            v = cols[..., j]  # [B, K(p), K(q)]
            if not sc:
                const += v[:, 0, 0]
            elif len(sc) == 1:
                i = sc[0]
                unary[:, i] += v[:, :, 0] if i % 2 == 0 else v[:, 0, :]
            else:
                i = sc[0]
                pair[:, i] += v if i % 2 == 0 else v.transpose(1, 2)
    return unary, pair, const


def viterbi(unary: torch.Tensor, pair: torch.Tensor):
    """Exact min-sum over a chain. ``unary`` [B, L, K], ``pair`` [B, L-1, K, K] -> (z [B, L], min [B])."""
    B, L, K = unary.shape
    cost = unary[:, 0]
    back = []
    for i in range(L - 1):
        tot = cost[:, :, None] + pair[:, i]  # [B, K(prev), K(next)]
        cost, arg = tot.min(1)
        cost = cost + unary[:, i + 1]
        back.append(arg)
    best, last = cost.min(1)
    z = [last]
    for arg in reversed(back):
        z.append(arg.gather(1, z[-1][:, None])[:, 0])
    return torch.stack(z[::-1], 1), best


def dp(prob: Problem, *, init: dict | None = None, generator=None):
    """Dynamic programming (Viterbi) over a discrete chain ``z[t]``; exact when it applies."""
    if len(prob.over) != 1 or not prob.is_discrete(prob.over[0]):
        raise SpecError(f"dynamic programming minimizes over one discrete array; got over={prob.over}")
    name = prob.over[0]
    unary, pair, const = chain_factors(prob, name)
    z, best = viterbi(unary, pair)
    x0 = initial_values(prob, init)
    with torch.no_grad():
        f0, fz = prob.objective(x0, 1), prob.objective({name: z}, 1)
    keep0 = f0 < fz  # never worse than the start (ties keep the DP answer)
    z = torch.where(keep0[:, None], x0[name], z)
    return prob.result({name: z}, [f0, torch.minimum(f0, fz)], "dp", {"chain_min": best + const})


# ----------------------------------------------------------------------------- beam search
def beam(prob: Problem, *, width: int = 16, fill: int = 0, merge_last: bool = False, init: dict | None = None,
         generator=None):
    """Beam search over a time-indexed discrete array, one step at a time.

    Rule for partial energies: a prefix ``a[0..p-1]`` is scored by the energy steps whose
    scope lies inside the decided elements; undecided elements are filled with ``fill``
    and steps that read them are ignored. Complete sequences are scored by the full energy.

    Args:
        width: prefixes kept per problem.
        fill: the value standing in for undecided elements.
        merge_last: keep only the best prefix per last value (recombination); exact on
            first-order chains when ``width >= K``.
    """
    if len(prob.over) != 1 or not prob.is_discrete(prob.over[0]) or len(prob.shape(prob.over[0])) != 1:
        raise SpecError(f"beam search runs over one time-indexed discrete array a[t]; got over={prob.over}")
    name = prob.over[0]
    L, K, B = prob.shape(name)[0], prob.K(name), prob.B
    scopes = prob.scopes()
    dev = prob.device
    prefixes = torch.full((B, 1, L), fill, dtype=torch.long, device=dev)  # [B, W, L]
    trace = []
    with torch.no_grad():
        for p in range(L):
            W = prefixes.shape[1]
            cand = prefixes[:, :, None, :].expand(B, W, K, L).clone()
            cand[..., p] = torch.arange(K, device=dev)
            cand = cand.reshape(B, W * K, L)
            out = prob.evaluate({name: cand.reshape(-1, L)}, W * K)
            if p == L - 1:
                score = out.total
            else:
                score = torch.zeros_like(out.total)
                for term, tot in out.terms.items():
                    cols = prob.step_columns(term) if term in out.steps else [0]
                    vals = out.steps[term] if term in out.steps else tot[:, None]
                    for j, t in enumerate(cols):
                        sc = scopes.get((f"energy:{term}", t), frozenset())
                        if all(q <= p for (_, q) in sc):
                            score = score + vals[:, j]
            score = score.view(B, W * K)
            if merge_last:  # best prefix per last value, then the top ones of those
                last = cand[..., p]
                masked = torch.where(last[:, :, None] == torch.arange(K, device=dev), score[:, :, None],
                                     torch.full_like(score[:, :, None], float("inf")))
                best_per = masked.argmin(1)  # [B, K]
                cand, score = cand.gather(1, best_per[..., None].expand(-1, -1, L)), score.gather(1, best_per)
            keep = min(width, cand.shape[1])
            top = score.topk(keep, dim=1, largest=False).indices
            prefixes = cand.gather(1, top[..., None].expand(-1, -1, L))
            trace.append(score.gather(1, top[:, :1])[:, 0])
        z = prefixes[:, 0]
        x0 = initial_values(prob, init)
        f0, fz = prob.objective(x0, 1), prob.objective({name: z}, 1)
    z = torch.where((f0 < fz)[:, None], x0[name], z)
    return prob.result({name: z}, trace, "beam", {"width": width, "merge_last": merge_last})


# ----------------------------------------------------------------------------- mixed
def mixed(prob: Problem, *, inner: str = "gradient", max_configs: int = 4096, init: dict | None = None,
          generator=None, **inner_settings):
    """Enumerate the discrete variables, minimize the continuous ones for each configuration."""
    from .gradient import gradient
    from .sampling import cem, mppi

    disc = [n for n in prob.over if prob.is_discrete(n)]
    cont = [n for n in prob.over if not prob.is_discrete(n)]
    if not disc or not cont:
        raise SpecError("mixed search needs both discrete and continuous variables in over=")
    N = space_size(prob, disc)
    if N > max_configs:
        raise SpecError(f"mixed search enumerates {N} discrete configurations (> max_configs={max_configs})")
    B = prob.B
    c = configs(prob, disc, 0, N)
    sub = prob.sub({k: tile_rows(v, B) for k, v in c.items()}, cont, N)
    x0 = initial_values(prob, init)
    sub_init = {n: x0[n].repeat_interleave(N, 0) for n in cont}
    fn = {"gradient": gradient, "cem": cem, "mppi": mppi}[inner]
    r = fn(sub, init=sub_init, generator=generator, **inner_settings)
    f = r.energy.view(B, N)
    j = f.argmin(1)
    rows = torch.arange(B, device=prob.device) * N + j
    vals = {n: r.values[n][rows] for n in cont}
    vals.update({n: c[n][j] for n in disc})
    with torch.no_grad():
        f0, fb = prob.objective(x0, 1), prob.objective(vals, 1)
    keep0 = f0 < fb
    vals = {n: torch.where(keep0.view(-1, *[1] * (v.dim() - 1)), x0[n], v) for n, v in vals.items()}
    return prob.result(vals, [f0, torch.minimum(f0, fb)], f"mixed/{r.method}", {"configs": N})
