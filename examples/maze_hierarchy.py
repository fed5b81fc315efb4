"""Flat against two-level planning on OGBench's point mazes (§4.7, Figure 16), same lower planner.

For each maze: collect navigate data with the noisy oracle (if missing), train the xy world model
(examples/specs/pointmaze_world_model.yaml, if missing), learn the upper level (ebmgraph fit-upper),
then plan the five evaluation tasks (episodes cycle task_id 1..5, seeds 0..N-1) with the flat
planner (examples/specs/pointmaze_flat.yaml: MPPI on the learned model toward the goal) and with the
same planner under the upper level (--upper: its goal becomes the upper level's sub-goal). Every
step is an ``ebmgraph`` command, printed before it runs.

    .venv/bin/python examples/maze_hierarchy.py --mazes medium large giant --episodes 20
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

STEPS = {"medium": 100_000, "large": 200_000, "giant": 300_000}
EXE = str(Path(sys.executable).with_name("ebmgraph"))


def sh(args: list[str], quiet: bool = False) -> str:
    print("$ " + " ".join(shlex.quote(a) for a in [Path(EXE).name if a == EXE else a for a in args]), flush=True)
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    if not quiet:
        print(out.strip().splitlines()[-1] if out.strip() else "", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mazes", nargs="+", default=["medium", "large", "giant"], choices=sorted(STEPS))
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--horizon", type=int, default=20)
    ap.add_argument("--modes", nargs="+", default=["flat", "top_down"], choices=["flat", "top_down", "joint"])
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--out", default="runs/maze_hierarchy.json")
    args = ap.parse_args()
    rows = []
    for m in args.mazes:
        env, base = f"pointmaze-{m}-navigate-v0", Path(args.runs) / f"pointmaze_{m}"
        data, wm, up = base.with_suffix(".npz"), Path(f"{base}_wm"), Path(f"{base}_upper.safetensors")
        if not data.exists():
            sh([EXE, "collect", env, "--steps", str(STEPS[m]), "--policy", "oracle", "--noise", "0.2", "--seed", "0",
                "--out", str(data), "--quiet"])
        if not (wm / "model.safetensors").exists():
            sh([EXE, "train", "examples/specs/pointmaze_world_model.yaml", "--data", str(data), "--loss", "energy",
                "--epochs", "20", "--batch", "512", "--lr", "1e-3", "--schedule", "cosine", "--out", str(wm)], True)
        sh([EXE, "fit-upper", str(data), "--unit", "4", "--pool", "5", "--out", str(up)])
        for mode in args.modes:
            cmd = [EXE, "plan", "examples/specs/pointmaze_flat.yaml", "--env", env, "--params", str(wm),
                   "--from-info", "goal=goal", "--reset", "task_id=1,2,3,4,5", "--method", "mppi", "--set",
                   f"samples={args.samples}", "--set", "sigma=1.0", "--set", "temperature=0.1", "--horizon",
                   str(args.horizon), "--episodes", str(args.episodes), "--no-frames", "--quiet", "--json",
                   "--out", str(Path(args.runs) / f"maze-{m}-{mode}")]
            if mode != "flat":
                cmd += ["--upper", str(up), "--upper-mode", mode]
            s = json.loads(sh(cmd, True).strip().splitlines()[-1])
            rows.append({"maze": m, "planner": mode, "successes": s["successes"], "episodes": s["episodes"],
                         "success_rate": s["success_rate"], "seeds": f"{s['seeds'][0]}..{s['seeds'][-1]}",
                         "ms_per_decision_median": round(s["ms_per_decision_median"], 2),
                         "mean_length": sum(s["lengths"]) / len(s["lengths"]),
                         "per_task": [sum(s["returns"][i] > 0 for i in range(k, len(s["returns"]), 5))
                                      for k in range(5)],
                         "picture": s["files"].get("maze_paths")})
            r = rows[-1]
            print(f"  {m:6s} {mode:8s} success {r['successes']}/{r['episodes']} (seeds {r['seeds']}), "
                  f"{r['ms_per_decision_median']} ms/decision, per task {r['per_task']}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| maze | planner | success | ms / decision (median) | mean steps | successes per task 1..5 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['maze']} | {r['planner']} | {r['successes']}/{r['episodes']} ({100 * r['success_rate']:.0f}%) | "
              f"{r['ms_per_decision_median']} | {r['mean_length']:.0f} | {r['per_task']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
