"""``ebmgraph bench planners``: planner speed side by side in one run (issue 14; never a test).

* **MCTS** on one discrete planning problem — an MLP world model ``s[t+1] = Pred(s[t], a[t])``
  (Figure 4 with discrete actions) and a quadratic cost, ``L`` steps of ``K`` actions — searched
  by ebmgraph's MCTS as a user gets it (``compile="auto"``: an AOTInductor package kept on disk; the
  run times its cold build and a new process's first search on the warm cache), eagerly, with
  ``torch.compile``, optionally by another checkout's search (``--before``), and by mctx on a JAX
  port of the *same* weights (checked against the torch energy), float64 on both sides. mctx runs
  ebmgraph's algorithm through ``mctx.search`` (:func:`mctx_uct_search`: the same UCT rule, and each
  new node valued by the same random completion, or by the same critic with ``--leaf critic``), so
  the chosen actions should match; its stock ``muzero_policy`` (PUCT, its own rollouts) is a further
  row. Both keep each node's predicted state: one MLP step into the new node, then the completion
  rolled on from it (ebmgraph ``L − d`` steps eagerly for one problem, ``L − 1`` masked compiled; mctx
  ``L`` masked), and with the critic one step per simulation. Simulations/s count problem-simulations
  (B × simulations per second). The chosen action (the most visited root child) is compared between
  them and with the exhaustive optimum's first action.
* **CEM and MPPI** at ``K`` samples, horizon ``T``, on Figure 4's MLP predictor: ebmgraph (eager and
  ``compile=True``) against a plain PyTorch loop of the same algorithm and against pytorch-mppi
  0.9.1 driving the same predictor and cost; sample-steps/s = ``K·T·iterations / seconds`` of a
  whole plan. Candidates run round-robin; the table gives medians and the spread (min–max) over
  repetitions, for each of ``runs`` independent runs.

mctx/jax and pytorch-mppi are the ``bench`` extra; a missing one leaves its column out.
"""
from __future__ import annotations

import functools
import statistics
import time

import numpy as np
import torch

from ebmgraph.util import cpu_name, round_robin

MCTS_SPEC = """
name: mcts_bench
index: {t: 0..T-1}
sizes: {T: %d}
variables:
  x: {observed: [4]}
  a[t]: {action: discrete, values: %d}
modules:
  Pred: fixed(mlp(%d, 64, 4, act=tanh, residual=true))
  C: fixed(quadratic(4))
functions:
  s[0]: identity(x)
  s[t+1]: Pred(s[t], a[t])
energy:
  cost[t]: C(s[t+1])
"""
GOAL = (1.0, -1.0, 0.5, 0.0)
MCTX_SAME, MCTX_STOCK = "mctx search, ebmgraph's UCT (jit)", "mctx muzero_policy, PUCT (jit)"
AOT = "ebmgraph MCTS compile='aot'"


def mcts_problem(L: int = 6, K: int = 4, seed: int = 0):
    import ebmgraph

    ebm = ebmgraph.compile(MCTS_SPEC % (L, K, 4 + K), seed=seed)
    with torch.no_grad():
        ebm.mods["C"].goal.copy_(torch.tensor(GOAL))
        ebm.mods["Pred"].net[-1].weight.mul_(3.0)  # actions move the state by about the goal's scale
    return ebm


def jax_port(ebm):
    """The same MLP and cost in JAX (weights copied), and the energy of sequences to check it."""
    import jax.numpy as jnp

    lin = [m for m in ebm.mods["Pred"].net if isinstance(m, torch.nn.Linear)]
    P = {"W1": jnp.asarray(lin[0].weight.detach().t().numpy()), "b1": jnp.asarray(lin[0].bias.detach().numpy()),
         "W2": jnp.asarray(lin[1].weight.detach().t().numpy()), "b2": jnp.asarray(lin[1].bias.detach().numpy()),
         "goal": jnp.asarray(ebm.mods["C"].goal.detach().numpy()), "Lq": jnp.asarray(ebm.mods["C"].L.detach().numpy())}
    K = ebm.graph.var("a").domain.K

    def pred(s, a):
        h = jnp.tanh(jnp.concatenate([s, jnp.eye(K, dtype=s.dtype)[a]], -1) @ P["W1"] + P["b1"])
        return s + h @ P["W2"] + P["b2"]

    def cost(s):
        v = (s - P["goal"]) @ P["Lq"]
        return (v * v).sum(-1)

    def energy(x, seqs):
        s, tot = x, 0.0
        for t in range(seqs.shape[1]):
            s = pred(s, seqs[:, t])
            tot = tot + cost(s)
        return tot

    return pred, cost, energy


