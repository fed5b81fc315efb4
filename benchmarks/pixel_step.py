"""One training step of the TwoRoom pixel world model (examples/specs/tworoom_jepa.yaml: K-step prediction, inverse
dynamics, time similarity, VICReg over every step) through ebmgraph against a plain PyTorch loop of the same
modules and loss, side by side (a measurement, not a test; issue 29).

The plain loop is written by hand from the spec: the same encoder, predictor and IDM instances (shared
parameters), the same sums, the same VICReg terms. Both losses are computed on the same batch first and must
agree (else the script stops), then forward + backward + Adam step are timed alternately, ``--reps`` each,
after two warm-up steps; the ratio is plain / ebmgraph (>= 1: ebmgraph is as fast or faster).

    .venv/bin/python benchmarks/pixel_step.py --batch 64 --reps 10 --threads 2
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VAR_W, COV_W = 3072.0, 50.0  # the README's training settings


def plain_loss(mods, weights, obs, action):
    """The spec's training loss by hand: Σ_t D[t] + I[t] + S[t] over the batch mean, + VICReg on every s[u]."""
    import torch
    import torch.nn.functional as F

    enc, pred, idm = mods["Enc"], mods["Pred"], mods["IDM"]
    B, U = obs.shape[:2]
    x = obs.to(torch.get_default_dtype()).movedim(-1, -3) / 255.0  # [B, U, C, H, W]
    s = enc(x.reshape(B * U, *x.shape[2:])).reshape(B, U, -1)
    p = s[:, 0]
    e = torch.zeros(B)
    for t in range(U - 1):
        p = p + pred.net(torch.cat([p, action[:, t]], -1))
        e = e + ((s[:, t + 1] - p) ** 2).sum(-1)
        e = e + weights["w_idm"] * ((idm(torch.cat([s[:, t], s[:, t + 1]], -1)) - action[:, t]) ** 2).sum(-1)
        e = e + weights["w_sim"] * ((s[:, t] - s[:, t + 1]) ** 2).sum(-1)
    z = s.transpose(0, 1).reshape(U * B, -1)  # every step a row, as the spec's vicreg(s) over the array
    std = torch.sqrt(z.var(0) + 1e-4)
    var = F.relu(1.0 - std).mean()
    c = z - z.mean(0)
    cov = c.T @ c / (z.shape[0] - 1)
    covt = ((cov - torch.diag(torch.diag(cov))) ** 2).sum() / z.shape[1]
    return e.mean() + VAR_W * var + COV_W * covt


def main() -> int:
    import torch

    import ebmgraph
    from ebmgraph.train import Regularized

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ebm = ebmgraph.compile(ROOT / "examples" / "specs" / "tworoom_jepa.yaml", seed=0)
    K = ebm.checked.sizes["K"]
    loss = Regularized(ebm, var_weight=VAR_W, cov_weight=COV_W)
    g = torch.Generator().manual_seed(0)
    batch = {"obs": torch.randint(0, 256, (args.batch, K + 1, 64, 64, 3), generator=g, dtype=torch.uint8),
             "action": torch.rand(args.batch, K, 2, generator=g) * 2 - 1}
    mods = {n: ebm.mods[n] for n in ("Enc", "Pred", "IDM")}
    weights = {k: float(v) for k, v in ebm.weights().items()}
    a = float(loss(batch, g).loss.detach())
    b = float(plain_loss(mods, weights, batch["obs"], batch["action"]).detach())
    if abs(a - b) > 1e-4 * max(1.0, abs(a)):
        raise SystemExit(f"the two losses differ: ebmgraph {a}, plain {b}")
    opt = torch.optim.Adam(ebm.parameters(), lr=1e-4)

    def step_ebm():
        out = loss(batch, g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()

    def step_plain():
        out = plain_loss(mods, weights, batch["obs"], batch["action"])
        opt.zero_grad()
        out.backward()
        opt.step()

    times = {"ebmgraph": [], "plain": []}
    for i in range(args.reps + 2):
        for name, fn in (("ebmgraph", step_ebm), ("plain", step_plain)) if i % 2 else (("plain", step_plain),
                                                                                        ("ebmgraph", step_ebm)):
            t0 = time.perf_counter()
            fn()
            if i >= 2:
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(json.dumps({"batch": args.batch, "frames_per_window": K + 1, "threads": args.threads, "reps": args.reps,
                      "loss_ebmgraph": a, "loss_plain": b, "ms_ebmgraph": round(med["ebmgraph"], 1),
                      "ms_plain": round(med["plain"], 1), "ratio_plain_over_ebmgraph": round(med["plain"] / med["ebmgraph"], 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
