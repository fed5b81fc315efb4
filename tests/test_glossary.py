"""The command line and Python say the same things the same way (issue 27.7)."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT

import ebmgraph
from ebmgraph.agent import make_planner
from ebmgraph.cli import main


def test_collect_takes_env_like_plan_and_keeps_the_positional_form(tmp_path, capsys):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert main(["collect", "--env", "Pendulum-v1", "--steps", "20", "--out", str(a)]) == 0
    assert main(["collect", "Pendulum-v1", "--steps", "20", "--out", str(b)]) == 0
    with np.load(a) as x, np.load(b) as y:
        np.testing.assert_array_equal(x["obs"], y["obs"])
    assert main(["collect", "--steps", "20", "--out", str(tmp_path / "c.npz")]) == 2
    assert "--env" in capsys.readouterr().err
    assert main(["collect", "CartPole-v1", "--env", "Pendulum-v1", "--steps", "2", "--out", str(tmp_path / "d.npz")]) == 2


def test_make_planner_takes_the_horizon_plan_takes():
    ebm = ebmgraph.compile(ROOT / "examples" / "specs" / "pendulum_mpc.yaml")
    p = make_planner(ebm, "Pendulum-v1", horizon=7)
    assert p.binding.T == 7 and ebm.checked.lengths["a"] == 20  # the user's model is left as it was
    assert make_planner(ebm, "Pendulum-v1").binding.T == 20
    with pytest.raises(ebmgraph.SpecError):
        make_planner(ebm, "Pendulum-v1", horizon=0)


def _trained_world_model(tmp_path):
    """A safetensors file of pendulum_world_model.yaml's parameters (untrained: the values do not matter)."""
    wm = ebmgraph.compile(ROOT / "examples" / "specs" / "pendulum_world_model.yaml", seed=3)
    wm.save(tmp_path / "wm.safetensors")
    return wm


def test_params_is_the_file_and_weights_its_former_name_in_every_verb(tmp_path, capsys):
    """--params FILE (trained parameters) on infer and plan, --weights still accepted, the same tensors loaded."""
    _trained_world_model(tmp_path)
    f = str(tmp_path / "wm.safetensors")
    spec = str(ROOT / "examples" / "specs" / "pendulum_mpc_learned.yaml")
    outs = []
    for flag in ("--params", "--weights"):
        assert main(["infer", spec, "--size", "T=3", flag, f, "--method", "cem", "--set", "iters=2", "--json",
                     "--seed", "1"]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0].split('"seconds"')[0] == outs[1].split('"seconds"')[0]
    for flag in ("--params", "--weights"):
        assert main(["plan", spec, "--env", "Pendulum-v1", flag, f, "--max-steps", "2", "--no-frames",
                     "--out", str(tmp_path / flag.strip("-"))]) == 0


def test_one_loading_rule_refuses_a_module_the_file_leaves_empty_in_one_line(tmp_path, capsys):
    """infer and plan load the same way: a planning spec whose trainable module the file does not hold is
    refused by name (infer used to load strictly, plan not)."""
    empty = ebmgraph.compile(ROOT / "examples" / "specs" / "train_moons.yaml", seed=0)
    empty.save(tmp_path / "other.safetensors")  # parameters of another spec: none named like Pred of the planner
    spec = str(ROOT / "examples" / "specs" / "pendulum_mpc_learned.yaml")
    for argv in (["infer", spec, "--size", "T=3", "--params", str(tmp_path / "other.safetensors")],
                 ["plan", spec, "--env", "Pendulum-v1", "--params", str(tmp_path / "other.safetensors"),
                  "--max-steps", "2", "--no-frames", "--out", str(tmp_path / "p")]):
        assert main(argv) != 0
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and "other.safetensors holds no parameters for module(s) Pred" in err[0], err


def test_train_takes_set_as_every_verb_does_and_opt_as_its_former_name(tmp_path):
    runs = []
    for flag in ("--set", "--opt"):
        out = tmp_path / flag.strip("-")
        assert main(["train", str(ROOT / "examples" / "specs" / "train_moons.yaml"), "--data", "moons", "--n", "64",
                     "--loss", "hinge", "--epochs", "1", "--batch", "32", flag, "margin=2.0", "--quiet",
                     "--out", str(out)]) == 0
        runs.append((out / "run.json").read_text())
    assert runs[0] == runs[1].replace(str(tmp_path / "opt"), str(tmp_path / "set")) and '"margin": 2.0' in runs[0]
