"""The torch layers behind the module kinds of :mod:`ebmgraph.modules` (Figure 18's boxes).

Every layer takes per-sample tensors ``[N, *shape]``; several arguments are concatenated on the
last axis (``Pred(s_x, z)`` reads ``[s_x, z]``); energy layers return ``[N]``. ``modules.py`` holds
the kind table — each kind's shape rule and builder — and builds these.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU,
    "sigmoid": nn.Sigmoid, "softplus": nn.Softplus,
}


def _cat(xs) -> torch.Tensor:
    return xs[0] if len(xs) == 1 else torch.cat(xs, dim=-1)


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


# Under torch.compile on the CPU, a small linear map (few outputs, each a sum over few inputs) runs as a
# broadcast multiply and a sum over inputs, which inductor fuses into the kernels around it instead of
# calling an extern matmul with buffers between. Measured (BENCHMARKS.md, issue 14): a predictor's read-out
# layer (32 -> 3, float32) in a compiled planner rollout at K = 1,024, 40 -> 29 µs per step; a 3 x 3
# quadratic cost over [32,768, 3] states, ~130 µs per call as a matmul, fused almost free. Larger maps
# lose, since each output is a horizontal vector reduction: MCTS's 64 -> 4 read-out in float64 at B = 1,024
# took 1.87 ms per simulation fused against 1.28 ms as a matmul, and a 4 -> 32 first layer fused made a
# float32 rollout step 10x slower. Eager is unchanged.
_FUSED_OUT, _FUSED_IN = 8, 32


def _fusable(x: torch.Tensor, n_in: int, n_out: int) -> bool:
    return (n_out <= _FUSED_OUT and n_in <= _FUSED_IN and x.device.type == "cpu"
            and torch.compiler.is_compiling())


def _hooked(m: nn.Module) -> bool:
    """Whether calling ``m`` does more than its ``forward`` (its own or global hooks: spectral_norm, prune, ...)."""
    from torch.nn.modules import module as _m

    return bool(m._forward_hooks or m._forward_pre_hooks or _m._global_forward_hooks
                or _m._global_forward_pre_hooks)


def matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x @ w`` for ``w`` ``[in, out]``; a small map under ``torch.compile`` on the CPU as a fusable
    multiply-sum."""
    if w.dim() == 2 and x.dtype == w.dtype and _fusable(x, w.shape[0], w.shape[1]):
        return (x.unsqueeze(-2) * w.t()).sum(-1)
    return x @ w


