"""Mode-1 warm-starting Mode-2 (§3.1.3, Figure 5) on Pendulum-v1: a policy distilled from planned
actions proposes each plan (a[t] = A(s[t]) rolled through the world model) and MPPI refines it,
against MPPI warm-started from its own shifted plan, at small sample budgets; and the policy alone.
Same seeds for every row. Prints a markdown table (docs/results.md). Needs the policy the docs'
commands train:

    .venv/bin/python examples/mode1_warm_start.py --policy runs/pendulum_policy_true
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
    ap.add_argument("--policy", default="runs/pendulum_policy_true")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, nargs="+", default=[4, 16, 64])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    policy = agent.Mode1(ebmgraph.compile(SPECS / "pendulum_policy.yaml").load(args.policy, strict=False),
                         "a_tilde", "Pendulum-v1")
    seeds = list(range(args.seed, args.seed + args.episodes))
    rows = [("Mode-1 alone: a_tilde = A(obs)", None, None)]
    for k in args.samples:
        rows += [(f"MPPI K={k}, warm start: its shifted plan", k, None), (f"MPPI K={k}, warm start: Mode-1", k, policy)]
    print(f"Pendulum-v1, true dynamics (examples/specs/pendulum_mpc.yaml, horizon 20), MPPI sigma=1.5, "
          f"temperature=0.1, 1 iteration; {args.episodes} episodes, seeds {seeds[0]}..{seeds[-1]} for every row\n")
    print("| agent | mean return ± std | ms per decision (median) |")
    print("| --- | --- | --- |")
    for name, k, warm in rows:
        if k is None:
            res = agent.run("Pendulum-v1", None, episodes=args.episodes, seed=args.seed, progress=False, policy=policy)
        else:
            ebm = ebmgraph.compile(SPECS / "pendulum_mpc.yaml")
            p = agent.make_planner(ebm, "Pendulum-v1", method="mppi", seed=args.seed, warm_policy=warm,
                                   settings={"sigma": 1.5, "temperature": 0.1, "samples": k})
            res = agent.run("Pendulum-v1", p, episodes=args.episodes, seed=args.seed, progress=False)
        r = res.returns
        print(f"| {name} | {r.mean():.1f} ± {r.std():.1f} | {np.median(res.seconds) * 1e3:.2f} |", flush=True)


if __name__ == "__main__":
    main()
