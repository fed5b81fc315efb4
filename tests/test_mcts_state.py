"""Nodes keep their predicted state (issue 27): one predictor step per expansion, as mctx keeps embeddings.

* :func:`~ebmgraph.infer.stepwise.analyze_stepwise` accepts a spec with one recurrence over the searched
  array and per-step energy terms (also a terminal term, a term reading ``s[t]`` and ``a[t]``, observed
  per-step inputs, constants), and says why the others do not fit.
* The states and prefix energies stored in the tree equal what re-scoring each node's prefix from
  ``s[0]`` through the generated forward gives (``evaluate(outputs=["s[d]"])``, ``energy``), and the values
  backed up equal the oracle's, which re-scores every completed sequence (tests/mcts_oracle.py); the
  search makes the oracle's choices.
* Counted with a forward hook on the predictor: at depth 16 a search makes one predictor call per
  expansion plus the completion's ``L − d`` steps from the stored state (re-scoring made ``L`` per
  simulation), and exactly one per simulation with a critic.
"""
from __future__ import annotations

import pytest
import torch

import ebmgraph
from ebmgraph.infer import MCTS
from ebmgraph.infer.stepwise import analyze_stepwise

from mcts_oracle import OracleMCTS

RICH = """
name: rich
index: {t: 0..T-1, u: 0..T}
sizes: {T: 5}
weights: {lam: 0.3}
variables:
  x: {observed: [3]}
  g: {observed: [3]}
  w[t]: {observed: [2]}
  a[t]: {action: discrete, values: 3}
modules:
  Enc: mlp(3, 8, 3)
  Pred: mlp(8, 16, 3, act=tanh, residual=true)
  C: fixed(quadratic(3))
  V: mlp(3, 8, 1)
  Ca: mlp(6, 8, 1)
functions:
  s[0]: Enc(x)
  s[t+1]: Pred(s[t], a[t], w[t])
energy:
  cost[t]: C(s[t+1]) + lam * sq_dist(s[t+1], g)
  act[t]: 0.1 * Ca(s[t], a[t])
  held[u]: 0.05 * C(s[u])
  V: V(s[T])
  prior: 0.2 * sq_dist(x, g)
"""
CHAIN = """
name: chain
index: {t: 0..T-1}
sizes: {T: %d}
variables:
  x: {observed: [4]}
  a[t]: {action: discrete, values: %d}
modules:
  Pred: mlp(%d, 32, 4, act=tanh, residual=true)
  C: fixed(quadratic(4))
functions:
  s[0]: identity(x)
  s[t+1]: Pred(s[t], a[t])
energy:
  cost[t]: C(s[t+1])
"""
HEAD = """
name: misfit
index: {t: 0..T-1, v: 0..T-2}
sizes: {T: 4}
variables:
  x: {observed: [4]}
  a[t]: {action: discrete, values: 3}
modules:
  Pred: mlp(7, 16, 4, act=tanh, residual=true)
  C: fixed(quadratic(4))
functions:
  s[0]: identity(x)
"""
MISFITS = {
    "pair": (HEAD + "  s[t+1]: Pred(s[t], a[t])\nenergy:\n  cost[t]: C(s[t+1])\n  smooth[v]: sq_dist(a[v], a[v+1])\n",
             "reads a[0] at step 1"),
    "derived": (HEAD.replace("  C:", "  D: mlp(4, 8, 4)\n  C:") + "  s[t+1]: Pred(s[t], a[t])\n  r[t]: D(s[t+1])\n"
                "energy:\n  cost[t]: C(r[t])\n",
                "r[0] is computed from a outside the recurrence"),
    "two": (HEAD.replace("  C:", "  P2: mlp(7, 16, 4)\n  C:") + "  s[t+1]: Pred(s[t], a[t])\n  q[0]: identity(x)\n"
            "  q[t+1]: P2(q[t], a[t])\nenergy:\n  cost[t]: C(s[t+1]) + C(q[t+1])\n", "2 recurrences read a"),
    "none": (HEAD + "energy:\n  cost[t]: C(s[0]) + sq_dist(a[t], a[t])\n", "no recurrence"),
}


def rich(dtype=torch.float64):
    return ebmgraph.compile(RICH, seed=0).to(dtype)


