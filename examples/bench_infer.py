"""Benchmark (not a test): ebmgraph's planners against mctx, plain PyTorch loops and pytorch-mppi.

The same as ``ebmgraph bench planners`` (ebmgraph/bench_planners.py), with its defaults:

    python examples/bench_infer.py            # MCTS at B = 1, 64, 1024; CEM/MPPI at K = 1024, T = 32
    python examples/bench_infer.py --quick    # small sizes, a few seconds

mctx/jax and pytorch-mppi are the ``bench`` extra (``pip install -e '.[bench]'``); without them
their columns are left out.
"""
from __future__ import annotations

import sys

from ebmgraph.cli import main

if __name__ == "__main__":
    quick = ["--batches", "1", "8", "--sims", "16", "--samples", "128", "--horizon", "8", "--reps", "2",
             "--runs", "1", "--no-compile"]
    args = [a for a in sys.argv[1:] if a != "--quick"]
    sys.exit(main(["bench", "planners", *(quick if "--quick" in sys.argv else []), *args]))
