"""Diagrams in the paper's notation (Figure 18): IR -> DOT -> SVG/PNG/PDF, and the total energy in LaTeX.

Rendering returns text first: :func:`to_dot` and :func:`latex` need nothing but Python;
only turning DOT into pictures needs graphviz's ``dot`` program (found on ``PATH``, or
named by the environment variable ``EBMGRAPH_DOT``).

Example:
    >>> import ebmgraph
    >>> from ebmgraph.render import to_dot, latex
    >>> g = ebmgraph.load("specs/fig12_jepa.yaml")
    >>> to_dot(g).splitlines()[0]
    'digraph "jepa" {'
    >>> latex(g).startswith("E{")
    True
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .. import ir
from ..check import Checked, check
from ..util import atomic_write_bytes, atomic_write_text
from . import notation
from .draw import MAX_STEPS, STYLES, draw, emit, visible_steps
from .notation import energy_sympy, name_html

FORMATS = ("svg", "png", "pdf", "dot")
INSTALL_HINT = ("graphviz's `dot` program is not installed; install graphviz "
                "(apt-get install graphviz | brew install graphviz | conda install graphviz), "
                "or write .dot instead")

__all__ = ["FORMATS", "GraphvizMissing", "MAX_STEPS", "STYLES", "dot_program", "dot_to", "energy_sympy",
           "gallery_dot", "latex", "name_html", "render", "repr_mimebundle", "to_dot", "to_svg", "visible_steps", "write_gallery"]


class GraphvizMissing(RuntimeError):
    """Raised when a picture format is asked for and graphviz's ``dot`` is not installed."""


def _checked(obj, sizes: dict[str, int] | None = None) -> Checked:
    """A Checked record from a Graph, a CompiledEBM, a Checked record or a spec path."""
    if isinstance(obj, Checked):
        return obj if not sizes else check(obj.graph, {**obj.sizes, **sizes})
    chk = getattr(obj, "checked", None)
    if isinstance(chk, Checked):
        return chk if not sizes else check(chk.graph, {**chk.sizes, **sizes})
    if isinstance(obj, (str, os.PathLike)):
        from ..spec import load

        obj = load(obj)
    if isinstance(obj, ir.Graph):
        return check(obj, sizes, analyze=False)
    raise TypeError(f"cannot draw a {type(obj).__name__}; pass an ebmgraph Graph, CompiledEBM or spec path")


def _graph(obj) -> ir.Graph:
    return _checked(obj).graph


def to_dot(graph, *, plates: bool = False, caption: str | None = None,
           sizes: dict[str, int] | None = None) -> str:
    """The DOT text of a graph in the notation of Figure 18 (deterministic; no graphviz needed).

    Args:
        graph: an IR Graph, a CompiledEBM, or a spec path.
        plates: draw one step of each index inside a plate instead of unrolling.
        caption: the figure's caption (graph label), e.g. its LaTeX energy.
        sizes: size overrides for unrolling, e.g. ``{"T": 8}``.
    """
    chk = _checked(graph, sizes)
    return emit(draw(chk, plates=plates), chk.graph.name, caption)


def latex(graph) -> str:
    """The total energy in LaTeX, built with sympy from the IR (eq. 1–3, 11)."""
    return notation.latex(_graph(graph))


def dot_program() -> str | None:
    """The path of graphviz's ``dot``, or None when it is not installed."""
    return shutil.which(os.environ.get("EBMGRAPH_DOT", "dot"))


def dot_to(dot_text: str, fmt: str) -> bytes:
    """Run ``dot -T<fmt>`` on DOT text; raises :class:`GraphvizMissing` without graphviz."""
    exe = dot_program()
    if exe is None:
        raise GraphvizMissing(f"cannot write {fmt.upper()}: {INSTALL_HINT}")
    proc = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode(), capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"dot -T{fmt} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def to_svg(graph, *, plates: bool = False, caption: str | None = None) -> str:
    """The SVG text of a graph (needs graphviz's ``dot``)."""
    return dot_to(to_dot(graph, plates=plates, caption=caption), "svg").decode()


