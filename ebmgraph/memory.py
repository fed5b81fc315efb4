"""Associative world-state memory (§3.3, §4.9, eq. 15–20) as torch modules: the bodies of the
module kinds ``mem_read`` and ``mem_write`` (their shape rules are in modules.py).

Like dynamics.py, this sits below ``modules.py`` and imports nothing from ``ebmgraph``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["MemoryRead", "MemoryWrite"]


class _Memory(nn.Module):
    """A key-value world-state memory of ``N`` slots (eq. 15–20) held as one flat state vector
    ``m = [keys (N·dk) | values (N·dv) | used (N)]``, so it flows through a spec's functions
    like any other state (``m[t+1]: Write(m[t], q[t], r[t])``).

    ``Match(k, q) = −‖k − q‖²`` (closeness: the larger, the better the key fits), and
    ``Normalize`` is the paper's example: ``c_j = u_j e^{c̃_j} / (γ + Σ_k u_k e^{c̃_k})`` over the used
    slots ``u``. γ > 0 is the threshold of acceptable divergence: the mass ``γ / (γ + Σ_k u_k e^{c̃_k})``
    is what no key claims.
    """

    def __init__(self, N: int, dk: int, dv: int, gamma: float):
        super().__init__()
        self.N, self.dk, self.dv, self.gamma = N, dk, dv, float(gamma)

    def split(self, m):
        N, dk, dv = self.N, self.dk, self.dv
        keys = m[:, :N * dk].reshape(-1, N, dk)
        vals = m[:, N * dk:N * (dk + dv)].reshape(-1, N, dv)
        used = m[:, N * (dk + dv):]
        return keys, vals, used

    def join(self, keys, vals, used):
        return torch.cat([keys.flatten(1), vals.flatten(1), used], 1)

    def coefficients(self, keys, used, q):
        """``(c [B, N], unmatched [B])`` of eq. 16–17: a softmax over the used slots' matches and
        ``log γ`` (the unmatched mass), which is the paper's Normalize, computed stably."""
        match = -((keys - q[:, None, :]) ** 2).sum(-1)  # c̃_j = Match(k_j, q)
        match = torch.where(used > 0, match, torch.full_like(match, -torch.inf))
        logits = torch.cat([match, torch.full_like(match[:, :1], math.log(self.gamma))], 1)
        w = torch.softmax(logits, 1)
        return w[:, :-1], w[:, -1]


class MemoryRead(_Memory):
    """``Mem(q) = Σ_j c_j v_j`` (eq. 15–17): ``read(m, q) -> [dv]``. Reading a memory with no used
    slot is an error (its value would be a silent zero)."""

    def forward(self, m, q):
        keys, vals, used = self.split(m)
        if not bool((used.sum(1) > 0).all()):
            raise ValueError("read from an empty memory: no slot has been written (write before reading)")
        c, _ = self.coefficients(keys, used, q)
        return (c[..., None] * vals).sum(1)


class MemoryWrite(_Memory):
    """Write value ``r`` at address ``q`` (eq. 18–20): every used slot moves to
    ``v_j ← c_j r + (1 − c_j) v_j``; when no key matches (the unmatched mass exceeds 1/2) the first
    free slot is allocated with key ``q`` and value ``r``. ``write(m, q, r) -> m'``; a full memory
    allocates nothing."""

    def forward(self, m, q, r):
        keys, vals, used = self.split(m)
        c, unmatched = self.coefficients(keys, used, q)
        vals = c[..., None] * r[:, None, :] + (1 - c[..., None]) * vals  # eq. 20, Update(r, v, c)
        free = used <= 0
        first = free & (free.cumsum(1) == 1)  # the first free slot, if any
        alloc = (first & (unmatched > 0.5)[:, None]).to(m.dtype)  # [B, N], one-hot or zero (a decision)
        keys = alloc[..., None] * q[:, None, :] + (1 - alloc[..., None]) * keys
        vals = alloc[..., None] * r[:, None, :] + (1 - alloc[..., None]) * vals
        used = torch.maximum(used, alloc)
        return self.join(keys, vals, used)
