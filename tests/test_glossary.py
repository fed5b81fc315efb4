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
