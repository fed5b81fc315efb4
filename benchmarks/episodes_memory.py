"""Peak resident memory of training from a large episode store (a measurement, not a test; issue 29): a store of
``--frames`` 64×64×3 frames is built from a collected one (its episodes repeated in turn, nothing generated),
then ``ebmgraph train`` runs ``--steps`` steps on windows drawn from all of it with its DataLoader worker, while
this script samples the resident memory (VmRSS) of the training process and its children every 0.2 s.

    .venv/bin/python benchmarks/episodes_memory.py --source runs/tworoom_train.h5 --out /tmp/big.h5 \\
        --frames 1000000 --steps 40
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def build(source: str, out: str, frames: int) -> dict:
    from ebmgraph.train.episodes import EpisodeWriter, Episodes

    src = Episodes(source)
    t0, n, k = time.time(), 0, 0
    with EpisodeWriter(out, meta={"built_from": str(source), "frames": frames}) as w:
        while n < frames:
            e = k % len(src)
            L = int(src.lengths[e])
            win = src.window(e, 0, L, fields=["obs", "action"])
            w.add(frames={"obs": win["obs"]}, steps={"action": win["action"]})
            n, k = n + L + 1, k + 1
    return {"frames": n, "episodes": k, "build_s": round(time.time() - t0, 1),
            "file_mb": round(os.path.getsize(out) / 2**20, 1)}


def tree_rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` and its descendants (kB), from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for t in Path(f"/proc/{p}/task").iterdir():
                kids = Path(f"/proc/{p}/task/{t.name}/children").read_text().split()
                todo += [int(c) for c in kids]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, help="a collected .h5 store (64x64x3 frames obs, actions)")
    ap.add_argument("--out", required=True, help="the large store (built when missing)")
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    info = {}
    if not Path(args.out).exists():
        info["build"] = build(args.source, args.out, args.frames)
    from ebmgraph.train.episodes import Episodes

    ep = Episodes(args.out)
    K = 6  # tworoom_jepa.yaml's window
    stride = 1
    while (np.maximum(0, (ep.lengths - K) // stride + 1).sum() // args.batch) > args.steps and stride < 10**6:
        stride *= 2  # every episode gives at least one window, so the step count has a floor (episodes / batch)
    cmd = [str(Path(sys.executable).parent / "ebmgraph"), "train", str(ROOT / "examples/specs/tworoom_jepa.yaml"),
           "--data", args.out, "--loss", "vicreg", "--epochs", "1", "--batch", str(args.batch), "--stride", str(stride),
           "--workers", str(args.workers), "--set", "var_weight=3072", "--set", "cov_weight=50", "--quiet",
           "--out", str(Path(args.out).with_suffix("")) + "_run"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_kb(proc.pid))
        time.sleep(0.2)
    out = proc.stdout.read()
    if proc.returncode:
        print(out[-2000:], file=sys.stderr)
        return proc.returncode
    run = Path(cmd[-1]) / "metrics.csv"
    steps_run = max(0, len(run.read_text().splitlines()) - 1) if run.exists() else None
    print(json.dumps({**info, "store_frames": int(ep.lengths.sum() + len(ep)), "episodes": len(ep),
                      "store_gb_uncompressed": round((ep.lengths.sum() + len(ep)) * 64 * 64 * 3 / 1e9, 2),
                      "stride": stride, "steps": steps_run, "batch": args.batch, "workers": args.workers,
                      "train_s": round(time.time() - t0, 1), "peak_rss_mb": round(peak / 1024, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
