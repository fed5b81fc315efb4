"""Mode-1 from Mode-2 (Figures 3 and 5, §3.1.3) on Pendulum-v1: the planner with the learned world
model and the policy distilled from its actions, on the same seeds, episodes alternating, in one
run. Prints a markdown table (docs/results.md). Needs the runs the docs' commands write:

    .venv/bin/python examples/mode1_from_mode2.py --world-model runs/pendulum_wm --policy runs/pendulum_policy
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import ebmgraph
from ebmgraph import agent

SPECS = Path(__file__).resolve().parent / "specs"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world-model", default="runs/pendulum_wm")
    ap.add_argument("--policy", default="runs/pendulum_policy")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    plan_ebm = ebmgraph.compile(SPECS / "pendulum_mpc_learned.yaml").load(args.world_model, strict=False)
    planner = agent.make_planner(plan_ebm, "Pendulum-v1", method="mppi", settings={"sigma": 1.5, "temperature": 0.1},
                                 seed=args.seed)
    pol_ebm = ebmgraph.compile(SPECS / "pendulum_policy.yaml").load(args.policy, strict=False)
    policy = agent.Mode1(pol_ebm, "a_tilde", "Pendulum-v1")
    rows = {"Mode-2: MPPI over the learned world model (K=256, horizon 20)": [],
            "Mode-1: the distilled policy a_tilde = A(obs)": []}
    for i in range(args.episodes):
        rows[list(rows)[0]].append(agent.run("Pendulum-v1", planner, episodes=1, seed=args.seed + i,
                                             progress=False).episodes[0])
        rows[list(rows)[1]].append(agent.run("Pendulum-v1", None, episodes=1, seed=args.seed + i, progress=False,
                                             policy=policy).episodes[0])
    print(f"Pendulum-v1; {args.episodes} episodes, seeds {args.seed}..{args.seed + args.episodes - 1}, alternating; "
          f"time per decision = wall time from observation to action\n")
    print("| agent | mean return ± std | ms per decision (median) |")
    print("| --- | --- | --- |")
    stats = []
    for name, eps in rows.items():
        r = np.array([e.ret for e in eps])
        ms = float(np.median(np.concatenate([e.seconds for e in eps])) * 1e3)
        stats.append((r.mean(), ms))
        print(f"| {name} | {r.mean():.1f} ± {r.std():.1f} | {ms:.3f} |")
    (rp, mp), (rm, mm) = stats
    print(f"\nreturn ratio planner/policy (costs): {rp / rm:.3f} (Mode-1 reaches {rp / rm:.1%} of the planner's "
          f"return); compute per action: {mp / mm:.0f}x less")


if __name__ == "__main__":
    main()
