"""Checkpoint / resume: a run SIGKILLed mid-epoch — or in the middle of writing a checkpoint — and
resumed ends with the same weights as an uninterrupted run, and the resumed process starts at the
checkpoint and runs only the remaining steps (data order and draws depend only on seed, epoch and
step, so retraining from scratch would also reach those weights: the step counts are what show
that resuming happened); and 2-process data parallel (gloo) follows the 1-process loss curve."""
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
SPEC = str(ROOT / "examples/specs/train_moons.yaml")

# argv: OUT KILL_AT SPEC [STEPS_FILE [CKPT_EVERY [KILL_IN_WRITE]]]. Every step this process runs is
# appended to STEPS_FILE. KILL_IN_WRITE=weights|tensors|state SIGKILLs inside the checkpoint write of
# step KILL_AT: before the new weights file is renamed into place, after both tensor files are in
# place but before state.json names them, or with state.json's temporary file written but not renamed.
CHILD = r"""
import os, signal, sys, torch
from pathlib import Path
torch.set_num_threads(1)
import ebmgraph
from ebmgraph.train import Trainer, Contrastive, get_dataset
from safetensors.torch import save_file
out, kill_at, spec = sys.argv[1], int(sys.argv[2]), sys.argv[3]
steps_file = sys.argv[4] if len(sys.argv) > 4 else None
every = int(sys.argv[5]) if len(sys.argv) > 5 else 3
mode = sys.argv[6] if len(sys.argv) > 6 else None
def die():
    os.kill(os.getpid(), signal.SIGKILL)
def hook(tr, epoch, step):
    if steps_file:
        with open(steps_file, "a") as f:
            f.write(f"{tr.global_step}\n")
    if mode and tr.global_step == kill_at - 4:  # the checkpoint before the one killed
        save_file({k: v.detach().clone() for k, v in tr.loss.state_dict().items()}, Path(out) / "expected.safetensors")
    if mode is None and tr.global_step == kill_at:
        die()
if mode:
    real, armed = os.replace, []
    def replace(src, dst):
        name = Path(dst).name
        if name == f"weights-{kill_at:09d}.safetensors":
            armed.append(1)
            if mode == "weights":
                die()
        if armed and mode == "state" and name == "state.json":
            die()
        real(src, dst)
        if armed and mode == "tensors" and name == f"optim-{kill_at:09d}.safetensors":
            die()
    os.replace = replace
ebm = ebmgraph.compile(spec, seed=0)
t = Trainer(Contrastive(ebm, "hinge"), get_dataset("moons", n=512), epochs=3, batch=64, lr=3e-3, seed=5,
            out=out, ckpt_every=every, callbacks=[hook], progress=False)
t.fit(resume=True)
"""


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _child(out, kill_at, *extra):
    return subprocess.run([sys.executable, "-c", CHILD, str(out), str(kill_at), SPEC, *map(str, extra)], env=_env(),
                          capture_output=True)


def _steps(path) -> list[int]:
    return [int(x) for x in Path(path).read_text().split()]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The uninterrupted run's weights (3 epochs of 8 steps)."""
    d = tmp_path_factory.mktemp("straight")
    r = _child(d / "run", -1, d / "steps")
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert _steps(d / "steps") == list(range(1, 25))
    return load_file(d / "run" / "model.safetensors")


def test_sigkilled_run_resumes_to_identical_weights(tmp_path, straight_run):
    a = tmp_path / "killed"
    # 8 steps per epoch; killed at step 13 (mid-epoch 2, after the step-12 checkpoint) then resumed
    r = _child(a, 13, tmp_path / "steps1")
    assert r.returncode == -9, r.stderr.decode()[-2000:]
    assert not (a / "model.safetensors").exists()
    assert _steps(tmp_path / "steps1") == list(range(1, 14))
    r = _child(a, -1, tmp_path / "steps2")
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    # the resumed process started at the checkpoint (step 12) and ran only steps 13..24: with resume
    # switched off it would run 1..24 and still end at the same weights
    assert _steps(tmp_path / "steps2") == list(range(13, 25))
    state = json.loads((a / "ckpt" / "state.json").read_text())
    assert state["segments"] == [[0, 12], [12, 24]]
    wa = load_file(a / "model.safetensors")
    assert wa.keys() == straight_run.keys()
    for k in wa:
        assert torch.equal(wa[k], straight_run[k]), k
    # the metrics of the resumed run hold each step exactly once
    steps = [int(row["global_step"]) for row in csv.DictReader(open(a / "metrics.csv"))]
    assert steps == list(range(1, 25))


@pytest.mark.parametrize("mode", ["weights", "tensors", "state"])
def test_kill_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, straight_run, mode):
    import ebmgraph
    from ebmgraph.train import Contrastive
    from ebmgraph.train.checkpoint import load_checkpoint

    a = tmp_path / "killed"
    # checkpoints every 4 steps; SIGKILL inside the write of step 12's
    r = _child(a, 12, tmp_path / "steps1", 4, mode)
    assert r.returncode == -9, r.stderr.decode()[-2000:]
    ckpt = a / "ckpt"
    state = json.loads((ckpt / "state.json").read_text())
    assert (state["global_step"], state["weights"], state["optim"]) == \
        (8, "weights-000000008.safetensors", "optim-000000008.safetensors")
    left = {p.name for p in ckpt.iterdir()}
    assert {"state.json", state["weights"], state["optim"]} <= left
    assert ("weights-000000012.safetensors" in left) == (mode != "weights")
    assert any(n.endswith(".tmp") for n in left) == (mode != "tensors")  # what the write had under way
    # the previous checkpoint loads, and holds the weights of step 8
    loss = Contrastive(ebmgraph.compile(SPEC, seed=0), "hinge")
    opt = torch.optim.AdamW(loss.parameters(), lr=3e-3)
    assert load_checkpoint(ckpt, loss, opt)["global_step"] == 8
    expected = load_file(a / "expected.safetensors")
    for k, v in loss.state_dict().items():
        assert torch.equal(v, expected[k]), k
    assert opt.state_dict()["state"], "the optimizer state was restored"
    # resuming from it runs steps 9..24 and ends where the uninterrupted run ends
    r = _child(a, -1, tmp_path / "steps2", 4)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert _steps(tmp_path / "steps2") == list(range(9, 25))
    assert json.loads((ckpt / "state.json").read_text())["segments"] == [[0, 8], [8, 24]]
    wa = load_file(a / "model.safetensors")
    for k in wa:
        assert torch.equal(wa[k], straight_run[k]), k
    # and what the killed write left behind is gone
    assert sorted(p.name for p in ckpt.iterdir()) == \
        ["optim-000000024.safetensors", "state.json", "weights-000000024.safetensors"]


