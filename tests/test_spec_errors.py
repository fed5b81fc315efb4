"""Hand-written bad specs: each gives one SpecError whose text starts with the file name,
whose line is the offending line, and whose message names the symbols at fault; and
loading a spec never executes anything in it (ARCHITECTURE.md, "Rules").
"""
from __future__ import annotations

import io
import re
import sys
import tokenize
from pathlib import Path

import pytest

import ebmgraph
from ebmgraph import SpecError

FILE = "bad.yaml"
PKG = Path(ebmgraph.__file__).resolve().parent
_H = "name: g\nsizes: {T: 4}\nindex: {t: 0..T-1}\n"   # lines 1-3


def _error(text: str) -> SpecError:
    """The SpecError that loads + check raise for ``text`` (failing if there is none)."""
    with pytest.raises(SpecError) as info:
        ebmgraph.check(ebmgraph.loads(text, FILE))
    return info.value


def _line_of(text: str, needle: str) -> int:
    """1-based line of the only line containing ``needle`` (the oracle for the error's line)."""
    hits = [i for i, line in enumerate(text.split("\n"), 1) if needle in line]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


# (id, spec text, the text of the offending line, symbols the message must name)
CASES = [
    ("unbound-name", _H + "variables:\n  x: {observed: [3]}\nmodules:\n  D: sq_dist\nenergy:\n  E: D(x, q)\n",
     "E: D(x, q)", ["q", "E"]),
    ("duplicate-yaml-key", _H + "variables:\n  x: {observed: [3]}\n  x: {observed: [4]}\n",
     "x: {observed: [4]}", ["x"]),
    ("element-bound-twice", _H + "variables:\n  x: {observed: [3]}\n  a[t]: {action: [3]}\nmodules:\n"
     "  P: mlp(6, 3)\n  D: sq_dist\nfunctions:\n  s[0]: x\n  s[t+1]: P(s[t], a[t])\n  s[1]: x\n"
     "energy:\n  E[t]: D(s[t+1])\n", "s[1]: x", ["s[1]"]),
    ("shape-through-signature", "name: g\nvariables:\n  x: {observed: [30]}\n  y: {observed: [32]}\nmodules:\n"
     "  P: mlp(34, 64, 32)\n  D: sq_dist\nfunctions:\n  p: P(x)\nenergy:\n  E: D(p, y)\n",
     "p: P(x)", ["P", "34", "30"]),
    ("empty-bounds", "name: g\nvariables:\n  x: {observed: [3]}\n  z: {latent: [3], bounds: [1, 0]}\nmodules:\n"
     "  D: sq_dist\nenergy:\n  E: D(x, z)\n", "bounds: [1, 0]", ["z"]),
    ("one-value", "name: g\nvariables:\n  x: {observed: [3]}\n  z: {latent: [3], values: 1}\n",
     "values: 1", ["z", "values"]),
    ("nan-bound", "name: g\nvariables:\n  z: {latent: [3], bounds: [.nan, 1]}\n", "bounds: [.nan", ["z"]),
    ("cycle", "name: g\nvariables:\n  x: {observed: [3]}\nmodules:\n  F: mlp(6, 3)\n  G: mlp(6, 3)\n"
     "  D: sq_dist\nfunctions:\n  a: F(b, x)\n  b: G(a, x)\nenergy:\n  E: D(a)\n", ("a: F(b, x)", "b: G(a, x)"),
     ["a -> b", "cycle"]),
    ("unconstrained-latent", "name: g\nvariables:\n  x: {observed: [3]}\n  z: {latent: [2]}\nmodules:\n"
     "  D: sq_dist\nenergy:\n  E: D(x)\n", "z: {latent: [2]}", ["z", "latent"]),
    ("unknown-kind", "name: g\nvariables:\n  x: {observed: [3]}\nmodules:\n  F: mpl(3, 3)\n  D: sq_dist\n"
     "functions:\n  y: F(x)\nenergy:\n  E: D(y)\n", "F: mpl(3, 3)", ["F", "mpl"]),
    ("bad-range-syntax", "name: g\nsizes: {T: 4}\nindex:\n  t: 0...T\n", "t: 0...T", ["t"]),
    ("empty-range", "name: g\nsizes: {T: 4}\nindex:\n  t: 1..0\n", "t: 1..0", ["t", "empty"]),
    ("index-past-end", _H + "variables:\n  a[t]: {action: [3]}\nmodules:\n  D: sq_dist\nenergy:\n"
     "  E[t]: D(a[t+2])\n", "E[t]: D(a[t+2])", ["a[t+2]", "a[4]", "0..3"]),
    ("unknown-section", "name: g\nvariabels:\n  x: {observed: [3]}\n", "variabels:", ["variabels"]),
    ("attribute-in-energy", "name: g\nenergy:\n  E: x.y(1)\n", "E: x.y(1)", ["attribute"]),
    ("huge-number", "name: g\nenergy:\n  E: 1" + "0" * 400 + " * F(x)\n", "E: 1000", ["number"]),
    ("control-character", "name: g\ndescription: a\x07b\n", "description", ["U+0007"]),
    ("bad-yaml", "name: g\nvariables:\n  x: {observed: [3]\n  y: 2\n", "y: 2", ["YAML"]),
]


