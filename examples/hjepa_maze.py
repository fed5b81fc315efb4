"""H-JEPA on OGBench's point-maze data (§4.6, Figure 15): is one level-2 prediction ten steps ahead
more accurate than chaining ten level-1 predictions and encoding the result with Enc2?

Windows of 20 steps (stride 5, never across an episode) come from navigate data collected here
(``ebmgraph collect pointmaze-medium-navigate-v0 --steps 100000 --policy oracle --noise 0.2
--seed 0``); episodes are split into training and held-out ones. examples/specs/pointmaze_hjepa.yaml
is trained jointly with VICReg on both levels. On held-out windows, with ``s2_1`` the level-2
representation of the second half:

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

import numpy as np
import torch

import ebmgraph
from ebmgraph.train import Dataset, Regularized, Trainer

SPEC = "examples/specs/pointmaze_hjepa.yaml"
L, HALF = 20, 10


def windows(path: str, *, stride: int = 5, held_out: float = 0.2, noise: float = 0.0, seed: int = 0):
    """``(train, test)`` dicts ``{x: [N, 20, 2], a: [N, 20, 2]}``; the last ``held_out`` of the episodes are test;
    ``noise``: the std of the sensor noise added to every observation (seeded)."""
    with np.load(path, allow_pickle=False) as z:
        obs, act, ep = z["obs"], z["action"], z["episode"]
    if noise:
        obs = obs + noise * np.random.default_rng([seed, 31]).standard_normal(obs.shape).astype(obs.dtype)
    eps = np.unique(ep)
    cut = eps[int(round(len(eps) * (1 - held_out)))]
    out = {"train": ([], []), "test": ([], [])}
    for e in eps:
        o, a = obs[ep == e], act[ep == e]
        part = out["train" if e < cut else "test"]
        for s in range(0, len(o) - L + 1, stride):
            part[0].append(o[s:s + L])
            part[1].append(a[s:s + L])
    return tuple({"x": torch.from_numpy(np.stack(xs)).float(), "a": torch.from_numpy(np.stack(as_)).float()}
                 for xs, as_ in (out["train"], out["test"]))


@torch.no_grad()
def compare(ebm, test: dict) -> dict:
    m = ebm.mods
    x, a = test["x"], test["a"]
    s1 = m["Enc1"](x)  # [N, 20, 16]
    s2_0 = m["Enc2"](s1[:, :HALF].mean(1))
    s2_1 = m["Enc2"](s1[:, HALF:].mean(1))
    abar = a[:, 5:15].mean(1)
    lvl2 = m["Pred2"](s2_0, abar)
    def chain(actions):  # Pred1 ten times from s1[9], the predicted s1[10..19] pooled and encoded with Enc2
        h, out = s1[:, HALF - 1], []
        for t in range(HALF):
            h = m["Pred1"](h, actions[t])
            out.append(h)
        return m["Enc2"](torch.stack(out, 1).mean(1))

    chained = chain([a[:, t] for t in range(HALF - 1, L - 1)])  # the window's own ten actions
    held = chain([abar] * HALF)  # only the abstract action, as at plan time: held for ten steps
    var = ((s2_1 - s2_1.mean(0)) ** 2).sum(1).mean()

    def nerr(p):
        return float((((p - s2_1) ** 2).sum(1).mean() / var))

    # and one step at level 1, for scale: Pred1(s1[t], a[t]) against s1[t+1]
    one = m["Pred1"](s1[:, :-1], a[:, :-1])
    v1 = ((s1 - s1.reshape(-1, s1.shape[-1]).mean(0)) ** 2).sum(-1).mean()
    return {"level2_nerr": nerr(lvl2), "chained_level1_nerr": nerr(chained),
            "chained_level1_abstract_action_nerr": nerr(held), "windows": int(len(x)),
            "level1_one_step_nerr": float(((one - s1[:, 1:]) ** 2).sum(-1).mean() / v1),
            "s2_std": float(s2_1.std(0).mean()), "s1_std": float(s1.reshape(-1, s1.shape[-1]).std(0).mean())}


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
    train, test = windows(args.data, noise=args.obs_noise, seed=args.seed)
    ebm = ebmgraph.compile(SPEC, seed=args.seed)
    t0 = time.perf_counter()
    Trainer(Regularized(ebm), Dataset("maze_windows", train), epochs=args.epochs, batch=args.batch, lr=args.lr,
            seed=args.seed, schedule="cosine", out=args.out, progress=True).fit()
    secs = time.perf_counter() - t0
    ebm.eval()
    res = {"data": args.data, "obs_noise": args.obs_noise, "train_windows": int(len(train["x"])), "epochs": args.epochs,
           "seed": args.seed,
           "train_seconds": round(secs, 1), **compare(ebm, test)}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "hjepa_compare.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    print(f"\nten steps ahead, normalized error in level-2 space on {res['windows']} held-out windows: "
          f"level-2 predictor {res['level2_nerr']:.4f}; Enc2(chained level-1) with the window's actions "
          f"{res['chained_level1_nerr']:.4f}, with the abstract action held {res['chained_level1_abstract_action_nerr']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
