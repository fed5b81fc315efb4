"""Sampling-based minimization: the cross-entropy method and MPPI (§3.1.2, Mode-2 planning).

Both evaluate ``K`` candidates per problem in one ``[B*K]`` batch (observed inputs
repeated). The loop body has no host-device synchronisation: no ``.item()``, no Python
branch on a tensor value; the best candidate so far is kept with ``torch.where``.

Batching: the standard-normal draws ``[K, *shape]`` of an iteration are shared by all
B problems (common random numbers), so a problem solved inside a batch sees exactly the
draws it would see alone with the same seed — batched and single results agree by
construction.

How an iteration runs (``compile=``): eagerly, under ``torch.inference_mode`` for the plain energy
(the answer's tensors are copied out of it); through ``torch.compile`` (``True``, built once per
model, sizes and settings in this process); as an AOTInductor package kept on disk across
processes (``"aot"``, :mod:`ebmgraph.infer.aot`); or ``"auto"`` (the default): the package when
one is on disk for this model, sizes and settings, else eagerly until this process has spent
about :data:`AUTO_BUILD_AFTER_S` in eager plans of that configuration, then the package is built
(announced on stderr, one line) — so a one-off plan never waits for a build and a long control
run stops paying eager prices.
"""
from __future__ import annotations

import contextlib
import sys
import time
import weakref

import torch

from ..errors import SpecError
from ..kernels.mppi import n_elites
from . import aot
from .core import (PLANNER_COMPILE_OPTIONS, FiniteWatch, MinimizeResult, NonFiniteEnergy, Problem, compiled_once,
                   initial_values, packer)

# compile="auto" builds a configuration's package once this process has spent about this long planning it eagerly
# (ski rental: never much more than twice the better choice), and announces the build as about this long: cold
# builds of the CEM / MPPI iteration at K = 1,024, T = 32 took 33-96 s of wall time on the 2-core EPYC of
# BENCHMARKS.md, shared with other jobs (about 30 s of CPU time each); loading one in a new process, 0.02-0.08 s.
AUTO_BUILD_AFTER_S = 45.0
_EAGER_SPENT: dict = {}  # package key -> seconds of eager plans in this process
_FAILED: set = set()  # package keys whose build failed in this process ("auto" stays eager for them)
_FINGERPRINTS = weakref.WeakKeyDictionary()  # model -> {(dtype, device): aot.model_fingerprint}, computed once
_DIGESTS: dict = {}  # what a package is built from -> its key (aot.digest), computed once per process
COMPILE_MODES = (False, True, "aot", "auto")
_HEAP = {"nudged": False}


def _keep_freed_memory() -> None:
    """The planners' one process-wide effect, once per process: allocate and free one untouched 16 MiB buffer.

    Each evaluation of ``K`` candidates allocates and frees a few MiB of transients (every candidate's states
    over the horizon, ``[B*K*T, S]``). Under glibc's default thresholds the freed top of the heap is handed
    back to the OS after every evaluation and page-faulted in again by the next: measured 1,300-2,300 minor
    faults and up to 9 ms of system time per plan at K = 1,024, T = 32 (CEM or MPPI, 5 iterations; ~10% of
    the plan), where the plain loop of ``benchmarks/planners.py``, whose transients are smaller, has none.
    Freeing one mmapped chunk raises glibc's adaptive ``M_MMAP_THRESHOLD`` to its size and
    ``M_TRIM_THRESHOLD`` to twice that (mallopt(3)), as any program's first large free does: the process then
    keeps up to 32 MiB of freed heap for reuse (measured after it: no faults). Untouched, the buffer costs one
    mmap/munmap; other allocators ignore it.
    """
    if not _HEAP["nudged"]:
        _HEAP["nudged"] = True
        torch.empty(16 << 20, dtype=torch.uint8)


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


def _energy_fn(prob: Problem, unpack):
    """``f(ebm, xs [B, K, D], *obs) -> (objective [B, K], terms (one [B, K] per term))`` with the observed
    values prepared once per plan (``obs``, as :func:`_obs` orders them), not once per iteration, and encoded
    once per problem (``evaluate(..., repeat=K)``). The plain energy reads the model as an argument: a
    compiled iteration kept for later plans then holds no reference to it. A wrapped objective (risk,
    adversary, penalty) gives no terms."""
    if prob.objective_fn is not None:
        def wrapped(ebm, xs, *obs):
            B, K, D = xs.shape
            return prob.objective(unpack(xs.reshape(B * K, D)), K).view(B, K), ()

        return wrapped
    names = tuple(sorted(prob.given(1)))

    def f(ebm, xs, *obs):
        B, K, D = xs.shape
        out = ebm.evaluate({**dict(zip(names, obs)), **unpack(xs.reshape(B * K, D))}, validate=False, repeat=K)
        return out.total.view(B, K), tuple(out.terms[t].view(B, K) for t in _terms(ebm))

    return f


