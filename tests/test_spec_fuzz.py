"""Property tests of the spec reader: whatever text comes in, the only exception that
comes out of ``loads`` -> ``check`` -> ``compile`` is :class:`ebmgraph.SpecError`, and
nothing in a spec is ever executed (ARCHITECTURE.md: "a spec ... from disk is data").

Oracle: the exception type (and that its message starts with the file name). Inputs:
(a) random text and random YAML structures, (b) mutations of the specs in ``specs/``,
(c) expression strings from a small grammar with hostile tokens mixed in. About 2,400
examples in all, derandomized so that CI sees the same ones every run.
"""
from __future__ import annotations

import keyword
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ebmgraph
from ebmgraph.errors import Loc, SpecError
from ebmgraph.expr import parse_expr, parse_index, parse_module, parse_range, parse_target

SPEC_DIR = Path(__file__).resolve().parent.parent / "specs"
FILE = "fuzz.yaml"
_BIG = 4096  # compile only what fits in memory: no dimension, length or module argument above this


def spec_files() -> list[Path]:
    """The spec files present now (specs/ grows while others work, so never cache this)."""
    return sorted(SPEC_DIR.glob("*.yaml"))


def _fuzz_settings(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def _small_enough(chk) -> bool:
    ints = [a for m in chk.modules.values() for a in m.args if isinstance(a, int)]
    ints += [d for s in chk.shapes.values() for d in s] + list(chk.lengths.values())
    return all(abs(i) <= _BIG for i in ints)


def run_pipeline(text: str) -> str:
    """loads -> check -> compile; returns how far it got. Only SpecError may escape.

    Returns:
        'spec-error', 'checked' (compile skipped: too big to build safely) or 'compiled'.
    """
    try:
        g = ebmgraph.loads(text, FILE)
        chk = ebmgraph.check(g)
        if not _small_enough(chk):
            return "checked"
        ebmgraph.compile(g)
        return "compiled"
    except SpecError as e:
        assert str(e).startswith(FILE), f"error without the file name: {e}"
        return "spec-error"


# ----------------------------------------------------------------------------- (a) random text
@_fuzz_settings(300)
@given(st.text(max_size=300))
def test_random_text(text):
    run_pipeline(text)


_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(["observed", "latent", "action", "discrete", "0..T-1", "mlp(3, 4)",
                                           "x", "s[t+1]", "F(x)", "[3]", "l1", "sq_dist(a, b)"]))
_yamlish = st.recursive(_scalar, lambda kids: st.one_of(
    st.lists(kids, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none()), kids, max_size=4)),
    max_leaves=20)
_top = st.dictionaries(st.sampled_from(ebmgraph.spec.TOP_KEYS + ("bogus",)), _yamlish, max_size=8)


@_fuzz_settings(500)
@given(st.one_of(_yamlish, _top, _top.map(lambda d: {"name": "g", **d})))
def test_random_yaml_structures(doc):
    run_pipeline(yaml.safe_dump(doc, allow_unicode=True))


_nasty_yaml = [
    "a: &x [1, *x]\nname: g",                                    # recursive alias
    "name: g\nsizes: &a {T: 3, <<: *a}",                        # merge of itself
    "name: g\nvariables: !!python/object/apply:os.system ['true']",
    "name: !!binary aGVsbG8=\n",
    "? [a, b]\n: 1\n",
    "? {a: 1}\n: 1\n",
    "name: g\nsizes: {T: 99999999999999999999999999999999999999999999999999}\n",
    "name: g\nweights: {u: 1" + "0" * 5000 + "}\n",
    "name: g\n" + "x: " + "[" * 3000 + "]" * 3000 + "\n",
    "name: g\n" + "x:\n" + "".join(" " * i + "- \n" for i in range(0, 600, 2)),
    "name: g\ndescription: 2001-13-45\n",
    "name: g\nvariables: {x: {observed: !!set {3}}}\n",
    "\ufeffname: g\n\x00",
    "name: g\nenergy: {E: \"F(\\u0000)\"}\n",
    "name: g\nsizes: {T: 3}\nindex: {t: 0..T-1}\nvariables: {'x[t]': {observed: [3]}}\n"
    "modules: {F: 'sq_dist'}\nenergy: {'E[t]': 'F(x[t*t*t*t*t*t*t*t*t*t*t*t*t*t*t*t*t*t*t*t])'}\n",
]


