"""Monte-Carlo tree search over time-indexed discrete actions (§4.8, §5, Figure 17), batched.

The tree is explicit state held as tensors (:class:`Tree`: ``[B, N]`` per-node statistics,
``[B, N, K]`` children and priors, preallocated) and the search is plain functions over it —
:func:`select` → :func:`expand` → evaluate → :func:`backward` — each one a few tensor operations
for all B problems at once (a loop over depth, never over problems), and each simulation calls
the model once on a ``[B]`` batch: the design of mctx, over a compiled energy.

* Selection: UCT on min-max normalised values (unvisited children first, in index order), or
  PUCT when a ``policy`` gives priors.
* Evaluation of a new node: ``-E`` of the prefix completed by a random rollout, or a ``critic``
  estimate when given.
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

The per-problem Python search this replaced is kept as the reference
(:class:`~ebmgraph.infer.mcts_loop.LoopMCTS`, ``minimize(method="mcts", impl="loop")``); the
two make the same choices on the same seed (tests/test_infer_mcts_batched.py).
"""
from __future__ import annotations

import functools
import itertools
import threading
from dataclasses import dataclass, fields

import torch

from .. import ir
from ..errors import SpecError
from ..util import as_generator
from .core import MCTS_COMPILE_OPTIONS, MinimizeResult, Problem, compiled_once, initial_values
from .gibbs import gibbs_draws, gibbs_energy

F64 = torch.float64


@dataclass
class Tree:
    """Search state for B problems, as tensors. Node 0 is the first root; ``-1`` marks no child.

    A node's actions are not stored: the path taken from the root spells them, on top of
    ``root_prefix`` (the actions committed by :meth:`MCTS.advance`).
    """

    children: torch.Tensor  # [B, N, K] long
    parent: torch.Tensor  # [B, N] long
    visits: torch.Tensor  # [B, N] float64
    value_sum: torch.Tensor  # [B, N] float64 (sum of -E)
    prior: torch.Tensor  # [B, N, K] float64
    depth: torch.Tensor  # [B, N] long
    size: torch.Tensor  # [B] long: nodes used
    root: torch.Tensor  # [B] long
    root_prefix: torch.Tensor  # [B, L] long: committed actions (-1 from the root's depth on)


def new_tree(B: int, capacity: int, K: int, L: int, device=None) -> Tree:
    def full(shape, v, dtype):
        return torch.full(shape, v, dtype=dtype, device=device)

    return Tree(full((B, capacity, K), -1, torch.long), full((B, capacity), -1, torch.long),
                full((B, capacity), 0.0, F64), full((B, capacity), 0.0, F64), full((B, capacity, K), 1.0 / K, F64),
                full((B, capacity), 0, torch.long), full((B,), 1, torch.long), full((B,), 0, torch.long),
                full((B, L), -1, torch.long))


_FILL = {"children": -1, "parent": -1, "visits": 0.0, "value_sum": 0.0, "prior": None, "depth": 0}


def grow(t: Tree, need: int) -> Tree:
    """The tree with room for ``need`` nodes per problem (capacity at least doubled when it grows)."""
    cap = t.visits.shape[1]
    if need <= cap:
        return t
    extra = max(need - cap, cap)
    K = t.children.shape[2]
    out = {}
    for f in fields(Tree):
        a = getattr(t, f.name)
        if f.name not in _FILL:
            out[f.name] = a
            continue
        fill = 1.0 / K if f.name == "prior" else _FILL[f.name]
        pad = torch.full((a.shape[0], extra, *a.shape[2:]), fill, dtype=a.dtype, device=a.device)
        out[f.name] = torch.cat([a, pad], 1)
    return Tree(**out)


def _rows(t: Tree) -> torch.Tensor:
    return torch.arange(t.visits.shape[0], device=t.visits.device)


