"""One VICReg training step of examples/specs/pointmaze_pixels_world_model.yaml (a measurement, not a test).

Times forward + backward + optimizer step of ``Regularized`` on random 64×64×3 frames, median of ``--reps``.
To compare two versions of ebmgraph side by side, run this script alternately under each (``--rounds``
interleaves them through subprocesses):

    .venv/bin/python benchmarks/vicreg_step.py --compare /tmp/base_head --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(batch: int, reps: int, threads: int) -> dict:
    import torch

    import ebmgraph
    from ebmgraph.train import Regularized

    torch.set_num_threads(threads)
    ebm = ebmgraph.compile(ROOT / "examples" / "specs" / "pointmaze_pixels_world_model.yaml", seed=0)
    loss = Regularized(ebm)
    opt = torch.optim.Adam(ebm.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    batch_ = {"obs": torch.rand(batch, 64, 64, 3, generator=g), "next_obs": torch.rand(batch, 64, 64, 3, generator=g),
              "action": torch.rand(batch, 2, generator=g) * 2 - 1}
    times = []
    for i in range(reps + 2):
        t0 = time.perf_counter()
        out = loss(batch_, g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return {"ms_median": statistics.median(times) * 1e3, "ms_min": min(times) * 1e3, "reps": reps, "batch": batch,
            "ebmgraph": str(Path(ebmgraph.__file__).parent)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compare", help="a checkout of another version (its ebmgraph/ is imported instead)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child or not a.compare:
        print(json.dumps(measure(a.batch, a.reps, a.threads)))
        return 0
    rows: dict[str, list] = {"this checkout": [], a.compare: []}
    for _ in range(a.rounds):
        for label, path in (("this checkout", str(ROOT)), (a.compare, a.compare)):
            env = {**os.environ, "PYTHONPATH": path}
            out = subprocess.run([sys.executable, __file__, "--child", "--batch", str(a.batch), "--reps", str(a.reps),
                                  "--threads", str(a.threads)], env=env, capture_output=True, text=True, cwd=path)
            if out.returncode:
                print(out.stderr, file=sys.stderr)
                return 1
            rows[label].append(json.loads(out.stdout.strip().splitlines()[-1])["ms_median"])
    for label, ms in rows.items():
        print(f"| {label} | {statistics.median(ms):.1f} ms per step (median of {a.rounds} rounds: "
              f"{', '.join(f'{m:.1f}' for m in ms)}) |")
    base, new = statistics.median(rows[a.compare]), statistics.median(rows["this checkout"])
    print(f"ratio (other / this): {base / new:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
