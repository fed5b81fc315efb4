"""Regression tests for the defects of issue 10 in the compiler, inference and their CLI: right
answers or a clear refusal. Each test failed on 07c0c60 (the note of the stop lists how)."""
from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import ROOT

import ebmgraph
from ebmgraph import SpecError
from ebmgraph.cli import main

DISCRETE_MODE2 = """
name: discrete_mode2
index: {t: 0..T-1}
sizes: {T: 6}
variables:
  x: {observed: [3]}
  a[t]: {action: discrete, values: 3}
modules:
  Enc: mlp(3, 16, 3)
  Pred: mlp(6, 32, 3, act=tanh, residual=true)
  C: fixed(quadratic(3))
functions:
  s[0]: Enc(x)
  s[t+1]: Pred(s[t], a[t])
energy:
  cost[t]: C(s[t+1])
"""

QUAD = """
name: q
weights: {u: 1.0}
variables:
  g: {observed: [2]}
  a: {action: [2], bounds: [-1, 1]}
  k: {latent: discrete, values: 3}
modules:
  P: discrete(3)
energy:
  C: u * sq_dist(a, g)
  R: P(k)
"""


# ----------------------------------------------------------------------------- 1. fused planning
def test_fused_planning_refuses_discrete_actions(tmp_path, capsys):
    ebm = ebmgraph.compile(DISCRETE_MODE2)
    assert "energy-fused rollout for planning (ebmgraph.fused): no: a is discrete" in ebm.explain()
    obs = ebm.random_inputs(2, seed=0, only=["x"])
    with pytest.raises(SpecError, match="a is discrete"):
        ebmgraph.minimize(ebm, obs, over=["a"], method="mppi", fused=True)
    spec = tmp_path / "d.yaml"
    spec.write_text(DISCRETE_MODE2)
    assert main(["infer", str(spec), "--method", "mppi", "--fused"]) == 1
    assert "a is discrete" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 3. the infer verb