def mctx_search(ebm, sims: int):
    """A jitted ``(x [B, 4], key) -> visit probabilities [B, K]`` of mctx's muzero_policy on the port."""
    import jax
    import jax.numpy as jnp
    import mctx

    pred, cost, _ = jax_port(ebm)
    L, K = ebm.var_shape("a")[0], ebm.graph.var("a").domain.K

    def rollout_value(s, depth, key):  # -cost of uniformly random actions from s to the horizon
        acts = jax.random.randint(key, (L, s.shape[0]), 0, K)

        def body(i, carry):
            s, tot = carry
            s2 = pred(s, acts[i])
            live = depth + i < L
            return jnp.where(live[:, None], s2, s), tot + jnp.where(live, cost(s2), 0.0)

        _, tot = jax.lax.fori_loop(0, L, body, (s, jnp.zeros(s.shape[0], s.dtype)))
        return -tot

    def recurrent_fn(params, rng, action, emb):
        s, d = emb
        s2, d2 = pred(s, action), d + 1
        done = d2 >= L
        value = jnp.where(done, 0.0, rollout_value(s2, d2, rng))
        out = mctx.RecurrentFnOutput(reward=-cost(s2), discount=jnp.where(done, 0.0, 1.0),
                                     prior_logits=jnp.zeros((s.shape[0], K)), value=value)
        return out, (s2, d2)

    def search(x, key):
        B = x.shape[0]
        k1, k2 = jax.random.split(key)
        root = mctx.RootFnOutput(prior_logits=jnp.zeros((B, K)), value=rollout_value(x, jnp.zeros(B, jnp.int32), k1),
                                 embedding=(x, jnp.zeros(B, jnp.int32)))
        out = mctx.muzero_policy(None, k2, root, recurrent_fn, num_simulations=sims, max_depth=L,
                                 dirichlet_fraction=0.0)
        return out.action_weights

    return jax.jit(search)


def stay_critic(ebm):
    """A deterministic leaf value for both searches: ``-E`` estimated as the prefix's own costs plus
    its last state's cost for every remaining step (the state held where it is): one pass of the
    world model over the prefix, for a search that keeps no state per node (``--before``); ebmgraph's
    own search hands the critic the stored state and prefix energy instead (:func:`stay_critic_state`),
    and steps once per simulation, as mctx does."""
    M, L = ebm.mods, ebm.var_shape("a")[0]
    K = ebm.graph.var("a").domain.K

    def critic(obs, prefix, depth):
        s = obs["x"]
        acc = torch.zeros(s.shape[0], dtype=s.dtype, device=s.device)
        for t in range(L):
            on = prefix[:, t] >= 0
            s = torch.where(on[:, None], M["Pred"](s, torch.nn.functional.one_hot(prefix[:, t].clamp_min(0), K)
                                                   .to(s.dtype)), s)
            acc = acc + torch.where(on, M["C"](s), 0.0)
        return -(acc + (L - torch.as_tensor(depth, device=s.device)).to(s.dtype) * M["C"](s))

    return critic


def ebmgraph_completions(ebm, sims: int, seed: int) -> torch.Tensor:
    """``[sims, L]``: the random completion each of ebmgraph's simulations uses (one per simulation,
    shared by the batch), drawn from the generator exactly as ``MCTS(seed=seed)`` draws them."""
    from ebmgraph.util import as_generator

    g = as_generator(seed)
    L, K = ebm.var_shape("a")[0], ebm.graph.var("a").domain.K
    return torch.cat([torch.randint(0, K, (1, L), generator=g) for _ in range(sims)])


