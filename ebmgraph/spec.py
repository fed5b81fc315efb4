"""Spec files (YAML) to the IR and back. See docs/spec-format.md for the language.

YAML is read with ``yaml.SafeLoader`` (no Python objects are ever constructed from
tags) into plain values that remember their line numbers, then every expression
goes through :mod:`ebmgraph.expr`, which evaluates nothing.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import ir
from .errors import Loc, SpecError
from .expr import check_name, parse_expr, parse_index, parse_module, parse_range, parse_target, short_repr
from .modules import signature_shapes

TOP_KEYS = ("name", "figure", "description", "index", "sizes", "weights", "tasks", "variables",
            "modules", "functions", "energy", "regularizers")
VAR_KEYS = ("observed", "latent", "action", "bounds", "values", "sampled", "doc")


class _Map(dict):
    """A YAML mapping that remembers the line of each key and of itself."""

    lines: dict
    line: int


def _sym(key) -> str:
    """A key as a symbol name for SpecError.symbols."""
    return key if isinstance(key, str) else short_repr(key)


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map()
    out.lines = {}
    out.line = node.start_mark.line + 1
    for knode, vnode in node.value:
        key = loader.construct_object(knode, deep=True)
        line = knode.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise SpecError(f"a mapping key must be a plain value, got {short_repr(key)}", Loc(loader.name, line)) from None
        if key in out:
            raise SpecError(f"{short_repr(key)} is bound twice (first on line {out.lines[key]})",
                            Loc(loader.name, line), (_sym(key),))
        try:
            out[key] = loader.construct_object(vnode, deep=True)
        except (ValueError, TypeError, OverflowError) as exc:  # int('9' * 5000), date 2001-13-45
            raise SpecError(f"bad value for {short_repr(key)}: {short_repr(str(exc))}",
                            Loc(loader.name, vnode.start_mark.line + 1), (_sym(key),)) from None
        out.lines[key] = line
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)


def _read_yaml(text: str, file: str):
    try:
        loader = _Loader(text)  # the reader rejects control characters here already
    except yaml.reader.ReaderError as exc:
        line = text[:max(exc.position, 0)].count("\n") + 1
        raise SpecError(f"bad YAML: character U+{exc.character:04X} is not allowed", Loc(file, line)) from None
    loader.name = file
    try:
        return loader.get_single_data()
    except SpecError:
        raise
    except yaml.reader.ReaderError as exc:
        line = text[:max(exc.position, 0)].count("\n") + 1
        raise SpecError(f"bad YAML: character U+{exc.character:04X} is not allowed", Loc(file, line)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise SpecError(f"bad YAML: {exc.problem or exc.context}", Loc(file, line)) from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        # e.g. int('9' * 5000), a date 2001-13-45, nesting deeper than Python's stack: where is unknown,
        # so point at the line the reader had reached
        line = loader.line + 1 if hasattr(loader, "line") else 1
        raise SpecError(f"bad YAML: {type(exc).__name__}: {short_repr(str(exc))}", Loc(file, line)) from None
    finally:
        loader.dispose()


def _items(doc: _Map, key: str, file: str):
    """(name, value, Loc) for each entry of a section (empty if absent)."""
    sec = doc.get(key)
    if sec is None:
        return []
    if not isinstance(sec, _Map):
        raise SpecError(f"'{key}' must be a mapping of name: value", Loc(file, doc.lines[key]), (key,))
    return [(k, v, Loc(file, sec.lines[k])) for k, v in sec.items()]


def _key_str(k, loc: Loc) -> str:
    if not isinstance(k, str):
        raise SpecError(f"expected a name, got {short_repr(k)}", loc, (_sym(k),))
    return k


def _number(v, loc: Loc, what: str) -> float:
    """A finite float (a NaN weight or an infinite bound would poison every energy)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SpecError(f"{what} must be a number, got {short_repr(v)}", loc)
    try:
        out = float(v)
    except OverflowError:
        out = math.inf
    if not math.isfinite(out):
        raise SpecError(f"{what} must be a finite number, got {short_repr(v)}"
                        + (" (leave a bound out with null)" if "bound" in what else ""), loc)
    return out


