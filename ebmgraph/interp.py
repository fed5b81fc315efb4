"""A tiny reference interpreter of the IR: an environment dict and a loop (torch.fx style).

Every element of every array is evaluated one by one in dependency order. It is slow
and obviously right; every faster path (the lowered module, fused kernels) is tested
against it.
"""
from __future__ import annotations

import networkx as nx
import torch

from . import ir


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
    sizes = chk.sizes

    def pos(r: ir.Ref, loop, t) -> int:
        if r.index is None:
            return 0
        sub = {**sizes, **({loop: t} if loop else {})}
        import sympy

        return int(r.index.subs({sympy.Symbol(k, integer=True): val for k, val in sub.items()}))

    def ev(e, loop, t, energy=False):
        if isinstance(e, ir.Ref):
            return env[(e.name, pos(e, loop, t))]
        if isinstance(e, ir.Num):
            return e.value
        if isinstance(e, ir.Weight):
            return weights[e.name]
        if isinstance(e, ir.Neg):
            return -ev(e.operand, loop, t, energy)
        if isinstance(e, ir.BinOp):
            a, b = ev(e.left, loop, t, energy), ev(e.right, loop, t, energy)
            return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b}[e.op]()
        if isinstance(e, ir.Call):
            out = mods[chk.call_module[id(e)]](*[ev(a, loop, t) for a in e.args])
            if energy and out.dim() == 2 and out.shape[-1] == 1:  # a critic's [1] output is a scalar
                out = out.squeeze(-1)
            return out
        raise TypeError(e)

    producer: dict[tuple[str, int], tuple[ir.Function, int | None]] = {}
    for f in g.functions:
        for t in chk.loop_values(f.loop) if f.loop else [None]:
            producer[(f.target.name, pos(f.target, f.loop, t))] = (f, t)
    for node in nx.topological_sort(chk.elements):
        if node not in producer:
            continue
        f, t = producer[node]
        try:
            env[node] = ev(f.value, f.loop, t)
        except Exception as exc:  # name the element, keep the cause (style: "while executing")
            where = f"{node[0]}[{node[1]}]" if node[0] in chk.lengths else node[0]
            raise RuntimeError(f"while evaluating {where} = {ir.expr_str(f.value)}: {exc}") from exc

    out: dict[str, torch.Tensor] = {}
    for e in g.energies:
        total = 0.0
        for t in chk.loop_values(e.loop) if e.loop else [None]:
            val = ev(e.value, e.loop, t, energy=True)
            total = total + val
        out[e.name] = total
    return out


def eval_expr(chk, mods, expr, lookup, weights, loop=None, t=None):
    """Evaluate one IR expression; ``lookup(name, pos)`` supplies variable values."""
    import sympy

    def pos(r):
        if r.index is None:
            return 0
        sub = {**chk.sizes, **({loop: t} if loop else {})}
        return int(r.index.subs({sympy.Symbol(k, integer=True): v for k, v in sub.items()}))

    def ev(e):
        if isinstance(e, ir.Ref):
            return lookup(e.name, pos(e))
        if isinstance(e, ir.Num):
            return e.value
        if isinstance(e, ir.Weight):
            return weights[e.name]
        if isinstance(e, ir.Neg):
            return -ev(e.operand)
        if isinstance(e, ir.BinOp):
            a, b = ev(e.left), ev(e.right)
            return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b}[e.op]()
        if isinstance(e, ir.Call):
            return mods[chk.call_module[id(e)]](*[ev(a) for a in e.args])
        raise TypeError(e)

    return ev(expr)
