"""The checker: every name bound once, shapes inferred through module signatures,
domains valid, the deterministic part acyclic, every latent constrained, and a
collapse analysis (Figure 10, §4.3, §4.5).

``check(graph, sizes=None)`` returns a :class:`Checked` record holding what later
stages need (resolved sizes, index ranges, shapes, the element graph) or raises
:class:`~ebmgraph.errors.SpecErrors` listing every error with file and line.

Work grows linearly with the number of elements: index expressions that are affine in
their loop variable (``t+1``, ``2*k+2``) are evaluated for all steps at once, each
definition is resolved once (not once per element), and the element graph is ordered
and searched once.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import networkx as nx
import sympy
from torch import nn

from . import ir
from .conventions import SCALAR, is_scalar_shape
from .elements import affine_index, element_graph, index_position, ancestors_of
from .errors import Diagnostics, Loc, SpecError
from .expr import parse_index, resolve_iexpr, resolve_int
from .modules import BATCH_REGULARIZERS, KINDS, ShapeError, option_errors
from .util import gc_paused

Shape = tuple[int, ...]

# Size limits checked before anything is allocated; each can be raised per call
# (``check(..., limits={"max_elements": ...})``, ``compile(..., limits=...)``, ``--limit NAME=N``).
LIMITS = {
    "max_steps": 100_001,            # elements of one index range (t: 0..T-1)
    "max_elements": 1 << 24,         # numbers per sample in one variable (all steps of an array)
    "max_parameters": 200_000_000,   # parameters of one module
    "max_declarations": 20_000,      # variables + modules + functions + energy terms of one spec
}


@dataclass(frozen=True)
class ModInfo:
    """A module instance after checking: its kind, int arguments and input shapes."""

    name: str
    kind: str
    args: tuple
    kwargs: dict
    trainable: bool
    in_shapes: tuple[Shape, ...]
    out_shape: Shape
    inline: bool = False


@dataclass
class Checked:
    """A checked graph with everything resolved for a given set of sizes."""

    graph: ir.Graph
    sizes: dict[str, int]
    ranges: dict[str, tuple[int, int]]          # index -> (lo, hi) inclusive
    shapes: dict[str, Shape]                    # variable -> per-step shape
    lengths: dict[str, int]                     # array variable -> number of elements
    modules: dict[str, ModInfo]                 # declared and inline instances
    call_module: dict[int, str]                 # Call node's uid -> module instance name (module_of)
    elements: nx.DiGraph                        # (name, pos) element dependency graph
    warnings: list[SpecError] = field(default_factory=list)
    architecture: object = None                 # collapse.ArchReport
    expr_shapes: dict = field(default_factory=dict)  # BinOp node's uid -> (left shape, right shape)
    producers: dict = field(default_factory=dict)    # (name, pos) -> (function index, loop value or None)
    order: list = field(default_factory=list)        # element nodes in one dependency order

    def is_array(self, name: str) -> bool:
        return name in self.lengths

    def module_of(self, call: ir.Call) -> str:
        """The module instance ``call`` applies (inline kinds get one per call site), by the node's uid:
        a node rebuilt with ``dataclasses.replace`` finds it too."""
        try:
            return self.call_module[call.uid]
        except KeyError:
            raise KeyError(f"{ir.expr_str(call)} (uid {call.uid}) is not a call checked in {self.graph.name}") from None

    def operand_shapes(self, e: ir.BinOp) -> tuple:
        """``(left shape, right shape)`` of a binary operation (``(None, None)`` when not recorded)."""
        return self.expr_shapes.get(e.uid, (None, None))

    def loop_values(self, loop: str | None) -> list[int]:
        if loop is None:
            return [0]
        lo, hi = self.ranges[loop]
        return list(range(lo, hi + 1))

    def position(self, ref: ir.Ref, loop: str | None = None, t: int | None = None) -> int:
        """The element a reference reads: ``s[t+1]`` with t = 3 is 4 (sizes substituted)."""
        if ref.index is None:
            return 0
        aff = affine_index(ref.index, self._size_key, loop)
        if aff is not None:
            return aff[0] * (t or 0) + aff[1]
        return index_position(ref.index, self._size_key, loop, t)

    def positions(self, ref: ir.Ref, loop: str | None, ts) -> list[int]:
        """The elements a reference reads for each loop value in ``ts`` (one pass for affine indices)."""
        if ref.index is None:
            return [0] * len(ts)
        aff = affine_index(ref.index, self._size_key, loop)
        if aff is not None:
            a, b = aff
            return [a * t + b for t in ts] if loop is not None else [b] * len(ts)
        return [index_position(ref.index, self._size_key, loop, t) for t in ts]

    @functools.cached_property
    def _size_key(self) -> tuple:
        return tuple(sorted(self.sizes.items()))

    def reaching(self, prefix: str = "energy:") -> set:
        """Elements with a path to a node whose name starts with ``prefix`` (the nodes included)."""
        return ancestors_of(self.elements, [n for n in self.elements if str(n[0]).startswith(prefix)])

    def summary(self) -> str:
        g = self.graph
        n_lat = sum(v.role == "latent" for v in g.variables)
        n_act = sum(v.role == "action" for v in g.variables)
        sz = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        arch = f"; {self.architecture.label}" if self.architecture is not None else ""
        return (f"{g.name}: {len(g.variables)} variables ({n_lat} latent, {n_act} action), "
                f"{len(g.modules)} modules, {len(g.functions)} functions, {len(g.energies)} energy terms"
                f"{' [' + sz + ']' if sz else ''}{arch}")


_RESERVED_MODULE_NAMES = frozenset(n for n in dir(nn.ModuleDict()) if not n.startswith("_"))
_RESERVED_VARIABLE_NAMES = frozenset({"weights", "self", "check_finite"})


class _Ctx:
    def __init__(self, g: ir.Graph, sizes: dict[str, int]):
        self.g = g
        self.sizes = sizes
        self.d = Diagnostics()
        self.limits = dict(LIMITS)
        self.size_key = tuple(sorted(sizes.items()))


def _limits(over: dict[str, int] | None) -> dict[str, int]:
    lim = dict(LIMITS)
    for k, v in (over or {}).items():
        if k not in LIMITS:
            raise ValueError(f"unknown limit {k!r}; limits: {', '.join(LIMITS)}")
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"limit {k} must be a positive integer, got {v!r}")
        lim[k] = v
    return lim


def size_names(g: ir.Graph) -> list[str]:
    """Sizes a spec declares (``sizes:``) or uses (in index ranges, indices, shapes, module arguments)."""
    used: set[str] = set(g.size_dict)

    def add(e) -> None:
        if isinstance(e, sympy.Basic):
            used.update(s.name for s in e.free_symbols)
        elif isinstance(e, str):
            try:
                used.update(s.name for s in parse_index(e, Loc(g.file)).free_symbols)
            except SpecError:
                pass

    for i in g.indices:
        add(i.lo), add(i.hi)
    for v in g.variables:
        for s in v.shape:
            add(s)
    for m in g.modules:
        for a in m.args:
            add(a)
    loops = {i.name for i in g.indices}
    for f in g.functions:
        add(f.target.index)
        for r in ir.refs(f.value):
            add(r.index)
    for e in list(g.energies) + list(g.regularizers):
        for r in ir.refs(e.value):
            add(r.index)
    return sorted(used - loops)


def _check_size_names(g: ir.Graph, sizes: dict[str, int]) -> None:
    known = size_names(g)
    unknown = sorted(set(sizes) - set(known))
    if unknown:
        raise SpecError(f"unknown size(s) {', '.join(unknown)}; {g.name} has "
                        + (f"sizes {', '.join(known)}" if known else "no sizes"), Loc(g.file), tuple(unknown))


@gc_paused
def check(g: ir.Graph, sizes: dict[str, int] | None = None, *, analyze: bool = True,
          limits: dict[str, int] | None = None, known_sizes: bool = True) -> Checked:
    """Check a graph; ``sizes`` override the spec's default sizes (e.g. ``{"T": 16}``).

    Args:
        limits: raise some of :data:`LIMITS` (``{"max_steps": 200_001}``).
        known_sizes: refuse size names the spec neither declares nor uses.
    """
    lim = _limits(limits)
    n_decl = len(g.variables) + len(g.modules) + len(g.functions) + len(g.energies)
    if n_decl > lim["max_declarations"]:
        raise SpecError(f"{g.name} declares {n_decl:,} variables, modules, functions and energy terms; the limit is "
                        f"{lim['max_declarations']:,} (raise it with limits={{'max_declarations': N}} or "
                        f"--limit max_declarations=N; an index such as cost[t] declares many terms at once)",
                        Loc(g.file))
    if known_sizes:
        _check_size_names(g, sizes or {})
    c = _Ctx(g, {**g.size_dict, **(sizes or {})})
    c.limits = lim
    d = c.d
    _check_namespaces(c)
    _check_uids(c)
    d.raise_if_errors()
    ranges = _resolve_ranges(c)
    d.raise_if_errors()
    shapes, lengths = _leaf_vars(c, ranges)
    d.raise_if_errors()
    mods = _declared_modules(c)
    d.raise_if_errors()
    elements, positions, order = element_graph(c, ranges, lengths)
    d.raise_if_errors()
    call_module: dict[int, str] = {}
    binop_shapes: dict[int, tuple] = {}
    _infer_shapes(c, ranges, shapes, lengths, mods, call_module, order, positions, binop_shapes)
    d.raise_if_errors()
    _check_sizes(c, shapes, lengths, mods)
    d.raise_if_errors()
    _check_constrained(c, elements, lengths)
    d.raise_if_errors()
    producers = {(g.functions[fi].target.name, pos): (fi, t) for fi, plist in positions.items() for t, pos in plist}
    out = Checked(g, c.sizes, ranges, shapes, lengths, mods, call_module, elements, list(d.warnings),
                  expr_shapes=binop_shapes, producers=producers, order=order)
    if analyze:
        from .collapse import analyze as _analyze

        out.architecture = _analyze(out)
        out.warnings.extend(out.architecture.warnings)
    return out


# ----------------------------------------------------------------------------- names
def _check_namespaces(c: _Ctx) -> None:
    g, d = c.g, c.d
    seen: dict[str, tuple[str, Loc]] = {}

    def bind(name: str, what: str, loc: Loc) -> None:
        if name in seen:
            prev_what, prev_loc = seen[name]
            d.error(f"{name} is bound twice: as {what} and as {prev_what} ({prev_loc})", loc, name)
        else:
            seen[name] = (what, loc)

    for i in g.indices:
        bind(i.name, "index", i.loc)
    for k, _ in g.sizes:
        bind(k, "size", Loc(g.file))
    for k, _ in g.weights:
        bind(k, "weight", Loc(g.file))
    for v in g.variables:
        bind(v.name, f"{v.role} variable", v.loc)
        if v.name in _RESERVED_VARIABLE_NAMES:
            d.error(f"variable name {v.name} is reserved (an argument of CompiledEBM.energy); rename it", v.loc, v.name)
    for m in g.modules:
        bind(m.name, "module", m.loc)
        if m.name in _RESERVED_MODULE_NAMES:
            d.error(f"module name {m.name} is reserved (an attribute of torch.nn.Module); rename it", m.loc, m.name)
    derived_seen: set[str] = set()
    for f in g.functions:
        n = f.target.name
        if n in derived_seen:
            continue
        derived_seen.add(n)
        if n in seen and seen[n][0].endswith("variable"):
            d.error(f"{n} is declared as a {seen[n][0]} and also computed by a function; "
                    f"an observed value cannot be bound twice", f.loc, n)
        else:
            bind(n, "function output", f.loc)
    enames: dict[str, Loc] = {}
    for e in g.energies:
        if e.name in enames:
            d.error(f"energy term {e.name} is bound twice (first at {enames[e.name]})", e.loc, e.name)
        enames[e.name] = e.loc
    for r in g.regularizers:
        if r.name in enames:
            d.error(f"regularizer {r.name} reuses the name of an energy term", r.loc, r.name)
        enames[r.name] = r.loc


def _check_uids(c: _Ctx) -> None:
    """Distinct expression nodes have distinct uids (the side tables are keyed by them): a pass that copies a
    node with ``dataclasses.replace`` and keeps the original beside it would make two nodes share one."""
    seen: dict[int, ir.Expr] = {}
    for what, x in [(f.target.name, f) for f in c.g.functions] + [(x.name, x) for x in c.g.energies + c.g.regularizers]:
        for n in ir.walk(x.value):
            if seen.setdefault(n.uid, n) is not n:
                c.d.error(f"{what}: two IR nodes share uid {n.uid} ({ir.expr_str(n)[:60]}); a pass builds a new "
                          f"node with its constructor, not a copy of one left in the graph", x.loc, what)
                return


def _resolve_ranges(c: _Ctx) -> dict[str, tuple[int, int]]:
    out = {}
    for i in c.g.indices:
        try:
            lo = resolve_iexpr(i.lo, c.sizes, i.loc, f"range of {i.name}")
            hi = resolve_iexpr(i.hi, c.sizes, i.loc, f"range of {i.name}")
        except SpecError as e:
            c.d.errors.append(e)
            continue
        if hi < lo:
            c.d.error(f"index {i.name} = {lo}..{hi} is empty", i.loc, i.name)
        elif hi - lo + 1 > c.limits["max_steps"]:
            c.d.error(f"index {i.name} has {hi - lo + 1:,} steps; the limit is {c.limits['max_steps']:,} "
                      f"(raise it with limits={{'max_steps': N}} or --limit max_steps=N)", i.loc, i.name)
        out[i.name] = (lo, hi)
    return out


def _leaf_vars(c: _Ctx, ranges) -> tuple[dict[str, Shape], dict[str, int]]:
    shapes: dict[str, Shape] = {}
    lengths: dict[str, int] = {}
    for v in c.g.variables:
        if v.role not in ir.ROLES:
            c.d.error(f"{v.name}: unknown role {v.role!r}", v.loc, v.name)
        try:
            shapes[v.name] = tuple(resolve_int(s, c.sizes, v.loc, f"shape of {v.name}") for s in v.shape)
        except SpecError as e:
            c.d.errors.append(e)
            continue
        if any(s <= 0 for s in shapes[v.name]):
            c.d.error(f"{v.name}: every dimension must be positive, got {list(shapes[v.name])}", v.loc, v.name)
        if v.index is not None:
            if v.index not in ranges:
                c.d.error(f"{v.name}[{v.index}]: {v.index} is not a declared index (index: {{{v.index}: 0..T-1}})", v.loc, v.name)
                continue
            lo, hi = ranges[v.index]
            if lo != 0:
                c.d.error(f"{v.name}[{v.index}]: declared arrays start at 0; {v.index} starts at {lo}", v.loc, v.name)
            lengths[v.name] = hi + 1
        dom = v.domain
        if isinstance(dom, ir.Real) and dom.lo is not None and dom.hi is not None and not dom.lo < dom.hi:
            c.d.error(f"{v.name}: bounds [{dom.lo}, {dom.hi}] are empty (need lo < hi)", v.loc, v.name)
        if isinstance(dom, ir.Discrete) and dom.K < 2:
            c.d.error(f"{v.name}: a discrete variable needs at least 2 values", v.loc, v.name)
        if v.role == "observed" and (isinstance(dom, ir.Discrete) is False and dom.bounded):
            c.d.warn(f"{v.name}: bounds on an observed variable are not enforced", v.loc, v.name)
        if v.sampled and v.role != "latent":
            c.d.error(f"{v.name}: only latents can be sampled", v.loc, v.name)
    return shapes, lengths


def _declared_modules(c: _Ctx) -> dict[str, ModInfo]:
    mods: dict[str, ModInfo] = {}
    for m in c.g.modules:
        kind = KINDS.get(m.kind)
        if kind is None:
            if m.kind in BATCH_REGULARIZERS:
                c.d.error(f"module {m.name}: {m.kind} is a batch regularizer; declare it under regularizers:", m.loc, m.name)
            else:
                c.d.error(f"module {m.name}: unknown kind {m.kind!r}; known: {', '.join(sorted(KINDS))}", m.loc, m.name, m.kind)
            continue
        allowed = set(kind.kwargs)
        for k, _ in m.kwargs:
            if k not in allowed:
                c.d.error(f"module {m.name}: {m.kind} takes no option {k!r}"
                          + (f" (options: {', '.join(sorted(allowed))})" if allowed else ""), m.loc, m.name)
        for msg in option_errors(dict(m.kwargs)):
            c.d.error(f"module {m.name}: {m.kind} {msg}", m.loc, m.name)
        args = []
        for a in m.args:
            if kind.real_args:  # numbers the kind's own shape rule validates (factors, feature indices)
                if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a):
                    c.d.error(f"module {m.name}: {m.kind} takes finite numbers, got {a!r}", m.loc, m.name)
                else:
                    args.append(a)
                continue
            try:
                args.append(resolve_int(a, c.sizes, m.loc, f"module {m.name}"))
            except SpecError as e:
                c.d.errors.append(e)
        if not kind.real_args and any(isinstance(a, int) and not 0 < a <= 1_000_000 for a in args):
            c.d.error(f"module {m.name}: sizes must be between 1 and 1e6, got {args}", m.loc, m.name)
        elif not kind.real_args and len(args) > 1 and sum(a * b for a, b in zip(args, args[1:])) > 500_000_000:
            c.d.error(f"module {m.name}: {m.kind}{tuple(args)} would hold over 5e8 parameters", m.loc, m.name)
        mods[m.name] = ModInfo(m.name, m.kind, tuple(args), dict(m.kwargs), m.trainable, (), ())
    return mods


# ----------------------------------------------------------------------------- shapes
def _infer_shapes(c: _Ctx, ranges, shapes, lengths, mods, call_module, order, positions, binop_shapes) -> None:
    """Shapes through module signatures, definitions in dependency order, then energies and regularizers."""
    sh = _Shapes(c, shapes, mods, call_module, binop_shapes)
    sh.functions(order, positions)
    sh.energies()
    sh.regularizers()
    for m in c.g.modules:
        if m.name not in sh.in_shapes:
            c.d.warn(f"module {m.name} is declared but never called", m.loc, m.name)


class _Shapes:
    """Per-sample shapes of expressions (None for a constant), recording each call's module instance and
    each binary operation's operand shapes in the checker's side tables."""

    def __init__(self, c: _Ctx, shapes, mods, call_module, binop_shapes):
        self.c, self.g, self.d = c, c.g, c.d
        self.shapes, self.mods, self.call_module, self.binop_shapes = shapes, mods, call_module, binop_shapes
        self.in_shapes: dict[str, tuple] = {}
        self.inline_count: dict[str, int] = {}

    def of(self, e, where, loc) -> Shape | None:
        """Per-sample shape of an expression; None for a constant (number or weight)."""
        if isinstance(e, ir.Ref):
            return self.shapes.get(e.name, "unknown")
        if isinstance(e, (ir.Num, ir.Weight)):
            if isinstance(e, ir.Weight) and e.name not in self.g.weight_dict:
                self.d.error(f"{where}: weight {e.name} is not declared", loc, e.name)
            return None
        if isinstance(e, ir.Neg):
            return self.of(e.operand, where, loc)
        if isinstance(e, ir.BinOp):
            return self._binop(e, where, loc)
        if isinstance(e, ir.Call):
            return self._call(e, where, loc)
        raise TypeError(e)

    def _binop(self, e: ir.BinOp, where, loc):
        a, b = self.of(e.left, where, loc), self.of(e.right, where, loc)
        if a == "unknown" or b == "unknown":
            return "unknown"
        self.binop_shapes[e.uid] = (a, b)
        if a is None or b is None or a == b:
            return b if a is None else a
        if a == SCALAR or b == SCALAR:
            other = a if b == SCALAR else b
            return SCALAR if is_scalar_shape(other, in_energy=True) else other  # a [1]-output (critic)
        self.d.error(f"{where}: {ir.expr_str(e)} combines shapes {list(a)} and {list(b)}", loc)
        return "unknown"

    def _instance(self, e: ir.Call, where, loc) -> ModInfo | None:
        """The module instance a call uses (inline kinds get one per call site), or None after an error."""
        d, g, mods = self.d, self.g, self.mods
        if e.fn in self.shapes or g.var(e.fn):
            d.error(f"{where}: {e.fn} is a variable, not a module", loc, e.fn)
            return None
        if e.fn in mods:
            return mods[e.fn]
        if e.fn in KINDS and KINDS[e.fn].inline:
            k = self.inline_count.get(e.fn, 0)
            self.inline_count[e.fn] = k + 1
            name = e.fn if k == 0 else f"{e.fn}_{k}"
            while name in mods and not mods[name].inline:
                k += 1
                name = f"{e.fn}_{k}"
            mods[name] = ModInfo(name, e.fn, (), {}, True, (), (), inline=True)
            return mods[name]
        if e.fn in KINDS:
            d.error(f"{where}: {e.fn} needs its sizes; declare it under modules: (e.g. P: {e.fn}(...))", loc, e.fn)
        elif e.fn in BATCH_REGULARIZERS:
            d.error(f"{where}: {e.fn} is a batch regularizer; put it under regularizers:", loc, e.fn)
        else:
            d.error(f"{where}: {e.fn} is not a declared module", loc, e.fn)
        return None

    def _call(self, e: ir.Call, where, loc):
        d = self.d
        arg_shapes = [self.of(a, where, loc) for a in e.args]
        if any(s == "unknown" for s in arg_shapes):
            return "unknown"
        if any(s is None for s in arg_shapes):
            d.error(f"{where}: {e.fn}(...) takes variables, not numbers or weights", loc, e.fn)
            return "unknown"
        info = self._instance(e, where, loc)
        if info is None:
            return "unknown"
        name = info.name
        self.call_module[e.uid] = name
        try:
            out = tuple(KINDS[info.kind].shape(info.args, info.kwargs, [tuple(s) for s in arg_shapes]))
        except ShapeError as exc:
            d.error(f"{where}: {name}({', '.join(ir.expr_str(a) for a in e.args)}): {exc}", loc, name)
            return "unknown"
        sig = tuple(tuple(s) for s in arg_shapes)
        prev = self.in_shapes.get(name)
        if prev is not None and prev != sig and not info.inline:
            d.error(f"{where}: module {name} is called with shapes {[list(s) for s in sig]} here "
                    f"and {[list(s) for s in prev]} elsewhere; one module has one signature", loc, name)
            return "unknown"
        if prev is None or info.inline:
            self.in_shapes[name] = sig
            self.mods[name] = ModInfo(name, info.kind, info.args, info.kwargs, info.trainable, sig, out, info.inline)
        return out

    def functions(self, order, positions) -> None:
        """Each definition's shape, in dependency order (every element of an array has one shape)."""
        g, d, shapes = self.g, self.d, self.shapes
        fn_of: dict[tuple[str, int], int] = {}
        for fi, plist in positions.items():
            for _, pos in plist:
                fn_of[(g.functions[fi].target.name, pos)] = fi
        done: set[int] = set()
        for node in (n for n in order if n in fn_of):
            fi = fn_of[node]
            if fi in done:
                continue
            done.add(fi)
            f = g.functions[fi]
            where = ir.ref_str(f.target)
            s = self.of(f.value, where, f.loc)
            if s == "unknown":
                continue
            if s is None or s == SCALAR:
                d.error(f"{where} = {ir.expr_str(f.value)}: a function must produce a vector, not "
                        f"{'a constant' if s is None else 'a scalar (use it as an energy term)'}", f.loc, f.target.name)
                continue
            name = f.target.name
            if name in shapes and shapes[name] != s:
                d.error(f"{where}: shape {list(s)} differs from {name}'s other elements {list(shapes[name])}", f.loc,
                        name)
                continue
            shapes[name] = s
        for f_i, f in enumerate(g.functions):  # functions unreachable in topo order (errors above)
            if f_i not in done and not d.errors:
                d.error(f"{ir.ref_str(f.target)} could not be ordered", f.loc, f.target.name)

    def energies(self) -> None:
        for e in self.g.energies:
            where = f"energy {e.name}"
            s = self.of(e.value, where, e.loc)
            if s == "unknown":
                continue
            if s is None:
                self.d.error(f"{where} = {ir.expr_str(e.value)} is a constant; an energy term reads variables", e.loc,
                             e.name)
            elif not is_scalar_shape(s, in_energy=True):
                self.d.error(f"{where} = {ir.expr_str(e.value)} has shape {list(s)}; an energy term is a scalar per "
                             f"sample (wrap it in a divergence such as sq_dist(...))", e.loc, e.name)

    def regularizers(self) -> None:
        for r in self.g.regularizers:
            where = f"regularizer {r.name}"
            if not isinstance(r.value, ir.Call) or r.value.fn not in BATCH_REGULARIZERS:
                self.d.error(f"{where}: write one of {', '.join(BATCH_REGULARIZERS)}(u, ...)", r.loc, r.name)
                continue
            for a in r.value.args:
                if not isinstance(a, ir.Ref):
                    self.d.error(f"{where}: arguments are variables", r.loc, r.name)
                    continue
                s = self.shapes.get(a.name)
                if s is not None and len(s) != 1:
                    self.d.error(f"{where}: {a.name} must be a vector, has shape {list(s)}", r.loc, r.name)