@pytest.mark.parametrize("text", _nasty_yaml, ids=range(len(_nasty_yaml)))
def test_hostile_yaml(text):
    assert run_pipeline(text) == "spec-error"


# ----------------------------------------------------------------------------- (b) mutations
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|\S")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_numbers = st.one_of(st.integers(-3, 70), st.sampled_from(["0", "-1", "1e400", "-1e400", ".nan", ".inf", "nan",
                                                          "1" + "0" * 40, "99999999", "2.5", "0x10", "1_0"]))


@st.composite
def mutated_spec(draw):
    files = spec_files()
    text = files[draw(st.integers(0, len(files) - 1))].read_text()
    for _ in range(draw(st.integers(1, 3))):
        lines = text.split("\n")
        op = draw(st.sampled_from(["del", "dup", "swap", "token", "unicode", "number", "indent"]))
        if op in ("del", "dup", "indent"):
            i = draw(st.integers(0, len(lines) - 1))
            if op == "del":
                del lines[i]
            elif op == "dup":
                lines.insert(i, lines[i])
            else:
                lines[i] = draw(st.sampled_from(["", " ", "  ", "\t", "- "])) + lines[i].lstrip()
            text = "\n".join(lines)
        elif op == "swap" and len(text) > 1:
            i = draw(st.integers(0, len(text) - 2))
            text = text[:i] + text[i + 1] + text[i] + text[i + 2:]
        else:
            spans = [m.span() for m in (_NUMBER if op == "number" else _TOKEN).finditer(text)]
            if not spans:
                continue
            a, b = spans[draw(st.integers(0, len(spans) - 1))]
            if op == "token":
                new = draw(st.sampled_from([text[x:y] for x, y in spans]))
            elif op == "unicode":
                new = draw(st.text(min_size=0, max_size=6))
            else:
                new = str(draw(_numbers))
            text = text[:a] + new + text[b:]
    return text


@_fuzz_settings(800)
@given(mutated_spec())
def test_mutated_specs(text):
    run_pipeline(text)


def test_specs_dir_is_fuzzed():
    """The mutation test has material: at least the two specs named in the brief are there."""
    names = {p.name for p in spec_files()}
    assert {"fig04_mode2.yaml", "fig12_jepa.yaml"} <= names
    for p in spec_files():
        assert run_pipeline(p.read_text()) == "compiled", p.name


# ----------------------------------------------------------------------------- (c) expression grammar
_HOSTILE = ["__import__", "__class__", ".", "lambda x: x", "**", "'os'", '"s"', "b'x'", "__", "eval", "exec",
            "os.system", "[]", "{}", "...", ":", ";", "\\", "@", "if", "not", "yield", "await", "x:=1", "f'{x}'",
            "1j", "0x1F", "1e999", "9" * 400, "\u00b2", "\uff58", "x\u200b", "t//0", "%", "~", "<<", "==", "*a",
            "k=1", "𝑥", "ǅ"]
_atom = st.one_of(
    st.sampled_from(["x", "y", "z", "s", "t", "T", "a", "F", "Pred", "C", "u1", "sq_dist", "floor", "_x", "x_"]),
    st.integers(-10**20, 10**20).map(str),
    st.floats(allow_nan=False, width=32).map(repr),
    st.sampled_from(_HOSTILE))


