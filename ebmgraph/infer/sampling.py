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
from .core import PLANNER_COMPILE_OPTIONS, FiniteWatch, MinimizeResult, Problem, compiled_once, initial_values, packer


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


class _Best:
    """The lowest-energy candidate per problem seen so far, with its per-term energies when the
    objective is the plain energy (so the answer needs no second evaluation of the model)."""

    def __init__(self, prob: Problem, unpack, compile: bool = False):
        self.prob, self.unpack = prob, unpack
        self.plain = prob.objective_fn is None  # else a wrapped objective (risk, adversary, penalty)
        # compile: the last mean's evaluation compiled too (eager it cost ~1 ms of a 9 ms plan at T = 32)
        self.score = _step(prob, ("score",), lambda: _energy_fn(prob, unpack), compile)
        self.x = self.f = self.terms = None

    def track(self, xs: torch.Tensor, fs: torch.Tensor, terms: dict) -> torch.Tensor:
        """Keep the lowest of ``fs`` ``[B, K]`` per problem (a NaN candidate is never the best)."""
        D = xs.shape[-1]
        fk, k = fs.nan_to_num(nan=float("inf")).min(1)
        xk = xs.gather(1, k[:, None, None].expand(-1, 1, D)).squeeze(1)
        tk = {t: v.gather(1, k[:, None]).squeeze(1) for t, v in terms.items()}
        if self.x is None:
            self.x, self.f, self.terms = xk, fk, tk
        else:
            better = fk < self.f
            self.x, self.f = torch.where(better[:, None], xk, self.x), torch.where(better, fk, self.f)
            self.terms = {t: torch.where(better, v, self.terms[t]) for t, v in tk.items()}
        return fs

    def evaluate(self, xs: torch.Tensor) -> torch.Tensor:
        """Objective ``[B, K]`` of candidates ``xs`` ``[B, K, D]`` (one call of the model), tracked."""
        return self.track(xs, *self.score(xs, _repeated(self.prob, xs.shape[1])))

    def result(self, trace: list, method: str, info: dict):
        values = self.unpack(self.x)
        if not self.plain:  # report through the wrapper
            return self.prob.result(values, trace, method, info)
        values = {n: v.detach() for n, v in values.items()}
        return MinimizeResult(values, self.f.detach(), {t: v.detach() for t, v in self.terms.items()},
                              torch.stack([t.detach() for t in trace]), method, info)


def _draws(generator, K: int, mu: torch.Tensor, colour=None) -> torch.Tensor:
    """``[K, D]`` standard-normal draws whose first row is zero: the current mean is always a candidate.

    With ``colour`` (from :func:`_colour`) the draws of each array variable are *coloured* along its
    time axis (power spectrum ∝ 1/f^beta, unit variance per step; iCEM, Pinneri et al. 2020):
    beta = 0 is white noise, 2 is Brownian-like, so a sample pushes one way for many steps — what
    a swing-up or a hill climb needs.
    """
    eps = torch.randn((K, mu.shape[-1]), generator=generator, dtype=mu.dtype)
    for start, L, R, amp in colour or ():  # a segment [start, start + L*R) holding an [L, R] array, time first
        seg = eps[:, start:start + L * R].reshape(K, L, R).transpose(1, 2)  # [K, R, L]
        col = torch.fft.irfft(torch.fft.rfft(seg, dim=-1) * amp, n=L, dim=-1)
        eps[:, start:start + L * R] = col.transpose(1, 2).reshape(K, L * R)
    eps = eps.to(mu.device)
    eps[0] = 0
    return eps


