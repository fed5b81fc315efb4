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
import re
from dataclasses import dataclass

import networkx as nx

from . import ir
from .conventions import is_scalar_shape
from .elements import ancestors_of
from .errors import Loc, SpecError

RESERVED = set(keyword.kwlist) | set(dir(builtins)) | {
    "self", "torch", "M", "W", "E", "S", "rollout", "_rep", "_flat", "_unflat", "_stack", "_e", "_o", "_col", "_R",
    "_I"}


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
    def __init__(self, chk, rollouts, leaf=None):
        self.chk = chk
        self.g: ir.Graph = chk.graph
        # names arriving as one tensor ([B, L, ...] for arrays); the rest live in lists of elements
        self.leaf = {v.name for v in self.g.variables} if leaf is None else set(leaf)
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
            ls, rs = self.chk.operand_shapes(e)
            # a per-sample scalar ([B]: a scalar term, or a [B] weight) against a vector: align the batch axis
            if self._scalar(ls) and not self._scalar(rs):
                left = f"_col({left}, {len(rs)})"
            elif self._scalar(rs) and not self._scalar(ls):
                right = f"_col({right}, {len(ls)})"
            return f"({left} {e.op} {right})"
        if isinstance(e, ir.Call):
            mod = self.chk.module_of(e)
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


# ----------------------------------------------------------------------------- outputs: named values on request
@dataclass(frozen=True)
class Output:
    """One requested value: ``s_x``, ``s[3]``, ``s`` (the whole array), ``energy:cost`` or ``energy:cost[3]``.

    ``pos`` is an element's position (an energy step's loop value); None means the whole variable or term."""

    label: str
    name: str
    pos: int | None = None
    energy: bool = False

    def nodes(self, chk) -> list:
        """The element-graph nodes this output reads."""
        if self.energy:
            e = term(chk, self.name)
            ts = chk.loop_values(e.loop) if self.pos is None else [self.pos]
            return [("energy:" + self.name, t if e.loop else 0) for t in ts]
        if self.pos is None and self.name in chk.lengths:
            return [(self.name, p) for p in range(chk.lengths[self.name])]
        return [(self.name, self.pos or 0)]


def term(chk, name: str) -> ir.Energy:
    """The energy term called ``name``."""
    return next(e for e in chk.graph.energies if e.name == name)


_LABEL = re.compile(r"(energy:)?([A-Za-z_][A-Za-z0-9_]*)(?:\[(-?[0-9]+)\])?")


def parse_outputs(chk, labels) -> tuple[Output, ...]:
    """Validate requested value names against a checked graph; a SpecError names what is unknown."""
    g: ir.Graph = chk.graph
    labels = [labels] if isinstance(labels, str) else list(labels)
    if not labels:
        raise SpecError("outputs= names no value (e.g. outputs=['s_x'], ['s[3]'], ['s'], ['energy:cost'])")
    known = [v.name for v in g.variables] + list(dict.fromkeys(f.target.name for f in g.functions))
    terms = {e.name: e for e in g.energies}
    out = []
    for label in labels:
        m = _LABEL.fullmatch(str(label).strip())
        if m is None:
            raise SpecError(f"outputs: {label!r} is not a value name (s_x, s[3], s, energy:cost, energy:cost[3])")
        is_e, name, pos = bool(m.group(1)), m.group(2), None if m.group(3) is None else int(m.group(3))
        if is_e:
            if name not in terms:
                raise SpecError(f"outputs: {g.name} has no energy term {name}; terms: {', '.join(terms)}", Loc(g.file))
            e = terms[name]
            if pos is not None and (e.loop is None or pos not in chk.loop_values(e.loop)):
                steps = f"steps {e.loop} in {chk.loop_values(e.loop)[0]}..{chk.loop_values(e.loop)[-1]}" if e.loop \
                    else "no steps"
                raise SpecError(f"outputs: energy:{name}[{pos}] does not exist ({name} has {steps})", Loc(g.file))
        else:
            if name not in known:
                raise SpecError(f"outputs: {g.name} has no value {name}; values: {', '.join(known)}", Loc(g.file))
            if pos is not None and name not in chk.lengths:
                raise SpecError(f"outputs: {name} is not an array; ask for {name}", Loc(g.file))
            nodes = [(name, p) for p in range(chk.lengths[name])] if name in chk.lengths and pos is None \
                else [(name, pos or 0)]
            undefined = [n for n in nodes if n not in chk.elements]
            if undefined:
                where = ", ".join(f"{n}[{p}]" for n, p in undefined[:4])
                raise SpecError(f"outputs: {where} {'is' if len(undefined) == 1 else 'are'} never defined in {g.name}"
                                + (f" ({name} has {chk.lengths[name]} elements)" if name in chk.lengths else ""),
                                Loc(g.file))
        out.append(Output(str(label), name, pos, is_e))
    return tuple(out)


