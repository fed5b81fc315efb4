"""The element graph of a checked spec: every element of every array (``s[3]``, ``energy:D[2]``)
as a node, an edge from each element to the elements its definition reads (§3, Figure 18).

Index expressions that are affine in their loop variable are evaluated for all steps at once
(:func:`affine_index`); the graph is built once per definition and ordered once (:func:`_kahn`).
Split out of ``check.py``, which calls :func:`element_graph` and keeps the diagnostics context.
"""
from __future__ import annotations

import functools
from collections import deque

import networkx as nx
import sympy

from . import ir
from .errors import Loc, SpecError
from .expr import resolve_iexpr
from .modules import KINDS

@functools.lru_cache(maxsize=65536)
def affine_index(index, sizes: tuple, loop) -> tuple[int, int] | None:
    """``(a, b)`` with ``index = a*loop + b`` in integers once the sizes are substituted; None otherwise.

    Most indices are affine in their loop variable (``t+1``, ``2*k+2``, ``T``), so every
    step's position costs one multiply-add instead of a symbolic substitution.
    """
    env = dict(sizes)
    free = {s.name for s in index.free_symbols}
    if free - set(env) - ({loop} if loop else set()):
        return None  # an unknown name: the slow path reports it
    e = index.subs({sympy.Symbol(k, integer=True): v for k, v in env.items() if k in free})
    if loop is None or loop not in free:
        return (0, int(e)) if e.is_Integer else None
    try:
        poly = sympy.Poly(e, sympy.Symbol(loop, integer=True))
    except sympy.PolynomialError:
        return None
    if poly.degree() > 1 or not all(c.is_Integer for c in poly.all_coeffs()):
        return None
    cs = [int(c) for c in poly.all_coeffs()]
    return (cs[0], cs[1]) if len(cs) == 2 else (0, cs[0])


def _positions(c, idx, loop: str | None, ts, loc: Loc, what) -> list[int]:
    """Positions of ``idx`` for every loop value in ``ts``; SpecError as ``resolve_iexpr`` words it."""
    aff = affine_index(idx, c.size_key, loop)
    if aff is not None:
        a, b = aff
        ps = [a * t + b for t in ts] if loop is not None else [b] * len(ts)
        if ps and max(abs(ps[0]), abs(ps[-1])) <= 10**15:
            return ps
    return [_eval_index(c, idx, loop, t, loc, what() if callable(what) else what) for t in ts]


def _eval_index(c, idx, loop: str | None, t: int | None, loc: Loc, what: str) -> int:
    env = dict(c.sizes)
    if loop is not None:
        env[loop] = t
    return resolve_iexpr(idx, env, loc, what)


def element_graph(c, ranges, lengths) -> tuple[nx.DiGraph, dict, list]:
    """Bind each function element once, build the element dependency graph and order it.

    ``c`` is the checker's context from ``check.py`` (``g``, ``d``, ``sizes``, ``size_key``).

    Each definition is resolved once for all its steps; the graph is ordered once (Kahn),
    and only a graph that has a cycle is searched for one.
    """
    g, d = c.g, c.d
    owner, positions, indexed = _bind(c, ranges, lengths)
    if d.errors:
        return nx.DiGraph(), positions, []
    G = nx.DiGraph()
    for v in g.variables:
        G.add_nodes_from(((v.name, p) for p in range(lengths.get(v.name, 1))), kind=v.role)
    G.add_nodes_from(owner, kind="derived")
    refs = _Refs(c, ranges, lengths, indexed)
    for fi, f in enumerate(g.functions):
        plist = positions.get(fi, [])
        if not plist:
            continue
        ts = [t for t, _ in plist]
        targets = [(f.target.name, pos) for _, pos in plist]
        for srcs in refs.resolve(f.value, f.loop, ts, f.loc, ir.ref_str(f.target)):
            G.add_edges_from(zip(srcs, targets))
    for e in g.energies:
        if e.loop is not None and e.loop not in ranges:
            d.error(f"energy {e.name}[{e.loop}]: {e.loop} is not a declared index", e.loc, e.name)
            continue
        ts = list(c_loop_values(ranges, e.loop))
        nodes = [("energy:" + e.name, t if e.loop else 0) for t in ts]
        G.add_nodes_from(nodes, kind="energy")
        for srcs in refs.resolve(e.value, e.loop, ts, e.loc, f"energy {e.name}"):
            G.add_edges_from(zip(srcs, nodes))
    for r in g.regularizers:
        node = ("reg:" + r.name, 0)
        G.add_node(node, kind="regularizer")
        for srcs in refs.resolve(r.value, None, [None], r.loc, f"regularizer {r.name}"):
            G.add_edges_from(zip(srcs, [node]))
    if d.errors:
        return G, positions, []
    order, rest = _kahn(G)
    if rest:
        cyc = nx.find_cycle(G.subgraph(rest))
        names = " -> ".join(f"{n}[{p}]" if n in lengths else n for (n, p), _ in cyc) + f" -> {cyc[0][0][0]}"
        f = next(f for f in g.functions if f.target.name == cyc[0][1][0])
        d.error(f"the deterministic part has a cycle: {names}", f.loc, *{n for (n, _), _ in cyc})
    return G, positions, order


