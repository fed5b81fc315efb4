"""``ebmgraph infer SPEC --method M``: minimize a spec's energy on random or loaded observations.

The same call as :func:`ebmgraph.minimize`: ``--size`` sets sizes, ``--params`` loads trained
parameters (safetensors, the one loading rule of :func:`ebmgraph.cliargs.load_params`), ``--set key=value`` passes method settings (``steps``, ``simulations``,
``width``, ``samples``, ``iters`` ...), and the values found are printed with their energies.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from ..cliargs import MODULE_HELP, PARAMS_HELP, count, load_modules, load_params, parse_settings, parse_sizes, print_errors
from ..errors import SpecError


def _load_observed(ebm, path: str, names: list[str]) -> dict:
    """The observed variables ``names`` from the ``.npz`` at ``path`` (one-line errors naming it)."""
    from ..util import read_npz

    arrays = read_npz(path, names, required=False)
    missing = [k for k in names if k not in arrays]
    if missing:
        raise SpecError(f"{path}: missing arrays {', '.join(missing)}")
    obs = {k: torch.as_tensor(v) for k, v in arrays.items()}
    return {k: (v.to(ebm.dtype) if v.is_floating_point() else v) for k, v in obs.items()}


def cmd_infer(args) -> int:
    from ..compiled import compile as compile_spec
    from .api import minimize
    from .core import Problem, initial_values

    try:
        ebm = compile_spec(args.spec, seed=args.seed, sizes=parse_sizes(args.size), modules=load_modules(args.module))
        load_params(ebm, args.params)
        g = ebm.graph
        observed_names = [v.name for v in g.variables if v.role == "observed"]
        over = [v.name for v in g.variables if v.role != "observed" and not v.sampled]
        obs = _load_observed(ebm, args.data, observed_names) if args.data else \
            ebm.random_inputs(args.batch, seed=args.seed, only=observed_names)
        if args.check_finite:
            bad = [k for k, v in obs.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
            if bad:
                raise SpecError(f"observed {', '.join(bad)} hold NaN or Inf values")
        settings = parse_settings(args.set)
        start = {}
        prob = Problem(ebm, obs, over, handled=tuple(v.name for v in g.variables if v.sampled))
        if not any(v.sampled for v in g.variables):
            with torch.no_grad():
                start = {"energy_before": prob.evaluate(initial_values(prob, settings.get("init"))).total.tolist()}
        t0 = time.perf_counter()
        r = minimize(ebm, obs, over=over, method=args.method, seed=args.seed, fused=args.fused, **settings)
        dt = time.perf_counter() - t0
    except (SpecError, ValueError, KeyError, OSError) as exc:
        if isinstance(exc, SpecError):
            print_errors(exc)
        else:
            print(f"ebmgraph infer: error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 1
    values = {k: v.detach().cpu().tolist() for k, v in r.values.items()}
    out = {"spec": g.name, "method": r.method, "explanation": r.info.get("explanation", ""), **start,
           "energy_after": r.energy.tolist(), "values": values, "settings": settings, "seconds": round(dt, 4),
           "over": over}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{g.name}: minimized over {', '.join(over)} with {r.method} ({out['explanation']})")
        if start:
            print(f"  energy before: {np.round(start['energy_before'], 5).tolist()}")
        print(f"  energy after:  {np.round(out['energy_after'], 5).tolist()}")
        for k, v in values.items():
            print(f"  {k}: {np.round(np.asarray(v, dtype=float), 4).tolist()}")
        print(f"  time: {dt:.3f} s")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("infer", help="minimize the energy over latents and actions")
    p.add_argument("spec")
    p.add_argument("--method", default="auto")
    p.add_argument("--seed", type=count(0), default=0)
    p.add_argument("--json", action="store_true", help="one JSON object: energies, values found, settings, time")
    p.add_argument("--data", help=".npz with the observed variables (loaded without pickle)")
    p.add_argument("--batch", type=count(), default=2, help="random observations drawn without --data")
    p.add_argument("--size", action="append", metavar="NAME=INT", help="set a size, e.g. T=16")
    p.add_argument("--module", action="append", metavar="NAME=PKG.MOD:ATTR", help=MODULE_HELP)
    p.add_argument("--params", "--weights", dest="params", metavar="FILE", help=PARAMS_HELP)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a method setting, e.g. simulations=2000, steps=200, width=64, samples=512, iters=50")
    p.add_argument("--no-check-finite", dest="check_finite", action="store_false",
                   help="do not refuse NaN/Inf observations")
    p.add_argument("--fused", action="store_true",
                   help="cem/mppi with the energy-fused rollout kernel (Mode-2 specs that fit; see compile --explain)")
    p.set_defaults(fn=cmd_infer)
