"""Seeded data order for training: which samples a step sees and which generator it draws with.

Everything here is a pure function of (seed, epoch, step, rank), so a run resumed from a
checkpoint replays exactly the batches and random draws an uninterrupted run would have made,
and every rank of a data-parallel run agrees on the global batch without communicating.
"""
from __future__ import annotations

import torch

__all__ = ["epoch_order", "shard", "step_generator"]


def step_generator(seed: int, epoch: int, step: int, rank: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, epoch, step, rank).

    Args:
        seed: the run's seed.
        epoch: 0-based epoch.
        step: 0-based step within the epoch.
        rank: the process's rank under torchrun (0 alone).

    Returns:
        a freshly seeded CPU ``torch.Generator``.
    """
    g = torch.Generator()
    g.manual_seed((((seed * 1_000_003 + epoch) * 1_000_033 + step) * 1_009 + rank) % (2**63 - 1))
    return g


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of ``n`` samples for ``epoch``: a function of (seed, epoch) only ``[n]``."""
    g = torch.Generator()
    g.manual_seed((seed * 7_919 + epoch * 104_729 + 17) % (2**63 - 1))
    return torch.randperm(n, generator=g)


def shard(idx: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's contiguous share of a global batch ``[B] -> [B / world]`` (DistributedSampler-like)."""
    n = idx.shape[0] // world
    return idx[rank * n:(rank + 1) * n]