def _bind(c, ranges, lengths) -> tuple[dict, dict, dict]:
    """Which definition binds each element: ``(owner {(name, pos): (fi, loc)}, positions {fi: [(t, pos)]},
    indexed {name: is an array})``; the arrays' lengths are written into ``lengths``."""
    g, d = c.g, c.d
    owner: dict[tuple[str, int], tuple[int, Loc]] = {}
    positions: dict[int, list[tuple[int | None, int]]] = {}  # fn id -> [(t, pos)]
    indexed: dict[str, bool] = {}
    for fi, f in enumerate(g.functions):
        name = f.target.name
        is_idx = f.target.index is not None
        if indexed.setdefault(name, is_idx) != is_idx:
            d.error(f"{name} is bound both as an array ({name}[...]) and as a single value", f.loc, name)
            continue
        if f.loop is not None and f.loop not in ranges:
            d.error(f"{ir.ref_str(f.target)}: {f.loop} is not a declared index", f.loc, name, f.loop)
            continue
        ts = list(c_loop_values(ranges, f.loop))
        pos_list: list[tuple[int | None, int]] = []
        positions[fi] = pos_list
        try:
            ps = _positions(c, f.target.index, f.loop, ts, f.loc, lambda: ir.ref_str(f.target)) if is_idx else [0] * len(ts)
        except SpecError as e:
            d.errors.append(e)
            continue
        for t, pos in zip(ts, ps):
            if pos < 0:
                d.error(f"{ir.ref_str(f.target)} binds {name}[{pos}]: negative index", f.loc, name)
                break
            key = (name, pos)
            if key in owner:
                d.error(f"{name}[{pos}] is bound twice ({owner[key][1]} and here)" if is_idx
                        else f"{name} is bound twice (first at {owner[key][1]})", f.loc, name)
                break
            owner[key] = (fi, f.loc)
            pos_list.append((t, pos))
    bound: dict[str, list[int]] = {}
    for (n, p) in owner:
        bound.setdefault(n, []).append(p)
    for name, is_idx in indexed.items():
        if is_idx:
            pos = sorted(bound.get(name, []))
            if pos and pos[-1] != len(pos) - 1:
                missing = sorted(set(range(pos[-1] + 1)) - set(pos))
                d.error(f"elements of {name} must be bound for 0..n without gaps; {name}[{missing[0]}] is never bound",
                        next(f.loc for f in g.functions if f.target.name == name), name)
            lengths[name] = len(pos)
    return owner, positions, indexed


