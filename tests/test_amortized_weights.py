"""Per-call spec weights in latent inference (issue 27.4): ``minimize(..., weights=)``, ``training_free_energy(
weights=)`` and amortized training (Fig. 19–20), which infers ž with the encoder term off without ever changing
the model's own weights."""
from __future__ import annotations

import pytest
import torch

import ebmgraph
from ebmgraph.errors import SpecError
from ebmgraph.infer import minimize
from ebmgraph.train import Amortized
from ebmgraph.train.values import training_free_energy

FIG20 = "specs/fig20_amortized_generative.yaml"

# a discrete latent (exact enumeration) and a continuous one, the energy reading three weights
DISCRETE = """
name: weighted_discrete
weights: {a: 1.0, b: 2.0, c: 0.5}
variables:
  x: {observed: [4]}
  z: {latent: [4], values: 4}
  u: {latent: [4]}
modules:
  P: mlp(8, 16, 4)
energy:
  D: a * sq_dist(x, P(x, z))
  R: b * sq_dist(z, x)
  U: sq_dist(u, x) + c * l1(u)
"""


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _watched(ebm, monkeypatch) -> list[float]:
    """Refuse any set_weights on ``ebm``, and record its own weight ``h`` at every energy evaluation."""
    seen = []
    evaluate = ebm.evaluate

    def recording(*args, **kw):
        seen.append(float(ebm.weights()["h"]))
        return evaluate(*args, **kw)

    def refuse(**values):
        raise AssertionError(f"set_weights({values}) called on the user's model")

    monkeypatch.setattr(ebm, "evaluate", recording)
    monkeypatch.setattr(ebm, "set_weights", refuse)
    return seen


@pytest.mark.parametrize("outputs", [None, ["s_x"]])
def test_amortized_inference_never_changes_the_models_weights(monkeypatch, outputs):
    ebm = ebmgraph.compile(FIG20, seed=0)
    batch = ebm.random_inputs(6, seed=1, only=["x", "y"])
    # the oracle: ž = argmin_z E with h = 0 set on a twin model, the same seed and settings
    twin = ebmgraph.compile(FIG20, seed=0)
    twin.set_weights(h=0.0)
    _, z_ref = training_free_energy(twin, dict(batch), steps=7, seed=torch.Generator().manual_seed(3), return_z=True)

    seen = _watched(ebm, monkeypatch)
    loss = Amortized(ebm, infer_steps=7)
    res = loss.data_energy(batch, torch.Generator().manual_seed(3), outputs=outputs)
    assert seen and set(seen) == {1.0}, f"the model's h during amortized inference: {sorted(set(seen))}"
    e, stats = res[0], res[1]
    # inference ran with the encoder term off (ž is the h = 0 minimizer), the energy at ž has it on (h = 1)
    assert stats["z_abs"] == pytest.approx(float(z_ref["z"].abs().mean()), rel=1e-6)
    with torch.no_grad():
        want = ebm.energy(**batch, z=z_ref["z"])
    torch.testing.assert_close(e.detach(), want.total)
    assert float(want.terms["H"].abs().sum()) > 0  # h = 1 in what is trained: the encoder gets a gradient
    if outputs:
        torch.testing.assert_close(res[2]["s_x"].detach(), ebm.evaluate(dict(batch), outputs=["s_x"])["s_x"])
    # the whole step too, with gradients on
    out = loss(batch, torch.Generator().manual_seed(3))
    out.loss.backward()
    assert float(ebm.weights()["h"]) == 1.0 and set(seen) == {1.0}


@pytest.mark.parametrize("method,kw", [("gradient", dict(steps=30, restarts=2)),
                                       ("gradient", dict(optimizer="adam", lr=0.05, steps=40)),
                                       ("cem", dict(iters=4, samples=32, compile=False)),
                                       ("mppi", dict(iters=4, samples=32, compile=False))])
def test_minimize_with_weights_equals_setting_them_on_the_model(method, kw):
    ebm = ebmgraph.compile(FIG20, seed=0)
    obs = ebm.random_inputs(5, seed=2, only=["x", "y"])
    got = minimize(ebm, obs, over=["z"], method=method, weights={"h": 0.0}, seed=4, **kw)
    assert {k: float(v) for k, v in ebm.weights().items()} == {"h": 1.0}
    ebm.set_weights(h=0.0)  # the oracle: the same minimization with the weight set on the model
    want = minimize(ebm, obs, over=["z"], method=method, seed=4, **kw)
    ebm.set_weights(h=1.0)
    torch.testing.assert_close(got.values["z"], want.values["z"])
    torch.testing.assert_close(got.energy, want.energy)
    torch.testing.assert_close(got.terms["H"], torch.zeros(5, dtype=got.energy.dtype))
    torch.testing.assert_close(got.trace, want.trace)
    assert got.info["weights"] == {"h": 0.0}
    # and not the same as with h = 1: the override did something
    plain = minimize(ebm, obs, over=["z"], method=method, seed=4, **kw)
    assert not torch.allclose(plain.values["z"], got.values["z"])


