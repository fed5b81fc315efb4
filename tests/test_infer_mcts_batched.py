"""The batched tensor-tree MCTS makes the choices of the per-problem reference search (issues 14, 27).

:class:`~ebmgraph.infer.mcts.MCTS` (the tree as ``[B, N]`` tensors, one simulation function for all B
problems) and the oracle in tests/mcts_oracle.py (a numpy tree per problem, Python loops, every
sequence re-scored from ``s[0]``) run the same algorithm on the same random numbers, so on seeded
problems they must agree exactly: the same answer, the same energy, the same visit counts at the root
and the same number of nodes grown — under UCT, under PUCT with a policy prior, with a critic, with
chance nodes, and over several searches of one tree. The Potts problems here are not step-wise (a
pair term reads two actions), so they exercise the re-scoring path; stored states are compared with
the oracle in tests/test_mcts_state.py. The strength of the search against value-blind baselines and
batched-equals-alone are in tests/test_infer_mcts_strength.py.
"""
from __future__ import annotations

import pytest
import torch

import ebmgraph
from ebmgraph import minimize
from ebmgraph.infer import MCTS

from mcts_oracle import OracleMCTS
from test_infer_mcts_strength import potts, problems

CHANCE = """
name: chance
index: {t: 0..T-1}
sizes: {T: 3}
variables:
  a[t]: {action: discrete, values: 3}
  w: {latent: discrete, values: 3, sampled: true}
modules:
  C: mlp(12, 8, 1)
  Rw: discrete(3)
energy:
  C: C(a[0], a[1], a[2], w)
  R: Rw(w)
"""


def same(a, o, name="z"):
    """The tensor search ``a`` and the oracle ``o`` agree exactly."""
    ra, ro = a.answer(), o.answer()
    assert torch.equal(ra.values[name], ro["values"])
    torch.testing.assert_close(ra.energy, ro["energy"].to(ra.energy.dtype), rtol=0, atol=0)
    assert torch.equal(ra.info["root_visits"].long(), ro["root_visits"].long())
    assert torch.equal(ra.info["action"], ro["action"])
    assert torch.equal(a.tree.size, ro["size"])


@pytest.mark.parametrize("L,K,c,sims", [(6, 3, 1.4, 120), (8, 4, 0.3, 200), (5, 2, 0.7, 80)])
def test_uct_same_choices(L, K, c, sims):
    ebm = potts(L, K)
    x = problems(7, L, K, seed=L + K)
    a = MCTS(ebm, {"x": x}, ["z"], c=c, seed=4, compile=False)
    o = OracleMCTS(ebm, {"x": x}, ["z"], c=c, seed=4)
    a.search(sims)
    o.search(sims)
    same(a, o)
    assert a.stepwise is None  # the re-scoring path
    # the answers differ between problems (the comparison is not between constants)
    assert len({tuple(r.tolist()) for r in a.answer().values["z"]}) > 1


def _policy(observed, prefix, depth):
    """A prior that prefers the action matching the observation at the next step (depends on both)."""
    x = observed["x"]  # [B, L, K]
    d = torch.as_tensor(depth).clamp_max(x.shape[1] - 1)
    return torch.softmax(-((x[torch.arange(len(d)), d] - 1.0) ** 2) * 2.0, -1) + 0.05 * (prefix >= 0).sum(1,
                                                                                                       keepdim=True)


def _critic(observed, prefix, depth):
    """-E estimate of a prefix: minus its own unary cost, zero for the undecided rest."""
    x = observed["x"]
    L, K = x.shape[1], x.shape[2]
    oh = torch.nn.functional.one_hot(prefix.clamp_min(0), K).double()
    cost = ((x - oh) ** 2).sum(-1) * (prefix >= 0)
    return -cost.sum(1)


@pytest.mark.parametrize("kw", [{"policy": _policy}, {"critic": _critic}, {"policy": _policy, "critic": _critic}])
def test_puct_and_critic_same_choices(kw):
    L, K = 6, 3
    ebm = potts(L, K)
    x = problems(5, L, K, seed=11)
    a = MCTS(ebm, {"x": x}, ["z"], c=1.0, seed=2, **kw)
    o = OracleMCTS(ebm, {"x": x}, ["z"], c=1.0, seed=2, **kw)
    a.search(150)
    o.search(150)
    same(a, o)
    n = int(a.tree.size.max())
    torch.testing.assert_close(a.tree.prior[:, :n], torch.as_tensor(o.prior)[:, :n], rtol=1e-12, atol=0)


def test_chance_nodes_same_choices():
    ebm = ebmgraph.compile(CHANCE, seed=1).double()
    ebm.mods["Rw"].r.data = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    a = MCTS(ebm, {}, ["a"], sample=["w"], batch=2, seed=5)
    o = OracleMCTS(ebm, {}, ["a"], sample=["w"], batch=2, seed=5)
    a.search(200)
    o.search(200)
    same(a, o, "a")
    assert a.stepwise is None


def test_later_searches_continue_the_tree():
    """Three searches of one tree: after each the oracle's tree (continued the same way) agrees."""
    L, K = 6, 3
    ebm = potts(L, K)
    x = problems(4, L, K, seed=3)
    a = MCTS(ebm, {"x": x}, ["z"], c=0.5, seed=9)
    o = OracleMCTS(ebm, {"x": x}, ["z"], c=0.5, seed=9)
    for _ in range(3):
        a.search(60)
        o.search(60)
        same(a, o)
    assert a.answer().info["simulations"] == 180


def test_minimize_mcts_is_the_search_and_impl_is_refused():
    L, K = 7, 3
    ebm = potts(L, K)
    x = problems(6, L, K, seed=0)
    t = minimize(ebm, {"x": x}, over=["z"], method="mcts", simulations=90, seed=1)
    o = OracleMCTS(ebm, {"x": x}, ["z"], seed=1)
    o.search(90)
    assert torch.equal(t.values["z"], o.answer()["values"])
    with pytest.raises(ebmgraph.SpecError, match="impl"):  # one implementation: the per-problem one is an oracle
        minimize(ebm, {"x": x}, over=["z"], method="mcts", simulations=5, impl="loop")
    assert not hasattr(MCTS, "advance")  # the agent plans each decision from a new tree (issue 27)


def test_tree_grows_past_its_first_capacity():
    """More simulations than the preallocated 256 nodes: the tree grows and stays consistent."""
    L, K = 6, 3
    ebm = potts(L, K)
    x = problems(2, L, K, seed=8)
    a = MCTS(ebm, {"x": x}, ["z"], seed=0)
    o = OracleMCTS(ebm, {"x": x}, ["z"], seed=0)
    for _ in range(3):
        a.search(150)
        o.search(150)
    assert int(a.tree.size.max()) > 256 and a.tree.visits.shape[1] == 512  # capacities are powers of two
    same(a, o)
    t = a.tree
    # every node's visits equal the sum of its children's visits plus the simulations that ended there
    n = int(t.size.max())
    for p in range(2):
        for node in range(1, int(t.size[p])):
            par = int(t.parent[p, node])
            assert 0 <= par < node < n
            assert int(t.depth[p, node]) == int(t.depth[p, par]) + 1
