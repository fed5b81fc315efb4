"""F_β of non-quadratic energies against numerical quadrature (§2.3, eq. 4–5).

``F_β(x) = −(1/β) log ∫ exp(−β E(x, z)) dz``. On a quadratic energy the Laplace proposal is
the exact Gibbs distribution, so a check there cannot see a wrong estimator. Here the energies
are quartic in z, built from spec kinds (``l2`` products and shifts), with an observed tilt x:

* unimodal quartic (unbounded z, ``proposal="laplace"``):
  ``E = ¼|z|⁴ + ½|z|² + x·z``, in 1-D and 2-D (|z|⁴ couples the coordinates);
* tilted double well (z in a box, ``proposal="uniform"``):
  ``E = (|z|² − 1)² + x·z``, in 1-D and 2-D (a tilted ring).

The reference is a dense trapezoid rule in float64 (the integrands are smooth and negligible at
the grid's edge / the box's faces are part of the integral, so the rule's error is far below
the tolerances). ``x·z`` is written ``¼(|z + x|² − |z − x|²)``.

Tolerances. The estimator is ``F̂ = −(1/β) log((1/K) Σ_k w_k)``, ``w = exp(−βE)/q`` with K
samples from q. Its standard deviation is ``≈ cv/(β√K)`` with ``cv² = E_q[w²]/Z² − 1 =
∫ p²/q / Z² − 1`` (p = exp(−βE), Z = ∫p), which the test computes on the same grid for each
problem; the tolerance is 5 such standard deviations (K = 100,000 keeps it at 0.001-0.04).
Each case also checks that the tolerance is at least 3x smaller than the gap between the truth
and the Laplace (Gaussian) closed form, or between the truth and the minimum, so an estimator
that returned either would fail.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ebmgraph

QUARTIC = """
name: quartic
variables:
  x: {observed: [%(d)d]}
  z: {latent: [%(d)d]}
energy:
  E: 0.25 * l2(z) * l2(z) + 0.5 * l2(z) + 0.25 * (l2(z + x) - l2(z - x))
"""

WELL = """
name: well
variables:
  x: {observed: [%(d)d]}
  z: {latent: [%(d)d], bounds: [%(lo)s, %(hi)s]}
energy:
  E: l2(z) * l2(z) - 2 * l2(z) + 1 + 0.25 * (l2(z + x) - l2(z - x))