def _terms(ebm) -> tuple:
    """The model's energy terms, in the order the planners carry them."""
    return tuple(e.name for e in ebm.graph.energies)


def _obs(prob: Problem, K: int) -> tuple:
    """The observed values as :func:`_energy_fn` reads them (sorted by name, contiguous)."""
    given = prob.given(K)
    return tuple(given[n].contiguous() for n in sorted(given))


class _Bound(torch.nn.Module):
    """``fn(model, *tensors)`` as a module over the model, so that an AOT package reads its weights as inputs."""

    def __init__(self, ebm, fn):
        super().__init__()
        self.ebm, self.fn = ebm, fn

    def forward(self, *xs):
        return self.fn(self.ebm, *xs)


def _fingerprint(ebm):
    per = _FINGERPRINTS.setdefault(ebm, {})
    k = (str(ebm.dtype), str(ebm.device))
    if k not in per:
        per[k] = aot.model_fingerprint(ebm)
    return per[k]


class _Runner:
    """How this plan runs its iteration (``compile=``): ``runner(*args)`` with ``args`` tensors only,
    ``runner.done(seconds)`` after the loop (what ``"auto"`` counts), ``runner.eager`` whether it ran eagerly."""

    def __init__(self, prob: Problem, key: tuple, make, compile, example: tuple):
        if compile not in COMPILE_MODES:
            raise SpecError(f"compile={compile!r}: choose 'auto', False, True (torch.compile) or 'aot' (AOTInductor)")
        ebm = prob.ebm
        self.ebm, self.spend, self.eager = ebm, None, True
        wrapped = prob.objective_fn is not None
        if wrapped and compile in (True, "aot"):
            what = " / ".join(f"{k}=" for k in prob.wrapped) or "an objective wrapper"
            raise SpecError(f"compile={compile!r} compiles the plain energy; {what} makes the objective a wrapped "
                            f"one, which runs eagerly: drop compile={compile!r}")
        self.fn = make()
        if compile is False or (compile == "auto" and wrapped):
            return
        sizes = (tuple(prob.over), tuple(sorted(prob.observed)), prob.B, str(prob.dtype), str(prob.device))
        if compile is True:
            self.fn = compiled_once(ebm, key + sizes, make, options=PLANNER_COMPILE_OPTIONS)
            self.eager = False
            return
        fp = _fingerprint(ebm)
        if fp is None and compile == "auto":  # a user's module: no package it could be kept in
            return
        parts = ("sampling-iteration", fp if fp is not None else f"instance {id(ebm)}") + key + sizes + (
            _terms(ebm), aot.signature(example))
        digest = _DIGESTS.get(parts)
        if digest is None:
            digest = _DIGESTS[parts] = aot.digest(parts, PLANNER_COMPILE_OPTIONS)
        owner = ebm if fp is None else None
        if compile == "auto" and (digest in _FAILED or not (aot.is_built(digest, owner)
                                                            or _EAGER_SPENT.get(digest, 0.0) >= AUTO_BUILD_AFTER_S)):
            self.spend = digest
            return
        bound = _Bound(ebm, self.fn)
        try:
            # a copy: inductor adds its own keys to the options it is given, which would change later keys
            runner = aot.load_or_build(bound, example, digest, dict(PLANNER_COMPILE_OPTIONS), owner=owner,
                                       what=f"the {key[0].upper()} iteration (B={prob.B}, K={key[1]}, D={key[2]})",
                                       expected_s=AUTO_BUILD_AFTER_S)
        except Exception as e:  # noqa: BLE001 - "auto" plans on eagerly; "aot" says why it cannot
            if compile == "aot":
                raise
            print(f"ebmgraph: planning eagerly; the {key[0]} iteration did not build ({type(e).__name__}: "
                  f"{str(e).splitlines()[0][:120] if str(e) else ''})", file=sys.stderr)
            _FAILED.add(digest)
            return
        state = aot.live_state(bound)
        self.fn = lambda ebm, *args: runner(*(a.contiguous() for a in args), *state)
        self.eager = False

    def __call__(self, *args):
        return self.fn(self.ebm, *args)

    def done(self, seconds: float) -> None:
        if self.spend is not None:
            _EAGER_SPENT[self.spend] = _EAGER_SPENT.get(self.spend, 0.0) + seconds