def _combine(kids):
    return st.one_of(
        st.tuples(kids, st.sampled_from(["+", "-", "*", "/", "//", "**", "%", " ", ","]), kids).map("".join),
        st.tuples(st.sampled_from(["F", "Pred", "sq_dist", "floor", "fixed", "mlp", "x.y", "__import__"]),
                  st.lists(kids, max_size=3)).map(lambda p: f"{p[0]}({', '.join(p[1])})"),
        st.tuples(st.sampled_from(["s", "x", "a"]), kids).map(lambda p: f"{p[0]}[{p[1]}]"),
        kids.map(lambda k: f"({k})"), kids.map(lambda k: f"-{k}"))


expressions = st.recursive(_atom, _combine, max_leaves=12)


@_fuzz_settings(500)
@given(expressions)
def test_expression_parsers(text):
    loc = Loc(FILE, 7)
    for parse in (parse_expr, parse_index, parse_target, parse_module, parse_range):
        try:
            parse(text, loc)
        except SpecError as e:
            assert e.loc == loc


_SLOTS = ["functions: {{s_x: '{e}'}}", "energy: {{E: '{e}'}}", "modules: {{F: '{e}'}}", "index: {{t: '0..{e}'}}",
          "variables: {{'{e}': {{observed: [3]}}}}", "functions: {{'{e}': F(x)}}", "energy: {{'{e}': F(x)}}",
          "variables: {{x: {{observed: ['{e}']}}}}"]
_BASE = "name: g\nsizes: {T: 3}\nvariables:\n  x: {observed: [3]}\n"


@_fuzz_settings(300)
@given(expressions, st.sampled_from(_SLOTS))
def test_expressions_in_every_field(text, slot):
    extra = "" if slot.startswith("modules") else "modules: {F: sq_dist}\n"
    run_pipeline(_BASE + extra + slot.format(e=text.replace("'", "''")) + "\n")


# ----------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("path", spec_files(), ids=lambda p: p.stem)
def test_round_trip_spec_files(path):
    g = ebmgraph.load(path)
    text = ebmgraph.dumps(g)
    assert ebmgraph.loads(text) == g
    assert ebmgraph.dumps(ebmgraph.loads(text)) == text


def test_round_trip_every_current_spec():
    """Specs added after collection are covered too (the list above is fixed at import)."""
    for p in spec_files():
        assert ebmgraph.loads(ebmgraph.dumps(ebmgraph.load(p))) == ebmgraph.load(p), p.name


_ident = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,5}", fullmatch=True).filter(
    lambda s: not keyword.iskeyword(s) and s not in ("true", "false", "True", "False"))
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def _iexpr_text(names):
    """Integer index expressions over ``names`` as a person writes them (t+1, 2*k, T//2, T*T)."""
    leaf = st.one_of(st.integers(-50, 50).map(str), st.sampled_from(names))
    return st.recursive(leaf, lambda k: st.one_of(
        st.tuples(k, st.sampled_from(["+", "-", "*"]), k).map(lambda p: f"({p[0]}{p[1]}{p[2]})"),
        st.tuples(k, st.integers(1, 9)).map(lambda p: f"({p[0]})//{p[1]}"),
        k.map(lambda x: f"-({x})")), max_leaves=4)


def _vexpr_text(refs, fns, weights):
    """Value expressions as (text, precedence); a right operand never has its parent's precedence
    (see test_expr_str_right_nesting for why)."""
    atoms = [st.sampled_from(refs).map(lambda r: (r, 3)),
             st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: (repr(v), 3 if v >= 0 else 0))]
    if weights:
        atoms.append(st.sampled_from(weights).map(lambda w: (w, 3)))

    def grow(k):
        def binop(p):
            (l, lp), op, (r, rp) = p
            l = l if lp >= _PREC[op] else f"({l})"
            r = r if rp > _PREC[op] else f"({r})"
            return f"{l} {op} {r}", _PREC[op]
        return st.one_of(
            st.tuples(k, st.sampled_from("+-*/"), k).map(binop),
            st.tuples(st.sampled_from(fns), st.lists(k, min_size=1, max_size=3)).map(
                lambda p: (f"{p[0]}({', '.join(a for a, _ in p[1])})", 3)),
            k.map(lambda e: (f"-{e[0]}" if e[1] == 3 else f"-({e[0]})", 3)))
    return st.recursive(st.one_of(atoms), grow, max_leaves=6).map(lambda e: e[0])


