"""``python -m ebmgraph.render --update-goldens``: rewrite tests/golden from the specs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .goldens import update_goldens


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ebmgraph.render")
    p.add_argument("--update-goldens", action="store_true", help="rewrite tests/golden/*.dot and *.tex")
    p.add_argument("--root", default=".", help="repository root (default: the current folder)")
    args = p.parse_args(argv)
    if not args.update_goldens:
        p.print_help()
        return 0
    for path in update_goldens(Path(args.root)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
