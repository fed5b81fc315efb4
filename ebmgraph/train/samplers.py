"""Where contrastive samples ŷ come from (§4.3, Table 1).

Every sampler takes a ``torch.Generator``; the trainer seeds one per step from
(seed, epoch, step, rank) (:mod:`ebmgraph.train.order`), so a resumed run draws the same samples.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

EnergyFn = Callable[[torch.Tensor], torch.Tensor]  # ŷ [B, *shape] -> energy [B]


# ----------------------------------------------------------------------------- simple samplers
def box_of(y: torch.Tensor, pad: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded bounding box of a sample ``[B, D]`` -> (lo, hi) ``[D]``."""
    return y.min(0).values - pad, y.max(0).values + pad


def uniform(shape, lo, hi, gen: torch.Generator) -> torch.Tensor:
    """Uniform samples in the box [lo, hi] ``[*shape]``."""
    lo, hi = torch.as_tensor(lo, dtype=torch.float32), torch.as_tensor(hi, dtype=torch.float32)
    return lo + (hi - lo) * torch.rand(shape, generator=gen)


def corrupt(y: torch.Tensor, gen: torch.Generator, *, sigma: float = 0.3) -> torch.Tensor:
    """Gaussian corruption N(y) = y + σε (denoising, §4.3 row 10)."""
    return y + sigma * torch.randn(y.shape, generator=gen, dtype=y.dtype)


def mask(y: torch.Tensor, gen: torch.Generator, *, p: float = 0.25) -> torch.Tensor:
    """Masking corruption: each coordinate set to zero with probability ``p``."""
    return y * (torch.rand(y.shape, generator=gen) >= p).to(y.dtype)


def others(y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Other samples of the batch: a seeded derangement (no row keeps its own value)."""
    B = y.shape[0]
    shift = int(torch.randint(1, max(B, 2), (1,), generator=gen))
    return y.roll(shift, 0)


# ----------------------------------------------------------------------------- energy-driven samplers
def langevin(energy: EnergyFn, y0: torch.Tensor, gen: torch.Generator, *, steps: int = 20,
             step_size: float = 0.01, noise: float | None = None, lo=None, hi=None) -> torch.Tensor:
    """Short-run Langevin dynamics y ← y − ε∇F(y) + sqrt(2ε)·ξ (rows 3–4), detached ``[B, *shape]``.

    Args:
        energy: ŷ -> F(ŷ) ``[B]``.
        y0: start ``[B, *shape]`` (data for contrastive divergence, noise for MC).
        noise: standard deviation of ξ's scale; default sqrt(2·step_size).
        lo, hi: optional box to clamp into.
    """
    eps = step_size
    sd = (2 * eps) ** 0.5 if noise is None else noise
    y = y0.detach().clone()
    for _ in range(steps):
        y.requires_grad_(True)
        with torch.enable_grad():
            g, = torch.autograd.grad(energy(y).sum(), y)
        y = (y - eps * g + sd * torch.randn(y.shape, generator=gen, dtype=y.dtype)).detach()
        if lo is not None:
            y = torch.max(torch.min(y, torch.as_tensor(hi)), torch.as_tensor(lo))
    return y


def most_offending(energy: EnergyFn, y_start: torch.Tensor, *, steps: int = 5, lr: float = 0.05,
                   lo=None, hi=None) -> torch.Tensor:
    """"Most offending" contrastive samples (rows 5–9): a few Adam steps down the energy
    from a corrupted start, detached ``[B, *shape]``."""
    y = y_start.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        with torch.enable_grad():
            g, = torch.autograd.grad(energy(y).sum(), y)
        y.grad = g
        opt.step()
        if lo is not None:
            with torch.no_grad():
                y.copy_(torch.max(torch.min(y, torch.as_tensor(hi)), torch.as_tensor(lo)))
    return y.detach()


class GeneratorNet(nn.Module):
    """ŷ = g_u(z), z ~ N(0, I) (row 9, GAN): a small MLP from noise to the shape of y."""

    def __init__(self, out_dim: int, *, noise_dim: int = 8, hidden: int = 64):
        super().__init__()
        self.noise_dim = noise_dim
        self.net = nn.Sequential(nn.Linear(noise_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, out_dim))

    def forward(self, n: int, gen: torch.Generator) -> torch.Tensor:
        p = next(self.parameters())
        z = torch.randn(n, self.noise_dim, generator=gen).to(p)
        return self.net(z)