def _shape(v, loc: Loc, name: str) -> tuple:
    if isinstance(v, bool):
        raise SpecError(f"shape of {name} must be a list such as [64], got {short_repr(v)}", loc, (name,))
    if isinstance(v, (int, str)):
        v = [v]
    if not isinstance(v, list) or not v:
        raise SpecError(f"shape of {name} must be a non-empty list such as [64] (use [1] for a scalar), got {short_repr(v)}", loc, (name,))
    out = []
    for d in v:
        if isinstance(d, bool):
            raise SpecError(f"bad dimension {short_repr(d)} in the shape of {name}", loc, (name,))
        if isinstance(d, int):
            if d <= 0 or d > 1_000_000:
                raise SpecError(f"dimension {d} of {name} must be between 1 and 1e6", loc, (name,))
            out.append(d)
        elif isinstance(d, str):
            out.append(check_name(d, loc, "size name"))
        else:
            raise SpecError(f"bad dimension {short_repr(d)} in the shape of {name}", loc, (name,))
    return tuple(out)


def _variable(key, body, loc: Loc) -> ir.Var:
    target = parse_target(_key_str(key, loc), loc)
    name = target.name
    index = None
    if target.index is not None:
        syms = target.index.free_symbols
        if len(syms) != 1 or target.index != next(iter(syms)):
            raise SpecError(f"a declared array is written {name}[t] with an index name, got {short_repr(key)}", loc, (name,))
        index = next(iter(syms)).name
    if isinstance(body, str) and body in ir.ROLES:
        raise SpecError(f"{name}: give a shape, e.g. {{{body}: [4]}}", loc, (name,))
    if not isinstance(body, _Map):
        raise SpecError(f"variable {name} must be a mapping such as {{observed: [64]}}, got {short_repr(body)}", loc, (name,))
    unknown = [k for k in body if k not in VAR_KEYS]
    if unknown:
        raise SpecError(f"variable {name}: unknown key(s) {', '.join(map(str, unknown))}; "
                        f"known: {', '.join(VAR_KEYS)}", loc, (name,))
    roles = [r for r in ir.ROLES if r in body]
    if len(roles) != 1:
        raise SpecError(f"variable {name} needs exactly one of observed/latent/action", loc, (name,))
    role = roles[0]
    domain: ir.Domain = ir.Real()
    if "values" in body:
        K = body["values"]
        if isinstance(K, bool) or not isinstance(K, int) or K < 2 or K > 1_000_000:
            raise SpecError(f"{name}: values must be an integer K >= 2, got {short_repr(K)}", loc, (name,))
        if "bounds" in body:
            raise SpecError(f"{name}: a discrete variable takes values, not bounds", loc, (name,))
        domain = ir.Discrete(K)
        raw = body[role]
        shape = (K,) if raw in ("discrete", None) else _shape(raw, loc, name)
        if shape != (K,):
            raise SpecError(f"{name}: a discrete variable with {K} values is one-hot of shape [{K}], got {list(shape)}", loc, (name,))
    else:
        if body[role] == "discrete":
            raise SpecError(f"{name}: a discrete variable needs values: K", loc, (name,))
        shape = _shape(body[role], loc, name)
        if "bounds" in body:
            b = body["bounds"]
            if not isinstance(b, list) or len(b) != 2:
                raise SpecError(f"{name}: bounds are [lo, hi], got {short_repr(b)}", loc, (name,))
            lo = None if b[0] is None else _number(b[0], loc, f"{name} lower bound")
            hi = None if b[1] is None else _number(b[1], loc, f"{name} upper bound")
            domain = ir.Real(lo, hi)
    sampled = body.get("sampled", False)
    if not isinstance(sampled, bool):
        raise SpecError(f"{name}: sampled must be true or false", loc, (name,))
    return ir.Var(name, role, shape, domain, index, sampled, loc)


