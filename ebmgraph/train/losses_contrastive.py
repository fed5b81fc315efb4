"""The contrastive family (§4.3, eq. 6–9, Table 1): push down F(x, y) on data, pull up
F(x, ŷ) on contrastive samples ŷ.

A loss is an ``nn.Module`` holding the compiled energy (plus any generator network);
``loss(batch, gen)`` returns a :class:`LossOut`. ``y`` names the variable that is
contrasted; the other observed variables (x) are kept; latents are eliminated by
:func:`~ebmgraph.train.values.training_free_energy` (eq. 4).

Table 1 rows, by name (the printed table numbers two rows "6"; names are unambiguous):

=============  ===  ========================================  =====================
name           row  loss                                      ŷ
=============  ===  ========================================  =====================
ml_discrete    1    F(y) + (1/β) log Σ_y' exp(−βF(y'))        exhaustive (discrete y)
ml_tractable   2    F(y) + (1/β) log ∫ exp(−βF(y'))           quadrature on a grid
ml_mc          3    F(y) − F(ŷ)                               short-run MCMC from noise
cd             4    F(y) − F(ŷ)                               truncated MCMC from data
hinge          5    [F(y) − F(ŷ) + m(y, ŷ)]+  (eq. 7)         most offending
min_hinge      6    F(y) + [m(y, ŷ) − F(ŷ)]+                  most offending
square_hinge   6'   F(y)² + ([m(y, ŷ) − F(ŷ)]+)²              most offending
square_exp     7    F(y)² + exp(−βF(ŷ))                       most offending
logistic       8    log(1 + exp(F(y) − F(ŷ)))                 most offending
gan            9    H = softplus(F(y)) + softplus(−F(ŷ))       ŷ = g_u(z)
dae            10   D(y, g_w(ŷ))                              ŷ = N(y)
infonce        eq.9 F(y) + log[exp(−F(y)) + Σ_k exp(−F(ŷ_k))]  other samples / noise
=============  ===  ========================================  =====================
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as Fn
from torch import nn

from .. import ir
from . import samplers as S
from ..conventions import repeat_rows
from .values import latents, training_free_energy, values


@dataclass
class LossOut:
    """A scalar loss, numbers to log, and (detached) data / contrastive energies ``[B]``."""

    loss: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)
    e_pos: torch.Tensor | None = None
    e_neg: torch.Tensor | None = None


class EnergyLoss(nn.Module):
    """Base of every loss: the compiled energy and how to evaluate F with y replaced."""

    def __init__(self, ebm, *, y: str = "y", infer_steps: int = 20):
        super().__init__()
        self.ebm = ebm
        self.y = y
        self.infer_steps = infer_steps
        self._names = {v.name for v in ebm.variables}
        self._has_latents = bool(latents(ebm))

    def inputs(self, batch: dict, **replace) -> dict:
        d = {k: v for k, v in batch.items() if k in self._names}
        d.update(replace)
        return d

    def F(self, batch: dict, yv: torch.Tensor | None = None, *, seed: int = 0) -> torch.Tensor:
        """F(x, y) ``[B]`` (latents minimized), with ``y`` replaced by ``yv`` if given."""
        inp = self.inputs(batch, **({} if yv is None else {self.y: yv}))
        if self._has_latents:
            return training_free_energy(self.ebm, inp, steps=self.infer_steps, seed=seed)
        return self.ebm.energy(**inp).total

    def F_many(self, batch: dict, yhat: torch.Tensor) -> torch.Tensor:
        """F(x_i, ŷ_ik) for ``yhat`` ``[B, K, *shape]`` -> ``[B, K]``."""
        B, K = yhat.shape[:2]
        rep = {k: repeat_rows(v, K) for k, v in batch.items() if k in self._names and k != self.y}
        return self.F(rep, yhat.reshape(B * K, *yhat.shape[2:])).view(B, K)

    def term_stats(self, batch: dict) -> dict[str, float]:
        """Mean per-term energies of the data (for the progress bar), when no latent needs inferring."""
        if self._has_latents:
            return {}
        with torch.no_grad():
            return {f"E.{k}": float(v.mean()) for k, v in self.ebm.energy(**self.inputs(batch)).terms.items()}

    def negatives(self, batch: dict, gen: torch.Generator) -> torch.Tensor | None:
        """Contrastive samples for the energy-gap monitor (None: the loss has none)."""
        return None


ROWS = {"ml_discrete": "1", "ml_tractable": "2", "ml_mc": "3", "cd": "4", "hinge": "5", "min_hinge": "6",
         "square_hinge": "6'", "square_exp": "7", "logistic": "8", "gan": "9", "dae": "10", "infonce": "eq. 9"}
_SAMPLER = {"ml_mc": "noise_langevin", "cd": "langevin", "hinge": "offending", "min_hinge": "offending",
            "square_hinge": "offending", "square_exp": "offending", "logistic": "offending", "gan": "generator",
            "dae": "corrupt", "infonce": "uniform", "ml_tractable": "grid", "ml_discrete": "exhaustive"}
SAMPLERS = ("uniform", "corrupt", "mask", "batch", "langevin", "noise_langevin", "offending", "generator",
            "grid", "exhaustive")


class Contrastive(EnergyLoss):
    """One contrastive loss of Table 1 / eq. 7 / eq. 9 on a compiled energy.

    Args:
        ebm: a compiled spec; ``y`` names the contrasted variable.
        method: a row name (see the module docstring).
        sampler: where ŷ comes from (default: the row's own strategy).
        n_neg: contrastive samples per data sample (InfoNCE's K).
        beta: inverse temperature β.
        margin: ``"dist2"`` for m(y, ŷ) = μ‖y − ŷ‖² (eq. 7) or a constant m.
        mu: μ of eq. 7.
        alpha: weight of α(F(y)² + F(ŷ)²), keeping MCMC-trained energies bounded (rows 3–4).
        sigma: corruption noise; box_pad: padding of the sampling box around the batch.
        mcmc_steps, step_size, offend_steps, offend_lr: sampler settings.
        grid: points per axis of row 2's quadrature.
    """

    def __init__(self, ebm, method: str, *, y: str = "y", sampler: str | None = None, n_neg: int = 1,
                 beta: float = 1.0, margin: str | float = "dist2", mu: float = 1.0, alpha: float = 0.1,
                 sigma: float = 0.3, box_pad: float = 0.5, mcmc_steps: int = 20, step_size: float = 0.01,
                 offend_steps: int = 5, offend_lr: float = 0.05, grid: int = 48, box=None, seed: int = 0, **kw):
        super().__init__(ebm, y=y, **kw)
        if method not in ROWS:
            raise ValueError(f"unknown contrastive loss {method!r}; known: {', '.join(ROWS)}")
        self.method, self.sampler = method, sampler or _SAMPLER[method]
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; known: {', '.join(SAMPLERS)}")
        self.n_neg, self.beta, self.margin, self.mu, self.alpha = n_neg, beta, margin, mu, alpha
        self.sigma, self.box_pad, self.grid = sigma, box_pad, grid
        self.mcmc_steps, self.step_size, self.offend_steps, self.offend_lr = mcmc_steps, step_size, offend_steps, offend_lr
        var = next(v for v in ebm.variables if v.name == y)
        self.discrete = isinstance(var.domain, ir.Discrete)
        if method == "ml_discrete" and not self.discrete:
            raise ValueError(f"ml_discrete (Table 1 row 1) needs a discrete {y}; {y} is continuous")
        shape = ebm.var_shape(y)
        # the sampling box is state (saved in checkpoints): set from the first batch unless given
        self.register_buffer("box", torch.zeros(2, *shape) if box is None else torch.as_tensor(box, dtype=torch.float32))
        self.register_buffer("box_set", torch.tensor(box is not None))
        self.gen_net = None
        if self.sampler == "generator":  # seeded: compile() seeds the model, this seeds the generator network
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.gen_net = S.GeneratorNet(int(torch.tensor(shape).prod()))
        if method == "dae":
            self._dae = self._dae_term()

    def prepare(self, data) -> None:
        """Set the sampling box from the whole training set (same on every rank)."""
        if not bool(self.box_set) and self.y in data.tensors and data.tensors[self.y].is_floating_point():
            self._box(data.tensors[self.y])

    # ------------------------------------------------------------------ samplers
    def _box(self, y):
        if not bool(self.box_set):
            lo, hi = S.box_of(y.detach().reshape(y.shape[0], -1), self.box_pad)
            self.box.copy_(torch.stack([lo, hi]).view_as(self.box))
            self.box_set.fill_(True)
        return self.box[0], self.box[1]

    def sample(self, batch: dict, gen: torch.Generator, k: int = 1) -> torch.Tensor:
        """Contrastive samples ``[B, k, *shape]`` from the configured sampler."""
        y = batch[self.y].float()
        yk = repeat_rows(y, k)
        lo, hi = self._box(y)
        rep = {n: repeat_rows(v, k) for n, v in batch.items()}
        Fy = lambda v: self.F(rep, v)  # noqa: E731
        s = self.sampler
        if s == "uniform":
            out = S.uniform(yk.shape, lo, hi, gen)
        elif s == "corrupt":
            out = S.corrupt(yk, gen, sigma=self.sigma)
        elif s == "mask":
            out = S.mask(yk, gen)
        elif s == "batch":
            out = torch.stack([S.others(y, gen) for _ in range(k)], 1).reshape(yk.shape)
        elif s == "langevin":
            out = S.langevin(Fy, yk, gen, steps=self.mcmc_steps, step_size=self.step_size, lo=lo, hi=hi)
        elif s == "noise_langevin":
            out = S.langevin(Fy, S.uniform(yk.shape, lo, hi, gen), gen, steps=self.mcmc_steps,
                             step_size=self.step_size, lo=lo, hi=hi)
        elif s == "offending":
            # half the starts near the data (hard negatives), half anywhere in the box (coverage)
            start = torch.where((torch.rand(yk.shape[0], generator=gen) < 0.5).view(-1, *[1] * (yk.dim() - 1)),
                                S.corrupt(yk, gen, sigma=self.sigma), S.uniform(yk.shape, lo, hi, gen))
            out = S.most_offending(Fy, start, steps=self.offend_steps, lr=self.offend_lr, lo=lo, hi=hi)
        elif s == "generator":
            out = self.gen_net(yk.shape[0], gen).view(yk.shape)
        else:
            raise ValueError(f"sampler {s!r} does not draw samples")
        return out.view(y.shape[0], k, *y.shape[1:])

    def negatives(self, batch, gen):
        if self.sampler in ("grid", "exhaustive"):
            y = batch[self.y].float()
            if self.discrete:
                return None
            lo, hi = self._box(y)
            return S.uniform(y.shape, lo, hi, gen)
        with torch.no_grad() if self.sampler == "generator" else torch.enable_grad():
            return self.sample(batch, gen)[:, 0].detach()

    def _m(self, y, yh):
        if self.margin == "dist2":
            return self.mu * ((y - yh) ** 2).flatten(1).sum(1)
        return torch.full(y.shape[:1], float(self.margin), dtype=y.dtype, device=y.device)

    # ------------------------------------------------------------------ DAE (row 10)
    def _dae_term(self):
        g = self.ebm.graph
        produced = {f.target.name for f in g.functions}
        for e in g.energies:
            v = e.value
            if isinstance(v, ir.Call) and len(v.args) == 2 and all(isinstance(a, ir.Ref) for a in v.args):
                a, b = (x.name for x in v.args)
                if self.y in (a, b):
                    r = b if a == self.y else a
                    if r in produced:
                        return self.ebm.checked.module_of(v), r
        raise ValueError(f"dae (Table 1 row 10) needs an energy D({self.y}, r) with r = g({self.y}) a function of "
                         f"{self.y}: the reconstruction error F(y) = D(y, g(y))")

    # ------------------------------------------------------------------ the losses
    def forward(self, batch: dict, gen: torch.Generator) -> LossOut:
        m, b = self.method, self.beta
        y = batch[self.y]
        if m == "ml_discrete":
            K = next(v for v in self.ebm.variables if v.name == self.y).domain.K
            B = y.shape[0]
            cand = torch.arange(K).repeat(B, 1)  # [B, K]
            E = self.F_many(batch, cand)
            target = y if not y.is_floating_point() else y.argmax(-1)
            loss = Fn.cross_entropy(-b * E, target.long()) / b
            ep = E.gather(1, target.long().view(-1, 1)).squeeze(1)
            return LossOut(loss, {"acc": float((E.argmin(1) == target).float().mean())}, ep.detach(), E.mean(1).detach())
        y = y.float()
        if m == "ml_tractable":
            lo, hi = self._box(y)
            if y.dim() != 2 or y.shape[1] > 2:
                raise ValueError("ml_tractable integrates over y by quadrature: y must have at most 2 dimensions")
            axes = [torch.linspace(float(lo[i]), float(hi[i]), self.grid) for i in range(y.shape[1])]
            pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, y.shape[1])
            cell = float(torch.prod((hi - lo) / (self.grid - 1)))
            others = {k: v for k, v in batch.items() if k != self.y and k in self._names}
            if others:
                Eg = self.F_many(batch, pts.expand(y.shape[0], *pts.shape))  # [B, G]
            else:
                Eg = self.F({}, pts)[None]  # [1, G]
            ep = self.F(batch)
            logZ = (torch.logsumexp(-b * Eg, 1) + math.log(cell)) / b
            loss = (ep + logZ).mean()
            return LossOut(loss, {"logZ": float(logZ.detach().mean())}, ep.detach(), Eg.mean(1).detach())
        if m == "dae":
            mod, r = self._dae
            yh = S.corrupt(y, gen, sigma=self.sigma) if self.sampler == "corrupt" else self.sample(batch, gen)[:, 0]
            rec = values(self.ebm, [r], **self.inputs(batch, **{self.y: yh}))[r]
            loss = self.ebm.mods[mod](y, rec).mean()
            with torch.no_grad():
                ep, en = self.F(batch), self.F(batch, yh)
            return LossOut(loss, {}, ep, en)
        if m == "infonce":
            k = max(self.n_neg, 1)
            yh = self.sample(batch, gen, k)
            ep = self.F(batch)
            en = self.F_many(batch, yh)  # [B, k]
            loss = (ep + torch.logsumexp(torch.cat([-ep[:, None], -en], 1), 1)).mean()
            return LossOut(loss, {}, ep.detach(), en.mean(1).detach())
        if m == "gan":
            yh = self.sample(batch, gen)[:, 0]
            ep, en = self.F(batch), self.F(batch, yh.detach())
            loss_d = (Fn.softplus(ep) + Fn.softplus(-en)).mean()
            # the generator's step: lower F(g(z)); the energy's parameters are frozen while
            # this graph is recorded so the term trains g_u only
            req = [p.requires_grad for p in self.ebm.parameters()]
            for p in self.ebm.parameters():
                p.requires_grad_(False)
            try:
                loss_g = Fn.softplus(self.F(batch, yh)).mean()
            finally:
                for p, r in zip(self.ebm.parameters(), req):
                    p.requires_grad_(r)
            return LossOut(loss_d + loss_g, {"loss_g": float(loss_g.detach())}, ep.detach(), en.detach())
        yh = self.sample(batch, gen)[:, 0]
        ep, en = self.F(batch), self.F(batch, yh)
        mg = self._m(y, yh)
        if m in ("ml_mc", "cd"):
            per = ep - en + self.alpha * (ep ** 2 + en ** 2)
        elif m == "hinge":
            per = Fn.relu(ep - en + mg)
        elif m == "min_hinge":
            per = ep + Fn.relu(mg - en)
        elif m == "square_hinge":
            per = ep ** 2 + Fn.relu(mg - en) ** 2
        elif m == "square_exp":
            per = ep ** 2 + torch.exp(-b * en)
        elif m == "logistic":
            per = Fn.softplus(ep - en)
        else:
            raise AssertionError(m)
        return LossOut(per.mean(), {}, ep.detach(), en.detach())


def contrastive(ebm, method: str, **kw) -> Contrastive:
    """Shorthand for :class:`Contrastive`."""
    return Contrastive(ebm, method, **kw)