"""

# observed tilts: small for the quartic (z* near 0, where the quartic is far from its Laplace
# approximation), larger for the wells (one well clearly lower)
X_LAP = {1: np.array([[-0.3], [0.1], [0.5]]), 2: np.array([[-0.3, 0.1], [0.2, 0.2], [0.5, -0.3]])}
X_WELL = {1: np.array([[0.8], [-0.3], [2.0]]), 2: np.array([[0.8, -0.4], [-0.3, 0.1], [1.5, 1.0]])}
K = 100_000  # samples per problem


def e_quartic(z, x):
    r2 = (z * z).sum(-1)
    return 0.25 * r2 * r2 + 0.5 * r2 + (z * x).sum(-1)


def e_well(z, x):
    r2 = (z * z).sum(-1)
    return (r2 - 1.0) ** 2 + (z * x).sum(-1)


def grid(d, lo, hi, n):
    """Points [n^d, d] and trapezoid weights [n^d] on the box [lo, hi]^d."""
    t = np.linspace(lo, hi, n)
    w1 = np.full(n, (hi - lo) / (n - 1))
    w1[[0, -1]] *= 0.5
    mesh = np.stack(np.meshgrid(*[t] * d, indexing="ij"), -1).reshape(-1, d)
    w = np.prod(np.stack(np.meshgrid(*[w1] * d, indexing="ij"), -1).reshape(-1, d), -1)
    return mesh, w


def log_int(logf, w):
    m = logf.max()
    return m + math.log(float((np.exp(logf - m) * w).sum()))


def quartic_min(x):
    """z* and the Hessian there (Newton on the exact gradient z(|z|²+1) + x)."""
    z = -x / (1.0 + (x * x).sum())
    for _ in range(100):
        r2 = (z * z).sum()
        g = z * (r2 + 1.0) + x
        H = (r2 + 1.0) * np.eye(len(x)) + 2.0 * np.outer(z, z)
        z = z - np.linalg.solve(H, g)
    r2 = (z * z).sum()
    return z, (r2 + 1.0) * np.eye(len(x)) + 2.0 * np.outer(z, z)


def _free_energy(ebm, x, beta, **kw):
    return ebmgraph.free_energy(ebm, {"x": torch.as_tensor(x)}, ["z"], beta=beta, seed=0, **kw).numpy()


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_laplace_proposal_on_a_quartic_matches_quadrature(d, beta):
    ebm = ebmgraph.compile(QUARTIC % {"d": d}).double()
    zg, wg = grid(d, -6.0, 6.0, 4001 if d == 1 else 801)
    got = _free_energy(ebm, X_LAP[d], beta, samples=K, proposal="laplace")
    for i, x in enumerate(X_LAP[d]):
        E = e_quartic(zg, x)
        logZ = log_int(-beta * E, wg)
        truth = -logZ / beta
        zs, H = quartic_min(x)
        P = beta * H  # precision of the Laplace proposal
        d2 = np.einsum("ni,ij,nj->n", zg - zs, P, zg - zs)
        log_q = -0.5 * d2 - 0.5 * d * math.log(2 * math.pi) + 0.5 * math.log(np.linalg.det(P))
        cv2 = math.exp(log_int(-2 * beta * E - log_q, wg) - 2 * logZ) - 1.0
        tol = 5.0 * math.sqrt(cv2) / (beta * math.sqrt(K)) + 1e-9
        gauss = e_quartic(zs, x) - (0.5 * d * math.log(2 * math.pi / beta) - 0.5 * math.log(np.linalg.det(H))) / beta
        assert abs(truth - gauss) > 3 * tol, (truth, gauss, tol)  # the test can tell the truth from Laplace
        assert abs(got[i] - truth) < tol, (i, got[i], truth, tol, gauss)


@pytest.mark.parametrize("d,lo,hi", [(1, -2.5, 2.5), (2, -2.0, 2.0)])
@pytest.mark.parametrize("beta", [0.5, 3.0])
def test_uniform_proposal_on_a_double_well_matches_quadrature(d, lo, hi, beta):
    ebm = ebmgraph.compile(WELL % {"d": d, "lo": lo, "hi": hi}).double()
    zg, wg = grid(d, lo, hi, 4001 if d == 1 else 801)
    vol = (hi - lo) ** d
    got = _free_energy(ebm, X_WELL[d], beta, samples=K, proposal="uniform")
    for i, x in enumerate(X_WELL[d]):
        E = e_well(zg, x)
        logZ = log_int(-beta * E, wg)
        truth = -logZ / beta
        cv2 = math.exp(math.log(vol) + log_int(-2 * beta * E, wg) - 2 * logZ) - 1.0  # q = 1/vol
        tol = 5.0 * math.sqrt(cv2) / (beta * math.sqrt(K)) + 1e-9
        assert abs(truth - E.min()) > 3 * tol  # far from the minimum: the integral matters
        assert abs(got[i] - truth) < tol, (i, got[i], truth, tol)


def test_uniform_proposal_sees_both_wells():
    """With no tilt the two wells weigh the same: F_β is min E − (log of twice one well's mass)/β."""
    ebm = ebmgraph.compile(WELL % {"d": 1, "lo": -2.5, "hi": 2.5}).double()
    beta = 2.0
    got = _free_energy(ebm, np.zeros((1, 1)), beta, samples=K, proposal="uniform")[0]
    zg, wg = grid(1, 0.0, 2.5, 4001)
    one = log_int(-beta * e_well(zg, np.zeros(1)), wg)  # half of the (symmetric) integral
    truth = -(math.log(2.0) + one) / beta
    assert abs(got - truth) < 0.01 and abs(got + one / beta) > 0.3  # ~ log 2 / β = 0.35 from one well


@pytest.mark.parametrize("d", [1, 2])
def test_beta_to_infinity_is_the_minimum(d):
    ebm = ebmgraph.compile(QUARTIC % {"d": d}).double()
    mins = np.array([e_quartic(quartic_min(x)[0], x) for x in X_LAP[d]])
    F_inf = _free_energy(ebm, X_LAP[d], float("inf"))
    np.testing.assert_allclose(F_inf, mins, rtol=1e-8, atol=1e-10)
    gaps = []
    for beta in (1.0, 10.0, 100.0, 1000.0):
        F = _free_energy(ebm, X_LAP[d], beta, samples=4096, proposal="laplace")
        # F_β − min ≈ (1/2β) log det(βH/2π) + O(1/β²): the approach to the minimum
        want = np.array([(0.5 * math.log(np.linalg.det(beta * quartic_min(x)[1] / (2 * math.pi)))) / beta
                         for x in X_LAP[d]])
        gaps.append(F - mins)
        if beta >= 100:
            np.testing.assert_allclose(F - mins, want, rtol=0.05, atol=1e-4)
    gaps = np.abs(np.array(gaps))
    assert (np.diff(gaps, axis=0) < 0).all()  # |F_β − min| shrinks as β grows
    assert (gaps[-1] < 0.01).all()

    well = ebmgraph.compile(WELL % {"d": d, "lo": -2.0, "hi": 2.0}).double()
    zg, _ = grid(d, -2.0, 2.0, 4001 if d == 1 else 801)
    np.testing.assert_allclose(_free_energy(well, X_WELL[d], float("inf")),
                               [e_well(zg, x).min() for x in X_WELL[d]], rtol=1e-5, atol=1e-5)
