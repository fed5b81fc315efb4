"""What generated code calls at run time: the Rollout op and the step-layout helpers.

* :func:`rollout` runs ``s[t+1] = Pred(s[t], a[t], ...)`` for T steps as one operation
  (§3.1.2, Fig. 4) for every :class:`~ebmgraph.ir.Rollout` the passes found. This is the
  torch reference; the fused Triton kernel (``kernels/rollout.py``) takes over on CUDA
  where the predictor fits (:func:`kernel_reason`, ``CompiledEBM.explain``).
* ``NAMESPACE`` is the whole namespace the generated ``forward`` runs in: the short
  local names used in generated code mapped to the public helpers below.
"""
from __future__ import annotations

import contextlib
import os

import torch

from .conventions import as_energy, repeat_rows


# "auto": fused kernels on CUDA; "always": also in Triton's CPU interpreter (tests); "never": torch only.
KERNELS = "auto"


@contextlib.contextmanager
def kernels_mode(mode: str):
    """Temporarily set where rollouts may use fused kernels (``auto``, ``always`` or ``never``)."""
    global KERNELS
    if mode not in ("auto", "always", "never"):
        raise ValueError("kernels mode is 'auto', 'always' or 'never'")
    old, KERNELS = KERNELS, mode
    try:
        yield
    finally:
        KERNELS = old


def _allowed(device: torch.device) -> tuple[bool, str]:
    if KERNELS == "never":
        return False, "kernels disabled (kernels_mode('never'))"
    if device.type == "cuda":
        return True, "on CUDA"
    if KERNELS == "always" and os.environ.get("TRITON_INTERPRET") == "1":
        return True, "Triton interpreter on the CPU (kernels_mode('always'))"
    return False, f"on {device.type}; fused kernels run on CUDA"


def mlp_predictor(step):
    """The kernels' description of an ``mlp`` module (weights as [in, out]), or None."""
    from .layers import MLP

    if not isinstance(step, MLP):
        return None
    from .kernels.rollout import MLPPredictor

    lins = [m for m in step.net if isinstance(m, torch.nn.Linear)]
    return MLPPredictor(tuple((m.weight.t(), m.bias) for m in lins), act=step.act, residual=step.residual)


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
        States ``[B, T, *S]`` for steps 1..T (``s0`` excluded). An MLP predictor reading
        ``(s[t], a[t])`` runs as one fused Triton kernel where :func:`kernel_reason` allows.
    """
    if _static_reason(step, s0.device, order)[0]:
        from .kernels.rollout import RolloutCost, dispatch, mlp_rollout

        pred = mlp_predictor(step)
        cost = RolloutCost(goal=s0.new_zeros(s0.shape[-1]), w_goal=0.0)
        ok, _ = dispatch(s0, steps[0], pred, cost)  # supports() plus dtype, device and gradient checks
        if ok:
            _, traj = mlp_rollout(s0, steps[0], pred, cost, return_traj=True)
            return traj[:, 1:].to(s0.dtype)
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


def _static_reason(step, device, order: str) -> tuple[bool, str]:
    """The checks that need no weights: an mlp reading (s[t], a[t]), on a device kernels may use."""
    from .layers import MLP

    if not isinstance(step, MLP):
        return False, f"predictor is {type(step).__name__}; fused kernels take an mlp"
    if order != "sp":
        return False, f"predictor reads ({', '.join(order)}); fused kernels take Pred(s[t], a[t])"
    return _allowed(torch.device(device))


def kernel_reason(step, device, order: str = "sp") -> tuple[bool, str]:
    """Whether a rollout of ``step`` on ``device`` can run as a fused Triton kernel, and why.

    The per-call check (dtype, gradients w.r.t. weights) is ``kernels.rollout.dispatch``.
    """
    allowed, why = _static_reason(step, device, order)
    if not allowed:
        return False, why
    try:
        from .kernels.rollout import RolloutCost, supports
    except Exception as exc:  # pragma: no cover - depends on the install
        return False, f"kernels unavailable: {exc}"
    pred = mlp_predictor(step)
    ok, reason = supports(pred, RolloutCost(goal=torch.zeros(pred.state_dim)))
    if not ok:
        return False, reason
    return True, f"mlp predictor, {why}"


# ----------------------------------------------------------------------------- step layout
def flatten_steps(x: torch.Tensor) -> torch.Tensor:
    """``[B, n, ...] -> [B*n, ...]``: all steps of a map evaluated in one batch."""
    return x.reshape(-1, *x.shape[2:])


def unflatten_steps(x: torch.Tensor, n: int) -> torch.Tensor:
    """``[B*n, ...] -> [B, n, ...]``."""
    return x.reshape(-1, n, *x.shape[1:])


def stack_steps(xs) -> torch.Tensor:
    """A list of ``[B, ...]`` elements -> ``[B, n, ...]``."""
    return torch.stack(list(xs), 1)


def per_sample_column(x, k: int):
    """A per-sample value ``[B]`` as ``[B, 1, ...]`` (k trailing axes); numbers pass through."""
    if isinstance(x, torch.Tensor) and x.dim() == 1:
        return x.view(-1, *([1] * k))
    return x


# The generated forward's namespace (ebmgraph.lower emits these short names).
NAMESPACE = {"torch": torch, "rollout": rollout, "_rep": repeat_rows, "_flat": flatten_steps,
             "_unflat": unflatten_steps, "_stack": stack_steps, "_e": as_energy, "_col": per_sample_column}
