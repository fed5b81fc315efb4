"""The reference MCTS: the per-problem Python search over a numpy tree (§4.8, Figure 17).

The same algorithm as :class:`~ebmgraph.infer.mcts.MCTS` — select, expand, evaluate, backward
with the same UCT/PUCT scores, rollouts, chance draws and answer — with selection and backup
run problem by problem in Python. It is kept as the oracle the batched tensor tree is tested
against (the same choices on the same seed) and as the baseline of ``ebmgraph bench planners``;
``minimize(method="mcts", impl="loop")`` runs it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SpecError
from .core import MinimizeResult
from .mcts import MCTS


@dataclass
class LoopTree:
    """Search state for B problems. Node 0 is the first root; ``-1`` marks no child."""

    children: np.ndarray  # [B, N, K] int
    parent: np.ndarray  # [B, N] int
    visits: np.ndarray  # [B, N] float
    value_sum: np.ndarray  # [B, N] float (sum of -E)
    prior: np.ndarray  # [B, N, K] float
    prefix: np.ndarray  # [B, N, L] int (decided actions; -1 undecided)
    depth: np.ndarray  # [B, N] int
    size: np.ndarray  # [B] int: nodes used
    root: np.ndarray  # [B] int


def new_loop_tree(B: int, capacity: int, K: int, L: int) -> LoopTree:
    return LoopTree(np.full((B, capacity, K), -1), np.full((B, capacity), -1), np.zeros((B, capacity)),
                np.zeros((B, capacity)), np.full((B, capacity, K), 1.0 / K), np.full((B, capacity, L), -1),
                np.zeros((B, capacity), dtype=int), np.ones(B, dtype=int), np.zeros(B, dtype=int))


def _grow(t: LoopTree, need: int) -> LoopTree:
    cap = t.visits.shape[1]
    if need <= cap:
        return t
    extra = max(need - cap, cap)

    def pad(a, fill):
        shape = list(a.shape)
        shape[1] = extra
        return np.concatenate([a, np.full(shape, fill, dtype=a.dtype)], 1)

    K = t.children.shape[2]
    return LoopTree(pad(t.children, -1), pad(t.parent, -1), pad(t.visits, 0), pad(t.value_sum, 0),
                pad(t.prior, 1.0 / K), pad(t.prefix, -1), pad(t.depth, 0), t.size, t.root)


def select_one(t: LoopTree, b: int, L: int, c: float, puct: bool, lo: float, hi: float) -> tuple[list[int], int | None]:
    """Descend from the root of problem ``b``; return the path and the action to expand (None: leaf)."""
    node = int(t.root[b])
    path = [node]
    span = max(hi - lo, 1e-12)
    while t.depth[b, node] < L:
        ch = t.children[b, node]
        n_parent = t.visits[b, node]
        vis = np.where(ch >= 0, t.visits[b, np.maximum(ch, 0)], 0.0)
        q = np.where(vis > 0, (t.value_sum[b, np.maximum(ch, 0)] / np.maximum(vis, 1) - lo) / span, 0.0)
        if puct:
            score = q + c * t.prior[b, node] * math.sqrt(max(n_parent, 1.0)) / (1.0 + vis)
            score = np.where(ch >= 0, score, c * t.prior[b, node] * math.sqrt(max(n_parent, 1.0)) + 0.5)
            a = int(np.argmax(score))
        else:
            if (ch < 0).any():
                return path, int(np.flatnonzero(ch < 0)[0])
            a = int(np.argmax(q + c * np.sqrt(math.log(max(n_parent, 1.0)) / vis)))
        if ch[a] < 0:
            return path, a
        node = int(ch[a])
        path.append(node)
    return path, None


def expand_one(t: LoopTree, b: int, node: int, a: int) -> int:
    new = int(t.size[b])
    t.size[b] += 1
    t.children[b, node, a] = new
    t.parent[b, new] = node
    t.depth[b, new] = t.depth[b, node] + 1
    t.prefix[b, new] = t.prefix[b, node]
    t.prefix[b, new, t.depth[b, node]] = a
    return new


def backward_one(t: LoopTree, b: int, path: list[int], value: float) -> None:
    for n in path:
        t.visits[b, n] += 1
        t.value_sum[b, n] += value


class LoopMCTS(MCTS):
    """:class:`~ebmgraph.infer.mcts.MCTS` with the tree in numpy and selection/backup per problem."""

    def __init__(self, *args, compile: bool | str = False, **kw):
        if compile:
            raise SpecError(f"MCTS impl='loop' is the per-problem reference and runs eagerly; compile={compile!r} "
                            f"applies to impl='tensor'")
        super().__init__(*args, **kw)

    def _new_state(self):
        self.tree = new_loop_tree(self.B, 256, self.K, self.L)
        self.best = np.full(self.B, np.inf)
        self.best_seq = np.zeros((self.B, self.L), dtype=int)
        self.lo, self.hi = np.full(self.B, np.inf), np.full(self.B, -np.inf)

    def _offer(self, seqs, E, mask=None):
        seqs, E = np.asarray(torch.as_tensor(seqs).cpu()), np.asarray(torch.as_tensor(E).cpu(), dtype=float)
        better = E < self.best
        self.best = np.where(better, E, self.best)
        self.best_seq = np.where(better[:, None], seqs, self.best_seq)

    def search(self, simulations: int = 200) -> MinimizeResult:
        """Run ``simulations`` more simulations and return the current answer."""
        t, B, L, K = self.tree, self.B, self.L, self.K
        self.tree = t = _grow(t, int(t.size.max()) + simulations + 1)
        for _ in range(simulations):
            leaves, paths = np.zeros((B, L), dtype=int), []
            for b in range(B):
                path, a = select_one(t, b, L, self.c, self.policy is not None, self.lo[b], self.hi[b])
                if a is not None:
                    path.append(expand_one(t, b, path[-1], a))
                paths.append(path)
                leaves[b] = t.prefix[b, path[-1]]
            depth = np.array([t.depth[b, p[-1]] for b, p in enumerate(paths)])
            undecided = leaves < 0
            if self.policy is not None:
                with torch.no_grad():
                    pr = self.policy(self.prob.observed, torch.as_tensor(leaves), depth).detach().cpu().numpy()
                for b, p in enumerate(paths):
                    t.prior[b, p[-1]] = pr[b] / pr[b].sum()
            # one random completion per simulation, shared by all problems (batched equals alone)
            roll = np.broadcast_to(torch.randint(0, K, (1, L), generator=self.gen).numpy(), (B, L))
            seqs = np.where(undecided, roll, leaves)
            if self.critic is not None and undecided.any():
                with torch.no_grad():
                    v = self.critic(self.prob.observed, torch.as_tensor(leaves), depth).detach().cpu().numpy()
                E = -v
                full = ~undecided.any(1)
                if full.any():
                    E = np.where(full, self._energy(seqs, self._draw()).cpu().double().numpy(), E)
            else:
                E = self._energy(seqs, self._draw()).cpu().double().numpy()
            for b, path in enumerate(paths):
                backward_one(t, b, path, -E[b])
                self.lo[b], self.hi[b] = min(self.lo[b], -E[b]), max(self.hi[b], -E[b])
                if not self.sample and E[b] < self.best[b] and (self.critic is None or not undecided[b].any()):
                    self.best[b], self.best_seq[b] = E[b], seqs[b]
        self.simulations_done += simulations
        return self.answer()

    def _greedy(self) -> np.ndarray:
        t, out = self.tree, np.zeros((self.B, self.L), dtype=int)
        for b in range(self.B):
            node = int(t.root[b])
            seq = t.prefix[b, node].copy()
            while t.depth[b, node] < self.L:
                ch = t.children[b, node]
                vis = np.where(ch >= 0, t.visits[b, np.maximum(ch, 0)], -1)
                if vis.max() <= 0:
                    break
                node = int(ch[int(np.argmax(vis))])
                seq = t.prefix[b, node].copy()
            out[b] = np.where(seq < 0, 0, seq)
        return out

    def _root_visits(self) -> torch.Tensor:
        t = self.tree
        return torch.as_tensor(np.stack([np.where(t.children[b, t.root[b]] >= 0,
                                                  t.visits[b, np.maximum(t.children[b, t.root[b]], 0)], 0)
                                         for b in range(self.B)]))

    def advance(self, action) -> None:
        """Commit the next action per problem (``[B]`` ints) and re-root there, keeping the subtree."""
        action = np.asarray(torch.as_tensor(action).cpu()).reshape(self.B)
        t = self.tree
        for b in range(self.B):
            r = int(t.root[b])
            if t.depth[b, r] >= self.L:
                raise SpecError("every action is already committed")
            ch = t.children[b, r, action[b]]
            if ch < 0:
                ch = expand_one(t, b, r, int(action[b]))
            t.root[b] = ch
            if not self.sample and self.best_seq[b, t.depth[b, r]] != action[b]:
                self.best[b] = np.inf  # the best sequence is no longer reachable
        self.lo[:], self.hi[:] = np.inf, -np.inf
        for b in range(self.B):  # rebuild the value range from the kept subtree
            r = int(t.root[b])
            if t.visits[b, r] > 0:
                q = t.value_sum[b, r] / t.visits[b, r]
                self.lo[b], self.hi[b] = q, q

