"""Free energy: eliminate latents by minimization or marginalization (§2.3 / §4.2, eq. 4–5).

``F_∞(x, y) = min_z E(x, y, z)`` and ``F_β(x, y) = −(1/β) log ∫ exp(−β E(x, y, z)) dz``.

* discrete latents: exact ``logsumexp`` over all configurations;
* continuous latents: importance sampling. The stated proposal is the Laplace
  approximation ``q = N(z*, (β H)^{-1})`` around the minimizer ``z*`` (``H`` the Hessian
  of ``E`` at ``z*``, per problem); ``proposal="uniform"`` samples the box instead
  (both bounds needed). For a quadratic energy the Laplace proposal is exact and the
  estimate has zero variance.
"""
from __future__ import annotations

import math

import torch

from ..errors import SpecError
from ..util import as_generator
from ..conventions import tile_rows
from .core import Problem, packer
from .discrete import configs, space_size


def _hessian(f, X: torch.Tensor) -> torch.Tensor:
    """Per-row Hessian ``[N, D, D]`` of a row-separable ``f`` ``[N, D] -> [N]``."""
    with torch.enable_grad():
        X = X.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(f(X).sum(), X, create_graph=True)
        rows = [torch.autograd.grad(g[:, i].sum(), X, retain_graph=True, allow_unused=True)[0]
                for i in range(X.shape[1])]
    rows = [torch.zeros_like(X) if r is None else r for r in rows]
    return torch.stack(rows, 1).detach()


def free_energy(ebm, observed: dict | None, over, beta: float = float("inf"), *, seed: int = 0,
                generator: torch.Generator | None = None, samples: int = 4096, proposal: str = "laplace",
                max_configs: int = 1_000_000, batch: int | None = None, penalty=None,
                return_values: bool = False, outputs=None, **min_settings):
    """``F_β`` ``[B]``: the energy with ``over`` eliminated — for inference and training alike.

    At ``β = ∞``, ``F(x, y) = min_z E(x, y, z)`` (eq. 4) is found by :func:`minimize` and
    re-evaluated at the detached minimizer ``z*`` when the model has trainable parameters and
    gradients are on, so that ``∂F/∂w = ∂E/∂w (x, y, z*)`` (the envelope theorem): this is the
    free energy the contrastive and regularized losses train.

    Args:
        beta: inverse temperature; ``inf`` gives ``min_z E`` (via :func:`minimize`).
        penalty: (``β = ∞``) added to the objective while minimizing, not to ``F``.
        return_values: (``β = ∞``) also return the minimizer ``{name: [B, *shape]}``.
        outputs: (``β = ∞``) named values at the minimizer (``ebm.evaluate(..., outputs=)``), computed by the
            same forward as ``F``, returned last: ``(F, z*, values)`` (training's regularizers read them).
        samples: Monte Carlo samples per problem (continuous latents, finite β).
        proposal: ``"laplace"`` (Gaussian around the minimizer) or ``"uniform"`` (in bounds).
        min_settings: passed to :func:`minimize` (e.g. ``method``, ``steps``).

    Returns:
        ``[B]`` free energies.
    """
    gen = as_generator(generator if generator is not None else seed)
    if math.isinf(beta) and beta > 0:
        return _minimum(ebm, observed, over, gen, batch, penalty, return_values, outputs, min_settings)
    if return_values or penalty is not None or outputs is not None:
        raise ValueError("return_values, outputs and penalty apply to beta=inf (minimization)")
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    prob = Problem(ebm, observed, over, batch=batch)
    disc = [n for n in prob.over if prob.is_discrete(n)]
    if disc and len(disc) != len(prob.over):
        raise SpecError("free energy at finite beta over mixed discrete/continuous latents is not supported")
    if disc:
        return _exact(prob, disc, beta, max_configs)
    if proposal == "uniform":
        return _uniform(prob, beta, int(samples), gen)
    if proposal != "laplace":
        raise ValueError(f"proposal must be 'laplace' or 'uniform', got {proposal!r}")
    return _laplace(prob, observed, over, beta, int(samples), gen, batch, min_settings)


