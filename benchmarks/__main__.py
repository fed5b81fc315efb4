"""``python -m benchmarks WHAT ...``: the same tables as ``ebmgraph bench WHAT ...``."""
import sys

from ebmgraph.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
