"""Monte-Carlo tree search over time-indexed discrete actions (§4.8, §5, Figure 17), batched.

The tree is explicit state held as tensors (:class:`Tree`: ``[B, N]`` per-node statistics,
``[B, N, K]`` children and priors, preallocated) and the search is one function of tensors per
simulation (:func:`make_simulation`: :func:`select` → :func:`expand` → evaluate → :func:`backward`,
each a few tensor operations for all B problems at once, a loop over depth, never over problems),
the same function whether it runs eagerly, through ``torch.compile`` or as an AOTInductor package.

* Selection: UCT on min-max normalised values (unvisited children first, in index order), or
  PUCT when a ``policy`` gives priors.
* Evaluation of a new node: ``-E`` of the prefix completed by a random rollout, or a ``critic``
  estimate when given.
* Stored states: when the spec is step-wise in the searched array (one recurrence
  ``s[t+1] = Pred(s[t], a[t], ...)`` and per-step energy terms; :mod:`ebmgraph.infer.stepwise` says
  why a spec is not), each node keeps its predicted state ``[B, N, *S]`` and the energy of its prefix
  ``[B, N]`` (as mctx keeps embeddings): an expansion is **one** predictor step on the ``[B]`` batch,
  and the leaf's value is the random completion rolled on from the stored state (``L − d`` steps),
  or the critic's. Other specs re-score each simulation's whole sequence from ``s[0]``.
* Chance nodes: latents marked ``sampled: true`` are drawn at the end of each simulated
  trajectory from their Gibbs distribution ``P(z) ∝ exp(−R(z))`` (eq. 23), so node values
  estimate the expected energy; the reported energy is then the exact expectation.
* Answer: the best complete sequence simulated or the start (``init``, else all zeros) when
  that is lower (deterministic energies), or the most visited path completed greedily (with
  chance nodes).
* Randomness: each search draws, from its generator, one random completion ``[1, L]`` per
  simulation and then one draw per chance latent per simulation, shared by all B problems (common
  random numbers), so a problem searched in a batch gives the answer it gives alone.

Each call to :meth:`MCTS.search` continues the same tree. The per-problem Python search this
replaced is the test oracle (tests/mcts_oracle.py): the two make the same choices on the same seed.
"""
from __future__ import annotations

import functools
import inspect
import sys
import weakref
from dataclasses import dataclass, fields

import torch

from .. import ir
from ..errors import SpecError
from ..util import as_generator
from . import aot
from .core import MCTS_COMPILE_OPTIONS, MinimizeResult, Problem, compiled_once, initial_values
from .gibbs import gibbs_draws, gibbs_energy
from .stepwise import StepModel, analyze_stepwise

F64 = torch.float64
# compile="auto" runs a configuration (model, settings, sizes) eagerly until this process has run this many of
# its simulations, then builds its AOTInductor package (a package already on disk is loaded at once). Eager
# simulations took 1.2-1.6 ms each (L = 6, B = 1-64; BENCHMARKS.md, idle 2-core EPYC), so 10,000 are about the
# 14-25 s of a cold build (ski rental: never much worse than twice the better choice). Counted, not timed: the
# choice does not depend on the machine's load.
AUTO_BUILD_AFTER = 10_000
BUILD_S = 20  # about how long a cold build takes (the announcement's figure)
_EAGER_SIMS: dict = {}  # package key -> eager simulations run in this process
_FAILED: set = set()  # package keys whose build failed in this process ("auto" then stays eager)


@dataclass
class Tree:
    """Search state for B problems, as tensors. Node 0 is the root; ``-1`` marks no child.

    A node's actions are not stored: the path from the root spells them. ``state`` and ``acc``
    exist for step-wise specs only: the predicted state after the node's prefix and the energy of the
    steps it decided (float64)."""

    children: torch.Tensor  # [B, N, K] long
    parent: torch.Tensor  # [B, N] long
    visits: torch.Tensor  # [B, N] float64
    value_sum: torch.Tensor  # [B, N] float64 (sum of -E)
    prior: torch.Tensor  # [B, N, K] float64
    depth: torch.Tensor  # [B, N] long
    size: torch.Tensor  # [B] long: nodes used
    state: torch.Tensor | None = None  # [B, N, *S]
    acc: torch.Tensor | None = None  # [B, N] float64

    def tensors(self) -> tuple:
        return tuple(getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None)