def rich_obs(B, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(B, 3, generator=g).to(dtype), "g": torch.randn(B, 3, generator=g).to(dtype),
            "w": torch.randn(B, 5, 2, generator=g).to(dtype)}


def chain(L, K, dtype=torch.float64):
    ebm = ebmgraph.compile(CHAIN % (L, K, 4 + K), seed=1).to(dtype)
    with torch.no_grad():
        ebm.mods["C"].goal.copy_(torch.tensor([1.0, -1.0, 0.5, 0.0]))
        ebm.mods["Pred"].net[-1].weight.mul_(3.0)
    return ebm


def prefixes(t, b):
    """``{node: its actions}`` of problem ``b``'s tree, read from the children table."""
    out = {0: []}
    for node in range(1, int(t.size[b])):
        par = int(t.parent[b, node])
        out[node] = out[par] + [int((t.children[b, par] == node).nonzero())]
    return out


def test_the_analysis_says_what_fits_and_why_not():
    ebm = rich()
    sw, why = analyze_stepwise(ebm.checked, ebm.rollouts, "a")
    assert why == "fits"
    assert [(x.name, x.delta, x.lo, x.hi) for x in sw.terms] == [("cost", 0, 0, 4), ("act", 0, 0, 4),
                                                                ("held", -1, 1, 5), ("V", 4, 0, 0)]
    assert sw.constant == ("energy:held[0]", "energy:prior") and sw.needs == ("g", "w")
    for name, (src, reason) in MISFITS.items():
        m = ebmgraph.compile(src, seed=0)
        sw, why = analyze_stepwise(m.checked, m.rollouts, "a")
        assert sw is None and reason in why, (name, why)
    chance = ebmgraph.compile(CHAIN.replace("  a[t]:", "  w: {latent: discrete, values: 2, sampled: true}\n  a[t]:")
                              .replace("Pred(s[t], a[t])", "Pred(s[t], a[t], w)") % (3, 2, 8))
    sw, why = analyze_stepwise(chance.checked, chance.rollouts, "a", chance=("w",))
    assert sw is None and "chance latent" in why


def test_stored_states_and_energies_equal_rescoring_and_the_oracle_agrees():
    ebm, obs = rich(), rich_obs(4, seed=3)
    a = MCTS(ebm, obs, ["a"], c=1.0, seed=2, compile=False)
    o = OracleMCTS(ebm, obs, ["a"], c=1.0, seed=2)
    ra, ro = a.search(150), o.search(150)
    assert a.stepwise is not None and ra.info["stored_states"]
    assert torch.equal(ra.values["a"], ro["values"]) and torch.equal(ra.info["root_visits"].long(), ro["root_visits"])
    assert torch.equal(a.tree.size, ro["size"])
    n = int(a.tree.size.max())
    # every completion's energy, backed up: equal to re-scoring the whole sequence from s[0]
    torch.testing.assert_close(a.tree.value_sum[:, :n], torch.as_tensor(o.value_sum)[:, :n], rtol=1e-12, atol=1e-12)
    const = a._ctx[1]
    full = 0
    for b in range(4):
        for node, pre in prefixes(a.tree, b).items():
            seq = torch.tensor([pre + [0] * (5 - len(pre))])
            one = {k: v[b:b + 1] for k, v in obs.items()}
            s = ebm.evaluate({**one, "a": seq}, outputs=[f"s[{len(pre)}]"])[f"s[{len(pre)}]"]
            torch.testing.assert_close(a.tree.state[b, node], s[0], rtol=1e-12, atol=1e-12)
            if len(pre) == 5:  # a whole sequence: its stored energy is the model's energy
                full += 1
                E = ebm.energy(**one, a=seq).total[0]
                torch.testing.assert_close(a.tree.acc[b, node] + const[b], E, rtol=1e-12, atol=1e-12)
    assert full > 0


def test_stored_energies_in_float32_equal_rescoring_to_float32_precision():
    ebm, obs = rich(torch.float32), rich_obs(3, seed=5, dtype=torch.float32)
    a = MCTS(ebm, obs, ["a"], seed=1, compile=False)
    a.search(120)
    for b in range(3):
        for node, pre in prefixes(a.tree, b).items():
            if len(pre) == 5:
                with torch.no_grad():
                    E = ebm.energy(**{k: v[b:b + 1] for k, v in obs.items()}, a=torch.tensor([pre])).total[0]
                assert abs(float(a.tree.acc[b, node] + a._ctx[1][b]) - float(E)) <= 1e-5 * max(1.0, abs(float(E)))


