"""The batched tensor-tree MCTS makes the choices of the per-problem reference search (issue 14).

:class:`~ebmgraph.infer.mcts.MCTS` (the tree as ``[B, N]`` tensors, one vectorised select /
expand / backward per simulation) and :class:`~ebmgraph.infer.mcts_loop.LoopMCTS` (the tree in
numpy, problem by problem in Python) run the same algorithm on the same random numbers, so on
seeded problems they must agree exactly: the same answer, the same energy, the same visit counts
at the root and the same number of nodes grown — under UCT, under PUCT with a policy prior, with a
critic, with chance nodes, and across tree reuse. The strength of the search against value-blind
baselines and batched-equals-alone are in tests/test_infer_mcts_strength.py (they run the default,
batched implementation).
"""
from __future__ import annotations

import pytest
import torch

import ebmgraph
from ebmgraph import minimize
from ebmgraph.infer import MCTS
from ebmgraph.infer.mcts_loop import LoopMCTS

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


def _same(a, b):
    ra, rb = a.answer(), b.answer()
    assert torch.equal(ra.values["z"] if "z" in ra.values else ra.values["a"],
                       rb.values["z"] if "z" in rb.values else rb.values["a"])
    torch.testing.assert_close(ra.energy, rb.energy, rtol=0, atol=0)
    torch.testing.assert_close(ra.info["root_visits"].double(), rb.info["root_visits"].double(), rtol=0, atol=0)
    assert torch.equal(ra.info["action"], rb.info["action"])
    assert [int(s) for s in a.tree.size] == [int(s) for s in b.tree.size]


@pytest.mark.parametrize("L,K,c,sims", [(6, 3, 1.4, 120), (8, 4, 0.3, 200), (5, 2, 0.7, 80)])
def test_uct_same_choices(L, K, c, sims):
    ebm = potts(L, K)
    x = problems(7, L, K, seed=L + K)
    a = MCTS(ebm, {"x": x}, ["z"], c=c, seed=4)
    b = LoopMCTS(ebm, {"x": x}, ["z"], c=c, seed=4)
    a.search(sims)
    b.search(sims)
    _same(a, b)
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
    b = LoopMCTS(ebm, {"x": x}, ["z"], c=1.0, seed=2, **kw)
    a.search(150)
    b.search(150)
    _same(a, b)
    torch.testing.assert_close(a.tree.prior[:, :int(a.tree.size.max())],
                               torch.as_tensor(b.tree.prior)[:, :int(a.tree.size.max())], rtol=1e-12, atol=0)


def test_chance_nodes_same_choices():
    ebm = ebmgraph.compile(CHANCE, seed=1).double()
    ebm.mods["Rw"].r.data = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    a = MCTS(ebm, {}, ["a"], sample=["w"], batch=2, seed=5)
    b = LoopMCTS(ebm, {}, ["a"], sample=["w"], batch=2, seed=5)
    ra, rb = a.search(200), b.search(200)
    assert torch.equal(ra.values["a"], rb.values["a"])
    torch.testing.assert_close(ra.energy, rb.energy, rtol=0, atol=0)
    torch.testing.assert_close(ra.info["root_visits"].double(), rb.info["root_visits"].double(), rtol=0, atol=0)


def test_tree_reuse_same_choices():
    L, K = 6, 3
    ebm = potts(L, K)
    x = problems(4, L, K, seed=3)
    a = MCTS(ebm, {"x": x}, ["z"], c=0.5, seed=9)
    b = LoopMCTS(ebm, {"x": x}, ["z"], c=0.5, seed=9)
    for step in range(3):
        ra, rb = a.search(60), b.search(60)
        _same(a, b)
        first = ra.values["z"][:, step]
        a.advance(first)
        b.advance(first)
    _same(a, b)


def test_minimize_impls_agree_and_impl_is_checked():
    L, K = 7, 3
    ebm = potts(L, K)
    x = problems(6, L, K, seed=0)
    t = minimize(ebm, {"x": x}, over=["z"], method="mcts", simulations=90, seed=1)
    lp = minimize(ebm, {"x": x}, over=["z"], method="mcts", simulations=90, seed=1, impl="loop")
    assert torch.equal(t.values["z"], lp.values["z"])
    torch.testing.assert_close(t.energy, lp.energy, rtol=0, atol=0)
    with pytest.raises(ebmgraph.SpecError, match="impl"):
        minimize(ebm, {"x": x}, over=["z"], method="mcts", simulations=5, impl="numba")


def test_tree_grows_past_its_first_capacity():
    """More simulations than the preallocated 256 nodes: the tree grows and stays consistent."""
    L, K = 6, 3
    ebm = potts(L, K)
    x = problems(2, L, K, seed=8)
    a = MCTS(ebm, {"x": x}, ["z"], seed=0)
    b = LoopMCTS(ebm, {"x": x}, ["z"], seed=0)
    for _ in range(3):
        a.search(150)
        b.search(150)
    assert int(a.tree.size.max()) > 256
    _same(a, b)
    t = a.tree
    # every node's visits equal the sum of its children's visits plus the simulations that ended there
    n = int(t.size.max())
    for p in range(2):
        for node in range(1, int(t.size[p])):
            par = int(t.parent[p, node])
            assert 0 <= par < node < n
            assert int(t.depth[p, node]) == int(t.depth[p, par]) + 1