def _minimum(ebm, observed, over, gen, batch, penalty, return_values, outputs, min_settings):
    """``F_∞ = min_z E`` by :func:`minimize`, re-evaluated at the detached minimizer when training (envelope theorem)."""
    from .api import minimize

    r = minimize(ebm, observed, over, generator=gen, batch=batch, penalty=penalty, **min_settings)
    F = r.energy
    vals = None
    if outputs is not None:  # envelope theorem: the gradient at fixed z*, and the values from that forward
        out = ebm.evaluate({**(observed or {}), **r.values}, outputs=list(outputs), energy=True)
        F, vals = out.total, out.values
    elif torch.is_grad_enabled() and any(p.requires_grad for p in ebm.parameters()):
        F = ebm.energy(**(observed or {}), **r.values).total  # envelope theorem: the gradient at fixed z*
    if outputs is not None:
        return F, dict(r.values), vals
    return (F, dict(r.values)) if return_values else F


@torch.no_grad()
def _exact(prob: Problem, disc: list[str], beta: float, max_configs: int) -> torch.Tensor:
    """Discrete latents: ``-(1/β) logsumexp(-β E)`` over every configuration."""
    B = prob.B
    N = space_size(prob, disc)
    if N > max_configs:
        raise SpecError(f"{N} configurations exceed max_configs={max_configs} for an exact sum")
    c = configs(prob, disc, 0, N)
    E = prob.evaluate({k: tile_rows(v, B) for k, v in c.items()}, N).total.view(B, N)
    return -torch.logsumexp(-beta * E, 1) / beta


def _uniform(prob: Problem, beta: float, K: int, gen) -> torch.Tensor:
    """Importance sampling from the uniform distribution on the box (both bounds needed)."""
    B = prob.B
    _, unpack, _ = packer(prob, prob.over)
    los, his = [], []
    for n in prob.over:
        lo, hi = prob.bounds(n)
        if lo is None or hi is None:
            raise SpecError(f"proposal='uniform' needs both bounds on {n}")
        m = int(torch.Size(prob.shape(n)).numel())
        los.append(torch.full((m,), float(lo))), his.append(torch.full((m,), float(hi)))
    lo, hi = torch.cat(los).to(prob.device, prob.dtype), torch.cat(his).to(prob.device, prob.dtype)
    u = torch.rand((K, lo.numel()), generator=gen, dtype=prob.dtype).to(prob.device)
    Z = lo + (hi - lo) * u  # shared by all problems (common random numbers)
    with torch.no_grad():
        E = prob.evaluate(unpack(tile_rows(Z, B)), K).total.view(B, K)
    log_vol = torch.log(hi - lo).sum()
    return -(torch.logsumexp(-beta * E, 1) - math.log(K) + log_vol) / beta


def _laplace(prob: Problem, observed, over, beta: float, K: int, gen, batch, min_settings) -> torch.Tensor:
    """Importance sampling from ``N(z*, (β H)^{-1})`` around the minimizer (exact for a quadratic energy)."""
    from .api import minimize

    for n in prob.over:
        if prob.bounds(n) != (None, None):
            raise SpecError(f"{n} is bounded: use proposal='uniform' (the Laplace proposal integrates over all R^d)")
    B = prob.B
    pack, unpack, _ = packer(prob, prob.over)
    r = minimize(prob.ebm, observed, over, generator=gen, batch=batch, **min_settings)
    zs = pack(dict(r.values), (B,))
    D = zs.shape[1]
    H = _hessian(lambda X: prob.evaluate(unpack(X)).total, zs)
    H = 0.5 * (H + H.transpose(1, 2))
    eye = torch.eye(D, dtype=H.dtype, device=H.device)
    evals = torch.linalg.eigvalsh(H)
    ok = (evals.amin(-1) > 1e-8)[:, None, None]
    H = torch.where(ok, H, eye * evals.abs().amax(-1).clamp_min(1.0)[:, None, None])
    P = beta * H  # precision of q
    Lc = torch.linalg.cholesky(P)  # P = Lc Lc^T; z = z* + Lc^{-T} eps
    eps = torch.randn((K, D), generator=gen, dtype=prob.dtype).to(prob.device)
    dz = torch.linalg.solve_triangular(Lc.transpose(1, 2), eps.T.expand(B, D, K), upper=True).transpose(1, 2)
    Z = zs[:, None] + dz  # [B, K, D]
    log_q = (-0.5 * (eps * eps).sum(-1)[None] - 0.5 * D * math.log(2 * math.pi)
             + torch.log(torch.diagonal(Lc, dim1=1, dim2=2)).sum(-1)[:, None])
    with torch.no_grad():
        E = prob.evaluate(unpack(Z.reshape(B * K, D)), K).total.view(B, K)
    return -(torch.logsumexp(-beta * E - log_q, 1) - math.log(K)) / beta