def needed(chk, targets) -> tuple[set, set[int]]:
    """Everything upstream of ``targets`` (element nodes), closed over whole definitions: an array-level
    definition computes all its elements, so what any of them reads is needed too. ``(nodes, definitions)``."""
    producers = chk.producers
    elements_of: dict[int, list] = {}
    for node, (fi, _) in producers.items():
        elements_of.setdefault(fi, []).append(node)
    need = ancestors_of(chk.elements, list(targets))
    while True:
        defs = {producers[n][0] for n in need if n in producers}
        more = {n for fi in defs for n in elements_of[fi]} - need
        if not more:
            return need, defs
        need = ancestors_of(chk.elements, list(need | more))


def _value_code(gen: _Gen, o: Output, repeat_it: bool) -> str:
    """The expression returning output ``o`` from the generated body's locals."""
    chk = gen.chk
    if o.energy:
        e = term(chk, o.name)
        if o.pos is None or e.loop is None:
            return f"E[{o.name!r}]"
        return f"S[{o.name!r}][:, {chk.loop_values(e.loop).index(o.pos)}]"
    n = pyname(o.name)
    if o.name not in chk.lengths:
        x = n
    elif o.pos is None:
        x = n if o.name in gen.leaf else f"_stack({n})"
    else:
        x = f"{n}[:, {o.pos}]" if o.name in gen.leaf else f"{n}[{o.pos}]"
    return f"_rep({x}, _R)" if repeat_it else x


def lower(chk, rollouts: tuple[ir.Rollout, ...] = (), outputs: tuple[Output, ...] = (),
          energy: bool = True) -> tuple[str, bool]:
    """Source of ``forward(self, <leaves>, W, _R=1)`` returning ``(E, S)``, and whether it is array-level.

    ``_R = k`` > 1: observed inputs arrive with ``[B]`` rows, all others with ``[B*k]``; the result
    is that of the observed inputs repeated ``k`` times (``repeat_rows``), computed with the
    definitions that read observed inputs alone run once per problem (:func:`_shared`).

    With ``outputs``, the function also returns the requested values, ``(E, S, (v1, v2, ...))``;
    with ``energy=False`` as well, it computes only what those values need (its parameters are
    the leaves they read) and returns ``(E, S, values)`` with only the requested energies in ``E``.

    Args:
        chk: the checked graph.
        rollouts: the recurrences to emit as one rollout op each (``passes.find_rollouts``).
        outputs: the values to return (:func:`parse_outputs`).
        energy: compute every energy term (the full forward).
    """
    g: ir.Graph = chk.graph
    gen = _Gen(chk, rollouts)
    order = _def_order(chk)
    array_level = bool(order) or not g.functions
    keep_defs, keep_nodes, leaves = None, None, [v.name for v in g.variables]
    energies = list(g.energies)
    if not energy:
        keep_nodes, keep_defs = needed(chk, [n for o in outputs for n in o.nodes(chk)])
        names = {n for n, _ in keep_nodes}
        leaves = [v for v in leaves if v in names]
        energies = [e for e in energies if any(o.energy and o.name == e.name for o in outputs)]
    params = ", ".join(pyname(v) for v in leaves)
    body = ["M = self.mods", "E, S = {}, {}"]
    for name in g.derived_names:
        if name in chk.lengths and (keep_defs is None or name in names):
            body.append(f"{pyname(name)} = [None] * {chk.lengths[name]}")
    observed = [v.name for v in g.variables if v.role == "observed" and v.name in leaves]
    shared, given = _shared(chk) if array_level else (set(), observed)
    given = [n for n in given if n in leaves or keep_defs is None or n in names]
    todo = [fi for fi in order if keep_defs is None or fi in keep_defs]
    if array_level:
        for fi in todo:
            if fi in shared:
                body += gen.function(fi)
    if given:
        body.append("if _R != 1:  # observed inputs and what was computed from them alone: once per candidate from here")
        for name in given:
            n = pyname(name)
            body.append(f"    {n} = [_rep(_x, _R) if _x is not None else None for _x in {n}]"
                        if name in chk.lengths and name in g.derived_names else f"    {n} = _rep({n}, _R)")
    if array_level:
        for fi in todo:
            if fi not in shared:
                body += gen.function(fi)
    else:  # definitions depend on each other both ways: evaluate element by element
        body.append("# element by element (definitions depend on each other both ways)")
        for node in nx.lexicographical_topological_sort(chk.elements, key=str):
            if node in chk.producers and (keep_nodes is None or node in keep_nodes):
                fi, t = chk.producers[node]
                f = g.functions[fi]
                tgt = pyname(f.target.name) + (f"[{node[1]}]" if f.target.index is not None else "")
                body.append(f"{tgt} = {gen.code(f.value, f.loop, t)}")
    gen.in_energy = True
    for e in energies:
        body += gen.energy(e)
    if outputs:
        at_b_rows = set(observed) | {g.functions[fi].target.name for fi in shared}
        vals = [_value_code(gen, o, not o.energy and o.name in at_b_rows and o.name not in given) for o in outputs]
        body.append(f"return E, S, ({''.join(v + ', ' for v in vals)})")
    else:
        body.append("return E, S")
    src = f"def forward(self, {params}{', ' if params else ''}W, _R=1):\n" + "\n".join("    " + ln for ln in body) + "\n"
    return src, array_level


