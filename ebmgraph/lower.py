"""Lowering: a checked graph to readable PyTorch source (printable, like torch.fx).

Each function definition becomes one line, chosen by a table of patterns:

* ``v = expr``                          -> one statement
* ``v[t+1] = M(v[t], a[t], ...)``       -> one :func:`~ebmgraph.runtime.rollout` op (§3.1.2, Fig. 4),
                                           for each :class:`~ebmgraph.ir.Rollout` the passes found
* ``v[f(t)] = expr`` without self-reads -> one vectorized map over all t (batch x steps)
* anything else                         -> unrolled statements, one per element

Energy terms summed over an index are evaluated for all steps at once and come back
per step ``[B, n]`` and summed ``[B]``. Array variables live in Python lists of
``[B, *shape]`` tensors; declared arrays arrive stacked as ``[B, L, *shape]``.
The source is built only from validated identifiers and numbers (never from spec text).
It runs in :data:`ebmgraph.runtime.NAMESPACE`.
"""
from __future__ import annotations

import builtins
import keyword

import networkx as nx

from . import ir
from .conventions import is_scalar_shape

RESERVED = set(keyword.kwlist) | set(dir(builtins)) | {
    "self", "torch", "M", "W", "E", "S", "rollout", "_rep", "_flat", "_unflat", "_stack", "_e", "_o", "_col", "_R"}


def pyname(name: str) -> str:
    """The Python name of a spec name; spec names never start with '_', so '_v_' cannot collide."""
    return f"_v_{name}" if name in RESERVED else name


def _ap(ps: list[int]) -> tuple[int, int, int] | None:
    """(start, stop, step) when positions form an increasing arithmetic progression."""
    if len(ps) == 1:
        return ps[0], ps[0] + 1, 1
    step = ps[1] - ps[0]
    if step <= 0 or any(b - a != step for a, b in zip(ps, ps[1:])):
        return None
    return ps[0], ps[-1] + 1, step


def _slice(ap) -> str:
    a, b, s = ap
    return f"{a}:{b}" if s == 1 else f"{a}:{b}:{s}"