def _colour(prob: Problem, beta: float, dtype) -> list | None:
    """``(start, L, R, amplitudes)`` of each array variable in the flat layout (time axis first),
    the 1/f^(beta/2) amplitudes scaled so that every step keeps unit variance; None for white noise."""
    if not beta:
        return None
    out, i = [], 0
    for n in prob.over:
        shape = prob.shape(n)
        size = int(torch.Size(shape).numel())
        if prob.vars[n].index is not None and len(shape) >= 1 and shape[0] >= 2:
            out.append((i, shape[0], size // shape[0], colour_filter(shape[0], beta, dtype)))
        i += size
    return out


def colour_filter(L: int, beta: float, dtype) -> torch.Tensor:
    """rfft amplitudes ∝ 1/f^(beta/2) for ``L`` steps, scaled so the filtered noise has unit variance."""
    f = torch.fft.rfftfreq(L, dtype=dtype)
    f[0] = f[1]
    amp = f.pow(-beta / 2)
    # a circular filter of white noise with impulse response h: variance Σ h² at every step
    return amp / torch.fft.irfft(amp, n=L).pow(2).sum().sqrt()


def _energy_fn(prob: Problem, unpack):
    """``f(xs [B, K, D], obs) -> (objective [B, K], terms)`` with the observed values prepared once per
    plan (``obs``, from :func:`_repeated`), not once per iteration, and encoded once per problem
    (``evaluate(..., repeat=K)``), not once per candidate."""
    ebm, plain = prob.ebm, prob.objective_fn is None

    def f(xs, obs):
        B, K, D = xs.shape
        flat = unpack(xs.reshape(B * K, D))
        if not plain:
            return prob.objective(flat, K).view(B, K), {}
        out = ebm.evaluate({**obs, **flat}, validate=False, repeat=K)
        return out.total.view(B, K), {t: v.view(B, K) for t, v in out.terms.items()}

    return f


def _repeated(prob: Problem, K: int) -> dict:
    return prob.given(K)


def _step(prob: Problem, key: tuple, make, compile: bool):
    """The planning iteration ``make()`` builds, or (``compile=True``) its ``torch.compile`` — built once
    per model, method, sizes and settings and kept on the model, so later plans reuse the compiled code."""
    if not compile:
        return make()
    if prob.objective_fn is not None:
        raise SpecError("compile=True compiles the plain energy; a wrapped objective (risk, adversary, "
                        "penalty) runs eagerly: drop compile=True")
    return compiled_once(prob.ebm, (key, tuple(prob.over), tuple(sorted(prob.observed)), prob.B, str(prob.dtype),
                                    str(prob.device)), make,
                         options=PLANNER_COMPILE_OPTIONS)


def _cem_step(f, project, n_elite: int, momentum: float, min_sigma: float, n_keep: int):
    def step(mu, sig, eps, obs, kept):
        xs = project(mu[:, None] + sig[:, None] * eps[None])  # [B, K, D]
        if n_keep:  # the best elites of the last iteration take the place of the last draws (iCEM)
            xs = torch.cat([xs[:, :xs.shape[1] - n_keep], kept], 1)
        fs, terms = f(xs, obs)
        idx = fs.topk(n_elite, dim=1, largest=False).indices  # [B, n_elite], best first
        el = xs.gather(1, idx[..., None].expand(-1, -1, xs.shape[-1]))
        mu = momentum * mu + (1 - momentum) * el.mean(1)
        sd = el.std(1, unbiased=False) if n_elite > 1 else torch.zeros_like(sig)
        sig = (momentum * sig + (1 - momentum) * sd).clamp_min(min_sigma)
        return xs, fs, terms, mu, sig, el[:, :n_keep]

    return step


def _mppi_step(f, project, temperature: float):
    def step(mu, sig, eps, obs):
        xs = project(mu[:, None] + sig[:, None] * eps[None])
        fs, terms = f(xs, obs)
        w = torch.softmax(-(fs - fs.amin(1, keepdim=True)) / temperature, dim=1)
        return xs, fs, terms, (w[..., None] * xs).sum(1)

    return step


def cem(prob: Problem, *, samples: int = 256, iters: int = 30, elite_frac: float = 0.1, momentum: float = 0.1,
        sigma: float | None = None, min_sigma: float = 1e-6, init: dict | None = None, final_mean: bool = True,
        noise_beta: float = 0.0, elite_reuse: float = 0.0, compile: bool = False,
        generator: torch.Generator | None = None):
    """Cross-entropy method: sample around a Gaussian, refit it to the elite fraction.

    Each iteration evaluates the model once, on ``K`` candidates per problem; the first
    candidate is the current mean itself (the start, in the first iteration), so the answer is
    never worse than the start.

    Args:
        samples: candidates ``K`` per problem and iteration.
        iters: iterations.
        elite_frac: fraction of candidates kept to refit mean and std.
        momentum: weight of the old mean/std in the update (0: plain refit).
        sigma: initial std (default: a quarter of the box, or 1 if unbounded).
        init: warm start for the mean ``{name: [B, *shape]}``.
        final_mean: also evaluate the last refitted mean (one more, small call of the model);
            ``False`` answers with the best candidate evaluated (receding-horizon control on a
            per-decision budget).
        noise_beta: colour of the sampling noise along the time axis of action arrays (0: white;
            1-3: smoother, iCEM).
        elite_reuse: fraction of the elites carried into the next iteration's candidates, in place of as
            many fresh draws (iCEM keeps 0.3): the best candidate so far is then always re-scored.
        compile: run each iteration (candidates from the draws, the model, the refit) through ``torch.compile``; compiled
            once per model, sizes and settings and reused by later plans (issue 14; BENCHMARKS.md).

    Returns:
        MinimizeResult; ``trace`` ``[iters+1, B]`` best energy so far (row 0: the start);
        ``info["mean"]`` the last mean ``{name: [B, *shape]}`` (a warm start for the next plan).
    """
    pack, unpack, project, mu, sig = _setup(prob, init, sigma)
    B, D, K = prob.B, mu.shape[-1], int(samples)
    n_elite = max(1, int(round(elite_frac * K)))
    watch = FiniteWatch(B, D, mu)
    best = _Best(prob, unpack, compile)
    colour = _colour(prob, noise_beta, mu.dtype)
    n_keep = min(n_elite, int(round(elite_reuse * n_elite)), K - 1)
    step = _step(prob, ("cem", K, D, n_elite, momentum, min_sigma, n_keep),
                 lambda: _cem_step(_energy_fn(prob, unpack), project, n_elite, momentum, min_sigma, n_keep), compile)
    obs = _repeated(prob, K)
    with torch.no_grad():
        trace = []
        kept = None
        for i in range(iters):
            eps = _draws(generator, K, mu, colour)
            if kept is None:  # first iteration: the fresh draws themselves
                kept = project(mu[:, None] + sig[:, None] * eps[None, K - n_keep:])
            xs, fs, terms, mu, sig, kept = step(mu, sig, eps, obs, kept)
            best.track(xs, fs, terms)
            watch.update(xs, fs, i)
            if i == 0:
                trace.append(fs[:, 0])  # the start
            trace.append(best.f)
        mu = project(mu)
        if final_mean:
            watch.update(mu[:, None], best.evaluate(mu[:, None]), iters)
            trace[-1] = best.f
    watch.check(prob, unpack, "cem", unpack(best.x))
    return best.result(trace, "cem", {"samples": K, "iters": iters, "elite": n_elite, "elite_reuse": n_keep,
                                      "mean": unpack(mu)})


def mppi(prob: Problem, *, samples: int = 256, iters: int = 30, temperature: float = 1.0,
         sigma: float | None = None, sigma_decay: float = 1.0, init: dict | None = None, final_mean: bool = True,
         noise_beta: float = 0.0, compile: bool = False, generator: torch.Generator | None = None):
    """Model-predictive path integral: the mean moves to the softmin-weighted average.

    ``w_k ∝ exp(-(E_k - min E) / temperature)``, ``mu <- Σ_k w_k x_k``. Each iteration evaluates
    the model once, on ``K`` candidates per problem, the first being the current mean.

    Args:
        samples: candidates ``K`` per problem and iteration.
        temperature: λ of the softmin weights (in energy units).
        sigma: std of the exploration noise (default: a quarter of the box, or 1).
        sigma_decay: noise multiplied by this after every iteration (1: fixed noise).
        final_mean: also evaluate the last weighted mean (one more, small call of the model);
            ``False`` answers with the best candidate evaluated.
        noise_beta: colour of the sampling noise along the time axis of action arrays (0: white).
        compile: run each iteration through ``torch.compile`` (as :func:`cem`).

    Returns:
        MinimizeResult; ``trace`` ``[iters+1, B]`` best energy so far; ``info["mean"]`` the last
        weighted mean (a warm start for the next plan).
    """
    pack, unpack, project, mu, sig = _setup(prob, init, sigma)
    B, D, K = prob.B, mu.shape[-1], int(samples)
    watch = FiniteWatch(B, D, mu)
    best = _Best(prob, unpack, compile)
    colour = _colour(prob, noise_beta, mu.dtype)
    step = _step(prob, ("mppi", K, D, temperature),
                 lambda: _mppi_step(_energy_fn(prob, unpack), project, temperature), compile)
    obs = _repeated(prob, K)
    with torch.no_grad():
        trace = []
        for i in range(iters):
            xs, fs, terms, mu = step(mu, sig * sigma_decay ** i, _draws(generator, K, mu, colour), obs)
            best.track(xs, fs, terms)
            watch.update(xs, fs, i)
            if i == 0:
                trace.append(fs[:, 0])
            trace.append(best.f)
        mu = project(mu)
        if final_mean:
            watch.update(mu[:, None], best.evaluate(mu[:, None]), iters)
            trace[-1] = best.f
    watch.check(prob, unpack, "mppi", unpack(best.x))
    return best.result(trace, "mppi", {"samples": K, "iters": iters, "temperature": temperature,
                                       "mean": unpack(mu)})