def test_exhaustive_and_mixed_weights_equal_the_oracle():
    ebm = ebmgraph.compile(DISCRETE, seed=0)
    obs = ebm.random_inputs(8, seed=5, only=["x", "u"])
    for w in ({"b": 0.0}, {"a": 3.0, "b": 0.25}):
        got = minimize(ebm, obs, over=["z"], method="exhaustive", weights=w)
        E = torch.stack([ebm.energy(w, **obs, z=torch.full((8,), k)).total for k in range(4)], 1)
        torch.testing.assert_close(got.energy, E.min(1).values)  # exhaustive search as the oracle
        assert torch.equal(got.values["z"], E.argmin(1))
        assert {k: float(v) for k, v in ebm.weights().items()} == {"a": 1.0, "b": 2.0, "c": 0.5}
    # mixed: each configuration's continuous part solved on sub-problems, which carry the overrides too
    x = {"x": obs["x"]}
    got = minimize(ebm, x, over=["z", "u"], method="mixed", weights={"b": 0.0, "c": 2.0}, steps=40)
    ebm.set_weights(b=0.0, c=2.0)
    want = minimize(ebm, x, over=["z", "u"], method="mixed", steps=40)
    ebm.set_weights(b=2.0, c=0.5)
    assert torch.equal(got.values["z"], want.values["z"])
    torch.testing.assert_close(got.values["u"], want.values["u"])
    torch.testing.assert_close(got.energy, want.energy)


def test_training_free_energy_with_weights_evaluates_under_them_and_keeps_the_gradient():
    ebm = ebmgraph.compile(FIG20, seed=0)
    inp = ebm.random_inputs(4, seed=6, only=["x", "y"])
    F, z = training_free_energy(ebm, dict(inp), steps=10, return_z=True, weights={"h": 0.0})
    assert F.requires_grad  # the envelope theorem: ∂F/∂w at the detached minimizer
    torch.testing.assert_close(F.detach(), ebm.energy({"h": 0.0}, **inp, **z).total.detach())
    F2, z2, vals = training_free_energy(ebm, dict(inp), steps=10, weights={"h": 0.0}, outputs=["s_x"])
    torch.testing.assert_close(F2.detach(), F.detach())
    torch.testing.assert_close(z2["z"], z["z"])
    assert set(vals) == {"s_x"}
    with torch.no_grad():
        F3 = training_free_energy(ebm, dict(inp), steps=10, weights={"h": 0.0})
    torch.testing.assert_close(F3, F.detach())
    assert float(ebm.weights()["h"]) == 1.0


def test_an_unknown_weight_is_refused_by_name():
    ebm = ebmgraph.compile(FIG20, seed=0)
    obs = ebm.random_inputs(2, seed=0, only=["x", "y"])
    with pytest.raises(SpecError, match=r"fig20_amortized_generative\.yaml: unknown weight\(s\) g, hh; "
                                        r"amortized_generative has weights h"):
        minimize(ebm, obs, over=["z"], method="gradient", steps=2, weights={"hh": 0.0, "g": 1.0, "h": 0.0})
    with pytest.raises(SpecError, match="unknown weight"):
        training_free_energy(ebm, dict(obs), steps=2, weights={"hh": 0.0})
    with pytest.raises(SpecError, match="weight h must be a finite number"):
        minimize(ebm, obs, over=["z"], method="gradient", steps=2, weights={"h": float("nan")})
    assert float(ebm.weights()["h"]) == 1.0


def test_paths_that_read_the_models_own_weights_refuse_weights_by_name():
    ebm = ebmgraph.compile(FIG20, seed=0)
    obs = ebm.random_inputs(2, seed=0, only=["x", "y"])
    with pytest.raises(SpecError, match=r"weights=.*maximize=\['z'\].*drop weights="):
        minimize(ebm, {"x": obs["x"]}, over=["y"], maximize=["z"], weights={"h": 0.0}, method="gradient")
    with pytest.raises(SpecError, match=r"weights=.*sampled latents \['z'\].*drop weights="):
        minimize(ebm, obs, over=[], sample=["z"], weights={"h": 0.0})
