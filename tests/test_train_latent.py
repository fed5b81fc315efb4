"""Latent variables in training (§4.5, Figs. 19–20): latent capacity decides whether matched and
mismatched pairs separate; the noisy latent's KL term; amortized inference."""
import pytest
import torch
from sklearn.metrics import roc_auc_score

import ebmgraph
from ebmgraph.infer import minimize
from ebmgraph.train import Amortized, Dataset, Regularized, Trainer, values
from ebmgraph.train.data import latent_modes
from ebmgraph.train.losses_regularized import gaussian_kl

SPECS = "examples/specs/"


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _F(ebm, x, y):
    """F(x, y) = min_z E(x, y, z) (eq. 4): enumeration for a discrete z, L-BFGS otherwise."""
    if isinstance(ebm.graph.var("z").domain, ebmgraph.ir.Discrete):
        return minimize(ebm, {"x": x, "y": y}, over=["z"], method="exhaustive").energy.detach()
    return minimize(ebm, {"x": x, "y": y}, over=["z"], method="gradient", steps=100, restarts=2, seed=0).energy.detach()


def _capacity(name):
    ebm = ebmgraph.compile(f"{SPECS}train_latent_{name}.yaml", seed=0)
    x, y, _ = latent_modes(1024, seed=0)
    Trainer(Regularized(ebm, infer_steps=20), Dataset(name, {"x": x, "y": y}), epochs=30, batch=128, lr=3e-3,
            progress=False).fit()
    xt, yt, _ = latent_modes(300, seed=1000)
    ym = yt.roll(1, 0)  # the y of another x
    em, ex = _F(ebm, xt, yt), _F(ebm, xt, ym)
    auc = roc_auc_score([1] * 300 + [0] * 300, (-torch.cat([em, ex])).numpy())
    return auc, em, ex, ((ym - xt) ** 2).sum(1)


def test_latent_capacity_decides_whether_mismatched_pairs_get_high_energy():
    # §4.5: limited latents (K = 4 values, or L1-sparse) separate matched from mismatched pairs;
    # an unregularized latent as wide as y explains (almost) any y, mismatched ones included.
    res = {n: _capacity(n) for n in ("discrete", "l1", "wide")}
    assert res["discrete"][0] >= 0.9, res["discrete"][0]
    assert res["l1"][0] >= 0.9, res["l1"][0]
    _, em, ex, base = res["wide"]
    # the wide latent removes ≥ 90% of the mismatch energy that a latent-free prediction y = x would leave,
    # while the limited latents keep most of it
    assert float(ex.mean()) < 0.1 * float(base.mean()), (float(ex.mean()), float(base.mean()))
    for n in ("discrete", "l1"):
        assert float(res[n][2].mean()) > 5 * float(ex.mean()), (n, float(res[n][2].mean()), float(ex.mean()))


def test_gaussian_kl_matches_torch_distributions_and_is_differentiable():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    sig = (0.2 + torch.rand(6, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, sig),
                                            torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(sig))).sum(1)
    torch.testing.assert_close(gaussian_kl(mu, sig), ref)
    assert torch.autograd.gradcheck(lambda m, s: gaussian_kl(m, s), (mu, sig))
    # a scalar σ broadcasts; the gradient in μ is μ (the KL is ½‖μ‖² + const in μ)
    m = mu.detach().clone().requires_grad_(True)
    gaussian_kl(m, 0.5).sum().backward()
    torch.testing.assert_close(m.grad, m.detach())


def test_noisy_latent_loss_adds_the_kl_of_the_inferred_latent():
    # VAE-style latent (§4.5): z = ž + σε; the loss is E(x, y, z) + w·KL(N(ž, σ²) ‖ N(0, 1)).
    ebm = ebmgraph.compile(f"{SPECS}train_latent_wide.yaml", seed=0)
    x, y, _ = latent_modes(64, seed=3)
    outs = {}
    for w in (0.0, 2.0):
        loss = Regularized(ebm, latent_noise=0.3, kl_weight=w, infer_steps=10)
        outs[w] = loss({"x": x, "y": y}, torch.Generator().manual_seed(7))
    # the information cost shapes inference: ž shrinks toward 0, so the KL falls
    assert outs[2.0].stats["z_abs"] < outs[0.0].stats["z_abs"]
    assert outs[2.0].stats["kl"] < outs[0.0].stats["kl"]
    # and it reaches the parameters (through ž), not only the loss value
    grads = {}
    for w in (0.0, 2.0):
        ebm.zero_grad(set_to_none=True)
        loss = Regularized(ebm, latent_noise=0.3, kl_weight=w, infer_steps=10)
        loss({"x": x, "y": y}, torch.Generator().manual_seed(7)).loss.backward()
        grads[w] = torch.cat([p.grad.flatten() for p in ebm.parameters() if p.grad is not None])
    assert grads[2.0].abs().sum() > 0
    assert (grads[2.0] - grads[0.0]).abs().max() > 1e-6


def _amortized_data(n, seed):
    # y = 0.5·x + M z_true with a 3-d hidden cause: the latent carries what x does not tell about y
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(8, 3, generator=torch.Generator().manual_seed(99))
    x = torch.randn(n, 8, generator=g)
    return x, 0.5 * x + torch.randn(n, 3, generator=g) @ M.T


def _zcheck(ebm, x, y, **kw):
    """ž = argmin_z E with the encoder term off (h = 0), the minimizer of Figs. 19–20."""
    ebm.set_weights(h=0.0)
    try:
        return minimize(ebm, {"x": x, "y": y}, over=["z"], method="gradient", optimizer="adam", lr=0.05, **kw)
    finally:
        ebm.set_weights(h=1.0)


def test_amortized_encoder_approaches_the_minimizer_and_warm_starts_inference():
    # Fig. 20: z̃ = Enc_z(s_x, y) is trained by H(ž, z̃) to predict ž = argmin_z E(x, y, z).
    ebm = ebmgraph.compile("specs/fig20_amortized_generative.yaml", seed=0)
    x, y = _amortized_data(1024, 0)
    xt, yt = _amortized_data(256, 1)

    def gap():
        zc = _zcheck(ebm, xt, yt, steps=300).values["z"]
        with torch.no_grad():
            zt = values(ebm, ["z_tilde"], x=xt, y=yt)["z_tilde"]
        # squared error relative to the spread of ž: 1 means z̃ tells nothing about ž
        return float(((zt - zc) ** 2).sum(1).mean() / ((zc - zc.mean(0)) ** 2).sum(1).mean())

    before = gap()
    Trainer(Amortized(ebm, infer_steps=20), Dataset("amortized", {"x": x, "y": y}), epochs=15, batch=128, lr=3e-3,
            progress=False).fit()
    after = gap()
    assert after < before and after < 0.5, (before, after)
    # warm start from z̃: at least as low an energy as from z = 0, reached in fewer steps
    with torch.no_grad():
        zt = values(ebm, ["z_tilde"], x=xt, y=yt)["z_tilde"]
    cold = _zcheck(ebm, xt, yt, steps=200)
    warm = _zcheck(ebm, xt, yt, steps=200, init={"z": zt})
    assert float(warm.energy.mean()) <= float(cold.energy.mean()) + 1e-3
    target = float(cold.energy.mean()) + 0.01 * float(cold.trace[0].mean() - cold.energy.mean())

    def steps_to(r):
        return int((r.trace.mean(1) <= target).nonzero()[0])

    assert steps_to(warm) < steps_to(cold), (steps_to(warm), steps_to(cold))
