"""Issue 5's JEPA + VICReg acceptance line (Fig. 14, §4.5.1): the trained 16-d representation of
digits probes far above the same encoder at random init; plus the probe's own sanity."""
import numpy as np
import pytest
import torch

from ebmgraph.train import demo_jepa_vicreg, linear_probe


def test_linear_probe_separates_separable_classes_and_not_noise():
    g = np.random.default_rng(0)
    y = g.integers(0, 3, 600)
    x = g.standard_normal((600, 5)) + 4.0 * np.eye(3, 5)[y]
    assert linear_probe(x[:400], y[:400], x[400:], y[400:]) > 0.95
    noise = g.standard_normal((600, 5))  # labels independent of features: chance level
    assert linear_probe(noise[:400], y[:400], noise[400:], y[400:]) < 0.5


# the three seeds docs/results.md reports (model init and training order; the probe's split is fixed):
# measured 0.961 / 0.969 / 0.954, margins +0.094 / +0.080 / +0.124 over the same encoder at init
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vicreg_demo_beats_random_encoder_by_a_wide_margin(tmp_path, seed):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = demo_jepa_vicreg(tmp_path, seed=seed, progress=False)
    finally:
        torch.set_num_threads(n)
    p = res["probe"]
    assert res["width"] == 16
    assert p["trained_encoder"] >= 0.90, (seed, p)
    assert p["trained_encoder"] >= p["random_encoder"] + 0.05, (seed, p)
    assert (tmp_path / "report.md").exists() and (tmp_path / "run" / "model.safetensors").exists()
