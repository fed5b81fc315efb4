"""SIGReg beside VICReg (issue 29), and batch regularizers over a whole array (over the batch and over time)."""
from __future__ import annotations

import math

import pytest
import torch

import ebmgraph
from ebmgraph.train.losses_regularized import Regularized, sigreg_term, vicreg_terms


def test_sigreg_is_small_for_a_standard_gaussian_and_matches_the_closed_form_of_a_collapse():
    g = torch.Generator().manual_seed(0)
    gauss = torch.randn(4096, 8, generator=g, dtype=torch.float64)
    zero = torch.zeros(4096, 8, dtype=torch.float64)
    # every projection of a collapsed batch is 0: φ̂ = 1, so ∫ (1 − e^{−t²/2})² e^{−t²/2} dt over R
    closed = math.sqrt(2 * math.pi) - 2 * math.sqrt(math.pi) + math.sqrt(2 * math.pi / 3)
    got = float(sigreg_term(zero, knots=401, t_max=12.0, generator=torch.Generator().manual_seed(1)))
    assert abs(got - closed) < 1e-6, (got, closed)
    small = float(sigreg_term(gauss, generator=torch.Generator().manual_seed(1)))
    wide = float(sigreg_term(3 * gauss, generator=torch.Generator().manual_seed(1)))
    shifted = float(sigreg_term(gauss + 1.5, generator=torch.Generator().manual_seed(1)))
    assert small < 2e-3 and wide > 50 * small and shifted > 50 * small, (small, wide, shifted)


def test_sigreg_pulls_a_batch_toward_the_isotropic_gaussian():
    """Gradient descent on SIGReg alone spreads a narrow, correlated batch toward unit, uncorrelated spread."""
    g = torch.Generator().manual_seed(0)
    z = (0.1 * torch.randn(512, 4, generator=g) @ torch.tensor([[1.0, 0.9, 0, 0], [0, 0.4, 0, 0],
                                                                [0, 0, 1, 0], [0, 0, 0, 1]])).requires_grad_()
    opt = torch.optim.Adam([z], lr=0.05)
    for step in range(300):
        opt.zero_grad()
        sigreg_term(z, generator=torch.Generator().manual_seed(step)).backward()
        opt.step()
    cov = torch.cov(z.detach().T)
    torch.testing.assert_close(cov, torch.eye(4), atol=0.25, rtol=0)


SPEC = """
name: arr
index: {t: 0..T-1}
sizes: {T: 3}
variables:
  x[t]: {observed: [4]}
modules: {Enc: "linear(4, 2)", C: sq_dist}
functions:
  s[t]: Enc(x[t])
energy:
  E[t]: C(s[t])
regularizers:
  R: %s
"""


@pytest.mark.parametrize("fn", ["vicreg", "sigreg"])
def test_a_regularizer_over_a_whole_array_reads_every_step_as_a_row(fn):
    ebm = ebmgraph.compile(SPEC % f"{fn}(s)", seed=0)
    loss = Regularized(ebm, energy_weight=0.0)
    x = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(0))
    out = loss({"x": x}, torch.Generator().manual_seed(7))
    rows = ebm.mods.Enc(x.reshape(15, 4))  # all 3 steps of all 5 samples: 15 rows
    if fn == "vicreg":
        want = vicreg_terms(rows, rows)
        assert out.stats["R.var"] == pytest.approx(float(want["var"]) / 2, rel=1e-5)
        assert out.stats["R.cov"] == pytest.approx(float(want["cov"]) / 2, rel=1e-5)
    else:
        want = sigreg_term(rows, generator=torch.Generator().manual_seed(7))
        assert out.stats["R.sig"] == pytest.approx(float(want), rel=1e-5)


def test_an_element_argument_reads_that_element_only():
    ebm = ebmgraph.compile(SPEC % "vicreg(s[0], s[2])", seed=0)
    loss = Regularized(ebm, energy_weight=0.0)
    x = torch.randn(6, 3, 4, generator=torch.Generator().manual_seed(0))
    out = loss({"x": x}, torch.Generator().manual_seed(0))
    want = vicreg_terms(ebm.mods.Enc(x[:, 0]), ebm.mods.Enc(x[:, 2]))
    for k in ("var", "cov", "inv"):
        assert out.stats[f"R.{k}"] == pytest.approx(float(want[k]), rel=1e-5)


def test_sigreg_covers_both_branches_of_a_jepa_against_collapse():
    spec = """
name: j
variables:
  x: {observed: [4]}
  y: {observed: [4]}
modules:
  Enc: linear(4, 2)
  Pred: linear(2, 2)
functions:
  s_x: Enc(x)
  s_y: Enc(y)
  p: Pred(s_x)
energy:
  D: sq_dist(s_y, p)
%s
"""
    assert ebmgraph.compile(spec % "").checked.architecture.can_collapse
    assert not ebmgraph.compile(spec % "regularizers:\n  R: sigreg(s_x, s_y)").checked.architecture.can_collapse
