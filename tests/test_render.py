"""Diagrams in the paper's notation (Figure 18) and the total energy in LaTeX.

Oracles: the element graph that the checker builds independently (which variables each
energy term and function reads, step by step), the IR's roles, graphviz/XML/PNG parsers,
sympy's LaTeX parser (round trip), and golden files for the text outputs.
Regenerate goldens with ``python -m ebmgraph.render --update-goldens`` or
``EBMGRAPH_UPDATE_GOLDENS=1 pytest tests/test_render.py``.
"""
from __future__ import annotations

import os
import re
import shutil
import string
import xml.etree.ElementTree as ET
from pathlib import Path

import pydot
import pytest
import sympy

import ebmgraph
from ebmgraph import ir
from ebmgraph.cli import main
from ebmgraph.render import (GraphvizMissing, energy_sympy, latex, name_html, render, repr_mimebundle, to_dot,
                             to_svg, visible_steps)
from ebmgraph.render.draw import ACTION_COLOR, MAX_STEPS
from ebmgraph.render.goldens import GOLDENS, golden_path, produce
from ebmgraph.render.notation import coef_text, split_terms

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="graphviz's `dot` is not installed (apt-get install graphviz)")


def _spec(stem: str) -> Path:
    p = ROOT / "specs" / f"{stem}.yaml"
    assert p.exists(), f"specs/{stem}.yaml is missing"
    return p


# ----------------------------------------------------------------------------- DOT parsing helpers
def _parse(dot_text: str):
    """(nodes {id: attrs}, edges [(a, b, attrs)]) of a DOT text, through pydot."""
    (g,) = pydot.graph_from_dot_data(dot_text)
    nodes, edges = {}, []

    def visit(sg):
        for n in sg.get_nodes():
            name = n.get_name().strip('"')
            if name not in ("node", "edge", "graph"):
                nodes.setdefault(name, {}).update({k: str(v).strip('"') for k, v in n.get_attributes().items()})
        for e in sg.get_edges():
            edges.append((e.get_source().strip('"'), e.get_destination().strip('"'),
                          {k: str(v).strip('"') for k, v in e.get_attributes().items()}))
        for s in sg.get_subgraphs():
            visit(s)

    visit(g)
    return nodes, [e for e in edges if e[2].get("style") != "invis"]


def _element(nid: str) -> tuple[str, int]:
    m = re.fullmatch(r"v:(\w+)(?:\[(\d+)\])?", nid)
    assert m, f"not an unrolled variable node: {nid}"
    return m.group(1), int(m.group(2) or 0)


def _reads(nid: str, edges) -> set[tuple[str, int]]:
    """The variable elements a box reads: joined directly, or through nested function boxes.
    Lines of energy terms are undirected (dir=none), so either end may be the box."""
    out = set()
    for a, b, at in edges:
        if at.get("dir") == "none" and a == nid:
            a, b = b, a
        if b != nid:
            continue
        if a.startswith("v:"):
            out.add(_element(a))
        elif a.startswith("f:"):
            out |= _reads(a, edges)
    return out


def _red(color: str) -> bool:
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return r >= 0x99 and g < 0x60 and b < 0x60