def new_tree(B: int, capacity: int, K: int, device=None, root_state: torch.Tensor | None = None) -> Tree:
    def full(shape, v, dtype):
        return torch.full(shape, v, dtype=dtype, device=device)

    t = Tree(full((B, capacity, K), -1, torch.long), full((B, capacity), -1, torch.long),
             full((B, capacity), 0.0, F64), full((B, capacity), 0.0, F64), full((B, capacity, K), 1.0 / K, F64),
             full((B, capacity), 0, torch.long), full((B,), 1, torch.long))
    if root_state is not None:
        t.state = root_state.new_zeros((B, capacity, *root_state.shape[1:]))
        t.state[:, 0] = root_state
        t.acc = full((B, capacity), 0.0, F64)
    return t


def capacity_for(need: int) -> int:
    """Room for ``need`` nodes: a power of two, at least 256 (few sizes, so few compiled variants)."""
    return max(256, 1 << max(need - 1, 1).bit_length())


def grow(t: Tree, need: int) -> Tree:
    """The tree with room for ``need`` nodes per problem and the scratch node (:func:`capacity_for`)."""
    cap = t.visits.shape[1]
    need += 1
    if need <= cap:
        return t
    extra = capacity_for(need) - cap
    K = t.children.shape[2]
    fill = {"children": -1, "parent": -1, "prior": 1.0 / K}
    out = {}
    for f in fields(Tree):
        a = getattr(t, f.name)
        if a is None or f.name == "size":
            out[f.name] = a
            continue
        pad = torch.full((a.shape[0], extra, *a.shape[2:]), fill.get(f.name, 0), dtype=a.dtype, device=a.device)
        out[f.name] = torch.cat([a, pad], 1)
    return Tree(**out)


def _rows(t: Tree) -> torch.Tensor:
    return torch.arange(t.visits.shape[0], device=t.visits.device)


def select(t: Tree, L: int, c: float, puct: bool, lo: torch.Tensor, hi: torch.Tensor):
    """Descend from every root at once: a fixed number of tensor operations per level, no host
    synchronisation when traced (eagerly, one check per level ends the loop where every descent has).

    Returns ``(path, node, action, seq)``: ``path`` the flat ids (``b*N + node``) of the nodes
    visited, one ``[B]`` tensor per level with a ``[B]`` mask of where it applies; the last node
    reached; the child to expand there (``-1``: the node is a full sequence); and the actions of the
    path ``[B, L]`` (``-1`` undecided), including the one to expand.
    """
    B, N = t.visits.shape
    K = t.children.shape[2]
    base = _rows(t) * N
    ch_f, pr_f = t.children.view(B * N, K), t.prior.view(B * N, K)
    vis_f, val_f = t.visits.view(-1), t.value_sum.view(-1)
    node = torch.zeros_like(base)
    seq = torch.full((B, L), -1, dtype=torch.long, device=base.device)
    path = [(base, torch.ones_like(node, dtype=torch.bool))]
    action = torch.full_like(node, -1)
    active = torch.ones_like(node, dtype=torch.bool)
    span = (hi - lo).clamp_min(1e-12)[:, None]
    eager = not torch.compiler.is_compiling()
    for d in range(L):
        if eager and d and not bool(active.any()):  # every descent has ended (eagerly only: one host check)
            break
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
        seq[:, d] = torch.where(active, a, -1)
        action = torch.where(active & (nxt < 0), a, action)
        down = active & (nxt >= 0)
        node = torch.where(down, nxt, node)
        path.append((base + node, down))
        active = down & (d + 1 < L)
    return path, node, action, seq


def scratch(t: Tree, where: torch.Tensor, node: torch.Tensor) -> torch.Tensor:
    """``node`` where ``where``, else the scratch node ``N − 1`` (:func:`grow` keeps it spare): tree writes go
    to it instead of writing old values back (no read before the write: simpler compiled code)."""
    return torch.where(where, node, t.visits.shape[1] - 1)


