"""Observed-only definitions computed once per problem (``evaluate(..., repeat=k)``, lower._shared):
a planner's observation is encoded once per decision, not once per candidate. The oracle is the
plain evaluation with the observed inputs repeated; every spec in the project is checked."""
from __future__ import annotations

import pytest
import torch
from conftest import ROOT, SPECS

import ebmgraph
from ebmgraph.conventions import repeat_rows
from ebmgraph.errors import SpecError

EXAMPLES = sorted((ROOT / "examples/specs").glob("*.yaml"))
SMALL = {"T": 3, "L": 3, "N": 3, "H": 2, "K": 3}


def _compile(path):
    try:
        return ebmgraph.compile(path, seed=0, sizes=SMALL)
    except SpecError:  # a size the spec does not declare
        return ebmgraph.compile(path, seed=0)


def _external_free(path) -> bool:
    return "external(" not in path.read_text()


@pytest.mark.parametrize("path", [p for p in SPECS + EXAMPLES if _external_free(p)], ids=lambda p: p.stem)
def test_repeat_equals_the_observed_inputs_repeated(path):
    ebm = _compile(path).double()
    B, k = 2, 3
    big = ebm.random_inputs(B * k, seed=1)
    observed = [v.name for v in ebm.graph.variables if v.role == "observed"]
    once = {n: (v[::k] if n in observed else v) for n, v in big.items()}  # observed rows: one per problem
    want = ebm.evaluate({n: (repeat_rows(v, k) if n in observed else v) for n, v in once.items()})
    got = ebm.evaluate(once, repeat=k)
    assert got.total.shape == (B * k,)
    torch.testing.assert_close(got.total, want.total, rtol=1e-9, atol=1e-9)
    for t in want.terms:
        torch.testing.assert_close(got.terms[t], want.terms[t], rtol=1e-9, atol=1e-9)


def test_the_encoder_of_the_observation_runs_once_per_problem():
    ebm = ebmgraph.compile(ROOT / "examples/specs/pointmaze_pixels_lower.yaml", seed=0, sizes={"T": 4})
    rows = []
    ebm.mods.Enc.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    B, k = 2, 16
    x = ebm.random_inputs(B * k, seed=0)
    obs = {n: v[::k] for n, v in x.items() if n in ("x", "goal", "sub")}
    ebm.evaluate({**obs, "a": x["a"]}, repeat=k)
    assert rows == [B, B]  # s[0] = Enc(image(x)) and g = Enc(image(goal)), each on B rows
    rows.clear()
    ebm.evaluate({n: repeat_rows(v, k) for n, v in obs.items()} | {"a": x["a"]})
    assert rows == [B * k, B * k]
    assert "s[0] = M.Enc(M.image(x))" in ebm.code.split("if _R != 1")[0]


def test_repeat_is_checked():
    ebm = ebmgraph.compile(ROOT / "examples/specs/point_pit.yaml", seed=0, sizes={"T": 3})
    x = ebm.random_inputs(6, seed=0)
    with pytest.raises(SpecError, match=r"repeat=3: observed inputs take \[B\] rows"):
        ebm.evaluate(x, repeat=3)  # observed x still has 6 rows
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="repeat"):
            ebm.evaluate(x, repeat=bad)
