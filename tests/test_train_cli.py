"""``ebmgraph train``: a tiny run end to end writes its metrics, model and checkpoint state, and
``--resume`` continues to exactly the weights of an uninterrupted run."""
import csv
import json

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
    assert json.loads((a / "ckpt" / "state.json").read_text())["global_step"] == 8
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert any(not torch.equal(w1[k], wa[k]) for k in wa)  # the resumed run did train
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
