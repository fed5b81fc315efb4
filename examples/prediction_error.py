"""How far ahead a K-step world model predicts (issue 29's diagnosis): on held-out windows of an episode store, the
squared distance between the predictor unrolled k steps from the first frame's encoding, ``p[k]``, and the
encoding of the frame seen k steps later, ``s[k]``, for k = 1..K — against not moving (predicting ``s[0]``).
A ratio well under 1 at every k says the model predicts the motion; near 1, it predicts no better than standing
still. Also the mean squared distance between consecutive encodings (how far one step moves the representation).

    .venv/bin/python examples/prediction_error.py examples/specs/tworoom_jepa.yaml --params runs/tworoom_jepa \\
        --data runs/tworoom_eval.h5 --windows 512
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

import ebmgraph
from ebmgraph.cliargs import load_params
from ebmgraph.train.episodes import EpisodeError, spec_windows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", help="a K-step world-model spec: frames obs[u], actions action[t], s[u], p[t+1]")
    ap.add_argument("--params", required=True)
    ap.add_argument("--data", required=True, help="an episode store (.h5) of held-out episodes")
    ap.add_argument("--windows", type=int, default=512, help="windows scored (drawn with --seed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", action="append", default=[], metavar="K=INT", help="e.g. K=16: score further ahead")
    args = ap.parse_args()
    sizes = {k: int(v) for k, v in (s.split("=") for s in args.size)}
    ebm = load_params(ebmgraph.compile(args.spec, seed=0, sizes=sizes or None), args.params).eval()
    try:
        w = spec_windows(ebm, args.data)
    except EpisodeError as exc:
        print(f"prediction_error: {exc}", file=sys.stderr)
        return 1
    K = w.K
    idx = np.random.default_rng(args.seed).choice(len(w), min(args.windows, len(w)), replace=False)
    err, still, step = np.zeros(K), np.zeros(K), 0.0
    with torch.no_grad():
        for chunk in np.array_split(idx, max(1, len(idx) // 64)):
            b = w.batch(chunk)
            outs = [f"s[{u}]" for u in range(K + 1)] + [f"p[{t}]" for t in range(1, K + 1)]
            v = ebm.evaluate(b, outputs=outs)
            for k in range(1, K + 1):
                err[k - 1] += float(((v[f"p[{k}]"] - v[f"s[{k}]"]) ** 2).sum(-1).sum())
                still[k - 1] += float(((v["s[0]"] - v[f"s[{k}]"]) ** 2).sum(-1).sum())
            step += float(sum(((v[f"s[{u + 1}]"] - v[f"s[{u}]"]) ** 2).sum(-1).sum() for u in range(K)))
    n = len(idx)
    print(json.dumps({"windows": n, "K": K, "step_sq_dist": round(step / (n * K), 4),
                      "k": list(range(1, K + 1)), "pred_sq_err": [round(x / n, 4) for x in err],
                      "not_moving_sq_err": [round(x / n, 4) for x in still],
                      "ratio": [round(a / b, 4) if b else None for a, b in zip(err, still)]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
