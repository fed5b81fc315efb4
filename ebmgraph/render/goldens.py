"""The golden files of the renderer: which specs, which outputs, and how to regenerate them.

Run ``python -m ebmgraph.render --update-goldens`` (or ``EBMGRAPH_UPDATE_GOLDENS=1 pytest
tests/test_render.py``) after a deliberate change to the drawing, then review the diff.
"""
from __future__ import annotations

from pathlib import Path

# (spec stem, output kind): kind "dot", "dot-collapsed" or "tex"
GOLDENS: tuple[tuple[str, str], ...] = (
    ("fig04_mode2", "dot"), ("fig04_mode2", "dot-collapsed"), ("fig12_jepa", "dot"),
    ("fig16_hier_planning", "dot"), ("fig18_nondeterministic", "dot"),
    ("fig06_cost", "tex"), ("fig12_jepa", "tex"),
)
_SUFFIX = {"dot": ".dot", "dot-collapsed": ".collapsed.dot", "tex": ".tex"}


def golden_path(root: Path, stem: str, kind: str) -> Path:
    return Path(root) / "tests" / "golden" / f"{stem}{_SUFFIX[kind]}"


def produce(spec: Path, kind: str) -> str:
    """The current output of ``kind`` for a spec file."""
    from ..spec import load
    from . import latex, to_dot

    g = load(spec)
    if kind == "tex":
        return latex(g) + "\n"
    return to_dot(g, plates=kind == "dot-collapsed")


def update_goldens(root: Path) -> list[Path]:
    """Rewrite every golden file whose spec exists; returns the files written."""
    from ..util import atomic_write_text

    out = []
    for stem, kind in GOLDENS:
        spec = Path(root) / "specs" / f"{stem}.yaml"
        if spec.exists():
            path = golden_path(root, stem, kind)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, produce(spec, kind))
            out.append(path)
    return out