def _check_sizes(c: _Ctx, shapes, lengths, mods) -> None:
    """Refuse variables and modules too large to allocate before anything is allocated (§ limits)."""
    lim = c.limits
    for name, shape in shapes.items():
        n = math.prod(shape) * lengths.get(name, 1)
        if n > lim["max_elements"]:
            v = c.g.var(name)
            loc = v.loc if v else next((f.loc for f in c.g.functions if f.target.name == name), Loc(c.g.file))
            c.d.error(f"{name} holds {n:,} numbers per sample ({list(shape)}"
                      + (f" x {lengths[name]} steps" if name in lengths else "")
                      + f"); the limit is {lim['max_elements']:,} (raise it with limits={{'max_elements': N}} "
                      f"or --limit max_elements=N)", loc, name)
    for name, info in mods.items():
        if not info.in_shapes or info.inline:
            continue
        n = KINDS[info.kind].params(info.args, info.kwargs, list(info.in_shapes))  # counted, not allocated
        if n > lim["max_parameters"]:
            m = c.g.module(name)
            c.d.error(f"module {name} would hold {n:,} parameters; the limit is {lim['max_parameters']:,} "
                      f"(raise it with limits={{'max_parameters': N}} or --limit max_parameters=N)",
                      m.loc if m else Loc(c.g.file), name)


def _check_constrained(c: _Ctx, G: nx.DiGraph, lengths) -> None:
    """Every latent and action must reach an energy term; unused observed inputs are warned about."""
    g, d = c.g, c.d
    reach = ancestors_of(G, [n for n in G if str(n[0]).startswith("energy:")])
    for v in g.variables:
        if any((v.name, p) in reach for p in range(lengths.get(v.name, 1))):
            continue
        if v.role in ("latent", "action"):
            d.error(f"{v.role} {v.name} is not constrained by any energy term: nothing would determine its value", v.loc, v.name)
        else:
            d.warn(f"observed {v.name} does not reach any energy term", v.loc, v.name)
    if not g.energies:
        d.error("the spec has no energy terms (energy: section)", Loc(g.file, 1))
