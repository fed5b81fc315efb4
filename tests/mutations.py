"""Mutation check of the test suite (issue 10): does each known wrong change fail some test?

Run by hand, outside CI (it copies the tree once per mutation and runs pytest there):

    .venv/bin/python tests/mutations.py                 # the mutations of issue 10
    .venv/bin/python tests/mutations.py --only a d      # some of them
    .venv/bin/python tests/mutations.py --extra         # also the extra mutations below
    .venv/bin/python tests/mutations.py --only p t u v w x y sc mb mi z   # issue 28's, with the control
    .venv/bin/python tests/mutations.py --src /path/to/tree

For each mutation: copy the source tree (without .git, .venv, caches) to a temporary
directory, apply a small textual patch to the source there, and run the relevant test files
in the copy (``pytest -x -q -n 0``, with a timeout). The unmutated copy runs the same test
files first: a mutation counts as caught only if the suite passes without it and fails with it. A mutation's
tests may name single tests (``file::test``): issue 28's each name the one test that guards them.

Patches are located by small anchors, not by file and line, because the source is being
refactored: each patch names a scope (a regular expression for the ``def``/``class`` line
that contains the code, searched in every ``.py`` file under ebmgraph/, kernels/, benchmarks/ and
examples/) and a regular expression replaced inside that scope. An anchor that is not found exactly once is
an error ("ANCHOR"), reported loudly and counted as a failure of this script.

Exit status: 0 when every mutation is caught, 1 when one survives, 2 on anchor/setup errors.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("ebmgraph", "kernels", "benchmarks", "examples")
IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", "out", "runs",
                                "*.pyc", ".mypy_cache", ".ruff_cache")


@dataclass
class Patch:
    scope: str  # regex matching the first line of the enclosing def/class (searched in every source file)
    pattern: str  # regex replaced inside that scope (must match exactly once)
    repl: str


@dataclass
class Mutation:
    key: str
    what: str
    patches: list[Patch]
    tests: list[str]
    extra: bool = False
    notes: list[str] = field(default_factory=list)


MUTATIONS = [
    Mutation("a", "mlp ignores act= (always relu)",
             [Patch(r"^class MLP\b", r"ACTIVATIONS\[act\]", 'ACTIVATIONS["relu"]')],
             ["tests/test_specs.py", "tests/test_module_formulas.py"]),
    Mutation("b", "l1_dist computes squares",
             [Patch(r"^class Divergence\b", r'("l1_dist"[^\n]*\n[^\n]*?\(a - b\))\.abs\(\)', r"\1.pow(2)")],
             ["tests/test_module_formulas.py"]),
    Mutation("c", "huber ignores delta",
             [Patch(r"^class Divergence\b", r"delta=self\.delta", "delta=1.0")],
             ["tests/test_module_formulas.py"]),
    Mutation("d", "fold turns 0 - x into x",
             [Patch(r"^def _fold\b", r'e\.op == "\+"( and isinstance\(a, ir\.Num\) and a\.value == 0)',
                    r'e.op in "+-"\1')],
             ["tests/test_passes_oracle.py"]),
    Mutation("e", "MCTS selection ignores values (q := 0 in select)",
             [Patch(r"^def select\b", r"(\n(\s*)q = [^\n]*)", r"\1\n\2q = q * 0.0")],
             ["tests/test_infer_mcts_strength.py"]),
    Mutation("f", "resume switched off (fit(resume=True) ignores the checkpoint, starts from scratch)",
             [Patch(r"^[ \t]*def fit\b", r"\bif resume\b", "if False and resume")],
             ["tests/test_train_resume.py"]),
    # ---- extra mutations (--extra): other ways the formulas, folding and search can be wrong
    Mutation("g", "mlp ignores residual=",
             [Patch(r"^class MLP\b", r"self\.residual = residual", "self.residual = False")],
             ["tests/test_specs.py", "tests/test_module_formulas.py"], extra=True),
    Mutation("h", "gaussian ignores sigma",
             [Patch(r"^class Regularizer\b", r"/ \(2\.0 \* self\.sigma\s*\*\*\s*2\)", "/ 2.0")],
             ["tests/test_module_formulas.py"], extra=True),
    Mutation("i", "quadratic uses L^T L instead of L L^T",
             [Patch(r"^class Quadratic\b", r"v = (?:d @ self\.L|matmul\(d, self\.L\))", "v = matmul(d, self.L.T)")],
             ["tests/test_module_formulas.py"], extra=True),
    Mutation("j", "conv encoders ignore act= (always relu)",
             [Patch(r"^class ConvEncoder\b", r"ACTIVATIONS\[act\]", 'ACTIVATIONS["relu"]')],
             ["tests/test_module_formulas.py"], extra=True),
    Mutation("q", "F_beta (laplace) averages log-weights instead of the weights (Jensen bias)",
             [Patch(r"^def free_energy\b", r"\(torch\.logsumexp\(-beta \* E - log_q, 1\) - math\.log\(K\)\)",
                    "(-beta * E - log_q).mean(1)")],
             ["tests/test_free_energy_quadrature.py"], extra=True),
    Mutation("r", "F_beta (laplace) proposal density misses its log-determinant",
             [Patch(r"^def free_energy\b", r"\+ torch\.log\(torch\.diagonal\(Lc", "+ 0 * torch.log(torch.diagonal(Lc")],
             ["tests/test_free_energy_quadrature.py"], extra=True),
    Mutation("s", "F_beta (uniform) proposal density uses half the box volume",
             [Patch(r"^def free_energy\b", r"log_vol = torch\.log\(hi - lo\)\.sum\(\)",
                    "log_vol = torch.log(hi - lo).sum() - 0.6931471805599453")],
             ["tests/test_free_energy_quadrature.py"], extra=True),
    # ---- issue 28: each guards one test that used to pass with its feature broken (run the named test only)
    Mutation("p", "planners ignore the action box (projection onto the bounds removed; env's clip still there)",
             [Patch(r"^[ \t]*def project1\b",
                    r"return X\.clamp\(min=lo, max=hi\) if \(lo is not None or hi is not None\) else X", "return X")],
             ["tests/test_agent.py::test_pendulum_true_dynamics_beats_zero_torque"], extra=True),
    Mutation("t", "the risk objective ignores lambda (plans minimize the mean; the report says mean + lambda*std)",
             [Patch(r"^def with_risk\b", r"return E\.mean\(1\) \+ lam \* E\.std\(1, unbiased=False\)",
                    "return E.mean(1) + 0.0 * lam * E.std(1, unbiased=False)")],
             ["tests/test_uncertainty.py::test_a_risk_planner_minimizes_mean_plus_spread_over_the_same_draws"],
             extra=True),
    Mutation("u", "Mode1.act does not clip the policy's action to the action box",
             [Patch(r"^[ \t]*def act\b", r"return torch\.clamp\(a, ", "return a; torch.clamp(a, ")],
             ["tests/test_memory_task.py::test_the_warm_policy_proposes_its_actions_along_the_models_states"],
             extra=True),
    Mutation("v", "the sampler's random state lives in the Planner again (PlanState.rng ignored, as before issue 28)",
             [Patch(r"^def plan_step\b", r"gen = torch\.Generator\(\)\n[ \t]*gen\.set_state\([^\n]*\)",
                    'gen = planner.__dict__.setdefault("_gen", as_generator(planner.seed))')],
             ["tests/test_agent.py::test_plan_step_is_a_function_of_explicit_state"], extra=True),
    Mutation("w", "hjepa compare chains Pred1 with the window's actions one step late",
             [Patch(r"^def compare_predictions\b", r"range\(H - 1, L - 1\)", "range(H, L)")],
             ["tests/test_hjepa_example.py::test_the_comparison_against_closed_forms"],
             extra=True),
    Mutation("x", "the carried memory is emptied every decision (next_carry returns the initial carry)",
             [Patch(r"^[ \t]*def next_carry\b",
                    r"return \{var: (?:env\[\(fn, 0\)\]|vals\[fn\])\.detach\(\) for var, fn in "
                    r"self\.binding\.carry\.items\(\)\}", "return self.initial_carry()")],
             ["tests/test_memory_task.py::test_plan_cli_carries_memory_and_reports_success"], extra=True),
    Mutation("y", "the reset's info is read as zeros (a maze's goal at the origin)",
             [Patch(r"^[ \t]*def reset_values\b", r"out\[var\] = x\[None\]", "out[var] = torch.zeros_like(x)[None]")],
             ["tests/test_maze.py::test_the_goal_comes_from_the_reset_and_tasks_cycle"], extra=True),
    Mutation("sc", "bench scaling's exponent divides by the ratio of horizons, not its logarithm",
             [Patch(r"^def bench_scaling\b", r"/ math\.log\(r\[\"T\"\] / prev\[\"T\"\]\)",
                    '/ (r["T"] / prev["T"])')],
             ["tests/test_bench_smoke.py::test_bench_scaling_runs_and_fits_an_exponent"], extra=True),
    Mutation("mb", "MCTS answers its start (no simulated sequence is ever kept as the best)",
             [Patch(r"^def (?:make_simulation|_simulation)\b", r"better = \(E < best\) if critic is None",
                    "better = (E < best) & False if critic is None")],
             ["tests/test_infer_mcts_strength.py::test_mcts_from_the_default_start_reaches_the_exhaustive_optimum"],
             extra=True),
    Mutation("mi", "MCTS ignores a given start (init): all zeros instead",
             [Patch(r"^class MCTS\b", r"initial_values\(self\.prob, init\)", "initial_values(self.prob, None)")],
             ["tests/test_infer_mcts_strength.py::test_mcts_from_a_given_start_reaches_the_exhaustive_optimum"],
             extra=True),
    Mutation("z", "control: a neutral rewrite of l1_dist (|x| as ||x||)",
             [Patch(r"^class Divergence\b", r'("l1_dist"[^\n]*\n[^\n]*?\(a - b\))\.abs\(\)', r"\1.abs().abs()")],
             ["tests/test_module_formulas.py"], extra=True, notes=["must SURVIVE: checks the harness"]),
    Mutation("k", "transformer block post-norm instead of pre-norm",
             [Patch(r"^class Transformer\b", r"norm_first=True", "norm_first=False")],
             ["tests/test_module_formulas.py"], extra=True),
    Mutation("l", "GRU halves its state before the cell",
             [Patch(r"^class GRU\b", r"self\.cell\(_cat\(xs\), h\)", "self.cell(_cat(xs), h * 0.5)")],
             ["tests/test_module_formulas.py"], extra=True),
    Mutation("m", "linear ignores bias=false",
             [Patch(r"^KINDS\b", r'bool\(kw\.get\("bias", True\)\)', "True")],
             ["tests/test_module_formulas.py"], extra=True),
    Mutation("n", "fold drops a double negation's sign (-(-x) -> -x)",
             [Patch(r"^def _fold\b", r"return inner\.operand", "return ir.Neg(inner.operand)")],
             ["tests/test_passes_oracle.py"], extra=True),
    Mutation("o", "fold computes number / number as a product",
             [Patch(r"^def _fold\b", r'"/": a\.value / b\.value if b\.value else 0\.0',
                    r'"/": a.value * b.value')],
             ["tests/test_passes_oracle.py"], extra=True),
]
CONTROL = {"z"}  # rewrites that do not change behaviour: they must survive


def _scope_span(text: str, start: int) -> tuple[int, int]:
    """The def/class starting at ``start``: up to the next line at its indent or less."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", start)
    line = text[line_start:line_end]
    indent = len(line) - len(line.lstrip())
    end = len(text)
    for n in re.finditer(r"\n([ \t]*)(\S)", text[line_end:]):
        if len(n.group(1)) <= indent and n.group(2) not in ")]}#":
            end = line_end + n.start()
            break
    return start, end


