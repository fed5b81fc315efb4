"""The code's structure: imports point down the pipeline only, no private name crosses a module,
the checker accepts the graph after every pass, and compile() is the visible list of stages."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest
from conftest import ROOT, SPECS

import ebmgraph
from ebmgraph import ir
from ebmgraph.passes import PASSES, find_rollouts

# folder in the repository -> the package it installs as (pyproject's package-dir: kernels/ is ebmgraph.kernels)
PACKAGES = {"ebmgraph": "ebmgraph", "kernels": "ebmgraph.kernels"}


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for folder, pkg in PACKAGES.items():
        for p in sorted((root / folder).rglob("*.py")):
            parts = pkg.split(".") + list(p.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = p
    return out


def _imports(root: Path):
    """``(module, imported module, imported names, line)`` for every import, function-local ones included."""
    mods = _modules(root)
    for m, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for a in node.names:
                    yield m, a.name, (), node.lineno
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = m.split(".") if is_pkg else m.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    # `from . import ir` imports the submodule ir; `from .x import f` imports from x
                    yield (m, sub, (), node.lineno) if sub in mods else (m, target, (a.name,), node.lineno)


def import_graph(root: Path) -> nx.DiGraph:
    """Module -> module edges (explicit imports; a submodule import does not count its parents)."""
    mods = _modules(root)
    G = nx.DiGraph()
    G.add_nodes_from(mods)
    for m, target, _, _ in _imports(root):
        while target and target not in mods and "." in target:
            target = target.rsplit(".", 1)[0]
        if target in mods and target != m:
            G.add_edge(m, target)
    return G


def import_cycles(root: Path) -> list[list[str]]:
    return sorted(sorted(c) for c in nx.strongly_connected_components(import_graph(root)) if len(c) > 1)


def private_imports(root: Path) -> list[str]:
    """``from .x import _name`` and ``x._name`` where ``x`` is another ebmgraph/kernels module."""
    mods = _modules(root)
    bad = []
    for m, target, names, line in _imports(root):
        if target.split(".")[0] == "ebmgraph":
            bad += [f"{m}:{line}: from {target} import {n}" for n in names if n.startswith("_") and not n.startswith("__")]
    for m, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        aliases = {}  # names bound to an internal module in this file
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for a in node.names:
                    full = a.name if isinstance(node, ast.Import) else None
                    if isinstance(node, ast.ImportFrom):
                        base = m.split(".") if path.name == "__init__.py" else m.split(".")[:-1]
                        base = base[:len(base) - node.level + 1] if node.level else []
                        full = ".".join(base + ([node.module] if node.module else []) + [a.name]) if node.level \
                            else f"{node.module}.{a.name}"
                    if full in mods and full != m:
                        aliases[a.asname or a.name.split(".")[-1]] = full
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                    and node.attr.startswith("_") and not node.attr.startswith("__"):
                bad.append(f"{m}:{node.lineno}: {aliases[node.value.id]}.{node.attr}")
    return bad


def test_imports_point_down_the_pipeline_only():
    cycles = import_cycles(ROOT)
    assert not cycles, "import cycles (function-local imports included):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle(tmp_path):
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "ebmgraph" / "a.py").write_text("from .b import f\n")
    (tmp_path / "ebmgraph" / "b.py").write_text("def f():\n    from . import a\n")
    assert import_cycles(tmp_path) == [["ebmgraph.a", "ebmgraph.b"]]


def test_no_private_name_crosses_a_module():
    bad = private_imports(ROOT)
    assert not bad, "private names used across modules:\n" + "\n".join(bad)


def test_the_private_name_finder_finds_them(tmp_path):
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "ebmgraph" / "a.py").write_text("def _h():\n    pass\n")
    (tmp_path / "ebmgraph" / "b.py").write_text("from .a import _h\nfrom . import a\na._h()\n")
    assert private_imports(tmp_path) == ["ebmgraph.b:1: from ebmgraph.a import _h", "ebmgraph.b:3: ebmgraph.a._h"]


def test_agent_is_imported_only_by_the_top_floor():
    G = import_graph(ROOT)
    users = {m for m, t in G.edges if t.startswith("ebmgraph.agent") and not m.startswith("ebmgraph.agent")}
    assert users <= {"ebmgraph.cli", "ebmgraph.demo"}, users


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_checker_accepts_the_graph_after_every_pass(path):
    g = ebmgraph.load(path)
    ebmgraph.check(g)
    for p in PASSES:
        g = p(g)
        chk = ebmgraph.check(g)  # a pass that breaks the graph fails here, at that pass
    for r in find_rollouts(chk):
        assert isinstance(r, ir.Rollout)
        f = chk.graph.functions[r.function]
        assert f.target.name == r.state and len(r.order) == len(f.value.args) and r.order.count("s") == 1
        assert len(r.inputs) == len(r.order) - 1 and r.steps == len(chk.loop_values(f.loop))
        assert chk.lengths[r.state] >= r.start + r.steps


def test_compile_reads_as_its_stages():
    """compile() is the visible list: read, check, prune, rewrites, check, rollouts, lower, build."""
    import inspect

    from ebmgraph import compiled

    src = inspect.getsource(compiled.compile)
    stages = ["read_spec(", "check(", "prune(", "run_passes(", "check(", "find_rollouts(", "lower(", "build_modules("]
    at = 0
    for s in stages:
        at = src.index(s, at) + 1
    assert "lower(" not in inspect.getsource(compiled.CompiledEBM.__init__)


def test_one_rule_for_scalar_energies():
    """A [1] output is a scalar energy: written once (conventions.py) and used by every stage."""
    for name in ("check.py", "lower.py", "interp.py"):
        text = (ROOT / "ebmgraph" / name).read_text()
        assert "is_scalar_shape" in text or "as_energy" in text, name
        assert "== (1,)" not in text, name
