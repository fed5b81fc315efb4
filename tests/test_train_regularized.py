"""The regularized family (§4.5): VICReg keeps a joint embedding from collapsing (Fig. 10d),
latent capacity limits, and the VICReg / Barlow terms against closed forms."""
import pytest
import torch

import ebmgraph
from ebmgraph.train import Regularized, Trainer, digits_views, effective_rank, spread
from ebmgraph.train.losses_regularized import barlow_terms, covariance_term, variance_term
from ebmgraph.train.monitors import collapse_report

SPEC = "examples/specs/train_collapse.yaml"


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _train(use_regularizers: bool):
    ebm = ebmgraph.compile(SPEC, seed=0)
    loss = Regularized(ebm, use_regularizers=use_regularizers)
    data = digits_views()
    Trainer(loss, data, epochs=30, batch=128, lr=3e-3, seed=0, progress=False).fit()  # 390 steps
    batch = data.batch(torch.arange(512), torch.Generator().manual_seed(1))
    return collapse_report(ebm, batch, ["s_x", "s_y"])


def test_prediction_energy_alone_collapses_and_vicreg_prevents_it():
    alone, vic = _train(False), _train(True)
    D = 16
    for n in ("s_x", "s_y"):
        assert alone[f"{n}.std"] < 0.05 and alone[f"{n}.rank"] <= 2, alone
        assert vic[f"{n}.std"] >= 0.5 * 1.0 and vic[f"{n}.rank"] >= D / 2, vic


def test_effective_rank_of_known_spectra():
    # k orthogonal directions with equal singular values: exp(entropy) = k; a constant: 1
    q, _ = torch.linalg.qr(torch.randn(50, 50, generator=torch.Generator().manual_seed(0)))
    assert effective_rank(q[:, :7] * 3.0) == pytest.approx(7.0, rel=1e-6)
    assert effective_rank(torch.ones(40, 5)) == pytest.approx(1.0, rel=1e-6)
    assert effective_rank(torch.zeros(10, 4)) == 0.0


def test_vicreg_and_barlow_terms_closed_forms():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4096, 8, generator=g) * 0.25
    # variance hinge: mean_j [1 - std_j]+ with std ≈ 0.25
    assert float(variance_term(z)) == pytest.approx(0.75, abs=0.02)
    assert float(variance_term(z * 8)) == 0.0
    # covariance: fully correlated copies have off-diagonal covariance = variance
    c = torch.randn(4096, 1, generator=g).repeat(1, 4)
    assert float(covariance_term(c)) == pytest.approx(12 * float(c[:, 0].var()) ** 2 / 4, rel=1e-4)
    # Barlow Twins: identical views give C = I (on-diagonal loss 0); independent views off ≈ 0
    t = barlow_terms(z, z)
    assert float(t["on"]) == pytest.approx(0.0, abs=1e-3)
    assert spread(z) == pytest.approx(0.25, abs=0.01)