def test_infer_cli_takes_sizes_weights_settings_and_prints_values(tmp_path, capsys):
    spec = tmp_path / "d.yaml"
    spec.write_text(DISCRETE_MODE2)
    ebm = ebmgraph.compile(DISCRETE_MODE2, sizes={"T": 4}, seed=7)
    with torch.no_grad():
        for p in ebm.mods["Enc"].parameters():
            p.add_(0.5)
    ebm.save(tmp_path / "w.safetensors")
    argv = ["infer", str(spec), "--size", "T=4", "--weights", str(tmp_path / "w.safetensors"), "--method", "mcts",
            "--set", "simulations=400", "--seed", "7", "--batch", "2", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["settings"] == {"simulations": 400}
    a = torch.tensor(out["values"]["a"])
    assert a.shape == (2, 4) and a.dtype == torch.int64
    # the values printed are the trained model's answer: re-evaluate them with the loaded weights
    obs = ebm.random_inputs(2, seed=7, only=["x"])
    with torch.no_grad():
        e = ebm.energy(x=obs["x"], a=a).total
    assert torch.allclose(e, torch.tensor(out["energy_after"], dtype=e.dtype), atol=1e-5)
    # exhaustive search over 3^4 plans is the oracle the raised simulation budget reaches
    exact = ebmgraph.minimize(ebm, obs, over=["a"], method="exhaustive").energy
    assert torch.allclose(e, exact, atol=1e-5)
    assert main(["infer", str(spec), "--set", "simulations=0", "--method", "mcts"]) == 1
    assert "simulations must be a positive integer" in capsys.readouterr().err


def test_infer_cli_text_output_lists_values(tmp_path, capsys):
    spec = tmp_path / "q.yaml"
    spec.write_text(QUAD)
    assert main(["infer", str(spec), "--method", "auto", "--batch", "1"]) == 0
    text = capsys.readouterr().out
    assert "  a: [[" in text and "  k: [" in text


# ----------------------------------------------------------------------------- 4. unknown sizes
def test_unknown_size_names_are_errors(capsys):
    spec = str(ROOT / "specs" / "fig04_mode2.yaml")
    assert main(["check", spec, "--size", "t=16"]) == 1
    assert "unknown size(s) t; mode2 has sizes T" in capsys.readouterr().err
    with pytest.raises(SpecError, match=r"unknown size\(s\) Q; mode2 has sizes T"):
        ebmgraph.compile(spec, sizes={"Q": 3})
    with pytest.raises(SpecError, match="has no sizes"):
        ebmgraph.compile(ROOT / "specs" / "fig12_jepa.yaml", sizes={"T": 3})


# ----------------------------------------------------------------------------- 5. run-time weights
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused(bad):
    ebm = ebmgraph.compile(QUAD)
    with pytest.raises(ValueError, match="weight u must be"):
        ebm.set_weights(u=bad)
    assert float(ebm.weights()["u"]) == 1.0  # nothing changed
    x = ebm.random_inputs(2, seed=0)
    with pytest.raises(ValueError, match="weight u must be finite"):
        ebm.energy(weights={"u": bad}, **x)
    with pytest.raises(ValueError, match="weight u must be finite"):
        ebm.energy(weights={"u": torch.tensor([1.0, bad])}, **x)


# ----------------------------------------------------------------------------- 6. internal errors
def test_empty_batch_is_a_message():
    ebm = ebmgraph.compile(ROOT / "specs" / "fig12_jepa.yaml")
    x = {k: v[:0] for k, v in ebm.random_inputs(2).items()}
    with pytest.raises(SpecError, match="empty batch"):
        ebm.energy(**x)


def test_bad_settings_are_messages():
    ebm = ebmgraph.compile(DISCRETE_MODE2, sizes={"T": 3})
    obs = ebm.random_inputs(1, only=["x"])
    with pytest.raises(SpecError, match="width must be a positive integer"):
        ebmgraph.minimize(ebm, obs, over=["a"], method="beam", width=0)
    with pytest.raises(SpecError, match="simulations must be a positive integer"):
        ebmgraph.minimize(ebm, obs, over=["a"], method="mcts", simulations=0)
    q = ebmgraph.compile(QUAD)
    qobs = {"g": torch.zeros(1, 2)}
    with pytest.raises(SpecError, match="steps must be a positive integer"):
        ebmgraph.minimize(q, qobs, over=["a", "k"], method="mixed", steps=-5)
    with pytest.raises(SpecError, match="steps must be a positive integer"):
        ebmgraph.minimize(q, {**qobs, "k": torch.zeros(1, dtype=torch.long)}, over=["a"], method="gradient", steps=-5)
    with pytest.raises(SpecError, match="lr must be a positive finite number"):
        ebmgraph.minimize(q, {**qobs, "k": torch.zeros(1, dtype=torch.long)}, over=["a"], method="gradient",
                          optimizer="adam", lr=float("nan"))
    with pytest.raises(SpecError, match="method 'cem' takes no setting simulations; its settings: samples"):
        ebmgraph.minimize(q, {**qobs, "k": torch.zeros(1, dtype=torch.long)}, over=["a"], method="cem",
                          simulations=5)


def test_a_tensor_as_observed_is_a_message():
    ebm = ebmgraph.compile(ROOT / "specs" / "fig12_jepa.yaml")
    with pytest.raises(SpecError, match=r"observed must be a dict .*pass observed=\{'x': x\}"):
        ebmgraph.minimize(ebm, torch.zeros(2, 64), over=["z"])


def test_discrete_floats_must_be_one_hot_and_actions_inside_their_bounds():
    """Decided: refuse (not project). Documented in docs/spec-format.md (Domains)."""
    ebm = ebmgraph.compile(QUAD)
    g = torch.zeros(2, 2)
    ok = ebm.energy(g=g, a=torch.zeros(2, 2), k=torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])).total
    assert torch.allclose(ok, ebm.energy(g=g, a=torch.zeros(2, 2), k=torch.tensor([1, 0])).total)
    with pytest.raises(SpecError, match="exact one-hot rows"):
        ebm.energy(g=g, a=torch.zeros(2, 2), k=torch.tensor([[0.2, 0.8, 0.0], [1.0, 0.0, 0.0]]))
    with pytest.raises(SpecError, match=r"a: values must lie in \[-1(\.0)?, 1(\.0)?\]; got .*2\.5"):
        ebm.energy(g=g, a=torch.tensor([[0.0, 2.5], [0.0, 0.0]]), k=torch.tensor([1, 0]))
    # a bound value itself is inside the domain
    ebm.energy(g=g, a=torch.tensor([[1.0, -1.0], [0.0, 0.0]]), k=torch.tensor([1, 0]))


