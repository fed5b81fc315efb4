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


def test_barlow_loss_of_a_known_cross_correlation_matrix():
    # a: B samples with centred, unit-variance, uncorrelated columns (√B × orthonormal columns);
    # b = a M with unit-norm columns of M: then the cross-correlation C = aᵀb / B equals M exactly.
    from ebmgraph.train.losses_regularized import cross_correlation

    B = 512
    g = torch.Generator().manual_seed(0)
    r = torch.randn(B, 3, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(r - r.mean(0))  # orthonormal columns spanning centred vectors: centred too
    a = q * B ** 0.5  # biased variance 1 per column, zero cross-covariance
    M = torch.tensor([[1.0, 0.6, 0.0], [0.0, 0.8, 0.6], [0.0, 0.0, 0.8]], dtype=torch.float64)
    b = a @ M
    torch.testing.assert_close(cross_correlation(a, b), M, atol=1e-4, rtol=0)
    lam = 0.01
    t = barlow_terms(a, b, lambd=lam)
    on = ((1 - M.diagonal()) ** 2).sum()
    off = lam * ((M ** 2).sum() - (M.diagonal() ** 2).sum())
    assert float(t["on"]) == pytest.approx(float(on), abs=1e-4)
    assert float(t["off"]) == pytest.approx(float(off), abs=1e-5)


BARLOW = """
name: barlow_small
variables:
  x: {observed: [64]}
  y: {observed: [64]}
modules:
  Enc: mlp(64, 64, 16)
  Exp: mlp(16, 64, 64)
functions:
  s_x: Enc(x)
  s_y: Enc(y)
  v_x: Exp(s_x)
  v_y: Exp(s_y)
energy:
  D: sq_dist(s_y, s_x)
regularizers:
  BT: barlow(v_x, v_y)
"""


def test_barlow_twins_training_raises_effective_rank():
    # §4.5.1: trained on the invariance energy D(s_x, s_y) alone the joint embedding collapses
    # (Fig. 10d); adding Barlow's redundancy reduction keeps s_x spread over many directions
    data = digits_views()
    batch = data.batch(torch.arange(512), torch.Generator().manual_seed(1))
    ranks = {}
    for use in (False, True):
        ebm = ebmgraph.compile(ebmgraph.loads(BARLOW), seed=0)
        Trainer(Regularized(ebm, use_regularizers=use, barlow_lambda=0.05), data, epochs=10, batch=128, lr=3e-3,
                progress=False).fit()
        rep = collapse_report(ebm, batch, ["s_x"])
        ranks[use] = (rep["s_x.rank"], rep["s_x.std"])
    assert ranks[False][0] < 2 and ranks[False][1] < 0.05, ranks
    assert ranks[True][0] > ranks[False][0] + 4 and ranks[True][1] > 10 * ranks[False][1], ranks
