"""The module library: one row per kind, each with a shape rule and a builder (of a layer in
``layers.py``).

Every module takes per-sample tensors ``[N, *shape]`` and returns ``[N, *shape_out]``;
energy kinds return ``[N]`` (shape ``()``), the scalar that adds to the total energy
(Figure 18, red boxes). Several arguments to a function module are concatenated on the
last axis (``Pred(s_x, z)`` reads ``[s_x, z]``).

Kinds (``args`` resolved to ints; sizes may be named in the spec):

====================  ==========================================================
linear(in, out)        affine map
mlp(in, h.., out)      act=relu|tanh|gelu|silu|elu|sigmoid, residual=false
conv1d(C, L, out)      1-D convolution encoder (channels=16, layers=2, kernel=3)
conv2d(C, H, W, out)   2-D convolution encoder; accepts [C,H,W] or flat [C*H*W]
resconv(C, H, W, out)  IMPALA-style residual conv encoder with a LayerNorm (width=16: channels of
                       the first stage, then 2x; stages=3 max-pools of stride 2; blocks=2 per stage;
                       norm=true); accepts [C,H,W] or flat
gru(in, hidden)        GRU cell: gru(h, x...) -> h'
transformer(d)         transformer block over tokens [n, d] (heads=2, ff=4d);
                       extra arguments condition every token (§4.8.1)
identity, concat       fixed plumbing
sq_dist, l1_dist,      divergences D(a, b) -> energy; with one argument, distance to 0
cosine_dist, huber
quadratic(n)           (x - g)^T Q (x - g), Q = L L^T (eye at init), goal g (zeros)
l1, l2, gaussian       regularizers R(z): sparse, weight decay, -log N(0, sigma^2)
discrete(K)            R(z) = r . z over one-hot z (Gibbs prior of eq. 23); alias onehot
pendulum, cartpole,    gymnasium's true dynamics f(s, a) -> s' on the env's observation (pendulum: g=10)
mountaincar, acrobot   (dynamics.py): s [3] / [4] / [2] / [6], a [1] / one-hot [2] / [1] /
                       one-hot [3]; inline, no sizes
pointpit               ebmgraph/PointPitNoise-v0's noise-free motion: s [2], a [2]
scale(f1, .., fn)      a fixed per-feature factor x * [f1..fn] (features on one scale)
pick(i, ..)            features by position, x[..., [i, ..]]: [n] -> [k]
mem_read(N, dk, dv)    associative memory read Mem(q) (eq. 15-17): (m [N(dk+dv+1)], q [dk]) -> [dv]
mem_write(N, dk, dv)   write r at q (eq. 18-20), allocating a slot when no key matches: -> m'
                       (gamma=1.0, the Normalize threshold)
external([in].. -> [out])  a module whose body the user supplies (``compile(modules=)``,
                       ``--module``); the spec declares only its signature
pendulum_cost, ...     their per-step costs c(s, a) -> energy, = -reward (cartpole_cost:
                       1 outside the bounds, shaping=0 adds a smooth bowl); inline
====================  ==========================================================
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from . import dynamics as dyn
from .layers import (ACTIVATIONS, MLP, Concat, ConvEncoder, ResConvEncoder, DiscretePrior, Divergence, GRU, Identity, Image, Linear, Pick,
                     Quadratic, Regularizer, Scale, Transformer)
from .memory import MemoryRead, MemoryWrite

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """An argument's shape does not fit a module's signature."""


# ----------------------------------------------------------------------------- shape rules
def _concat_shape(kind: str, shapes: list[Shape]) -> Shape:
    lead = {s[:-1] for s in shapes}
    if any(len(s) == 0 for s in shapes):
        raise ShapeError(f"{kind} takes vectors, got a scalar argument")
    if len(lead) != 1:
        raise ShapeError(f"{kind} concatenates its arguments on the last axis; leading shapes differ: {shapes}")
    return shapes[0][:-1] + (sum(s[-1] for s in shapes),)


def _need(kind: str, args: tuple, n: int | tuple[int, int]) -> None:
    lo, hi = (n, n) if isinstance(n, int) else n
    if not lo <= len(args) <= hi:
        want = f"{lo}" if lo == hi else f"{lo} to {hi}"
        raise ShapeError(f"{kind} declares {want} integer argument(s), got {len(args)}")


def _arity(kind: str, shapes: list[Shape], lo: int, hi: int | None = None) -> None:
    hi = lo if hi is None else hi
    if not lo <= len(shapes) <= hi:
        want = f"{lo}" if lo == hi else f"{lo} to {hi}"
        raise ShapeError(f"{kind} is called with {want} argument(s), got {len(shapes)}")


# ----------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Kind:
    """A module kind: how it checks shapes, how it is built, and what it is in Figure 18."""

    name: str
    role: str  # "function" | "energy" | "regularizer"
    shape: Callable  # (args, kwargs, in_shapes) -> out shape, raises ShapeError
    build: Callable  # (args, kwargs, in_shapes) -> torch.nn.Module (layers.py)
    kwargs: tuple[str, ...] = ()
    inline: bool = False  # may be called in an expression without a declaration
    params: Callable = lambda a, kw, s: 0  # (args, kwargs, in_shapes) -> parameter count, without building
    real_args: bool = False  # arguments are real numbers (scale factors), not sizes


def _linear_params(a, kw, s):
    return a[0] * a[1] + (a[1] if kw.get("bias", True) else 0)


def _mlp_params(a, kw, s):
    return sum(x * y + y for x, y in zip(a[:-1], a[1:]))


def _conv_params(dims):
    def count(a, kw, s):
        ch, layers, k = int(kw.get("channels", 16)), int(kw.get("layers", 2)), int(kw.get("kernel", 3))
        convs = (a[0] * ch + (layers - 1) * ch * ch) * k**dims + layers * ch
        return convs + ch * math.prod(a[1:dims + 1]) * a[-1] + a[-1]

    return count


def _transformer_params(a, kw, s):
    d, ff, cond = a[0], int(kw.get("ff", 4 * a[0])), sum(x[-1] for x in s[1:])
    return 4 * d * d + 4 * d + 2 * d * ff + ff + d + 4 * d + (cond * d + d if cond else 0)


def _mlp_widths(kind, args):
    if len(args) < 2:
        raise ShapeError(f"{kind} needs at least (in, out) widths, got {list(args)}")
    if any(a <= 0 for a in args):
        raise ShapeError(f"{kind} widths must be positive, got {list(args)}")
    return list(args)


def _linear_shape(args, kw, shapes):
    _need("linear", args, 2)
    cat = _concat_shape("linear", shapes)
    if cat[-1] != args[0]:
        raise ShapeError(f"linear({args[0]}, {args[1]}) reads {args[0]} features, its arguments give {cat[-1]} ({shapes})")
    return cat[:-1] + (args[1],)


def _mlp_shape(args, kw, shapes):
    widths = _mlp_widths("mlp", args)
    cat = _concat_shape("mlp", shapes)
    if cat[-1] != widths[0]:
        raise ShapeError(f"mlp{tuple(widths)} reads {widths[0]} features, its arguments give {cat[-1]} ({[list(s) for s in shapes]})")
    out = cat[:-1] + (widths[-1],)
    if kw.get("residual", False) and shapes[0] != out:
        raise ShapeError(f"residual mlp must return the shape of its first argument {list(shapes[0])}, returns {list(out)}")
    act = kw.get("act", "relu")
    if act not in ACTIVATIONS:
        raise ShapeError(f"unknown activation {act!r}; known: {', '.join(ACTIVATIONS)}")
    return out


def _resconv_shape(args, kw, shapes):
    _need("resconv", args, 4)
    _arity("resconv", shapes, 1)
    in_shape = tuple(args[:3])
    (s,) = shapes
    if s != in_shape and s != (math.prod(in_shape),):
        raise ShapeError(f"resconv{tuple(args)} reads {list(in_shape)} (or flat [{math.prod(in_shape)}]), got {list(s)}")
    for k, lo in (("width", 1), ("stages", 1), ("blocks", 0)):
        v = kw.get(k, 1)
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ShapeError(f"resconv {k}={v!r}: an integer >= {lo}")
    return (args[-1],)


def _resconv_build(a, kw, s):
    return ResConvEncoder(tuple(a[:3]), a[-1], int(kw.get("width", 16)), int(kw.get("stages", 3)),
                          int(kw.get("blocks", 2)), bool(kw.get("norm", True)))


def _conv_shape(dims):
    def rule(args, kw, shapes):
        _need(f"conv{dims}d", args, dims + 2)
        _arity(f"conv{dims}d", shapes, 1)
        in_shape = tuple(args[: dims + 1])
        (s,) = shapes
        if s != in_shape and s != (math.prod(in_shape),):
            raise ShapeError(f"conv{dims}d{tuple(args)} reads {list(in_shape)} (or flat [{math.prod(in_shape)}]), got {list(s)}")
        if kw.get("act", "relu") not in ACTIVATIONS:
            raise ShapeError(f"unknown activation {kw.get('act')!r}")
        return (args[-1],)

    return rule


def _gru_shape(args, kw, shapes):
    _need("gru", args, 2)
    if len(shapes) < 2:
        raise ShapeError("gru is called as gru(h, x...): the state first, then inputs")
    n_in, hidden = args
    if shapes[0] != (hidden,):
        raise ShapeError(f"gru state must be [{hidden}], got {list(shapes[0])}")
    cat = _concat_shape("gru", shapes[1:])
    if cat != (n_in,):
        raise ShapeError(f"gru reads inputs of width {n_in}, got {cat}")
    return (hidden,)


def _transformer_shape(args, kw, shapes):
    _need("transformer", args, 1)
    d = args[0]
    if not shapes or len(shapes[0]) != 2 or shapes[0][1] != d:
        raise ShapeError(f"transformer({d}) reads tokens [n, {d}], got {[list(s) for s in shapes]}")
    if d % int(kw.get("heads", 2)):
        raise ShapeError(f"transformer width {d} must divide by heads={kw.get('heads', 2)}")
    for s in shapes[1:]:
        if len(s) != 1:
            raise ShapeError(f"transformer conditions must be vectors, got {list(s)}")
    return shapes[0]


def _same_shape(kind):
    def rule(args, kw, shapes):
        _arity(kind, shapes, 1)
        return shapes[0]

    return rule


def _concat_rule(args, kw, shapes):
    return _concat_shape("concat", shapes)


def _div_shape(kind):
    def rule(args, kw, shapes):
        _arity(kind, shapes, 1, 2)
        if len(shapes) == 2 and shapes[0] != shapes[1]:
            raise ShapeError(f"{kind} compares equal shapes, got {list(shapes[0])} and {list(shapes[1])}")
        return ()

    return rule


def _quad_shape(args, kw, shapes):
    _need("quadratic", args, 1)
    _arity("quadratic", shapes, 1, 2)
    n = args[0]
    for s in shapes:
        if math.prod(s) != n:
            raise ShapeError(f"quadratic({n}) reads {n} features, got {list(s)}")
    return ()


def _reg_shape(kind):
    def rule(args, kw, shapes):
        _arity(kind, shapes, 1)
        return ()

    return rule


def _discrete_shape(args, kw, shapes):
    _need("discrete", args, 1)
    _arity("discrete", shapes, 1)
    if shapes[0] != (args[0],):
        raise ShapeError(f"discrete({args[0]}) reads a one-hot [{args[0]}], got {list(shapes[0])}")
    return ()


def _conv_build(dims):
    def build(args, kw, shapes):
        return ConvEncoder(dims, tuple(args[: dims + 1]), args[-1], int(kw.get("channels", 16)),
                           int(kw.get("layers", 2)), int(kw.get("kernel", 3)), kw.get("act", "relu"))

    return build


def signature_shapes(args: tuple, ranks: str) -> tuple[list[tuple], tuple]:
    """Split ``external``'s flat dimensions back into (input shapes, output shape)."""
    ins, _, out = ranks.partition("->")
    lens = [int(r) for r in ins.split(",")] + [int(out)]
    shapes, i = [], 0
    for n in lens:
        shapes.append(tuple(args[i:i + n]))
        i += n
    return shapes[:-1], shapes[-1]


