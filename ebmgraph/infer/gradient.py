"""Gradient-based minimization over continuous latents and actions (§3.1.2, §4.2).

SGD, Adam and a batched L-BFGS, each projected onto box bounds after every step
(clamp), run from several restarts at once; the best restart per problem is kept.
Rows (problem × restart) never interact: Adam and SGD act element-wise, and the
L-BFGS below keeps its history, step sizes and line search per row, so a batch of
B problems gives the same answer as each problem alone.
"""
from __future__ import annotations

import torch

from ..errors import SpecError
from .core import FiniteWatch, Problem, initial_values, packer


def _restart_points(prob: Problem, x0: dict, restarts: int, init_scale: float, gen) -> dict:
    """``{name: [B, R, *shape]}``: restart 0 is the initial point; the others are drawn once
    per restart and shared by all problems (common random numbers: batching changes nothing)."""
    out = {}
    for n, v in x0.items():
        shape = prob.shape(n)
        lo, hi = prob.bounds(n)
        if restarts > 1:
            if lo is not None and hi is not None:
                u = torch.rand((restarts - 1,) + shape, generator=gen, dtype=prob.dtype).to(prob.device)
                extra = (lo + (hi - lo) * u).unsqueeze(0).expand(prob.B, *u.shape)
            else:
                e = torch.randn((restarts - 1,) + shape, generator=gen, dtype=prob.dtype).to(prob.device)
                extra = prob.project(n, v.unsqueeze(1) + init_scale * e.unsqueeze(0))
            out[n] = torch.cat([v.unsqueeze(1), extra], 1)
        else:
            out[n] = v.unsqueeze(1)
    return out


def _lbfgs(f_and_g, X, project, *, steps: int, history: int, tol: float, ls_steps: int, on_step):
    """Batched projected L-BFGS: rows are independent problems. ``X`` ``[N, D]``."""
    f, g = f_and_g(X)
    S, Y, R = [], [], []
    gamma = torch.ones_like(f)
    active = torch.ones_like(f, dtype=torch.bool)  # rows still iterating; converged rows stay put
    for it in range(steps):
        q = g.clone()
        alphas = []
        for s, y, rho in reversed(list(zip(S, Y, R))):
            a = rho * (s * q).sum(-1)
            q = q - a[:, None] * y
            alphas.append(a)
        r = gamma[:, None] * q
        for (s, y, rho), a in zip(zip(S, Y, R), reversed(alphas)):
            b = rho * (y * r).sum(-1)
            r = r + s * (a - b)[:, None]
        d = -r
        slope = (d * g).sum(-1)
        d = torch.where((slope < 0)[:, None], d, -g)
        t = torch.ones_like(f)
        if not S:  # first step: a small one, scaled by the gradient
            t = torch.clamp(1.0 / g.abs().sum(-1).clamp_min(1e-12), max=1.0)
        accepted = torch.zeros_like(f, dtype=torch.bool)
        Xn, fn, gn = X, f, g
        for _ in range(ls_steps):  # per-row Armijo backtracking
            Xt = project(X + t[:, None] * d)
            ft, gt = f_and_g(Xt)
            ok = (ft <= f + 1e-4 * (g * (Xt - X)).sum(-1)) & ~accepted & active
            Xn = torch.where(ok[:, None], Xt, Xn)
            fn = torch.where(ok, ft, fn)
            gn = torch.where(ok[:, None], gt, gn)
            accepted = accepted | ok
            if bool((accepted | ~active).all()):
                break
            t = torch.where(accepted, t, t * 0.5)
        # a row whose line search fails cannot decrease along its direction: converged or at a kink
        active = active & accepted
        if not bool(active.any()):
            break
        s, y = Xn - X, gn - g
        sy = (s * y).sum(-1)
        valid = sy > 1e-12 * (s * s).sum(-1).clamp_min(1e-30)
        rho = torch.where(valid, 1.0 / torch.where(valid, sy, torch.ones_like(sy)), torch.zeros_like(sy))
        S.append(torch.where(valid[:, None], s, torch.zeros_like(s)))
        Y.append(torch.where(valid[:, None], y, torch.zeros_like(y)))
        R.append(rho)
        gamma = torch.where(valid, sy / (y * y).sum(-1).clamp_min(1e-30), gamma)
        if len(S) > history:
            S.pop(0), Y.pop(0), R.pop(0)
        X, f, g = Xn, fn, gn
        on_step(X, f)
        pg = (project(X - g) - X).abs().amax(-1)  # projected-gradient size
        active = active & ~((pg <= tol) | (s.abs().amax(-1) <= 1e-14))
        if not bool(active.any()):
            break
    return X, f


