"""``ebmgraph render SPEC... [-o FILE|DIR] [--gallery DIR] [--plates] [--latex]``.

* one spec, ``-o FILE``: the format follows the extension (.svg .png .pdf .dot);
* several specs, ``-o DIR``: one file per spec, ``--format`` picks the format (svg);
* ``--gallery DIR``: ``<stem>.svg`` + ``<stem>.dot`` per spec and a README.md;
* no ``-o``: the DOT text on stdout, or with ``--latex`` the total energy in LaTeX;
  ``--latex`` with ``-o`` puts the energy in the figure's caption.

Without graphviz's ``dot``, picture formats fail with one line saying what to install
(exit status 1); DOT output still works.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..cliargs import parse_sizes, print_errors
from ..errors import SpecError


def cmd_render(args) -> int:
    from ..spec import load
    from . import FORMATS, GraphvizMissing, latex, render, to_dot, write_gallery

    sizes = parse_sizes(args.size)
    status = 0
    try:
        if args.gallery:
            try:
                for p in write_gallery(args.specs, args.gallery):
                    print(f"wrote {p}", file=sys.stderr)
            except GraphvizMissing:
                write_gallery(args.specs, args.gallery, pictures=False)
                raise
            return 0
        out = Path(args.out) if args.out else None
        many = len(args.specs) > 1 or (out is not None and (out.is_dir() or out.suffix == ""))
        if many and out is None:
            print("ebmgraph render: several specs need -o DIR or --gallery DIR", file=sys.stderr)
            return 2
        for spec in args.specs:
            try:
                g = load(spec)
                if out is None:
                    print(latex(g) if args.latex else to_dot(g, plates=args.plates, sizes=sizes),
                          end="\n" if args.latex else "")
                    continue
                if many:
                    out.mkdir(parents=True, exist_ok=True)
                    target = out / f"{Path(spec).stem}.{args.format}"
                else:
                    target = out
                    if target.suffix.lower().lstrip(".") not in FORMATS + ("gv",):
                        print(f"ebmgraph render: {target}: unknown format {target.suffix!r}; use "
                              + ", ".join("." + f for f in FORMATS), file=sys.stderr)
                        return 2
                render(g, target, plates=args.plates, latex_caption=args.latex, sizes=sizes)
                print(f"wrote {target}", file=sys.stderr)
            except SpecError as exc:
                print_errors(exc)
                status = 1
    except GraphvizMissing as exc:
        print(f"ebmgraph render: {exc}", file=sys.stderr)
        return 1
    return status


def register_cli(subparsers) -> None:
    """Add the ``render`` verb to the ``ebmgraph`` command line."""
    p = subparsers.add_parser("render", help="draw specs in the paper's notation (DOT/SVG/PNG/PDF, LaTeX energy)")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("-o", "--out", metavar="FILE|DIR",
                   help="output file (format from the extension: .svg .png .pdf .dot) or a folder for several specs")
    p.add_argument("--format", choices=("svg", "png", "pdf", "dot"), default="svg",
                   help="format of the files written into -o DIR (default svg)")
    p.add_argument("--gallery", metavar="DIR", help="write <stem>.svg, <stem>.dot and README.md for every spec")
    p.add_argument("--plates", "--collapse-time", dest="plates", action="store_true",
                   help="draw one time step inside a plate instead of unrolling (plate notation)")
    p.add_argument("--latex", action="store_true",
                   help="print the total energy in LaTeX; with -o, put it in the figure's caption")
    p.add_argument("--size", action="append", metavar="NAME=INT", help="override a size, e.g. T=16")
    p.set_defaults(fn=cmd_render)
