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
come from another store (other episodes, another seed). ``--field state:2,3,4 --circular 4`` probes other values
kept per frame instead (PushT's block position and angle; an angle is compared through its cosine and sine):

    .venv/bin/python examples/probe_representation.py runs/pusht_train.h5 examples/specs/pusht_plan.yaml:g \
        --params runs/pusht_jepa --test-data runs/pusht_eval.h5 --field state:2,3,4 --circular 4
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from sklearn.neighbors import KNeighborsRegressor

from ebmgraph.agent.cli import _encode


def _frames(path: str, n: int, field: str = "xy", cols=None, circular=()):
    """The first ``n`` frames and their xy (or ``field``'s columns ``cols``, each circular one as its cosine and
    sine) of an ``.npz`` (transitions) or ``.h5`` (episodes) from collect."""
    if str(path).endswith(".h5"):
        from ebmgraph.train.episodes import Episodes

        ep = Episodes(path)
        if field not in ep.frames:
            raise KeyError(f"{path} has no {field} beside its frames (it has {', '.join(ep.frames)})")
        v = ep.read("frames", field, 0, n).astype(np.float64)
        cols = list(range(v.shape[1])) if cols is None else cols
        parts = [np.stack([np.cos(v[:, c]), np.sin(v[:, c])], 1) if c in circular else v[:, [c]] for c in cols]
        return ep.read("frames", "obs", 0, n), np.concatenate(parts, 1)
    if field != "xy":
        raise ValueError("--field reads an episode store (.h5)")
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
    ap.add_argument("--field", default="xy", metavar="NAME[:COLS]",
                    help="what to probe, a value kept per frame (default xy; e.g. state:2,3,4)")
    ap.add_argument("--circular", default="", metavar="COLS", help="columns that are angles (e.g. 4)")
    args = ap.parse_args()
    n = args.fit + args.test
    field, _, cols = args.field.partition(":")
    what = dict(field=field, cols=[int(c) for c in cols.split(",")] if cols else None,
                circular={int(c) for c in args.circular.split(",") if c})
    try:
        if args.test_data:
            o1, x1 = _frames(args.data, args.fit, **what)
            o2, x2 = _frames(args.test_data, args.test, **what)
            obs, xy = np.concatenate([o1, o2]), np.concatenate([x1, x2])
        else:
            obs, xy = _frames(args.data, n, **what)
    except (KeyError, ValueError, OSError) as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return 1
    rep = _encode(args.encoder, args.params, obs)
    f, t = slice(0, args.fit), slice(args.fit, n)
    out = {"frames_fit": args.fit, "frames_test": args.test, "k": args.k, "dims": int(rep.shape[1]), "field": args.field}
    for name, (a, b) in {f"{field}_from_rep": (rep, xy), f"rep_from_{field}": (xy, rep)}.items():
        knn = KNeighborsRegressor(n_neighbors=args.k).fit(a[f], b[f])
        out[name] = float(knn.score(a[t], b[t]))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