def render(graph, path, *, plates: bool = False, latex_caption: bool = False,
           sizes: dict[str, int] | None = None) -> Path:
    """Write a diagram to ``path``; the format follows its extension (.svg .png .pdf .dot).

    Args:
        graph: an IR Graph, a CompiledEBM, or a spec path.
        path: where to write; written atomically.
        plates: draw time-indexed parts as one step in a plate.
        latex_caption: put the total energy in the caption: readable text in the picture
            (graphviz cannot typeset LaTeX), and the LaTeX itself in the DOT's ``comment``.
    Raises:
        ValueError: unknown extension. GraphvizMissing: a picture format without ``dot``.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt == "gv":
        fmt = "dot"
    if fmt not in FORMATS:
        raise ValueError(f"{path}: unknown picture format {path.suffix!r}; use one of "
                         + ", ".join("." + f for f in FORMATS))
    chk = _checked(graph, sizes)
    cap = notation.caption_text(chk.graph) if latex_caption else None
    text = emit(draw(chk, plates=plates), chk.graph.name, cap,
                comment=notation.latex(chk.graph) if latex_caption else None)
    if fmt == "dot":
        atomic_write_text(path, text)
    else:
        atomic_write_bytes(path, dot_to(text, fmt))
    return path


def repr_mimebundle(obj, include=None, exclude=None) -> dict[str, str]:
    """Jupyter display of a Graph or CompiledEBM: SVG when ``dot`` is installed, text always."""
    chk = _checked(obj)
    bundle = {"text/plain": ir.pretty(chk.graph)}
    if dot_program() is not None:
        try:
            bundle["image/svg+xml"] = dot_to(emit(draw(chk), chk.graph.name, None), "svg").decode()
        except RuntimeError:
            pass
    return bundle


# ----------------------------------------------------------------------------- gallery
def gallery_dot(graph) -> str:
    """The DOT text the gallery holds for a spec (checked against docs/gallery in tests)."""
    return to_dot(graph)


def write_gallery(specs: list[str], out_dir, *, pictures: bool = True) -> list[Path]:
    """Write ``<stem>.dot`` and ``<stem>.svg`` for every spec and a README.md that shows each
    image beside its figure number and its LaTeX energy. Returns the files written."""
    from ..spec import load

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, entries = [], []
    for spec in sorted(specs):
        g = load(spec)
        stem = Path(spec).stem
        dot_text = gallery_dot(g)
        atomic_write_text(out / f"{stem}.dot", dot_text)
        written.append(out / f"{stem}.dot")
        if pictures:
            atomic_write_bytes(out / f"{stem}.svg", dot_to(dot_text, "svg"))
            written.append(out / f"{stem}.svg")
        entries.append((g, stem, spec))
    lines = ["# Gallery: every spec drawn in the paper's notation",
             "",
             "Generated by `make gallery` (`ebmgraph render specs/*.yaml --gallery docs/gallery`); "
             "do not edit by hand. Symbols follow Figure 18: filled circles are observed variables "
             "and outputs of deterministic functions, hollow circles latents, blue hollow circles "
             "actions (driven by the dashed Actor box), rounded boxes deterministic functions, red "
             "boxes energy terms. Time-indexed specs unroll at most "
             f"{MAX_STEPS} steps (the first 3 and last 2 otherwise, with \u201c\u2026\u201d between).",
             ""]
    for g, stem, spec in entries:
        fig = f"Figure {g.figure}" if g.figure else "(no figure)"
        lines += [f"## {fig} \u2014 `{g.name}` (`specs/{Path(spec).name}`)", ""]
        if g.description:
            lines += [g.description.strip(), ""]
        lines += [f"![{g.name}]({stem}.svg)", "", "$$", notation.latex(g), "$$", ""]
    atomic_write_text(out / "README.md", "\n".join(lines))
    written.append(out / "README.md")
    return written
