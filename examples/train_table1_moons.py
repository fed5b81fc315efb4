"""Table 1 on two moons: train F(y) with every contrastive loss and print the ROC AUC of
-F on held-out data vs uniform off-manifold points, for three seeds (the settings of
tests/test_train_contrastive.py, which asserts AUC >= 0.95 for every row and seed).

    python examples/train_table1_moons.py [LOSS ...]
"""
import sys
import time

import torch
from sklearn.metrics import roc_auc_score

import ebmgraph
from ebmgraph.train import Contrastive, Trainer, get_dataset, off_manifold, two_moons

SPEC_OF = {"min_hinge": "train_moons_pos", "square_hinge": "train_moons_pos", "square_exp": "train_moons_pos",
           "dae": "train_moons_dae"}
# loss options: more contrastive samples for InfoNCE (K = 16 uniform points: one sample a step left
# the landscape flat in parts of the box), a lighter corruption for the DAE
KW = {"square_hinge": {"margin": 2.0}, "ml_mc": {"mcmc_steps": 20}, "cd": {"mcmc_steps": 10},
      "infonce": {"n_neg": 16}, "dae": {"sigma": 0.2}}
# 2048 points, batch 128: 16 steps an epoch, 400 steps. lr 5e-3 (3e-3 left hinge, logistic and
# InfoNCE at 0.949-0.952 on some seeds); the DAE keeps 3e-3 (faster it over-fits one seed's noise)
TRAIN = {"*": {"epochs": 25, "batch": 128, "lr": 5e-3}, "dae": {"lr": 3e-3}}
SEEDS = (0, 1, 2)
ALL = ["ml_tractable", "ml_mc", "cd", "hinge", "min_hinge", "square_hinge", "square_exp", "logistic", "gan", "dae",
       "infonce"]


def auc_of(ebm):
    test = two_moons(800, seed=11)
    off = off_manifold(test, 800, seed=12)
    with torch.no_grad():
        e = torch.cat([ebm.energy(y=test).total, ebm.energy(y=off).total])
    return roc_auc_score([1] * len(test) + [0] * len(off), (-e).numpy())


def train_row(method: str, seed: int):
    """One row of Table 1 trained on two moons with ``seed`` (model init, data, order); the trained energy."""
    torch.manual_seed(seed)
    ebm = ebmgraph.compile(f"examples/specs/{SPEC_OF.get(method, 'train_moons')}.yaml", seed=seed)
    Trainer(Contrastive(ebm, method, **KW.get(method, {})), get_dataset("moons", n=2048, seed=seed), seed=seed,
            progress=False, **{**TRAIN["*"], **TRAIN.get(method, {})}).fit()
    return ebm


if __name__ == "__main__":
    torch.set_num_threads(1)
    for m in sys.argv[1:] or ALL:
        t = time.time()
        aucs = [auc_of(train_row(m, s)) for s in SEEDS]
        print(f"{m:13s} AUC " + " ".join(f"{a:.4f}" for a in aucs) + f"  min {min(aucs):.4f}  "
              f"({(time.time() - t) / len(SEEDS):.1f} s a seed)", flush=True)
