"""Monte-Carlo tree search over time-indexed discrete actions (§4.8, §5, Figure 17).

The tree is explicit state (:class:`Tree`, arrays over ``[B, nodes]``) and the search is
plain functions over it — select → expand/evaluate → backward — run for all B problems
in lock-step, so each simulation evaluates the model once on a ``[B]`` batch.

* Selection: UCT on min-max normalised values, or PUCT when a ``policy`` gives priors.
* Evaluation of a new node: ``-E`` of the prefix completed by a random rollout (or by
  the policy's most likely actions), or a ``critic`` estimate when given.
* Chance nodes: latents marked ``sampled: true`` are drawn at the end of each simulated
  trajectory from their Gibbs distribution ``P(z) ∝ exp(−R(z))`` (eq. 23), so node values
  estimate the expected energy; the reported energy is then the exact expectation.
* Answer: the best complete sequence simulated or the start (``init``, else all zeros) when
  that is lower (deterministic energies), or the most visited path completed greedily (with
  chance nodes).
* Randomness: each simulation's rollout completion and chance draws are shared by all B
  problems (common random numbers), so a problem searched in a batch gives the answer it
  gives alone.
* Tree reuse: :meth:`MCTS.advance` commits ``a[d]`` and re-roots at that child; later
  searches keep its statistics (a shrinking horizon, as in a game tree).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import ir
from ..errors import SpecError
from ..util import as_generator
from .core import MinimizeResult, Problem, initial_values
from .gibbs import gibbs_draws, gibbs_energy


@dataclass
class Tree:
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


def new_tree(B: int, capacity: int, K: int, L: int) -> Tree:
    return Tree(np.full((B, capacity, K), -1), np.full((B, capacity), -1), np.zeros((B, capacity)),
                np.zeros((B, capacity)), np.full((B, capacity, K), 1.0 / K), np.full((B, capacity, L), -1),
                np.zeros((B, capacity), dtype=int), np.ones(B, dtype=int), np.zeros(B, dtype=int))


def _grow(t: Tree, need: int) -> Tree:
    cap = t.visits.shape[1]
    if need <= cap:
        return t
    extra = max(need - cap, cap)

    def pad(a, fill):
        shape = list(a.shape)
        shape[1] = extra
        return np.concatenate([a, np.full(shape, fill, dtype=a.dtype)], 1)

    K = t.children.shape[2]
    return Tree(pad(t.children, -1), pad(t.parent, -1), pad(t.visits, 0), pad(t.value_sum, 0),
                pad(t.prior, 1.0 / K), pad(t.prefix, -1), pad(t.depth, 0), t.size, t.root)


def select(t: Tree, b: int, L: int, c: float, puct: bool, lo: float, hi: float) -> tuple[list[int], int | None]:
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


def expand(t: Tree, b: int, node: int, a: int) -> int:
    new = int(t.size[b])
    t.size[b] += 1
    t.children[b, node, a] = new
    t.parent[b, new] = node
    t.depth[b, new] = t.depth[b, node] + 1
    t.prefix[b, new] = t.prefix[b, node]
    t.prefix[b, new, t.depth[b, node]] = a
    return new


def backward(t: Tree, b: int, path: list[int], value: float) -> None:
    for n in path:
        t.visits[b, n] += 1
        t.value_sum[b, n] += value


class MCTS:
    """UCT/PUCT search that minimizes the energy over a discrete action array ``a[t]``.

    Args:
        ebm: compiled model; ``over`` must be one time-indexed discrete action/latent.
        observed: ``{name: [B, ...]}`` for the observed variables.
        sample: latents treated as chance nodes (default: those marked ``sampled: true``).
        policy: optional ``policy(observed, prefix [B, L] (-1 undecided), depth) -> [B, K]`` priors (PUCT).
        critic: optional ``critic(observed, prefix, depth) -> [B]`` estimate of ``-E`` replacing rollouts.
        c: exploration constant.
        generator: randomness of rollouts and chance draws.
    """

    def __init__(self, ebm, observed: dict | None, over, *, sample=(), policy=None, critic=None, c: float = 1.4,
                 generator: torch.Generator | None = None, seed: int = 0, batch: int | None = None,
                 init: dict | None = None):
        over = [over] if isinstance(over, str) else list(over)
        self.prob = Problem(ebm, observed, over, batch=batch, handled=tuple(sample))
        if len(over) != 1 or not self.prob.is_discrete(over[0]) or len(self.prob.shape(over[0])) != 1:
            raise SpecError(f"MCTS searches one time-indexed discrete array a[t]; got over={over}")
        self.name = over[0]
        self.L, self.K, self.B = self.prob.shape(self.name)[0], self.prob.K(self.name), self.prob.B
        self.sample = list(sample)
        for s in self.sample:
            v = ebm.graph.var(s)
            if v is None or not isinstance(v.domain, ir.Discrete) or v.index is not None:
                raise SpecError(f"MCTS chance nodes are single discrete latents; {s} is not one")
        self.gen = generator if generator is not None else as_generator(seed)
        self.policy, self.critic, self.c = policy, critic, c
        self.tree = new_tree(self.B, 256, self.K, self.L)
        self.best = np.full(self.B, np.inf)
        self.best_seq = np.zeros((self.B, self.L), dtype=int)
        self.lo, self.hi = np.full(self.B, np.inf), np.full(self.B, -np.inf)
        self.simulations_done = 0
        if not self.sample:  # the start (init, else all zeros) is a candidate: the answer is never worse
            start = initial_values(self.prob, init)[self.name].cpu().numpy()
            E0 = self._energy(start, {}).cpu().double().numpy()
            better = E0 < self.best
            self.best = np.where(better, E0, self.best)
            self.best_seq = np.where(better[:, None], start, self.best_seq)

    def _energy(self, seqs: np.ndarray, draws: dict) -> torch.Tensor:
        vals = {self.name: torch.as_tensor(seqs, device=self.prob.device)}
        inputs = dict(self.prob.observed)
        inputs.update(vals)
        inputs.update(draws)
        with torch.no_grad():
            return self.prob.ebm.evaluate(inputs, validate=False).total

    def _draw(self) -> dict:
        """One draw per chance latent, shared by all B problems (common random numbers: a problem
        searched in a batch sees exactly the draws it would see alone)."""
        out = {}
        for s in self.sample:
            d = gibbs_draws(self.prob.ebm, s, 1, self.gen, self.prob.dtype, self.prob.device)
            out[s] = d.expand(self.B, *d.shape[1:])
        return out

    def search(self, simulations: int = 200) -> MinimizeResult:
        """Run ``simulations`` more simulations and return the current answer."""
        t, B, L, K = self.tree, self.B, self.L, self.K
        self.tree = t = _grow(t, int(t.size.max()) + simulations + 1)
        for _ in range(simulations):
            leaves, paths = np.zeros((B, L), dtype=int), []
            for b in range(B):
                path, a = select(t, b, L, self.c, self.policy is not None, self.lo[b], self.hi[b])
                if a is not None:
                    path.append(expand(t, b, path[-1], a))
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
                backward(t, b, path, -E[b])
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

    def answer(self) -> MinimizeResult:
        """Best sequence so far ``{name: [B, L]}``, its energy (expected energy with chance nodes)."""
        seqs = self._greedy()
        if not self.sample:
            have = np.isfinite(self.best)
            seqs = np.where(have[:, None], self.best_seq, seqs)
        t = self.tree
        root_vis = np.stack([np.where(t.children[b, t.root[b]] >= 0,
                                      t.visits[b, np.maximum(t.children[b, t.root[b]], 0)], 0)
                             for b in range(self.B)])
        vals = {self.name: torch.as_tensor(seqs, device=self.prob.device)}
        if self.sample:
            total, terms = self._expected(vals)
        else:
            with torch.no_grad():
                out = self.prob.evaluate(vals)
            total, terms = out.total, dict(out.terms)
        info = {"simulations": self.simulations_done, "root_visits": root_vis,
                "action": torch.as_tensor(root_vis.argmax(1))}
        return MinimizeResult(vals, total.detach(), {k: v.detach() for k, v in terms.items()},
                              total.detach().unsqueeze(0), "mcts", info)

    def _expected(self, vals):
        """Exact ``Σ_w P(w) E(a, w)`` over the chance latents (one at a time enumerated)."""
        s = self.sample[0]
        K = self.prob.ebm.graph.var(s).domain.K
        p = self._exact_p(s, K)
        totals, terms = 0.0, {}
        for w in range(K):
            draws = {x: torch.full((self.B,), w if x == s else 0, dtype=torch.long) for x in self.sample}
            inputs = {**self.prob.observed, **vals, **draws}
            with torch.no_grad():
                out = self.prob.ebm.evaluate(inputs, validate=False)
            totals = totals + p[w] * out.total
            for k, v in out.terms.items():
                terms[k] = terms.get(k, 0.0) + p[w] * v
        return totals, terms

    def _exact_p(self, s, K):
        return torch.softmax(-gibbs_energy(self.prob.ebm, s, self.prob.dtype, self.prob.device), 0)

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
                ch = expand(t, b, r, int(action[b]))
            t.root[b] = ch
            if not self.sample and self.best_seq[b, t.depth[b, r]] != action[b]:
                self.best[b] = np.inf  # the best sequence is no longer reachable
        self.lo[:], self.hi[:] = np.inf, -np.inf
        for b in range(self.B):  # rebuild the value range from the kept subtree
            r = int(t.root[b])
            if t.visits[b, r] > 0:
                q = t.value_sum[b, r] / t.visits[b, r]
                self.lo[b], self.hi[b] = q, q


def mcts(ebm, observed, over, *, simulations: int = 200, sample=(), generator=None, batch=None, **kw) -> MinimizeResult:
    """One search from scratch (the functional form behind ``minimize(method="mcts")``)."""
    return MCTS(ebm, observed, over, sample=sample, generator=generator, batch=batch, **kw).search(simulations)
