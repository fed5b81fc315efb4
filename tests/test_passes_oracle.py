"""Passes against oracles that do not run the passes.

``compile`` folds constants (and prunes with ``terms=``) before lowering, and the reference
interpreter of a compiled model runs on the folded graph too, so comparing the two cannot see
a folding bug. Here the compiled energy of the rewritten graph is compared with

* the reference interpreter run on the graph BEFORE the passes (``ebmgraph.check(g)`` +
  ``ebmgraph.interp.evaluate`` with the same module objects),
* hand-computed values of expressions the folder rewrites (``0 - x``, ``-(-x)``, ``x/1`` ...),
* a direct Python evaluation of random expression trees over numbers, weights and one
  module call (hypothesis).
"""
from __future__ import annotations

import operator

import pytest
import torch
from conftest import SPECS
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import ebmgraph
from ebmgraph import interp
from ebmgraph.passes import fold_constants, prune

TOL = {"rtol": 1e-10, "atol": 1e-10}


def _unpassed_terms(g, mods, ebm, inputs, weights=None):
    """Per-term energies of ``g`` as written (no folding, no pruning), by the reference interpreter."""
    chk = ebmgraph.check(g)
    w = dict(ebm.weights())
    w.update({k: torch.as_tensor(v, dtype=ebm.dtype) for k, v in (weights or {}).items()})
    with torch.no_grad():
        return interp.evaluate(chk, mods, ebm.prepare(inputs), w)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_folded_compiled_equals_interpreter_on_the_unfolded_graph(path):
    g = ebmgraph.load(path)
    for graph in (g, fold_constants(g)):  # compile folds again; folding twice changes nothing
        ebm = ebmgraph.compile(graph, seed=0).double()
        x = ebm.random_inputs(3, seed=1)
        weights = {k: 0.5 + i for i, (k, _) in enumerate(g.weights)}  # not the spec's defaults
        with torch.no_grad():
            got = ebm.energy(weights=weights or None, **x)
        want = _unpassed_terms(g, ebm.mods, ebm, x, weights)
        assert set(got.terms) == set(want)
        for k in want:
            torch.testing.assert_close(got.terms[k], want[k], **TOL)


MULTI = [p for p in SPECS if len(ebmgraph.load(p).energies) > 1]


@pytest.mark.parametrize("path", MULTI, ids=lambda p: p.stem)
def test_pruned_compiled_equals_interpreter_on_the_unpruned_graph(path):
    g = ebmgraph.load(path)
    full = ebmgraph.compile(g, seed=0).double()
    x = full.random_inputs(3, seed=2)
    want = _unpassed_terms(g, full.mods, full, x)
    for e in g.energies:
        part = ebmgraph.compile(g, seed=0, terms=[e.name]).double()
        missing, _ = part.load_state_dict(full.state_dict(), strict=False)
        assert not missing
        names = {v.name for v in part.graph.variables}
        assert names == {v.name for v in prune(g, [e.name]).variables}
        with torch.no_grad():
            got = part.energy(**{k: v for k, v in x.items() if k in names})
        assert list(got.terms) == [e.name]
        torch.testing.assert_close(got.total, want[e.name], **TOL)


# ----------------------------------------------------------------------------- hand-computed
Z = torch.tensor([[0.5, -1.5, 2.0], [1.0, 0.25, -0.5]], dtype=torch.float64)
L1 = Z.abs().sum(1)  # [4.0, 1.75]
L2 = (Z * Z).sum(1)  # [6.5, 1.3125]
U = 1.5

HAND = {
    "zero_minus": ("0 - l1(z)", -L1),
    "zero_minus_zero_minus": ("0 - 0 - l1(z)", -L1),
    "zero_minus_paren": ("0 - (0 - l1(z))", L1),
    "minus_zero": ("l1(z) - 0", L1),
    "zero_plus": ("0 + l1(z)", L1),
    "plus_zero": ("l1(z) + 0", L1),
    "double_neg": ("-(-l1(z))", L1),
    "triple_neg": ("-(-(-l1(z)))", -L1),
    "one_times": ("1 * l1(z)", L1),
    "times_one": ("l1(z) * 1", L1),
    "div_one": ("l1(z) / 1", L1),
    "one_div": ("1 / l1(z)", 1 / L1),
    "two_times_005": ("2 * 0.05 * l1(z)", 0.1 * L1),
    "diff_times": ("(1 - 1) * l1(z)", 0 * L1),
    "times_zero": ("l1(z) * 0", 0 * L1),
    "zero_times": ("0 * l2(z)", 0 * L2),
    "neg_in_product": ("-l1(z) * -2", 2 * L1),
    "neg_of_product": ("-(2 * -l1(z))", 2 * L1),
    "neg_num_product": ("3 * -(-(-l2(z)))", -3 * L2),
    "neg_number": ("(2 - 3) * l1(z)", -L1),
    "div_number": ("l2(z) / 4", L2 / 4),
    "div_half": ("l2(z) / 0.5", 2 * L2),
    "div_chain": ("l2(z) / 2 / 2", L2 / 4),
    "num_div_num": ("1 / 4 * l2(z)", L2 / 4),
    "div_by_div": ("2 / (1 / l2(z))", 2 * L2),
    "minus_minus": ("l1(z) - (0 - l2(z))", L1 + L2),
    "one_minus": ("1 - l1(z)", 1 - L1),
    "sub_assoc": ("l2(z) - l1(z) - 1", L2 - L1 - 1),
    "sub_right_assoc": ("l2(z) - (l1(z) - 1)", L2 - L1 + 1),
    "weight_minus_zero": ("u * l1(z) - 0 * u", U * L1),
    "zero_minus_weight": ("0 - u * l1(z)", -U * L1),
    "weight_div": ("l2(z) / u / 1", L2 / U),
}

