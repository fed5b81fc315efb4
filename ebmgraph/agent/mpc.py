"""Receding-horizon control (Mode-2, §3.1.2, Figure 4): plan, act with the first action,
shift the plan as the next warm start, repeat.
"""
from __future__ import annotations

import torch


def shift_plan(values: dict, name: str, fill: float | int | None = None) -> dict:
    """Shift a plan one step for receding-horizon control (§3.1.2, Mode-2).

    ``a[1:]`` becomes the new ``a[:-1]``; the last step repeats the old last step
    (or ``fill``). Other entries are copied.

    Args:
        values: ``{name: [B, L, ...]}`` e.g. ``result.values``.
        name: the time-indexed variable to shift.

    Example:
        >>> import torch
        >>> shift_plan({"a": torch.tensor([[1, 2, 3]])}, "a")["a"].tolist()
        [[2, 3, 3]]
    """
    out = dict(values)
    a = values[name]
    last = a[:, -1:].clone() if fill is None else torch.full_like(a[:, -1:], fill)
    out[name] = torch.cat([a[:, 1:], last], 1)
    return out
