"""Hand-written torch computations of the module library, for oracle tests.

They read a module's parameters and apply the math directly (F.linear and explicit
activations), never the module's own forward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

ACT = {"relu": torch.relu, "tanh": torch.tanh, "silu": F.silu, "gelu": F.gelu, "elu": F.elu,
       "sigmoid": torch.sigmoid, "softplus": F.softplus}


def mlp(mod, *xs):
    """y = W_L act(... act(W_1 [x1, x2, ...] + b_1)) + b_L (+ x1 when residual)."""
    h = torch.cat(xs, -1)
    lins = [m for m in mod.net if isinstance(m, torch.nn.Linear)]
    for i, lin in enumerate(lins):
        h = h @ lin.weight.T + lin.bias
        if i < len(lins) - 1:
            h = ACT[mod.act](h)
    return xs[0] + h if mod.residual else h


def sq(a, b=None):
    d = a if b is None else a - b
    return (d * d).sum(-1)


def quadratic(mod, x):
    d = x - mod.goal
    Q = mod.L @ mod.L.T
    return torch.einsum("bi,ij,bj->b", d, Q, d)
