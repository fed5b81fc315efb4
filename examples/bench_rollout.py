"""Benchmark of the fused rollout kernels; see kernels/bench_rollout.py (same as `ebmgraph bench rollout`)."""
import sys

from kernels.bench_rollout import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
