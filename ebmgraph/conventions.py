"""Conventions every stage shares, written once: the scalar-energy rule and the ``[B*K]`` row layout.

* **Scalar energy.** An energy term is one number per sample ``[B]``. A module whose
  output is ``[1]`` (a critic, Fig. 6–7) counts as a scalar inside energy expressions:
  its ``[B, 1]`` value is read as ``[B]``. The checker, the lowering, the reference
  interpreter and the compiled model all apply :func:`is_scalar_shape` /
  :func:`as_energy`.
* **Rows.** Minimizers score ``K`` candidates for each of ``B`` problems in one batch of
  ``B*K`` rows; row ``b*K + k`` is candidate ``k`` of problem ``b``.
  :func:`repeat_rows` repeats each problem's inputs ``K`` times (``[B, ...] -> [B*K, ...]``);
  :func:`tile_rows` lays the same ``N`` candidates under every problem
  (``[N, ...] -> [B*N, ...]``).
"""
from __future__ import annotations

import torch

SCALAR: tuple[int, ...] = ()


def is_scalar_shape(shape, *, in_energy: bool) -> bool:
    """Whether a per-sample shape is one number per sample.

    Args:
        shape: a per-sample shape tuple, or None for a constant (a number or a weight).
        in_energy: inside an energy expression, where a ``[1]`` output is a scalar.
    """
    return shape is None or shape == SCALAR or (in_energy and tuple(shape) == (1,))


def as_energy(x):
    """``[B, 1] -> [B]`` (a critic's output as an energy); anything else passes through."""
    if isinstance(x, torch.Tensor) and x.dim() == 2 and x.shape[-1] == 1:
        return x.squeeze(-1)
    return x


def repeat_rows(x, k: int):
    """``[B, ...] -> [B*k, ...]``: row ``b*k + j`` copies row ``b``. Numbers and 0-d tensors pass through.

    Example:
        >>> repeat_rows(torch.tensor([[1], [2]]), 2).flatten().tolist()
        [1, 1, 2, 2]
    """
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        return x
    return x.unsqueeze(1).expand(x.shape[0], k, *x.shape[1:]).reshape(-1, *x.shape[1:])


def tile_rows(v: torch.Tensor, B: int) -> torch.Tensor:
    """``[N, ...] -> [B*N, ...]``: row ``b*N + j`` is ``v[j]`` (the same candidates for every problem).

    Example:
        >>> tile_rows(torch.tensor([7, 8]), 2).tolist()
        [7, 8, 7, 8]
    """
    return v.unsqueeze(0).expand(B, *v.shape).reshape(B * v.shape[0], *v.shape[1:])
