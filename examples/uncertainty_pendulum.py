"""Planning under uncertainty (§4.8, Figure 17) on ebmgraph/PendulumGainNoise-v0.

The motor's hidden gain makes the applied torque ``u·(1 + 0.5·ε)``, ε ~ N(0, 1) each step. Three
MPPI planners hold the pendulum upright from the same seeded starts and the same noise:

- ``point``: examples/specs/pendulum_mpc.yaml, the model with a single point prediction (gain 1);
- ``mean``: examples/specs/pendulum_gain_noise.yaml, the gain latent z[t] sampled (``n_draws`` draws),
  actions minimizing the mean energy over the draws;
- ``mean+λ·std``: the same, minimizing mean + λ·spread (``risk=λ``).

The achieved cost of an episode is minus its return; the table gives its mean and spread (std)
over the episodes (seeds 0..N-1), and the time per decision.

    .venv/bin/python examples/uncertainty_pendulum.py --episodes 20
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import ebmgraph
from ebmgraph import agent

ENV = "ebmgraph/PendulumGainNoise-v0"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--n-draws", type=int, default=16)
    ap.add_argument("--risk", type=float, nargs="+", default=[1.0])
    ap.add_argument("--horizon", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/uncertainty_pendulum.json")
    args = ap.parse_args()
    base = {"samples": args.samples, "sigma": 1.5, "temperature": 0.1}
    runs = [("point", "examples/specs/pendulum_mpc.yaml", {})]
    runs.append(("mean", "examples/specs/pendulum_gain_noise.yaml", {"risk": 0.0, "n_draws": args.n_draws}))
    runs += [(f"mean+{lam:g}·std", "examples/specs/pendulum_gain_noise.yaml", {"risk": lam, "n_draws": args.n_draws})
             for lam in args.risk]
    rows = []
    for name, spec, extra in runs:
        ebm = ebmgraph.compile(spec, seed=args.seed, sizes={"T": args.horizon})
        p = agent.make_planner(ebm, ENV, method="mppi", settings={**base, **extra}, seed=args.seed)
        res = agent.run(ENV, p, episodes=args.episodes, seed=args.seed, progress=False)
        cost = -res.returns
        torque = float(np.mean([np.abs(np.asarray(e.actions)).mean() for e in res.episodes]))
        rows.append({"planner": name, "spec": Path(spec).name, "episodes": len(cost),
                     "seeds": f"{args.seed}..{args.seed + len(cost) - 1}", "mean_cost": float(cost.mean()),
                     "std_cost": float(cost.std()), "worst_cost": float(cost.max()), "mean_abs_torque": torque,
                     "ms_per_decision": float(np.median(res.seconds) * 1e3), "costs": [round(float(c), 2) for c in cost]})
        r = rows[-1]
        print(f"{name:14s} cost {r['mean_cost']:7.2f} ± {r['std_cost']:6.2f} (worst {r['worst_cost']:.1f}), "
              f"|u| {torque:.3f}, {r['ms_per_decision']:.1f} ms/decision", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| planner | achieved cost, mean | spread (std) | worst | mean abs torque | ms / decision |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['planner']} | {r['mean_cost']:.2f} | {r['std_cost']:.2f} | {r['worst_cost']:.1f} | "
              f"{r['mean_abs_torque']:.3f} | {r['ms_per_decision']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
