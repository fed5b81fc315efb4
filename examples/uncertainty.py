"""Planning under uncertainty (§4.8, Figure 17): a point prediction against sampled latents.

Two stochastic tasks (``--task``), each with a noise the agent never sees:

- ``pit``: ebmgraph/PointPitNoise-v0 — a point moving at the point maze's speed (xy += 0.2·a) to the
  goal (4, 0) past a pit just below the straight path; the actuator applies a + 0.5·ε, ε ~ N(0, I)
  each step. Specs examples/specs/point_pit.yaml (point) and point_pit_noise.yaml (z[t] sampled).
- ``pendulum``: ebmgraph/PendulumGainNoise-v0 — the motor's hidden gain makes the applied torque
  u·(1 + 0.5·ε). Specs pendulum_mpc.yaml (point) and pendulum_gain_noise.yaml (z[t] sampled).

Planners, all MPPI with the same settings, the same seeded starts and the same noise:

- ``point``: the model with a single point prediction (z = 0);
- ``mean``: z[t] sampled (``n_draws`` draws from exp(−R(z)), common to all candidates), actions
  minimizing the mean cost over the draws;
- ``mean+λ·std``: the same, minimizing mean + λ·spread (``risk=λ``).

The achieved cost of an episode is minus its return; the table gives its mean and spread (std)
over the episodes (seeds 0..N-1), the worst episode, and the time per decision. For ``pit`` it
also counts the steps that ended in the pit.

    .venv/bin/python examples/uncertainty.py --task pit --episodes 50
    .venv/bin/python examples/uncertainty.py --task pendulum --episodes 20 --n-draws 64
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import ebmgraph
from ebmgraph import agent, dynamics

# task -> (env id, point spec, sampled spec, MPPI settings, default horizon)
TASKS = {
    "pit": ("ebmgraph/PointPitNoise-v0", "point_pit.yaml", "point_pit_noise.yaml",
            {"sigma": 0.5, "temperature": 0.1}, 10),
    "pendulum": ("ebmgraph/PendulumGainNoise-v0", "pendulum_mpc.yaml", "pendulum_gain_noise.yaml",
                 {"sigma": 1.5, "temperature": 0.1}, 20),
}
SPECS = Path(__file__).resolve().parent / "specs"


def pit_steps(ep) -> int:
    """Steps of an episode that ended in PointPitNoise's pit."""
    x0, x1, y0 = dynamics.POINTPIT_PIT
    xy = np.asarray(ep.observations[1:], dtype=np.float64).reshape(-1, 2)
    return int(((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] < y0)).sum())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=sorted(TASKS), default="pit")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--n-draws", type=int, default=32)
    ap.add_argument("--risk", type=float, nargs="+", default=[1.0])
    ap.add_argument("--horizon", type=int, default=None, help="planning horizon (default: the task's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON of the rows (default runs/uncertainty_TASK.json)")
    args = ap.parse_args()
    env_id, point_spec, sampled_spec, settings, horizon = TASKS[args.task]
    horizon = args.horizon or horizon
    base = {"samples": args.samples, **settings}
    runs = [("point", point_spec, {})]
    runs.append(("mean", sampled_spec, {"risk": 0.0, "n_draws": args.n_draws}))
    runs += [(f"mean+{lam:g}·std", sampled_spec, {"risk": lam, "n_draws": args.n_draws}) for lam in args.risk]
    rows = []
    for name, spec, extra in runs:
        ebm = ebmgraph.compile(SPECS / spec, seed=args.seed, sizes={"T": horizon})
        p = agent.make_planner(ebm, env_id, method="mppi", settings={**base, **extra}, seed=args.seed)
        res = agent.run(env_id, p, episodes=args.episodes, seed=args.seed, progress=False)
        cost = -res.returns
        rows.append({"task": args.task, "env": env_id, "planner": name, "spec": spec, "horizon": horizon,
                     "settings": {**base, **extra}, "episodes": len(cost),
                     "seeds": f"{args.seed}..{args.seed + len(cost) - 1}", "mean_cost": float(cost.mean()),
                     "std_cost": float(cost.std()), "worst_cost": float(cost.max()),
                     "ms_per_decision": float(np.median(res.seconds) * 1e3),
                     "costs": [round(float(c), 2) for c in cost]})
        r = rows[-1]
        if args.task == "pit":
            pits = [pit_steps(e) for e in res.episodes]
            r["pit_steps_mean"], r["episodes_in_pit"] = float(np.mean(pits)), int(np.count_nonzero(pits))
        print(f"{name:14s} cost {r['mean_cost']:7.2f} ± {r['std_cost']:6.2f} (worst {r['worst_cost']:.1f}), "
              f"{r['ms_per_decision']:.1f} ms/decision", flush=True)
    out = Path(args.out or f"runs/uncertainty_{args.task}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    pit = args.task == "pit"
    print(f"\n{env_id}, {args.episodes} episodes (seeds {rows[0]['seeds']}), MPPI K={args.samples}, horizon {horizon}")
    print("| planner | achieved cost, mean | spread (std) | worst |" + (" episodes in the pit |" if pit else "")
          + " ms / decision |")
    print("| --- | --- | --- | --- |" + (" --- |" if pit else "") + " --- |")
    for r in rows:
        extra = f" {r['episodes_in_pit']}/{r['episodes']} |" if pit else ""
        print(f"| {r['planner']} | {r['mean_cost']:.2f} | {r['std_cost']:.2f} | {r['worst_cost']:.1f} |{extra}"
              f" {r['ms_per_decision']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
