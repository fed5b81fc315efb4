"""Table 1 on two moons: train F(y) with every contrastive loss and print the ROC AUC of
-F on held-out data vs uniform off-manifold points (the settings of tests/test_train_contrastive.py).

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
KW = {"square_hinge": {"margin": 2.0}, "ml_mc": {"mcmc_steps": 20}, "cd": {"mcmc_steps": 10}}
ALL = ["ml_tractable", "ml_mc", "cd", "hinge", "min_hinge", "square_hinge", "square_exp", "logistic", "gan", "dae",
       "infonce"]


def auc_of(ebm):
    test = two_moons(800, seed=11)
    off = off_manifold(test, 800, seed=12)
    with torch.no_grad():
        e = torch.cat([ebm.energy(y=test).total, ebm.energy(y=off).total])
    return roc_auc_score([1] * len(test) + [0] * len(off), (-e).numpy())


if __name__ == "__main__":
    torch.set_num_threads(1)
    for m in sys.argv[1:] or ALL:
        torch.manual_seed(0)
        ebm = ebmgraph.compile(f"examples/specs/{SPEC_OF.get(m, 'train_moons')}.yaml", seed=0)
        t = time.time()
        Trainer(Contrastive(ebm, m, **KW.get(m, {})), get_dataset("moons", n=2048, seed=0), epochs=19, batch=128,
                lr=3e-3, seed=0, progress=False).fit()
        print(f"{m:13s} AUC {auc_of(ebm):.3f}  ({time.time() - t:.1f} s, 304 steps)", flush=True)