def loads(text: str, file: str = "<spec>") -> ir.Graph:
    """Parse spec text into an (unchecked) Graph. Raises SpecError with file and line."""
    if not isinstance(text, str):
        raise SpecError("a spec is text", Loc(file))
    doc = _read_yaml(text, file)
    if not isinstance(doc, _Map):
        raise SpecError("a spec is a YAML mapping with at least 'name:'", Loc(file, 1))
    unknown = [k for k in doc if k not in TOP_KEYS]
    if unknown:
        k = unknown[0]
        raise SpecError(f"unknown section {short_repr(k)}; known: {', '.join(TOP_KEYS)}", Loc(file, doc.lines[k]), (_sym(k),))
    name = doc.get("name")
    if not isinstance(name, str):
        raise SpecError("the spec needs 'name: <identifier>'", Loc(file, doc.lines.get("name", 1)))
    check_name(name, Loc(file, doc.lines.get("name", 1)), "spec name")
    figure = doc.get("figure", "")
    if isinstance(figure, bool) or not isinstance(figure, (str, int, float)):
        raise SpecError("figure must be a number or text like 10a", Loc(file, doc.lines["figure"]))
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise SpecError("description must be text", Loc(file, doc.lines["description"]))

    indices = []
    for k, v, loc in _items(doc, "index", file):
        iname = check_name(_key_str(k, loc), loc, "index name")
        try:
            lo, hi = parse_range(v, loc)
        except SpecError as e:
            raise SpecError(f"index {iname}: {e.message}", e.loc, (iname, *e.symbols)) from None
        indices.append(ir.Index(iname, lo, hi, loc))
    sizes = []
    for k, v, loc in _items(doc, "sizes", file):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > 100_000:
            raise SpecError(f"size {k} must be an integer between 0 and 100000, got {short_repr(v)}", loc, (_sym(k),))
        sizes.append((check_name(_key_str(k, loc), loc, "size name"), v))
    weights = []
    for k, v, loc in _items(doc, "weights", file):
        weights.append((check_name(_key_str(k, loc), loc, "weight name"), _number(v, loc, f"weight {k}")))
    wnames = frozenset(w for w, _ in weights)
    snames = frozenset(k for k, _ in sizes)
    tasks = []
    for k, v, loc in _items(doc, "tasks", file):
        tname = check_name(_key_str(k, loc), loc, "task name")
        if not isinstance(v, dict) or not v:
            raise SpecError(f"task {tname} sets weights: {{weight: value, ...}}, got {short_repr(v)}", loc, (tname,))
        sets = []
        for w, x in v.items():
            w = _key_str(w, loc)
            if w not in wnames:
                raise SpecError(f"task {tname} sets {w!r}, which is not a weight of the spec (weights: "
                                f"{', '.join(sorted(wnames)) or 'none'})", loc, (tname, w))
            sets.append((w, _number(x, loc, f"task {tname}: weight {w}")))
        tasks.append((tname, tuple(sets)))

    variables = [_variable(k, v, loc) for k, v, loc in _items(doc, "variables", file)]
    modules = []
    for k, v, loc in _items(doc, "modules", file):
        mname = check_name(_key_str(k, loc), loc, "module name")
        kind, args, kwargs, trainable = parse_module(v, loc)
        modules.append(ir.ModDecl(mname, kind, args, kwargs, trainable, loc))
    functions = []
    for k, v, loc in _items(doc, "functions", file):
        target = parse_target(_key_str(k, loc), loc)
        functions.append(ir.Function(target, parse_expr(v, loc, wnames), _loop_of(target, loc, snames), loc))
    energies = []
    for k, v, loc in _items(doc, "energy", file):
        target = parse_target(_key_str(k, loc), loc)
        loop = None
        if target.index is not None:
            if not target.index.is_Symbol:
                raise SpecError(f"an energy summed over an index is written name[t], got {short_repr(k)}", loc, (target.name,))
            loop = target.index.name
        energies.append(ir.Energy(target.name, parse_expr(v, loc, wnames), loop, loc))
    regs = []
    for k, v, loc in _items(doc, "regularizers", file):
        regs.append(ir.BatchReg(check_name(_key_str(k, loc), loc), parse_expr(v, loc, wnames), loc))
    return ir.Graph(name, str(figure), description, tuple(indices), tuple(sizes), tuple(weights),
                    tuple(variables), tuple(modules), tuple(functions), tuple(energies), tuple(regs), tuple(tasks),
                    file)


def _loop_of(target: ir.Ref, loc: Loc, sizes: frozenset = frozenset()) -> str | None:
    """The index a binding loops over: the one free symbol of its target's index that is not a size."""
    if target.index is None:
        return None
    syms = sorted(s.name for s in target.index.free_symbols if s.name not in sizes)
    if len(syms) > 1:
        raise SpecError(f"{ir.ref_str(target)}: a target index may use one index variable, got {syms}", loc, (target.name,))
    return syms[0] if syms else None


