"""``ebmgraph bench``: a thin door to the repository's ``benchmarks/`` folder.

Benchmarks measure speed side by side and are never tests; they live outside the installed package
(``benchmarks/`` beside ``ebmgraph/`` in a checkout, which an editable install points at). Installed
from a wheel, the verb says where to find them instead.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path


def benchmarks_root() -> Path | None:
    """The checkout holding ``benchmarks/`` next to this package, or None (installed from a wheel)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "benchmarks" / "suite.py").is_file() else None


def register_cli(sub) -> None:
    root = benchmarks_root()
    if root is not None:
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        importlib.import_module("benchmarks.suite").register_cli(sub)
        return
    p = sub.add_parser("bench", help="benchmarks (needs a checkout of the repository: benchmarks/)")
    p.add_argument("rest", nargs=argparse.REMAINDER)

    def missing(_args) -> int:
        print("ebmgraph bench: the benchmarks are not installed with the package; run them from a checkout of the "
              "repository (its benchmarks/ folder, `pip install -e .`)", file=sys.stderr)
        return 2

    p.set_defaults(fn=missing)
