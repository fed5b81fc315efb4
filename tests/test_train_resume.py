"""Checkpoint / resume: a run SIGKILLed mid-epoch and resumed ends with the same weights as an
uninterrupted run; and 2-process data parallel (gloo) follows the 1-process loss curve."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
SPEC = str(ROOT / "examples/specs/train_moons.yaml")

CHILD = r"""
import os, signal, sys, torch
torch.set_num_threads(1)
import ebmgraph
from ebmgraph.train import Trainer, Contrastive, get_dataset
kill_at = int(sys.argv[2])
def hook(tr, epoch, step):
    if tr.global_step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
ebm = ebmgraph.compile(sys.argv[3], seed=0)
t = Trainer(Contrastive(ebm, "hinge"), get_dataset("moons", n=512), epochs=3, batch=64, lr=3e-3, seed=5,
            out=sys.argv[1], ckpt_every=3, callbacks=[hook], progress=False)
t.fit(resume=True)
"""


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def test_sigkilled_run_resumes_to_identical_weights(tmp_path):
    a, b = tmp_path / "killed", tmp_path / "straight"
    # 8 steps per epoch; killed at step 13 (mid-epoch 2, after the step-12 checkpoint) then resumed
    r = subprocess.run([sys.executable, "-c", CHILD, str(a), "13", SPEC], env=_env(), capture_output=True)
    assert r.returncode == -9, r.stderr.decode()[-2000:]
    assert not (a / "model.safetensors").exists()
    r = subprocess.run([sys.executable, "-c", CHILD, str(a), "-1", SPEC], env=_env(), capture_output=True)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    r = subprocess.run([sys.executable, "-c", CHILD, str(b), "-1", SPEC], env=_env(), capture_output=True)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    # the metrics of the resumed run hold each step exactly once
    steps = [int(row["global_step"]) for row in csv.DictReader(open(a / "metrics.csv"))]
    assert steps == list(range(1, 25))


DDP = r"""
import sys, torch
torch.set_num_threads(1)
import ebmgraph
from ebmgraph.train import Trainer, Contrastive, get_dataset
ebm = ebmgraph.compile(sys.argv[2], seed=0)
t = Trainer(Contrastive(ebm, "ml_tractable", grid=24), get_dataset("moons", n=512), epochs=2, batch=64, lr=3e-3,
            seed=1, out=sys.argv[1], progress=False)
t.fit()
"""


def test_two_process_gloo_matches_one_process(tmp_path):
    # row 2 (exact log-partition by quadrature) draws nothing at random, so the per-sample mean
    # split over two ranks with averaged gradients is the same computation as one process
    script = tmp_path / "ddp.py"
    script.write_text(DDP)
    one, two = tmp_path / "one", tmp_path / "two"
    r = subprocess.run([sys.executable, str(script), str(one), SPEC], env=_env(), capture_output=True)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                        str(29500 + os.getpid() % 1000), str(script), str(two), SPEC], env=_env(), capture_output=True)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    la = [float(row["loss"]) for row in csv.DictReader(open(one / "metrics.csv"))]
    lb = [float(row["loss"]) for row in csv.DictReader(open(two / "metrics.csv"))]
    assert len(la) == len(lb) == 16
    assert la == pytest.approx(lb, rel=1e-4, abs=1e-5)
    # the energies agree up to a constant: row 2's loss is blind to F + c (its gradient on the
    # output bias is zero up to round-off, which Adam rescales), so compare centred energies
    import ebmgraph

    pts = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    es = []
    for d in (one, two):
        ebm = ebmgraph.compile(SPEC, seed=0).load(d / "model.safetensors")
        with torch.no_grad():
            e = ebm.energy(y=pts).total
        es.append(e - e.mean())
    torch.testing.assert_close(es[0], es[1], rtol=1e-3, atol=1e-3)


DDP_VICREG = r"""
import sys, torch
torch.set_num_threads(1)
from sklearn.datasets import load_digits
import ebmgraph
from ebmgraph.train import Trainer, Regularized
from ebmgraph.train.data import Dataset
X = torch.tensor(load_digits().data[:512] / 16.0, dtype=torch.float32)
data = Dataset("digits_fixed_views", {"x": X, "y": X.roll(1, dims=1)})  # deterministic second view
ebm = ebmgraph.compile(sys.argv[2], seed=0)
t = Trainer(Regularized(ebm), data, epochs=1, batch=64, lr=1e-3, seed=1, out=sys.argv[1], progress=False)
t.fit()
"""


def test_two_process_vicreg_uses_the_global_batch(tmp_path):
    # VICReg's variance and covariance are batch statistics: under DDP they must be computed on
    # the gathered global batch, so 2 processes follow the 1-process loss curve
    spec = str(ROOT / "examples/specs/train_collapse.yaml")
    script = tmp_path / "ddp_vicreg.py"
    script.write_text(DDP_VICREG)
    one, two = tmp_path / "one", tmp_path / "two"
    r = subprocess.run([sys.executable, str(script), str(one), spec], env=_env(), capture_output=True)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                        str(30500 + os.getpid() % 1000), str(script), str(two), spec], env=_env(), capture_output=True)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    la = [float(row["loss"]) for row in csv.DictReader(open(one / "metrics.csv"))]
    lb = [float(row["loss"]) for row in csv.DictReader(open(two / "metrics.csv"))]
    assert len(la) == len(lb) == 8
    assert la == pytest.approx(lb, rel=1e-4, abs=1e-5)


def test_resume_refuses_different_settings(tmp_path):
    import ebmgraph
    from ebmgraph.train import Contrastive, Trainer, get_dataset

    data = get_dataset("moons", n=256)
    ebm = ebmgraph.compile(SPEC, seed=0)
    Trainer(Contrastive(ebm, "hinge"), data, epochs=1, batch=64, seed=2, out=tmp_path, progress=False).fit()
    for kw in ({"batch": 32, "seed": 2}, {"batch": 64, "seed": 7}):
        t = Trainer(Contrastive(ebmgraph.compile(SPEC, seed=0), "hinge"), data, epochs=2, out=tmp_path,
                    progress=False, **kw)
        with pytest.raises(ValueError, match="cannot resume exactly"):
            t.fit(resume=True)


def test_gan_generator_initialization_follows_the_seed():
    import ebmgraph
    from ebmgraph.train import Contrastive

    def weights(seed, global_seed):
        torch.manual_seed(global_seed)  # the global RNG's state must not matter
        loss = Contrastive(ebmgraph.compile(SPEC, seed=0), "gan", seed=seed)
        return torch.cat([p.detach().flatten() for p in loss.gen_net.parameters()])

    assert torch.equal(weights(5, 1), weights(5, 2))
    assert not torch.equal(weights(5, 1), weights(9, 1))