class _Record:
    """What each evaluation of a plan found, kept as tensors with no host sync: per problem its lowest
    candidate and objective (3 operations an iteration); the best so far, the trace and the check for
    non-finite energies are computed once, when the plan ends (:meth:`result`). The per-term energies come
    from the same evaluations (plain energy), so the answer needs no second call of the model.

    A wrapped objective (risk, adversary, penalty) gives no terms: its answer is reported through the
    wrapper and its non-finite values are watched by :class:`FiniteWatch` (which re-evaluates the bad
    candidate to name the terms)."""

    def __init__(self, prob: Problem, unpack, compile=False):
        self.prob, self.unpack = prob, unpack
        self.plain = prob.objective_fn is None
        # compile=True: the last mean's evaluation compiled too (eager it cost ~1 ms of a 9 ms plan at T = 32)
        f = _energy_fn(prob, unpack)
        self.score = compiled_once(prob.ebm, ("score", tuple(prob.over), tuple(sorted(prob.observed)), prob.B,
                                              str(prob.dtype), str(prob.device)), lambda: f,
                                   options=PLANNER_COMPILE_OPTIONS) if compile is True and self.plain else f
        self.rows = torch.arange(prob.B, device=prob.device)
        D = sum(int(torch.Size(prob.shape(n)).numel()) for n in prob.over)
        like = torch.empty(0, dtype=prob.dtype, device=prob.device)
        self.watch = None if self.plain else FiniteWatch(prob.B, D, like)
        self.runs: list = []  # per evaluation: (fs [B, K], lowest objective [B], its index [B], its x [B, D], terms)

    def add(self, xs: torch.Tensor, fs: torch.Tensor, terms) -> None:
        """One evaluation: candidates ``xs`` ``[B, K, D]``, objective ``fs`` ``[B, K]``, ``terms`` (one ``[B, K]``
        each). A NaN candidate is never the lowest."""
        fk, k = fs.nan_to_num(nan=float("inf")).min(1)
        self.runs.append((fs, fk, k, xs[self.rows, k], tuple(terms)))
        if self.watch is not None:
            self.watch.update(xs, fs, len(self.runs) - 1)

    def evaluate(self, xs: torch.Tensor, obs: tuple) -> None:
        """Evaluate and record candidates ``xs`` ``[B, K, D]`` (one call of the model)."""
        self.add(xs, *self.score(self.prob.ebm, xs, *obs))

    def result(self, method: str, info: dict, final: bool) -> MinimizeResult:
        """The lowest candidate over all evaluations (the earliest on ties), its energy and terms, and the trace
        ``[iters+1, B]`` (row 0 the start, then the best so far after each iteration; with ``final``, the last
        evaluation, of the mean, counts in the last row); raises :class:`NonFiniteEnergy` if an evaluation met
        one. The tensors are copied out of inference mode (callers may differentiate through them)."""
        rows, runs = self.rows, self.runs
        f = torch.stack([r[1] for r in runs])  # [n, B]
        best = f.argmin(0)  # [B]: the first evaluation reaching the lowest value
        x = torch.stack([r[3] for r in runs])[best, rows]
        so_far = f.cummin(0).values
        trace = torch.cat([runs[0][0][None, :, 0], so_far[:-2], so_far[-1:]] if final and len(runs) > 1
                          else [runs[0][0][None, :, 0], so_far])
        values = {n: v.clone() for n, v in self.unpack(x).items()}
        info = {k: ({n: t.clone() for n, t in v.items()} if k == "mean" else v) for k, v in info.items()}
        self._check(method, values)
        if not self.plain:  # report through the wrapper
            return self.prob.result(values, list(trace), method, info)
        terms = {name: torch.stack([r[4][j][rows, r[2]] for r in runs])[best, rows]
                 for j, name in enumerate(_terms(self.prob.ebm))}
        return MinimizeResult(values, f[best, rows], terms, trace, method, info)

    def _check(self, method: str, values: dict) -> None:
        if self.watch is not None:
            self.watch.check(self.prob, self.unpack, method, values)
            return
        if bool(torch.cat([r[0].reshape(-1) for r in self.runs]).isfinite().all()):  # the plan's one host sync
            return
        ok = torch.stack([r[0].isfinite().all(1) for r in self.runs])  # [n, B]
        b = int((~ok).any(0).nonzero()[0, 0])  # the first problem that met one, at its first evaluation
        i = int((~ok[:, b]).nonzero()[0, 0])
        fs, _, _, _, terms = self.runs[i]
        k = int((~fs[b].isfinite()).nonzero()[0, 0])
        bad = [n for n, t in zip(_terms(self.prob.ebm), terms) if not bool(t[b, k].isfinite())]
        raise NonFiniteEnergy(f"{method} met a non-finite energy at iteration {i} (problem {b})"
                              + (f": term(s) {', '.join(bad)} are NaN or Inf" if bad else "")
                              + "; the last finite values are kept in the error's .values",
                              terms=bad, iteration=i, values=values)


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
    eps[0] = 0
    return eps.to(mu.device)


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