class _Best:
    """The best iterate so far per row ``[N, D]`` (rows: problem × restart), the per-problem trace of the best
    energy and the watch for non-finite objective values; ``step(X, f)`` records one iterate."""

    def __init__(self, X: torch.Tensor, f0: torch.Tensor, B: int, Rn: int):
        self.B, self.Rn = B, Rn
        self.X, self.f = X.clone(), f0.clone()
        self.trace = [self.f.view(B, Rn).amin(1)]
        self.watch = FiniteWatch(B * Rn, X.shape[-1], X)
        self.watch.update(X[:, None], f0[:, None], 0)

    def step(self, Xc: torch.Tensor, fc: torch.Tensor) -> None:
        self.watch.update(Xc[:, None], fc[:, None], len(self.trace))
        better = fc < self.f
        self.f = torch.where(better, fc, self.f)
        self.X = torch.where(better[:, None], Xc.detach(), self.X)
        self.trace.append(self.f.view(self.B, self.Rn).amin(1))

    def answer(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(X [B, D], k [B])``: each problem's best iterate and the restart it came from."""
        k = self.f.view(self.B, self.Rn).argmin(1)
        return self.X.view(self.B, self.Rn, -1)[torch.arange(self.B, device=self.X.device), k], k


def _first_order(f_only, X, project, best: _Best, *, optimizer: str, steps: int, lr: float | None,
                 schedule: str) -> None:
    """Projected Adam or SGD from ``X`` ``[N, D]`` for ``steps`` iterations, each iterate given to ``best``."""
    P = X.clone().requires_grad_(True)
    lr = lr if lr is not None else (0.05 if optimizer == "adam" else 0.01)
    opt = torch.optim.Adam([P], lr=lr) if optimizer == "adam" else torch.optim.SGD([P], lr=lr)
    # cosine decay to zero: a fixed step leaves Adam hovering at O(lr) from the minimum
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps)) if schedule == "cosine" else None
    for i in range(steps):
        with torch.enable_grad():
            f = f_only(P)
            # gradients w.r.t. the variables only: the model's parameters must not collect any
            # (training calls this inside its own forward pass)
            (P.grad,) = torch.autograd.grad(f.sum(), P)
        if i > 0:  # the iterate just evaluated (step 0's is the start, already recorded)
            best.step(P.detach().clone(), f.detach())
        opt.step()
        if sched is not None:
            sched.step()
        with torch.no_grad():
            P.copy_(project(P))
    with torch.no_grad():
        best.step(P.detach(), f_only(P))


def gradient(prob: Problem, *, optimizer: str = "lbfgs", steps: int | None = None, lr: float | None = None,
             restarts: int = 1, init: dict | None = None, init_scale: float = 1.0, history: int = 10,
             tol: float = 1e-10, ls_steps: int = 25, generator: torch.Generator | None = None,
             schedule: str = "cosine"):
    """Minimize over continuous variables with SGD, Adam or L-BFGS (projected, restarted).

    Args:
        prob: the problem (every name in ``prob.over`` continuous).
        optimizer: ``"lbfgs"`` | ``"adam"`` | ``"sgd"``.
        steps: iterations (default 100 for L-BFGS, 500 otherwise).
        lr: step size for Adam/SGD (0.05 / 0.01).
        schedule: "cosine" (default) decays the Adam/SGD step to zero over ``steps``; "none" keeps it fixed.
        restarts: starting points; the first is ``init`` (or the centre), the rest random.
        init: warm start ``{name: [B, *shape]}`` (e.g. a shifted plan or an amortized guess).
        init_scale: standard deviation of random restarts around the initial point.

    Returns:
        MinimizeResult; ``trace`` ``[iters+1, B]`` is the best energy so far (row 0: start).
    """
    for n in prob.over:
        if prob.is_discrete(n):
            raise SpecError(f"gradient methods need continuous variables; {n} is discrete "
                            f"(use method='exhaustive', 'dp', 'beam', 'mcts', or 'mixed')")
    if optimizer not in ("lbfgs", "adam", "sgd"):
        raise ValueError(f"optimizer must be lbfgs, adam or sgd, got {optimizer!r}")
    steps = steps if steps is not None else (100 if optimizer == "lbfgs" else 500)
    B, Rn = prob.B, max(1, int(restarts))
    pack, unpack, project = packer(prob, prob.over)
    x0 = initial_values(prob, init)
    X = pack(_restart_points(prob, x0, Rn, init_scale, generator), (B, Rn)).reshape(B * Rn, -1).detach()

    def f_only(X):
        return prob.objective(unpack(X), Rn)

    def f_and_g(X):
        with torch.enable_grad():
            X = X.detach().requires_grad_(True)
            f = f_only(X)
            (g,) = torch.autograd.grad(f.sum(), X)
        best.watch.update(X.detach()[:, None], f.detach()[:, None], len(best.trace))  # line-search trials included
        return f.detach(), g.detach()

    with torch.no_grad():
        best = _Best(X, f_only(X), B, Rn)
    if optimizer == "lbfgs":
        _lbfgs(f_and_g, X, project, steps=steps, history=history, tol=tol, ls_steps=ls_steps, on_step=best.step)
    else:
        _first_order(f_only, X, project, best, optimizer=optimizer, steps=steps, lr=lr, schedule=schedule)
    Xb, k = best.answer()
    best.watch.check(prob, unpack, f"gradient/{optimizer}", unpack(Xb), rows_per_problem=Rn)
    return prob.result(unpack(Xb), best.trace, f"gradient/{optimizer}",
                       {"restarts": Rn, "steps": steps, "best_restart": k})