def select(t: Tree, L: int, c: float, puct: bool, lo: torch.Tensor, hi: torch.Tensor):
    """Descend from every root at once: no host synchronisation, a fixed number of tensor operations.

    Returns ``(path, node, action, seq)``: ``path`` the flat ids (``b*N + node``) of the nodes
    visited, one ``[B]`` tensor per level with a ``[B]`` mask of where it applies; the last node
    reached; the child to expand there (``-1``: the node is a full sequence); and the actions of the
    path ``[B, L]`` (``-1`` undecided), including the one to expand.
    """
    B, N = t.visits.shape
    K = t.children.shape[2]
    base = _rows(t) * N
    ch_f, vis_f, val_f, pr_f, dep_f = (t.children.view(B * N, K), t.visits.view(-1), t.value_sum.view(-1),
                                       t.prior.view(B * N, K), t.depth.view(-1))
    node = t.root
    seq = t.root_prefix.clone()
    d0 = dep_f[base + node]
    cols = torch.arange(L, device=node.device)
    path = [(base + node, torch.ones_like(node, dtype=torch.bool))]
    action = torch.full_like(node, -1)
    active = d0 < L
    span = (hi - lo).clamp_min(1e-12)[:, None]
    for d in range(L):
        here = base + node
        ch = ch_f[here]  # [B, K]
        there = ch >= 0
        idx = base[:, None] + ch.clamp_min(0)
        vis = torch.where(there, vis_f[idx], 0.0)
        n_parent = vis_f[here][:, None]
        q = torch.where(vis > 0, (val_f[idx] / vis.clamp_min(1) - lo[:, None]) / span, 0.0)
        if puct:
            pr = pr_f[here]
            root_n = n_parent.clamp_min(1.0).sqrt()
            score = torch.where(there, q + c * pr * root_n / (1.0 + vis), c * pr * root_n + 0.5)
            a = score.argmax(1)
        else:
            missing = ~there
            ucb = q + c * (n_parent.clamp_min(1.0).log() / vis).sqrt()
            a = torch.where(missing.any(1), missing.to(torch.int8).argmax(1), ucb.argmax(1))
        nxt = ch.gather(1, a[:, None]).squeeze(1)
        seq = torch.where(active[:, None] & (cols == (d0 + d)[:, None]), a[:, None], seq)
        action = torch.where(active & (nxt < 0), a, action)
        down = active & (nxt >= 0)
        node = torch.where(down, nxt, node)
        path.append((base + node, down))
        active = down & (dep_f[base + node] < L)
    return path, node, action, seq