def expand(t: Tree, node: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Add child ``action`` under ``node`` where ``action >= 0`` (no host synchronisation: the other
    problems write into their scratch node); return the leaves (the new node, or ``node``)."""
    B, N = t.visits.shape
    K = t.children.shape[2]
    base = _rows(t) * N
    m = action >= 0
    new = t.size.clone()
    at = base + scratch(t, m, new)
    t.children.view(-1)[(base + scratch(t, m, node)) * K + action.clamp_min(0)] = new
    t.parent.view(-1)[at] = node
    t.depth.view(-1)[at] = t.depth.view(-1)[base + node] + 1
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


def _complete(model, ctx, s, acc, depth, roll, L: int):
    """``acc [B]`` plus the energy of the random completion ``roll [1, L]`` rolled on from the states
    ``s [B, *S]`` of leaves at ``depth [B]``: step ``k`` applies to the rows with ``depth <= k``. The
    predictor steps one at a time; the energy of all the steps is scored at once afterwards (``[B·n]``
    rows). Eagerly the loop starts at the shallowest leaf (``L − d`` predictor steps for one problem) and
    masks only while a leaf is deeper; traced it runs every step a leaf can need (``1..L-1``: a leaf is
    never the root), masked."""
    start, all_on = (1, L) if torch.compiler.is_compiling() else (int(depth.min()), int(depth.max()))
    n = L - start
    if n <= 0:
        return acc
    B = s.shape[0]
    acts = roll[0, start:].expand(B, n)
    before, after = [], []
    for j in range(n):
        before.append(s)
        nxt = model.predict(ctx, s, acts[:, j], start + j)
        # a leaf deeper than this step keeps its state until its own first step
        s = nxt if start + j >= all_on else torch.where((depth <= start + j).view(-1, *([1] * (s.dim() - 1))), nxt, s)
        after.append(s)
    ks = torch.arange(start, L, device=depth.device).expand(B, n)
    e = model.energy(ctx, torch.stack(before, 1).flatten(0, 1), torch.stack(after, 1).flatten(0, 1),
                     acts.flatten(), ks.flatten(), rep=n).view(B, n)
    return acc + torch.where(ks >= depth[:, None], e, 0.0).sum(1)


def make_simulation(ebm, name: str, L: int, c: float, *, puct: bool = False, policy=None, critic=None,
                    critic_kw: tuple = (), chance: tuple = (), model=None, track_best: bool = True,
                    obs_names: tuple = ()):
    """One whole simulation as a function of tensors, ``sim(*tree, lo, hi, best, best_seq, rolls, count, *draws,
    *ctx, *observed)``, run as it is, ``torch.compile``d or exported; every result is written in place (so a
    search calls it with the same arguments each time).

    ``tree``: :meth:`Tree.tensors`; ``lo, hi`` ``[B]`` the range of values seen, ``best [B]``, ``best_seq
    [B, L]`` the best complete sequence; ``rolls [N, L]`` the search's random completions, ``count [1]`` the
    simulation's row in them (advanced by one); ``draws``: ``[N, ...]`` draws per chance latent, read the same way; ``ctx``: :meth:`StepModel.context` (step-wise
    specs, ``model`` the :class:`~ebmgraph.infer.stepwise.StepModel`); ``observed`` in the order of
    ``obs_names``. ``critic`` gets ``state=`` (the leaf's stored state) and ``energy=`` (its prefix's
    energy, constants included) when it names them (``critic_kw``)."""
    n_tree = 7 if model is None else 9
    nc = len(chance)

    def sim(*xs):
        t = Tree(*xs[:n_tree])
        lo, hi, best, best_seq, rolls, count = xs[n_tree:n_tree + 6]
        roll = rolls.index_select(0, count)  # [1, L]
        draws = [d.index_select(0, count) for d in xs[n_tree + 6:n_tree + 6 + nc]]
        rest = xs[n_tree + 6 + nc:]
        ctx, obs = rest[:len(rest) - len(obs_names)], dict(zip(obs_names, rest[len(rest) - len(obs_names):]))
        B, N = t.visits.shape
        path, node, action, seq = select(t, L, c, puct, lo, hi)
        leaf = expand(t, node, action)
        rows = _rows(t) * N
        flat = rows + leaf
        path.append((flat, action >= 0))
        depth = t.depth.view(-1)[flat]
        if policy is not None:
            pr = torch.as_tensor(policy(obs, seq, depth)).to(t.prior.device, F64)
            t.prior.view(B * N, -1)[flat] = pr / pr.sum(1, keepdim=True)
        undecided = seq < 0
        full = ~undecided.any(1)
        seqs = torch.where(undecided, roll, seq)
        kw = {}
        if model is None:
            inputs = {**obs, name: seqs, **{s: d.expand(B, *d.shape[1:]) for s, d in zip(chance, draws)}}
            E = ebm.evaluate(inputs, validate=False).total.to(F64)
        else:  # one predictor step into the new node; its state and prefix energy kept
            par = rows + node
            S = t.state.view(B * N, *t.state.shape[2:])
            new, e = model.step(ctx, S[par], action.clamp_min(0), t.depth.view(-1)[par])
            to = rows + scratch(t, action >= 0, leaf)
            S[to] = new
            acc = t.acc.view(-1)
            acc[to] = acc[par] + e
            kw = {"state": S[flat], "energy": acc[flat] + ctx[1]}
            if critic is not None:
                E = kw["energy"]
            else:
                E = _complete(model, ctx, S[flat], acc[flat], depth, roll, L) + ctx[1]
        if critic is not None:  # the critic's -E estimate where the leaf is not a full sequence
            v = critic(obs, seq, depth, **{k: kw[k] for k in critic_kw})
            E = torch.where(full, E, -torch.as_tensor(v).to(F64))
        backward(t, path, -E)
        lo.copy_(torch.minimum(lo, -E))
        hi.copy_(torch.maximum(hi, -E))
        if track_best:
            better = (E < best) if critic is None else (E < best) & full
            best_seq.copy_(torch.where(better[:, None], seqs, best_seq))
            best.copy_(torch.where(better, E, best))
        count.add_(1)
        return ()

    return sim


_ANALYSES = weakref.WeakKeyDictionary()  # model -> {(action, chance latents): analyze_stepwise's answer}


def _analysis(ebm, name: str, chance: tuple):
    """:func:`~ebmgraph.infer.stepwise.analyze_stepwise` of a model's (fixed) checked graph, once per model."""
    table = _ANALYSES.setdefault(ebm, {})
    if (name, chance) not in table:
        table[(name, chance)] = analyze_stepwise(ebm.checked, ebm.rollouts, name, chance)
    return table[(name, chance)]


