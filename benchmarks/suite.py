"""``ebmgraph bench``: benchmarks (never tests). Each prints one table, measured side by side.

* ``ebmgraph bench compiler``: the lowered module against the reference interpreter and a
  hand-written torch loop on Figure 4's rollout (CPU or GPU).
* ``ebmgraph bench rollout``: fused Triton rollout kernels against torch eager,
  torch.compile and pytorch-mppi (``benchmarks/rollout.py``; needs CUDA for the kernel column).
* ``ebmgraph bench scaling``: check and compile times of Figure 4's spec as the horizon T
  grows, and the fitted growth exponent between consecutive horizons.
* ``ebmgraph bench mpc``: Mode-2 control of Pendulum-v1 with its true dynamics — ebmgraph's
  receding-horizon MPPI against pytorch-mppi 0.9.1 (a benchmark-only extra) on the same seeds,
  the same torch dynamics and cost, the same K and horizon, episodes alternating between the two.
* ``ebmgraph bench planners``: batched MCTS against its loop reference and mctx on the same MLP
  world model, CEM/MPPI against plain loops and pytorch-mppi (``benchmarks/planners.py``).
"""
from __future__ import annotations

import math
import time

import torch

from ebmgraph.util import cpu_name, round_robin


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({torch.get_num_threads()} threads)"


