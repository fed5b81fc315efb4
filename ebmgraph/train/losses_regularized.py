"""The regularized family (§4.5): push down F on data only, and keep the volume of
low-energy space small with a regularizer instead of contrastive samples.

* information maximization of the representations (§4.5.1, Fig. 13–14): VICReg's
  variance hinge and covariance terms (its invariance term is the spec's prediction
  energy D(s_y, s̃_y)), and Barlow Twins' cross-correlation criterion, on the variables a
  spec names in ``regularizers:`` (``VR: vicreg(v_x, v_y)``);
* latent information limits (§4.5): discrete latents (searched exhaustively), low-dimensional
  latents and L1-sparse latents (declared in the spec and handled by the free energy), and
  noisy latents (VAE-style: z = ž + σε with a KL penalty, here);
* amortized inference (Fig. 19–20): an encoder predicts z̃ ≈ ž = argmin_z E.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as Fn

from .. import ir
from .losses_contrastive import EnergyLoss, LossOut
from .values import latents, training_free_energy, values


def _center(z):
    z = z.reshape(z.shape[0], -1)
    return z - z.mean(0)


def variance_term(z: torch.Tensor, *, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg variance hinge: mean_j [γ − sqrt(Var(z_j) + ε)]+ over dimensions of ``z`` ``[B, D]``."""
    std = torch.sqrt(z.reshape(z.shape[0], -1).var(0) + eps)
    return Fn.relu(gamma - std).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """VICReg covariance: sum of squared off-diagonal covariances / D for ``z`` ``[B, D]``."""
    c = _center(z)
    B, D = c.shape
    cov = c.T @ c / (B - 1)
    off = cov - torch.diag(torch.diag(cov))
    return (off ** 2).sum() / D


def vicreg_terms(a: torch.Tensor, b: torch.Tensor, *, gamma: float = 1.0) -> dict[str, torch.Tensor]:
    """VICReg's three criteria (§4.5.1) for two branches ``[B, D]``: variance and covariance
    summed over the branches, invariance as the mean squared difference."""
    return {"var": variance_term(a, gamma=gamma) + variance_term(b, gamma=gamma),
            "cov": covariance_term(a) + covariance_term(b),
            "inv": ((a - b) ** 2).mean()}