def load(path: str | os.PathLike) -> ir.Graph:
    """Read a spec file into an (unchecked) Graph."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read spec: {exc.strerror}", Loc(str(path))) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(*_not_utf8(raw, exc.start, str(path))) from None
    return loads(text, str(path))


@dataclass(frozen=True)
class ColumnLoc(Loc):
    """A :class:`~ebmgraph.errors.Loc` with a 1-based column, printed ``FILE:LINE:COL``."""

    col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}" if self.line and self.col else super().__str__()


def _not_utf8(raw: bytes, bad: int, file: str) -> tuple[str, ColumnLoc]:
    """The message and place of the first byte at ``bad`` that is not UTF-8: line and column
    (in characters, as an editor counts them) so that an editor can jump to it."""
    line = raw.count(b"\n", 0, bad) + 1
    start = raw.rfind(b"\n", 0, bad) + 1
    col = len(raw[start:bad].decode("utf-8", errors="replace")) + 1
    return (f"spec is not UTF-8 text: byte 0x{raw[bad]:02x} at line {line}, column {col} "
            f"(save the file as UTF-8)", ColumnLoc(file, line, col))


# ----------------------------------------------------------------------------- IR -> YAML
class _Dumper(yaml.SafeDumper):
    """Block mappings, flow lists ([64], [-2.0, 2.0]): the way people write specs."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def _represent_str(d: yaml.SafeDumper, v: str):
    # YAML reads NEL and the Unicode line/paragraph separators as line breaks: quote (and escape) them
    style = '"' if any(c in v for c in "\x85\u2028\u2029") else None
    return d.represent_scalar("tag:yaml.org,2002:str", v, style=style)


_Dumper.add_representer(str, _represent_str)


def _module_text(m: ir.ModDecl) -> str:
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        return repr(v) if isinstance(v, float) else str(v)

    if m.kind == "external":
        ins, out = signature_shapes(m.args, m.kw("ranks"))
        shape = lambda s: "[" + ", ".join(val(d) for d in s) + "]"  # noqa: E731
        text = f"external({', '.join(shape(s) for s in ins)} -> {shape(out)})"
        return text if m.trainable else f"fixed({text})"
    parts = [val(a) for a in m.args] + [f"{k}={val(v)}" for k, v in m.kwargs]
    text = f"{m.kind}({', '.join(parts)})" if parts else m.kind
    return text if m.trainable else f"fixed({text})"


def _var_body(v: ir.Var) -> dict:
    if isinstance(v.domain, ir.Discrete):
        body = {v.role: "discrete", "values": v.domain.K}
    else:
        body = {v.role: list(v.shape)}
        if v.domain.bounded:
            body["bounds"] = [v.domain.lo, v.domain.hi]
    if v.sampled:
        body["sampled"] = True
    return body


def dumps(g: ir.Graph) -> str:
    """The Graph as spec text; ``loads(dumps(g)) == g`` for every valid graph."""
    doc: dict = {"name": g.name}
    if g.figure:
        doc["figure"] = g.figure
    if g.description:
        doc["description"] = g.description
    if g.indices:
        doc["index"] = {i.name: f"{i.lo}..{i.hi}" for i in g.indices}
    if g.sizes:
        doc["sizes"] = dict(g.sizes)
    if g.weights:
        doc["weights"] = dict(g.weights)
    if g.tasks:
        doc["tasks"] = {t: dict(ws) for t, ws in g.tasks}
    if g.variables:
        doc["variables"] = {(v.name + (f"[{v.index}]" if v.index else "")): _var_body(v) for v in g.variables}
    if g.modules:
        doc["modules"] = {m.name: _module_text(m) for m in g.modules}
    if g.functions:
        doc["functions"] = {ir.ref_str(f.target): ir.expr_str(f.value) for f in g.functions}
    if g.energies:
        doc["energy"] = {(e.name + (f"[{e.loop}]" if e.loop else "")): ir.expr_str(e.value) for e in g.energies}
    if g.regularizers:
        doc["regularizers"] = {r.name: ir.expr_str(r.value) for r in g.regularizers}
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100, allow_unicode=True)


def save(g: ir.Graph, path: str | os.PathLike) -> None:
    """Write spec text atomically (temporary name, then rename)."""
    from .util import atomic_write_text

    atomic_write_text(path, dumps(g))


__all__ = ["ColumnLoc", "load", "loads", "dumps", "save", "parse_index"]