def _external_shape(args, kw, shapes):
    ins, out = signature_shapes(args, kw["ranks"])
    if len(shapes) != len(ins):
        raise ShapeError(f"external is declared with {len(ins)} argument(s) {[list(s) for s in ins]}, "
                         f"called with {len(shapes)}")
    for i, (got, want) in enumerate(zip(shapes, ins)):
        if tuple(got) != tuple(want):
            raise ShapeError(f"external argument {i + 1} is declared {list(want)}, got {list(got)}")
    return tuple(out)


def _external_build(args, kw, shapes):
    raise ShapeError("an external module's body is supplied by the user: compile(spec, modules={name: module})")


def _scale_shape(args, kw, shapes):
    _arity("scale", shapes, 1)
    if not args:
        raise ShapeError("scale declares one factor per feature, e.g. scale(1, 20)")
    if any(a == 0 for a in args):
        raise ShapeError(f"scale takes non-zero factors, got {list(args)}")
    if len(shapes[0]) != 1 or shapes[0][0] != len(args):
        raise ShapeError(f"scale({', '.join(map(str, args))}) reads a vector of {len(args)} features, "
                         f"got {list(shapes[0])}")
    return tuple(shapes[0])


def _pick_shape(args, kw, shapes):
    _arity("pick", shapes, 1)
    if not args or any(isinstance(a, float) and not a.is_integer() for a in args):
        raise ShapeError(f"pick takes feature positions (integers), e.g. pick(0) or pick(0, 2); got {list(args)}")
    if len(shapes[0]) != 1:
        raise ShapeError(f"pick reads a vector, got {list(shapes[0])}")
    n = shapes[0][0]
    bad = [int(a) for a in args if not 0 <= int(a) < n]
    if bad:
        raise ShapeError(f"pick({', '.join(str(int(a)) for a in args)}): positions {bad} are outside 0..{n - 1}")
    return (len(args),)


