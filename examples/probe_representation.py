"""How well a learned representation keeps a maze's geometry: 10-nearest-neighbour regressions both
ways between the point's xy (kept beside the frames by ``ebmgraph collect``) and a spec function's
output (e.g. a pixel JEPA's ``s_x``), fitted on some frames and scored (R²) on held-out ones.

A representation that is a function of xy scores high from xy; one that *folds* the maze (distant
cells sharing a representation) scores low to xy, and its goals and sub-goals are ambiguous.

    .venv/bin/python examples/probe_representation.py runs/visual_pointmaze_medium.npz \
        examples/specs/pointmaze_pixels_world_model.yaml:s_x --params runs/visual_pointmaze_medium_wm
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from sklearn.neighbors import KNeighborsRegressor

from ebmgraph.agent.cli import _encode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="an .npz from ebmgraph collect with obs and xy")
    ap.add_argument("encoder", help="SPEC:FUNCTION")
    ap.add_argument("--params", "--weights", dest="params", required=True)
    ap.add_argument("--fit", type=int, default=5000, help="frames to fit on (the first ones)")
    ap.add_argument("--test", type=int, default=1000, help="held-out frames scored (the next ones)")
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    with np.load(args.data, allow_pickle=False) as z:
        if "xy" not in z:
            print(f"{args.data} has no xy beside its frames", file=sys.stderr)
            return 1
        n = args.fit + args.test
        obs, xy = z["obs"][:n], z["xy"][:n].astype(np.float64)
    rep = _encode(args.encoder, args.params, obs)
    f, t = slice(0, args.fit), slice(args.fit, n)
    out = {"frames_fit": args.fit, "frames_test": args.test, "k": args.k, "dims": int(rep.shape[1])}
    for name, (a, b) in {"xy_from_rep": (rep, xy), "rep_from_xy": (xy, rep)}.items():
        knn = KNeighborsRegressor(n_neighbors=args.k).fit(a[f], b[f])
        out[name] = float(knn.score(a[t], b[t]))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