def _num(v: float) -> str:
    return repr(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


class _Gen:
    def __init__(self, chk, rollouts):
        self.chk = chk
        self.g: ir.Graph = chk.graph
        self.leaf = {v.name for v in self.g.variables}
        self.rollouts = {r.function: r for r in rollouts}
        self.in_energy = False

    # -- expressions, one element --
    def code(self, e, loop, t) -> str:
        if isinstance(e, ir.Ref):
            n = pyname(e.name)
            if e.name not in self.chk.lengths:
                return n
            p = self.chk.position(e, loop, t)
            return f"{n}[:, {p}]" if e.name in self.leaf else f"{n}[{p}]"
        return self._common(e, lambda x: self.code(x, loop, t))

    # -- expressions, all steps at once: tensors [B*n, ...] --
    def vcode(self, e, loop, ts) -> str:
        n = len(ts)
        if isinstance(e, ir.Ref):
            name = pyname(e.name)
            if e.name not in self.chk.lengths:
                return f"_rep({name}, {n})"
            ps = self.chk.positions(e, loop, ts)
            if len(set(ps)) == 1 and n > 1:
                return f"_rep({self.code(e, loop, ts[0])}, {n})"
            ap = _ap(ps)
            if e.name in self.leaf:
                return f"_flat({name}[:, {_slice(ap)}])" if ap else f"_flat({name}[:, {ps}])"
            return f"_flat(_stack({name}[{_slice(ap)}]))" if ap else f"_flat(_stack([{name}[p] for p in {ps}]))"
        if isinstance(e, ir.Weight):
            return f"_rep(W[{e.name!r}], {n})"
        return self._common(e, lambda x: self.vcode(x, loop, ts))

    def _common(self, e, rec) -> str:
        if isinstance(e, ir.Num):
            return _num(e.value)
        if isinstance(e, ir.Weight):
            return f"W[{e.name!r}]"
        if isinstance(e, ir.Neg):
            return f"-({rec(e.operand)})"
        if isinstance(e, ir.BinOp):
            left, right = rec(e.left), rec(e.right)
            ls, rs = self.chk.expr_shapes.get(id(e), (None, None))
            # a per-sample scalar ([B]: a scalar term, or a [B] weight) against a vector: align the batch axis
            if self._scalar(ls) and not self._scalar(rs):
                left = f"_col({left}, {len(rs)})"
            elif self._scalar(rs) and not self._scalar(ls):
                right = f"_col({right}, {len(ls)})"
            return f"({left} {e.op} {right})"
        if isinstance(e, ir.Call):
            mod = self.chk.call_module[id(e)]
            call = f"M.{mod}({', '.join(rec(a) for a in e.args)})"
            # in an energy, a module with a [1] output (a critic) is a scalar per sample
            out = self.chk.modules[mod].out_shape
            return f"_e({call})" if self.in_energy and out and is_scalar_shape(out, in_energy=True) else call
        raise TypeError(e)

    def _scalar(self, shape) -> bool:
        """Shapes that are one number per sample: constants, scalars, and [1] outputs inside energies."""
        return is_scalar_shape(shape, in_energy=self.in_energy)

    # -- patterns --
    def rollout_args(self, r: ir.Rollout) -> tuple[list[str], list[str]]:
        """Code of a rollout's per-step inputs ``[B, T, ...]`` and constant inputs ``[B, ...]``."""
        steps, consts = [], []
        for x in r.inputs:
            name = pyname(x.name)
            if x.kind == "p":
                sl = _slice((x.start, x.stop, 1))
                steps.append(f"{name}[:, {sl}]" if x.name in self.leaf else f"_stack({name}[{sl}])")
            elif x.start is None:
                consts.append(name)
            else:
                consts.append(f"{name}[:, {x.start}]" if x.name in self.leaf else f"{name}[{x.start}]")
        return steps, consts

    def function(self, fi: int) -> list[str]:
        f = self.g.functions[fi]
        chk = self.chk
        name = pyname(f.target.name)
        head = f"# {ir.ref_str(f.target)} = {ir.expr_str(f.value)}" + (f"   for {f.loop} in {chk.ranges[f.loop][0]}..{chk.ranges[f.loop][1]}" if f.loop else "")
        if f.target.index is None:
            return [head, f"{name} = {self.code(f.value, None, None)}"]
        if f.loop is None:
            p = chk.position(f.target, None, None)
            return [head, f"{name}[{p}] = {self.code(f.value, None, None)}"]
        ts = chk.loop_values(f.loop)
        self_reads = any(r.name == f.target.name for r in ir.refs(f.value))
        if self_reads:
            r = self.rollouts.get(fi)
            if r is not None:
                steps, consts = self.rollout_args(r)
                s0 = f"{name}[{r.start - 1}]"
                args = f"M.{r.module}, {s0}, {r.order!r}, ({''.join(s + ', ' for s in steps)}), ({''.join(c + ', ' for c in consts)}), {r.steps}"
                return [head, f"{name}[{r.start}:{r.start + r.steps}] = rollout({args}).unbind(1)"]
            lines = [head + "   (unrolled)"]
            # elements in dependency order: a recurrence may read forward (s[t] = F(s[t+1]))
            step_of = dict(zip(chk.positions(f.target, f.loop, ts), ts))
            for node in nx.topological_sort(chk.elements.subgraph({(f.target.name, p) for p in step_of})):
                t = step_of[node[1]]
                lines.append(f"{name}[{node[1]}] = {self.code(f.value, f.loop, t)}")
            return lines
        targets = chk.positions(f.target, f.loop, ts)
        ap = _ap(targets)
        out = f"_unflat({self.vcode(f.value, f.loop, ts)}, {len(ts)}).unbind(1)"
        if ap:
            return [head, f"{name}[{_slice(ap)}] = {out}"]
        return [head, f"for _p, _x in zip({targets}, {out}):", f"    {name}[_p] = _x"]

    def energy(self, e: ir.Energy) -> list[str]:
        head = f"# {e.name}" + (f"[{e.loop}]" if e.loop else "") + f" = {ir.expr_str(e.value)}"
        if e.loop is None:
            return [head, f"E[{e.name!r}] = _e({self.code(e.value, None, None)})"]
        ts = self.chk.loop_values(e.loop)
        return [head + f"   summed over {e.loop} in {ts[0]}..{ts[-1]}",
                f"S[{e.name!r}] = _e({self.vcode(e.value, e.loop, ts)}).view(-1, {len(ts)})",
                f"E[{e.name!r}] = S[{e.name!r}].sum(1)"]


def _def_order(chk) -> list[int]:
    """Function definitions in dependency order (self-reads of recurrences ignored)."""
    g = chk.graph
    producer = {el: fi for el, (fi, _) in chk.producers.items()}
    D = nx.DiGraph()
    D.add_nodes_from(range(len(g.functions)))
    for a, b in chk.elements.edges:
        if a in producer and b in producer and producer[a] != producer[b]:
            D.add_edge(producer[a], producer[b])
    try:
        return list(nx.lexicographical_topological_sort(D))
    except nx.NetworkXUnfeasible:
        return []


def _shared(chk) -> tuple[set[int], list[str]]:
    """Definitions computed from observed variables alone, and the names they give to the rest.

    A definition is *shared* when every element it defines depends on observed variables only
    (and on no weight: a weight may differ per row). Under ``forward(..., _R=k)`` the observed
    inputs arrive once per problem (``[B]`` rows) and everything else once per candidate
    (``[B*k]``): shared definitions run on the ``[B]`` rows, and the names read by the rest —
    observed inputs and shared results — are then repeated to ``[B*k]`` (``repeat_rows``), once.
    This is how a planner encodes its observation once per decision, not once per candidate.
    """
    g: ir.Graph = chk.graph
    G = chk.elements
    observed = {v.name for v in g.variables if v.role == "observed"}
    weighted = {fi for fi, f in enumerate(g.functions) if any(isinstance(e, ir.Weight) for e in ir.walk(f.value))}
    leaves = {v.name for v in g.variables}
    per_row: dict = {}  # element -> depends on a non-observed input (or a weighted definition)
    for node in nx.topological_sort(G):
        name = node[0]
        if name in leaves:
            per_row[node] = name not in observed
        elif node in chk.producers:
            per_row[node] = chk.producers[node][0] in weighted or any(per_row[u] for u in G.predecessors(node))
        else:  # an energy element
            per_row[node] = True
    defs: dict[int, list] = {}
    for node, (fi, _) in chk.producers.items():
        defs.setdefault(fi, []).append(node)
    shared = {fi for fi, nodes in defs.items() if not any(per_row[n] for n in nodes)}
    read = {a[0] for a, b in G.edges if per_row[b] and not per_row[a]}  # crossing into per-row elements
    names = [v.name for v in g.variables if v.name in observed] + [g.functions[fi].target.name for fi in sorted(shared)]
    return shared, [n for n in dict.fromkeys(names) if n in read]


def lower(chk, rollouts: tuple[ir.Rollout, ...] = ()) -> tuple[str, bool]:
    """Source of ``forward(self, <leaves>, W, _R=1)`` returning ``(E, S)``, and whether it is array-level.

    ``_R = k`` > 1: observed inputs arrive with ``[B]`` rows, all others with ``[B*k]``; the result
    is that of the observed inputs repeated ``k`` times (``repeat_rows``), computed with the
    definitions that read observed inputs alone run once per problem (:func:`_shared`).

    Args:
        chk: the checked graph.
        rollouts: the recurrences to emit as one rollout op each (``passes.find_rollouts``).
    """
    g: ir.Graph = chk.graph
    gen = _Gen(chk, rollouts)
    order = _def_order(chk)
    array_level = bool(order) or not g.functions
    params = ", ".join(pyname(v.name) for v in g.variables)
    body = ["M = self.mods", "E, S = {}, {}"]
    for name in g.derived_names:
        if name in chk.lengths:
            body.append(f"{pyname(name)} = [None] * {chk.lengths[name]}")
    shared, given = _shared(chk) if array_level else (set(), [v.name for v in g.variables if v.role == "observed"])
    if array_level:
        for fi in order:
            if fi in shared:
                body += gen.function(fi)
    if given:
        body.append("if _R != 1:  # observed inputs and what was computed from them alone: once per candidate from here")
        for name in given:
            n = pyname(name)
            body.append(f"    {n} = [_rep(_x, _R) if _x is not None else None for _x in {n}]"
                        if name in chk.lengths and name in g.derived_names else f"    {n} = _rep({n}, _R)")
    if array_level:
        for fi in order:
            if fi not in shared:
                body += gen.function(fi)
    else:  # definitions depend on each other both ways: evaluate element by element
        body.append("# element by element (definitions depend on each other both ways)")
        for node in nx.lexicographical_topological_sort(chk.elements, key=str):
            if node in chk.producers:
                fi, t = chk.producers[node]
                f = g.functions[fi]
                tgt = pyname(f.target.name) + (f"[{node[1]}]" if f.target.index is not None else "")
                body.append(f"{tgt} = {gen.code(f.value, f.loop, t)}")
    gen.in_energy = True
    for e in g.energies:
        body += gen.energy(e)
    body.append("return E, S")
    src = f"def forward(self, {params}{', ' if params else ''}W, _R=1):\n" + "\n".join("    " + ln for ln in body) + "\n"
    return src, array_level
