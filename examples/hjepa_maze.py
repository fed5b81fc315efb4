"""H-JEPA on OGBench's point-maze data (§4.6, Figure 15): is one level-2 prediction ten steps ahead
more accurate than chaining ten level-1 predictions and encoding the result with Enc2?

Windows of 20 steps (stride 5, never across an episode) come from navigate data collected here
(``ebmgraph collect pointmaze-medium-navigate-v0 --steps 100000 --policy oracle --noise 0.2
--seed 0``); episodes are split into training and held-out ones. examples/specs/pointmaze_hjepa.yaml
is trained jointly with VICReg on both levels. On held-out windows, with ``s2_1`` the level-2
representation of the second half (the windows and the comparison are library code,
ebmgraph/train/hjepa.py: ``hjepa_windows``, ``compare_predictions``):

- level 2: ``Pred2(s2_0, abar)``, one prediction;
- chained level 1: ``s1[9]`` encoded from the observation, ``Pred1`` applied ten times with the
  window's actions a[9..18], the predicted ``s1[10..19]`` pooled and encoded with ``Enc2``;
- chained level 1 given the abstract action only: the same with ``abar`` held for the ten steps
  (what an upper level has at plan time: the fine actions are not chosen yet).

The error is the mean squared distance to ``s2_1`` divided by the variance of ``s2_1`` (normalized
error in level-2 space).

``--obs-noise σ`` is the variant with unpredictable detail (§4.6): every observed xy carries sensor
noise N(0, σ²) per coordinate, drawn once per step of the data (numpy, seed ``[seed, 31]``) before the
windows are cut, in training and held-out episodes alike; the agent never sees the clean xy. Level 1
must then start its chain from one noisy frame, while level 2 reads the mean of ten.

    .venv/bin/python examples/hjepa_maze.py --epochs 15 --seed 0
    .venv/bin/python examples/hjepa_maze.py --epochs 15 --seed 0 --obs-noise 1.0
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import ebmgraph
from ebmgraph.train import Dataset, Regularized, Trainer
from ebmgraph.train.episodes import EpisodeError
from ebmgraph.train.hjepa import compare_predictions, hjepa_windows
from ebmgraph.util import atomic_write_text

SPEC = "examples/specs/pointmaze_hjepa.yaml"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="runs/pointmaze_medium.npz")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/hjepa_maze")
    ap.add_argument("--obs-noise", type=float, default=0.0, help="std of sensor noise on every observed xy")
    args = ap.parse_args()
    if not args.obs_noise >= 0:
        ap.error(f"--obs-noise must be >= 0, got {args.obs_noise}")
    try:
        train, test = hjepa_windows(args.data, noise=args.obs_noise, seed=args.seed)
    except EpisodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ebm = ebmgraph.compile(SPEC, seed=args.seed)
    t0 = time.perf_counter()
    Trainer(Regularized(ebm), Dataset("maze_windows", train), epochs=args.epochs, batch=args.batch, lr=args.lr,
            seed=args.seed, schedule="cosine", out=args.out, progress=True).fit()
    secs = time.perf_counter() - t0
    ebm.eval()
    res = {"data": args.data, "obs_noise": args.obs_noise, "train_windows": int(len(train["x"])), "epochs": args.epochs,
           "seed": args.seed,
           "train_seconds": round(secs, 1), **compare_predictions(ebm, test)}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.out) / "hjepa_compare.json", json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    print(f"\nten steps ahead, normalized error in level-2 space on {res['windows']} held-out windows: "
          f"level-2 predictor {res['level2_nerr']:.4f}; Enc2(chained level-1) with the window's actions "
          f"{res['chained_level1_nerr']:.4f}, with the abstract action held {res['chained_level1_abstract_action_nerr']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
