"""``ebmgraph train``: a tiny run end to end writes its metrics, model and checkpoint state;
``--resume`` continues to exactly the weights of an uninterrupted run, with the settings the run
was started with (the README's resume line has no --epochs), and refuses flags that contradict them."""
import csv
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

import ebmgraph
from ebmgraph.cli import main

SPEC = "examples/specs/train_moons.yaml"


def _train(out, epochs, *extra):
    argv = ["train", SPEC, "--data", "moons", "--n", "256", "--loss", "hinge", "--epochs", str(epochs),
            "--batch", "64", "--lr", "3e-3", "--seed", "2", "--out", str(out), "--quiet", *extra]
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(argv)
    finally:
        torch.set_num_threads(n)


def test_train_cli_writes_run_and_resume_continues(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _train(a, 1) == 0
    rows = list(csv.DictReader(open(a / "metrics.csv")))
    assert [int(r["global_step"]) for r in rows] == [1, 2, 3, 4]  # 256 / 64 steps
    assert all(float(r["loss"]) == float(r["loss"]) for r in rows)  # no NaN
    st = json.loads((a / "ckpt" / "state.json").read_text())
    assert (st["epoch"], st["global_step"]) == (1, 4)
    assert (a / "ckpt" / st["weights"]).exists() and (a / "ckpt" / st["optim"]).exists()
    w1 = load_file(a / "model.safetensors")
    ebm = ebmgraph.compile(SPEC, seed=2).load(a / "model.safetensors")  # the saved model loads into the spec
    assert set(w1) == set(ebm.state_dict())
    # resume to 2 epochs: 4 more steps, and the same weights as 2 epochs in one go
    assert _train(a, 2, "--resume") == 0
    assert _train(b, 2) == 0
    steps = [int(r["global_step"]) for r in csv.DictReader(open(a / "metrics.csv"))]
    assert steps == list(range(1, 9))
    state = json.loads((a / "ckpt" / "state.json").read_text())
    assert state["global_step"] == 8
    assert state["segments"] == [[0, 4], [4, 8]]  # the second process started at step 4, not from scratch
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert any(not torch.equal(w1[k], wa[k]) for k in wa)  # the resumed run did train
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


# ----------------------------------------------------------------------------- the README's kill-and-resume lines
ROOT = Path(__file__).resolve().parents[1]
KILLER = r"""
import os, signal, sys
from ebmgraph.train import trainer
kill_at = int(sys.argv[1])
init = trainer.Trainer.__init__
def killing_init(self, *a, callbacks=None, **kw):
    die = lambda tr, epoch, step: tr.global_step == kill_at and os.kill(os.getpid(), signal.SIGKILL)
    init(self, *a, callbacks=[*(callbacks or []), die], **kw)
trainer.Trainer.__init__ = killing_init
from ebmgraph.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _readme_train_lines(out: Path) -> tuple[list[str], list[str]]:
    """The README's `ebmgraph train` line and its `--resume` line, with runs/moons replaced by ``out``."""
    lines = [ln.split("  #")[0].strip() for ln in (ROOT / "README.md").read_text().splitlines()
             if ln.startswith(".venv/bin/ebmgraph train examples/specs/train_moons.yaml")]
    fresh = [shlex.split(ln) for ln in lines if "--resume" not in ln]
    resume = [shlex.split(ln) for ln in lines if "--resume" in ln]
    assert len(fresh) == len(resume) == 1, lines
    return [str(out) if a == "runs/moons" else a for a in fresh[0][1:]], \
           [str(out) if a == "runs/moons" else a for a in resume[0][1:]]


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def test_readme_resume_line_finishes_a_killed_run(tmp_path):
    killed, straight = tmp_path / "R", tmp_path / "straight"
    fresh, resume = _readme_train_lines(killed)
    assert "--epochs" in fresh and "--epochs" not in resume  # the case of issue 10
    # 2000 moons, batch 128: 15 steps an epoch, 300 in all; killed at step 185, after epoch 12's checkpoint
    ref = subprocess.Popen([sys.executable, "-m", "ebmgraph.cli", *_readme_train_lines(straight)[0], "--quiet"],
                           cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    r = subprocess.run([sys.executable, "-c", KILLER, "185", *fresh, "--quiet"], cwd=ROOT, env=_env(),
                       capture_output=True, text=True)
    assert r.returncode == -9, r.stderr[-2000:]
    st = json.loads((killed / "ckpt" / "state.json").read_text())
    assert (st["epoch"], st["global_step"]) == (12, 180)
    r = subprocess.run([sys.executable, "-m", "ebmgraph.cli", *resume], cwd=ROOT, env=_env(), capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "nothing to do" not in r.stderr and "at step 180 of 300" in r.stderr and "ran 120 steps" in r.stderr, \
        r.stderr[-2000:]
    st = json.loads((killed / "ckpt" / "state.json").read_text())
    assert (st["epoch"], st["global_step"], st["epochs"]) == (20, 300, 20)
    assert st["segments"] == [[0, 180], [180, 300]]  # the resumed process started at 180 and ran the rest
    steps = [int(row["global_step"]) for row in csv.DictReader(open(killed / "metrics.csv"))]
    assert steps == list(range(1, 301))
    assert ref.wait() == 0, ref.stderr.read().decode()[-2000:]
    ref.stderr.close()
    wa, wb = load_file(killed / "model.safetensors"), load_file(straight / "model.safetensors")
    for k in wb:
        assert torch.equal(wa[k], wb[k]), k


def test_resume_refuses_flags_that_contradict_the_saved_run(tmp_path, capsys):
    out = tmp_path / "a"
    assert _train(out, 1) == 0
    state = (out / "ckpt" / "state.json").read_text()
    for extra, said in ((["--batch", "32"], "--batch 32 (the run was started with --batch 64)"),
                        (["--lr", "0.01"], "--lr 0.01 (the run was started with --lr 0.003)"),
                        (["--loss", "logistic"], "--loss logistic (the run was started with --loss hinge)"),
                        (["--opt", "margin=2"], "--opt margin=2 (the run was started with no --opt)"),
                        (["--epochs", "0"], "--epochs 0 (the run was started with --epochs 1)")):
        argv = ["train", SPEC, "--out", str(out), "--resume", "--quiet", *extra]
        assert main(argv) == 2, extra
        err = capsys.readouterr().err
        assert f"cannot resume {out}" in err and said in err, err
    assert (out / "ckpt" / "state.json").read_text() == state  # nothing was touched
    # the settings it was started with, given again, are fine; a run already complete says so
    assert main(["train", SPEC, "--out", str(out), "--resume", "--quiet", "--batch", "64", "--seed", "2"]) == 0
    assert "already complete at step 4 of 4" in capsys.readouterr().err
    # a new run without --data is told what is missing
    assert main(["train", SPEC, "--loss", "hinge", "--out", str(tmp_path / "b"), "--quiet"]) == 2
    assert "--data required" in capsys.readouterr().err