def sigreg_term(z: torch.Tensor, *, directions: int = 64, knots: int = 17, t_max: float = 4.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """SIGReg (LeJEPA, Balestriero & LeCun 2025; LeWM's regularizer): how far ``z`` ``[B, D]`` is from an
    isotropic standard Gaussian, sketched along ``directions`` random unit vectors ``u``. For each projection
    ``x = z u`` the Epps–Pulley statistic ``∫ |φ̂(t) − e^{−t²/2}|² e^{−t²/2} dt`` compares its empirical
    characteristic function ``φ̂(t) = mean_b e^{i t x_b}`` with the Gaussian's, integrated by the trapezoid
    rule on ``[−t_max, t_max]`` (``knots`` points on one side; the integrand is even), then averaged over the
    directions (not multiplied by B, so its scale does not grow with the batch). A collapsed batch (every row
    0) scores ``√(2π) − 2√π + √(2π/3)`` ≈ 0.41 as ``t_max`` grows; the directions are drawn from
    ``generator`` (the training step's), fresh at every step."""
    z = z.reshape(z.shape[0], -1)
    u = torch.randn(z.shape[1], directions, generator=generator, dtype=z.dtype).to(z.device)
    x = z @ (u / u.norm(dim=0, keepdim=True))  # [B, M]
    t = torch.linspace(0.0, t_max, knots, dtype=z.dtype, device=z.device)  # [J]
    tx = x[..., None] * t  # [B, M, J]
    gauss = torch.exp(-0.5 * t * t)
    err = (torch.cos(tx).mean(0) - gauss) ** 2 + torch.sin(tx).mean(0) ** 2  # [M, J]
    return 2.0 * torch.trapezoid(err * gauss, t, dim=-1).mean()


def cross_correlation(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Batch cross-correlation ``[D, D]`` of ``a``, ``b`` ``[B, D]``: each column centred and divided
    by its (biased, batch-norm) standard deviation, C = z_aᵀ z_b / B; identical views give C_ii = 1."""
    za = _center(a) / (a.reshape(a.shape[0], -1).std(0, unbiased=False) + eps)
    zb = _center(b) / (b.reshape(b.shape[0], -1).std(0, unbiased=False) + eps)
    return za.T @ zb / a.shape[0]


def barlow_terms(a: torch.Tensor, b: torch.Tensor, *, lambd: float = 5e-3) -> dict[str, torch.Tensor]:
    """Barlow Twins (§4.5.1): Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij², C the batch cross-correlation
    (:func:`cross_correlation`) of ``a``, ``b`` ``[B, D]``."""
    c = cross_correlation(a, b)
    on = ((1 - torch.diag(c)) ** 2).sum()
    off = (c ** 2).sum() - (torch.diag(c) ** 2).sum()
    return {"on": on, "off": lambd * off}


def gaussian_kl(mu: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²I) ‖ N(0, I)) per sample, in closed form (§4.5, the VAE's information limit):
    ½ Σ_j (σ_j² + μ_j² − 1 − log σ_j²) for ``mu`` ``[B, *shape]`` -> ``[B]``; differentiable in μ and σ."""
    s = torch.as_tensor(sigma, dtype=mu.dtype, device=mu.device).expand_as(mu)
    return 0.5 * (s ** 2 + mu ** 2 - 1 - 2 * torch.log(s)).flatten(1).sum(1)


class Regularized(EnergyLoss):
    """Mean free energy of the data plus the spec's batch regularizers (§4.5).

    Args:
        ebm: a compiled spec (its ``regularizers:`` name the variables, e.g. ``vicreg(v_x, v_y)``).
        energy_weight: weight of the mean data energy (VICReg's invariance / prediction term).
        var_weight, cov_weight, inv_weight: VICReg weights (defaults 25, 1, 0: the prediction
            energy already plays the invariance role, Fig. 14).
        gamma: VICReg's target standard deviation.
        barlow_weight, barlow_lambda: Barlow Twins weights.
        use_regularizers: False trains on the energy alone (what Fig. 10d warns against).
        latent_noise: σ of a noisy latent z = ž + σε (VAE-style, §4.5); 0 disables.
        kl_weight: weight of KL(N(ž, σ²I) ‖ N(0, I)) (:func:`gaussian_kl`) when ``latent_noise`` = σ > 0.
        infer_steps: gradient steps of the inner minimization over continuous latents.
    """

    def __init__(self, ebm, *, energy_weight: float = 1.0, var_weight: float = 25.0, cov_weight: float = 1.0,
                 inv_weight: float = 0.0, gamma: float = 1.0, barlow_weight: float = 1.0,
                 barlow_lambda: float = 5e-3, use_regularizers: bool = True, latent_noise: float = 0.0,
                 kl_weight: float = 1.0, sigreg_weight: float = 1.0, y: str = "y", **kw):
        super().__init__(ebm, y=y, **kw)
        self.energy_weight, self.var_weight, self.cov_weight, self.inv_weight = energy_weight, var_weight, cov_weight, inv_weight
        self.gamma, self.barlow_weight, self.barlow_lambda = gamma, barlow_weight, barlow_lambda
        self.use_regularizers, self.latent_noise, self.kl_weight = use_regularizers, latent_noise, kl_weight
        # each argument's label for evaluate(outputs=): a variable "s_x", one element "s[0]", or a whole array "s",
        # whose [B, L, D] values are then L·B rows of the batch statistics (over the batch and over time)
        self.regs = [(r.name, r.value.fn, [ir.expr_str(a) for a in r.value.args]) for r in ebm.graph.regularizers]
        self.sigreg_weight = sigreg_weight

    @property
    def reg_names(self) -> list[str]:
        """The variables the spec's regularizers read (``vicreg(v_x, v_y)``: v_x, v_y)."""
        return sorted({n for _, _, args in self.regs for n in args})

    def reg_terms(self, batch: dict, vals: dict | None = None, gen: torch.Generator | None = None
                  ) -> dict[str, torch.Tensor]:
        """Each spec regularizer's terms ``{"VR.var": scalar, ...}`` (unweighted), from ``vals`` (the values
        the forward that computed the energy returned), or evaluated from ``batch`` when not given."""
        if not self.regs:
            return {}
        names = self.reg_names
        if vals is None:
            vals = values(self.ebm, names, **{k: v for k, v in self.inputs(batch).items()
                                              if k not in {z.name for z in latents(self.ebm)}})
        vals = {k: vals[k] for k in names}
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # batch statistics over the global batch, as with one process (gradients flow back)
            from torch.distributed.nn.functional import all_gather

            vals = {k: torch.cat(all_gather(v), 0) for k, v in vals.items()}
        out = {}
        for name, fn, args in self.regs:
            zs = [vals[a].flatten(0, 1) if vals[a].dim() == 3 else vals[a] for a in args]  # an array: every step a row
            if fn == "vicreg":
                a, b = (zs + zs)[:2]
                t = vicreg_terms(a, b, gamma=self.gamma)
                if len(zs) == 1:
                    t = {"var": t["var"] / 2, "cov": t["cov"] / 2, "inv": t["inv"] * 0}
            elif fn == "barlow":
                t = barlow_terms(zs[0], zs[1], lambd=self.barlow_lambda)
            elif fn == "variance":
                t = {"var": sum(variance_term(z, gamma=self.gamma) for z in zs)}
            elif fn == "covariance":
                t = {"cov": sum(covariance_term(z) for z in zs)}
            elif fn == "sigreg":
                t = {"sig": sum(sigreg_term(z, generator=gen) for z in zs)}
            else:
                raise ValueError(f"regularizer {name}: unknown batch regularizer {fn}")
            out.update({f"{name}.{k}": v for k, v in t.items()})
        return out

    def _weight(self, key: str) -> float:
        k = key.rsplit(".", 1)[1]
        return {"var": self.var_weight, "cov": self.cov_weight, "inv": self.inv_weight, "sig": self.sigreg_weight,
                "on": self.barlow_weight, "off": self.barlow_weight}[k]

    def data_energy(self, batch: dict, gen: torch.Generator, outputs=None):
        """``(F [B], stats)``, and with ``outputs`` the named values from the forward that computed F."""
        inp = self.inputs(batch)
        if not self._has_latents:
            if outputs:
                out = self.ebm.evaluate(inp, outputs=outputs, energy=True)
                return out.total, {}, out.values
            return self.ebm.energy(**inp).total, {}
        if outputs and self.latent_noise > 0:  # the energy is re-evaluated at the noisy latents below
            e, st = self.data_energy(batch, gen)
            return e, st, None
        penalty = None
        if self.latent_noise > 0 and self.kl_weight > 0:
            # the information cost of a noisy latent shapes inference: its z-dependent part is w·½‖ž‖²
            def penalty(zs):
                return self.kl_weight * sum(0.5 * (v * v).flatten(1).sum(1) for v in zs.values())
        if outputs:
            e, z, vals = training_free_energy(self.ebm, inp, steps=self.infer_steps, seed=gen, return_z=True,
                                              penalty=penalty, outputs=outputs)
            return e, {"z_abs": float(sum(v.float().abs().mean() for v in z.values()))}, vals
        e, z = training_free_energy(self.ebm, inp, steps=self.infer_steps, seed=gen, return_z=True, penalty=penalty)
        if self.latent_noise > 0 and z:
            noisy = {}
            kl = 0.0
            for k, v in z.items():
                if not v.is_floating_point():
                    raise ValueError("latent_noise applies to continuous latents")
                noisy[k] = v + self.latent_noise * torch.randn(v.shape, generator=gen, dtype=v.dtype)
                kl = kl + gaussian_kl(v, self.latent_noise)
            e = self.ebm.energy(**inp, **noisy).total + self.kl_weight * kl
            return e, {"z_abs": float(sum(v.float().abs().mean() for v in z.values())), "kl": float(kl.mean())}
        return e, {"z_abs": float(sum(v.float().abs().mean() for v in z.values()))}

    def forward(self, batch: dict, gen: torch.Generator) -> LossOut:
        regs = self.use_regularizers and bool(self.regs)
        if regs:  # each representation computed once: the regularizers read the energy's forward
            e, st, vals = self.data_energy(batch, gen, outputs=self.reg_names)
        else:
            e, st = self.data_energy(batch, gen)
        loss = self.energy_weight * e.mean()
        stats = dict(st)
        if regs:
            for k, v in self.reg_terms(batch, vals, gen).items():
                loss = loss + self._weight(k) * v
                stats[k] = float(v.detach())
        return LossOut(loss, stats, e.detach(), None)


class Amortized(Regularized):
    """Amortized latent inference (Fig. 19–20): ž = argmin_z E(x, y, z) without the encoder
    term, then the total energy at ž — whose term ``H(ž, z̃)`` trains the encoder z̃ = Enc_z(s_x, y)
    while the other terms train the model.

    Args:
        weight: the symbolic weight of the encoder term in the spec (``h``), 0 while ž is inferred (a
            per-call override: the model's weights are left alone).
    """

    def __init__(self, ebm, *, weight: str = "h", **kw):
        super().__init__(ebm, **kw)
        if weight not in ebm.weights():
            raise ValueError(f"amortized training needs a weight {weight!r} on the encoder term H(z, z_tilde); "
                             f"weights of {ebm.graph.name}: {sorted(ebm.weights())}")
        self.weight = weight

    def data_energy(self, batch, gen, outputs=None):
        inp = self.inputs(batch)
        # ž with the encoder term off, through per-call weights: the model's own weights are never changed
        # (an exception, or a reader of the model meanwhile, sees them as they are); ž is detached, so its
        # free energy needs no graph
        with torch.no_grad():
            _, z = training_free_energy(self.ebm, inp, steps=self.infer_steps, seed=gen, return_z=True,
                                        weights={self.weight: 0.0})
        stats = {"z_abs": float(sum(v.float().abs().mean() for v in z.values()))}
        if outputs:
            out = self.ebm.evaluate({**inp, **z}, outputs=outputs, energy=True)
            return out.total, stats, out.values
        return self.ebm.energy(**inp, **z).total, stats