# ----------------------------------------------------------------------------- structure
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_spec_draws_figure18_symbols_and_connects_terms_to_what_they_read(spec):
    g = ebmgraph.load(spec)
    chk = ebmgraph.check(g)
    nodes, edges = _parse(to_dot(g))
    E = chk.elements
    seen_terms = set()
    for nid, at in nodes.items():
        style = at.get("style", "")
        if nid.startswith("v:"):
            name, _ = _element(nid)
            v = g.var(name)
            role = v.role if v is not None else "derived"
            assert at["shape"] == "circle", nid
            if role in ("observed", "derived"):
                assert "filled" in style, f"{nid} ({role}) must be a filled circle"
            else:
                assert "filled" not in style, f"{nid} ({role}) must be a hollow circle"
            if role == "action":
                assert at["color"] == ACTION_COLOR, f"{nid}: actions are marked as the actor's"
        elif nid.startswith("f:"):
            assert at["shape"] == "box" and "rounded" in style, nid
            if "/" not in nid:  # a top-level function box: reads what the checker says, writes its target
                target = _element("v:" + nid[2:])
                assert _reads(nid, edges) == {n for n in E.predecessors(target)}, nid
                assert ("f:" + nid[2:], "v:" + nid[2:]) in {(a, b) for a, b, _ in edges}
        elif nid.startswith("e:"):
            assert at["shape"] == "box" and "filled" in style and _red(at["color"]), nid
            m = re.fullmatch(r"e:(\w+)(?:\[(\d+)\])?(?:#\d+)?", nid)
            seen_terms.add((m.group(1), int(m.group(2) or 0)))
        elif nid.startswith("r:"):
            assert _reads(nid, edges) == set(E.predecessors(("reg:" + nid[2:], 0)))
    # every energy term at every drawn step is joined to exactly the elements it reads
    for name, t in seen_terms:
        comps = [n for n in nodes if re.fullmatch(rf"e:{name}(\[{t}\])?(#\d+)?", n)
                 and (f"[{t}]" in n or not g_loop(g, name))]
        got = set().union(*(_reads(n, edges) for n in comps))
        assert got == set(E.predecessors(("energy:" + name, t))), f"{spec.stem}: {name}[{t}]"
        for n in comps:  # plain lines, as in a factor graph
            assert all(at.get("dir") == "none" for a, b, at in edges if n in (a, b)), n
    # every term is drawn at every visible step
    for en in g.energies:
        steps = visible_steps(*chk.ranges[en.loop]) if en.loop else [0]
        assert {(en.name, t) for t in steps} <= seen_terms, en.name


def g_loop(g: ir.Graph, term: str) -> str | None:
    return next(e.loop for e in g.energies if e.name == term)


def test_long_horizons_unroll_a_window_with_an_ellipsis():
    spec = _spec("fig04_mode2")
    T = 3 * MAX_STEPS
    nodes, edges = _parse(to_dot(ebmgraph.load(spec), sizes={"T": T}))
    drawn = sorted(int(m.group(1)) for n in nodes if (m := re.fullmatch(r"e:cost\[(\d+)\]", n)))
    assert drawn == visible_steps(0, T - 1) and len(drawn) < MAX_STEPS
    gaps = [n for n in nodes if n.startswith("gap:s[")]
    assert len(gaps) == 1
    before = {a for a, b, _ in edges if b == gaps[0]}
    after = {b for a, b, _ in edges if a == gaps[0]}
    assert before == {f"v:s[{drawn[2] + 1}]"} and after == {f"v:s[{drawn[3]}]"}


def test_plates_draws_one_step_in_a_plate_labelled_with_its_range():
    g = ebmgraph.load(_spec("fig04_mode2"))
    text = to_dot(g, plates=True)
    nodes, edges = _parse(text)
    assert [n for n in nodes if n.startswith("e:")] == ["e:cost[t]"]
    (cl,) = [sg for sg in pydot.graph_from_dot_data(text)[0].get_subgraphs() if sg.get_name().startswith('"cluster')]
    idx = g.indices[0]
    assert f"{idx.name} = {idx.lo}..{str(idx.hi).replace(' ', '')}" in cl.get_attributes()["label"]
    inside = {n.get_name().strip('"') for n in cl.get_nodes()}
    assert {"v:s[t]", "v:s[t+1]", "v:a[t]", "e:cost[t]"} <= inside and "v:x" not in inside


def test_two_levels_draw_the_upper_chain_above_with_subgoal_links():
    if not HAS_DOT:
        pytest.skip("graphviz's `dot` is not installed: layout positions need it")
    g = ebmgraph.load(_spec("fig16_hier_planning"))
    from ebmgraph.render import dot_to

    laid = dot_to(to_dot(g), "dot").decode()  # DOT with positions
    nodes, edges = _parse(laid)
    y = {n: float(at["pos"].split(",")[1]) for n, at in nodes.items() if "pos" in at}
    lower = [n for n in y if re.fullmatch(r"v:s\[\d+\]", n)]
    upper = [n for n in y if re.fullmatch(r"v:s2\[\d+\]", n)]
    assert len({y[n] for n in lower}) == 1 and len({y[n] for n in upper}) == 1, "each level is one row"
    assert y[upper[0]] > y[lower[0]], "upper level above the lower (rankdir=BT: larger y is higher)"
    sub = [n for n in nodes if n.startswith("e:subgoal")]
    assert sub and all(any(v[0] == "s" for v in _reads(n, edges)) and
                       any(v[0] == "a2" for v in _reads(n, edges)) for n in sub)


