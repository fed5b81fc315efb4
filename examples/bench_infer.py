"""Benchmark (not a test): ebmgraph's MCTS vs mctx, and CEM/MPPI vs plain PyTorch loops, on the CPU.

Run:  python examples/bench_infer.py
mctx is optional (``pip install jax mctx``); without it its column is skipped.
"""
from __future__ import annotations

import time

import numpy as np
import torch

import ebmgraph
from ebmgraph.util import cpu_name
from ebmgraph.infer import minimize

CHAIN = """
name: chain
index: {t: 0..T-1}
sizes: {T: 4}
variables:
  x: {observed: [2]}
  a[t]: {action: discrete, values: 3}
modules:
  Pred: fixed(mlp(5, 16, 2, act=tanh, residual=true))
  C: fixed(quadratic(2))
functions:
  s[0]: identity(x)
  s[t+1]: Pred(s[t], a[t])
energy:
  cost[t]: C(s[t+1])
"""

PLAN = """
name: cont
index: {t: 0..T-1}
sizes: {T: 8}
variables:
  x: {observed: [4]}
  a[t]: {action: [2], bounds: [-1, 1]}
modules:
  Pred: fixed(mlp(6, 32, 4, act=tanh, residual=true))
  C: fixed(quadratic(4))
functions:
  s[0]: identity(x)
  s[t+1]: Pred(s[t], a[t])
energy:
  cost[t]: C(s[t+1])
"""




def bench_mcts(sims: int = 200):
    ebm = ebmgraph.compile(CHAIN, seed=0)
    obs = {"x": torch.tensor([[1.0, -0.5]])}
    exact = minimize(ebm, obs, over=["a"], method="exhaustive")
    t = time.perf_counter()
    r = minimize(ebm, obs, over=["a"], method="mcts", simulations=sims, seed=0)
    dt = time.perf_counter() - t
    rows = [("ebmgraph MCTS (UCT)", sims / dt, int(r.info["action"][0]), float(r.energy[0]))]
    try:
        import jax
        import jax.numpy as jnp
        import mctx
    except ImportError:
        print("mctx/jax not installed: skipping the mctx column (pip install jax mctx)")
        return rows, exact
    L, K = 4, 3
    all_seq = np.array(np.meshgrid(*[range(K)] * L, indexing="ij")).reshape(L, -1).T  # [K^L, L]
    with torch.no_grad():  # the same energies, tabulated: mctx's environment is a lookup
        E = ebm.energy(x=obs["x"].expand(len(all_seq), 2), a=torch.as_tensor(all_seq)).total.numpy()
    table = jnp.asarray(E.reshape([K] * L))

    def recurrent_fn(params, rng, action, emb):  # emb: [B, L+1] decided actions and depth
        depth = emb[:, -1]
        emb = emb.at[jnp.arange(emb.shape[0]), depth].set(action)
        emb = emb.at[:, -1].add(1)
        done = emb[:, -1] >= L
        idx = tuple(jnp.clip(emb[:, i], 0, K - 1) for i in range(L))
        reward = jnp.where(done, -table[idx], 0.0)
        out = mctx.RecurrentFnOutput(reward=reward, discount=jnp.where(done, 0.0, 1.0),
                                     prior_logits=jnp.zeros((emb.shape[0], K)), value=jnp.zeros(emb.shape[0]))
        return out, emb

    root = mctx.RootFnOutput(prior_logits=jnp.zeros((1, K)), value=jnp.zeros(1),
                             embedding=jnp.zeros((1, L + 1), dtype=jnp.int32))
    search = jax.jit(lambda key: mctx.muzero_policy(None, key, root, recurrent_fn, num_simulations=sims,
                                                      max_depth=L))
    out = search(jax.random.PRNGKey(0))
    out.action.block_until_ready()  # compile outside the timing
    t = time.perf_counter()
    out = search(jax.random.PRNGKey(1))
    out.action.block_until_ready()
    dt = time.perf_counter() - t
    rows.append(("mctx muzero_policy (jit)", sims / dt, int(out.action[0]), float("nan")))
    return rows, exact


def plain_cem(f, mu, sig, K, iters, n_elite, gen, lo, hi):
    for _ in range(iters):
        xs = (mu + sig * torch.randn((K,) + mu.shape, generator=gen)).clamp(lo, hi)
        e = f(xs)
        el = xs[e.topk(n_elite, largest=False).indices]
        mu, sig = el.mean(0), el.std(0, unbiased=False)
    return mu


def plain_mppi(f, mu, sig, K, iters, lam, gen, lo, hi):
    for _ in range(iters):
        xs = (mu + sig * torch.randn((K,) + mu.shape, generator=gen)).clamp(lo, hi)
        w = torch.softmax(-f(xs) / lam, 0)
        mu = (w.view(-1, *[1] * mu.dim()) * xs).sum(0)
    return mu


def bench_sampling(K: int = 256, iters: int = 30):
    ebm = ebmgraph.compile(PLAN, seed=0)
    obs = {"x": torch.tensor([[0.8, -0.3, 0.5, 0.1]])}

    def f(a):
        with torch.no_grad():
            return ebm.energy(x=obs["x"].expand(a.shape[0], 4), a=a).total

    rows = []
    minimize(ebm, obs, over=["a"], method="cem", samples=K, iters=2)  # warm-up (allocator, first calls)
    f(torch.zeros(K, 8, 2))
    for name, kw in [("cem", {"elite_frac": 0.1, "momentum": 0.0}), ("mppi", {"temperature": 0.1})]:
        t = time.perf_counter()
        r = minimize(ebm, obs, over=["a"], method=name, samples=K, iters=iters, sigma=0.5, seed=0, **kw)
        dt = time.perf_counter() - t
        rows.append((f"ebmgraph {name.upper()}", K * iters / dt, "-", float(r.energy[0])))
        gen = torch.Generator().manual_seed(0)
        mu, sig = torch.zeros(8, 2), torch.full((8, 2), 0.5)
        t = time.perf_counter()
        if name == "cem":
            a = plain_cem(f, mu, sig, K, iters, int(0.1 * K), gen, -1, 1)
        else:
            a = plain_mppi(f, mu, sig, K, iters, 0.1, gen, -1, 1)
        dt = time.perf_counter() - t
        rows.append((f"plain PyTorch {name.upper()}", K * iters / dt, "-", float(f(a[None])[0])))
    return rows


def main():
    torch.manual_seed(0)
    print(f"CPU: {cpu_name()}  (torch threads: {torch.get_num_threads()})")
    mrows, exact = bench_mcts()
    print(f"\nMCTS on a 4-step, 3-action planning problem (exhaustive optimum: first action "
          f"{int(exact.values['a'][0, 0])}, energy {float(exact.energy[0]):.5f})")
    print(f"{'method':<28}{'simulations/s':>15}{'action':>8}{'energy':>12}")
    for n, s, a, e in mrows:
        print(f"{n:<28}{s:>15.1f}{a:>8}{e:>12.5f}")
    srows = bench_sampling()
    print("\nCEM / MPPI on an 8-step continuous plan (K=256 samples, 30 iterations)")
    print(f"{'method':<28}{'samples/s':>15}{'':>8}{'energy':>12}")
    for n, s, a, e in srows:
        print(f"{n:<28}{s:>15.1f}{a:>8}{e:>12.5f}")


if __name__ == "__main__":
    main()