def lower_elements(chk, outputs: tuple[Output, ...], given: set, whole: set) -> str:
    """Source of ``part(self, _I, W)`` computing ``outputs`` element by element from given values.

    ``given``: element nodes whose values arrive in ``_I`` keyed ``"name"`` / ``"name[p]"`` — leaf
    elements or intermediate values (a state ``s[3]`` a search stored), upstream of which nothing is
    computed; ``whole``: leaf names given as one tensor (``_I["x"]``, ``[B, L, ...]`` for arrays).
    Returns the tuple of output values. A value the outputs need but nobody gives is a SpecError.
    """
    g: ir.Graph = chk.graph
    G = chk.elements
    targets = [n for o in outputs for n in o.nodes(chk)]
    need, stack = set(), list(targets)
    while stack:
        n = stack.pop()
        if n in need:
            continue
        need.add(n)
        if n not in given:
            stack.extend(G.pred[n])
    missing = sorted({n for n in need if n not in given and n not in chk.producers
                      and not str(n[0]).startswith("energy:")}, key=str)
    if missing:
        shown = ", ".join(f"{n}[{p}]" if n in chk.lengths else n for n, p in missing[:6])
        raise SpecError(f"the outputs need {shown}{' ...' if len(missing) > 6 else ''}: pass {'it' if len(missing) == 1 else 'them'} "
                        f"in inputs (whole variables, or elements such as 'x[3]')", Loc(g.file),
                        tuple(dict.fromkeys(n for n, _ in missing)))
    gen = _Gen(chk, (), leaf=whole)
    body = ["M = self.mods", "E, S = {}, {}"]
    for name in dict.fromkeys(n for n, _ in need):
        if name in chk.lengths and name not in whole and not str(name).startswith("energy:"):
            body.append(f"{pyname(name)} = [None] * {chk.lengths[name]}")
    for name in sorted(whole):
        body.append(f"{pyname(name)} = _I[{name!r}]")
    for n, p in sorted(given - {(w, q) for w in whole for q in range(chk.lengths.get(w, 1))}, key=str):
        if n in need or (n, p) in need:
            key = f"{n}[{p}]" if n in chk.lengths else n
            body.append(f"{pyname(n)}{f'[{p}]' if n in chk.lengths else ''} = _I[{key!r}]")
    for node in chk.order:
        if node in need and node not in given and node in chk.producers:
            fi, t = chk.producers[node]
            f = g.functions[fi]
            tgt = pyname(f.target.name) + (f"[{node[1]}]" if f.target.index is not None else "")
            body.append(f"{tgt} = {gen.code(f.value, f.loop, t)}")
    gen.in_energy = True
    for e in g.energies:
        steps = sorted(t for (k, t) in need if k == "energy:" + e.name)
        if not steps:
            continue
        key = repr(e.name)
        body.append(f"S[{key}] = {{}}")
        for t in steps:
            body.append(f"S[{key}][{t}] = _e({gen.code(e.value, e.loop, t if e.loop else None)})")
        body.append(f"E[{key}] = sum(S[{key}].values())")
    vals = []
    for o in outputs:
        if o.energy:
            e = term(chk, o.name)
            vals.append(f"E[{o.name!r}]" if o.pos is None or e.loop is None else f"S[{o.name!r}][{o.pos}]")
        else:
            vals.append(_value_code(gen, o, False))
    body.append(f"return ({''.join(v + ', ' for v in vals)})")
    return "def part(self, _I, W):\n" + "\n".join("    " + ln for ln in body) + "\n"