def mctx_uct_search(ebm, sims: int, c: float = 1.4, leaf: str = "rollout", seed: int = 0):
    """``mctx.search`` running ebmgraph's algorithm — its UCT rule and its leaf values — so the two
    should choose the same action (a jitted ``(x, key) -> root visit counts``).

    The rule, as :func:`ebmgraph.infer.mcts.select` has it: unvisited children first in index order,
    else ``q + c·sqrt(log n / n_a)`` with ``q`` the child's mean total return normalised by the range
    of every leaf value seen in the tree. mctx keeps returns from a node on, so each node's embedding
    carries the return of its prefix; mctx keeps no running range, so the rule takes it over the
    tree's expanded nodes at each step (O(nodes): work ebmgraph does not do).

    Leaf values: ``"rollout"`` completes the new node with the simulation's own completion from
    :func:`ebmgraph_completions` (ebmgraph's common random numbers), stepping the MLP from the node's
    state; mctx passes no simulation index to ``recurrent_fn``, so the index is found by matching
    its key against mctx's key chain (``search`` splits its key in three per simulation, the third
    for expansion; checked by the agreement column). ``"critic"``: :func:`stay_critic`'s value.
    """
    import jax
    import jax.numpy as jnp
    import mctx

    pred, cost, _ = jax_port(ebm)
    L, K = ebm.var_shape("a")[0], ebm.graph.var("a").domain.K
    rolls = jnp.asarray(ebmgraph_completions(ebm, sims, seed).numpy())

    def key_chain(key):  # the expansion key of every simulation, as mctx.search derives them
        out = []
        for _ in range(sims):
            key, _, e = jax.random.split(key, 3)
            out.append(e)
        return jnp.stack(out)

    def recurrent_fn(chain, rng, action, emb):
        s, d, ret = emb
        s2, d2 = pred(s, action), d + 1
        r = -cost(s2)
        done = d2 >= L
        if leaf == "critic":
            v = -(L - d2).astype(s.dtype) * cost(s2)
        else:  # the rest of this simulation's completion, from the new node's state
            acts = rolls[jnp.argmax(jnp.all(chain == rng, axis=1))]

            def body(t, carry):
                x, tot = carry
                live = t >= d2
                x2 = pred(x, jnp.broadcast_to(acts[t], d2.shape))
                return jnp.where(live[:, None], x2, x), tot + jnp.where(live, cost(x2), 0.0)

            v = -jax.lax.fori_loop(0, L, body, (s2, jnp.zeros(s.shape[0], s.dtype)))[1]
        out = mctx.RecurrentFnOutput(reward=r, discount=jnp.where(done, 0.0, 1.0),
                                     prior_logits=jnp.zeros((s.shape[0], K), s.dtype), value=jnp.where(done, 0.0, v))
        return out, (s2, d2, ret + r)

    def uct(rng_key, tree, node, depth=None):  # one problem's tree (mctx vmaps the descent)
        ret = tree.embeddings[2]
        idx = jnp.arange(tree.node_visits.shape[0])
        seen = (tree.node_visits > 0) & (idx != 0)
        total = ret + tree.raw_values
        lo = jnp.min(jnp.where(seen, total, jnp.inf))
        span = jnp.maximum(jnp.max(jnp.where(seen, total, -jnp.inf)) - lo, 1e-12)
        vis = tree.children_visits[node]
        q_tot = ret[node] + tree.children_rewards[node] + tree.children_discounts[node] * tree.children_values[node]
        q = jnp.where(vis > 0, (q_tot - lo) / span, 0.0)
        n = jnp.maximum(tree.node_visits[node] - (node == 0), 1.0)  # mctx counts the root's own evaluation
        ucb = q + c * jnp.sqrt(jnp.log(n) / vis)
        missing = tree.children_index[node] < 0
        return jnp.where(missing.any(), jnp.argmax(missing), jnp.argmax(ucb)).astype(jnp.int32)

    def search(x, key):
        B = x.shape[0]
        root = mctx.RootFnOutput(prior_logits=jnp.zeros((B, K), x.dtype), value=jnp.zeros(B, x.dtype),
                                 embedding=(x, jnp.zeros(B, jnp.int32), jnp.zeros(B, x.dtype)))
        tree = mctx.search(key_chain(key), key, root=root, recurrent_fn=recurrent_fn,
                           root_action_selection_fn=uct, interior_action_selection_fn=uct,
                           num_simulations=sims, max_depth=L)
        return tree.children_visits[:, 0]

    return jax.jit(search)


def stay_critic_state(ebm):
    """:func:`stay_critic` from what the tree stores (step-wise specs): the leaf's predicted state and its
    prefix's energy, so no pass over the prefix (``MCTS`` hands a critic ``state=`` and ``energy=``)."""
    C, L = ebm.mods["C"], ebm.var_shape("a")[0]

    def critic(obs, prefix, depth, state, energy):
        return -(energy + (L - depth).to(energy.dtype) * C(state).reshape(-1).to(energy.dtype))

    return critic