class _Refs:
    """Resolves the references of an expression to the elements they read, reporting what is wrong."""

    def __init__(self, c, ranges, lengths, indexed):
        self.c, self.ranges, self.lengths, self.indexed = c, ranges, lengths, indexed
        self.leaf = {v.name: v for v in c.g.variables}

    def resolve(self, expr, loop, ts, loc, where) -> list[list[tuple[str, int]]]:
        """For each reference of ``expr``, the element it reads at every loop value in ``ts``."""
        out = []
        for r in ir.refs(expr):
            if r.index is None and r.name in self.lengths and where.startswith("regularizer"):
                out.extend([(r.name, p)] for p in range(self.lengths[r.name]))  # batch statistics over every step
                continue
            ps = self._one(r, loop, ts, loc, where)
            if ps is not None:
                out.append(ps)
        return out

    def _one(self, r: ir.Ref, loop, ts, loc, where) -> list[tuple[str, int]] | None:
        c, d, g, lengths = self.c, self.c.d, self.c.g, self.lengths
        if r.name not in self.leaf and r.name not in self.indexed:
            what = ("a module" if g.module(r.name) or r.name in KINDS else
                    "an index" if r.name in self.ranges else "a size" if r.name in c.sizes else None)
            d.error(f"{where}: {r.name} is {what}, not a variable" if what else
                    f"{where}: {r.name} is not bound (declare it under variables: or compute it under functions:)",
                    loc, r.name)
            return None
        is_arr = r.name in lengths
        if is_arr and r.index is None:
            d.error(f"{where}: {r.name} is an array; write {r.name}[t]", loc, r.name)
            return None
        if not is_arr and r.index is not None:
            d.error(f"{where}: {r.name} is not an array and cannot be indexed", loc, r.name)
            return None
        if not is_arr:
            return [(r.name, 0)] * len(ts)
        bad = {s.name for s in r.index.free_symbols} - set(c.sizes) - ({loop} if loop else set())
        if bad:
            d.error(f"{where}: index {', '.join(sorted(bad))} in {ir.ref_str(r)} is not bound here"
                    + ("" if loop else " (name the term name[t] to sum over t)"), loc, r.name, *sorted(bad))
            return None
        try:
            ps = _positions(c, r.index, loop, ts, loc, lambda: f"{where}: {ir.ref_str(r)}")
        except SpecError as e:
            d.errors.append(e)
            return None
        n = lengths[r.name]
        if ps and (min(ps) < 0 or max(ps) >= n):
            t, p = next((t, p) for t, p in zip(ts, ps) if not 0 <= p < n)
            d.error(f"{where}: {ir.ref_str(r)} reads {r.name}[{p}] (with {loop}={t}), outside 0..{n - 1}", loc, r.name)
            return None
        return [(r.name, p) for p in ps]


def _kahn(G: nx.DiGraph) -> tuple[list, list]:
    """A topological order of ``G`` and the nodes left over (on or after a cycle), in linear time."""
    indeg = {n: k for n, k in G.in_degree()}
    queue = deque(n for n, k in indeg.items() if k == 0)
    order = []
    succ = G.succ
    while queue:
        n = queue.popleft()
        order.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                queue.append(m)
    rest = [n for n, k in indeg.items() if k > 0] if len(order) < len(indeg) else []
    return order, rest


def ancestors_of(G: nx.DiGraph, targets) -> set:
    """Every node with a path to one of ``targets`` (targets included), in linear time overall
    (``networkx.ancestors`` per target would repeat the walk for each)."""
    seen = set(targets)
    stack = list(seen)
    pred = G.pred
    while stack:
        for m in pred[stack.pop()]:
            if m not in seen:
                seen.add(m)
                stack.append(m)
    return seen


@functools.lru_cache(maxsize=65536)
def index_position(index, sizes: tuple, loop, t) -> int:
    env = dict(sizes)
    if loop is not None:
        env[loop] = t
    return int(index.subs({sympy.Symbol(k, integer=True): v for k, v in env.items()}))


def c_loop_values(ranges, loop):
    if loop is None:
        return [None]
    lo, hi = ranges[loop]
    return range(lo, hi + 1)
