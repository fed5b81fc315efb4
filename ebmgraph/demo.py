"""``ebmgraph demo``: the main job on embedded data, collected in one report page.

1. every spec in specs/: check (with the collapse verdict), compile, evaluate on random
   inputs, compare with the reference interpreter, and draw it (when graphviz is present);
2. Mode-2 planning on Figure 4's spec: energy before/after ``ebmgraph.minimize``;
3. a short JEPA-with-VICReg run on scikit-learn's digits with its curves and probe accuracy.
Everything goes under ``--out`` (default out/demo) with a README.md report.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from .cliargs import count
from .util import atomic_write_text


def specs_dir() -> Path:
    """The project's specs/ (beside the package in a checkout), else ./specs."""
    beside = Path(__file__).resolve().parents[1] / "specs"
    return beside if beside.is_dir() else Path.cwd() / "specs"


def run_specs(out: Path, lines: list[str]) -> list[dict]:
    from .compiled import compile as compile_spec
    from .spec import load

    rows = []
    try:
        from . import render as _render
    except Exception:  # drawing is optional
        _render = None
    lines += ["## Every spec: check, compile, evaluate, draw", "",
              "| spec | figure | architecture | can collapse | energy (mean of 4) | max diff vs reference | picture |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for path in sorted(specs_dir().glob("*.yaml")):
        g = load(path)
        ebm = compile_spec(g, seed=0).double()
        chk = ebm.checked
        x = ebm.random_inputs(4, seed=0)
        with torch.no_grad():
            fast = ebm.energy(**x).total
            ref = ebm.reference_energy(**x).total
        diff = float((fast - ref).abs().max())
        pic = ""
        if _render is not None and hasattr(_render, "render"):
            try:
                target = out / "figures" / f"{path.stem}.svg"
                _render.render(g, target)
                pic = f"![{path.stem}](figures/{path.stem}.svg)"
            except Exception as exc:  # no `dot`: keep the DOT text
                try:
                    _render.render(g, out / "figures" / f"{path.stem}.dot")
                    pic = f"[DOT](figures/{path.stem}.dot) ({str(exc).splitlines()[0]})"
                except Exception:
                    pic = "—"
        arch = chk.architecture
        row = {"spec": path.name, "figure": g.figure, "architecture": arch.label,
               "can_collapse": arch.can_collapse, "energy": float(fast.mean()), "max_diff": diff}
        rows.append(row)
        lines.append(f"| {path.name} | {g.figure} | {arch.label} | {'yes' if arch.can_collapse else 'no'} "
                     f"| {row['energy']:.4f} | {diff:.1e} | {pic} |")
        print(f"  {path.name:<36} fig {g.figure:<4} {arch.label:<55} E={row['energy']:.4f} diff={diff:.1e}")
    lines.append("")
    return rows


def run_planning(out: Path, lines: list[str], seed: int) -> dict | None:
    try:
        from .infer import minimize
    except Exception as exc:
        lines += ["## Mode-2 planning", "", f"skipped: {exc}", ""]
        return None
    from .compiled import compile as compile_spec

    ebm = compile_spec(specs_dir() / "fig04_mode2.yaml", seed=seed, sizes={"T": 10})
    x = ebm.random_inputs(8, seed=seed)
    obs = {"x": x["x"]}
    with torch.no_grad():
        before = ebm.energy(**x).total
    rows = {}
    for method in ("gradient", "cem", "mppi"):
        t0 = time.perf_counter()
        res = minimize(ebm, observed=obs, over=["a"], method=method, seed=seed, init={"a": x["a"]})
        rows[method] = {"before": float(before.mean()), "after": float(res.energy.detach().mean()),
                        "seconds": time.perf_counter() - t0}
    lines += ["## Mode-2 planning (Figure 4, T = 10, 8 problems)", "",
              "| method | mean energy before | after | seconds |", "| --- | --- | --- | --- |"]
    for m, r in rows.items():
        lines.append(f"| {m} | {r['before']:.4f} | {r['after']:.4f} | {r['seconds']:.2f} |")
        print(f"  plan with {m:<8}: energy {r['before']:.4f} -> {r['after']:.4f} ({r['seconds']:.2f} s)")
    lines.append("")
    return rows


def run_training(out: Path, lines: list[str], seed: int, epochs: int) -> dict | None:
    try:
        from .train import demo_jepa_vicreg
    except Exception as exc:
        lines += ["## JEPA with VICReg on digits", "", f"skipped: {exc}", ""]
        return None
    res = demo_jepa_vicreg(out / "jepa_vicreg", epochs=epochs, seed=seed)
    lines += ["## JEPA with VICReg on digits", "", "Report: [jepa_vicreg/report.md](jepa_vicreg/report.md)", ""]
    res = res or {}
    if res.get("probe"):
        print("  linear probe: " + ", ".join(f"{k} {v:.3f}" for k, v in res["probe"].items()))
    for name, acc in (res.get("probe") or {}).items():
        lines.append(f"- linear-probe accuracy, {name}: {acc:.3f}" if isinstance(acc, float) else f"- {name}: {acc}")
    if "seconds" in res:
        lines.append(f"- training time: {res['seconds']:.0f} s (representation width {res.get('width')})")
    lines.append("")
    return res


def run_agent(out: Path, lines: list[str], seed: int, episodes: int) -> dict | None:
    """Mode-2 control of Pendulum-v1 with its true dynamics (§3.1.2, Figure 4): a few seeded
    episodes of receding-horizon MPPI, against zero torque; returns plot, frames and a GIF."""
    try:
        from .agent import make_planner, run
        from .agent import report as agent_report
    except Exception as exc:
        lines += ["## The agent acts: Mode-2 on Pendulum-v1", "", f"skipped: {exc}", ""]
        return None
    import numpy as np

    from .compiled import compile as compile_spec

    ebm = compile_spec(specs_dir().parent / "examples" / "specs" / "pendulum_mpc.yaml", seed=seed)
    settings = {"samples": 256, "iters": 1, "sigma": 1.5, "temperature": 0.1}
    planner = make_planner(ebm, "Pendulum-v1", method="mppi", settings=settings, seed=seed)
    t0 = time.perf_counter()
    res = run("Pendulum-v1", planner, episodes=episodes, seed=seed, record_first=True, progress=False)
    seconds = time.perf_counter() - t0
    zero = run("Pendulum-v1", None, episodes=episodes, seed=seed, progress=False,
               policy=lambda obs: np.zeros(1, np.float32))
    s = res.summary()
    d = out / "agent"
    agent_report.returns_plot(res, d / "returns.png", baselines={"zero torque": float(zero.returns.mean())},
                              title=f"Pendulum-v1, true dynamics: MPPI (K=256, horizon {planner.binding.T})")
    agent_report.frame_strip(res.episodes[0].frames, d / "episode0_frames.png")
    agent_report.gif(res.episodes[0].frames, d / "episode0.gif")
    lines += ["## The agent acts: Mode-2 on Pendulum-v1 (true dynamics)", "",
              f"Spec `examples/specs/pendulum_mpc.yaml` (embedded): perceive, minimize the planned cost over "
              f"{planner.binding.T} torques with MPPI (K = 256, one iteration per decision, warm-started with the "
              f"shifted plan), act with the first, repeat. {episodes} episodes, seeds {seed}..{seed + episodes - 1}.",
              "", "| policy | mean return | returns | ms per decision (median) |", "| --- | --- | --- | --- |",
              f"| MPPI | {s['mean_return']:.1f} | {', '.join(f'{r:.0f}' for r in s['returns'])} "
              f"| {s['ms_per_decision_median']:.2f} |",
              f"| zero torque | {zero.returns.mean():.1f} | {', '.join(f'{r:.0f}' for r in zero.returns)} | — |", "",
              "![returns](agent/returns.png)", "", "![episode 0](agent/episode0_frames.png)", "",
              "[episode 0 as a GIF](agent/episode0.gif)", ""]
    print(f"  MPPI on Pendulum-v1: mean return {s['mean_return']:.1f} over {episodes} episodes "
          f"(zero torque {zero.returns.mean():.1f}); {s['ms_per_decision_median']:.2f} ms per decision; "
          f"{seconds:.1f} s")
    return {**s, "zero_torque_mean_return": float(zero.returns.mean()), "seconds": seconds}


def main_demo(out: str | Path = "out/demo", *, seed: int = 0, epochs: int | None = None,
              quick: bool = False) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# ebmgraph demo", "", f"Seed {seed}. Torch {torch.__version__}.", ""]
    print("[1/4] specs: check, compile, evaluate, draw")
    summary = {"specs": run_specs(out, lines)}
    print("[2/4] Mode-2 planning")
    summary["planning"] = run_planning(out, lines, seed)
    print("[3/4] JEPA + VICReg on digits")
    summary["training"] = run_training(out, lines, seed, epochs if epochs is not None else (2 if quick else 150))
    print("[4/4] the agent acts: Mode-2 control of Pendulum-v1")
    summary["agent"] = run_agent(out, lines, seed, 1 if quick else 4)
    atomic_write_text(out / "README.md", "\n".join(lines) + "\n")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    print(f"report: {out / 'README.md'}")
    return summary


def _cmd(args) -> int:
    main_demo(args.out, seed=args.seed, epochs=args.epochs, quick=args.quick)
    return 0


def register_cli(sub) -> None:
    p = sub.add_parser("demo", help="run the main job on embedded data and write a report")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--seed", type=count(0), default=0)
    p.add_argument("--epochs", type=count(), default=None, help="epochs for the JEPA run")
    p.add_argument("--quick", action="store_true", help="a few seconds instead of a few minutes")
    p.set_defaults(fn=_cmd)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers()
    register_cli(sub)
    a = ap.parse_args(["demo", *sys.argv[1:]])
    sys.exit(_cmd(a))
