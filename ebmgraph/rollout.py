"""The Rollout op: s[t+1] = Pred(s[t], a[t], ...) for T steps as one operation (§3.1.2, Fig. 4).

``rollout`` is what lowered code calls for every recognized recurrence. This is the
torch reference; fused Triton kernels (``kernels/rollout.py``) take over energy-fused
rollouts on CUDA where the predictor fits (see ``CompiledEBM.explain``).
"""
from __future__ import annotations

import torch


def rollout(step, s0: torch.Tensor, order: str, steps: tuple, consts: tuple, T: int) -> torch.Tensor:
    """Unroll ``step`` from ``s0``.

    Args:
        step: the predictor module.
        s0: initial state ``[B, *S]``.
        order: one letter per argument of ``step``: ``s`` the state, ``p`` the next
            per-step input, ``c`` the next constant input.
        steps: per-step inputs, each ``[B, T, ...]``.
        consts: inputs that do not change over time, each ``[B, ...]``.
        T: number of steps.

    Returns:
        States ``[B, T, *S]`` for steps 1..T (``s0`` excluded).
    """
    s = s0
    out = []
    for t in range(T):
        pi = ci = 0
        args = []
        for kind in order:
            if kind == "s":
                args.append(s)
            elif kind == "p":
                args.append(steps[pi][:, t])
                pi += 1
            else:
                args.append(consts[ci])
                ci += 1
        s = step(*args)
        out.append(s)
    return torch.stack(out, 1)


def kernel_reason(step, device) -> tuple[bool, str]:
    """Whether a rollout of ``step`` on ``device`` can run as a fused Triton kernel, and why."""
    from .modules import MLP

    if not isinstance(step, MLP):
        return False, f"predictor is {type(step).__name__}; fused kernels take an MLP"
    if torch.device(device).type != "cuda":
        return False, f"on {torch.device(device).type}; fused kernels run on CUDA"
    try:
        import kernels.rollout as kr  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the install
        return False, f"kernels unavailable: {exc}"
    return True, "MLP predictor on CUDA"
