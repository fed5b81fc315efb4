"""A tiny reference interpreter of the IR: an environment dict and a loop (torch.fx style).

Every element of every array is evaluated one by one in dependency order. It is slow
and obviously right; every faster path (the lowered module, fused kernels) is tested
against it.
"""
from __future__ import annotations

import torch

from . import ir
from .conventions import as_energy, is_scalar_shape


def evaluate(chk, mods, inputs: dict[str, torch.Tensor], weights: dict[str, object]) -> dict[str, torch.Tensor]:
    """Per-term energies ``{name: [B]}`` of a checked graph.

    Args:
        chk: a :class:`~ebmgraph.check.Checked` graph.
        mods: name -> callable module (``CompiledEBM.mods``).
        inputs: leaf variables, ``[B, *shape]`` or ``[B, L, *shape]`` for arrays
            (discrete values already one-hot).
        weights: symbolic weights (floats or ``[B]`` tensors).
    """
    g: ir.Graph = chk.graph
    env: dict[tuple[str, int], torch.Tensor] = {}
    for v in g.variables:
        x = inputs[v.name]
        if v.name in chk.lengths:
            for p in range(chk.lengths[v.name]):
                env[(v.name, p)] = x[:, p]
        else:
            env[(v.name, 0)] = x

    def lookup(name, p):
        return env[(name, p)]

    evaluate_elements(chk, mods, env, weights)

    out: dict[str, torch.Tensor] = {}
    for e in g.energies:
        total = 0.0
        for t in chk.loop_values(e.loop) if e.loop else [None]:
            total = total + eval_expr(chk, mods, e.value, lookup, weights, e.loop, t, energy=True)
        out[e.name] = total
    return out


def evaluate_elements(chk, mods, env: dict, weights, need: set | None = None) -> dict:
    """Fill ``env[(name, pos)]`` with every function element (or those in ``need``) in dependency order."""
    g: ir.Graph = chk.graph

    def lookup(name, p):
        if (name, p) not in env:
            raise KeyError(f"value of {name} needed; pass it as an input")
        return env[(name, p)]

    for node in chk.order:
        if node not in chk.producers or node in env or (need is not None and node not in need):
            continue
        fi, t = chk.producers[node]
        f = g.functions[fi]
        try:
            env[node] = eval_expr(chk, mods, f.value, lookup, weights, f.loop, t)
        except KeyError:
            raise
        except Exception as exc:  # name the element, keep the cause (style: "while executing")
            where = f"{node[0]}[{node[1]}]" if node[0] in chk.lengths else node[0]
            raise RuntimeError(f"while evaluating {where} = {ir.expr_str(f.value)}: {exc}") from exc
    return env


def eval_expr(chk, mods, expr, lookup, weights, loop=None, t=None, *, energy: bool = False):
    """Evaluate one IR expression; ``lookup(name, pos)`` supplies variable values.

    With ``energy=True`` a module's ``[B, 1]`` output (a critic) counts as a scalar ``[B]``.
    """

    def _scalar(shape) -> bool:
        return is_scalar_shape(shape, in_energy=energy)

    def _col(x, k):
        return x.view(-1, *([1] * k)) if isinstance(x, torch.Tensor) and x.dim() == 1 else x

    def ev(e):
        if isinstance(e, ir.Ref):
            return lookup(e.name, chk.position(e, loop, t))
        if isinstance(e, ir.Num):
            return e.value
        if isinstance(e, ir.Weight):
            return weights[e.name]
        if isinstance(e, ir.Neg):
            return -ev(e.operand)
        if isinstance(e, ir.BinOp):
            a, b = ev(e.left), ev(e.right)
            ls, rs = chk.operand_shapes(e)
            if _scalar(ls) and not _scalar(rs):  # per-sample scalar against a vector: align the batch axis
                a = _col(a, len(rs))
            elif _scalar(rs) and not _scalar(ls):
                b = _col(b, len(ls))
            return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b}[e.op]()
        if isinstance(e, ir.Call):
            out = mods[chk.module_of(e)](*[ev(a) for a in e.args])
            return as_energy(out) if energy else out
        raise TypeError(e)

    return ev(expr)
