"""``ebmgraph bench``: benchmarks (never tests). Each prints one table, measured side by side.

* ``ebmgraph bench compiler``: the lowered module against the reference interpreter and a
  hand-written torch loop on Figure 4's rollout (CPU or GPU).
* ``ebmgraph bench rollout``: fused Triton rollout kernels against torch eager,
  torch.compile and pytorch-mppi (``kernels/bench_rollout.py``; needs CUDA for the kernel column).
* ``ebmgraph bench scaling``: check and compile times of Figure 4's spec as the horizon T
  grows, and the fitted growth exponent between consecutive horizons.
"""
from __future__ import annotations

import math
import time

import torch

from .util import cpu_name


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({torch.get_num_threads()} threads)"


def time_round_robin(fns: dict, device, reps: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call, calling the candidates in turn each round (fair under load)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            samples[k].append(time.perf_counter() - t0)
    return {k: sorted(v)[len(v) // 2] for k, v in samples.items()}


def bench_compiler(batch: int = 256, T: int = 32, reps: int = 20, device: str = "cpu") -> list[dict]:
    from .compiled import compile as compile_spec
    from .demo import specs_dir

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
    from .check import check
    from .compiled import compile as compile_spec
    from .demo import specs_dir
    from .spec import load

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
    from kernels import bench_rollout

    return int(bench_rollout.run(args) or 0)


def register_cli(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks: compiler, scaling, rollout kernels")
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
    r = bsub.add_parser("rollout", help="fused Triton rollout vs eager / torch.compile / pytorch-mppi")
    from kernels.bench_rollout import add_arguments

    add_arguments(r)
    r.set_defaults(fn=_cmd_rollout)
    p.set_defaults(fn=lambda a: (p.print_help(), 0)[1])
