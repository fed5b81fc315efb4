"""Continuous minimization against closed forms derived with sympy (§4.2, eq. 4–5)."""
import math

import pytest
import sympy
import torch

import ebmgraph
from ebmgraph.errors import SpecError
from ebmgraph.agent import shift_plan
from ebmgraph.infer import free_energy, minimize

QUAD = """
name: quad
variables:
  x: {observed: [2]}
  y: {observed: [3]}
  z: {latent: [2]}
modules:
  Pred: fixed(linear(4, 3))
energy:
  D: sq_dist(y, Pred(x, z))
  R: 0.5 * l2(z)
"""


@pytest.fixture(scope="module")
def quad():
    ebm = ebmgraph.compile(QUAD, seed=3).double()
    obs = ebm.random_inputs(3, seed=1, only=["x", "y"])
    # closed form on the module's actual weights: solve dE/dz = 0 with sympy
    W = sympy.Matrix(ebm.mods["Pred"].lin.weight.detach().tolist())
    b = sympy.Matrix(ebm.mods["Pred"].lin.bias.detach().tolist())
    z = sympy.Matrix(sympy.symbols("z0 z1"))
    sols, fmins, hess = [], [], []
    for i in range(3):
        x = sympy.Matrix(obs["x"][i].tolist())
        y = sympy.Matrix(obs["y"][i].tolist())
        r = y - W * x.col_join(z) - b
        E = (r.T * r)[0] + sympy.Rational(1, 2) * (z.T * z)[0]
        sol = sympy.solve([sympy.diff(E, v) for v in z], list(z), dict=True)[0]
        sols.append([float(sol[v]) for v in z])
        fmins.append(float(E.subs(sol)))
        hess.append(sympy.hessian(E, list(z)))
    return ebm, obs, torch.tensor(sols, dtype=torch.float64), torch.tensor(fmins, dtype=torch.float64), hess


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_lbfgs_reaches_closed_form(quad):
    ebm, obs, zs, fmin, _ = quad
    r = minimize(ebm, obs, over=["z"], method="gradient", optimizer="lbfgs")
    assert _rel(r.values["z"], zs) < 1e-5
    assert torch.allclose(r.energy, fmin, rtol=1e-8)


def test_adam_reaches_closed_form(quad):
    ebm, obs, zs, _, _ = quad
    r = minimize(ebm, obs, over=["z"], method="gradient", optimizer="adam", steps=1000, lr=0.05)
    assert _rel(r.values["z"], zs) < 1e-5  # cosine-decayed step
    # a fixed step reaches it too on this quadratic (at 1e-9 the two differ only by rounding, in either order)
    fixed = minimize(ebm, obs, over=["z"], method="gradient", optimizer="adam", steps=1000, lr=0.05, schedule="none")
    assert _rel(fixed.values["z"], zs) < 1e-5
    assert r.info["steps"] == fixed.info["steps"] == 1000


def test_cem_and_mppi_reach_closed_form(quad):
    ebm, obs, zs, _, _ = quad
    r = minimize(ebm, obs, over=["z"], method="cem", samples=200, iters=40)
    assert _rel(r.values["z"], zs) < 1e-3
    r = minimize(ebm, obs, over=["z"], method="mppi", samples=200, iters=40, temperature=0.05, sigma_decay=0.9)
    assert _rel(r.values["z"], zs) < 2e-2


def test_free_energy_gaussian_integral(quad):
    ebm, obs, _, fmin, hess = quad
    beta = 2.0
    F = free_energy(ebm, obs, ["z"], beta=beta, samples=64)
    # ∫exp(-βE) dz = exp(-βE*) (2π/β)^{d/2} det(H)^{-1/2} for E = E* + ½ (z-z*)ᵀ H (z-z*)
    want = torch.tensor([fm - (math.log((2 * math.pi / beta)) - 0.5 * math.log(float(H.det()))) / beta
                         for fm, H in zip(fmin.tolist(), hess)], dtype=torch.float64)
    assert torch.allclose(F, want, rtol=1e-6)
    assert torch.allclose(free_energy(ebm, obs, ["z"]), fmin, rtol=1e-8)


BOX = """
name: box
variables:
  g: {observed: [3]}
  a: {action: [3], bounds: [-0.5, 0.5]}
energy:
  C: sq_dist(a, g)
"""


