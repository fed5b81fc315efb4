"""Reference lines for stable-worldmodel's PushT under its dataset-driven ``World.evaluate`` (issue 30), on the same
(start, goal) pairs a planner is scored on (``plan --eval-data STORE --goal-offset G --budget B --episodes N
--seed S``): what the pairs ask and what policies that need no model reach.

- ``random``: stable-worldmodel's own RandomPolicy (uniform actions);
- ``pusher only``: drive the pusher straight toward its goal position (``a = clip((goal_xy - xy) / 100)``; the
  env moves the pusher toward ``xy + 100 a``) and never look at the block: what steering alone scores, since
  PushT's success test sums the pusher's and the block's position errors (20 px at 512) and asks the block's
  angle within 20 degrees;
- ``replay``: the stored actions from each start, open loop (the ceiling a perfect model could reach with the
  data's own moves; the physics restarts from the stored state, so replays drift).

Each pair is also classed by whether its block already lies within the success test's tolerance of the goal
(position within 20 px, angle within 20 degrees): there the pusher only has to get back to its goal position.
With ``--results RUN/results.json`` the planner's successes are split the same way.

    .venv/bin/python examples/pusht_references.py runs/pusht_eval.h5 --goal-offset 25 --budget 50 --episodes 50 \\
        --seed 42 [--results runs/pusht_near/results.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class PusherOnly:
    """Steer the pusher to its goal position; ignore the block."""

    def set_env(self, env):
        self.env = env

    def get_action(self, info, **_):
        xy = np.asarray(info["state"])[:, -1, :2]
        goal = np.asarray(info["goal_state"])[:, -1, :2]
        return np.clip((goal - xy) / 100.0, -1.0, 1.0).astype(np.float32)


class Replay:
    """The stored actions from each env's start, in order (the last one repeated past the goal's step)."""

    def __init__(self, ep, eps, starts, offset):
        self.acts = [ep.window(int(e), int(s), offset, fields=["action"])["action"] for e, s in zip(eps, starts)]
        self.t = 0

    def set_env(self, env):
        self.env = env

    def get_action(self, info, **_):
        a = np.stack([x[min(self.t, len(x) - 1)] for x in self.acts]).astype(np.float32)
        self.t += 1
        return a


def block_already_there(ep, eps, starts, offset) -> np.ndarray:
    """Per pair: the start's block within 20 px and 20 degrees of the goal's block (the success test's block part)."""
    out = []
    for e, s in zip(eps, starts):
        st = ep.window(int(e), int(s), offset, fields=["state"])["state"]
        d = float(np.linalg.norm(st[0, 2:4] - st[-1, 2:4]))
        da = abs((float(st[0, 4] - st[-1, 4]) + np.pi) % (2 * np.pi) - np.pi)
        out.append(d < 20.0 and np.degrees(da) < 20.0)
    return np.asarray(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--goal-offset", type=int, default=25)
    ap.add_argument("--budget", type=int, default=50)
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--results", help="a planner's results.json over the same pairs: its successes split too")
    ap.add_argument("--env", default="swm/PushT-v1")
    args = ap.parse_args()

    from ebmgraph.agent import swm_eval
    from ebmgraph.train.episodes import Episodes

    ep = Episodes(args.store)
    eps, starts = swm_eval.pick_starts(ep.lengths, np.arange(len(ep)), args.goal_offset, args.episodes, args.seed)
    there = block_already_there(ep, eps, starts, args.goal_offset)
    kw = dict(env_id=args.env, goal_offset=args.goal_offset, budget=args.budget, episodes=args.episodes,
              seed=args.seed)
    rows = {"random": swm_eval.evaluate(None, ep, **kw),
            "pusher only": swm_eval.evaluate(PusherOnly(), ep, **kw),
            "replay": swm_eval.evaluate(Replay(ep, eps, starts, args.goal_offset), ep, **kw)}
    if args.results:
        r = json.loads(Path(args.results).read_text())
        if [list(x) for x in zip(eps.tolist(), starts.tolist())] != r["starts"]:
            raise SystemExit(f"{args.results} was scored on other pairs (check --goal-offset/--episodes/--seed)")
        rows[f"planner ({r['spec'].split('/')[-1]})"] = {"successes": np.asarray(r["successes"], bool),
                                                         "success_rate": float(r["success_rate"])}
    print(f"{args.env}, {args.store}: {args.episodes} pairs (seed {args.seed}), goal {args.goal_offset} steps ahead, "
          f"budget {args.budget}; block already within tolerance in {int(there.sum())} of them")
    print(f"| policy | success | where the block had to move ({int((~there).sum())}) | where it did not "
          f"({int(there.sum())}) |")
    print("| --- | --- | --- | --- |")
    for name, r in rows.items():
        ok = np.asarray(r["successes"], bool)
        print(f"| {name} | {100 * ok.mean():.0f} % | {int(ok[~there].sum())} | {int(ok[there].sum())} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
