"""``ebm.evaluate(inputs, outputs=[...])``: named values from generated code, against the reference interpreter.

Every spec in specs/ and examples/specs/: every value (whole variables, every array element, every energy
term and step) equals what the element-by-element interpreter computes, with and without ``repeat``; the
pruned program reads only the inputs its outputs need; values given in the middle (a state ``s[3]``) are
not recomputed; bad requests are clear errors.
"""
from __future__ import annotations

import pytest
import torch
from conftest import ROOT

import ebmgraph
from ebmgraph.conventions import repeat_rows
from ebmgraph.errors import SpecError
from ebmgraph.interp import eval_expr, evaluate_elements

ALL_SPECS = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "examples" / "specs").glob("*.yaml"))


def _compile(path):
    """The spec in float64, its sizes cut to at most 8 where the spec allows (every element is compared)."""
    sizes = ebmgraph.check(ebmgraph.load(path)).sizes
    small = {k: min(v, 8) for k, v in sizes.items()}
    try:
        ebm = ebmgraph.compile(path, seed=0, dtype=torch.float64, sizes=small)
    except SpecError:
        ebm = ebmgraph.compile(path, seed=0, dtype=torch.float64)
    return ebm.eval()


def _reference(ebm, x: dict) -> dict:
    """``{label: value}`` of every element, array and energy step through the interpreter (inputs prepared)."""
    chk = ebm.checked
    env = {}
    for v in ebm.graph.variables:
        for p in range(chk.lengths.get(v.name, 1)):
            env[(v.name, p)] = x[v.name][:, p] if v.name in chk.lengths else x[v.name]
    with torch.no_grad():
        evaluate_elements(chk, ebm.mods, env, ebm.weights())
    out = {}
    for name in dict.fromkeys([v.name for v in ebm.graph.variables] + [f.target.name for f in ebm.graph.functions]):
        if name in chk.lengths:
            elems = [env.get((name, p)) for p in range(chk.lengths[name])]
            for p, e in enumerate(elems):
                if e is not None:
                    out[f"{name}[{p}]"] = e
            if all(e is not None for e in elems):
                out[name] = torch.stack(elems, 1)
        else:
            out[name] = env[(name, 0)]
    for e in ebm.graph.energies:
        steps = []
        for t in chk.loop_values(e.loop) if e.loop else [None]:
            with torch.no_grad():
                v = eval_expr(chk, ebm.mods, e.value, lambda n, p: env[(n, p)], ebm.weights(), e.loop, t, energy=True)
            v = torch.as_tensor(v, dtype=ebm.dtype).expand(next(iter(x.values())).shape[0])
            steps.append(v)
            if e.loop:
                out[f"energy:{e.name}[{t}]"] = v
        out[f"energy:{e.name}"] = torch.stack(steps).sum(0)
    return out


@pytest.mark.parametrize("path", ALL_SPECS, ids=lambda p: p.stem)
def test_every_value_equals_the_interpreter(path):
    ebm = _compile(path)
    x = ebm.random_inputs(3, seed=1)
    ref = _reference(ebm, ebm.prepare(x))
    labels = list(ref)
    with torch.no_grad():
        got = ebm.evaluate(x, outputs=labels)
        both = ebm.evaluate(x, outputs=labels, energy=True)
        plain = ebm.energy(**x)
    assert list(got) == labels
    for k in labels:
        torch.testing.assert_close(got[k], ref[k], msg=f"{path.stem}: {k}")
        torch.testing.assert_close(both.values[k], ref[k], msg=f"{path.stem}: {k} (energy=True)")
    torch.testing.assert_close(both.total, plain.total)  # the same forward computed the energy


@pytest.mark.parametrize("path", ALL_SPECS, ids=lambda p: p.stem)
def test_every_value_with_repeat_equals_the_interpreter_on_repeated_inputs(path):
    ebm = _compile(path)
    k = 2
    x = ebm.random_inputs(3 * k, seed=2)
    observed = {v.name for v in ebm.graph.variables if v.role == "observed"}
    x = {n: (v[::k] if n in observed else v) for n, v in x.items()}  # [B] observed, [B*k] the rest
    full = {n: (repeat_rows(v, k) if n in observed else v) for n, v in x.items()}
    ref = _reference(ebm, ebm.prepare(full))
    with torch.no_grad():
        got = ebm.evaluate(x, outputs=list(ref), repeat=k)
    for label, want in ref.items():
        torch.testing.assert_close(got[label], want, msg=f"{path.stem}: {label} (repeat={k})")