def _apply(tree: Path, patch: Patch) -> str:
    """Patch the one scope (in any source file) that matches ``patch.scope`` and contains ``patch.pattern``."""
    scoped, hits = [], []
    for d in SOURCE_DIRS:
        for f in sorted((tree / d).rglob("*.py")):
            text = f.read_text()
            for m in re.finditer(patch.scope, text, re.M):
                a, b = _scope_span(text, m.start())
                scoped.append(f)
                n = len(re.findall(patch.pattern, text[a:b]))
                if n:
                    hits.append((f, text, a, b, n))
    where = ", ".join(sorted({str(f.relative_to(tree)) for f in scoped})) or "no file"
    if len(hits) != 1 or hits[0][4] != 1:
        raise LookupError(f"ANCHOR: /{patch.pattern}/ must occur once in one scope /{patch.scope}/; scopes in "
                          f"{where}, occurrences {[(str(h[0].relative_to(tree)), h[4]) for h in hits]}")
    f, text, a, b, _ = hits[0]
    f.write_text(text[:a] + re.sub(patch.pattern, patch.repl, text[a:b], count=1) + text[b:])
    return str(f.relative_to(tree))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=IGNORE, symlinks=True)
    return dst


def _run_tests(tree: Path, tests: list[str], timeout: float) -> tuple[str, str]:
    """('pass' | 'fail' | 'timeout' | 'error', last lines)."""
    env = dict(os.environ, PYTHONPATH=str(tree), TRITON_INTERPRET="1", PYTHONDONTWRITEBYTECODE="1")
    probe = subprocess.run([sys.executable, "-c", "import ebmgraph, sys; print(ebmgraph.__file__)"], cwd=tree,
                           env=env, capture_output=True, text=True)
    if probe.returncode != 0 or not Path(probe.stdout.strip()).resolve().is_relative_to(tree.resolve()):
        return "error", f"the copy does not import its own ebmgraph: {probe.stdout.strip()} {probe.stderr[-500:]}"
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider", *tests]
    try:
        r = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", f"timed out after {timeout:.0f}s"
    tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-6:])
    if r.returncode == 0:
        return "pass", tail
    if r.returncode == 1:
        return "fail", tail
    return "error", tail  # 2: interrupted / collection error, 4: usage, 5: no tests


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=ROOT, help="source tree to copy (default: this checkout)")
    ap.add_argument("--only", nargs="*", help="mutation keys to run")
    ap.add_argument("--extra", action="store_true", help="also run the extra mutations")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per pytest run")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--dry", action="store_true", help="only apply each patch to a copy and print the diff")
    args = ap.parse_args(argv)

    muts = [m for m in MUTATIONS if (args.only and m.key in args.only) or (not args.only and (args.extra or not m.extra))]
    rows, status = [], 0
    with tempfile.TemporaryDirectory(prefix="ebm-mutations-") as tmp:
        tmp = Path(tmp)
        baseline: dict[tuple[str, ...], tuple[str, str]] = {}
        for m in muts:
            t0 = time.time()
            key = tuple(m.tests)
            if key not in baseline and not args.dry:  # the unmutated copy must pass these files
                base = _copy(args.src, tmp / f"base-{len(baseline)}")
                baseline[key] = _run_tests(base, m.tests, args.timeout)
                shutil.rmtree(base, ignore_errors=True)
            b_state, b_tail = baseline.get(key, ("pass", ""))
            tree = _copy(args.src, tmp / f"mut-{m.key}")
            if args.dry:
                try:
                    files = sorted({_apply(tree, p) for p in m.patches})
                    diff = subprocess.run(["diff", "-ru", str(args.src / files[0]), str(tree / files[0])],
                                          capture_output=True, text=True).stdout
                    print(f"--- {m.key}: {m.what}\n{diff}")
                    rows.append((m.key, m.what, "patch ok", ", ".join(files)))
                except LookupError as exc:
                    rows.append((m.key, m.what, "ANCHOR", str(exc)))
                    status = max(status, 2)
                shutil.rmtree(tree, ignore_errors=True)
                continue
            try:
                files = sorted({_apply(tree, p) for p in m.patches})
            except LookupError as exc:
                rows.append((m.key, m.what, "ANCHOR", str(exc)))
                status = max(status, 2)
                shutil.rmtree(tree, ignore_errors=True)
                continue
            if b_state != "pass":
                rows.append((m.key, m.what, "BASELINE " + b_state.upper(),
                             f"unmutated copy does not pass {' '.join(m.tests)}: {b_tail}"))
                status = max(status, 2)
                shutil.rmtree(tree, ignore_errors=True)
                continue
            state, tail = _run_tests(tree, m.tests, args.timeout)
            shutil.rmtree(tree, ignore_errors=True)
            control = m.key in CONTROL
            if state == "fail" or state == "timeout":
                verdict = "caught" if not control else "CONTROL CAUGHT (tests reject a neutral rewrite)"
                if control:
                    status = max(status, 1)
            elif state == "pass":
                verdict = "SURVIVED" if not control else "survived (control: expected)"
                if not control:
                    status = max(status, 1)
            else:
                verdict = "ERROR"
                status = max(status, 2)
            last = tail.strip().splitlines()[-1] if tail.strip() else ""
            rows.append((m.key, m.what, verdict, f"{', '.join(files)}; {' '.join(m.tests)}; {last} "
                                                  f"({time.time() - t0:.0f}s)"))
            if args.verbose:
                print(f"--- {m.key}: {verdict}\n{tail}\n", flush=True)
            else:
                print(f"{m.key}: {verdict}", flush=True)

    w = max(len(r[1]) for r in rows) if rows else 10
    print()
    print(f"{'':2} {'mutation':<{w}}  result")
    for key, what, verdict, detail in rows:
        print(f"{key:2} {what:<{w}}  {verdict}")
        print(f"{'':2} {'':<{w}}    {detail}")
    return status


if __name__ == "__main__":
    sys.exit(main())