def _count_calls(module):
    calls = []
    return calls, module.register_forward_hook(lambda m, args, out: calls.append(out.shape[0]))


def test_depth_16_one_predictor_call_per_expansion():
    """B = 1 and B = 3 (one call serves the batch). Re-scoring made 16 calls per simulation."""
    L, sims = 16, 60
    for B in (1, 3):
        ebm = chain(L, 2)
        x = torch.randn(B, 4, generator=torch.Generator().manual_seed(B)).double()
        calls, h = _count_calls(ebm.mods["Pred"])
        m = MCTS(ebm, {"x": x}, ["a"], seed=0, compile=False)
        calls.clear()
        m.search(sims)
        h.remove()
        # the answer scores the start and the best sequence once, [2B] rows: L calls
        assert sorted(set(calls)) == [B, 2 * B] and calls.count(2 * B) == L
        assert (m.tree.size == sims + 1).all()  # every simulation expanded one node
        d = m.tree.depth[:, 1:sims + 1]  # the node each simulation created, in order
        # one step into the node, then the completion from its stored state: 1 + (L - d) per simulation
        # (batched, the completion runs from the shallowest leaf of the simulation)
        assert calls.count(B) == int((1 + L - d.min(0).values).sum()) < sims * L
        # with a critic: exactly one predictor call per simulation
        crit_calls, h = _count_calls(ebm.mods["Pred"])
        C = ebm.mods["C"]

        def critic(obs, prefix, depth, state, energy):  # the stay-put value from the stored state
            return -(energy + (L - depth).double() * C(state).reshape(-1))

        m = MCTS(ebm, {"x": x}, ["a"], seed=0, compile=False, critic=critic)
        crit_calls.clear()
        m.search(sims)
        h.remove()
        assert (m.tree.size == sims + 1).all() and crit_calls.count(B) == sims and len(crit_calls) == sims + L


def test_a_critic_reading_the_stored_state_matches_one_that_re_scores_the_prefix():
    """The stay-put critic from the stored state and energy, and the same critic computed by re-scoring
    each prefix from s[0] in the oracle: the same choices and the same backed-up values."""
    L, K = 6, 3
    ebm = chain(L, K)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(7)).double()
    C = ebm.mods["C"]

    def stored(obs, prefix, depth, state, energy):
        return -(energy + (L - depth).double() * C(state).reshape(-1))

    def rescored(obs, prefix, depth):
        seq = prefix.clamp_min(0)
        with torch.no_grad():
            out = ebm.evaluate({**obs, "a": seq}, outputs=["s", "energy:cost"])
            steps = ebm.energy(**obs, a=seq).steps["cost"]
        d = torch.as_tensor(depth)
        s = out["s"][torch.arange(len(d)), d]
        done = (torch.arange(L)[None] < d[:, None]).double()
        return -((steps.double() * done).sum(1) + (L - d).double() * C(s).reshape(-1))

    a = MCTS(ebm, {"x": x}, ["a"], seed=3, critic=stored, compile=False)
    o = OracleMCTS(ebm, {"x": x}, ["a"], seed=3, critic=rescored)
    ra, ro = a.search(120), o.search(120)
    assert torch.equal(ra.values["a"], ro["values"]) and torch.equal(ra.info["root_visits"].long(), ro["root_visits"])
    n = int(a.tree.size.max())
    torch.testing.assert_close(a.tree.value_sum[:, :n], torch.as_tensor(o.value_sum)[:, :n], rtol=1e-12, atol=1e-12)
    blind = MCTS(ebm, {"x": x}, ["a"], seed=3, compile=False)
    blind.search(120)
    assert not torch.equal(blind.tree.value_sum, a.tree.value_sum)  # the critic is used


def test_a_critic_asking_for_state_on_a_spec_without_one_is_refused():
    from test_infer_mcts_strength import potts, problems

    ebm = potts(4, 3)
    with pytest.raises(ebmgraph.SpecError, match="keeps no state per node: no recurrence"):
        MCTS(ebm, {"x": problems(2, 4, 3, seed=0)}, ["z"], critic=lambda obs, prefix, depth, state: -depth.double())
