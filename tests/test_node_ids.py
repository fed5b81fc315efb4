"""Stable node ids (issue 27, item 8): the checker's side tables are keyed by each IR node's ``uid``.

* A graph whose every expression node was rebuilt with ``dataclasses.replace`` (new objects, the same
  uids) still finds each call's module and each operation's operand shapes: rollouts, the fused-kernel
  analysis, the generated code and the interpreter's energies equal the original's, on every spec in
  specs/ and examples/specs/; the step-wise search model reads rebuilt references too. (Keyed by
  ``id()``, as before, every one of these raised ``KeyError``.)
* uids are unique within every spec, as parsed and after the rewrites; a rewrite that rebuilds a node
  keeps its uid, a node it makes is new; a copy left beside its original is refused by the checker.
* uids take no part in equality, hashing or ``repr``.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import ROOT

import ebmgraph
from ebmgraph import ir
from ebmgraph.conventions import SCALAR
from ebmgraph.errors import SpecError
from ebmgraph.fusion import analyze_fused
from ebmgraph.infer.stepwise import StepModel, analyze_stepwise
from ebmgraph.interp import evaluate
from ebmgraph.lower import lower
from ebmgraph.passes import find_rollouts, fold_constants

ALL_SPECS = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "examples" / "specs").glob("*.yaml"))


def _compile(path):
    """The spec in float64, its sizes cut to at most 8 where the spec allows (as test_evaluate_outputs)."""
    sizes = ebmgraph.check(ebmgraph.load(path)).sizes
    try:
        ebm = ebmgraph.compile(path, seed=0, dtype=torch.float64, sizes={k: min(v, 8) for k, v in sizes.items()})
    except SpecError:
        ebm = ebmgraph.compile(path, seed=0, dtype=torch.float64)
    return ebm.eval()


def _rebuilt(e: ir.Expr) -> ir.Expr:
    """``e`` with every node a new object made by ``dataclasses.replace`` (so with the same uids)."""
    if isinstance(e, ir.Call):
        return dataclasses.replace(e, args=tuple(_rebuilt(a) for a in e.args))
    if isinstance(e, ir.BinOp):
        return dataclasses.replace(e, left=_rebuilt(e.left), right=_rebuilt(e.right))
    if isinstance(e, ir.Neg):
        return dataclasses.replace(e, operand=_rebuilt(e.operand))
    return dataclasses.replace(e)


def _rebuilt_graph(g: ir.Graph) -> ir.Graph:
    return dataclasses.replace(
        g,
        functions=tuple(dataclasses.replace(f, target=_rebuilt(f.target), value=_rebuilt(f.value))
                        for f in g.functions),
        energies=tuple(dataclasses.replace(e, value=_rebuilt(e.value)) for e in g.energies),
        regularizers=tuple(dataclasses.replace(r, value=_rebuilt(r.value)) for r in g.regularizers))


def _nodes(g: ir.Graph) -> list:
    exprs = [f.target for f in g.functions] + [x.value for x in g.functions + g.energies + g.regularizers]
    return [n for x in exprs for n in ir.walk(x)]


# ----------------------------------------------------------------------------- (a) rebuilt nodes keep their entries
@pytest.mark.parametrize("path", ALL_SPECS, ids=lambda p: p.stem)
def test_a_graph_rebuilt_with_replace_lowers_and_evaluates_the_same(path):
    ebm = _compile(path)
    chk = ebm.checked
    chk2 = dataclasses.replace(chk, graph=_rebuilt_graph(chk.graph))
    assert chk2.graph == chk.graph
    assert not {id(n) for n in _nodes(chk.graph)} & {id(n) for n in _nodes(chk2.graph)}  # no node object kept
    rollouts = find_rollouts(chk2)
    assert rollouts == ebm.rollouts
    assert lower(chk2, rollouts) == lower(chk, ebm.rollouts)
    assert lower(chk2, rollouts)[0] == ebm.code
    assert repr(analyze_fused(chk2, rollouts)) == repr(analyze_fused(chk, ebm.rollouts))
    x = ebm.prepare(ebm.random_inputs(2, seed=1))
    with torch.no_grad():
        want = evaluate(chk, ebm.mods, x, ebm.weights())
        got = evaluate(chk2, ebm.mods, x, ebm.weights())
    assert list(got) == list(want)
    for k in want:
        assert torch.equal(torch.as_tensor(got[k]), torch.as_tensor(want[k])), k


def test_the_table_look_ups_follow_the_uid_not_the_object():
    chk = ebmgraph.check(ebmgraph.loads(STEPS))
    call = chk.graph.functions[1].value  # Pred(s[t], a[t], w[t])
    binop = chk.graph.energies[0].value  # C(s[t+1]) + lam * sq_dist(s[t+1], g)
    assert chk.module_of(dataclasses.replace(call)) == chk.module_of(call) == "Pred"
    assert chk.operand_shapes(dataclasses.replace(binop)) == chk.operand_shapes(binop) == (SCALAR, SCALAR)
    assert chk.operand_shapes(dataclasses.replace(binop.right)) == (None, SCALAR)  # lam * sq_dist(..)
    with pytest.raises(KeyError, match=r"Pred\(s\[t\], a\[t\], w\[t\]\) .* is not a call checked in steps"):
        chk.module_of(ir.Call(call.fn, call.args))  # equal, but a new node: not a call of this graph


STEPS = """
name: steps
index: {t: 0..T-1}
sizes: {T: 3}
weights: {lam: 0.3}
variables:
  x: {observed: [3]}
  g: {observed: [3]}
  w[t]: {observed: [2]}
  a[t]: {action: discrete, values: 3}