def test_dot_is_deterministic_with_sorted_attributes():
    for spec in SPECS:
        g = ebmgraph.load(spec)
        a, b = to_dot(g), to_dot(ebmgraph.loads(spec.read_text(), file=str(spec)))
        assert a == b
        for attrs in re.findall(r"\[([^\[\]]*(?:<[^>]*>[^\[\]]*)*)\];", a):
            keys = re.findall(r'(?:^|, )(\w+)=', attrs)
            assert keys == sorted(keys), attrs


# ----------------------------------------------------------------------------- labels
def test_labels_use_the_papers_symbols():
    assert name_html("s_x") == "s<sub>x</sub>"
    assert name_html("s_y_tilde") == "s\u0303<sub>y</sub>"
    assert name_html("z_check") == "\u017e"  # ž, NFC of z + combining caron
    nodes, _ = _parse(to_dot(ebmgraph.load(_spec("fig12_jepa"))))
    assert nodes["v:s_y_tilde"]["label"] == "<s\u0303<sub>y</sub>>"
    nodes, _ = _parse(to_dot(ebmgraph.load(_spec("fig04_mode2"))))
    assert nodes["v:a[0]"]["label"] == "<a[0]>"


@pytest.mark.parametrize("stem", ["fig06_cost", "fig12_jepa"])
def test_energy_lines_carry_weights_other_than_one(stem):
    g = ebmgraph.load(_spec(stem))
    nodes, edges = _parse(to_dot(g))
    for en in g.energies:
        comps = split_terms(en.value)
        for ci, (coefs, _) in enumerate(comps):
            nid = f"e:{en.name}" + (f"#{ci}" if len(comps) > 1 else "")
            want = coef_text(coefs)
            labels = {at.get("label") for a, b, at in edges if nid in (a, b)}
            assert labels == {want}, (nid, labels)


