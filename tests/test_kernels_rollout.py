"""Fused MLP rollout (kernels/rollout.py) vs the fp64 torch reference.

CPU: runs the Triton kernels in the interpreter (TRITON_INTERPRET=1, set by conftest.py), which
computes fp32 dots exactly -> tolerance 1e-4 relative (to the max |ref|) vs float64.
GPU (marked `gpu`): tf32 dots -> 2e-3 relative; bf16 -> 3e-2 relative.
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

from ebmgraph.kernels.rollout import (
    MLPPredictor,
    RolloutCost,
    dispatch,
    mlp_rollout,
    mlp_rollout_reference,
    supports,
)

INTERP_TOL = 1e-4
TF32_TOL = 2e-3
BF16_TOL = 3e-2


def _lin(i, o, g, scale=0.6):
    return (torch.randn(i, o, generator=g, dtype=torch.float64) * scale / i ** 0.5,
            torch.randn(o, generator=g, dtype=torch.float64) * 0.1)


def make_problem(N=37, T=7, S=5, A=3, H=19, nl=2, act="tanh", residual=True, has_q=True, ncl=1,
                 goal_ps=False, cact="silu", seed=0, H2=None):
    g = torch.Generator().manual_seed(seed)
    H2 = H if H2 is None else H2
    dims = {1: [S + A, S], 2: [S + A, H, S], 3: [S + A, H, H2, S]}[nl]
    layers = [_lin(dims[i], dims[i + 1], g) for i in range(nl)]
    critic = {0: [], 1: [_lin(S, 1, g)], 2: [_lin(S, 11, g), _lin(11, 1, g)]}[ncl]
    Q = None
    if has_q:
        M = torch.randn(S, S, generator=g, dtype=torch.float64) * 0.3
        Q = M @ M.T + 0.1 * torch.randn(S, S, generator=g, dtype=torch.float64)  # not symmetric
    goal = torch.randn(N, S, generator=g, dtype=torch.float64) if goal_ps else torch.randn(S, generator=g, dtype=torch.float64)
    pred = MLPPredictor(layers, act=act, residual=residual)
    cost = RolloutCost(goal=goal, w_goal=0.7, Q=Q, critic_layers=critic, critic_act=cact)
    s0 = torch.randn(N, S, generator=g, dtype=torch.float64)
    actions = torch.randn(N, T, A, generator=g, dtype=torch.float64)
    wE = torch.rand(N, generator=g, dtype=torch.float64) + 0.5  # upstream dE weights
    wtraj = torch.randn(N, T + 1, S, generator=g, dtype=torch.float64) * 0.1
    return pred, cost, s0, actions, wE, wtraj


# (nl, act, residual, has_q, ncl, goal_ps, T, use_traj_grad, save) -- covers every option
CASES = [
    (1, "tanh", True, False, 0, False, 1, False, "traj"),
    (1, "relu", False, True, 1, True, 7, True, "recompute"),
    (2, "tanh", True, True, 2, False, 40, False, "traj"),
    (2, "relu", True, False, 1, True, 7, False, "recompute"),
    (2, "gelu", False, True, 0, False, 7, True, "traj"),
    (2, "silu", True, True, 2, True, 7, False, "traj"),
    (2, "elu", False, False, 2, False, 7, False, "recompute"),
    (3, "tanh", False, True, 1, False, 7, False, "traj"),
    (3, "relu", True, True, 0, True, 1, False, "traj"),
    (3, "gelu", True, False, 2, True, 40, True, "recompute"),
    (3, "silu", False, False, 0, False, 7, False, "traj"),
    (3, "elu", True, True, 1, False, 7, False, "traj"),
]


def _rel(x, ref):
    return ((x.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def _run(pred, cost, s0, actions, wE, wtraj, use_traj, dtype, device, **kw):
    p, c = pred.to(dtype=dtype, device=device), cost.to(dtype=dtype, device=device)
    s = s0.detach().to(dtype=dtype, device=device).clone().requires_grad_()
    a = actions.detach().to(dtype=dtype, device=device).clone().requires_grad_()
    goal = c.goal.detach().clone().requires_grad_()
    c = RolloutCost(goal=goal, w_goal=c.w_goal, Q=c.Q, critic_layers=c.critic_layers, critic_act=c.critic_act)
    if dtype == torch.float64:
        E, traj = mlp_rollout_reference(s, a, p, c, return_traj=True)
    else:
        E, traj = mlp_rollout(s, a, p, c, return_traj=True, impl="fused", **kw)
    loss = (E * wE.to(E)).sum()
    if use_traj:
        loss = loss + (traj * wtraj.to(traj)).sum()
    loss.backward()
    return E.detach(), traj.detach(), s.grad, a.grad, goal.grad


def _check(case, tol, device="cpu", N=37, **kw):
    nl, act, residual, has_q, ncl, goal_ps, T, use_traj, save = case
    prob = make_problem(N=N, T=T, nl=nl, act=act, residual=residual, has_q=has_q, ncl=ncl, goal_ps=goal_ps,
                        seed=CASES.index(case) if case in CASES else 0)
    ref = _run(*prob, use_traj, torch.float64, device)
    out = _run(*prob, use_traj, torch.float32, device, save=save, **kw)
    names = ["energy", "traj", "grad_s0", "grad_actions", "grad_goal"]
    for name, o, r in zip(names, out, ref):
        assert o.shape == r.shape, name
        assert torch.isfinite(o).all(), name
        err = _rel(o, r)
        assert err < tol, f"{name}: rel err {err:.2e} >= {tol:.0e} for {case}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_fused_matches_fp64_reference(case):
    _check(case, INTERP_TOL, block_n=32)  # N=37 -> 2 programs, the second one partly masked


def test_save_modes_agree_and_traj_returned():
    pred, cost, s0, actions, *_ = make_problem(N=20, T=5, nl=2, act="tanh")
    pred, cost = pred.to(torch.float32), cost.to(torch.float32)
    grads = []
    for save in ("traj", "recompute"):
        a = actions.float().requires_grad_()
        E = mlp_rollout(s0.float(), a, pred, cost, impl="fused", save=save)
        E.sum().backward()
        grads.append(a.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)
    E, traj = mlp_rollout(s0.float(), actions.float(), pred, cost, return_traj=True, impl="fused")
    assert traj.shape == (20, 6, 5)
    torch.testing.assert_close(traj[:, 0], s0.float())


def test_bf16_emulated_in_interpreter():
    """bf16 weights/dot inputs with fp32 accumulation: error must be bf16-sized, not garbage."""
    case = (2, "tanh", True, True, 1, False, 7, False, "traj")
    _check(case, BF16_TOL, precision="bf16", block_n=64)


def test_reference_gradcheck():
    pred, cost, s0, actions, *_ = make_problem(N=3, T=3, S=3, A=2, H=4, nl=3, act="gelu", ncl=2, goal_ps=True)
    for W, b in pred.layers + cost.critic_layers:
        W.requires_grad_(), b.requires_grad_()
    cost.Q.requires_grad_()
    goal = cost.goal.requires_grad_()
    s0.requires_grad_(), actions.requires_grad_()

    def f(s, a, g, W1):
        layers = ((W1, pred.layers[0][1]),) + pred.layers[1:]
        p = MLPPredictor(layers, act=pred.act, residual=pred.residual)
        c = RolloutCost(goal=g, w_goal=cost.w_goal, Q=cost.Q, critic_layers=cost.critic_layers,
                        critic_act=cost.critic_act)
        return mlp_rollout_reference(s, a, p, c)

    assert torch.autograd.gradcheck(f, (s0, actions, goal, pred.layers[0][0]))


def test_supports_and_fallback():
    pred, cost, s0, actions, *_ = make_problem(N=9, T=3, nl=2)
    pred, cost = pred.to(torch.float32), cost.to(torch.float32)
    s0, actions = s0.float(), actions.float()
    ok, why = supports(pred, cost)
    assert ok, why
    # 4 layers -> unsupported, reference used, fused refuses
    g = torch.Generator().manual_seed(1)
    W = [(torch.randn(8, 6, generator=g) * 0.3, torch.zeros(6))] + \
        [(torch.randn(6, 6, generator=g) * 0.3, torch.zeros(6)) for _ in range(2)] + \
        [(torch.randn(6, 5, generator=g) * 0.3, torch.zeros(5))]
    deep = MLPPredictor(W, act="tanh")
    ok, why = supports(deep, cost)
    assert not ok and "4 layers" in why
    torch.testing.assert_close(mlp_rollout(s0, actions, deep, cost), mlp_rollout_reference(s0, actions, deep, cost))
    with pytest.raises(RuntimeError, match="4 layers"):
        mlp_rollout(s0, actions, deep, cost, impl="fused")
    # unsupported activation
    soft = MLPPredictor(pred.layers, act="softplus")
    ok, why = supports(soft, cost)
    assert not ok and "softplus" in why
    torch.testing.assert_close(mlp_rollout(s0, actions, soft, cost), mlp_rollout_reference(s0, actions, soft, cost))
    # too wide
    wide = MLPPredictor([(torch.zeros(8, 300), torch.zeros(300)), (torch.zeros(300, 5), torch.zeros(5))])
    ok, why = supports(wide, cost)
    assert not ok and "H1=300" in why
    # a 256x128 fp32 weight tile is over the shared-memory budget; bf16 halves it
    big = MLPPredictor([(torch.zeros(8, 256), torch.zeros(256)), (torch.zeros(256, 128), torch.zeros(128)),
                        (torch.zeros(128, 5), torch.zeros(5))])
    ok, why = supports(big, cost)
    assert not ok and "256x128" in why
    assert supports(big, cost, precision="bf16")[0]
    # weight gradients -> dispatched to the reference, and the gradient arrives
    W1 = pred.layers[0][0].clone().requires_grad_()
    p2 = MLPPredictor(((W1, pred.layers[0][1]),) + pred.layers[1:], act=pred.act)
    use, why = dispatch(s0, actions, p2, cost)
    assert not use and "weights" in why
    mlp_rollout(s0, actions, p2, cost).sum().backward()
    assert W1.grad is not None and W1.grad.abs().sum() > 0
    # float64 inputs -> reference
    use, why = dispatch(s0.double(), actions.double(), pred.to(torch.float64), cost.to(torch.float64))
    assert not use and "float64" in why
    # no interpreter on CPU -> reference
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "0"
    try:
        use, why = dispatch(s0, actions, pred, cost)
        assert not use and "CUDA" in why
    finally:
        os.environ["TRITON_INTERPRET"] = old if old is not None else "1"


def test_shape_errors():
    pred, cost, s0, actions, *_ = make_problem(N=4, T=2)
    with pytest.raises(ValueError):
        mlp_rollout_reference(s0, actions[:, :, :2], pred, cost)
    with pytest.raises(ValueError):
        RolloutCost(goal=torch.zeros(5), Q=torch.zeros(4, 4))


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_gpu_tf32_matches_fp64(case):
    _check(case, TF32_TOL, device="cuda", N=333)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("case", CASES[:6], ids=lambda c: "-".join(map(str, c)))
def test_gpu_ieee_matches_fp64(case):
    _check(case, INTERP_TOL * 5, device="cuda", N=333, precision="ieee")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("case", CASES[:6], ids=lambda c: "-".join(map(str, c)))
def test_gpu_bf16_matches_fp64(case):
    _check(case, BF16_TOL, device="cuda", N=333, precision="bf16")