def load_before(path: str):
    """The ebmgraph package of another checkout (``git worktree add /tmp/base HEAD``), imported as
    ``ebmgraph_before`` beside this one, for side-by-side runs of two versions."""
    import importlib.util
    import sys
    from pathlib import Path

    if "ebmgraph_before" in sys.modules:
        return sys.modules["ebmgraph_before"]
    root = Path(path) / "ebmgraph"
    spec = importlib.util.spec_from_file_location("ebmgraph_before", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["ebmgraph_before"] = mod
    kernels = Path(path) / "kernels"
    if kernels.is_dir() and not (root / "kernels").exists():  # installed as ebmgraph.kernels (package_dir)
        ks = importlib.util.spec_from_file_location("ebmgraph_before.kernels", kernels / "__init__.py",
                                                    submodule_search_locations=[str(kernels)])
        sys.modules["ebmgraph_before.kernels"] = importlib.util.module_from_spec(ks)
        ks.loader.exec_module(sys.modules["ebmgraph_before.kernels"])
    spec.loader.exec_module(mod)
    return mod


def _before_model(ebm, before, L: int, K: int, seed: int):
    """The same model (spec and weights) compiled by the ``before`` package."""
    old = before.compile(MCTS_SPEC % (L, K, 4 + K), seed=seed).double()
    old.load_state_dict(ebm.state_dict())
    return old


WARM = """
import json, sys, time
t0 = time.perf_counter()
import torch
sys.path.insert(0, {root!r})
torch.set_num_threads({threads})
from benchmarks.planners import mcts_problem
from ebmgraph.infer import MCTS
ebm = mcts_problem({L}, {K}, {seed}).double()
x = torch.randn({B}, 4, generator=torch.Generator().manual_seed({xseed})).double()
t1 = time.perf_counter()
r = MCTS(ebm, {{"x": x}}, ["a"], seed={seed}).search({sims})
t2 = time.perf_counter()
print(json.dumps({{"start_s": t1 - t0, "first_search_s": t2 - t1, "compiled": r.info["runs"]["compiled"],
                  "inductor_imported": "torch._inductor" in sys.modules}}))
"""


def warm_process(B: int, L: int, K: int, sims: int, seed: int, threads: int) -> dict:
    """A new process's first default search with the packages already on disk (the warm cache):
    ``{"start_s": imports and model, "first_search_s": the search, loading included, "compiled": ...}``."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    code = WARM.format(root=str(Path(__file__).resolve().parents[1]), threads=threads, L=L, K=K, seed=seed, B=B,
                       xseed=100 + B, sims=sims)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


DEFAULT, EAGER, COMPILED = "ebmgraph MCTS default", "ebmgraph MCTS compile=False", "ebmgraph MCTS compile=True"
B_EAGER, B_AOT = "before: MCTS compile=False", "before: MCTS compile='aot'"


def _mcts_models(L: int, K: int, seed: int, leaf: str, before: str | None):
    """The problem in float64 (on both sides: no near-ties broken apart), the ``before`` checkout's copy of
    it and that checkout's MCTS class, and each side's critic (``{}``: leaves valued by random completions)."""
    ebm = mcts_problem(L, K, seed).double()
    old = _before_model(ebm, load_before(before), L, K, seed) if before else None
    old_mcts = load_before(before).infer.mcts.MCTS if before else None
    if leaf == "critic":
        crit, old_crit = {"critic": stay_critic_state(ebm)}, {"critic": stay_critic(old)} if old else {}
    else:
        crit = old_crit = {}
    return ebm, old, old_mcts, crit, old_crit


def _mctx_port(ebm, L: int, K: int, mctx_rows: bool):
    """``(True, max |JAX port − torch energy|)`` on 256 sequences, or ``(why the mctx rows are left out, None)``."""
    try:
        if not mctx_rows:
            raise ImportError(name="(rows not asked for)")
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)

        _, _, jenergy = jax_port(ebm)
        seqs = torch.randint(0, K, (256, L), generator=torch.Generator().manual_seed(1))
        xs = torch.randn(256, 4, generator=torch.Generator().manual_seed(2)).to(torch.float64)
        with torch.no_grad():
            ref = ebm.energy(x=xs, a=seqs).total.numpy()
        return True, float(np.abs(np.asarray(jenergy(jnp.asarray(xs.numpy()), jnp.asarray(seqs.numpy()))) - ref).max())
    except ImportError as e:
        return f"not installed ({e.name}); pip install 'ebmgraph[bench]'", None


def _ours(ebm, x, sims: int, L: int, K: int, seed: int, crit: dict, compile: bool, torch_compile: bool,
          threads: int, built: dict) -> dict:
    """ebmgraph's searches of problems ``x [B, 4]`` (default, eager, ``compile=True``) as callables; what is
    built before the timing (the default's package cold and warm, torch.compile) is timed into ``built``."""
    from ebmgraph.infer.mcts import MCTS

    B = len(x)
    fns = {DEFAULT: lambda: MCTS(ebm, {"x": x}, ["a"], seed=seed, **crit).search(sims),
           EAGER: lambda: MCTS(ebm, {"x": x}, ["a"], seed=seed, compile=False, **crit).search(sims)}
    if compile and not crit:  # the default's package, built before the timing (cold: nothing on disk)
        t0 = time.perf_counter()
        MCTS(ebm, {"x": x}, ["a"], seed=seed, compile="aot").search(sims)
        built["cold_s"][B] = time.perf_counter() - t0
        built["warm"][B] = warm_process(B, L, K, sims, seed, threads)
    if compile and torch_compile:
        fns[COMPILED] = lambda: MCTS(ebm, {"x": x}, ["a"], seed=seed, compile=True, **crit).search(sims)
        t0 = time.perf_counter()
        fns[COMPILED]()  # compile outside the timing
        built["compile_s"][B] = time.perf_counter() - t0
    return fns


def _before(old, old_mcts, x, sims: int, seed: int, old_crit: dict, compile: bool, built: dict) -> dict:
    """The ``before`` checkout's searches of ``x [B, 4]`` (eager; its ``compile='aot'``, built outside the timing)."""
    fns = {B_EAGER: lambda: old_mcts(old, {"x": x}, ["a"], seed=seed, **old_crit).search(sims)}
    if compile and not old_crit:
        fns[B_AOT] = lambda: old_mcts(old, {"x": x}, ["a"], seed=seed, compile="aot").search(sims)
        t0 = time.perf_counter()
        fns[B_AOT]()
        built["before_aot_s"][len(x)] = time.perf_counter() - t0
    return fns


def _mctx(ebm, x, sims: int, leaf: str, seed: int) -> dict:
    """mctx's searches of ``x [B, 4]`` (jit-compiled outside the timing), each returning root visits ``[B, K]``."""
    import jax
    import jax.numpy as jnp

    xj = jnp.asarray(x.numpy())
    searches = {MCTX_SAME: mctx_uct_search(ebm, sims, leaf=leaf, seed=seed)}
    if leaf == "rollout":
        searches[MCTX_STOCK] = mctx_search(ebm, sims)
    keys = iter(range(10_000))
    fns = {}
    for k, search in searches.items():
        search(xj, jax.random.PRNGKey(0)).block_until_ready()  # compile outside the timing
        fns[k] = functools.partial(lambda f: np.asarray(f(xj, jax.random.PRNGKey(next(keys)))), search)
    return fns


def _mcts_rows(ebm, x, sims: int, K: int, L: int, check: int, times: dict, outs: dict) -> list[dict]:
    """One row per method: B·sims/s (median, spread), agreement of the chosen action with the eager search
    and with the exhaustive optimum's first action (the first ``check`` problems, where K^L is enumerable)."""
    from ebmgraph.infer import minimize

    B = len(x)
    n = min(B, check) if K ** L <= 1_000_000 else 0  # the exhaustive optimum where enumerating is feasible
    with torch.no_grad():
        opt = minimize(ebm, {"x": x[:n]}, over=["a"], method="exhaustive").values["a"][:, 0].numpy() if n \
            else np.zeros(0, dtype=np.int64)
    acts = {}
    for k, o in outs.items():
        acts[k] = o.argmax(1) if isinstance(o, np.ndarray) else o.info["action"].numpy()
    ours = acts[EAGER]
    rows = []
    for k, ts in times.items():
        med = statistics.median(ts)
        row = {"B": B, "method": k, "sims_per_s": B * sims / med,
               "spread": (B * sims / max(ts), B * sims / min(ts)),
               "agree_with_ebmgraph": float((acts[k] == ours).mean()),
               "optimal_first_action": float((acts[k][:n] == opt).mean()) if n else float("nan"), "checked": n}
        if k == DEFAULT:
            row["runs"] = outs[k].info["runs"]
        rows.append(row)
    return rows


def bench_mcts(batches=(1, 64, 1024), sims: int = 64, L: int = 6, K: int = 4, reps: int = 3, check: int = 64,
               seed: int = 0, compile: bool = True, leaf: str = "rollout", before: str | None = None,
               threads: int = 1, mctx_rows: bool = True, torch_compile: bool = True) -> dict:
    """Simulations/s of ebmgraph's MCTS as a user gets it (``compile="auto"``, the package built first: the
    cold build timed, then a new process's first search timed on the warm cache), eagerly, with
    ``torch.compile``, the ``before`` checkout's search (``load_before``), and mctx on the same work.

    mctx runs ebmgraph's algorithm (:func:`mctx_uct_search`: its UCT rule and its leaf values), in
    float64 on both sides, so the two should choose the same action. ``leaf="rollout"``: nodes valued
    by ebmgraph's random completions (and mctx's stock ``muzero_policy``, PUCT with its own random
    rollouts, as a further row: another algorithm). ``leaf="critic"``: by :func:`stay_critic` (from the
    stored state, :func:`stay_critic_state`, where the tree keeps one; the default then runs eagerly).
    """
    if leaf not in ("rollout", "critic"):
        raise ValueError(f"leaf must be 'rollout' or 'critic', not {leaf!r}")
    ebm, old, old_mcts, crit, old_crit = _mcts_models(L, K, seed, leaf, before)
    have_mctx, port_err = _mctx_port(ebm, L, K, mctx_rows)
    rows, built = [], {"compile_s": {}, "cold_s": {}, "warm": {}, "before_aot_s": {}}
    for B in batches:
        x = torch.randn(B, 4, generator=torch.Generator().manual_seed(100 + B)).to(torch.float64)
        fns = _ours(ebm, x, sims, L, K, seed, crit, compile, torch_compile, threads, built)
        if old is not None:
            fns.update(_before(old, old_mcts, x, sims, seed, old_crit, compile, built))
        if have_mctx is True:
            fns.update(_mctx(ebm, x, sims, leaf, seed))
        times, outs = round_robin(fns, reps)
        rows += _mcts_rows(ebm, x, sims, K, L, check, times, outs)
    return {"rows": rows, "port_err": port_err, "mctx": have_mctx, "sims": sims, "L": L, "K": K,
            "compile_s": built["compile_s"], "cold_s": built["cold_s"], "warm": built["warm"],
            "before_aot_s": built["before_aot_s"], "leaf": leaf, "before": before}


# ----------------------------------------------------------------------------- CEM / MPPI
def _plain_rollout(ebm, x, T):
    M = ebm.mods
    s0 = M.Enc(x)

    def f(a):  # a: [N, T, 1] -> energy [N]
        s, tot = s0.expand(a.shape[0], -1), 0.0
        for t in range(T):
            s = M.Pred(s, a[:, t])
            tot = tot + M.C(s)
        return tot

    return f


def plain_cem(f, T, K, iters, sigma, elite_frac=0.1, momentum=0.1, lo=-2.0, hi=2.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mu, sig = torch.zeros(T, 1), torch.full((T, 1), sigma)
    n_el = max(1, int(round(elite_frac * K)))
    for _ in range(iters):
        xs = (mu + sig * torch.randn((K, T, 1), generator=gen)).clamp(lo, hi)
        el = xs[f(xs).topk(n_el, largest=False).indices]
        mu = momentum * mu + (1 - momentum) * el.mean(0)
        sig = (momentum * sig + (1 - momentum) * el.std(0, unbiased=False)).clamp_min(1e-6)
    return mu


def plain_mppi(f, T, K, iters, sigma, temperature, lo=-2.0, hi=2.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mu = torch.zeros(T, 1)
    for _ in range(iters):
        xs = (mu + sigma * torch.randn((K, T, 1), generator=gen)).clamp(lo, hi)
        e = f(xs)
        w = torch.softmax(-(e - e.min()) / temperature, 0)
        mu = (w[:, None, None] * xs).sum(0)
    return mu


def bench_sampling(K: int = 1024, T: int = 32, iters: int = 5, reps: int = 5, runs: int = 3, sigma: float = 1.0,
                   temperature: float = 1.0, compile: bool = True, seed: int = 0) -> dict:
    """sample-steps/s of whole CEM and MPPI plans: ebmgraph vs a plain loop vs pytorch-mppi 0.9.1."""
    import ebmgraph

    from ebmgraph.demo import specs_dir
    from ebmgraph.infer import minimize

    ebm = ebmgraph.compile(specs_dir() / "fig04_mode2.yaml", sizes={"T": T}, seed=seed)
    x = torch.tensor([[0.8, -0.3, 0.5]])
    f = _plain_rollout(ebm, x, T)
    M = ebm.mods
    common = {"samples": K, "iters": iters, "sigma": sigma, "seed": seed}
    fns = {
        "ebmgraph CEM": lambda: minimize(ebm, {"x": x}, over=["a"], method="cem", **common).values["a"][0],
        "plain PyTorch CEM": lambda: plain_cem(f, T, K, iters, sigma, seed=seed),
        "ebmgraph MPPI": lambda: minimize(ebm, {"x": x}, over=["a"], method="mppi", temperature=temperature,
                                          **common).values["a"][0],
        "plain PyTorch MPPI": lambda: plain_mppi(f, T, K, iters, sigma, temperature, seed=seed),
    }
    if compile:
        fns["ebmgraph CEM compile=True"] = lambda: minimize(ebm, {"x": x}, over=["a"], method="cem", compile=True,
                                                            **common).values["a"][0]
        fns["ebmgraph MPPI compile=True"] = lambda: minimize(ebm, {"x": x}, over=["a"], method="mppi",
                                                             temperature=temperature, compile=True,
                                                             **common).values["a"][0]
    pm = True
    try:
        from pytorch_mppi import MPPI

        s0 = M.Enc(x)[0].detach()

        def theirs():
            torch.manual_seed(seed)
            ctrl = MPPI(lambda s, u: M.Pred(s, u), lambda s, u: M.C(s), 3, sigma ** 2 * torch.eye(1), num_samples=K,
                        horizon=T, lambda_=temperature, u_min=torch.tensor([-2.0]), u_max=torch.tensor([2.0]))
            for _ in range(iters):
                ctrl.command(s0, shift_nominal_trajectory=False)
            return ctrl.U

        fns["pytorch-mppi 0.9.1 MPPI"] = theirs
    except ImportError as e:
        pm = f"not installed ({e.name}); pip install 'ebmgraph[bench]'"
    out = {"runs": [], "K": K, "T": T, "iters": iters, "pytorch_mppi": pm}
    with torch.no_grad():
        if compile:  # compile once, outside every timing (later plans reuse the compiled iteration)
            t0 = time.perf_counter()
            fns["ebmgraph CEM compile=True"]()
            fns["ebmgraph MPPI compile=True"]()
            out["compile_s"] = time.perf_counter() - t0
        for r in range(runs):
            times, plans = round_robin(fns, reps)
            rows = {}
            for k, ts in times.items():
                a = plans[k].reshape(1, T, 1)
                rows[k] = {"steps_per_s": K * T * iters / statistics.median(ts),
                           "spread": (K * T * iters / max(ts), K * T * iters / min(ts)),
                           "energy": float(f(a)[0])}
            out["runs"].append(rows)
    return out


# ----------------------------------------------------------------------------- printing
def print_mcts(res: dict) -> None:
    leaf = res.get("leaf", "rollout")
    print(f"\nMCTS: L={res['L']} steps x K={res['K']} actions, MLP world model (4 -> 64 -> 4, tanh, residual), "
          f"{res['sims']} simulations per search; leaves valued by "
          + ("ebmgraph's random completions" if leaf == "rollout" else "the stay-put critic")
          + "; float64; mctx runs ebmgraph's UCT rule and leaf values (muzero_policy: its own PUCT and rollouts)")
    if res.get("before"):
        print(f"  before: the search of the checkout at {res['before']} (same model and weights)")
    if res["mctx"] is not True:
        print(f"  mctx column skipped: {res['mctx']}")
    else:
        print(f"  JAX port vs torch energy on 256 sequences: max |diff| = {res['port_err']:.2e}")
    print(f"{'B':>6} {'method':<36}{'sims/s (median)':>16}{'spread (min-max)':>22}{'agree':>8}{'optimal':>9}")
    for r in res["rows"]:
        lo, hi = r["spread"]
        print(f"{r['B']:>6} {r['method']:<36}{r['sims_per_s']:>16,.0f}{f'{lo:,.0f}-{hi:,.0f}':>22}"
              f"{r['agree_with_ebmgraph']:>8.2f}{r['optimal_first_action']:>9.2f}")
    for r in res["rows"]:
        if r["method"] == DEFAULT:
            print(f"  B={r['B']}: the default ran {r['runs']['compiled']} of its simulations compiled, "
                  f"{r['runs']['eager']} eagerly")
    if res.get("cold_s"):
        print("  default, cold (nothing on disk): export + AOTInductor build + the first search: "
              + ", ".join(f"B={B} {v:.1f} s" for B, v in res["cold_s"].items()))
    for B, w in res.get("warm", {}).items():
        print(f"  default, warm (a new process, the package on disk): B={B} " +
              (f"first search {w['first_search_s']:.2f} s (package load included; {w['compiled']} simulations "
               f"compiled; torch._inductor {'imported' if w.get('inductor_imported') else 'not imported'}), after "
               f"{w['start_s']:.1f} s of imports and model" if "error" not in w else w["error"]))
    if res.get("compile_s"):
        print("  compile=True: torch.compile of one simulation, once per batch size, outside the timing: "
              + ", ".join(f"B={B} {v:.1f} s" for B, v in res["compile_s"].items()))
    if res.get("before_aot_s"):
        print("  before compile='aot': export + build, once per batch size, outside the timing: "
              + ", ".join(f"B={B} {v:.1f} s" for B, v in res["before_aot_s"].items()))
    by = {}
    for r in res["rows"]:
        by.setdefault(r["B"], {})[r["method"]] = r["sims_per_s"]
    for B, d in by.items():
        if MCTX_SAME in d:
            m = d[MCTX_SAME]
            ratios = [f"{d[k] / m:.2f}x {k.removeprefix('ebmgraph MCTS ')}"
                      for k in (DEFAULT, EAGER, COMPILED, B_EAGER, B_AOT) if k in d]
            print(f"  B={B}: ebmgraph / mctx = " + ", ".join(ratios))
        if B_EAGER in d:
            print(f"  B={B}: after / before = {d[EAGER] / d[B_EAGER]:.2f}x eager"
                  + (f", {d[DEFAULT] / d[B_AOT]:.2f}x default / before's compile='aot'" if B_AOT in d else ""))
    print("  agree: fraction of problems whose chosen action (most visited root child) equals ebmgraph's eager one; "
          "optimal: equals the exhaustive optimum's first action (first 64 problems)")


def print_sampling(res: dict) -> None:
    print(f"\nCEM / MPPI: K={res['K']} samples, T={res['T']} steps, {res['iters']} iterations per plan, "
          f"Figure 4's MLP predictor (one problem)")
    if "compile_s" in res:
        print(f"  torch.compile of the two planning iterations, once, outside the timing: {res['compile_s']:.1f} s")
    if res["pytorch_mppi"] is not True:
        print(f"  pytorch-mppi column skipped: {res['pytorch_mppi']}")
    for i, rows in enumerate(res["runs"]):
        print(f"run {i + 1}: {'method':<30}{'M sample-steps/s':>18}{'spread (min-max)':>20}{'plan energy':>13}")
        for k, r in rows.items():
            lo, hi = r["spread"]
            print(f"       {k:<30}{r['steps_per_s'] / 1e6:>18.2f}{f'{lo / 1e6:.2f}-{hi / 1e6:.2f}':>20}"
                  f"{r['energy']:>13.3f}")
        print("       " + "; ".join(f"{a} / {b} = {v:.2f}x" for a, b, v in sampling_ratios(rows)))


def sampling_ratios(rows: dict) -> list[tuple[str, str, float]]:
    out = []
    for alg in ("CEM", "MPPI"):
        plain = rows.get(f"plain PyTorch {alg}")
        for ours in (f"ebmgraph {alg}", f"ebmgraph {alg} compile=True"):
            if ours in rows and plain:
                out.append((ours, "plain", rows[ours]["steps_per_s"] / plain["steps_per_s"]))
    pm = rows.get("pytorch-mppi 0.9.1 MPPI")
    for ours in ("ebmgraph MPPI", "ebmgraph MPPI compile=True"):
        if ours in rows and pm:
            out.append((ours, "pytorch-mppi", rows[ours]["steps_per_s"] / pm["steps_per_s"]))
    ours = "ebmgraph CEM compile=True"  # pytorch-mppi has no CEM: sample-steps/s of the two algorithms
    if ours in rows and pm:
        out.append((ours, "pytorch-mppi (its MPPI)", rows[ours]["steps_per_s"] / pm["steps_per_s"]))
    return out


def single_thread(n: int) -> None:
    """Both frameworks on ``n`` intra-op threads (XLA reads its flags when jax is first imported:
    its idle pool otherwise spins beside torch's on a small machine and the columns measure the fight)."""
    import os

    torch.set_num_threads(n)
    if "jax" not in __import__("sys").modules:
        os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'} "
                                           f"intra_op_parallelism_threads={n}")


def run(args) -> int:
    torch.manual_seed(0)
    single_thread(args.threads)
    print(f"machine: {cpu_name()} ({torch.get_num_threads()} threads); torch {torch.__version__}; "
          f"XLA_FLAGS={__import__('os').environ.get('XLA_FLAGS', '')!r}")
    if args.what in ("all", "mcts"):
        import os
        import tempfile

        if not args.cache:  # a fresh folder: the first build is cold, as a new user's
            args.cache = tempfile.mkdtemp(prefix="ebmgraph-bench-cache-")
        was = os.environ.get("EBMGRAPH_CACHE_DIR")
        os.environ["EBMGRAPH_CACHE_DIR"] = args.cache  # read by this process's builds and the warm process
        print(f"AOT package cache: {args.cache}")
        try:
            for L in args.horizon_mcts:
                for leaf in (["rollout", "critic"] if args.leaf == "both" else [args.leaf]):
                    print_mcts(bench_mcts(tuple(args.batches), sims=args.sims, L=L, K=args.actions, reps=args.reps,
                                          compile=not args.no_compile, leaf=leaf, before=args.before,
                                          threads=args.threads, torch_compile=not args.no_torch_compile))
        finally:
            if was is None:
                os.environ.pop("EBMGRAPH_CACHE_DIR", None)
            else:
                os.environ["EBMGRAPH_CACHE_DIR"] = was
    if args.what in ("all", "sampling"):
        print_sampling(bench_sampling(K=args.samples, T=args.horizon, iters=args.iters, reps=args.reps,
                                      runs=args.runs, compile=not args.no_compile))
    return 0


def register(bsub) -> None:
    p = bsub.add_parser("planners", help="MCTS vs mctx, CEM/MPPI vs plain loops and pytorch-mppi (issue 14)")
    p.add_argument("what", nargs="?", default="all", choices=["all", "mcts", "sampling"])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024], help="MCTS batch sizes B")
    p.add_argument("--sims", type=int, default=64, help="MCTS simulations per search")
    p.add_argument("--horizon-mcts", type=int, nargs="+", default=[6], help="MCTS plan lengths L (one table each)")
    p.add_argument("--actions", type=int, default=4, help="MCTS actions K")
    p.add_argument("--leaf", choices=["rollout", "critic", "both"], default="rollout",
                   help="MCTS leaf values, in both searches: ebmgraph's random completions, or a deterministic "
                        "stay-put critic")
    p.add_argument("--samples", type=int, default=1024, help="CEM/MPPI samples K")
    p.add_argument("--horizon", type=int, default=32, help="CEM/MPPI horizon T")
    p.add_argument("--iters", type=int, default=5, help="CEM/MPPI iterations per plan")
    p.add_argument("--reps", type=int, default=5, help="round-robin repetitions (medians reported)")
    p.add_argument("--runs", type=int, default=3, help="independent runs of the CEM/MPPI table")
    p.add_argument("--no-compile", action="store_true",
                   help="build nothing: no compile=True rows, no package for the default (which then runs eagerly)")
    p.add_argument("--no-torch-compile", action="store_true", help="leave out the MCTS compile=True rows")
    p.add_argument("--before", default=None, metavar="CHECKOUT",
                   help="also time the MCTS of another checkout (e.g. `git worktree add /tmp/base HEAD`), same model")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="AOT package folder for the run (default: a new empty one, so the first build is cold)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads of torch and of XLA (both)")
    p.set_defaults(fn=run)
