"""Figure 7's claim, measured on Pendulum-v1 (true dynamics): the return of receding-horizon MPPI
against the planning horizon, without and with the trained critic TC as the terminal energy.
Prints a markdown table (docs/results.md). Needs the critic the docs' commands train:

    .venv/bin/python examples/critic_horizon.py --critic runs/pendulum_critic --episodes 20
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import ebmgraph
from ebmgraph import agent

SPECS = Path(__file__).resolve().parent / "specs"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--critic", default="runs/pendulum_critic")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--horizons", type=int, nargs="+", default=[1, 2, 3, 5, 8, 10, 15, 20, 30])
    ap.add_argument("--target", type=float, default=-150.0, help="the return a horizon must reach")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = {}
    for H in args.horizons:
        for with_critic in (False, True):
            spec = SPECS / ("pendulum_mpc_critic.yaml" if with_critic else "pendulum_mpc.yaml")
            ebm = ebmgraph.compile(spec, sizes={"T": H})
            if with_critic:
                ebm.load(args.critic, strict=False)
            p = agent.make_planner(ebm, "Pendulum-v1", method="mppi", settings={"sigma": 1.5, "temperature": 0.1},
                                   seed=args.seed)
            res = agent.run("Pendulum-v1", p, episodes=args.episodes, seed=args.seed, progress=False)
            out[(H, with_critic)] = (res.returns.mean(), res.summary()["ms_per_decision_median"])
    print(f"Pendulum-v1, true dynamics, MPPI K=256, one iteration per decision; {args.episodes} episodes, seeds "
          f"{args.seed}..{args.seed + args.episodes - 1}\n")
    print("| horizon | mean return, intrinsic cost only | ms | mean return, + critic TC(s[T]) | ms |")
    print("| --- | --- | --- | --- | --- |")
    for H in args.horizons:
        (a, ta), (b, tb) = out[(H, False)], out[(H, True)]
        print(f"| {H} | {a:.1f} | {ta:.2f} | {b:.1f} | {tb:.2f} |")
    for with_critic in (False, True):
        ok = [H for H in args.horizons if out[(H, with_critic)][0] >= args.target]
        print(f"\nshortest horizon reaching {args.target:g} {'with' if with_critic else 'without'} the critic: "
              f"{min(ok) if ok else 'none of ' + str(args.horizons)}", end="")
    print()


if __name__ == "__main__":
    main()
