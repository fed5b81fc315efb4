"""How far a compiled predictor step can go on this CPU (issue 14's CEM/MPPI line; a measurement, not a test).

Figure 4's predictor shape (state 3, action 1, mlp 4 -> 32 -> 3, tanh, residual) and a quadratic cost, rolled
out T = 32 steps for K = 1,024 samples under torch.compile, five ways, round-robin in one process:

* ``std``: as written (Linear + torch.tanh);
* ``pw``: the first layer as pointwise multiply-adds (torch.tanh);
* ``pw+rtanh``: that plus an XLA/Eigen-style rational tanh;
* ``exp-tanh``: as written, compiled with inductor's exp-based tanh (``cpp.use_decompose_tanh``, what the
  planners use: ebmgraph.infer.core.PLANNER_COMPILE_OPTIONS);
* ``exp-tanh+fused``: that plus the 32 -> 3 read-out as a broadcast multiply-sum (what ebmgraph.layers.linear
  does under torch.compile for small maps).

Prints the median µs per step over 15 rounds and the largest relative energy error against the eager rollout.

    .venv/bin/python benchmarks/mppi_step.py
"""
import time

import torch

torch.set_num_threads(1)
torch.manual_seed(0)
K, T = 1024, 32
W1 = torch.randn(32, 4) * 0.5; b1 = torch.randn(32) * 0.1; W2 = torch.randn(3, 32) * 0.3; b2 = torch.randn(3) * 0.1
g = torch.randn(3)


def rtanh(x):  # Eigen/XLA-style rational tanh (float32)
    x = x.clamp(-7.90531110763549805, 7.90531110763549805)
    x2 = x * x
    p = x2 * -2.76076847742355e-16 + 2.00018790482477e-13
    p = x2 * p + -8.60467152213735e-11; p = x2 * p + 5.12229709037114e-08; p = x2 * p + 1.48572235717979e-05
    p = x2 * p + 6.37261928875436e-04; p = x2 * p + 4.89352455891786e-03; p = x * p
    q = x2 * 1.19825839466702e-06 + 1.18534705686654e-04; q = x2 * q + 2.26843463243900e-03
    q = x2 * q + 4.89352518554385e-03
    return p / q


def make(variant):
    def roll(s0, a):
        s = s0.expand(a.shape[0], -1)
        tot = 0
        for t in range(T):
            x = torch.cat([s, a[:, t]], -1)
            if variant.startswith("pw"):
                pre = b1 + sum(x[:, i:i + 1] * W1[:, i] for i in range(4))
                h = rtanh(pre) if variant == "pw+rtanh" else torch.tanh(pre)
            else:
                h = torch.tanh(torch.nn.functional.linear(x, W1, b1))
            if variant == "exp-tanh+fused":
                s = s + b2 + (h.unsqueeze(-2) * W2).sum(-1)
            else:
                s = s + torch.nn.functional.linear(h, W2, b2)
            tot = tot + ((s - g) ** 2).sum(-1)
        return tot
    return roll


s0 = torch.randn(1, 3)
a = torch.randn(K, T, 1)
variants = ["std", "pw", "pw+rtanh", "exp-tanh", "exp-tanh+fused"]
fns = {v: torch.compile(make(v), dynamic=False,
                        options={"cpp.use_decompose_tanh": True} if v.startswith("exp") else None) for v in variants}
eager = make("std")(s0, a)
times = {v: [] for v in variants}
with torch.no_grad():
    errs = {v: float(((f(s0, a) - eager).abs() / eager.abs()).max()) for v, f in fns.items()}  # compiles here
    for _ in range(15):
        for v, f in fns.items():
            t0 = time.perf_counter()
            f(s0, a)
            times[v].append(time.perf_counter() - t0)
for v in variants:
    ts = sorted(times[v])
    print(f"{v:<16} {ts[len(ts) // 2] * 1e6 / T:7.1f} us/step   max rel. energy error vs eager {errs[v]:.1e}")
