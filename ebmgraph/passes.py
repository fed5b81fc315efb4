"""Passes: pure functions over the IR, applied in the visible order of ``ebmgraph.compile``.

Rewrites (``Graph -> Graph``) are listed in :data:`PASSES`; tests run the checker after
each one on every spec. :func:`prune` is the query-driven rewrite (keep the terms a query
needs). :func:`find_rollouts` is the analysis that recognizes recurrences
``s[t+1] = Pred(s[t], a[t], ...)`` as :class:`~ebmgraph.ir.Rollout` records, which
lowering, the fused-kernel analysis (``ebmgraph.fusion``) and ``explain()`` read.
"""
from __future__ import annotations

import dataclasses

from . import ir
from .check import Checked, check
from .elements import ancestors_of


def _fold(e: ir.Expr) -> ir.Expr:
    """``e`` with arithmetic on numbers done; a rebuilt node keeps its uid, a folded number is a new node."""
    if isinstance(e, ir.Call):
        return dataclasses.replace(e, args=tuple(_fold(a) for a in e.args))
    if isinstance(e, ir.Neg):
        inner = _fold(e.operand)
        if isinstance(inner, ir.Num):
            return ir.Num(-inner.value)
        if isinstance(inner, ir.Neg):
            return inner.operand
        return dataclasses.replace(e, operand=inner)
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
        return dataclasses.replace(e, left=a, right=b)
    return e


def fold_constants(g: ir.Graph) -> ir.Graph:
    """``2*0.05*R(z)`` -> ``0.1*R(z)``, ``1*D(..)`` -> ``D(..)``: arithmetic on numbers only."""
    return dataclasses.replace(
        g,
        functions=tuple(dataclasses.replace(f, value=_fold(f.value)) for f in g.functions),
        energies=tuple(dataclasses.replace(e, value=_fold(e.value)) for e in g.energies),
    )


# The rewrites compile() applies, in order.
PASSES = (fold_constants,)


def run_passes(g: ir.Graph, passes=PASSES) -> ir.Graph:
    for p in passes:
        g = p(g)
    return g


def prune(g: ir.Graph | Checked, terms: list[str] | tuple[str, ...], sizes: dict[str, int] | None = None) -> ir.Graph:
    """Keep only the named energy terms and what they read (functions, variables, modules, weights).

    A query that needs one term (say the prediction energy D of a JEPA, not its regularizer)
    compiles less code; variables that only fed the dropped terms disappear with them. The
    dependencies are followed element by element (``goal: C2(s2[T/2])`` needs ``s[0]``, not
    the whole lower-level rollout); a kept definition keeps everything its elements read.

    Args:
        g: a graph (checked here with ``sizes``), or an already checked one.
        terms: names of energy terms to keep.
    """
    chk = g if isinstance(g, Checked) else check(g, sizes, analyze=False, known_sizes=False)
    g = chk.graph
    unknown = sorted(set(terms) - {e.name for e in g.energies})
    if unknown:
        raise KeyError(f"{g.name} has no energy term(s) {', '.join(unknown)}")
    EG = chk.elements
    producer = {el: fi for el, (fi, _) in chk.producers.items()}
    produced: dict[int, list] = {}
    for el, fi in producer.items():
        produced.setdefault(fi, []).append(el)
    need = ancestors_of(EG, [n for n in EG if n[0] in {"energy:" + t for t in terms}])
    defs: set[int] = set()
    while True:  # a kept definition keeps all its elements, and what they read
        new = {producer[n] for n in need if n in producer} - defs
        if not new:
            break
        defs |= new
        need = ancestors_of(EG, list(need) + [el for fi in new for el in produced[fi]])
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


# ----------------------------------------------------------------------------- analyses
def _run(ps: list[int]) -> tuple[int, int] | None:
    """(start, stop) when positions are consecutive and increasing."""
    if ps and all(b - a == 1 for a, b in zip(ps, ps[1:])):
        return ps[0], ps[-1] + 1
    return None


def find_rollouts(chk: Checked) -> tuple[ir.Rollout, ...]:
    """Recurrences ``v[t+c] = M(..., v[t+c-1], ...)`` whose other arguments are plain references.

    Per-step arguments must advance one element per step (``a[t]``); anything else that
    varies with t keeps the definition unrolled. One :class:`~ebmgraph.ir.Rollout` per
    recognized definition, in definition order.
    """
    out = []
    for fi, f in enumerate(chk.graph.functions):
        if f.loop is None or f.target.index is None or not isinstance(f.value, ir.Call):
            continue
        if not any(r.name == f.target.name for r in ir.refs(f.value)):
            continue
        ts = chk.loop_values(f.loop)
        targets = chk.positions(f.target, f.loop, ts)
        span = _run(targets)
        if span is None:
            continue
        order, inputs, n_state = "", [], 0
        for a in f.value.args:
            if not isinstance(a, ir.Ref):
                break
            ps = chk.positions(a, f.loop, ts)
            if a.name == f.target.name:
                if ps != [p - 1 for p in targets]:
                    break
                order += "s"
                n_state += 1
            elif a.name in chk.lengths and len(set(ps)) > 1:
                run = _run(ps)
                if run is None:
                    break
                order += "p"
                inputs.append(ir.RolloutInput(a.name, "p", *run))
            else:
                order += "c"
                inputs.append(ir.RolloutInput(a.name, "c", ps[0] if a.name in chk.lengths else None))
        else:
            if n_state == 1:
                out.append(ir.Rollout(f.target.name, fi, chk.module_of(f.value), span[0], len(ts), order,
                                      tuple(inputs)))
    return tuple(out)