# ----------------------------------------------------------------------------- 7. sizes that multiply
def test_huge_variables_and_modules_are_refused_at_check_time():
    spec = """
name: huge
variables:
  x: {observed: [1000, 1000, 1000]}
  y: {observed: [8]}
modules:
  E: conv2d(1000, 1000, 1000, 8)
functions:
  s: E(x)
energy:
  D: sq_dist(s, y)
"""
    with pytest.raises(SpecError, match=r"x holds 1,000,000,000 numbers per sample .* the limit is 16,777,216 "
                                        r"\(raise it with limits=\{'max_elements': N\} or --limit max_elements=N\)"):
        ebmgraph.check(ebmgraph.loads(spec))
    with pytest.raises(SpecError, match=r"module E would hold 128,\d{3},\d{3} parameters; the limit is 100,000,000"):
        ebmgraph.check(ebmgraph.loads(spec), limits={"max_elements": 10**9, "max_parameters": 10**8})
    wide = "name: w\nvariables:\n  x: {observed: [4]}\n  y: {observed: [4]}\nmodules:\n  M: mlp(4, 20000, 20000, 4)\n" \
           "functions:\n  s: M(x)\nenergy:\n  D: sq_dist(s, y)\n"
    with pytest.raises(SpecError, match="module M would hold 400,"):
        ebmgraph.check(ebmgraph.loads(wide))
    assert ebmgraph.check(ebmgraph.loads(wide), limits={"max_parameters": 10**9})


def test_parameter_counts_without_building_equal_the_built_modules():
    from ebmgraph.modules import KINDS

    cases = [("linear", (5, 3), {}, [(5,)]), ("linear", (5, 3), {"bias": False}, [(5,)]),
             ("mlp", (4, 7, 2), {}, [(4,)]), ("conv1d", (2, 9, 5), {"channels": 3, "layers": 3, "kernel": 5}, [(2, 9)]),
             ("conv2d", (1, 6, 5, 4), {}, [(1, 6, 5)]), ("gru", (3, 5), {}, [(5,), (3,)]),
             ("transformer", (8,), {"heads": 2, "ff": 12}, [(3, 8), (5,)]), ("transformer", (8,), {}, [(3, 8)]),
             ("quadratic", (4,), {}, [(4,)]), ("discrete", (6,), {}, [(6,)])]
    for kind, args, kw, shapes in cases:
        built = sum(p.numel() for p in KINDS[kind].build(args, kw, shapes).parameters())
        assert KINDS[kind].params(args, kw, shapes) == built, kind


def test_too_many_declarations_are_refused_before_work():
    text = "name: big\nvariables:\n  x: {observed: [2]}\n  y: {observed: [2]}\nenergy:\n" + \
        "".join(f"  E{i}: sq_dist(x, y)\n" for i in range(20_001))
    with pytest.raises(SpecError, match=r"declares 20,003 .* the limit is 20,000"):
        ebmgraph.check(ebmgraph.loads(text))


def test_long_horizons_check_and_compile(tmp_path):
    """Figure 4 at T = 10,000 (linear-time checking); the step limit names how to raise it."""
    ebm = ebmgraph.compile(ROOT / "specs" / "fig04_mode2.yaml", sizes={"T": 10_000})
    assert ebm.rollouts[0].steps == 10_000
    with pytest.raises(SpecError, match=r"index t has 100,002 steps; the limit is 100,001"):
        ebmgraph.check(ebmgraph.load(ROOT / "specs" / "fig04_mode2.yaml"), {"T": 100_002})


# ----------------------------------------------------------------------------- 13. NaN and Inf
NAN_SPEC = """
name: nan
variables:
  g: {observed: [1]}
  z: {latent: [1]}
modules:
  M: mlp(1, 4, 1, act=softplus)
energy:
  F: sq_dist(z, g)
  Boom: M(z)
"""


@pytest.mark.parametrize("method,kw", [("gradient", {"steps": 20}),
                                       ("gradient", {"optimizer": "adam", "steps": 60, "lr": 0.2}),
                                       ("cem", {"iters": 5, "samples": 16}), ("mppi", {"iters": 5, "samples": 16})])