@pytest.mark.parametrize("text,line_text,symbols", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_names_file_line_and_symbols(text, line_text, symbols):
    err = _error(text)
    # a cycle may be reported at any of its members' lines
    lines = {_line_of(text, t) for t in (line_text if isinstance(line_text, tuple) else (line_text,))}
    assert err.loc.line in lines, str(err)
    assert str(err).startswith(f"{FILE}:{err.loc.line}:"), str(err)
    for s in symbols:
        assert s in err.message, (s, err.message)


def test_all_errors_are_reported_in_file_order():
    """Two independent mistakes: both come back, each with its own line."""
    text = ("name: g\nvariables:\n  x: {observed: [3]}\n  z: {latent: [2], bounds: [2, 1]}\n"
            "modules:\n  D: sq_dist\nenergy:\n  E: D(x, z, w)\n")
    err = _error(text)
    lines = {e.loc.line for e in getattr(err, "errors", [err])}
    assert {_line_of(text, "bounds: [2, 1]")} <= lines
    assert str(err).startswith(f"{FILE}:")


# ----------------------------------------------------------------------------- nothing is executed
_FIELDS = {
    "functions": "functions:\n  y: {p}\n", "energy": "energy:\n  E: {p}\n", "modules": "modules:\n  F: {p}\n",
    "index": "index:\n  t: 0..{p}\n", "sizes": "sizes:\n  T: {p}\n", "weights": "weights:\n  u: {p}\n",
    "variable-key": "variables:\n  {p}: {{observed: [3]}}\n", "variable-shape": "variables:\n  x: {{observed: [{p}]}}\n",
    "function-key": "functions:\n  {p}: F(x)\n", "energy-key": "energy:\n  {p}: F(x)\n",
    "regularizers": "regularizers:\n  r: {p}\n", "name": "", "description": "description: {p}\n",
}
_PAYLOADS = ["__import__('os').system('touch {m}')", "exec(\"open('{m}', 'w')\")", "eval(\"open('{m}', 'w')\")",
             "open('{m}', 'w').write('x')", "(lambda: __import__('os').system('touch {m}'))()",
             "[c for c in ().__class__.__base__.__subclasses__()]"]


@pytest.mark.parametrize("field", sorted(_FIELDS))
@pytest.mark.parametrize("payload", range(len(_PAYLOADS)))
def test_code_in_a_spec_is_never_run(tmp_path, field, payload):
    marker = tmp_path / "executed"
    code = _PAYLOADS[payload].format(m=marker)
    quoted = '"' + code.replace("\\", "\\\\").replace('"', '\\"') + '"'
    body = f"name: {quoted}\n" if field == "name" else "name: g\n" + _FIELDS[field].format(p=quoted)
    spec = tmp_path / "evil.yaml"
    spec.write_text(body)
    if field == "description":  # plain text: it loads as text, and nothing reads it as code
        assert ebmgraph.load(spec).description == code
    else:
        with pytest.raises(SpecError) as info:
            g = ebmgraph.load(spec)
            ebmgraph.compile(g)
        assert str(info.value).startswith(str(spec))
    assert not marker.exists()


def test_yaml_tags_cannot_construct_objects(tmp_path):
    marker = tmp_path / "executed"
    for tag in ["!!python/object/apply:os.system", "!!python/object/new:os.system", "!!python/name:os.system"]:
        text = f"name: g\nsizes: {tag} ['touch {marker}']\n"
        with pytest.raises(SpecError):
            ebmgraph.loads(text, FILE)
    assert not marker.exists()


def _code_tokens(path: Path) -> list[tokenize.TokenInfo]:
    """NAME and OP tokens of a source file: comments and strings (docstrings) are not code."""
    toks = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return [t for t in toks if t.type in (tokenize.NAME, tokenize.OP)]


def test_package_source_never_evaluates_text():
    """No eval/exec (but compiled.py's exec of generated code), pickle, unsafe yaml.load or sympify."""
    problems = []
    for path in sorted(PKG.rglob("*.py")):
        toks = _code_tokens(path)
        rel = path.relative_to(PKG).as_posix()
        for i, t in enumerate(toks):
            prev = toks[i - 1].string if i else ""
            nxt = toks[i + 1].string if i + 1 < len(toks) else ""
            where = f"{rel}:{t.start[0]}"
            if t.string in ("eval", "exec") and nxt == "(" and prev != "." and not (t.string == "exec" and rel == "compiled.py"):
                problems.append(f"{where}: {t.string}(")
            if re.fullmatch(r"c?[Pp]ickle|dill|marshal|shelve|sympify|parse_expr", t.string) \
                    and not (t.string == "parse_expr" and prev != "."):  # our own expr.parse_expr is safe
                problems.append(f"{where}: {t.string}")
            if prev == "." and t.string in ("load", "load_all", "unsafe_load", "full_load") \
                    and i >= 2 and toks[i - 2].string == "yaml":
                depth, j, args = 0, i + 1, []
                while j < len(toks):
                    depth += toks[j].string in "([{"
                    depth -= toks[j].string in ")]}"
                    args.append(toks[j].string)
                    if depth == 0:
                        break
                    j += 1
                if not {"SafeLoader", "CSafeLoader", "_Loader"} & set(args):
                    problems.append(f"{where}: yaml.{t.string} without SafeLoader")
    assert not problems, "\n".join(problems)


def test_source_scan_catches_what_it_should(tmp_path, monkeypatch):
    """The scan above is not vacuous: it flags a file that does each forbidden thing."""
    bad = tmp_path / "bad.py"
    bad.write_text("import pickle\nimport yaml\nx = eval('1')\nyaml.load(s)\nfrom sympy import sympify\n"
                   "'''eval( in a docstring is fine'''\nm.eval()\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", tmp_path)
    with pytest.raises(AssertionError) as info:
        test_package_source_never_evaluates_text()
    msg = str(info.value)
    for what in ["bad.py:1: pickle", "bad.py:3: eval(", "bad.py:4: yaml.load", "bad.py:5: sympify"]:
        assert what in msg, what
    assert "bad.py:6" not in msg and "bad.py:7" not in msg
