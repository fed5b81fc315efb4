"""JEPA + VICReg on digits (Fig. 14, §4.5.1): linear-probe accuracy of the trained 16-d
representation against the same encoder at random init and raw pixels, over several seeds.

    python examples/train_jepa_vicreg.py [--seeds 3] [--epochs 150] [--out out/jepa_vicreg]
"""
import argparse

import numpy as np
import torch

from ebmgraph.train import demo_jepa_vicreg

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--out", default="out/jepa_vicreg")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for s in range(a.seeds):
        r = demo_jepa_vicreg(f"{a.out}/seed{s}", epochs=a.epochs, seed=s, progress=False)
        p = r["probe"]
        rows.append([p["raw_pixels"], p["random_encoder"], p["trained_encoder"]])
        print(f"seed {s}: pixels(64) {p['raw_pixels']:.3f}  random s_x({r['width']}) {p['random_encoder']:.3f}  "
              f"VICReg s_x({r['width']}) {p['trained_encoder']:.3f}  ({r['seconds']:.0f} s)", flush=True)
    m = np.mean(rows, 0)
    print(f"mean over {a.seeds} seeds: pixels {m[0]:.3f}  random {m[1]:.3f}  VICReg {m[2]:.3f}  margin {m[2] - m[1]:+.3f}")