def _image_shape(args, kw, shapes):
    _arity("image", shapes, 1)
    if len(shapes[0]) != 3:
        raise ShapeError(f"image reads an [H, W, C] image, got {list(shapes[0])}")
    h, w, c = shapes[0]
    return (c, h, w)


def _memory_shape(kind: str):
    def rule(args, kw, shapes):
        _need(kind, args, 3)
        N, dk, dv = args
        width = N * (dk + dv + 1)
        want = [(width,), (dk,)] + ([(dv,)] if kind == "mem_write" else [])
        names = "(m, q)" if kind == "mem_read" else "(m, q, r)"
        if [tuple(s) for s in shapes] != want:
            raise ShapeError(f"{kind}({N}, {dk}, {dv}) is called as {names} with m [{width}] = [N·(dk+dv+1)], "
                             f"q [{dk}]" + (f", r [{dv}]" if kind == "mem_write" else "") + f"; got "
                             f"{[list(s) for s in shapes]}")
        return (dv,) if kind == "mem_read" else (width,)

    return rule


# gymnasium's classic-control environments as true world models (dynamics.py):
# kind -> (what s is, its width, what a is, its width, dynamics, cost, the cost's options, the dynamics' options)
ENVS: dict[str, tuple] = {
    "pendulum": ("Pendulum-v1 observation [cos θ, sin θ, θ̇]", 3, "the torque", 1,
                 dyn.PendulumDynamics, dyn.PendulumCost, (), ("g",)),
    "cartpole": ("CartPole-v1 observation [x, ẋ, θ, θ̇]", 4, "a one-hot push (left, right)", 2,
                 dyn.CartPoleDynamics, dyn.CartPoleCost, ("shaping",), ()),
    "mountaincar": ("MountainCarContinuous-v0 observation [position, velocity]", 2, "the force", 1,
                    dyn.MountainCarDynamics, dyn.MountainCarCost, (), ()),
    "acrobot": ("Acrobot-v1 observation [cos θ1, sin θ1, cos θ2, sin θ2, θ̇1, θ̇2]", 6,
                "a one-hot torque (-1, 0, +1)", 3, dyn.AcrobotDynamics, dyn.AcrobotCost, (), ()),
    "pointpit": ("ebmgraph/PointPitNoise-v0 observation [x, y]", 2, "the velocity command [vx, vy]", 2,
                 dyn.PointPitDynamics, dyn.PointPitCost, (), ()),
}