@pytest.mark.parametrize("method,kw", [("gradient", {}), ("gradient", {"optimizer": "adam", "steps": 300}),
                                       ("cem", {}), ("mppi", {"sigma_decay": 0.9, "temperature": 0.01})])
def test_bounds_projection(method, kw):
    ebm = ebmgraph.compile(BOX).double()
    g = torch.tensor([[2.0, -0.2, -3.0], [0.1, 0.3, -0.4]], dtype=torch.float64)
    r = minimize(ebm, {"g": g}, over=["a"], method=method, **kw)
    want = g.clamp(-0.5, 0.5)  # the projection of the goal onto the box is the minimizer
    assert r.values["a"].abs().max() <= 0.5 + 1e-12
    assert torch.allclose(r.values["a"], want, atol=3e-2 if method == "mppi" else 2e-3)


@pytest.mark.parametrize("method", ["gradient", "cem", "mppi"])
def test_properties(quad, method):
    ebm, obs, _, _, _ = quad
    init = {"z": torch.randn(3, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)}
    kw = {"steps": 5, "restarts": 3} if method == "gradient" else {"iters": 3, "samples": 16}
    r1 = minimize(ebm, obs, over=["z"], method=method, seed=7, init=init, **kw)
    r2 = minimize(ebm, obs, over=["z"], method=method, seed=7, init=init, **kw)
    e0 = ebm.energy(**obs, **init).total
    assert (r1.energy <= e0 + 1e-12).all()  # never worse than the start
    assert torch.equal(r1.values["z"], r2.values["z"])  # same seed, same answer
    ref = ebm.reference_energy(**obs, z=r1.values["z"]).total
    assert torch.allclose(r1.energy, ref, rtol=1e-10)  # reported energy is the model's
    for i in range(3):  # batch = each alone (common random numbers across the batch)
        ri = minimize(ebm, {k: v[i:i + 1] for k, v in obs.items()}, over=["z"], method=method, seed=7,
                      init={"z": init["z"][i:i + 1]}, **kw)
        assert torch.allclose(ri.values["z"][0], r1.values["z"][i], rtol=1e-9, atol=1e-12)


def test_warm_start_and_shift_plan():
    ebm = ebmgraph.compile(BOX).double()
    g = torch.tensor([[0.2, -0.1, 0.3]], dtype=torch.float64)
    r = minimize(ebm, {"g": g}, over=["a"], method="gradient", init={"a": g.clone()})
    assert r.trace[0, 0] == 0.0 and r.energy[0] == 0.0  # started at the optimum, stayed
    assert shift_plan({"a": torch.tensor([[1, 2, 3]])}, "a")["a"].tolist() == [[2, 3, 3]]


def test_errors(quad):
    ebm, obs, _, _, _ = quad
    with pytest.raises(SpecError, match="neither observed nor minimized"):
        minimize(ebm, {"x": obs["x"]}, over=["z"])
    with pytest.raises(SpecError, match="unknown variable"):
        minimize(ebm, obs, over=["q"])
    with pytest.raises(SpecError, match="continuous"):
        minimize(ebm, obs, over=["z"], method="exhaustive")
    r = minimize(ebm, obs, over=["z"])
    assert r.method.startswith("gradient") and "continuous" in r.info["explanation"]


ADV = """
name: game
variables:
  a: {action: [1], bounds: [-2, 2]}
  w: {latent: discrete, values: 3}
modules:
  C: fixed(linear(4, 1))
energy:
  C: sq_dist(a, C(a, w))
"""


def test_adversarial_min_max_matches_grid():
    ebm = ebmgraph.compile(ADV, seed=2).double()
    r = minimize(ebm, {}, over=["a"], method="cem", maximize=["w"], batch=1, samples=64, iters=20)
    grid = torch.linspace(-2, 2, 4001, dtype=torch.float64)[:, None]
    worst = torch.stack([ebm.energy(a=grid, w=torch.full((4001,), k)).total for k in range(3)]).amax(0)
    assert abs(float(r.energy[0]) - float(worst.min())) < 1e-3
    assert torch.allclose(r.energy, ebm.energy(a=r.values["a"], w=r.values["w"]).total)
