"""``ebmgraph infer SPEC --method M``: minimize a spec's energy on random or loaded observations."""
from __future__ import annotations

import json
import time

import numpy as np
import torch

from ..errors import SpecError


def cmd_infer(args) -> int:
    from ..compiled import compile as compile_spec
    from .api import minimize

    try:
        ebm = compile_spec(args.spec, seed=args.seed)
    except SpecError as exc:
        print(exc, flush=True)
        return 1
    g = ebm.graph
    observed_names = [v.name for v in g.variables if v.role == "observed"]
    over = [v.name for v in g.variables if v.role != "observed" and not v.sampled]
    if args.data:
        with np.load(args.data, allow_pickle=False) as f:
            obs = {k: torch.as_tensor(f[k]) for k in observed_names if k in f.files}
        missing = [k for k in observed_names if k not in obs]
        if missing:
            print(f"{args.data}: missing arrays {', '.join(missing)}", flush=True)
            return 1
        obs = {k: (v.to(ebm.dtype) if v.is_floating_point() else v) for k, v in obs.items()}
    else:
        obs = ebm.random_inputs(args.batch, seed=args.seed, only=observed_names)
    start = {}
    from .core import Problem, initial_values

    try:
        prob = Problem(ebm, obs, over, handled=tuple(v.name for v in g.variables if v.sampled))
        x0 = initial_values(prob, None)
        if not any(v.sampled for v in g.variables):
            with torch.no_grad():
                start = {"energy_before": prob.evaluate(x0).total.tolist()}
        t0 = time.perf_counter()
        r = minimize(ebm, obs, over=over, method=args.method, seed=args.seed, fused=args.fused)
        dt = time.perf_counter() - t0
    except (SpecError, ValueError) as exc:
        print(f"error: {exc}", flush=True)
        return 1
    out = {"spec": g.name, "method": r.method, "explanation": r.info.get("explanation", ""), **start,
           "energy_after": r.energy.tolist(), "seconds": round(dt, 4), "over": over}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{g.name}: minimized over {', '.join(over)} with {r.method} ({out['explanation']})")
        if start:
            print(f"  energy before: {np.round(start['energy_before'], 5).tolist()}")
        print(f"  energy after:  {np.round(out['energy_after'], 5).tolist()}")
        print(f"  time: {dt:.3f} s")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("infer", help="minimize the energy over latents and actions")
    p.add_argument("spec")
    p.add_argument("--method", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--data", help=".npz with the observed variables (loaded without pickle)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--fused", action="store_true",
                   help="cem/mppi with the energy-fused rollout kernel (Mode-2 specs that fit; see compile --explain)")
    p.set_defaults(fn=cmd_infer)
