"""Hand-written torch computations of the module library, for oracle tests.

The oracle reads WHAT a module computes from the spec text -- the declared kind, its
integer arguments and its options (``act=``, ``residual=``, ``bias=``, ``delta=``,
``sigma=``, ``kernel=`` ...) from ``ebm.graph.modules`` (the ModDecls), with the documented
defaults (docs/spec-format.md) written here -- and takes nothing from the module object but
its parameters (weights). It never calls a module's forward and never reads an attribute
such as ``mod.act`` or ``mod.residual``: a module that ignores a declared option disagrees
with the oracle.

    O = Oracle(ebm)
    O.Enc(x)            # the formula of the module declared as ``Enc`` in the spec
    O("Enc", x)         # the same
"""
from __future__ import annotations

import math

import torch

# ----------------------------------------------------------------------------- documented defaults
# docs/spec-format.md, "Modules" table
DEFAULTS = {
    "linear": {"bias": True},
    "mlp": {"act": "relu", "residual": False},
    "conv1d": {"channels": 16, "layers": 2, "kernel": 3, "act": "relu"},
    "conv2d": {"channels": 16, "layers": 2, "kernel": 3, "act": "relu"},
    "transformer": {"heads": 2},  # ff = 4 d
    "huber": {"delta": 1.0},
    "gaussian": {"sigma": 1.0},
}


# ----------------------------------------------------------------------------- activations, written out
def _relu(x):
    return torch.where(x > 0, x, torch.zeros_like(x))


def _sigmoid(x):
    return 1.0 / (1.0 + torch.exp(-x))


ACT = {
    "relu": _relu,
    "tanh": lambda x: 2.0 * _sigmoid(2.0 * x) - 1.0,
    "gelu": lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0))),
    "silu": lambda x: x * _sigmoid(x),
    "elu": lambda x: torch.where(x > 0, x, torch.exp(x) - 1.0),
    "sigmoid": _sigmoid,
    "softplus": lambda x: torch.log1p(torch.exp(x)),
}


# ----------------------------------------------------------------------------- small pieces
def cat(xs):
    return torch.cat(list(xs), -1)


def flat(x):
    return x.reshape(x.shape[0], -1)


def affine(h, W, b=None):
    """h W^T + b, written as a sum over the input axis."""
    y = (h.unsqueeze(-2) * W).sum(-1)
    return y if b is None else y + b


def sq(a, b=None):
    d = a if b is None else a - b
    return (d * d).sum(-1)


def layer_norm(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * g + b


def one_hot(k, K, dtype=torch.float64):
    if k.is_floating_point():
        return k
    return (k.unsqueeze(-1) == torch.arange(K)).to(dtype)


def _weights_and_biases(mod):
    """The module's weight and bias tensors in registration order (layer by layer)."""
    named = list(mod.named_parameters())
    W = [p for n, p in named if n.endswith("weight")]
    b = [p for n, p in named if n.endswith("bias")]
    return W, b


def _param(mod, suffix):
    hits = [p for n, p in mod.named_parameters() if n == suffix or n.endswith("." + suffix)]
    assert len(hits) == 1, f"expected one parameter named *{suffix}, found {len(hits)}"
    return hits[0]


# ----------------------------------------------------------------------------- formulas per kind
def f_linear(args, opt, mod, *xs):
    n_in, n_out = args
    W, b = _weights_and_biases(mod)
    assert len(W) == 1 and W[0].shape == (n_out, n_in)
    if opt["bias"]:
        assert len(b) == 1 and b[0].shape == (n_out,)
        return affine(cat(xs), W[0], b[0])
    return affine(cat(xs), W[0])  # bias=false: no bias, whatever the module holds


def f_mlp(args, opt, mod, *xs):
    """y = W_L act(... act(W_1 [x1, x2, ...] + b_1)) + b_L (+ x1 when residual)."""
    widths = list(args)
    W, b = _weights_and_biases(mod)
    n = len(widths) - 1
    assert len(W) == n and len(b) == n, "one weight and one bias per layer"
    h = cat(xs)
    for i in range(n):
        assert W[i].shape == (widths[i + 1], widths[i]), (i, W[i].shape, widths)
        h = affine(h, W[i], b[i])
        if i < n - 1:
            h = ACT[opt["act"]](h)
    return xs[0] + h if opt["residual"] else h


def _conv(dims):
    def f(args, opt, mod, x):
        in_shape, n_out = tuple(args[: dims + 1]), args[-1]
        k, C, layers = opt["kernel"], opt["channels"], opt["layers"]
        F = torch.nn.functional
        conv = F.conv1d if dims == 1 else F.conv2d
        W, b = _weights_and_biases(mod)
        assert len(W) == layers + 1 and len(b) == layers + 1
        h = x.reshape(x.shape[0], *in_shape)
        c_in = in_shape[0]
        for i in range(layers):
            assert W[i].shape == (C, c_in) + (k,) * dims, (W[i].shape, C, c_in, k)
            h = ACT[opt["act"]](conv(h, W[i], b[i], stride=1, padding=k // 2))  # same padding
            c_in = C
        assert W[-1].shape == (n_out, C * math.prod(in_shape[1:]))
        return affine(flat(h), W[-1], b[-1])

    return f


def f_gru(args, opt, mod, h, *xs):
    """GRU cell, the equations of Cho et al. (PyTorch's gate order r, z, n)."""
    n_in, H = args
    x = cat(xs)
    Wi, Wh = _param(mod, "weight_ih"), _param(mod, "weight_hh")
    bi, bh = _param(mod, "bias_ih"), _param(mod, "bias_hh")
    assert Wi.shape == (3 * H, n_in) and Wh.shape == (3 * H, H)
    gi, gh = affine(x, Wi, bi), affine(h, Wh, bh)
    r = _sigmoid(gi[:, :H] + gh[:, :H])
    z = _sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
    n = torch.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
    return (1 - z) * n + z * h


def f_transformer(args, opt, mod, x, *cond):
    """One pre-norm block: h = x + MHA(LN1(x)); y = h + W2 relu(W1 LN2(h) + b1) + b2.

    Conditions: x <- x + C [c1, c2, ...] + c on every token, before the block.
    """
    (d,) = args
    heads = opt["heads"]
    ff = opt.get("ff", 4 * d)
    block = {"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias", "linear1.weight",
             "linear1.bias", "linear2.weight", "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight",
             "norm2.bias"}
    P = {s: _param(mod, s) for s in block}
    rest = [(n, p) for n, p in mod.named_parameters() if not any(n == s or n.endswith("." + s) for s in block)]
    if cond:
        c = cat(cond)
        (Wc,) = [p for n, p in rest if n.endswith("weight")]
        (bc,) = [p for n, p in rest if n.endswith("bias")]
        assert Wc.shape == (d, c.shape[-1])
        x = x + affine(c, Wc, bc).unsqueeze(1)
    else:
        assert not rest, f"unconditioned transformer has extra parameters {[n for n, _ in rest]}"
    assert P["linear1.weight"].shape == (ff, d), P["linear1.weight"].shape
    N, n, _ = x.shape
    dh = d // heads
    a = layer_norm(x, P["norm1.weight"], P["norm1.bias"])
    qkv = affine(a, P["in_proj_weight"], P["in_proj_bias"])
    q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]

    def split(t):  # [N, n, d] -> [N, heads, n, dh]
        return t.reshape(N, n, heads, dh).transpose(1, 2)

    q, k, v = split(q), split(k), split(v)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
    w = torch.exp(s - s.amax(-1, keepdim=True))
    w = w / w.sum(-1, keepdim=True)
    o = (w @ v).transpose(1, 2).reshape(N, n, d)
    h = x + affine(o, P["out_proj.weight"], P["out_proj.bias"])
    m = layer_norm(h, P["norm2.weight"], P["norm2.bias"])
    return h + affine(_relu(affine(m, P["linear1.weight"], P["linear1.bias"])), P["linear2.weight"],
                      P["linear2.bias"])


def _two(a, b):
    a = flat(a)
    return a, (torch.zeros_like(a) if b is None else flat(b))


def f_sq_dist(args, opt, mod, a, b=None):
    a, b = _two(a, b)
    return ((a - b) ** 2).sum(-1)


def f_l1_dist(args, opt, mod, a, b=None):
    a, b = _two(a, b)
    return (a - b).abs().sum(-1)


def f_cosine_dist(args, opt, mod, a, b=None):
    a, b = _two(a, b)
    return 1.0 - (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))


def f_huber(args, opt, mod, a, b=None):
    """0.5 d^2 for |d| < delta, delta (|d| - delta/2) beyond, summed."""
    a, b = _two(a, b)
    d, delta = (a - b).abs(), float(opt["delta"])
    return torch.where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta)).sum(-1)