def test_only_what_the_outputs_need_is_computed_and_required():
    ebm = _compile(ROOT / "specs" / "fig12_jepa.yaml")
    x = ebm.random_inputs(4, seed=0)
    calls = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: calls.append(n)) for n, m in ebm.mods.items()]
    with torch.no_grad():
        got = ebm.evaluate({"x": x["x"]}, outputs=["s_x"])  # neither y nor z is needed
    for h in hooks:
        h.remove()
    assert calls == ["Enc_x"]
    torch.testing.assert_close(got["s_x"], ebm.mods.Enc_x(x["x"]))
    with pytest.raises(SpecError, match="missing input"):
        ebm.evaluate({"x": x["x"]}, outputs=["s_y_tilde"])  # reads z


def test_a_given_state_is_not_recomputed():
    ebm = _compile(ROOT / "specs" / "fig04_mode2.yaml")
    x = ebm.random_inputs(5, seed=3)
    with torch.no_grad():
        full = ebm.evaluate(x, outputs=["s", "energy:cost[3]", "energy:cost"])
    calls = []
    hook = ebm.mods.Pred.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        step = ebm.evaluate({"s[3]": full["s"][:, 3], "a[3]": x["a"][:, 3]}, outputs=["s[4]", "energy:cost[3]"])
    hook.remove()
    assert len(calls) == 1  # one predictor step from the given state, nothing upstream of it
    torch.testing.assert_close(step["s[4]"], full["s"][:, 4])
    torch.testing.assert_close(step["energy:cost[3]"], full["energy:cost[3]"])
    with pytest.raises(SpecError, match=r"a\[2\]"):  # s[3] is not given: the outputs need a[2] and more
        ebm.evaluate({"s[2]": full["s"][:, 2], "a[3]": x["a"][:, 3]}, outputs=["s[4]"])


def test_discrete_elements_are_given_as_integers():
    ebm = _compile(ROOT / "examples" / "specs" / "cartpole_mpc.yaml")
    x = ebm.random_inputs(2, seed=0)
    disc = [v.name for v in ebm.graph.variables if isinstance(v.domain, ebmgraph.ir.Discrete)]
    assert disc, "the spec has a discrete variable"
    with torch.no_grad():
        a = ebm.evaluate(x, outputs=[f"energy:{e.name}" for e in ebm.graph.energies])
        b = ebm.evaluate(ebm.prepare(x), outputs=list(a))  # one-hot floats give the same values
    for k in a:
        torch.testing.assert_close(a[k], b[k])


@pytest.mark.parametrize("bad, match", [
    (["nope"], "has no value nope"), (["s[99]"], r"never defined"), (["energy:nope"], "no energy term"),
    (["s x"], "not a value name"), (["energy:cost[99]"], "does not exist"), ([], "names no value"),
])
def test_bad_requests_are_clear_errors(bad, match):
    ebm = _compile(ROOT / "specs" / "fig04_mode2.yaml")
    with pytest.raises(SpecError, match=match):
        ebm.evaluate(ebm.random_inputs(2), outputs=bad)


def test_energy_refuses_complex_and_names_non_finite_inputs():
    ebm = _compile(ROOT / "specs" / "fig12_jepa.yaml")
    x = ebm.random_inputs(2, seed=0)
    with pytest.raises(SpecError, match=r"x: torch.complex"):
        ebm.energy(**{**x, "x": x["x"].to(torch.complex128)})
    bad = x["y"].clone()
    bad[1, 3] = float("nan")
    with pytest.raises(SpecError, match=r"non-finite .* y"):
        ebm.energy(**{**x, "y": bad})
    assert torch.isnan(ebm.energy(**{**x, "y": bad}, check_finite=False).total[1])  # the opt-out for hot loops