def _cem_step(f, project, n_elite: int, momentum: float, min_sigma: float, n_keep: int):
    """``step(ebm, mu [B, D], sig [B, D], eps [K, D], *kept, *obs) -> (xs, fs, mu, sig, *kept, *terms)``
    (``kept`` ``[B, n_keep, D]``: the last iteration's best elites, present when ``n_keep``)."""
    def step(ebm, mu, sig, eps, *rest):
        kept, obs = (rest[:1], rest[1:]) if n_keep else ((), rest)
        xs = project(mu[:, None] + sig[:, None] * eps[None])  # [B, K, D]
        if n_keep:  # the best elites of the last iteration take the place of the last draws (iCEM)
            xs = torch.cat([xs[:, :xs.shape[1] - n_keep], kept[0]], 1)
        fs, terms = f(ebm, xs, *obs)
        idx = fs.topk(n_elite, dim=1, largest=False).indices  # [B, n_elite], best first
        el = xs.gather(1, idx[..., None].expand(-1, -1, xs.shape[-1]))
        mu = momentum * mu + (1 - momentum) * el.mean(1)
        sd = el.std(1, unbiased=False) if n_elite > 1 else torch.zeros_like(sig)
        sig = (momentum * sig + (1 - momentum) * sd).clamp_min(min_sigma)
        return (xs, fs, mu, sig) + ((el[:, :n_keep].contiguous(),) if n_keep else ()) + tuple(terms)

    return step


def _mppi_step(f, project, temperature: float):
    """``step(ebm, mu [B, D], sig [B, D], eps [K, D], *obs) -> (xs, fs, mu, *terms)``."""
    def step(ebm, mu, sig, eps, *obs):
        xs = project(mu[:, None] + sig[:, None] * eps[None])
        fs, terms = f(ebm, xs, *obs)
        w = torch.softmax(-(fs - fs.amin(1, keepdim=True)) / temperature, dim=1)
        return (xs, fs, (w[..., None] * xs).sum(1)) + tuple(terms)

    return step