def f_quadratic(args, opt, mod, a, b=None):
    """(x - g)^T L L^T (x - g), or (a - b)^T L L^T (a - b)."""
    (n,) = args
    ps = list(mod.parameters())
    (L,) = [p for p in ps if p.shape == (n, n)]
    (g,) = [p for p in ps if p.shape == (n,)]
    d = flat(a) - (g if b is None else flat(b))
    Q = L @ L.T
    return torch.einsum("bi,ij,bj->b", d, Q, d)


def f_l1(args, opt, mod, z):
    return flat(z).abs().sum(-1)


def f_l2(args, opt, mod, z):
    return (flat(z) ** 2).sum(-1)


def f_gaussian(args, opt, mod, z):
    """-log N(z; 0, sigma^2 I) up to its constant."""
    return (flat(z) ** 2).sum(-1) / (2.0 * float(opt["sigma"]) ** 2)


def f_discrete(args, opt, mod, k):
    (K,) = args
    (r,) = list(mod.parameters())
    assert r.shape == (K,)
    return (one_hot(k, K, r.dtype) * r).sum(-1)


FORMULAS = {
    "linear": f_linear, "mlp": f_mlp, "conv1d": _conv(1), "conv2d": _conv(2), "gru": f_gru,
    "transformer": f_transformer, "identity": lambda args, opt, mod, x: x,
    "concat": lambda args, opt, mod, *xs: cat(xs), "sq_dist": f_sq_dist, "l1_dist": f_l1_dist,
    "cosine_dist": f_cosine_dist, "huber": f_huber, "quadratic": f_quadratic, "l1": f_l1, "l2": f_l2,
    "gaussian": f_gaussian, "discrete": f_discrete, "onehot": f_discrete,
}


class Oracle:
    """The hand formula of each module declared in a compiled model's spec.

    Kind, integer arguments and options come from the spec's declarations (``ebm.graph``);
    only the parameters come from ``ebm.mods[name]``.
    """

    def __init__(self, ebm):
        self._graph = ebm.graph
        self._mods = ebm.mods
        self._sizes = dict(ebm.graph.sizes)

    def decl(self, name):
        d = self._graph.module(name)
        assert d is not None, f"{name} is not declared in the spec"
        return d

    def options(self, name) -> dict:
        d = self.decl(name)
        opt = dict(DEFAULTS.get(d.kind, {}))
        opt.update(dict(d.kwargs))
        return opt

    def __call__(self, name, *xs):
        d = self.decl(name)
        args = tuple(self._sizes[a] if isinstance(a, str) else a for a in d.args)
        return FORMULAS[d.kind](args, self.options(name), self._mods[name] if name in self._mods else None, *xs)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *xs: self(name, *xs)
