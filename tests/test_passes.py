"""Passes are pure Graph -> Graph functions; the checker runs after each, and energies agree."""
from __future__ import annotations

import pytest
import torch
from conftest import SPECS

import ebmgraph
from ebmgraph import ir
from ebmgraph.passes import PASSES, fold_constants, prune


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_checker_runs_after_every_pass_and_energy_is_unchanged(path):
    g = ebmgraph.load(path)
    ebmgraph.check(g)
    ref = ebmgraph.compile(g, seed=0).double()
    x = ref.random_inputs(3, seed=1)
    for p in PASSES:
        g2 = p(g)
        assert g2 is not g or p(g2) == g2
        ebmgraph.check(g2)  # a broken graph fails at the pass that broke it
        out = ebmgraph.compile(g2, seed=0).double().energy(**x).total
        torch.testing.assert_close(out, ref.energy(**x).total)
        g = g2


def test_fold_constants_folds_only_numbers():
    g = ebmgraph.loads("""
name: f
weights: {u: 2.0}
variables: {z: {latent: [2]}}
energy:
  A: 2 * 0.05 * l1(z) + 0 * 1
  B: 1 * u * l2(z) / 1
  C: -(-l1(z))
""")
    f = fold_constants(g)
    assert ir.expr_str(f.energies[0].value) == "0.1*l1(z)"
    assert ir.expr_str(f.energies[1].value) == "u*l2(z)"
    assert ir.expr_str(f.energies[2].value) == "l1(z)"
    ebm, ebm2 = ebmgraph.compile(g, seed=0), ebmgraph.compile(f, seed=0)
    x = ebm.random_inputs(4, seed=0)
    torch.testing.assert_close(ebm.energy(**x).total, ebm2.energy(**x).total)


def test_prune_keeps_what_a_query_reads(tmp_path):
    g = ebmgraph.load(SPECS[0].parent / "fig20_amortized_generative.yaml")
    p = prune(g, ["D"])
    assert [e.name for e in p.energies] == ["D"]
    assert {f.target.name for f in p.functions} == {"s_x", "y_tilde"}
    assert {m.name for m in p.modules} == {"Enc", "Dec"}
    assert p.weights == ()
    ebmgraph.check(p)
    full = ebmgraph.compile(g, seed=0).double()
    part = ebmgraph.compile(g, seed=0, terms=["D"]).double()
    x = full.random_inputs(3, seed=2)
    torch.testing.assert_close(part.energy(**x).total, full.energy(**x).terms["D"])
    with pytest.raises(KeyError):
        prune(g, ["nope"])


def test_prune_follows_elements_not_whole_arrays():
    """Figure 16's goal reads s2[T/2], which needs s[0] but none of the lower rollout or its actions."""
    path = SPECS[0].parent / "fig16_hier_planning.yaml"
    g = ebmgraph.load(path)
    p = prune(g, ["goal"])
    assert {v.name for v in p.variables} == {"x", "a2"}
    assert {ir.ref_str(f.target) for f in p.functions} == {"s[0]", "s2[0]", "s2[k+1]"}
    full = ebmgraph.compile(g, seed=0).double()
    part = ebmgraph.compile(g, seed=0, terms=["goal"]).double()
    missing, _ = part.load_state_dict(full.state_dict(), strict=False)  # the same weights by name
    assert not missing
    x = full.random_inputs(3, seed=0)
    got = part.energy(x=x["x"], a2=x["a2"]).total
    torch.testing.assert_close(got, full.energy(**x).terms["goal"])
