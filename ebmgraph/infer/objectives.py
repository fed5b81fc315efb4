"""Objective wrappers: change what a minimizer minimizes, not how (§5, Figure 17).

* :func:`with_risk`: sampled latents drawn from their Gibbs distribution (eq. 23); the
  objective is ``mean + λ·std`` over the draws of the energy less the latents' priors
  (planning under uncertainty).
* :func:`with_adversary`: latents maximized over (§5, games): ``min_a max_w E``.
* :func:`with_penalty`: ``E + penalty(values)`` while minimizing (e.g. the information cost
  of a noisy latent, §4.5); the reported energy is ``E`` alone.

Each returns an :class:`~ebmgraph.infer.core.Objective` record (``fn``: ``values, k -> [B*k]``;
``report``; the ``minimize`` settings it stands for), which ``Problem.wrap`` installs.
"""
from __future__ import annotations

import torch

from .. import ir
from ..conventions import repeat_rows, tile_rows
from ..errors import SpecError
from .core import Objective, Problem
from .discrete import configs, space_size
from .gibbs import gibbs_draws, prior_terms


def with_risk(prob: Problem, sample: list[str], n_draws: int, lam: float, gen) -> Objective:
    """The objective ``mean + λ·std`` over ``n_draws`` draws of the sampled latents of the energy
    *without* their priors R(z): the draws already follow exp(−R), so adding R again would count the
    prior twice and put plan-independent noise into the spread."""
    ebm = prob.ebm
    draws = {s: gibbs_draws(ebm, s, n_draws, gen, prob.dtype, prob.device) for s in sample}
    D = n_draws
    priors = prior_terms(ebm, sample)

    def plan_energy(out):
        return out.total - sum(out.terms[t] for t in priors) if priors else out.total

    def energies(values: dict, k: int):
        N = prob.B * k
        inputs = prob.given(k * D)
        inputs.update({n: repeat_rows(v, D) for n, v in values.items()})
        inputs.update({s: tile_rows(d, N) for s, d in draws.items()})
        return ebm.evaluate(inputs, validate=False, repeat=k * D), N

    def objective(values, k):
        out, N = energies(values, k)
        E = plan_energy(out).view(N, D)
        return E.mean(1) + lam * E.std(1, unbiased=False)

    def report(values):
        with torch.no_grad():
            out, N = energies(values, 1)
            E = plan_energy(out).view(N, D)
            total = E.mean(1) + lam * E.std(1, unbiased=False)
            terms = {t: v.view(N, D).mean(1) for t, v in out.terms.items()}
        return values, total, terms

    return Objective(objective, report, ("sample", "risk") if lam else ("sample",))


def with_adversary(prob: Problem, maximize: list[str], inner_steps: int, inner_lr: float) -> Objective:
    ebm = prob.ebm
    g = ebm.graph
    disc = all(isinstance(g.var(w).domain, ir.Discrete) for w in maximize)
    advp = Problem(ebm, {}, maximize, batch=1, handled=tuple(v.name for v in g.variables))

    def inputs_for(values, k, M):
        inp = {n: repeat_rows(v, k * M) for n, v in prob.observed.items()}
        inp.update({n: repeat_rows(v, M) for n, v in values.items()})
        return inp

    if disc:
        M = space_size(advp, maximize)
        if M > 65536:
            raise SpecError(f"maximize over {M} discrete configurations is too many to enumerate")
        W = configs(advp, maximize, 0, M)

        def inner(values, k):
            N = prob.B * k
            inp = inputs_for(values, k, M)
            inp.update({w: tile_rows(v, N) for w, v in W.items()})
            E = ebm.evaluate(inp, validate=False).total.view(N, M)
            j = E.detach().argmax(1)
            return E.gather(1, j[:, None])[:, 0], {w: v[j] for w, v in W.items()}
    else:
        def inner(values, k):  # alternating: a few projected ascent steps on w, then E at (values, w*)
            N = prob.B * k
            ws = {w: torch.zeros((N,) + ebm.var_shape(w), dtype=prob.dtype, device=prob.device, requires_grad=True)
                  for w in maximize}
            fixed = {n: v.detach() for n, v in values.items()}
            opt = torch.optim.Adam(list(ws.values()), lr=inner_lr)
            params = list(ws.values())
            for _ in range(inner_steps):
                with torch.enable_grad():
                    inp = inputs_for(fixed, k, 1)
                    inp.update(ws)
                    # gradients w.r.t. the adversary only; the model's parameters collect none
                    grads = torch.autograd.grad(-ebm.evaluate(inp, validate=False).total.sum(), params)
                for t, gr in zip(params, grads):
                    t.grad = gr
                opt.step()
                with torch.no_grad():
                    for w, t in ws.items():
                        d = g.var(w).domain
                        t.clamp_(min=d.lo, max=d.hi) if d.bounded else None
            wstar = {w: t.detach() for w, t in ws.items()}
            inp = inputs_for(values, k, 1)
            inp.update(wstar)
            return ebm.evaluate(inp, validate=False).total, wstar  # Danskin: gradient through E at fixed w*

    def report(values):
        with torch.no_grad():
            _, wstar = inner(values, 1)
            full = {**values, **wstar}
            out = prob.evaluate(full)
        return full, out.total, dict(out.terms)

    return Objective(lambda values, k: inner(values, k)[0], report, ("maximize",))


def with_penalty(prob: Problem, penalty) -> Objective:
    """Minimize ``objective + penalty(values)`` (over ``prob``'s objective so far); results report what
    that objective reports, without the penalty.

    Args:
        penalty: ``{name: [B*k, *shape]} -> [B*k]``.
    """
    base = prob.objective_fn

    def objective(values, k):
        f = base(values, k) if base is not None else prob.evaluate(values, k).total
        return f + penalty(values)

    return Objective(objective, prob.report_fn, prob.wrapped + ("penalty",))
