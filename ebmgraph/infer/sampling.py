"""Sampling-based minimization: the cross-entropy method and MPPI (§3.1.2, Mode-2 planning).

Both evaluate ``K`` candidates per problem in one ``[B*K]`` batch (observed inputs
repeated). The loop body has no host-device synchronisation: no ``.item()``, no Python
branch on a tensor value; the best candidate so far is kept with ``torch.where``.

Batching: the standard-normal draws ``[K, *shape]`` of an iteration are shared by all
B problems (common random numbers), so a problem solved inside a batch sees exactly the
draws it would see alone with the same seed — batched and single results agree by
construction.
"""
from __future__ import annotations

import torch

from ..errors import SpecError
from .core import FiniteWatch, Problem, initial_values, packer


def _setup(prob: Problem, init, sigma):
    for n in prob.over:
        if prob.is_discrete(n):
            raise SpecError(f"CEM/MPPI sample continuous variables; {n} is discrete "
                            f"(use method='exhaustive', 'dp', 'beam' or 'mcts')")
    pack, unpack, project = packer(prob, prob.over)
    mu = pack(initial_values(prob, init), (prob.B,))
    D = mu.shape[-1]
    if sigma is None:  # a quarter of the box where bounded, else 1
        parts = []
        for n in prob.over:
            lo, hi = prob.bounds(n)
            s = 0.25 * (hi - lo) if (lo is not None and hi is not None) else 1.0
            parts.append(torch.full((int(torch.Size(prob.shape(n)).numel()),), float(s)))
        sig = torch.cat(parts).to(mu)
    else:
        sig = torch.full((D,), float(sigma), dtype=mu.dtype, device=mu.device)
    return pack, unpack, project, mu, sig.expand(prob.B, D).clone()


def _track(best_x, best_f, xs, fs):
    """Keep the lowest-energy candidate per problem. ``xs`` [B, K, D], ``fs`` [B, K]."""
    fk, k = fs.min(1)
    xk = xs.gather(1, k[:, None, None].expand(-1, 1, xs.shape[-1])).squeeze(1)
    better = fk < best_f
    return torch.where(better[:, None], xk, best_x), torch.where(better, fk, best_f)


def cem(prob: Problem, *, samples: int = 256, iters: int = 30, elite_frac: float = 0.1, momentum: float = 0.1,
        sigma: float | None = None, min_sigma: float = 1e-6, init: dict | None = None,
        generator: torch.Generator | None = None):
    """Cross-entropy method: sample around a Gaussian, refit it to the elite fraction.

    Args:
        samples: candidates ``K`` per problem and iteration.
        iters: iterations.
        elite_frac: fraction of candidates kept to refit mean and std.
        momentum: weight of the old mean/std in the update (0: plain refit).
        sigma: initial std (default: a quarter of the box, or 1 if unbounded).
        init: warm start for the mean ``{name: [B, *shape]}``.

    Returns:
        MinimizeResult; ``trace`` ``[iters+1, B]`` best energy so far (row 0: the start).
    """
    pack, unpack, project, mu, sig = _setup(prob, init, sigma)
    B, D, K = prob.B, mu.shape[-1], int(samples)
    n_elite = max(1, int(round(elite_frac * K)))
    watch = FiniteWatch(B, D, mu)
    with torch.no_grad():
        best_x, best_f = mu.clone(), prob.objective(unpack(mu), 1)
        watch.update(mu[:, None], best_f[:, None], 0)
        trace = [best_f]
        for i in range(iters):
            eps = torch.randn((K, D), generator=generator, dtype=mu.dtype).to(mu.device)
            xs = project(mu[:, None] + sig[:, None] * eps[None])  # [B, K, D]
            fs = prob.objective(unpack(xs.reshape(B * K, D)), K).view(B, K)
            watch.update(xs, fs, i + 1)
            best_x, best_f = _track(best_x, best_f, xs, fs)
            idx = fs.topk(n_elite, dim=1, largest=False).indices  # [B, n_elite]
            el = xs.gather(1, idx[..., None].expand(-1, -1, D))
            mu = momentum * mu + (1 - momentum) * el.mean(1)
            sd = el.std(1, unbiased=False) if n_elite > 1 else torch.zeros_like(sig)
            sig = (momentum * sig + (1 - momentum) * sd).clamp_min(min_sigma)
            trace.append(best_f)
        mu = project(mu)
        best_x, best_f = _track(best_x, best_f, mu[:, None], prob.objective(unpack(mu), 1)[:, None])
    watch.check(prob, unpack, "cem", unpack(best_x))
    return prob.result(unpack(best_x), trace, "cem", {"samples": K, "iters": iters, "elite": n_elite})


def mppi(prob: Problem, *, samples: int = 256, iters: int = 30, temperature: float = 1.0,
         sigma: float | None = None, sigma_decay: float = 1.0, init: dict | None = None,
         generator: torch.Generator | None = None):
    """Model-predictive path integral: the mean moves to the softmin-weighted average.

    ``w_k ∝ exp(-(E_k - min E) / temperature)``, ``mu <- Σ_k w_k x_k``.

    Args:
        samples: candidates ``K`` per problem and iteration.
        temperature: λ of the softmin weights (in energy units).
        sigma: std of the exploration noise (default: a quarter of the box, or 1).
        sigma_decay: noise multiplied by this after every iteration (1: fixed noise).

    Returns:
        MinimizeResult; ``trace`` ``[iters+1, B]`` best energy so far.
    """
    pack, unpack, project, mu, sig = _setup(prob, init, sigma)
    B, D, K = prob.B, mu.shape[-1], int(samples)
    watch = FiniteWatch(B, D, mu)
    with torch.no_grad():
        best_x, best_f = mu.clone(), prob.objective(unpack(mu), 1)
        watch.update(mu[:, None], best_f[:, None], 0)
        trace = [best_f]
        for i in range(iters):
            eps = torch.randn((K, D), generator=generator, dtype=mu.dtype).to(mu.device)
            xs = project(mu[:, None] + (sig * sigma_decay ** i)[:, None] * eps[None])
            fs = prob.objective(unpack(xs.reshape(B * K, D)), K).view(B, K)
            watch.update(xs, fs, i + 1)
            best_x, best_f = _track(best_x, best_f, xs, fs)
            w = torch.softmax(-(fs - fs.amin(1, keepdim=True)) / temperature, dim=1)
            mu = (w[..., None] * xs).sum(1)
            trace.append(best_f)
        mu = project(mu)
        best_x, best_f = _track(best_x, best_f, mu[:, None], prob.objective(unpack(mu), 1)[:, None])
    watch.check(prob, unpack, "mppi", unpack(best_x))
    return prob.result(unpack(best_x), trace, "mppi", {"samples": K, "iters": iters, "temperature": temperature})