def linear(lin: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``lin(x)``, through :func:`matmul`'s fusable form where that applies (a plain ``nn.Linear`` without hooks,
    of the input's dtype; anything else is called as it is)."""
    if (type(lin) is nn.Linear and x.dtype == lin.weight.dtype and not _hooked(lin)
            and _fusable(x, lin.in_features, lin.out_features)):
        y = matmul(x, lin.weight.t())
        return y if lin.bias is None else y + lin.bias
    return lin(x)


class Linear(nn.Module):
    def __init__(self, n_in: int, n_out: int, bias: bool = True):
        super().__init__()
        self.lin = nn.Linear(n_in, n_out, bias=bias)

    def forward(self, *xs):
        return linear(self.lin, _cat(xs))


class MLP(nn.Module):
    """Linear layers with an activation between them; ``residual`` adds the first input."""

    def __init__(self, widths: list[int], act: str = "relu", residual: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(ACTIVATIONS[act]())
        self.net = nn.Sequential(*layers)
        self.act = act
        self.residual = residual

    def forward(self, *xs):
        y = _cat(xs)
        if not torch.compiler.is_compiling() or _hooked(self.net):
            y = self.net(y)
        else:  # compiled: each layer through linear() (small maps fused)
            for m in self.net:
                y = linear(m, y) if isinstance(m, nn.Linear) else m(y)
        return xs[0] + y if self.residual else y


class ConvEncoder(nn.Module):
    """Convolutions (stride 1, same padding) then a linear map to ``out`` features."""

    def __init__(self, dims: int, in_shape: tuple[int, ...], n_out: int, channels: int, layers: int, kernel: int, act: str):
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        mods: list[nn.Module] = []
        c = in_shape[0]
        for _ in range(layers):
            mods += [conv(c, channels, kernel, padding=kernel // 2), ACTIVATIONS[act]()]
            c = channels
        self.body = nn.Sequential(*mods)
        self.in_shape = in_shape
        self.head = nn.Linear(channels * math.prod(in_shape[1:]), n_out)

    def forward(self, x):
        x = x.reshape(x.shape[0], *self.in_shape)
        return self.head(_flat(self.body(x)))


class _Residual(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` at constant channels and size (IMPALA's residual block)."""

    def __init__(self, c: int):
        super().__init__()
        self.a, self.b = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.b(torch.relu(self.a(torch.relu(x))))


class ResConvEncoder(nn.Module):
    """IMPALA-style residual conv encoder (Espeholt et al. 2018; EB-JEPA's TwoRoom encoder): per stage a
    3x3 convolution to ``width * mult`` channels, a 3x3 max-pool of stride 2 (the size halves, rounded up),
    then ``blocks`` residual blocks; then ReLU, a linear map to ``out`` features and a LayerNorm
    (the normalization keeps the representation's scale fixed while VICReg / SIGReg shape it).
    ``[N, C, H, W]`` (or flat) -> ``[N, out]``."""

    def __init__(self, in_shape: tuple[int, int, int], n_out: int, width: int, stages: int, blocks: int,
                 norm: bool = True):
        super().__init__()
        self.in_shape = in_shape
        c, h, w = in_shape
        mods: list[nn.Module] = []
        for i in range(stages):
            ch = width * (1 if i == 0 else 2)
            mods += [nn.Conv2d(c, ch, 3, padding=1), nn.MaxPool2d(3, stride=2, padding=1)]
            mods += [_Residual(ch) for _ in range(blocks)]
            c, h, w = ch, (h + 1) // 2, (w + 1) // 2
        self.body = nn.Sequential(*mods)
        self.head = nn.Linear(c * h * w, n_out)
        self.norm = nn.LayerNorm(n_out) if norm else nn.Identity()

    def forward(self, x):
        x = x.reshape(x.shape[0], *self.in_shape)
        return self.norm(self.head(torch.relu(_flat(self.body(x)))))


class GRU(nn.Module):
    def __init__(self, n_in: int, hidden: int):
        super().__init__()
        self.cell = nn.GRUCell(n_in, hidden)

    def forward(self, h, *xs):
        return self.cell(_cat(xs), h)


class Transformer(nn.Module):
    """One pre-norm transformer block over tokens ``[N, n, d]``; extra args condition all tokens."""

    def __init__(self, d: int, heads: int, ff: int, cond: int):
        super().__init__()
        self.block = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, batch_first=True, norm_first=True)
        self.cond = nn.Linear(cond, d) if cond else None

    def forward(self, x, *cond):
        if self.cond is not None:
            x = x + self.cond(_cat(cond)).unsqueeze(1)
        return self.block(x)


class Identity(nn.Module):
    def forward(self, x):
        return x


class Concat(nn.Module):
    def forward(self, *xs):
        return _cat(xs)


class Divergence(nn.Module):
    """D(a, b) summed over all but the batch axis; with one argument, D(a, 0)."""

    def __init__(self, kind: str, delta: float = 1.0):
        super().__init__()
        self.kind = kind
        self.delta = delta

    def forward(self, a, b=None):
        a = _flat(a)
        b = torch.zeros_like(a) if b is None else _flat(b)
        if self.kind == "sq_dist":
            return ((a - b) ** 2).sum(-1)
        if self.kind == "l1_dist":
            return (a - b).abs().sum(-1)
        if self.kind == "huber":
            return F.huber_loss(a, b, reduction="none", delta=self.delta).sum(-1)
        if self.kind == "cosine_dist":
            return 1.0 - F.cosine_similarity(a, b, dim=-1, eps=1e-8)
        raise AssertionError(self.kind)


class Quadratic(nn.Module):
    """(x - g)^T Q (x - g) with Q = L L^T; or (a - b)^T Q (a - b) with two arguments."""

    def __init__(self, n: int):
        super().__init__()
        self.L = nn.Parameter(torch.eye(n))
        self.goal = nn.Parameter(torch.zeros(n))

    def forward(self, a, b=None):
        d = _flat(a) - (self.goal if b is None else _flat(b))
        v = matmul(d, self.L)
        return (v * v).sum(-1)


class Regularizer(nn.Module):
    def __init__(self, kind: str, sigma: float = 1.0):
        super().__init__()
        self.kind = kind
        self.sigma = sigma

    def forward(self, z):
        z = _flat(z)
        if self.kind == "l1":
            return z.abs().sum(-1)
        if self.kind == "l2":
            return (z * z).sum(-1)
        if self.kind == "gaussian":
            return (z * z).sum(-1) / (2.0 * self.sigma**2)
        raise AssertionError(self.kind)


class DiscretePrior(nn.Module):
    """R(z) = r . z: for one-hot z this is the energy r_k of value k (eq. 23's Gibbs prior)."""

    def __init__(self, K: int):
        super().__init__()
        self.r = nn.Parameter(torch.zeros(K))

    def forward(self, z):
        return _flat(z) @ self.r


class Scale(nn.Module):
    """A fixed per-feature factor: ``scale(1, 20)(x) = x * [1, 20]`` (put features on one scale)."""

    def __init__(self, factors):
        super().__init__()
        self.register_buffer("factors", torch.tensor([float(f) for f in factors]))

    def forward(self, x):
        return x * self.factors.to(x.dtype)


class Pick(nn.Module):
    """Features of a vector by position: ``pick(0)(s) = s[..., [0]]`` (e.g. Pendulum's cos θ)."""

    def __init__(self, idx):
        super().__init__()
        self.idx = [int(i) for i in idx]

    def forward(self, x):
        return x[..., self.idx]


class Image(nn.Module):
    """An image ``[H, W, C]`` of 0..255 values (as environments give them) as ``[C, H, W]`` in [0, 1]."""

    def forward(self, x):
        x = x if x.is_floating_point() else x.to(torch.get_default_dtype())
        return x.movedim(-1, -3) / 255.0


class ExternalFunction(nn.Module):
    """A plain torch function supplied as an external module's body (no parameters)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)