def expand(t: Tree, node: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Add child ``action`` under ``node`` where ``action >= 0`` (no host synchronisation: every
    problem writes, the others their old values); return the leaves (the new node, or ``node``)."""
    B, N = t.visits.shape
    K = t.children.shape[2]
    base = _rows(t) * N
    m = action >= 0
    new = t.size.clone()
    ch_f, par_f, dep_f = t.children.view(-1), t.parent.view(-1), t.depth.view(-1)
    slot = (base + node) * K + action.clamp_min(0)
    ch_f[slot] = torch.where(m, new, ch_f[slot])
    at = base + new.clamp_max(N - 1)
    par_f[at] = torch.where(m, node, par_f[at])
    dep_f[at] = torch.where(m, dep_f[base + node] + 1, dep_f[at])
    t.size.add_(m.long())
    return torch.where(m, new, node)


def backward(t: Tree, path: list, value: torch.Tensor) -> None:
    """Add one visit and ``value [B]`` to every node on each problem's path.

    One accumulating ``index_put_`` per statistic over the whole path: compiled, it writes into the
    tree in place (``index_add_`` made inductor copy the whole ``[B, N]`` tensors twice per simulation)."""
    flat = torch.cat([f for f, _ in path])
    on = torch.cat([m for _, m in path])
    t.visits.view(-1).index_put_((flat,), on.to(F64), accumulate=True)
    t.value_sum.view(-1).index_put_((flat,), torch.where(on, value.repeat(len(path)), 0.0), accumulate=True)


def _simulation(ebm, name: str, L: int, c: float, critic=None):
    """One whole UCT simulation as a function of tensors — select, expand, the model on the completed
    sequences (or the ``critic`` on unfinished ones), backward, the value range and the best
    sequence — run as it is, or ``torch.compile``d. The tree's tensors are updated in place;
    ``(lo, hi, best, best_seq)`` are returned. ``roll`` ``[1, L]`` is the simulation's random completion."""

    def sim(children, parent, visits, value_sum, prior, depth, size, root, root_prefix, lo, hi, best, best_seq,
            roll, obs):
        t = Tree(children, parent, visits, value_sum, prior, depth, size, root, root_prefix)
        path, node, action, leaves = select(t, L, c, False, lo, hi)
        leaf = expand(t, node, action)
        flat = _rows(t) * visits.shape[1] + leaf
        path.append((flat, action >= 0))
        undecided = leaves < 0
        seqs = torch.where(undecided, roll, leaves)
        E = ebm.evaluate({**obs, name: seqs}, validate=False).total.to(F64)
        full = ~undecided.any(1)
        if critic is not None:  # the critic's -E estimate where the leaf is not a full sequence
            v = critic(obs, leaves, depth.view(-1)[flat])
            E = torch.where(full, E, -torch.as_tensor(v).to(F64))
        backward(t, path, -E)
        better = (E < best) if critic is None else (E < best) & full
        return (torch.minimum(lo, -E), torch.maximum(hi, -E), torch.where(better, E, best),
                torch.where(better[:, None], seqs, best_seq))

    return sim


_AOT_DIR: list = []  # this process's directory of AOTInductor packages, removed at exit
_AOT_LOCK = threading.Lock()
_AOT_COUNT = itertools.count()


class _Run(torch.nn.Module):
    """``fn(*tensors, observed)`` as a module over the model, so ``functional_call`` can hand it the weights."""

    def __init__(self, ebm, fn, names: tuple, n: int):
        super().__init__()
        self.ebm, self.fn, self.names, self.n = ebm, fn, names, n

    def forward(self, *xs):
        return self.fn(*xs[:self.n], dict(zip(self.names, xs[self.n:])))


class _AOTSimulation:
    """The simulation of :func:`_simulation` exported with ``torch.export`` and compiled ahead of time by
    AOTInductor (``compile="aot"``): called through its C++ runner, with no Dynamo guards or Python wrapper
    per call. Built once per model, settings and input sizes and strides (batch, tree capacity) and kept on
    the model. The model's parameters and buffers are runner inputs, read as they are at each search (never
    baked in: training or loading weights between searches is seen), the observed tensors are passed
    contiguous, and the tree's tensors are updated in place as in the eager function (tests)."""

    N_ARGS = 14  # the tree's 9 tensors, lo, hi, best, best_seq, roll

    def __init__(self, ebm, key: tuple, make, names: tuple, options: dict):
        self.ebm, self.key, self.names, self.options = ebm, key, names, options
        self.run = _Run(ebm, make(), names, self.N_ARGS)
        self.state_names = tuple(f"ebm.{n}" for n, _ in ebm.named_parameters()) + tuple(
            f"ebm.{n}" for n, _ in ebm.named_buffers())

    def _state(self) -> tuple:
        live = dict(self.run.named_parameters())
        live.update(self.run.named_buffers())
        return tuple(live[n].detach() for n in self.state_names)

    def bind(self, tree: tuple, lo, hi, best, best_seq, roll, obs: dict):
        """``step(lo, hi, best, best_seq, roll)`` for one search: the runner for these sizes, with the
        observed tensors and the model's current weights bound (looked up once, called per simulation)."""
        extra = tuple(obs[k].contiguous() for k in self.names) + self._state()
        flat = (*tree, lo, hi, best, best_seq, roll, *extra)
        sig = tuple((tuple(a.shape), tuple(a.stride()), a.dtype, str(a.device)) for a in flat)
        cache = self.ebm.__dict__.setdefault("_aot_planners", {})
        with _AOT_LOCK:
            if (self.key, sig) not in cache:
                cache[(self.key, sig)] = self._build(flat)
            run = cache[(self.key, sig)]

        def step(lo, hi, best, best_seq, roll):
            return run(*tree, lo, hi, best, best_seq, roll, *extra)

        return step

    def _build(self, flat: tuple):
        import atexit
        import shutil
        import tempfile

        run, state_names, n = self.run, self.state_names, self.N_ARGS + len(self.names)

        class Sim(torch.nn.Module):  # the weights as inputs: functional_call puts them into the model
            def forward(self, *xs):
                return torch.func.functional_call(run, dict(zip(state_names, xs[n:])), xs[:n])

        if not _AOT_DIR:
            _AOT_DIR.append(tempfile.mkdtemp(prefix="ebmgraph-aoti-"))
            atexit.register(shutil.rmtree, _AOT_DIR[0], True)
        ep = torch.export.export(Sim(), tuple(a.clone() for a in flat), strict=False)
        path = torch._inductor.aoti_compile_and_package(
            ep, package_path=f"{_AOT_DIR[0]}/mcts_{next(_AOT_COUNT)}.pt2",
            inductor_configs=self.options)
        return torch._inductor.aoti_load_package(path)


class MCTS:
    """UCT/PUCT search that minimizes the energy over a discrete action array ``a[t]``.

    Args:
        ebm: compiled model; ``over`` must be one time-indexed discrete action/latent.
        observed: ``{name: [B, ...]}`` for the observed variables.
        sample: latents treated as chance nodes (default: those marked ``sampled: true``).
        policy: optional ``policy(observed, prefix [B, L] (-1 undecided), depth [B]) -> [B, K]`` priors (PUCT).
        critic: optional ``critic(observed, prefix, depth) -> [B]`` estimate of ``-E`` replacing rollouts.
        c: exploration constant.
        generator: randomness of rollouts and chance draws.
        compile: run each simulation as one ``torch.compile``d function (UCT, with or without a
            critic, which is then compiled into it; no policy or chance nodes); compiled once per
            model, sizes and critic, kept on the model (issue 14). ``"aot"``: the simulation exported
            (``torch.export``) and compiled ahead of time by AOTInductor instead (plain UCT, no critic):
            no Dynamo on each call, ~15% faster per simulation at B = 64, but ~10 s to build for each
            batch size and tree capacity (BENCHMARKS.md).
    """

    def __init__(self, ebm, observed: dict | None, over, *, sample=(), policy=None, critic=None, c: float = 1.4,
                 generator: torch.Generator | None = None, seed: int = 0, batch: int | None = None,
                 init: dict | None = None, compile: bool | str = False):
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
        self.simulations_done = 0
        self._sim = None  # plain UCT runs one simulation function (compiled with compile=True)
        plain = policy is None and not self.sample
        if compile not in (False, True, "aot"):
            raise SpecError(f"MCTS compile={compile!r}: choose False, True (torch.compile) or 'aot' (AOTInductor)")
        if compile == "aot" and critic is not None:
            raise SpecError("MCTS compile='aot' compiles plain UCT; with a critic use compile=True")
        if compile and not plain:
            raise SpecError("MCTS compile=True compiles UCT (with or without a critic); a policy or chance "
                            "nodes run eagerly: drop compile=True")
        # eager with a critic keeps the step-by-step loop, which calls the model only where a leaf is full
        if plain and (compile or critic is None):
            make = functools.partial(_simulation, ebm, self.name, self.L, float(c), critic)
            key = ("mcts", self.name, self.L, float(c), tuple(sorted(self.prob.observed)), critic)
            if compile == "aot":  # AOTInductor's wrapper is C++ already
                opts = {k: v for k, v in MCTS_COMPILE_OPTIONS.items() if k != "cpp_wrapper"}
                self._sim = _AOTSimulation(ebm, key, make, tuple(sorted(self.prob.observed)), opts)
            elif compile:  # a user's critic is compiled into the simulation: its indexing keeps the bounds checks
                opts = MCTS_COMPILE_OPTIONS if critic is None else {**MCTS_COMPILE_OPTIONS, "assert_indirect_indexing": True}
                self._sim = compiled_once(ebm, key, make, options=opts)
            else:
                self._sim = make()
        self._new_state()
        if not self.sample:  # the start (init, else all zeros) is a candidate: the answer is never worse
            start = initial_values(self.prob, init)[self.name]
            self._offer(start, self._energy(start, {}).to(F64))

    # ---------------------------------------------------------------- state (overridden by LoopMCTS)
    def _new_state(self):
        dev = self.prob.device
        self.tree = new_tree(self.B, 256, self.K, self.L, dev)
        self.best = torch.full((self.B,), float("inf"), dtype=F64, device=dev)
        self.best_seq = torch.zeros((self.B, self.L), dtype=torch.long, device=dev)
        self.lo = torch.full((self.B,), float("inf"), dtype=F64, device=dev)
        self.hi = torch.full((self.B,), -float("inf"), dtype=F64, device=dev)

    def _offer(self, seqs, E, mask=None):
        """Keep ``seqs [B, L]`` as the best where their energy ``E [B]`` is lower (and ``mask``)."""
        better = E < self.best if mask is None else (E < self.best) & mask
        self.best = torch.where(better, E, self.best)
        self.best_seq = torch.where(better[:, None], seqs, self.best_seq)

    # ---------------------------------------------------------------- the model
    def _energy(self, seqs, draws: dict) -> torch.Tensor:
        inputs = dict(self.prob.observed)
        inputs[self.name] = torch.as_tensor(seqs, device=self.prob.device)
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

    def _leaf_energy(self, leaves: torch.Tensor, depth) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(E [B] float64, completed sequences [B, L], undecided [B, L])`` of one simulation's leaves.

        One random completion per simulation, shared by all problems (batched equals alone); the
        critic's estimate replaces it where the leaf is not a full sequence.
        """
        undecided = leaves < 0
        roll = torch.randint(0, self.K, (1, self.L), generator=self.gen).to(leaves.device)
        seqs = torch.where(undecided, roll, leaves)
        if self.critic is not None and bool(undecided.any()):
            with torch.no_grad():
                v = self.critic(self.prob.observed, leaves, depth)
            E = -torch.as_tensor(v, device=leaves.device).to(F64)
            full = ~undecided.any(1)
            if bool(full.any()):
                E = torch.where(full, self._energy(seqs, self._draw()).to(F64), E)
        else:
            E = self._energy(seqs, self._draw()).to(F64)
        return E, seqs, undecided

    # ---------------------------------------------------------------- search
    def search(self, simulations: int = 200) -> MinimizeResult:
        """Run ``simulations`` more simulations and return the current answer."""
        self.tree = t = grow(self.tree, int(self.tree.size.max()) + simulations + 1)
        b = _rows(t)
        N = t.visits.shape[1]
        if self._sim is not None:
            obs = dict(self.prob.observed)
            # one random completion per simulation, shared by all problems; drawn at once, the same numbers as
            # one draw of [1, L] per simulation (the CPU generator fills a tensor serially, in order)
            n = max(int(simulations), 0)
            rolls = torch.randint(0, self.K, (n, 1, self.L), generator=self.gen).to(t.root.device).unbind(0)
            tree = (t.children, t.parent, t.visits, t.value_sum, t.prior, t.depth, t.size, t.root, t.root_prefix)
            if isinstance(self._sim, _AOTSimulation) and rolls:  # its runner bound once: the sizes are fixed here
                step = self._sim.bind(tree, self.lo, self.hi, self.best, self.best_seq, rolls[0], obs)
            else:
                def step(lo, hi, best, best_seq, roll):
                    return self._sim(*tree, lo, hi, best, best_seq, roll, obs)
            with torch.no_grad():
                for roll in rolls:  # the tree in place, the rest returned: kept after every simulation
                    self.lo, self.hi, self.best, self.best_seq = step(self.lo, self.hi, self.best, self.best_seq, roll)
            self.simulations_done += simulations
            return self.answer()
        for _ in range(simulations):
            path, node, action, leaves = select(t, self.L, self.c, self.policy is not None, self.lo, self.hi)
            leaf = expand(t, node, action)
            path.append((b * N + leaf, action >= 0))
            depth = t.depth[b, leaf]
            if self.policy is not None:
                with torch.no_grad():
                    pr = torch.as_tensor(self.policy(self.prob.observed, leaves, depth)).to(t.prior.device, F64)
                t.prior[b, leaf] = pr / pr.sum(1, keepdim=True)
            E, seqs, undecided = self._leaf_energy(leaves, depth)
            backward(t, path, -E)
            self.lo, self.hi = torch.minimum(self.lo, -E), torch.maximum(self.hi, -E)
            if not self.sample:
                self._offer(seqs, E, None if self.critic is None else ~undecided.any(1))
        self.simulations_done += simulations
        return self.answer()

    def _greedy(self) -> torch.Tensor:
        """The most visited path from each root, completed with zeros ``[B, L]``."""
        t = self.tree
        b = _rows(t)
        node, seq = t.root.clone(), t.root_prefix.clone()
        cols = torch.arange(self.L, device=node.device)
        for _ in range(self.L):
            ch = t.children[b, node]
            vis = torch.where(ch >= 0, t.visits[b[:, None], ch.clamp_min(0)], -1.0)
            d = t.depth[b, node]
            go = (vis.max(1).values > 0) & (d < self.L)
            a = vis.argmax(1)
            seq = torch.where(go[:, None] & (cols == d[:, None]), a[:, None], seq)
            node = torch.where(go, ch.gather(1, a[:, None]).squeeze(1), node)
        return torch.where(seq < 0, 0, seq)

    def _root_visits(self) -> torch.Tensor:
        t = self.tree
        b = _rows(t)
        ch = t.children[b, t.root]
        return torch.where(ch >= 0, t.visits[b[:, None], ch.clamp_min(0)], 0.0)

    def answer(self) -> MinimizeResult:
        """Best sequence so far ``{name: [B, L]}``, its energy (expected energy with chance nodes)."""
        seqs = torch.as_tensor(self._greedy(), device=self.prob.device)
        if not self.sample:
            have = torch.isfinite(torch.as_tensor(self.best, device=self.prob.device))
            seqs = torch.where(have[:, None], torch.as_tensor(self.best_seq, device=self.prob.device), seqs)
        root_vis = self._root_visits()
        vals = {self.name: seqs}
        if self.sample:
            total, terms = self._expected(vals)
        else:
            with torch.no_grad():
                out = self.prob.evaluate(vals)
            total, terms = out.total, dict(out.terms)
        info = {"simulations": self.simulations_done, "root_visits": root_vis,
                "action": torch.as_tensor(root_vis).argmax(1)}
        return MinimizeResult(vals, total.detach(), {k: v.detach() for k, v in terms.items()},
                              total.detach().unsqueeze(0), "mcts", info)

    def _expected(self, vals):
        """Exact ``Σ_w P(w) E(a, w)`` over the chance latents (one at a time enumerated)."""
        s = self.sample[0]
        K = self.prob.ebm.graph.var(s).domain.K
        p = torch.softmax(-gibbs_energy(self.prob.ebm, s, self.prob.dtype, self.prob.device), 0)
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

    def advance(self, action) -> None:
        """Commit the next action per problem (``[B]`` ints) and re-root there, keeping the subtree."""
        t = self.tree
        b = _rows(t)
        action = torch.as_tensor(action, device=t.root.device).reshape(self.B).long()
        r = t.root
        dr = t.depth[b, r]
        if bool((dr >= self.L).any()):
            raise SpecError("every action is already committed")
        self.tree = t = grow(t, int(t.size.max()) + 1)
        ch = t.children[b, r, action]
        leaf = expand(t, r, torch.where(ch < 0, action, -1))
        t.root = torch.where(ch < 0, leaf, ch)
        t.root_prefix[b, dr] = action
        if not self.sample:  # the best sequence is no longer reachable where it took another action
            gone = self.best_seq[b, dr] != action
            self.best = torch.where(gone, float("inf"), self.best)
        q = t.value_sum[b, t.root] / t.visits[b, t.root].clamp_min(1)
        kept = t.visits[b, t.root] > 0  # rebuild the value range from the kept subtree
        self.lo = torch.where(kept, q, float("inf"))
        self.hi = torch.where(kept, q, -float("inf"))