def cem(prob: Problem, *, samples: int = 256, iters: int = 30, elite_frac: float = 0.1, momentum: float = 0.1,
        sigma: float | None = None, min_sigma: float = 1e-6, init: dict | None = None, final_mean: bool = True,
        noise_beta: float = 0.0, elite_reuse: float = 0.0, compile: bool | str = "auto",
        generator: torch.Generator | None = None):
    """Cross-entropy method: sample around a Gaussian, refit it to the elite fraction.

    Each iteration evaluates the model once, on ``K`` candidates per problem; the first
    candidate is the current mean itself (the start, in the first iteration), so the answer is
    never worse than the start.

    Args:
        samples: candidates ``K`` per problem and iteration.
        iters: iterations.
        elite_frac: fraction of candidates kept to refit mean and std (``kernels.mppi.n_elites``:
            ``round(elite_frac · K)``, at least 1; the fused planner counts the same).
        momentum: weight of the old mean/std in the update (0: plain refit).
        sigma: initial std (default: a quarter of the box, or 1 if unbounded).
        min_sigma: floor of the refitted std.
        init: warm start for the mean ``{name: [B, *shape]}``.
        final_mean: also evaluate the last refitted mean (one more, small call of the model);
            ``False`` answers with the best candidate evaluated (receding-horizon control on a
            per-decision budget).
        noise_beta: colour of the sampling noise along the time axis of action arrays (0: white;
            1-3: smoother, iCEM).
        elite_reuse: fraction of the elites carried into the next iteration's candidates, in place of as
            many fresh draws (iCEM keeps 0.3): the best candidate so far is then always re-scored.
        compile: how each iteration (candidates from the draws, the model, the refit) runs: ``"auto"``
            (default), ``False``, ``True`` or ``"aot"`` (the module docstring says what each does;
            BENCHMARKS.md the figures).

    Returns:
        MinimizeResult; ``trace`` ``[iters+1, B]`` best energy so far (row 0: the start);
        ``info["mean"]`` the last mean ``{name: [B, *shape]}`` (a warm start for the next plan).
    """
    _keep_freed_memory()
    pack, unpack, project, mu, sig = _setup(prob, init, sigma)
    B, D, K = prob.B, mu.shape[-1], int(samples)
    mu = mu.contiguous()
    n_elite = n_elites(elite_frac, K)
    n_keep = min(n_elite, int(round(elite_reuse * n_elite)), K - 1)
    colour = _colour(prob, noise_beta, mu.dtype)
    obs = _obs(prob, K)
    eps = _draws(generator, K, mu, colour)
    kept = (project(mu[:, None] + sig[:, None] * eps[None, K - n_keep:]),) if n_keep else ()
    run = _Runner(prob, ("cem", K, D, n_elite, float(momentum), float(min_sigma), n_keep),
                  lambda: _cem_step(_energy_fn(prob, unpack), project, n_elite, momentum, min_sigma, n_keep),
                  compile, (mu, sig, eps) + kept + obs)
    rec = _Record(prob, unpack, compile)
    t0 = time.perf_counter()
    with _grad_mode(run, rec):
        for i in range(iters):
            if i:
                eps = _draws(generator, K, mu, colour)
            xs, fs, mu, sig, *rest = run(mu, sig, eps, *kept, *obs)
            kept, terms = tuple(rest[:1 if n_keep else 0]), rest[1 if n_keep else 0:]
            rec.add(xs, fs, terms)
        mu = project(mu)
        if final_mean:
            rec.evaluate(mu[:, None], _obs(prob, 1))
    run.done(time.perf_counter() - t0)
    return rec.result("cem", {"samples": K, "iters": iters, "elite": n_elite, "elite_reuse": n_keep,
                              "compiled": not run.eager, "mean": unpack(mu)}, final_mean)


def _grad_mode(run: _Runner, rec: _Record):
    """Inference mode for the plain energy run eagerly (less work per operation than no_grad); no_grad for a
    wrapped objective (which may differentiate inside: the adversary's ascent) and for compiled code."""
    if run.eager and rec.plain and not torch.is_inference_mode_enabled():
        return torch.inference_mode()
    return torch.no_grad() if torch.is_grad_enabled() else contextlib.nullcontext()


def mppi(prob: Problem, *, samples: int = 256, iters: int = 30, temperature: float = 1.0,
         sigma: float | None = None, sigma_decay: float = 1.0, init: dict | None = None, final_mean: bool = True,
         noise_beta: float = 0.0, compile: bool | str = "auto", generator: torch.Generator | None = None):
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
        compile: how each iteration runs (as :func:`cem`).

    Returns:
        MinimizeResult; ``trace`` ``[iters+1, B]`` best energy so far; ``info["mean"]`` the last
        weighted mean (a warm start for the next plan).
    """
    _keep_freed_memory()
    pack, unpack, project, mu, sig = _setup(prob, init, sigma)
    B, D, K = prob.B, mu.shape[-1], int(samples)
    mu = mu.contiguous()
    colour = _colour(prob, noise_beta, mu.dtype)
    obs = _obs(prob, K)
    eps = _draws(generator, K, mu, colour)
    run = _Runner(prob, ("mppi", K, D, float(temperature)),
                  lambda: _mppi_step(_energy_fn(prob, unpack), project, temperature), compile, (mu, sig, eps) + obs)
    rec = _Record(prob, unpack, compile)
    t0 = time.perf_counter()
    with _grad_mode(run, rec):
        for i in range(iters):
            if i:
                eps = _draws(generator, K, mu, colour)
            xs, fs, mu, *terms = run(mu, sig * sigma_decay ** i if sigma_decay != 1.0 else sig, eps, *obs)
            rec.add(xs, fs, terms)
        mu = project(mu)
        if final_mean:
            rec.evaluate(mu[:, None], _obs(prob, 1))
    run.done(time.perf_counter() - t0)
    return rec.result("mppi", {"samples": K, "iters": iters, "temperature": temperature,
                               "compiled": not run.eager, "mean": unpack(mu)}, final_mean)
