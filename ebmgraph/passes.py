"""Passes: pure ``Graph -> Graph`` functions, applied in the visible list ``PASSES``.

Recognizing recurrences as Rollout ops and vectorizing maps over steps happen while
lowering (``ebmgraph/lower.py``), because they choose code, not graph structure. The
passes here rewrite the graph itself; tests run the checker after each one.
"""
from __future__ import annotations

import dataclasses

import networkx as nx

from . import ir


def _fold(e: ir.Expr) -> ir.Expr:
    if isinstance(e, ir.Call):
        return ir.Call(e.fn, tuple(_fold(a) for a in e.args))
    if isinstance(e, ir.Neg):
        inner = _fold(e.operand)
        if isinstance(inner, ir.Num):
            return ir.Num(-inner.value)
        if isinstance(inner, ir.Neg):
            return inner.operand
        return ir.Neg(inner)
    if isinstance(e, ir.BinOp):
        a, b = _fold(e.left), _fold(e.right)
        if isinstance(a, ir.Num) and isinstance(b, ir.Num) and not (e.op == "/" and b.value == 0):
            return ir.Num({"+": a.value + b.value, "-": a.value - b.value,
                           "*": a.value * b.value, "/": a.value / b.value if b.value else 0.0}[e.op])
        if e.op == "*" and isinstance(a, ir.Num) and a.value == 1.0:
            return b
        if e.op in "*/" and isinstance(b, ir.Num) and b.value == 1.0:
            return a
        if e.op in "+-" and isinstance(b, ir.Num) and b.value == 0.0:
            return a
        if e.op == "+" and isinstance(a, ir.Num) and a.value == 0.0:
            return b
        return ir.BinOp(e.op, a, b)
    return e


def fold_constants(g: ir.Graph) -> ir.Graph:
    """``2*0.05*R(z)`` -> ``0.1*R(z)``, ``1*D(..)`` -> ``D(..)``: arithmetic on numbers only."""
    return dataclasses.replace(
        g,
        functions=tuple(dataclasses.replace(f, value=_fold(f.value)) for f in g.functions),
        energies=tuple(dataclasses.replace(e, value=_fold(e.value)) for e in g.energies),
    )


def prune(g: ir.Graph, terms: list[str] | tuple[str, ...], sizes: dict[str, int] | None = None) -> ir.Graph:
    """Keep only the named energy terms and what they read (functions, variables, modules, weights).

    A query that needs one term (say the prediction energy D of a JEPA, not its regularizer)
    compiles less code; variables that only fed the dropped terms disappear with them. The
    dependencies are followed element by element (``goal: C2(s2[T/2])`` needs ``s[0]``, not
    the whole lower-level rollout); a kept definition keeps everything its elements read.
    """
    from .check import check

    unknown = sorted(set(terms) - {e.name for e in g.energies})
    if unknown:
        raise KeyError(f"{g.name} has no energy term(s) {', '.join(unknown)}")
    chk = check(g, sizes, analyze=False)
    EG = chk.elements
    producer = {el: fi for el, (fi, _) in chk.producers.items()}
    produced: dict[int, set] = {}
    for el, fi in producer.items():
        produced.setdefault(fi, set()).add(el)
    nodes = {n for n in EG if n[0] in {"energy:" + t for t in terms}}
    while True:
        need = set(nodes).union(*(nx.ancestors(EG, n) for n in nodes))
        defs = {producer[n] for n in need if n in producer}
        more = set().union(*(produced[fi] for fi in defs)) if defs else set()
        if more <= need:
            break
        nodes = need | more
    names = {n for n, _ in need}
    energies = tuple(e for e in g.energies if e.name in terms)
    functions = tuple(f for fi, f in enumerate(g.functions) if fi in defs)
    exprs = [f.value for f in functions] + [e.value for e in energies]
    called = {c.fn for x in exprs for c in ir.calls(x)}
    wnames = {w for x in exprs for w in ir.weights_in(x)}
    return dataclasses.replace(
        g,
        variables=tuple(v for v in g.variables if v.name in names),
        modules=tuple(m for m in g.modules if m.name in called),
        functions=functions,
        energies=energies,
        regularizers=tuple(r for r in g.regularizers if {a.name for a in ir.refs(r.value)} <= names),
        weights=tuple((k, v) for k, v in g.weights if k in wnames),
    )


# The passes compile() applies, in order.
PASSES = (fold_constants,)


def run_passes(g: ir.Graph, passes=PASSES) -> ir.Graph:
    for p in passes:
        g = p(g)
    return g
