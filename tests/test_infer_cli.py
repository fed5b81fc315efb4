"""The ``ebmgraph infer`` verb and the public exports of ebmgraph.infer."""
import json

import numpy as np
import pytest

import ebmgraph.infer as infer
from ebmgraph.infer.cli import cmd_infer, register_cli

SPEC = """name: q
variables:
  g: {observed: [2]}
  a: {action: [2], bounds: [-1, 1]}
energy:
  C: sq_dist(a, g)
"""


def _args(**kw):
    import argparse
    p = argparse.ArgumentParser()
    register_cli(p.add_subparsers())
    argv = ["infer", kw.pop("spec")] + [x for k, v in kw.items() for x in ((f"--{k}",) if v is True else (f"--{k}", str(v)))]
    return p.parse_args(argv)


def test_exports():
    for name in infer.__all__:
        assert hasattr(infer, name)
    assert {"minimize", "free_energy", "MinimizeResult"} <= set(infer.__all__)


@pytest.mark.parametrize("method", ["gradient", "cem", "auto"])
def test_cli_json_lowers_energy(tmp_path, capsys, method):
    spec = tmp_path / "q.yaml"
    spec.write_text(SPEC)
    assert cmd_infer(_args(spec=str(spec), method=method, json=True, batch=3)) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["energy_after"]) == 3
    assert all(a <= b + 1e-6 for a, b in zip(out["energy_after"], out["energy_before"]))


def test_cli_data_file(tmp_path, capsys):
    spec = tmp_path / "q.yaml"
    spec.write_text(SPEC)
    data = tmp_path / "obs.npz"
    g = np.array([[0.5, -0.25], [3.0, 0.0]], dtype=np.float32)
    np.savez(data, g=g)
    assert cmd_infer(_args(spec=str(spec), method="gradient", json=True, data=str(data))) == 0
    out = json.loads(capsys.readouterr().out)
    want = ((np.clip(g, -1, 1) - g) ** 2).sum(1)  # distance from the goal to the box
    assert np.allclose(out["energy_after"], want, atol=1e-5)
    np.savez(data, h=g)
    assert cmd_infer(_args(spec=str(spec), method="gradient", data=str(data))) == 1
