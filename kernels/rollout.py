"""Fused MLP-predictor rollout + energy (Mode-2 planning), forward and adjoint.

    s[t+1] = Pred(s[t], a[t])                       t = 0 .. T-1
    E      = sum_{t=1..T} w_goal*||s_t-g||^2 + (s_t-g)^T Q (s_t-g)  +  critic(s_T)

House style: ``_mlp_rollout_fwd_kernel`` / ``_mlp_rollout_bwd_kernel`` (Triton), ``mlp_rollout()``
(launcher + autograd + dispatch) and ``mlp_rollout_reference()`` (plain torch).  ``rollout`` /
``rollout_reference`` / ``_rollout_kernel`` are aliases.

One Triton program owns BLOCK_N samples for all T steps: the state stays in registers, the
predictor weights are (re)loaded by the program from L1/L2 each step.  Widths S, A, H are padded
to powers of two >= 16 (tl.dot minimum) and every load is masked.

Activations: tanh, relu, gelu (TANH approximation, == F.gelu(approximate="tanh")), silu,
elu (alpha=1).  tanh is written as 2*sigmoid(2x)-1 (no tl.tanh / libdevice in the interpreter).

Gradients (fused adjoint kernel): actions, s0, goal, and the returned trajectory (when
``return_traj=True`` and the loss uses it).  Gradients w.r.t. predictor / critic weights, Q or
w_goal are NOT fused: when any of those requires grad, ``mlp_rollout`` dispatches to the
reference (``dispatch()`` says so).

Backward modes (``save=``): "traj" stores s_0..s_T in the forward ([N,T+1,S] fp32 kept alive for
backward); "recompute" stores nothing in the forward and re-runs the forward kernel into a
transient buffer inside backward.  Both run the same adjoint kernel.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

try:  # the package must import without triton / without a GPU
    import triton
    import triton.language as tl

    _HAS_TRITON = True
except Exception:  # pragma: no cover - platform without triton
    triton = None
    tl = None
    _HAS_TRITON = False

__all__ = [
    "MLPPredictor",
    "RolloutCost",
    "mlp_rollout",
    "mlp_rollout_reference",
    "rollout",
    "rollout_reference",
    "supports",
    "dispatch",
    "FUSED_ACTIVATIONS",
    "REFERENCE_ACTIVATIONS",
    "MAX_FUSED_WIDTH",
]

FUSED_ACTIVATIONS = ("tanh", "relu", "gelu", "silu", "elu")
REFERENCE_ACTIVATIONS = FUSED_ACTIVATIONS + ("softplus", "sigmoid")
_ACT_ID = {name: i for i, name in enumerate(FUSED_ACTIVATIONS)}
MAX_FUSED_WIDTH = 256  # padded S, A, H limit of the fused kernel (register tiles)
MAX_FUSED_LAYERS = 3
MAX_TILE_ELEMS = 256 * 64  # fp32 weight tile (64 KB) staged in shared memory
MAX_TILE_ELEMS_BF16 = 256 * 128
MAX_FUSED_CRITIC_LAYERS = 2


def _interpret_mode() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


# ----------------------------------------------------------------------------------------------
# configuration dataclasses
# ----------------------------------------------------------------------------------------------
def _as_layers(layers) -> Tuple[Tuple[torch.Tensor, torch.Tensor], ...]:
    out = []
    for i, wb in enumerate(layers):
        if len(wb) != 2:
            raise ValueError(f"layer {i}: expected (W [in,out], b [out]), got {len(wb)} items")
        W, b = wb
        if W.dim() != 2 or b.dim() != 1 or b.shape[0] != W.shape[1]:
            raise ValueError(f"layer {i}: W must be [in,out] and b [out]; got {tuple(W.shape)}, {tuple(b.shape)}")
        out.append((W, b))
    for i in range(1, len(out)):
        if out[i][0].shape[0] != out[i - 1][0].shape[1]:
            raise ValueError(f"layer {i}: input width {out[i][0].shape[0]} != previous output {out[i - 1][0].shape[1]}")
    return tuple(out)


@dataclass(frozen=True, eq=False)
class MLPPredictor:
    """s_next = [s +] mlp(concat([s, a])); layers = ((W [in,out], b [out]), ...); no act after last."""

    layers: Tuple[Tuple[torch.Tensor, torch.Tensor], ...]
    act: str = "tanh"
    residual: bool = True

    def __post_init__(self):
        object.__setattr__(self, "layers", _as_layers(self.layers))
        if len(self.layers) < 1:
            raise ValueError("predictor needs at least one layer")
        if self.act not in REFERENCE_ACTIVATIONS:
            raise ValueError(f"unknown activation {self.act!r}; known: {REFERENCE_ACTIVATIONS}")

    @property
    def state_dim(self) -> int:
        return int(self.layers[-1][0].shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.layers[0][0].shape[0]) - self.state_dim

    @property
    def hidden_dims(self) -> Tuple[int, ...]:
        return tuple(int(W.shape[1]) for W, _ in self.layers[:-1])

    def to(self, *args, **kw) -> "MLPPredictor":
        return dataclasses.replace(self, layers=tuple((W.to(*args, **kw), b.to(*args, **kw)) for W, b in self.layers))

    def parameters(self):
        return [t for wb in self.layers for t in wb]


@dataclass(frozen=True, eq=False)
class RolloutCost:
    """Step energy w_goal*||s-g||^2 + (s-g)^T Q (s-g) on s_1..s_T, plus critic(s_T) (output width 1)."""

    goal: torch.Tensor  # [S] or [N, S]
    w_goal: float = 1.0
    Q: Optional[torch.Tensor] = None  # [S, S]
    critic_layers: Tuple[Tuple[torch.Tensor, torch.Tensor], ...] = ()
    critic_act: str = "tanh"

    def __post_init__(self):
        object.__setattr__(self, "critic_layers", _as_layers(self.critic_layers))
        if isinstance(self.w_goal, torch.Tensor):
            raise TypeError("w_goal must be a Python float (a tensor would force a host sync)")
        object.__setattr__(self, "w_goal", float(self.w_goal))
        if self.goal.dim() not in (1, 2):
            raise ValueError("goal must be [S] or [N, S]")
        S = self.goal.shape[-1]
        if self.Q is not None and tuple(self.Q.shape) != (S, S):
            raise ValueError(f"Q must be [S,S]=[{S},{S}], got {tuple(self.Q.shape)}")
        if self.critic_layers:
            if self.critic_layers[0][0].shape[0] != S or self.critic_layers[-1][0].shape[1] != 1:
                raise ValueError("critic must map [S] -> [1]")
        if self.critic_act not in REFERENCE_ACTIVATIONS:
            raise ValueError(f"unknown critic activation {self.critic_act!r}")

    def to(self, *args, **kw) -> "RolloutCost":
        return dataclasses.replace(
            self,
            goal=self.goal.to(*args, **kw),
            Q=None if self.Q is None else self.Q.to(*args, **kw),
            critic_layers=tuple((W.to(*args, **kw), b.to(*args, **kw)) for W, b in self.critic_layers),
        )

    def parameters(self):
        ps = [] if self.Q is None else [self.Q]
        return ps + [t for wb in self.critic_layers for t in wb]


# ----------------------------------------------------------------------------------------------
# plain torch reference
# ----------------------------------------------------------------------------------------------
def _act_torch(x: torch.Tensor, act: str) -> torch.Tensor:
    if act == "tanh":
        return torch.tanh(x)
    if act == "relu":
        return torch.relu(x)
    if act == "gelu":
        return F.gelu(x, approximate="tanh")
    if act == "silu":
        return F.silu(x)
    if act == "elu":
        return F.elu(x)
    if act == "softplus":
        return F.softplus(x)
    if act == "sigmoid":
        return torch.sigmoid(x)
    raise ValueError(act)


def _mlp_torch(x, layers, act, dtype):
    n = len(layers)
    for i, (W, b) in enumerate(layers):
        x = x @ W.to(dtype) + b.to(dtype)
        if i < n - 1:
            x = _act_torch(x, act)
    return x


def mlp_rollout_reference(s0, actions, predictor: MLPPredictor, cost: RolloutCost, return_traj: bool = False):
    """Plain-torch rollout in s0.dtype (differentiable w.r.t. everything)."""
    _check_shapes(s0, actions, predictor, cost)
    dt = s0.dtype
    g = cost.goal.to(dt)
    Q = None if cost.Q is None else cost.Q.to(dt)
    s = s0
    E = torch.zeros(s0.shape[0], dtype=dt, device=s0.device)
    traj = [s0]
    for t in range(actions.shape[1]):
        out = _mlp_torch(torch.cat([s, actions[:, t].to(dt)], dim=-1), predictor.layers, predictor.act, dt)
        s = s + out if predictor.residual else out
        if return_traj:
            traj.append(s)
        d = s - g
        e = cost.w_goal * (d * d).sum(-1)
        if Q is not None:
            e = e + ((d @ Q) * d).sum(-1)
        E = E + e
    if cost.critic_layers:
        E = E + _mlp_torch(s, cost.critic_layers, cost.critic_act, dt).squeeze(-1)
    if return_traj:
        return E, torch.stack(traj, dim=1)
    return E


def _check_shapes(s0, actions, predictor, cost):
    if s0.dim() != 2 or actions.dim() != 3 or actions.shape[0] != s0.shape[0]:
        raise ValueError(f"expected s0 [N,S] and actions [N,T,A]; got {tuple(s0.shape)}, {tuple(actions.shape)}")
    N, S = s0.shape
    A = actions.shape[2]
    if predictor.state_dim != S or predictor.action_dim != A:
        raise ValueError(
            f"predictor maps [S+A={predictor.layers[0][0].shape[0]}] -> [{predictor.state_dim}] but S={S}, A={A}"
        )
    if cost.goal.shape[-1] != S or (cost.goal.dim() == 2 and cost.goal.shape[0] != N):
        raise ValueError(f"goal must be [S] or [N,S] with N={N}, S={S}; got {tuple(cost.goal.shape)}")


# ----------------------------------------------------------------------------------------------
# dispatch
# ----------------------------------------------------------------------------------------------
def _pad(n: int) -> int:
    return max(16, triton.next_power_of_2(int(n)) if _HAS_TRITON else 1 << max(0, int(n) - 1).bit_length())


def supports(predictor: MLPPredictor, cost: RolloutCost, precision: str = "tf32") -> Tuple[bool, str]:
    """Static check: can the fused kernel evaluate this predictor/cost?  Returns (ok, reason)."""
    if not _HAS_TRITON:
        return False, "triton is not importable"
    nl = len(predictor.layers)
    if nl > MAX_FUSED_LAYERS:
        return False, f"predictor has {nl} layers; fused kernel supports 1..{MAX_FUSED_LAYERS}"
    if predictor.act not in FUSED_ACTIVATIONS:
        return False, f"predictor activation {predictor.act!r} not fused (fused: {', '.join(FUSED_ACTIVATIONS)})"
    ncl = len(cost.critic_layers)
    if ncl > MAX_FUSED_CRITIC_LAYERS:
        return False, f"critic has {ncl} layers; fused kernel supports 0..{MAX_FUSED_CRITIC_LAYERS}"
    if ncl and cost.critic_act not in FUSED_ACTIVATIONS:
        return False, f"critic activation {cost.critic_act!r} not fused (fused: {', '.join(FUSED_ACTIVATIONS)})"
    widths = {"S": predictor.state_dim, "A": predictor.action_dim}
    for i, h in enumerate(predictor.hidden_dims):
        widths[f"H{i + 1}"] = h
    if ncl == 2:
        widths["critic hidden"] = int(cost.critic_layers[0][0].shape[1])
    for name, w in widths.items():
        if _pad(w) > MAX_FUSED_WIDTH:
            return False, f"width {name}={w} pads to {_pad(w)} > {MAX_FUSED_WIDTH} (fused register-tile limit)"
    # each weight tile is staged whole through shared memory for tl.dot (sm_90 compile of the
    # 2-layer S=64/A=16/H=256 kernel: 98 KB fwd / 115 KB bwd; a 256x256 fp32 tile alone is 256 KB)
    S, A = predictor.state_dim, predictor.action_dim
    tiles = [(_pad(S), _pad(W.shape[1])) for W, _ in predictor.layers[:1]]
    tiles += [(_pad(A), _pad(predictor.layers[0][0].shape[1]))]
    tiles += [(_pad(W.shape[0]), _pad(W.shape[1])) for W, _ in predictor.layers[1:]]
    limit = MAX_TILE_ELEMS_BF16 if precision == "bf16" else MAX_TILE_ELEMS
    for k, n in tiles:
        if k * n > limit:
            return False, (f"weight tile {k}x{n} (padded) exceeds {limit} elements for precision {precision!r} "
                           "(whole-tile shared-memory staging; try precision='bf16' or narrower layers)")
    return True, "fused kernel supports this predictor/cost"


def dispatch(s0, actions, predictor: MLPPredictor, cost: RolloutCost, precision: str = "tf32") -> Tuple[bool, str]:
    """Dynamic check for one call: (use_fused, reason).  Combines ``supports`` with device, dtype and
    autograd requirements."""
    ok, why = supports(predictor, cost, precision)
    if not ok:
        return False, why
    dev = s0.device
    if dev.type == "cuda":
        pass
    elif dev.type == "cpu" and _interpret_mode():
        pass
    else:
        return False, f"device {dev.type!r} without TRITON_INTERPRET=1: fused kernel needs CUDA (or the interpreter)"
    tensors = [s0, actions, cost.goal] + predictor.parameters() + cost.parameters()
    if any(t.device != dev for t in tensors):
        return False, "tensors live on different devices"
    if any(t.dtype == torch.float64 for t in (s0, actions, cost.goal)):
        return False, "float64 inputs: the fused kernel computes in fp32 (use the reference for fp64)"
    if torch.is_grad_enabled():
        needs = [p for p in predictor.parameters() + cost.parameters() if p.requires_grad]
        if needs:
            return False, "gradients w.r.t. predictor/critic weights or Q are not fused (reference handles them)"
    return True, "fused"


# ----------------------------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------------------------
if _HAS_TRITON:
    from .rollout_blocks import (  # noqa: F401  (device functions the kernels call)
        activation, activation_grad, critic_fwd, critic_grad, load_mat, load_rows, load_vec, mm, pred_fwd, pred_vjp,
        sigmoid, stage_energy, stage_grad, store_rows,
    )

    @triton.jit
    def _mlp_rollout_fwd_kernel(
        s0_ptr, act_ptr, goal_ptr, q_ptr,
        w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr,
        cw1_ptr, cb1_ptr, cw2_ptr, cb2_ptr,
        energy_ptr, traj_ptr,
        N, T, S, A, D1, D2, D3, HC, w_goal, ZERO,
        SP: tl.constexpr, AP: tl.constexpr, D1P: tl.constexpr, D2P: tl.constexpr, D3P: tl.constexpr,
        HCP: tl.constexpr,
        NL: tl.constexpr, ACT: tl.constexpr, RESIDUAL: tl.constexpr, HAS_Q: tl.constexpr,
        NCL: tl.constexpr, CACT: tl.constexpr, GOAL_PER_SAMPLE: tl.constexpr, STORE_TRAJ: tl.constexpr,
        BLOCK_N: tl.constexpr, PREC: tl.constexpr, BF16: tl.constexpr, INTERP: tl.constexpr,
    ):
        pid = tl.program_id(0)
        rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        rmask = rows < N
        r64 = rows.to(tl.int64)
        s = load_rows(s0_ptr, r64 * S, rmask, S, SP)
        if GOAL_PER_SAMPLE:
            g = load_rows(goal_ptr, r64 * S, rmask, S, SP)
        else:
            g = load_vec(goal_ptr, S, SP)[None, :]
        if STORE_TRAJ:
            store_rows(traj_ptr, r64 * ((T + 1) * S), rmask, s, S, SP)
        energy = tl.zeros([BLOCK_N], dtype=tl.float32)
        for t in range(T):
            a = load_rows(act_ptr, r64 * (T * A) + t * A, rmask, A, AP)
            wo = t * ZERO  # runtime 0: keeps weight loads inside the loop (no hoisting -> short smem lifetimes)
            s, z1, z2 = pred_fwd(s, a, w1_ptr + wo, b1_ptr + wo, w2_ptr + wo, b2_ptr + wo, w3_ptr + wo, b3_ptr + wo,
                                  S, A, D1, D2, D3,
                                  SP, AP, D1P, D2P, D3P, NL, ACT, RESIDUAL, PREC, BF16, INTERP)
            if STORE_TRAJ:
                store_rows(traj_ptr, r64 * ((T + 1) * S) + (t + 1) * S, rmask, s, S, SP)
            energy += stage_energy(s, g, q_ptr, S, w_goal, SP, HAS_Q, PREC)
        if NCL > 0:
            energy += critic_fwd(s, cw1_ptr, cb1_ptr, cw2_ptr, cb2_ptr, S, HC, SP, HCP, NCL, CACT, PREC)
        tl.store(energy_ptr + rows, energy, mask=rmask)

    @triton.jit
    def _mlp_rollout_bwd_kernel(
        traj_ptr, act_ptr, goal_ptr, q_ptr,
        w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr,
        cw1_ptr, cb1_ptr, cw2_ptr,
        gE_ptr, gtraj_ptr, gs0_ptr, gact_ptr, ggoal_ptr,
        N, T, S, A, D1, D2, D3, HC, w_goal, ZERO,
        SP: tl.constexpr, AP: tl.constexpr, D1P: tl.constexpr, D2P: tl.constexpr, D3P: tl.constexpr,
        HCP: tl.constexpr,
        NL: tl.constexpr, ACT: tl.constexpr, RESIDUAL: tl.constexpr, HAS_Q: tl.constexpr,
        NCL: tl.constexpr, CACT: tl.constexpr, GOAL_PER_SAMPLE: tl.constexpr,
        HAS_GTRAJ: tl.constexpr, NEED_GGOAL: tl.constexpr,
        BLOCK_N: tl.constexpr, PREC: tl.constexpr, BF16: tl.constexpr, INTERP: tl.constexpr,
    ):
        """Adjoint sweep t = T-1 .. 0 over the stored trajectory; lam = dE/ds_t."""
        pid = tl.program_id(0)
        rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        rmask = rows < N
        r64 = rows.to(tl.int64)
        troff = r64 * ((T + 1) * S)
        if GOAL_PER_SAMPLE:
            g = load_rows(goal_ptr, r64 * S, rmask, S, SP)
        else:
            g = load_vec(goal_ptr, S, SP)[None, :]
        gE = tl.load(gE_ptr + rows, mask=rmask, other=0.0)[:, None]
        s = load_rows(traj_ptr, troff + T * S, rmask, S, SP)
        sg = gE * stage_grad(s, g, q_ptr, S, w_goal, SP, HAS_Q, PREC)
        ggoal = -sg
        lam = sg
        if NCL > 0:
            lam += gE * critic_grad(s, cw1_ptr, cb1_ptr, cw2_ptr, S, HC, SP, HCP, NCL, CACT, PREC)
        if HAS_GTRAJ:
            lam += load_rows(gtraj_ptr, troff + T * S, rmask, S, SP)
        for i in range(T):
            t = T - 1 - i
            s = load_rows(traj_ptr, troff + t * S, rmask, S, SP)
            a = load_rows(act_ptr, r64 * (T * A) + t * A, rmask, A, AP)
            wo = t * ZERO
            s1, z1, z2 = pred_fwd(s, a, w1_ptr + wo, b1_ptr + wo, w2_ptr + wo, b2_ptr + wo, w3_ptr + wo, b3_ptr + wo,
                                   S, A, D1, D2, D3, SP, AP, D1P, D2P, D3P, NL, ACT, RESIDUAL, PREC, BF16, INTERP)
            lam, ga = pred_vjp(lam, z1, z2, w1_ptr + wo, w2_ptr + wo, w3_ptr + wo, S, A, D1, D2, D3,
                                SP, AP, D1P, D2P, D3P, NL, ACT, RESIDUAL, PREC, BF16, INTERP)
            store_rows(gact_ptr, r64 * (T * A) + t * A, rmask, ga, A, AP)
            # stage cost on s_t counts for t >= 1 only (s_0 is given)
            live = tl.where(rows * 0 + t > 0, 1.0, 0.0)[:, None]
            sg = (gE * live) * stage_grad(s, g, q_ptr, S, w_goal, SP, HAS_Q, PREC)
            lam += sg
            ggoal -= sg
            if HAS_GTRAJ:
                lam += load_rows(gtraj_ptr, troff + t * S, rmask, S, SP)
        store_rows(gs0_ptr, r64 * S, rmask, lam, S, SP)
        if NEED_GGOAL:
            store_rows(ggoal_ptr, r64 * S, rmask, ggoal, S, SP)

    _rollout_kernel = _mlp_rollout_fwd_kernel


# ----------------------------------------------------------------------------------------------
# launchers
# ----------------------------------------------------------------------------------------------
@dataclass
class _Launch:
    """Kernel-ready (contiguous, fp32/bf16) parameters + compile-time configuration."""

    ptrs: tuple  # w1,b1,w2,b2,w3,b3, cw1,cb1,cw2,cb2, q
    dims: dict
    meta: dict
    w_goal: float
    zero: int = 0  # passed as a runtime int so the compiler cannot hoist weight loads out of the T loop


def _prep(predictor: MLPPredictor, cost: RolloutCost, device, precision: str, block_n: Optional[int],
          num_warps: Optional[int]) -> _Launch:
    if precision not in ("tf32", "ieee", "bf16"):
        raise ValueError("precision must be 'tf32', 'ieee' or 'bf16'")
    bf16 = precision == "bf16"
    wdt = torch.bfloat16 if bf16 else torch.float32
    dummy = torch.zeros(1, dtype=torch.float32, device=device)
    L = [(W.detach().to(device=device, dtype=wdt).contiguous(), b.detach().to(device=device, dtype=wdt).contiguous())
         for W, b in predictor.layers]
    while len(L) < 3:
        L.append((dummy, dummy))
    C = [(W.detach().to(device=device, dtype=torch.float32).contiguous(),
          b.detach().to(device=device, dtype=torch.float32).contiguous()) for W, b in cost.critic_layers]
    while len(C) < 2:
        C.append((dummy, dummy))
    q = dummy if cost.Q is None else cost.Q.detach().to(device=device, dtype=torch.float32).contiguous()
    S, A = predictor.state_dim, predictor.action_dim
    nl = len(predictor.layers)
    outs = [int(W.shape[1]) for W, _ in predictor.layers] + [S] * (3 - nl)
    ncl = len(cost.critic_layers)
    HC = int(cost.critic_layers[0][0].shape[1]) if ncl == 2 else 1
    interp = _interpret_mode() and device.type != "cuda"
    maxw = max(_pad(x) for x in [S, A] + outs + [HC])
    if block_n is None:
        block_n = 128 if interp else (32 if maxw >= 128 else 64)
    if num_warps is None:
        num_warps = 8 if maxw >= 128 else 4
    dims = dict(S=S, A=A, D1=outs[0], D2=outs[1], D3=outs[2], HC=HC)
    meta = dict(
        SP=_pad(S), AP=_pad(A), D1P=_pad(outs[0]), D2P=_pad(outs[1]), D3P=_pad(outs[2]), HCP=_pad(HC),
        NL=nl, ACT=_ACT_ID[predictor.act], RESIDUAL=bool(predictor.residual), HAS_Q=cost.Q is not None,
        NCL=ncl, CACT=_ACT_ID.get(cost.critic_act, 0), BLOCK_N=int(block_n),
        PREC="tf32" if precision == "bf16" else precision, BF16=bf16, INTERP=interp, num_warps=num_warps, num_stages=1,
    )
    ptrs = (L[0][0], L[0][1], L[1][0], L[1][1], L[2][0], L[2][1], C[0][0], C[0][1], C[1][0], C[1][1], q)
    return _Launch(ptrs=ptrs, dims=dims, meta=meta, w_goal=cost.w_goal)


def _launch_fwd(L: _Launch, s0, actions, goal, store_traj: bool):
    N, T = actions.shape[0], actions.shape[1]
    S = L.dims["S"]
    energy = torch.empty(N, dtype=torch.float32, device=s0.device)
    traj = (torch.empty(N, T + 1, S, dtype=torch.float32, device=s0.device) if store_traj
            else torch.empty(1, dtype=torch.float32, device=s0.device))
    w1, b1, w2, b2, w3, b3, cw1, cb1, cw2, cb2, q = L.ptrs
    d = L.dims
    grid = (triton.cdiv(N, L.meta["BLOCK_N"]),)
    _mlp_rollout_fwd_kernel[grid](
        s0, actions, goal, q, w1, b1, w2, b2, w3, b3, cw1, cb1, cw2, cb2, energy, traj,
        N, T, d["S"], d["A"], d["D1"], d["D2"], d["D3"], d["HC"], L.w_goal, L.zero,
        GOAL_PER_SAMPLE=goal.dim() == 2, STORE_TRAJ=store_traj, **L.meta,
    )
    return energy, (traj if store_traj else None)


def _launch_bwd(L: _Launch, traj, actions, goal, gE, gtraj, need_ggoal: bool):
    N, T = actions.shape[0], actions.shape[1]
    S, A = L.dims["S"], L.dims["A"]
    dev = actions.device
    gs0 = torch.empty(N, S, dtype=torch.float32, device=dev)
    gact = torch.empty(N, T, A, dtype=torch.float32, device=dev)
    ggoal = torch.empty(N, S, dtype=torch.float32, device=dev) if need_ggoal else gs0
    w1, b1, w2, b2, w3, b3, cw1, cb1, cw2, cb2, q = L.ptrs
    d = L.dims
    grid = (triton.cdiv(N, L.meta["BLOCK_N"]),)
    _mlp_rollout_bwd_kernel[grid](
        traj, actions, goal, q, w1, b1, w2, b2, w3, b3, cw1, cb1, cw2,
        gE, gtraj if gtraj is not None else gE, gs0, gact, ggoal,
        N, T, S, A, d["D1"], d["D2"], d["D3"], d["HC"], L.w_goal, L.zero,
        GOAL_PER_SAMPLE=goal.dim() == 2, HAS_GTRAJ=gtraj is not None, NEED_GGOAL=need_ggoal, **L.meta,
    )
    return gs0, gact, (ggoal if need_ggoal else None)


class _MLPRolloutFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s0, actions, goal, L, save, want_traj):
        keep = want_traj or save == "traj"
        energy, traj = _launch_fwd(L, s0, actions, goal, store_traj=keep)
        ctx.L, ctx.save, ctx.want_traj = L, save, want_traj
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(s0, actions, goal, traj if save == "traj" else None)
        if traj is None:
            traj = energy.new_empty(0)
            ctx.mark_non_differentiable(traj)
        return energy, traj

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gE, gtraj):
        s0, actions, goal, traj = ctx.saved_tensors
        L = ctx.L
        if traj is None:  # "recompute": re-run the forward into a transient buffer
            _, traj = _launch_fwd(L, s0, actions, goal, store_traj=True)
        if gE is None:
            gE = torch.zeros(actions.shape[0], dtype=torch.float32, device=actions.device)
        gE = gE.to(torch.float32).contiguous()
        if gtraj is not None:
            gtraj = gtraj.to(torch.float32).contiguous() if gtraj.numel() else None
        need_ggoal = ctx.needs_input_grad[2]
        gs0, gact, ggoal = _launch_bwd(L, traj, actions, goal, gE, gtraj, need_ggoal)
        if ggoal is not None and goal.dim() == 1:
            ggoal = ggoal.sum(0)
        return (gs0 if ctx.needs_input_grad[0] else None,
                gact if ctx.needs_input_grad[1] else None,
                ggoal, None, None, None)


def mlp_rollout(s0: torch.Tensor, actions: torch.Tensor, predictor: MLPPredictor, cost: RolloutCost,
                return_traj: bool = False, *, impl: str = "auto", save: str = "traj",
                precision: str = "tf32", block_n: Optional[int] = None, num_warps: Optional[int] = None):
    """Energy [N] (and trajectory [N,T+1,S] when ``return_traj``) of rolling ``predictor`` from
    ``s0`` [N,S] under ``actions`` [N,T,A].

    impl: "auto" (fused when ``dispatch`` allows, else reference), "fused" (raise if not possible),
    "reference".  save: "traj" | "recompute" (backward strategy, see module doc).  precision:
    "tf32" (default; fp32 storage, tf32 dots on GPU), "ieee" (full fp32 dots) or "bf16" (bf16 weights
    and dot inputs, fp32 accumulation and fp32 state).  The fused path returns float32.
    """
    if impl not in ("auto", "fused", "reference"):
        raise ValueError("impl must be 'auto', 'fused' or 'reference'")
    if save not in ("traj", "recompute"):
        raise ValueError("save must be 'traj' or 'recompute'")
    _check_shapes(s0, actions, predictor, cost)
    if impl == "reference":
        return mlp_rollout_reference(s0, actions, predictor, cost, return_traj)
    ok, why = dispatch(s0, actions, predictor, cost, precision)
    if not ok:
        if impl == "fused":
            raise RuntimeError(f"fused rollout unavailable: {why}")
        return mlp_rollout_reference(s0, actions, predictor, cost, return_traj)
    L = _prep(predictor, cost, s0.device, precision, block_n, num_warps)
    s0f = s0.to(torch.float32).contiguous()
    af = actions.to(torch.float32).contiguous()
    gf = cost.goal.to(torch.float32).contiguous()
    if torch.is_grad_enabled() and (s0f.requires_grad or af.requires_grad or gf.requires_grad):
        energy, traj = _MLPRolloutFn.apply(s0f, af, gf, L, save, return_traj)
    else:
        energy, traj = _launch_fwd(L, s0f, af, gf, store_traj=return_traj)
    return (energy, traj) if return_traj else energy


# house-style aliases
rollout = mlp_rollout
rollout_reference = mlp_rollout_reference