def test_minimizers_stop_on_nan_naming_the_term_and_iteration(method, kw):
    from ebmgraph.infer.core import NonFiniteEnergy

    ebm = ebmgraph.compile(NAN_SPEC, seed=0).double()
    with torch.no_grad():  # the term Boom is NaN wherever z > 1
        ebm.mods["M"].net[0].weight.fill_(1.0)
        ebm.mods["M"].net[0].bias.fill_(-1.0)
    orig = ebm.mods["M"].forward

    def forward(z):
        out = orig(z)
        return torch.where(z > 1.0, torch.full_like(out, float("nan")), out)

    ebm.mods["M"].forward = forward
    with pytest.raises(NonFiniteEnergy, match=r"met a non-finite energy at iteration \d+ \(problem 0\): "
                                              r"term\(s\) Boom are NaN or Inf") as err:
        ebmgraph.minimize(ebm, {"g": torch.full((1, 1), 3.0, dtype=torch.float64)}, over=["z"], method=method, **kw)
    z = err.value.values["z"]
    assert bool(torch.isfinite(z).all()) and float(z.max()) <= 1.0  # the last finite values are kept
    assert err.value.terms == ["Boom"] and err.value.iteration >= 0


def test_nan_observations_and_energies_are_named():
    ebm = ebmgraph.compile(QUAD)
    g = torch.tensor([[float("nan"), 0.0]])
    with pytest.raises(SpecError, match="observed g holds NaN or Inf"):
        ebmgraph.minimize(ebm, {"g": g, "k": torch.tensor([0])}, over=["a"])
    with pytest.raises(SpecError, match=r"non-finite \(NaN or Inf\) values in input\(s\) g"):
        ebm.energy(check_finite=True, g=g, a=torch.zeros(1, 2), k=torch.tensor([0]))
    with pytest.raises(SpecError, match=r"non-finite \(NaN or Inf\) values in input\(s\) g"):
        ebm.energy(g=g, a=torch.zeros(1, 2), k=torch.tensor([0]))  # the default names it too (issue 28)
    out = ebm.energy(check_finite=False, g=g, a=torch.zeros(1, 2), k=torch.tensor([0]))  # hot loops: no sync
    assert math.isnan(float(out.total))


# ----------------------------------------------------------------------------- 14. check names planners
def test_check_names_planning_architectures():
    want = {"fig04_mode2": ("plan", "planning, Mode-2 (Fig. 4)"),
            "fig05_policy": ("policy", "policy learned from planned actions, Mode-2 to Mode-1 (Fig. 5)"),
            "fig16_hier_planning": ("hplan", "hierarchical planning (Fig. 16)"),
            "fig17_hier_uncertain": ("hplan", "hierarchical planning under uncertainty (Fig. 17)"),
            "fig15_hjepa": ("jepa", "hierarchical JEPA (Fig. 15)")}
    for stem, (code, label) in want.items():
        arch = ebmgraph.check(ebmgraph.load(ROOT / "specs" / f"{stem}.yaml")).architecture
        assert (arch.code, arch.label) == (code, label), stem
    objects = """
name: object_planning
index: {t: 0..T-1}
sizes: {T: 3}
variables:
  x: {observed: [4, 8]}
  goal: {observed: [4, 8]}
  a[t]: {action: [2], bounds: [-1, 1]}
modules:
  Pred: transformer(8)
functions:
  s[0]: identity(x)
  s[t+1]: Pred(s[t], a[t])
energy:
  D: sq_dist(s[T], goal)
"""
    arch = ebmgraph.check(ebmgraph.loads(objects)).architecture
    assert arch.code == "plan" and not arch.can_collapse
    policy_cost = """
name: mode1_env
variables:
  x: {observed: [3]}
modules:
  Pi: mlp(3, 16, 1, act=tanh)
functions:
  a: Pi(x)
energy:
  C: pendulum_cost(x, a)
"""
    arch = ebmgraph.check(ebmgraph.loads(policy_cost)).architecture
    assert arch.code == "cost" and not arch.can_collapse  # a cost of (state, action) is not a divergence
