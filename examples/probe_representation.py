"""How well a learned representation keeps a maze's geometry: 10-nearest-neighbour regressions both
ways between the point's xy (kept beside the frames by ``ebmgraph collect``) and a spec function's
output (e.g. a pixel JEPA's ``s_x``), fitted on some frames and scored (R²) on held-out ones.

A representation that is a function of xy scores high from xy; one that *folds* the maze (distant
cells sharing a representation) scores low to xy, and its goals and sub-goals are ambiguous.

    .venv/bin/python examples/probe_representation.py runs/visual_pointmaze_medium.npz \
        examples/specs/pointmaze_pixels_world_model.yaml:s_x --params runs/visual_pointmaze_medium_wm
    .venv/bin/python examples/probe_representation.py runs/tworoom_train.h5 examples/specs/tworoom_plan.yaml:g \
        --params runs/tworoom_jepa --test-data runs/tworoom_eval.h5

An episode store (``.h5``, from ``collect --out``) keeps ``xy`` per frame; with ``--test-data`` the held-out frames
come from another store (other episodes, another seed).
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from sklearn.neighbors import KNeighborsRegressor

from ebmgraph.agent.cli import _encode


def _frames(path: str, n: int):
    """The first ``n`` frames and their xy of an ``.npz`` (transitions) or ``.h5`` (episodes) from collect."""
    if str(path).endswith(".h5"):
        from ebmgraph.train.episodes import Episodes

        ep = Episodes(path)
        if "xy" not in ep.frames:
            raise KeyError(f"{path} has no xy beside its frames")
        return ep.read("frames", "obs", 0, n), ep.read("frames", "xy", 0, n).astype(np.float64)
    with np.load(path, allow_pickle=False) as z:
        if "xy" not in z:
            raise KeyError(f"{path} has no xy beside its frames")
        return z["obs"][:n], z["xy"][:n].astype(np.float64)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="an .npz or .h5 from ebmgraph collect with obs and xy")
    ap.add_argument("--test-data", help="score on the first --test frames of this store instead of the next ones")
    ap.add_argument("encoder", help="SPEC:FUNCTION")
    ap.add_argument("--params", "--weights", dest="params", required=True)
    ap.add_argument("--fit", type=int, default=5000, help="frames to fit on (the first ones)")
    ap.add_argument("--test", type=int, default=1000, help="held-out frames scored (the next ones)")
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    n = args.fit + args.test
    try:
        if args.test_data:
            o1, x1 = _frames(args.data, args.fit)
            o2, x2 = _frames(args.test_data, args.test)
            obs, xy = np.concatenate([o1, o2]), np.concatenate([x1, x2])
        else:
            obs, xy = _frames(args.data, n)
    except (KeyError, ValueError, OSError) as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return 1
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