def time_round_robin(fns: dict, device, reps: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call, calling the candidates in turn each round (fair under load)."""
    samples, _ = round_robin(fns, reps, warmup, device)
    return {k: sorted(v)[len(v) // 2] for k, v in samples.items()}


def bench_compiler(batch: int = 256, T: int = 32, reps: int = 20, device: str = "cpu") -> list[dict]:
    from ebmgraph.compiled import compile as compile_spec
    from ebmgraph.demo import specs_dir

    dev = torch.device(device)
    ebm = compile_spec(specs_dir() / "fig04_mode2.yaml", sizes={"T": T}, seed=0).to(dev)
    x = {k: v.to(dev) for k, v in ebm.random_inputs(batch, seed=0).items()}
    M = ebm.mods

    def hand():
        s = M.Enc(x["x"])
        total = 0.0
        for t in range(T):
            s = M.Pred(s, x["a"][:, t])
            total = total + M.C(s)
        return total

    fns = {"lowered module (ebm.energy)": lambda: ebm.energy(**x).total,
           "hand-written torch loop": hand,
           "reference interpreter": lambda: ebm.reference_energy(**x).total}
    rows = []
    with torch.no_grad():
        ref_val = ebm.reference_energy(**x).total
        secs = time_round_robin(fns, dev, reps)
        for name, fn in fns.items():
            err = float((fn() - ref_val).abs().max())
            rows.append({"path": name, "ms": secs[name] * 1e3, "max_abs_diff_vs_reference": err})
    base = rows[0]["ms"]
    for r in rows:
        r["relative"] = r["ms"] / base
    return rows


def _cmd_compiler(args) -> int:
    rows = bench_compiler(args.batch, args.T, args.reps, args.device)
    print(f"# ebmgraph bench compiler — Figure 4 rollout, B={args.batch}, T={args.T}, "
          f"{device_name(torch.device(args.device))}, torch {torch.__version__}")
    print("| path | ms per energy | relative | max abs diff vs reference |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['path']} | {r['ms']:.3f} | {r['relative']:.2f}x | {r['max_abs_diff_vs_reference']:.1e} |")
    return 0


def bench_scaling(horizons=(128, 1024, 10_000, 100_000), reps: int = 3) -> list[dict]:
    """Seconds to ``check`` and to ``compile`` Figure 4's spec at each horizon (median of ``reps``)."""
    from ebmgraph.check import check
    from ebmgraph.compiled import compile as compile_spec
    from ebmgraph.demo import specs_dir
    from ebmgraph.spec import load

    g = load(specs_dir() / "fig04_mode2.yaml")
    rows = []
    for T in horizons:
        times = {"check": [], "compile": []}
        for _ in range(reps if T <= 10_000 else 1):
            t0 = time.perf_counter()
            check(g, {"T": T})
            t1 = time.perf_counter()
            compile_spec(g, sizes={"T": T})
            times["check"].append(t1 - t0)
            times["compile"].append(time.perf_counter() - t1)
        rows.append({"T": T, **{k: sorted(v)[len(v) // 2] for k, v in times.items()}})
    for prev, r in zip(rows, rows[1:]):
        for k in ("check", "compile"):
            r[f"{k}_exponent"] = math.log(r[k] / prev[k]) / math.log(r["T"] / prev["T"])
    return rows


def _cmd_scaling(args) -> int:
    rows = bench_scaling(tuple(args.T), args.reps)
    print(f"# ebmgraph bench scaling — Figure 4's spec, {device_name(torch.device('cpu'))}, torch {torch.__version__}")
    print("| T | check s | compile s (check + passes + lower + build) | exponent check | exponent compile |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        ec, ek = r.get("check_exponent"), r.get("compile_exponent")
        print(f"| {r['T']:,} | {r['check']:.3f} | {r['compile']:.3f} | {'' if ec is None else f'{ec:.2f}'} "
              f"| {'' if ek is None else f'{ek:.2f}'} |")
    return 0


def _cmd_rollout(args) -> int:
    from . import rollout as bench_rollout

    return int(bench_rollout.run(args) or 0)


def bench_mpc(episodes: int = 20, seed: int = 0, K: int = 256, T: int = 20, sigma: float = 1.5,
              temperature: float = 0.1, progress: bool = True) -> dict:
    """Pendulum-v1, true dynamics: ebmgraph (``ebmgraph plan``'s loop) vs pytorch-mppi, one MPPI
    iteration of ``K`` samples per decision each, episodes interleaved (ours, theirs, ours, ...).

    pytorch-mppi runs twice: with the same noise and temperature as ours, and with its defaults
    (noise 1, λ = 1). Both get the same ``PendulumDynamics`` / ``PendulumCost`` torch modules.
    """
    import numpy as np

    from ebmgraph.agent import make_planner, run
    from ebmgraph.compiled import compile as compile_spec
    from ebmgraph.demo import specs_dir
    from ebmgraph.dynamics import PendulumCost, PendulumDynamics

    try:
        from pytorch_mppi import MPPI
    except ImportError as exc:
        raise SystemExit("ebmgraph bench mpc needs the benchmark extra: .venv/bin/pip install -e '.[bench]' "
                         f"({exc})") from None
    ebm = compile_spec(specs_dir().parent / "examples" / "specs" / "pendulum_mpc.yaml", sizes={"T": T})
    planner = make_planner(ebm, "Pendulum-v1", method="mppi",
                           settings={"samples": K, "iters": 1, "sigma": sigma, "temperature": temperature})
    F, C = PendulumDynamics(), PendulumCost()

    def theirs(noise, lam):
        def policy_factory():
            ctrl = MPPI(lambda s, a: F(s, a), lambda s, a: C(s, a), 3, torch.tensor([[noise ** 2]]), num_samples=K,
                        horizon=T, lambda_=lam, u_min=torch.tensor([-2.0]), u_max=torch.tensor([2.0]))
            times = []

            def policy(obs):
                t0 = time.perf_counter()
                u = ctrl.command(torch.as_tensor(obs, dtype=torch.float32))
                times.append(time.perf_counter() - t0)
                return u.numpy().reshape(1)

            return policy, times
        return policy_factory

    rows = {"ebmgraph mppi": [], f"pytorch-mppi (σ={sigma}, λ={temperature})": [],
            "pytorch-mppi (σ=1, λ=1)": []}
    makers = {list(rows)[1]: theirs(sigma, temperature), list(rows)[2]: theirs(1.0, 1.0)}
    for i in range(episodes):
        ep = run("Pendulum-v1", planner, episodes=1, seed=seed + i, progress=False).episodes[0]
        rows["ebmgraph mppi"].append((ep.ret, ep.seconds))
        for name, make in makers.items():
            policy, times = make()
            with torch.no_grad():
                ep = run("Pendulum-v1", None, episodes=1, seed=seed + i, progress=False, policy=policy).episodes[0]
            rows[name].append((ep.ret, times))
        if progress:
            print(f"  episode {i + 1}/{episodes}: " + ", ".join(f"{k} {v[-1][0]:.1f}" for k, v in rows.items()),
                  flush=True)
    out = {}
    for name, eps in rows.items():
        rets = np.array([r for r, _ in eps])
        secs = np.concatenate([np.asarray(s) for _, s in eps])
        out[name] = {"mean_return": float(rets.mean()), "std_return": float(rets.std()),
                     "ms_median": float(np.median(secs) * 1e3), "ms_p90": float(np.quantile(secs, 0.9) * 1e3)}
    return out


def _cmd_mpc(args) -> int:
    rows = bench_mpc(args.episodes, args.seed, args.K, args.T, args.sigma, args.temperature)
    print(f"# ebmgraph bench mpc — Pendulum-v1, true dynamics, K={args.K}, horizon {args.T}, one MPPI iteration per "
          f"decision, {args.episodes} episodes (seeds {args.seed}..{args.seed + args.episodes - 1}), "
          f"{device_name(torch.device('cpu'))}, torch {torch.__version__}")
    print("| planner | mean return ± std | ms per decision (median) | p90 |")
    print("| --- | --- | --- | --- |")
    for name, r in rows.items():
        print(f"| {name} | {r['mean_return']:.1f} ± {r['std_return']:.1f} | {r['ms_median']:.2f} | {r['ms_p90']:.2f} |")
    return 0


def register_cli(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks: compiler, scaling, mpc, rollout kernels, planners")
    bsub = p.add_subparsers(dest="bench", metavar="WHAT")
    c = bsub.add_parser("compiler", help="lowered module vs reference interpreter vs hand-written torch")
    c.add_argument("--batch", type=int, default=256)
    c.add_argument("--T", type=int, default=32)
    c.add_argument("--reps", type=int, default=20)
    c.add_argument("--device", default="cpu")
    c.set_defaults(fn=_cmd_compiler)
    sc = bsub.add_parser("scaling", help="check/compile time of Figure 4's spec against the horizon T")
    sc.add_argument("--T", type=int, nargs="+", default=[128, 1024, 10_000, 100_000])
    sc.add_argument("--reps", type=int, default=3)
    sc.set_defaults(fn=_cmd_scaling)
    m = bsub.add_parser("mpc", help="Mode-2 control of Pendulum-v1: ebmgraph vs pytorch-mppi, same seeds")
    m.add_argument("--episodes", type=int, default=20)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--K", type=int, default=256)
    m.add_argument("--T", type=int, default=20)
    m.add_argument("--sigma", type=float, default=1.5)
    m.add_argument("--temperature", type=float, default=0.1)
    m.set_defaults(fn=_cmd_mpc)
    r = bsub.add_parser("rollout", help="fused Triton rollout vs eager / torch.compile / pytorch-mppi")
    from .rollout import add_arguments

    add_arguments(r)
    r.set_defaults(fn=_cmd_rollout)
    from .planners import register as register_planners

    register_planners(bsub)
    p.set_defaults(fn=lambda a: (p.print_help(), 0)[1])
