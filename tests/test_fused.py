"""The compiler's hand-off to the fused Triton kernels, checked in Triton's CPU interpreter."""
from __future__ import annotations

import pytest
import torch
from conftest import ROOT

import ebmgraph
from ebmgraph.fusion import analyze_fused
from ebmgraph.infer.fused import fused_energy, plan_fused
from ebmgraph.runtime import kernels_mode

MODE2 = (ROOT / "specs/fig04_mode2.yaml").read_text()
GOAL_CRITIC = """
name: goal_critic
index: {t: 0..T-1}
sizes: {T: 7}
variables:
  x: {observed: [5]}
  g: {observed: [5]}
  a[t]: {action: [3], bounds: [-1, 1]}
modules:
  Pred: mlp(8, 19, 5, act=silu)
  V: mlp(5, 11, 1, act=tanh)
functions:
  s[0]: identity(x)
  s[t+1]: Pred(s[t], a[t])
energy:
  cost[t]: 0.5 * sq_dist(s[t+1], g)
  V: 2 * V(s[T])
"""


def _frozen(text, T=None):
    ebm = ebmgraph.compile(text, seed=0, sizes={"T": T} if T else None)
    ebm.requires_grad_(False)
    with torch.no_grad():
        for m in ebm.mods.values():
            if hasattr(m, "L"):
                m.L.add_(0.2 * torch.randn(m.L.shape, generator=torch.Generator().manual_seed(1)))
                m.goal.add_(0.3)
    return ebm


@pytest.mark.parametrize("text", [MODE2, GOAL_CRITIC], ids=["quadratic", "goal+critic"])
def test_fused_energy_equals_compiled_energy(text):
    ebm = _frozen(text)
    fr, why = analyze_fused(ebm.checked, ebm.rollouts)
    assert fr is not None, why
    x = ebm.random_inputs(37, seed=3)
    with torch.no_grad():
        want = ebm.energy(**x).total
        got = fused_energy(ebm, impl="fused", **x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stem,reason", [
    ("fig16_hier_planning", "2 rollouts"),
    ("fig05_policy", "not a weighted module call|declared action|per-step"),
    ("fig12_jepa", "0 rollouts"),
])
def test_specs_that_do_not_fit_say_why(stem, reason):
    ebm = ebmgraph.compile(ROOT / "specs" / f"{stem}.yaml")
    fr, why = analyze_fused(ebm.checked, ebm.rollouts)
    assert fr is None
    assert any(r in why for r in reason.split("|")), why
    assert "energy-fused rollout for planning (ebmgraph.fused): no:" in ebm.explain()


def test_rollout_dispatch_uses_the_kernel_and_agrees_forward_and_backward():
    ebm = _frozen(MODE2, T=9)
    x = ebm.random_inputs(40, seed=0)
    assert "torch reference" in ebm.explain()
    grads = {}
    for mode in ("never", "always"):
        with kernels_mode(mode):
            if mode == "always":
                assert "fused Triton kernel" in ebm.explain()
            a = x["a"].clone().requires_grad_(True)
            e = ebm.energy(x=x["x"], a=a).total
            e.sum().backward()
            grads[mode] = (e.detach(), a.grad)
    torch.testing.assert_close(grads["always"][0], grads["never"][0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grads["always"][1], grads["never"][1], rtol=1e-3, atol=1e-4)


def test_fused_mppi_plan_lowers_energy_and_matches_reference_rollouts():
    ebm = _frozen(GOAL_CRITIC)
    obs = {k: v for k, v in ebm.random_inputs(3, seed=4).items() if k != "a"}
    res = plan_fused(ebm, obs, method="mppi", iters=4, samples=64, seed=0)
    ref = plan_fused(ebm, obs, method="mppi", iters=4, samples=64, seed=0, rollout="reference")
    torch.testing.assert_close(res.best_actions, ref.best_actions, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        start = ebm.energy(**obs, a=torch.zeros(3, 7, 3)).total
        best = ebm.energy(**obs, a=res.best_actions).total
    torch.testing.assert_close(best, res.best_energy, rtol=1e-4, atol=1e-4)
    assert (best <= start + 1e-5).all() and (best < start).any()
    assert res.best_actions.abs().max() <= 1.0  # the action's bounds


def test_minimize_fused_plans_through_the_kernel_and_lowers_energy():
    from ebmgraph import SpecError, minimize

    ebm = _frozen(MODE2, T=6)
    x = ebm.random_inputs(4, seed=2)
    obs = {"x": x["x"]}
    with torch.no_grad():
        start = ebm.energy(x=x["x"], a=torch.zeros_like(x["a"])).total
    r = minimize(ebm, obs, over=["a"], method="mppi", fused=True, samples=64, iters=4, seed=0)
    assert r.method == "mppi/fused" and "energy-fused" in r.info["explanation"]
    with torch.no_grad():
        torch.testing.assert_close(r.energy, ebm.energy(x=x["x"], a=r.values["a"]).total)
    assert (r.energy <= start + 1e-5).all() and (r.energy < start).any()
    assert r.values["a"].abs().max() <= 2.0  # bounds [-2, 2]
    again = minimize(ebm, obs, over=["a"], method="mppi", fused=True, samples=64, iters=4, seed=0)
    assert torch.equal(again.values["a"], r.values["a"])
    with pytest.raises(SpecError, match="does not fit"):
        minimize(ebmgraph.compile(ROOT / "specs/fig16_hier_planning.yaml"), {"x": torch.zeros(1, 4)},
                 over=["a", "a2"], method="cem", fused=True)
