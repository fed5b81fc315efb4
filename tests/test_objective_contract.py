"""One objective contract for every minimizer (issue 27.2), state the library owns (27.4), and planners a user
gets compiled without asking (28).

* Every method minimizes what ``sample``/``risk``/``n_draws``, ``maximize`` and ``penalty`` say, or refuses by
  name: the choices are checked against exact enumeration and a Monte-Carlo estimate of the risk objective
  (as tests/test_uncertainty.py does), the fused planner's penalty against the objective computed through
  the model.
* The fused and unfused planners take the same setting names and defaults and count the same elites.
* ``Problem`` declares every attribute; compiled planners are kept in ebmgraph's own table, not on the model,
  and do not keep the model alive.
* CEM / MPPI iterations as AOTInductor packages (``compile="aot"``, and by default once they pay) compute what
  the eager iterations do, are announced once, kept on disk and loaded by another process without a build.
"""
from __future__ import annotations

import gc
import inspect
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch
from conftest import ROOT

import ebmgraph
from ebmgraph import SpecError
from ebmgraph.infer import aot, minimize, sampling
from ebmgraph.infer.core import Problem, compiled_planners
from ebmgraph.infer.objectives import with_penalty, with_risk
from ebmgraph.kernels import mppi as kmppi

# ----------------------------------------------------------------------------- risk: honoured or refused
CHANCE = """
name: chance
index: {t: 0..T-1}
sizes: {T: 2}
variables:
  a[t]: {action: discrete, values: 2}
  w: {latent: discrete, values: 3, sampled: true}
modules:
  C: mlp(7, 12, 1, act=relu)
  Rw: discrete(3)
energy:
  C: C(a[0], a[1], w)
  R: Rw(w)
"""
# C(a0, a1, w): plan (0, 0) costs 1.5 whatever w is; plan (1, 1) costs 0, 0 or 3 — lower on average (w = 2 has
# probability 0.19), far more spread
TABLE = {(0, 0): (1.5, 1.5, 1.5), (0, 1): (4.0, 4.0, 4.0), (1, 0): (4.0, 4.0, 4.0), (1, 1): (0.0, 0.0, 3.0)}
PLANS = [(0, 0), (0, 1), (1, 0), (1, 1)]