def _env_shape(kind, env, energy):
    what_s, S, what_a, A = ENVS[env][:4]

    def rule(args, kw, shapes):
        _need(kind, args, 0)
        if len(shapes) != 2:
            raise ShapeError(f"{kind} is called as {kind}(s, a), got {len(shapes)} argument(s)")
        s, a = shapes
        if s != (S,):
            raise ShapeError(f"{kind}(s, a) reads s as the {what_s}, [{S}]; got {list(s)}")
        if a != (A,):
            raise ShapeError(f"{kind}(s, a) reads a as {what_a}, [{A}]; got {list(a)}")
        return () if energy else (S,)

    return rule


def _env_build(cls):
    return lambda a, kw, s: cls(**{k: float(v) for k, v in kw.items()})


KINDS: dict[str, Kind] = {k.name: k for k in [
    Kind("linear", "function", _linear_shape, lambda a, kw, s: Linear(a[0], a[1], bool(kw.get("bias", True))), ("bias",),
         params=_linear_params),
    Kind("mlp", "function", _mlp_shape,
         lambda a, kw, s: MLP(list(a), kw.get("act", "relu"), bool(kw.get("residual", False))), ("act", "residual"),
         params=_mlp_params),
    Kind("conv1d", "function", _conv_shape(1), _conv_build(1), ("channels", "layers", "kernel", "act"),
         params=_conv_params(1)),
    Kind("conv2d", "function", _conv_shape(2), _conv_build(2), ("channels", "layers", "kernel", "act"),
         params=_conv_params(2)),
    Kind("resconv", "function", _resconv_shape, _resconv_build, ("width", "stages", "blocks", "norm"),
         params=lambda a, kw, s: sum(p.numel() for p in _resconv_build(a, kw, s).parameters())),
    Kind("gru", "function", _gru_shape, lambda a, kw, s: GRU(a[0], a[1]),
         params=lambda a, kw, s: 3 * (a[0] * a[1] + a[1] * a[1] + 2 * a[1])),
    Kind("transformer", "function", _transformer_shape,
         lambda a, kw, s: Transformer(a[0], int(kw.get("heads", 2)), int(kw.get("ff", 4 * a[0])),
                                      sum(x[-1] for x in s[1:])), ("heads", "ff"), params=_transformer_params),
    Kind("external", "function", _external_shape, _external_build, ("ranks",)),
    Kind("scale", "function", _scale_shape, lambda a, kw, s: Scale(a), real_args=True),
    Kind("pick", "function", _pick_shape, lambda a, kw, s: Pick(a), real_args=True),
    Kind("image", "function", _image_shape, lambda a, kw, s: Image(), inline=True),
    Kind("mem_read", "function", _memory_shape("mem_read"),
         lambda a, kw, s: MemoryRead(*a, gamma=float(kw.get("gamma", 1.0))), ("gamma",)),
    Kind("mem_write", "function", _memory_shape("mem_write"),
         lambda a, kw, s: MemoryWrite(*a, gamma=float(kw.get("gamma", 1.0))), ("gamma",)),
    Kind("identity", "function", _same_shape("identity"), lambda a, kw, s: Identity(), inline=True),
    Kind("concat", "function", _concat_rule, lambda a, kw, s: Concat(), inline=True),
    *[Kind(n, "energy", _div_shape(n), (lambda n: lambda a, kw, s: Divergence(n, float(kw.get("delta", 1.0))))(n),
           ("delta",) if n == "huber" else (), inline=True)
      for n in ("sq_dist", "l1_dist", "cosine_dist", "huber")],
    Kind("quadratic", "energy", _quad_shape, lambda a, kw, s: Quadratic(a[0]), params=lambda a, kw, s: a[0] * a[0] + a[0]),
    *[Kind(n, "regularizer", _reg_shape(n), (lambda n: lambda a, kw, s: Regularizer(n, float(kw.get("sigma", 1.0))))(n),
           ("sigma",) if n == "gaussian" else (), inline=True)
      for n in ("l1", "l2", "gaussian")],
    Kind("discrete", "regularizer", _discrete_shape, lambda a, kw, s: DiscretePrior(a[0]), params=lambda a, kw, s: a[0]),
    Kind("onehot", "regularizer", _discrete_shape, lambda a, kw, s: DiscretePrior(a[0]), params=lambda a, kw, s: a[0]),
    *[Kind(env, "function", _env_shape(env, env, False), _env_build(row[4]), row[7], inline=True)
      for env, row in ENVS.items()],
    *[Kind(f"{env}_cost", "energy", _env_shape(f"{env}_cost", env, True), _env_build(row[5]), row[6], inline=True)
      for env, row in ENVS.items()],
]}