HAND_SPEC = ("name: hand\nweights: {u: 7.0}\nvariables:\n  z: {latent: [3]}\nenergy:\n"
             + "".join(f"  {k}: {text}\n" for k, (text, _) in HAND.items()))


@pytest.mark.parametrize("folded", [False, True], ids=["compile", "fold_then_compile"])
def test_folded_expressions_equal_hand_computed_values(folded):
    g = ebmgraph.loads(HAND_SPEC)
    if folded:
        g = fold_constants(g)
    ebm = ebmgraph.compile(g, seed=0).double()
    with torch.no_grad():
        got = ebm.energy(weights={"u": U}, z=Z)  # u at run time, not its default 7
        ref = _unpassed_terms(ebmgraph.loads(HAND_SPEC), ebm.mods, ebm, {"z": Z}, {"u": U})
    bad = {}
    for k, (text, want) in HAND.items():
        torch.testing.assert_close(ref[k], want, **TOL)  # the oracle itself, on the unfolded graph
        if not torch.allclose(got.terms[k], want, rtol=1e-12, atol=1e-12):
            bad[k] = (text, got.terms[k].tolist(), want.tolist())
    assert not bad, bad


def test_zero_minus_x_folds_to_minus_x():
    """``0 - x`` is -x after folding, as a graph: its energy at z is the negated l1."""
    g = fold_constants(ebmgraph.loads("name: f\nvariables:\n  z: {latent: [3]}\nenergy:\n  E: 0 - l1(z)\n"))
    ebm = ebmgraph.compile(g).double()
    torch.testing.assert_close(ebm.energy(z=Z).total, -L1, **TOL)


# ----------------------------------------------------------------------------- random expression trees
NUMS = [0.0, 1.0, 2.0, 0.5, 3.0, 0.25, 0.05]
WEIGHTS = {"u": 1.5, "v": -0.5}  # passed at run time; the spec's defaults are different
DEFAULTS = {"u": 4.0, "v": 9.0}
ZR = torch.tensor([[0.5, -1.5, 2.0], [1.0, 0.25, -0.5], [-0.3, 0.8, 0.1], [2.0, -2.0, 1.0]], dtype=torch.float64)
CALL = {"l1(z)": ZR.abs().sum(1), "l2(z)": (ZR * ZR).sum(1), "sq_dist(z, y)": ((ZR - 0.5) ** 2).sum(1)}


def _leaf():
    return st.one_of(st.sampled_from(NUMS).map(lambda v: ("num", v)),
                     st.sampled_from(sorted(WEIGHTS)).map(lambda w: ("w", w)),
                     st.sampled_from(sorted(CALL)).map(lambda c: ("call", c)))


def _extend(children):
    return st.one_of(st.tuples(st.sampled_from("+-*/"), children, children).map(lambda t: ("bin",) + t),
                     children.map(lambda c: ("neg", c)))


TREES = st.recursive(_leaf(), _extend, max_leaves=10)


def _text(t) -> str:
    if t[0] == "num":
        return repr(t[1])
    if t[0] in ("w", "call"):
        return t[1]
    if t[0] == "neg":
        return f"-({_text(t[1])})"
    return f"({_text(t[2])} {t[1]} {_text(t[3])})"


OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def _direct(t):
    """(value [B], magnitude bound [B], smallest |denominator|, calls) of a tree, evaluated directly."""
    one = torch.ones(ZR.shape[0], dtype=torch.float64)
    if t[0] == "num":
        return t[1] * one, abs(t[1]) * one, float("inf"), 0
    if t[0] == "w":
        return WEIGHTS[t[1]] * one, abs(WEIGHTS[t[1]]) * one, float("inf"), 0
    if t[0] == "call":
        return CALL[t[1]], CALL[t[1]].abs(), float("inf"), 1
    if t[0] == "neg":
        v, m, d, c = _direct(t[1])
        return -v, m, d, c
    op, (a, ma, da, ca), (b, mb, db, cb) = t[1], _direct(t[2]), _direct(t[3])
    den = min(da, db)
    if op == "/":
        den = min(den, float(b.abs().min()))
        mag = (ma / b.abs().clamp_min(1e-300)) + ma * mb / b.abs().clamp_min(1e-300) ** 2
    elif op == "*":
        mag = ma * mb
    else:
        mag = ma + mb
    return OPS[op](a, b), mag, den, ca + cb


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(TREES)
def test_random_expression_trees_equal_direct_evaluation(tree):
    want, mag, den, calls = _direct(tree)
    assume(calls > 0)  # an energy term reads a variable
    assume(den > 0.05)  # no division by (nearly) zero
    text = _text(tree)
    spec = (f"name: r\nweights: {{u: {DEFAULTS['u']}, v: {DEFAULTS['v']}}}\n"
            f"variables:\n  z: {{latent: [3]}}\n  y: {{observed: [3]}}\nenergy:\n  E: {text}\n")
    g = ebmgraph.loads(spec)
    ebm = ebmgraph.compile(g, seed=0).double()
    y = torch.full((ZR.shape[0], 3), 0.5, dtype=torch.float64)
    with torch.no_grad():
        got = ebm.energy(weights=WEIGHTS, z=ZR, y=y).total
        folded = ebmgraph.compile(fold_constants(g), seed=0).double().energy(weights=WEIGHTS, z=ZR, y=y).total
    tol = 1e-9 * (1.0 + mag)
    assert ((got - want).abs() <= tol).all(), (text, got.tolist(), want.tolist())
    assert ((folded - want).abs() <= tol).all(), (text, folded.tolist(), want.tolist())