def _chance():
    """The CHANCE spec with its MLP set to the table: one ReLU unit per (a0, a1, w) fires on that one-hot triple."""
    ebm = ebmgraph.compile(CHANCE, seed=0).double()
    lin1, lin2 = [m for m in ebm.mods["C"].net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        ebm.mods["Rw"].r.copy_(torch.tensor([0.0, 0.5, 1.0]))
        lin1.weight.zero_(), lin1.bias.fill_(-2.0), lin2.weight.zero_(), lin2.bias.zero_()
        for u, (i, j, w) in enumerate((i, j, w) for i in range(2) for j in range(2) for w in range(3)):
            lin1.weight[u, i], lin1.weight[u, 2 + j], lin1.weight[u, 4 + w] = 1.0, 1.0, 1.0
            lin2.weight[0, u] = TABLE[(i, j)][w]
    return ebm


def _monte_carlo(ebm, lam: float, n: int = 20000) -> torch.Tensor:
    """``mean + lam·std`` of each plan's energy less the prior, over independent draws of w ~ exp(-R(w))."""
    p = torch.softmax(-ebm.mods["Rw"].r.detach(), 0)
    w = torch.multinomial(p, n, replacement=True, generator=torch.Generator().manual_seed(123))
    out = []
    with torch.no_grad():
        for plan in PLANS:
            E = ebm.energy(a=torch.tensor(plan).expand(n, 2), w=w).terms["C"]
            out.append(E.mean() + lam * E.std(unbiased=False))
    return torch.stack(out)


def test_the_table_is_what_the_energy_computes():
    ebm = _chance()
    with torch.no_grad():
        for plan, row in TABLE.items():
            got = ebm.energy(a=torch.tensor(plan).expand(3, 2), w=torch.arange(3)).terms["C"]
            torch.testing.assert_close(got, torch.tensor(row, dtype=torch.float64))


@pytest.mark.parametrize("method", ["exhaustive", "mcts", "beam", "dp", "auto"])
def test_risk_is_minimized_as_the_monte_carlo_estimate_says_or_refused_by_name(method):
    """risk=1 prefers the certain plan (0, 0) (MC: 1.5 against 0.56 + 1.17); risk=0 the cheaper-on-average
    (1, 1). A method either chooses as the estimate says or raises naming a setting it does not take."""
    ebm = _chance()
    mc = {lam: _monte_carlo(ebm, lam) for lam in (0.0, 1.0)}
    assert PLANS[int(mc[1.0].argmin())] == (0, 0) and PLANS[int(mc[0.0].argmin())] == (1, 1)  # the choices differ
    kw = {"simulations": 300} if method == "mcts" else {"width": 4} if method == "beam" else {}
    honours = {"exhaustive": True, "auto": True, "mcts": False, "beam": False, "dp": False}[method]
    if not honours:
        with pytest.raises(SpecError, match=r"risk=") as err:
            minimize(ebm, {}, over=["a"], method=method, batch=1, risk=1.0, n_draws=512, seed=1, **kw)
        assert "sample=" in str(err.value) or method == "mcts", err.value
        return
    for lam in (0.0, 1.0):
        r = minimize(ebm, {}, over=["a"], method=method, batch=1, risk=lam, n_draws=4000, seed=1, **kw)
        k = PLANS.index(tuple(r.values["a"][0].tolist()))
        assert k == int(mc[lam].argmin()), (lam, r.values["a"])
        # the reported objective is the estimate's, within Monte-Carlo error (4000 draws of the planner's own)
        assert float(r.energy[0]) == pytest.approx(float(mc[lam][k]), abs=0.1)


def test_mcts_takes_sampled_latents_as_chance_nodes_and_refuses_the_rest_by_name():
    ebm = _chance()
    r = minimize(ebm, {}, over=["a"], method="mcts", batch=1, simulations=300, seed=0)  # expected energy: risk=0
    assert tuple(r.values["a"][0].tolist()) == (1, 1)
    r0 = minimize(ebm, {}, over=["a"], method="mcts", batch=1, simulations=300, seed=0, risk=0.0)
    assert torch.equal(r0.values["a"], r.values["a"])
    for kw, name in (({"n_draws": 64}, "n_draws="), ({"penalty": lambda v: v["a"].sum(1).double()}, "penalty=")):
        with pytest.raises(SpecError, match=name):
            minimize(ebm, {}, over=["a"], method="mcts", batch=1, simulations=10, **kw)


def test_settings_that_would_change_nothing_are_refused_by_name():
    ebm = ebmgraph.compile(ROOT / "specs/fig04_mode2.yaml", seed=0)
    x = {"x": torch.zeros(1, 3)}
    for kw, name in (({"risk": 1.0}, "risk="), ({"n_draws": 8}, "n_draws="), ({"inner_steps": 5}, "inner_steps="),
                     ({"inner_lr": 0.5}, "inner_lr=")):
        for method in ("cem", "gradient", "mcts"):
            with pytest.raises(SpecError, match=name):
                minimize(ebm, x, over=["a"], method=method, **kw)


# ----------------------------------------------------------------------------- the fused planner
def _mode2(T=6):
    ebm = ebmgraph.compile(ROOT / "specs/fig04_mode2.yaml", seed=0, sizes={"T": T})
    ebm.requires_grad_(False)
    with torch.no_grad():
        ebm.mods["C"].goal.add_(0.3)
    return ebm, {"x": torch.tensor([[0.8, -0.3, 0.5], [0.1, 0.4, -0.9]])}


def _pull(target: float, weight: float):
    """A penalty ``weight · Σ (a - target)²`` pulling every action towards ``target``."""
    return lambda v: weight * ((v["a"] - target) ** 2).flatten(1).sum(1)


@pytest.mark.parametrize("method", ["cem", "mppi"])
def test_fused_planning_minimizes_the_penalized_objective(method):
    """fused=True with penalty=: the plan moves as E + penalty says (the objective computed through the model
    is lower than the penalty-blind plan's, and near what the unfused planner finds for it); the reported
    energy stays E alone."""
    ebm, x = _mode2()
    pen = _pull(1.5, 2.0)
    kw = dict(samples=256, iters=12, seed=0, **({"temperature": 0.3} if method == "mppi" else {}))

    def objective(a):
        with torch.no_grad():
            return ebm.energy(**x, a=a).total + pen({"a": a})

    blind = minimize(ebm, x, over=["a"], method=method, fused=True, **kw)
    fused = minimize(ebm, x, over=["a"], method=method, fused=True, penalty=pen, **kw)
    unfused = minimize(ebm, x, over=["a"], method=method, penalty=pen, compile=False, **kw)
    with torch.no_grad():
        torch.testing.assert_close(fused.energy, ebm.energy(**x, a=fused.values["a"]).total)  # E, not E + penalty
    J_blind, J_fused, J_unfused = objective(blind.values["a"]), objective(fused.values["a"]), objective(unfused.values["a"])
    gap = J_blind - J_unfused
    assert (gap > 1.0).all(), gap  # the penalty changes the best plan
    assert (J_fused < J_blind - 0.8 * gap).all(), (J_fused, J_blind, J_unfused)
    assert (pen(fused.values) < pen(blind.values)).all()


def test_fused_planning_refuses_objectives_it_cannot_compute_by_name():
    ebm, x = _mode2()
    with pytest.raises(SpecError, match="risk="):
        minimize(ebm, x, over=["a"], method="mppi", fused=True, risk=1.0)
    with pytest.raises(SpecError, match="maximize="):
        minimize(ebm, x, method="mppi", fused=True, maximize=["a"])
    with pytest.raises(SpecError, match=r"does not take .*sample="):
        minimize(_chance(), {}, over=["a"], method="mppi", fused=True, batch=1)


@pytest.mark.parametrize("K,frac", [(20, 0.05), (64, 0.1), (100, 0.125), (1024, 0.1), (10, 0.34), (7, 1.0),
                                    (256, 0.015)])
def test_fused_and_unfused_cem_keep_the_same_number_of_elites(K, frac, monkeypatch):
    ebm, x = _mode2(T=3)
    seen = []
    real = kmppi.cem_step

    def spy(mean, std, best_A, best_E, c, n_elite, momentum, min_sigma):
        seen.append(n_elite)
        return real(mean, std, best_A, best_E, c, n_elite, momentum, min_sigma)

    monkeypatch.setattr(kmppi, "cem_step", spy)
    minimize(ebm, x, over=["a"], method="cem", fused=True, samples=K, elite_frac=frac, iters=1)
    r = minimize(ebm, x, over=["a"], method="cem", samples=K, elite_frac=frac, iters=1, compile=False)
    assert seen == [r.info["elite"]]
    assert seen == [kmppi.n_elites(frac, K)] and 1 <= seen[0] <= K


def test_the_fused_planner_takes_the_unfused_names_and_defaults(monkeypatch):
    """One vocabulary: the kernels' keywords are the unfused planners' (no K, lam or min_std), minimize(fused=True)
    passes the unfused defaults when a setting is left out, and a name one path refuses the other refuses."""
    for fn, names in ((kmppi.plan_cem, {"samples", "iters", "elite_frac", "momentum", "sigma", "min_sigma"}),
                      (kmppi.plan_mppi, {"samples", "iters", "temperature", "sigma"})):
        params = set(inspect.signature(fn).parameters)
        assert names <= params and not ({"K", "lam", "min_std"} & params), params
    ebm, x = _mode2(T=3)
    got = {}
    for name in ("plan_cem", "plan_mppi"):
        real = getattr(kmppi, name)
        monkeypatch.setattr(kmppi, name, lambda *a, _real=real, _name=name, **kw: (got.__setitem__(_name, kw),
                                                                                    _real(*a, **kw))[1])
    for method, unfused in (("cem", sampling.cem), ("mppi", sampling.mppi)):
        defaults = {k: p.default for k, p in inspect.signature(unfused).parameters.items()}
        minimize(ebm, x, over=["a"], method=method, fused=True)
        kw = got[f"plan_{method}"]
        shared = [k for k in kw if k in defaults and k != "generator"]
        assert {"samples", "iters", "sigma"} <= set(shared)
        assert {k: kw[k] for k in shared if k != "sigma"} == {k: defaults[k] for k in shared if k != "sigma"}
        assert kw["sigma"] == 1.0  # the unfused default: a quarter of the box [-2, 2]
        settings = {"samples": 32, "iters": 2, "sigma": 0.7, **({"elite_frac": 0.25, "momentum": 0.2, "min_sigma": 1e-3}
                                                             if method == "cem" else {"temperature": 0.4})}
        minimize(ebm, x, over=["a"], method=method, fused=True, **settings)
        assert {k: got[f"plan_{method}"][k] for k in settings} == settings
        minimize(ebm, x, over=["a"], method=method, compile=False, **settings)  # the same names, unfused
        for bad in ("K", "lam", "min_std"):
            with pytest.raises(SpecError, match=bad):
                minimize(ebm, x, over=["a"], method=method, fused=True, **{bad: 1})
            with pytest.raises(SpecError, match=bad):
                minimize(ebm, x, over=["a"], method=method, **{bad: 1})


# ----------------------------------------------------------------------------- state the library owns
def test_problem_declares_every_attribute_and_objectives_are_records():
    ebm = _chance()
    prob = Problem(ebm, {}, ["a"], batch=1, handled=("w",))
    assert not hasattr(prob, "__dict__")
    with pytest.raises(AttributeError):
        prob.draws = {}
    prob.wrap(with_risk(prob, ["w"], 8, 1.0, torch.Generator().manual_seed(0)))
    prob.wrap(with_penalty(prob, lambda v: v["a"].sum(1).double()))
    assert prob.wrapped == ("sample", "risk", "penalty") and prob.report_fn is not None


def test_compiled_planners_are_kept_beside_the_model_not_on_it_and_let_it_go():
    ebm, x = _mode2(T=3)
    attrs = set(vars(ebm))
    r = minimize(ebm, x, over=["a"], method="mppi", samples=16, iters=2, compile=True)
    assert set(vars(ebm)) == attrs  # nothing written onto the user's model
    assert len(compiled_planners(ebm)) == 2  # the iteration and the last mean's scorer
    ref = weakref.ref(ebm)
    del ebm, r
    gc.collect()
    assert ref() is None  # the table keeps no model alive


def test_eager_plans_answer_with_ordinary_tensors():
    """The eager loop runs in inference mode; what it returns is copied out (a caller may differentiate)."""
    ebm, x = _mode2(T=3)
    for method in ("cem", "mppi"):
        r = minimize(ebm, x, over=["a"], method=method, samples=16, iters=2, compile=False)
        for t in (r.values["a"], r.energy, r.trace, r.info["mean"]["a"], *r.terms.values()):
            assert not torch.is_inference(t)
        a = r.values["a"].requires_grad_(True)
        (g,) = torch.autograd.grad(ebm.energy(**x, a=a).total.sum(), a)
        assert torch.isfinite(g).all()


# ----------------------------------------------------------------------------- compiled by default
REUSE = """
import json, sys, torch
import ebmgraph
from ebmgraph.infer import minimize
torch.set_num_threads({threads})  # the key holds the thread count inductor builds for: the parent's
ebm = ebmgraph.compile({spec!r}, seed=0, sizes={{"T": 3}})
r = minimize(ebm, {{"x": torch.tensor({x})}}, over=["a"], method={method!r}, **{kw!r})
print(json.dumps([r.info["compiled"], r.values["a"].flatten().tolist()]))
"""


@pytest.mark.parametrize("method", ["cem", "mppi"])
def test_the_default_builds_once_announces_it_and_another_process_loads_it(method, tmp_path, monkeypatch, capfd):
    """compile="auto" (the default): eager until a configuration has cost about a build (here: at once), then one
    AOT package, announced in one stderr line and kept on disk; it plans as the eager iteration does; a later
    plan in this process and a new process load it, with no line."""
    monkeypatch.setenv(aot.ENV, str(tmp_path))
    # keys from the sources as they are now, as the new process will read them (a long session may predate an edit)
    aot.source_digest.cache_clear()
    monkeypatch.setattr(sampling, "_DIGESTS", {})
    ebm = ebmgraph.compile(ROOT / "specs/fig04_mode2.yaml", seed=0, sizes={"T": 3})
    x = [[0.8, -0.3, 0.5], [0.1, 0.4, -0.9]]
    kw = {"samples": 32, "iters": 3, "sigma": 1.0, "seed": 2,
          **({"elite_frac": 0.25, "elite_reuse": 0.3} if method == "cem" else {"temperature": 0.5})}
    obs = {"x": torch.tensor(x)}
    eager = minimize(ebm, obs, over=["a"], method=method, compile=False, **kw)
    small = minimize(ebm, obs, over=["a"], method=method, **kw)  # nothing built: eager, nothing written
    assert not small.info["compiled"] and not (tmp_path / "aot").exists()
    capfd.readouterr()
    monkeypatch.setattr(sampling, "AUTO_BUILD_AFTER_S", 0.0)
    first = minimize(ebm, obs, over=["a"], method=method, **kw)
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("ebmgraph:")]
    assert len(lines) == 1 and f"compiling the {method.upper()} iteration (B=2, K=32" in lines[0], lines
    assert first.info["compiled"] and len(list((tmp_path / "aot").glob("*.pt2"))) == 1
    again = minimize(ebm, obs, over=["a"], method=method, **kw)
    assert again.info["compiled"] and not [ln for ln in capfd.readouterr().err.splitlines()
                                           if ln.startswith("ebmgraph:")]
    for r in (first, again):
        torch.testing.assert_close(r.values["a"], eager.values["a"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(r.energy, eager.energy, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(r.trace, eager.trace, rtol=1e-4, atol=1e-5)
    code = REUSE.format(spec=str(ROOT / "specs/fig04_mode2.yaml"), x=x, method=method, kw=kw,
                        threads=torch.get_num_threads())
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, aot.ENV: str(tmp_path)},
                         capture_output=True, text=True, timeout=600, cwd=str(Path(__file__).parent))
    assert out.returncode == 0, out.stderr[-2000:]
    assert not [ln for ln in out.stderr.splitlines() if ln.startswith("ebmgraph:")], out.stderr[-2000:]
    compiled, values = json.loads(out.stdout.strip().splitlines()[-1])
    assert compiled and len(list((tmp_path / "aot").glob("*.pt2"))) == 1
    torch.testing.assert_close(torch.tensor(values), first.values["a"].flatten(), rtol=1e-5, atol=1e-6)


def test_aot_refuses_a_wrapped_objective_by_name_and_auto_plans_it_eagerly(tmp_path, monkeypatch):
    monkeypatch.setenv(aot.ENV, str(tmp_path))
    monkeypatch.setattr(sampling, "AUTO_BUILD_AFTER_S", 0.0)
    ebm, x = _mode2(T=3)
    pen = _pull(1.0, 1.0)
    with pytest.raises(SpecError, match="penalty="):
        minimize(ebm, x, over=["a"], method="cem", samples=16, iters=1, penalty=pen, compile="aot")
    r = minimize(ebm, x, over=["a"], method="cem", samples=16, iters=1, penalty=pen)
    assert not r.info["compiled"] and not (tmp_path / "aot").exists()
    with pytest.raises(SpecError, match="compile="):
        minimize(ebm, x, over=["a"], method="mppi", samples=16, iters=1, compile="fast")