# ----------------------------------------------------------------------------- goldens
@pytest.mark.parametrize("stem,kind", GOLDENS, ids=[f"{s}-{k}" for s, k in GOLDENS])
def test_golden(stem, kind):
    spec = _spec(stem)
    got = produce(spec, kind)
    path = golden_path(ROOT, stem, kind)
    if os.environ.get("EBMGRAPH_UPDATE_GOLDENS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got)
        pytest.skip(f"wrote {path.relative_to(ROOT)}; review and commit it")
    assert path.exists(), f"{path} is missing: run python -m ebmgraph.render --update-goldens and review"
    assert got == path.read_text(), f"{path} is stale: run python -m ebmgraph.render --update-goldens and review"


def test_gallery_dot_files_are_current():
    gallery = ROOT / "docs" / "gallery"
    if not any(gallery.glob("*.dot")):
        pytest.skip("docs/gallery has no DOT files yet (make gallery)")
    stale = [s.stem for s in SPECS
             if not (gallery / f"{s.stem}.dot").exists()
             or (gallery / f"{s.stem}.dot").read_text() != to_dot(ebmgraph.load(s))]
    assert not stale, f"docs/gallery is stale for {stale}: run `make gallery`"


# ----------------------------------------------------------------------------- LaTeX
@pytest.mark.parametrize("stem", ["fig06_cost", "fig12_jepa"])
def test_latex_energy_parses_back_to_the_same_expression(stem):
    pytest.importorskip("antlr4", reason="sympy's LaTeX parser needs antlr4-python3-runtime==4.11")
    from sympy.core.function import AppliedUndef
    from sympy.parsing.latex import parse_latex

    eq = energy_sympy(ebmgraph.load(_spec(stem)))
    assert latex(ebmgraph.load(_spec(stem))) == sympy.latex(eq)
    # the parser knows one-letter function names only: rename, print, parse, compare
    letters = iter(c for c in string.ascii_uppercase if c != "E")
    fmap = {n: n if len(n) == 1 else next(letters) for n in sorted({type(f).__name__ for f in eq.atoms(AppliedUndef)})}
    eq2 = eq.replace(lambda e: isinstance(e, AppliedUndef), lambda e: sympy.Function(fmap[type(e).__name__])(*e.args))
    text = sympy.latex(eq2)
    for a, b in ((r"{\left(", "("), (r" \right)}", ")"), (r"\left(", "("), (r"\right)", ")")):
        text = text.replace(a, b)
    parsed = parse_latex(text).xreplace({sympy.Symbol(sympy.latex(s)): s for s in eq2.free_symbols})
    assert parsed.lhs == eq2.lhs
    assert sympy.simplify(parsed.rhs - eq2.rhs) == 0


def test_latex_sums_time_indexed_terms_over_their_index():
    g = ebmgraph.load(_spec("fig04_mode2"))
    rhs = energy_sympy(g).rhs
    (s,) = rhs.atoms(sympy.Sum)
    (en,) = g.energies
    idx = g.index(en.loop)
    assert s.limits == ((sympy.Symbol(en.loop, integer=True), idx.lo, idx.hi),)


# ----------------------------------------------------------------------------- pictures and the CLI
@needs_dot
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_spec_renders_valid_svg_and_png(spec, tmp_path):
    svg = render(spec, tmp_path / "a.svg")
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    png = render(spec, tmp_path / "a.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_cli_writes_by_extension_and_one_file_per_spec(tmp_path, capsys):
    spec = str(_spec("fig12_jepa"))
    assert main(["render", spec, "-o", str(tmp_path / "j.dot")]) == 0
    assert (tmp_path / "j.dot").read_text() == to_dot(ebmgraph.load(spec))
    assert main(["render", spec, "--latex"]) == 0
    assert capsys.readouterr().out.strip() == latex(ebmgraph.load(spec))
    assert main(["render", spec, "--latex", "-o", str(tmp_path / "c.dot")]) == 0
    (g,) = pydot.graph_from_dot_data((tmp_path / "c.dot").read_text())
    import html

    from ebmgraph.render.notation import caption_text

    # the picture shows readable text (graphviz cannot typeset LaTeX); the DOT keeps the LaTeX
    assert html.unescape(g.get_attributes()["label"].strip("<>")) == caption_text(ebmgraph.load(spec))
    assert g.get_attributes()["comment"].strip('"').replace("\\\\", "\\") == latex(ebmgraph.load(spec))
    two = [str(p) for p in SPECS[:2]]
    assert main(["render", *two, "-o", str(tmp_path / "many"), "--format", "dot"]) == 0
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == sorted(Path(p).stem + ".dot" for p in two)
    if HAS_DOT:
        for ext, magic in ((".svg", b"<?xml"), (".png", b"\x89PNG"), (".pdf", b"%PDF")):
            assert main(["render", spec, "-o", str(tmp_path / f"j{ext}")]) == 0
            assert (tmp_path / f"j{ext}").read_bytes().startswith(magic)


def test_without_dot_text_works_and_pictures_fail_with_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EBMGRAPH_DOT", str(tmp_path / "no-such-dot"))
    spec = str(_spec("fig12_jepa"))
    assert main(["render", spec, "-o", str(tmp_path / "ok.dot")]) == 0
    capsys.readouterr()
    assert main(["render", spec, "-o", str(tmp_path / "x.svg")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "graphviz" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "x.svg").exists()
    with pytest.raises(GraphvizMissing):
        to_svg(ebmgraph.load(spec))
    assert set(repr_mimebundle(ebmgraph.load(spec))) == {"text/plain"}


@needs_dot
def test_mimebundle_and_gallery(tmp_path):
    ebm = ebmgraph.compile(_spec("fig12_jepa"))
    bundle = repr_mimebundle(ebm)
    assert set(bundle) == {"image/svg+xml", "text/plain"}
    ET.fromstring(bundle["image/svg+xml"])
    # what Jupyter calls on a compiled model and on a graph
    assert ebm._repr_mimebundle_() == bundle
    assert set(ebm.graph._repr_mimebundle_()) == {"image/svg+xml", "text/plain"}
    specs = [str(p) for p in SPECS[:3]]
    assert main(["render", *specs, "--gallery", str(tmp_path / "gal")]) == 0
    readme = (tmp_path / "gal" / "README.md").read_text()
    for s in specs:
        g = ebmgraph.load(s)
        stem = Path(s).stem
        assert (tmp_path / "gal" / f"{stem}.dot").read_text() == to_dot(g)
        ET.parse(tmp_path / "gal" / f"{stem}.svg")
        assert f"({stem}.svg)" in readme and latex(g) in readme and f"Figure {g.figure}" in readme