def _torchrun(script, out, spec, tmp_path, *, expect_ok=True, timeout=600):
    """2 gloo processes under torchrun, run once (no retry). Returns (exit code, torchrun's stderr and
    every rank's own log); with ``expect_ok`` a non-zero exit fails the test with that text. A job still
    running after ``timeout`` seconds (a hang: gloo itself waits 30 minutes) is stopped (SIGTERM, which
    torchrun passes on to its ranks) and fails the test."""
    logs = tmp_path / f"logs-{out.name}"
    p = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(_free_port()), "--tee", "3", "--log-dir", str(logs), str(script), str(out), spec],
                         env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.terminate()
        try:
            p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
        pytest.fail(f"torchrun still running after {timeout} s: the job hung")
    ranks = "\n".join(f"--- {q.relative_to(logs)}:\n{q.read_text()[-1500:]}" for q in sorted(logs.rglob("*.log")))
    text = f"torchrun exited {p.returncode}\n{err.decode()[-1500:]}\n{ranks}"
    if expect_ok and p.returncode != 0:
        pytest.fail(text)
    return p.returncode, text


def _free_port() -> int:
    """A port nobody listens on now (the OS picks it), so parallel test workers never collide."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Written into each DDP script before the Trainer exists, so it runs after the Trainer's own exit hook
# (atexit is last in, first out): the threads still alive then, and whether the group is still up.
AT_EXIT = r"""
import atexit, os, sys
import torch.distributed as dist
def _record_exit():
    names = sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
    os.makedirs(sys.argv[1], exist_ok=True)
    with open(os.path.join(sys.argv[1], f"exit-{os.environ.get('RANK', 'solo')}.txt"), "w") as f:
        f.write(f"initialized={dist.is_initialized()}\n" + "\n".join(names))
atexit.register(_record_exit)
"""


def _assert_closed_at_exit(out):
    """Both ranks left with their group destroyed and gloo's threads (workers, socket loop) joined
    before the interpreter began to finalize: a group kept alive past destroy_process_group() is torn
    down inside finalization instead, where ranks aborted at random."""
    for rank in ("0", "1"):
        lines = (out / f"exit-{rank}.txt").read_text().splitlines()
        assert lines[0] == "initialized=False", (rank, lines)
        assert not [n for n in lines[1:] if "gloo" in n], (rank, lines)


DDP = AT_EXIT + r"""
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
    _torchrun(script, two, SPEC, tmp_path)
    _assert_closed_at_exit(two)
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


DDP_VICREG = AT_EXIT + r"""
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
    _torchrun(script, two, spec, tmp_path)
    _assert_closed_at_exit(two)
    la = [float(row["loss"]) for row in csv.DictReader(open(one / "metrics.csv"))]
    lb = [float(row["loss"]) for row in csv.DictReader(open(two / "metrics.csv"))]
    assert len(la) == len(lb) == 8
    assert la == pytest.approx(lb, rel=1e-4, abs=1e-5)


DDP_FAILS = AT_EXIT + r"""
import sys, torch
torch.set_num_threads(1)
import ebmgraph
from ebmgraph.train import Trainer, Contrastive, get_dataset
def fail_on_rank_1(tr, epoch, step):
    if tr.rank == 1 and tr.global_step == 3:
        raise RuntimeError("rank 1 fails after step 3")
ebm = ebmgraph.compile(sys.argv[2], seed=0)
t = Trainer(Contrastive(ebm, "ml_tractable", grid=24), get_dataset("moons", n=512), epochs=1, batch=64, lr=3e-3,
            seed=1, out=sys.argv[1], progress=False, callbacks=[fail_on_rank_1])
t.fit()
"""


def test_a_rank_that_fails_ends_the_job_instead_of_hanging_it(tmp_path):
    # rank 1 raises between steps while rank 0 goes on into step 4's all-reduce. Leaving, rank 1 must
    # not wait at a last barrier that rank 0 never reaches (the job then hung for gloo's 30-minute
    # timeout): it closes its group, rank 0's all-reduce fails on the closed connection, torchrun
    # reports the failure, and both ranks still leave with their groups destroyed
    script = tmp_path / "ddp_fails.py"
    script.write_text(DDP_FAILS)
    code, text = _torchrun(script, tmp_path / "out", SPEC, tmp_path, expect_ok=False)
    assert code != 0, text
    assert "rank 1 fails after step 3" in text
    # rank 0's all-reduce, ended by rank 1 leaving (gloo words it either way, as the socket saw it)
    assert re.search(r"\[rank0\]: RuntimeError: .*gloo.*Connection (closed|reset) by peer", text), text
    _assert_closed_at_exit(tmp_path / "out")


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