def _int_in(lo, hi, odd=False):
    def ok(v):
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi and (not odd or v % 2 == 1)

    return ok, f"an {'odd ' if odd else ''}integer in {lo}..{hi}"


def _positive_number():
    return (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1e12,
            "a positive number")


_NONNEGATIVE = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1e12,
                "a non-negative number")
_BOOL = (lambda v: isinstance(v, bool), "true or false")
_ACT = (lambda v: v in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}")

# option -> (predicate, what it must be); checked with the spec's file and line
OPTION_RULES: dict[str, tuple] = {
    "bias": _BOOL, "residual": _BOOL, "act": _ACT,
    "channels": _int_in(1, 4096), "layers": _int_in(1, 64), "kernel": _int_in(1, 31, odd=True),
    "heads": _int_in(1, 256), "ff": _int_in(1, 1_000_000),
    "delta": _positive_number(), "sigma": _positive_number(), "shaping": _NONNEGATIVE, "gamma": _positive_number(),
    "g": _positive_number(),
}


def option_errors(kwargs: dict) -> list[str]:
    """What is wrong with a module declaration's options (empty when all are valid)."""
    out = []
    for k, v in kwargs.items():
        ok, what = OPTION_RULES.get(k, (lambda v: True, ""))
        if not ok(v):
            out.append(f"option {k}={v!r} must be {what}")
    return out


# batch-level regularizers of §4.5.1 (used by training; declared in a spec's `regularizers:`)
BATCH_REGULARIZERS = ("vicreg", "barlow", "variance", "covariance", "sigreg")