class _Run(torch.nn.Module):
    """``fn(*tensors)`` as a module over the model, so its weights can be handed in as inputs."""

    def __init__(self, ebm, fn):
        super().__init__()
        self.ebm, self.fn = ebm, fn

    def forward(self, *xs):
        return self.fn(*xs)


class MCTS:
    """UCT/PUCT search that minimizes the energy over a discrete action array ``a[t]``.

    Args:
        ebm: compiled model; ``over`` must be one time-indexed discrete action/latent.
        observed: ``{name: [B, ...]}`` for the observed variables.
        sample: latents treated as chance nodes (default: those marked ``sampled: true``).
        policy: optional ``policy(observed, prefix [B, L] (-1 undecided), depth [B]) -> [B, K]`` priors (PUCT).
        critic: optional ``critic(observed, prefix, depth) -> [B]`` estimate of ``-E`` replacing rollouts; on a
            step-wise spec it may also name ``state`` (the leaf's predicted state ``[B, *S]``) and ``energy``
            (its prefix's energy ``[B]``, float64), which it is then given.
        c: exploration constant.
        generator: randomness of rollouts and chance draws.
        compile: how each simulation runs — ``"auto"`` (default): plain UCT (no policy, critic or chance
            nodes) runs as an AOTInductor package when one is loaded or on disk for this model and these
            sizes, else eagerly until this process has run :data:`AUTO_BUILD_AFTER` simulations of it (this
            search's included), then builds one (announced on stderr, kept on disk:
            :mod:`ebmgraph.infer.aot`; a failed build leaves it eager, said once); anything else eagerly.
            ``False``: eagerly. ``True``: ``torch.compile`` (UCT, with or without a critic, compiled into
            it), built once per model, sizes and critic in this process. ``"aot"``: the AOTInductor package
            now (plain UCT).
    """

    def __init__(self, ebm, observed: dict | None, over, *, sample=(), policy=None, critic=None, c: float = 1.4,
                 generator: torch.Generator | None = None, seed: int = 0, batch: int | None = None,
                 init: dict | None = None, compile: bool | str = "auto"):
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
        if compile not in (False, True, "aot", "auto"):
            raise SpecError(f"MCTS compile={compile!r}: choose 'auto', False, True (torch.compile) or 'aot' "
                            f"(AOTInductor)")
        plain = policy is None and not self.sample
        if compile == "aot" and critic is not None:
            raise SpecError("MCTS compile='aot' compiles plain UCT; with a critic use compile=True")
        if compile in (True, "aot") and not plain:
            raise SpecError(f"MCTS compile={compile!r} compiles UCT (with or without a critic); a policy or chance "
                            f"nodes run eagerly: drop compile={compile!r}")
        self.gen = generator if generator is not None else as_generator(seed)
        self.policy, self.critic, self.c = policy, critic, c
        self.simulations_done = 0
        self.stepwise, self.stepwise_reason = _analysis(ebm, self.name, tuple(self.sample))
        critic_kw = ()
        if critic is not None:
            params = inspect.signature(critic).parameters
            critic_kw = tuple(k for k in ("state", "energy") if k in params)
            if critic_kw and self.stepwise is None:
                raise SpecError(f"the critic takes {', '.join(critic_kw)}=, but {ebm.graph.name} keeps no state per "
                                f"node: {self.stepwise_reason}")
        model = StepModel(ebm, self.stepwise) if self.stepwise is not None else None
        self._ctx = model.context(self.prob.observed) if model is not None else ()
        self._obs_names = tuple(sorted(self.prob.observed))
        make = functools.partial(make_simulation, ebm, self.name, self.L, float(c), puct=policy is not None,
                                 policy=policy, critic=critic, critic_kw=critic_kw, chance=tuple(self.sample),
                                 model=model, track_best=not self.sample,
                                 obs_names=self._obs_names)
        self._eager = make()
        self._mode = "eager" if compile is False or (compile == "auto" and (not plain or critic is not None)) \
            else compile
        self._compiled = None
        if self._mode is True:  # a user's critic is compiled into the simulation: its indexing keeps the bounds checks
            key = ("mcts", self.name, self.L, float(c), self._obs_names, critic, critic_kw, model is not None)
            opts = {**MCTS_COMPILE_OPTIONS, "assert_indirect_indexing": critic is not None}
            self._compiled = compiled_once(ebm, key, make, options=opts)
        elif self._mode in ("aot", "auto"):
            self._run = _Run(ebm, self._eager)
            fp = aot.model_fingerprint(ebm)
            self._owner = ebm if fp is None else None
            self._parts = ("mcts-simulation", fp if fp is not None else f"instance {id(ebm)}", self.name, self.L,
                           float(c), self._obs_names, self.stepwise.describe() if model is not None else None)
            if fp is None and self._mode == "auto":
                self._mode = "eager"  # a user's module: no package it could be kept in; compile="aot" builds one
        self.tree = new_tree(self.B, 256, self.K, self.prob.device, self._ctx[0] if model is not None else None)
        dev = self.prob.device
        self.best = torch.full((self.B,), float("inf"), dtype=F64, device=dev)
        self.best_seq = torch.zeros((self.B, self.L), dtype=torch.long, device=dev)
        self.lo = torch.full((self.B,), float("inf"), dtype=F64, device=dev)
        self.hi = torch.full((self.B,), -float("inf"), dtype=F64, device=dev)
        self.runs = {"eager": 0, "compiled": 0}  # simulations run each way (compile="auto" may use both)
        # the start (init, else all zeros) is a candidate: the answer is never worse (scored with the answer)
        self.start = None if self.sample else initial_values(self.prob, init)[self.name]

    # ---------------------------------------------------------------- search
    def _key(self, example: tuple) -> str:
        opts = self._aot_options()
        return aot.digest(self._parts + (aot.signature(example),), opts)

    @staticmethod
    def _aot_options() -> dict:  # AOTInductor's wrapper is C++ already
        return {k: v for k, v in MCTS_COMPILE_OPTIONS.items() if k != "cpp_wrapper"}

    def _package(self, example: tuple, key: str):
        """The AOTInductor runner for these sizes, bound to the model's current weights: ``run(*args)`` (its
        results written in place, as the eager simulation writes them)."""
        runner = aot.load_or_build(self._run, example, key, self._aot_options(), owner=self._owner,
                                   what=f"the MCTS simulation (B={self.B}, L={self.L}, K={self.K}, "
                                        f"capacity {self.tree.visits.shape[1]})", expected_s=BUILD_S)
        state = aot.live_state(self._run)
        return lambda *args: runner(*args, *state)

    def search(self, simulations: int = 200) -> MinimizeResult:
        """Run ``simulations`` more simulations and return the current answer."""
        n = max(int(simulations), 0)
        self.tree = t = grow(self.tree, int(self.tree.size.max()) + n)
        dev, N = t.visits.device, t.visits.shape[1]
        # the search's randomness: a completion per simulation, then a draw per chance latent per simulation
        rolls = torch.zeros((N, self.L), dtype=torch.long, device=dev)
        rolls[:n] = torch.randint(0, self.K, (n, self.L), generator=self.gen).to(dev)
        draws = []
        for s in self.sample:
            d = gibbs_draws(self.prob.ebm, s, n, self.gen, self.prob.dtype, dev)
            draws.append(torch.cat([d, d.new_zeros((N - n, *d.shape[1:]))]))
        tail = tuple(self._ctx) + tuple(self.prob.observed[k] for k in self._obs_names)
        if self._mode in ("aot", "auto"):  # AOT packages read the observed tensors contiguous
            tail = tuple(x.contiguous() for x in tail)
        args = (*t.tensors(), self.lo, self.hi, self.best, self.best_seq, rolls,
                torch.zeros(1, dtype=torch.long, device=dev), *draws, *tail)
        with torch.no_grad():
            fn = self._compiled if self._mode is True else self._eager
            if n and self._mode in ("aot", "auto"):
                key = self._key(args)
                # "auto": a package this process or an earlier one built, else one once this configuration's
                # eager simulations (this search's included) reach AUTO_BUILD_AFTER
                if self._mode == "aot":
                    fn = self._package(args, key)
                elif key not in _FAILED and (aot.is_built(key, self._owner) or
                                             _EAGER_SIMS.get(key, 0) + n >= AUTO_BUILD_AFTER):
                    try:
                        fn = self._package(args, key)
                    except Exception as e:  # noqa: BLE001 - "auto" promises the search, not the package
                        _FAILED.add(key)
                        print(f"ebmgraph: MCTS runs eagerly: its AOTInductor build failed ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:160] if str(e) else ''})", file=sys.stderr)
                if fn is self._eager:
                    _EAGER_SIMS[key] = _EAGER_SIMS.get(key, 0) + n
            for _ in range(n):
                fn(*args)
            self.runs["eager" if fn is self._eager else "compiled"] += n
        self.simulations_done += n
        return self.answer()

    def _greedy(self) -> torch.Tensor:
        """The most visited path from each root, completed with zeros ``[B, L]``."""
        t = self.tree
        b = _rows(t)
        node = torch.zeros_like(b)
        seq = torch.zeros((self.B, self.L), dtype=torch.long, device=b.device)
        go = torch.ones_like(b, dtype=torch.bool)
        for d in range(self.L):
            if not bool(go.any()):
                break
            ch = t.children[b, node]
            vis = torch.where(ch >= 0, t.visits[b[:, None], ch.clamp_min(0)], -1.0)
            go = go & (vis.max(1).values > 0)
            a = vis.argmax(1)
            seq[:, d] = torch.where(go, a, 0)
            node = torch.where(go, ch.gather(1, a[:, None]).squeeze(1), node)
        return seq

    def _root_visits(self) -> torch.Tensor:
        t = self.tree
        ch = t.children[:, 0]
        return torch.where(ch >= 0, t.visits[_rows(t)[:, None], ch.clamp_min(0)], 0.0)

    def answer(self) -> MinimizeResult:
        """Best sequence so far ``{name: [B, L]}`` and its energy: the lower of the start and the best complete
        sequence simulated (the start where they tie), both scored now in one ``[B·2]`` evaluation; with
        chance nodes the most visited path completed greedily, and its exact expected energy."""
        root_vis = self._root_visits()
        if self.sample:
            vals = {self.name: self._greedy()}
            total, terms = self._expected(vals)
        else:
            best = torch.where(torch.isfinite(self.best)[:, None], self.best_seq, self.start)
            cand = torch.stack([self.start, best], 1)  # [B, 2, L]
            with torch.no_grad():
                out = self.prob.evaluate({self.name: cand.flatten(0, 1)}, 2)
            b, both = _rows(self.tree), out.total.view(self.B, 2)
            pick = (both[:, 1] < both[:, 0]).long()
            vals = {self.name: cand[b, pick]}
            total, terms = both[b, pick], {k: v.view(self.B, 2)[b, pick] for k, v in out.terms.items()}
        info = {"simulations": self.simulations_done, "root_visits": root_vis, "action": root_vis.argmax(1),
                "stored_states": self.stepwise is not None, "stepwise": self.stepwise_reason
                if self.stepwise is None else self.stepwise.describe(), "runs": dict(self.runs)}
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
