"""The reference MCTS the batched tensor search is tested against: problem by problem, in Python.

The algorithm of :class:`ebmgraph.infer.mcts.MCTS` written the plain way — a numpy tree per problem,
selection and backup in Python loops, and every simulation's whole sequence **re-scored from s[0]**
through ``ebm.evaluate`` (no stored states): the same UCT/PUCT scores, the same random numbers
(per search: one completion ``[1, L]`` per simulation, then one draw per chance latent per simulation,
shared by all problems), the same answer rule. Given the same seed, the tensor search must make the
same choices (tests/test_infer_mcts_batched.py, tests/test_mcts_state.py).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ebmgraph.infer.gibbs import gibbs_draws, gibbs_energy
from ebmgraph.util import as_generator


class OracleMCTS:
    """``OracleMCTS(ebm, observed, over, ...)``: the settings of ``MCTS`` (no ``compile``)."""

    def __init__(self, ebm, observed, over, *, sample=(), policy=None, critic=None, c=1.4, seed=0, batch=None,
                 init=None, generator=None):
        self.ebm, self.name = ebm, (over if isinstance(over, str) else over[0])
        self.obs = {k: torch.as_tensor(v).to(ebm.dtype) if torch.as_tensor(v).is_floating_point()
                    else torch.as_tensor(v) for k, v in (observed or {}).items()}
        self.B = next(iter(self.obs.values())).shape[0] if self.obs else int(batch or 1)
        self.L, self.K = ebm.var_shape(self.name)[0], ebm.graph.var(self.name).domain.K
        self.sample, self.policy, self.critic, self.c = list(sample), policy, critic, c
        self.gen = generator if generator is not None else as_generator(seed)
        B, L, K, cap = self.B, self.L, self.K, 64
        self.children = np.full((B, cap, K), -1)
        self.visits, self.value_sum = np.zeros((B, cap)), np.zeros((B, cap))
        self.prior = np.full((B, cap, K), 1.0 / K)
        self.prefix = np.full((B, cap, L), -1)
        self.depth = np.zeros((B, cap), dtype=int)
        self.size = np.ones(B, dtype=int)
        self.lo, self.hi = np.full(B, np.inf), np.full(B, -np.inf)
        self.best, self.best_seq = np.full(B, np.inf), np.zeros((B, L), dtype=int)
        self.simulations_done = 0
        if not self.sample:
            start = np.asarray(init[self.name]) if init else np.zeros((B, L), dtype=int)
            E = self.energy(start, {})
            better = E < self.best
            self.best, self.best_seq = np.where(better, E, self.best), np.where(better[:, None], start, self.best_seq)

    def energy(self, seqs, draws: dict) -> np.ndarray:
        with torch.no_grad():
            out = self.ebm.evaluate({**self.obs, self.name: torch.as_tensor(seqs), **draws}, validate=False)
        return out.total.double().numpy()

    def _room(self, need: int):
        cap = self.visits.shape[1]
        if need <= cap:
            return
        extra = need - cap + cap

        def pad(a, fill):
            return np.concatenate([a, np.full((a.shape[0], extra, *a.shape[2:]), fill, dtype=a.dtype)], 1)

        self.children, self.visits, self.value_sum = pad(self.children, -1), pad(self.visits, 0), pad(self.value_sum, 0)
        self.prior, self.prefix, self.depth = pad(self.prior, 1.0 / self.K), pad(self.prefix, -1), pad(self.depth, 0)

    def _select(self, b: int):
        """The path from problem ``b``'s root and the action to expand at its end (None: a full sequence)."""
        node, path = 0, [0]
        span = max(self.hi[b] - self.lo[b], 1e-12)
        while self.depth[b, node] < self.L:
            ch = self.children[b, node]
            n = self.visits[b, node]
            vis = np.where(ch >= 0, self.visits[b, np.maximum(ch, 0)], 0.0)
            q = np.where(vis > 0, (self.value_sum[b, np.maximum(ch, 0)] / np.maximum(vis, 1) - self.lo[b]) / span, 0.0)
            if self.policy is not None:
                pr = self.prior[b, node]
                score = np.where(ch >= 0, q + self.c * pr * math.sqrt(max(n, 1.0)) / (1.0 + vis),
                                 self.c * pr * math.sqrt(max(n, 1.0)) + 0.5)
                a = int(np.argmax(score))
            elif (ch < 0).any():
                return path, int(np.flatnonzero(ch < 0)[0])
            else:
                a = int(np.argmax(q + self.c * np.sqrt(math.log(max(n, 1.0)) / vis)))
            if ch[a] < 0:
                return path, a
            node = int(ch[a])
            path.append(node)
        return path, None

    def _expand(self, b: int, node: int, a: int) -> int:
        new = int(self.size[b])
        self.size[b] += 1
        self.children[b, node, a] = new
        self.depth[b, new] = self.depth[b, node] + 1
        self.prefix[b, new] = self.prefix[b, node]
        self.prefix[b, new, self.depth[b, node]] = a
        return new

    def search(self, simulations: int = 200):
        n, B, L = simulations, self.B, self.L
        self._room(int(self.size.max()) + n + 1)
        rolls = torch.randint(0, self.K, (n, 1, L), generator=self.gen).numpy()
        draws = {s: gibbs_draws(self.ebm, s, n, self.gen, self.ebm.dtype, torch.device("cpu")) for s in self.sample}
        for i in range(n):
            paths = []
            for b in range(B):
                path, a = self._select(b)
                if a is not None:
                    path.append(self._expand(b, path[-1], a))
                paths.append(path)
            leaves = np.stack([self.prefix[b, p[-1]] for b, p in enumerate(paths)])
            depth = np.array([self.depth[b, p[-1]] for b, p in enumerate(paths)])
            if self.policy is not None:
                with torch.no_grad():
                    pr = torch.as_tensor(self.policy(self.obs, torch.as_tensor(leaves), torch.as_tensor(depth)))
                for b, p in enumerate(paths):
                    self.prior[b, p[-1]] = pr[b].double().numpy() / float(pr[b].double().sum())
            undecided = leaves < 0
            seqs = np.where(undecided, np.broadcast_to(rolls[i], (B, L)), leaves)
            E = self.energy(seqs, {s: d[i:i + 1].expand(B, *d.shape[1:]) for s, d in draws.items()})
            if self.critic is not None:
                with torch.no_grad():
                    v = torch.as_tensor(self.critic(self.obs, torch.as_tensor(leaves), torch.as_tensor(depth)))
                E = np.where(~undecided.any(1), E, -v.double().numpy())
            for b, path in enumerate(paths):
                for node in path:
                    self.visits[b, node] += 1
                    self.value_sum[b, node] += -E[b]
                self.lo[b], self.hi[b] = min(self.lo[b], -E[b]), max(self.hi[b], -E[b])
                if not self.sample and E[b] < self.best[b] and (self.critic is None or not undecided[b].any()):
                    self.best[b], self.best_seq[b] = E[b], seqs[b]
        self.simulations_done += n
        return self.answer()

    def answer(self) -> dict:
        """``{"values", "energy", "root_visits", "action", "size"}`` as the tensor search reports them."""
        greedy = np.zeros((self.B, self.L), dtype=int)
        for b in range(self.B):
            node = 0
            while self.depth[b, node] < self.L:
                ch = self.children[b, node]
                vis = np.where(ch >= 0, self.visits[b, np.maximum(ch, 0)], -1)
                if vis.max() <= 0:
                    break
                node = int(ch[int(np.argmax(vis))])
            greedy[b] = np.where(self.prefix[b, node] < 0, 0, self.prefix[b, node])
        seqs = greedy if self.sample else np.where(np.isfinite(self.best)[:, None], self.best_seq, greedy)
        root = np.stack([np.where(self.children[b, 0] >= 0, self.visits[b, np.maximum(self.children[b, 0], 0)], 0)
                         for b in range(self.B)])
        vals = torch.as_tensor(seqs)
        if self.sample:  # the exact expectation over the (first) chance latent
            s = self.sample[0]
            p = torch.softmax(-gibbs_energy(self.ebm, s, self.ebm.dtype, torch.device("cpu")), 0)
            energy = sum(p[w] * torch.as_tensor(self.energy(vals, {x: torch.full((self.B,), w if x == s else 0)
                                                                   for x in self.sample})).to(p.dtype)
                         for w in range(len(p)))
        else:
            energy = torch.as_tensor(self.energy(vals, {})).to(self.ebm.dtype)
        return {"values": vals, "energy": energy, "root_visits": torch.as_tensor(root),
                "action": torch.as_tensor(root.argmax(1)), "size": torch.as_tensor(self.size)}