modules:
  Pred: mlp(8, 16, 3, act=tanh)
  C: fixed(quadratic(3))
functions:
  s[0]: identity(x)
  s[t+1]: Pred(s[t], a[t], w[t])
energy:
  cost[t]: C(s[t+1]) + lam * sq_dist(s[t+1], g)
"""


def test_the_step_model_reads_rebuilt_references():
    ebm = ebmgraph.compile(STEPS, seed=0, dtype=torch.float64)
    sw, why = analyze_stepwise(ebm.checked, ebm.rollouts, "a")
    assert why == "fits"
    sw2 = dataclasses.replace(sw, call=_rebuilt(sw.call),
                              terms=tuple(dataclasses.replace(t, expr=_rebuilt(t.expr)) for t in sw.terms))
    gen = torch.Generator().manual_seed(0)
    obs = {"x": torch.randn(4, 3, generator=gen, dtype=torch.float64),
           "g": torch.randn(4, 3, generator=gen, dtype=torch.float64),
           "w": torch.randn(4, 3, 2, generator=gen, dtype=torch.float64)}
    m, m2 = StepModel(ebm, sw), StepModel(ebm, sw2)
    ctx = m.context(obs)
    s, a = ctx[0], torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        for k in range(3):
            (new, e), (new2, e2) = m.step(ctx, s, a, k), m2.step(ctx, s, a, k)
            assert torch.equal(new, new2) and torch.equal(e, e2)
            s = new


# ----------------------------------------------------------------------------- (b) unique, kept, fresh
@pytest.mark.parametrize("path", ALL_SPECS, ids=lambda p: p.stem)
def test_uids_are_unique_within_every_spec(path):
    parsed = ebmgraph.load(path)
    for g in (parsed, fold_constants(parsed), ebmgraph.compile(path, seed=0).graph):
        seen: dict[int, object] = {}
        for n in _nodes(g):
            assert isinstance(n.uid, int)
            assert seen.setdefault(n.uid, n) is n, f"{path.name}: uid {n.uid} on {n!r} and {seen[n.uid]!r}"
    again = ebmgraph.load(path)
    assert again == parsed and not {n.uid for n in _nodes(again)} & {n.uid for n in _nodes(parsed)}


def test_a_rewrite_keeps_the_uid_of_what_it_rebuilds_and_gives_new_nodes_new_ones():
    g = ebmgraph.loads(STEPS.replace("lam * sq_dist(s[t+1], g)", "0.2 * 0.5 * (lam * sq_dist(s[t+1], g))"))
    before = g.energies[0].value  # C(..) + ((0.2*0.5) * (lam*sq_dist(..)))
    after = fold_constants(g).energies[0].value  # C(..) + 0.1*(lam*sq_dist(..))
    assert ir.expr_str(after) == "C(s[t+1]) + 0.1*(lam*sq_dist(s[t+1], g))"
    for new, old in [(after, before), (after.right, before.right)]:  # rebuilt around the folded number
        assert new is not old and new != old and new.uid == old.uid
    for new, old in [(after.left, before.left), (after.right.right, before.right.right),
                     (after.right.right.right, before.right.right.right)]:  # rebuilt unchanged
        assert new is not old and new == old and new.uid == old.uid
    number = after.right.left  # Num(0.1): a node the pass made, its uid none of the parsed graph's
    assert number == ir.Num(0.1) and number.uid not in {n.uid for n in _nodes(g)}
    assert len({n.uid for n in _nodes(fold_constants(g))}) == len(_nodes(fold_constants(g)))


def test_a_copy_beside_its_original_is_refused_and_a_shared_node_is_not():
    g = ebmgraph.loads(STEPS)
    e = g.energies[0]
    ebmgraph.check(dataclasses.replace(g, energies=(e, dataclasses.replace(e, name="again"))))  # one object twice
    copy = dataclasses.replace(e, name="again", value=dataclasses.replace(e.value))
    with pytest.raises(SpecError, match=r"again: two IR nodes share uid \d+ \(C\(s\[t\+1\]\) \+ lam\*sq_dist"):
        ebmgraph.check(dataclasses.replace(g, energies=(e, copy)))


# ----------------------------------------------------------------------------- (c) equality ignores uids
def test_equality_hashing_and_repr_ignore_uids():
    a = ir.BinOp("+", ir.Call("C", (ir.Ref("s", None),)), ir.Neg(ir.Num(2.0)))
    b = ir.BinOp("+", ir.Call("C", (ir.Ref("s", None),)), ir.Neg(ir.Num(2.0)))
    assert a.uid != b.uid and a == b and hash(a) == hash(b) and repr(a) == repr(b)
    for n in ir.walk(a):
        other = dataclasses.replace(n, uid=n.uid + 10**9)
        assert other == n and hash(other) == hash(n) and repr(other) == repr(n)
        assert "uid" not in repr(n)
    assert ir.Call("C", (ir.Ref("s"),)) != ir.Call("D", (ir.Ref("s"),))  # the other fields still count
    g1, g2 = ebmgraph.loads(STEPS), ebmgraph.loads(STEPS)
    assert g1 == g2 and hash(g1) == hash(g2) and ir.pretty(g1) == ir.pretty(g2)
    assert g1.energies[0].value.uid != g2.energies[0].value.uid


# ----------------------------------------------------------------------------- found on the way
@pytest.mark.parametrize("name", ["pendulum_jepa_mpc", "pointmaze_pixels_flat"])
def test_explain_says_why_a_goal_computed_by_a_function_is_not_fused(name):
    """``sq_dist(s[t+1], z_goal)`` with ``z_goal`` an encoder's output (no declared variable): the fused-kernel
    analysis says no, with its reason (it raised a TypeError building a placeholder ``Var``)."""
    ebm = ebmgraph.compile(ROOT / "examples" / "specs" / f"{name}.yaml", seed=0)
    fr, why = analyze_fused(ebm.checked, ebm.rollouts)
    assert fr is None and why.endswith("per-step terms must be quadratic(s) or sq_dist(s, goal)")
    assert f"(ebmgraph.fused): no: {why}" in ebm.explain()
