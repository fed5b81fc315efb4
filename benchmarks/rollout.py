"""Benchmark: MLP rollout + energy (Mode-2 planning) -- torch eager vs torch.compile vs
torch.compile(mode="reduce-overhead") vs the fused Triton kernel (kernels/rollout.py), plus a full
MPPI plan (kernels/mppi.py) and pytorch-mppi 0.9.1 driving the same predictor.

    ebmgraph bench rollout                                 # CUDA, N in {1024,4096,16384,65536}
    ebmgraph bench rollout --sizes 4096 --save recompute
    ebmgraph bench rollout --quick --device cpu            # smoke run in the Triton interpreter
    (or: python -m benchmarks rollout ...)

Problem: 2-layer tanh residual predictor, S=64, A=16, H=256, T=32, squared-distance cost.
Columns: us/call (CUDA events after a warm-up), TFLOP/s (model flops: fwd = 2*N*T*params,
fwd+bwd = 2x fwd, i.e. forward + input-gradient VJP, recompute not counted), sample-steps/s, and the
max relative error of the energy (and d energy / d actions for fwd+bwd) against an fp64 eager reference.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import types


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--device", default=None, help="cuda | cpu (default: cuda when available)")
    p.add_argument("--sizes", default="1024,4096,16384,65536", help="comma-separated N (samples)")
    p.add_argument("--quick", action="store_true", help="tiny sizes; on cpu runs the kernels in the interpreter")
    p.add_argument("--T", type=int, default=32)
    p.add_argument("--S", type=int, default=64)
    p.add_argument("--A", type=int, default=16)
    p.add_argument("--H", type=int, default=256)
    p.add_argument("--iters", type=int, default=8, help="MPPI iterations per plan")
    p.add_argument("--K", type=int, default=1024, help="MPPI samples per problem (P = N // K)")
    p.add_argument("--save", default="both", choices=["traj", "recompute", "both"], help="fused backward mode(s)")
    p.add_argument("--precision", default="tf32", choices=["tf32", "ieee", "bf16"])
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile columns")
    return p


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_arguments(p).parse_args(argv)


def main(argv=None):
    return run(parse(argv))


def _device(args) -> str:
    """``--quick``'s tiny sizes, and the device name (cuda when available); on the CPU the kernels run in the
    Triton interpreter, which must be chosen before the first triton import."""
    if args.quick:
        args.sizes, args.T, args.S, args.A, args.H, args.K, args.repeat, args.iters = "64", 4, 8, 4, 16, 32, 2, 2
    dev_name = args.device
    if dev_name is None or dev_name == "cpu":
        try:
            import torch as _t

            has_cuda = _t.cuda.is_available()
        except Exception:
            has_cuda = False
        dev_name = dev_name or ("cuda" if has_cuda else "cpu")
    if dev_name == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede the first triton import
    return dev_name


def _timer(torch, dev):
    """``timeit(fn, repeat)``: microseconds per call after two warm-up calls (CUDA events on a GPU)."""
    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def timeit(fn, repeat):
        fn()  # warm-up / compile
        fn()
        sync()
        if dev.type == "cuda":
            t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t0.record()
            for _ in range(repeat):
                fn()
            t1.record()
            torch.cuda.synchronize()
            return t0.elapsed_time(t1) * 1e3 / repeat
        t = time.perf_counter()
        for _ in range(repeat):
            fn()
        return (time.perf_counter() - t) * 1e6 / repeat

    return timeit


def _problem(torch, args, dev, g):
    """The predictor ``W1 [S+A, H]``, ``W2 [H, S]`` (tanh, residual) and the goal cost, drawn from ``g``,
    in float32 on ``dev`` and in float64 for the reference."""
    from ebmgraph.kernels.rollout import MLPPredictor, RolloutCost

    S, A, H = args.S, args.A, args.H
    W1, b1 = torch.randn(S + A, H, generator=g) / (S + A) ** 0.5, torch.zeros(H)
    W2, b2 = torch.randn(H, S, generator=g) * 0.1 / H ** 0.5, torch.zeros(S)
    pred = MLPPredictor([(W1.to(dev), b1.to(dev)), (W2.to(dev), b2.to(dev))], act="tanh", residual=True)
    goal = torch.randn(S, generator=g).to(dev)
    cost = RolloutCost(goal=goal, w_goal=1.0)
    return types.SimpleNamespace(W=(W1, b1, W2, b2), goal=goal, pred=pred, cost=cost, pred64=pred.to(torch.float64),
                                 cost64=cost.to(torch.float64), params=(S + A) * H + H * S)


def _methods(torch, args, p) -> dict:
    """Name -> ``fn(s0 [N, S], actions [N, T, A]) -> energy [N]``, or why the method is left out (a string)."""
    from ebmgraph.kernels.rollout import mlp_rollout, mlp_rollout_reference

    methods = {"eager": lambda s, a: mlp_rollout_reference(s, a, p.pred, p.cost)}
    if args.no_compile or args.quick:
        why = "--no-compile" if args.no_compile else "skipped in --quick"
        methods["compile"] = why
        methods["compile-ro"] = why
    else:
        try:
            methods["compile"] = torch.compile(lambda s, a: mlp_rollout_reference(s, a, p.pred, p.cost))
            methods["compile-ro"] = torch.compile(lambda s, a: mlp_rollout_reference(s, a, p.pred, p.cost),
                                                  mode="reduce-overhead")
        except Exception as e:  # pragma: no cover
            methods["compile"] = methods["compile-ro"] = f"torch.compile unavailable: {e}"
    for sv in _saves(args):
        methods[f"fused/{sv}"] = (lambda sv: lambda s, a: mlp_rollout(s, a, p.pred, p.cost, impl="fused", save=sv,
                                                                      precision=args.precision))(sv)
    return methods


def _saves(args) -> list[str]:
    return ["traj", "recompute"] if args.save == "both" else [args.save]


def _row(torch, args, dev, p, timeit, name, fn, s0, acts, ref) -> str:
    """One method's line: forward and forward+backward times, their errors against the fp64 reference
    ``ref = (E64 [N], G64 [N, T, A])``, and one MPPI plan through its rollout (eager and one fused mode)."""
    from ebmgraph.kernels.mppi import plan_mppi

    N, T, A = acts.shape
    E64, G64 = ref
    flops = 2.0 * N * T * p.params
    K = min(args.K, N)
    Pn = max(1, N // K)
    with torch.no_grad():
        E = fn(s0, acts)
    t_f = timeit(lambda: fn(s0, acts), args.repeat)
    err = ((E.double() - E64).abs().max() / E64.abs().max()).item()
    a = acts.clone().requires_grad_()

    def fb():
        a.grad = None
        fn(s0, a).sum().backward()

    t_fb = timeit(fb, args.repeat)
    gerr = ((a.grad.double() - G64).abs().max() / G64.abs().max()).item()
    mp = "n/a"
    if name in ("eager",) or name.startswith("fused"):
        ro = "reference" if name == "eager" else "fused"
        if name in ("eager", "fused/traj", f"fused/{_saves(args)[0]}"):
            gen = torch.Generator(device=dev)

            def plan(cg=False):
                gen.manual_seed(0)
                return plan_mppi(s0[:Pn], torch.zeros(Pn, T, A, device=dev), p.pred, p.cost,
                                 iters=args.iters, samples=K, temperature=1.0, sigma=0.5, bounds=(-1.0, 1.0),
                                 generator=gen, rollout=ro, precision=args.precision, cuda_graph=cg)

            mp = f"{timeit(plan, max(1, args.repeat // 4)):.1f}"
    return (f"{N:>7} {name:<16} {t_f:>10.1f} {flops / t_f / 1e6:>9.2f} {N * T / t_f:>9.2f} {err:>10.2e} "
            f"{t_fb:>10.1f} {2 * flops / t_fb / 1e6:>9.2f} {gerr:>11.2e} {mp:>11}")


def _pytorch_mppi_row(torch, args, dev, p, timeit, s0, N) -> str:
    """pytorch-mppi driving the same predictor and cost: one problem with K samples, ``iters`` command()
    calls (one plan)."""
    from pytorch_mppi import MPPI

    S, A, T = args.S, args.A, args.T
    K = min(args.K, N)
    W1d, b1d, W2d, b2d = (x.to(dev) for x in p.W)

    def dyn(s, u):
        return s + torch.tanh(torch.cat([s, u], -1) @ W1d + b1d) @ W2d + b2d

    def rc(s, u):
        return ((s - p.goal) ** 2).sum(-1)

    def pm_plan():
        ctrl = MPPI(dyn, rc, S, 0.25 * torch.eye(A, device=dev), num_samples=K, horizon=T, device=dev,
                    lambda_=1.0, u_min=-torch.ones(A, device=dev), u_max=torch.ones(A, device=dev))
        for _ in range(args.iters):
            ctrl.command(s0[0], shift_nominal_trajectory=False)
        return ctrl.U

    t_pm = timeit(pm_plan, max(1, args.repeat // 4))
    return (f"{N:>7} {'pytorch-mppi':<16} {'':>10} {'':>9} {'':>9} {'':>10} {'':>10} {'':>9} {'':>11} "
            f"{t_pm:>11.1f}   (1 problem x K={K}; ours: P={max(1, N // K)} x K={K})")


def run(args):
    dev_name = _device(args)
    try:
        import torch
    except ImportError:
        sys.exit("torch is not installed")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    try:
        from ebmgraph.kernels.rollout import (MLPPredictor, RolloutCost, dispatch,  # noqa: F401
                                              mlp_rollout, mlp_rollout_reference)
        from ebmgraph.kernels.mppi import plan_mppi  # noqa: F401 (a missing kernel ends the run in one line)
    except ImportError as e:
        sys.exit(f"cannot import kernels ({e})")
    dev = torch.device(dev_name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda requested but CUDA is not available")
    card = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU (Triton interpreter: timings meaningless)"
    print(f"device: {card} | torch {torch.__version__} | T={args.T} S={args.S} A={args.A} H={args.H} "
          f"precision={args.precision}")
    timeit, T, S, A = _timer(torch, dev), args.T, args.S, args.A
    g = torch.Generator().manual_seed(0)
    p = _problem(torch, args, dev, g)
    chosen = dispatch(torch.zeros(1, S, device=dev), torch.zeros(1, T, A, device=dev), p.pred, p.cost, args.precision)
    print(f"dispatch: {chosen}")
    methods = _methods(torch, args, p)
    try:
        from pytorch_mppi import MPPI  # noqa: F401

        have_pm = True
    except Exception as e:
        have_pm = f"pytorch-mppi missing ({e}); pip install pytorch-mppi==0.9.1"

    hdr = f"{'N':>7} {'method':<16} {'fwd us':>10} {'fwd TF/s':>9} {'Msteps/s':>9} {'fwd relerr':>10} " \
          f"{'f+b us':>10} {'f+b TF/s':>9} {'grad relerr':>11} {'mppi us':>11}"
    print(hdr)
    print("-" * len(hdr))
    for N in [int(x) for x in args.sizes.split(",")]:
        s0 = torch.randn(N, S, generator=g).to(dev) * 0.5
        acts = torch.randn(N, T, A, generator=g).to(dev) * 0.5
        a64 = acts.double().requires_grad_()
        E64 = mlp_rollout_reference(s0.double(), a64, p.pred64, p.cost64)
        E64.sum().backward()
        for name, fn in methods.items():
            if isinstance(fn, str):
                print(f"{N:>7} {name:<16} n/a: {fn}")
                continue
            try:
                print(_row(torch, args, dev, p, timeit, name, fn, s0, acts, (E64, a64.grad)))
            except Exception as e:
                print(f"{N:>7} {name:<16} failed: {type(e).__name__}: {str(e).splitlines()[0][:100]}")
        if have_pm is not True:
            print(f"{N:>7} {'pytorch-mppi':<16} n/a: {have_pm}")
            continue
        try:
            print(_pytorch_mppi_row(torch, args, dev, p, timeit, s0, N))
        except Exception as e:
            print(f"{N:>7} {'pytorch-mppi':<16} failed: {type(e).__name__}: {str(e).splitlines()[0][:100]}")
    print("mppi us = one plan of", args.iters, "iterations (P = N // K problems x K samples).")


if __name__ == "__main__":
    main()