@st.composite
def built_graphs(draw):
    names = draw(st.lists(_ident, min_size=14, max_size=14, unique_by=str.lower))
    idx, sizes, weights, varn, mods, fns, ens = (names[0], names[1:3], names[3:5], names[5:8], names[8:10],
                                               names[10:12], names[12:14])
    b = ebmgraph.GraphBuilder(draw(_ident), figure=draw(st.sampled_from(["", "4", "10a", "12"])),
                              description=draw(st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)))
    for s in sizes:
        b.size(s, draw(st.integers(0, 100_000)))
    b.index(idx, f"{draw(_iexpr_text(sizes))}..{draw(_iexpr_text(sizes))}")
    for w in weights:
        b.weight(w, draw(st.floats(-1e9, 1e9, allow_nan=False)))
    refs = []
    for v in varn:
        role = draw(st.sampled_from(["observed", "latent", "action"]))
        arr = draw(st.booleans())
        key = f"{v}[{idx}]" if arr else v
        refs.append(f"{v}[{draw(_iexpr_text([idx] + sizes))}]" if arr else v)
        if role != "observed" and draw(st.booleans()):
            getattr(b, role)(key, values=draw(st.integers(2, 50)))
            continue
        shape = draw(st.lists(st.one_of(st.integers(1, 512), st.sampled_from(sizes)), min_size=1, max_size=3))
        if role == "observed":
            b.observed(key, shape)
        else:
            bounds = draw(st.one_of(st.none(), st.tuples(st.one_of(st.none(), st.floats(-1e3, 0)),
                                                         st.one_of(st.none(), st.floats(1, 1e3)))))
            kw = {"sampled": draw(st.booleans())} if role == "latent" else {}
            getattr(b, role)(key, shape, bounds=bounds, **kw)
    marg = st.one_of(st.integers(-5, 4096).map(str), st.floats(-10, 10, allow_nan=False).map(repr),
                     st.sampled_from(sizes + ["true", "false", "relu", "tanh"]), _iexpr_text(sizes))
    for m in mods:
        kind = draw(st.sampled_from(["mlp", "linear", "sq_dist", "quadratic", "gru", "conv1d", "l1"]))
        args = draw(st.lists(marg, max_size=4))
        kws = [f"{k}={draw(marg)}" for k in draw(st.lists(st.sampled_from(["act", "residual", "heads"]),
                                                          unique=True, max_size=2))]
        decl = f"{kind}({', '.join(args + kws)})" if args or kws else kind
        b.module(m, f"fixed({decl})" if draw(st.booleans()) else decl)
    expr = _vexpr_text(refs, mods + ["sq_dist", "identity"], weights)
    for f in fns:
        target = draw(st.sampled_from([f, f"{f}[0]", f"{f}[{idx}+1]", f"{f}[2*{idx}]"]))
        b.function(target, draw(expr))
    for e in ens:
        b.energy(draw(st.sampled_from([e, f"{e}[{idx}]"])), draw(expr))
    if draw(st.booleans()):
        b.regularizer("vic", f"vicreg({', '.join(draw(st.lists(st.sampled_from(refs), min_size=1, max_size=2)))})")
    return b.build()


@_fuzz_settings(300)
@given(built_graphs())
def test_round_trip_built_graphs(g):
    text = ebmgraph.dumps(g)
    assert ebmgraph.loads(text) == g
    assert ebmgraph.dumps(ebmgraph.loads(text)) == text


@pytest.mark.parametrize("src", ["a*(b/c)", "a + (b - c)", "a + (b + c)"])
def test_expr_str_right_nesting(src):
    g = ebmgraph.GraphBuilder("g").observed("a", [1]).observed("b", [1]).observed("c", [1]).energy("E", src).build()
    assert ebmgraph.loads(ebmgraph.dumps(g)) == g
