"""MPPI / CEM planning (kernels/mppi.py) on a linear residual predictor with a quadratic cost.

s' = s + B a, E = sum_t ||s_t - g||^2.  B is invertible, so the optimum reaches g in one step
(energy 0).  CPU runs use the Triton interpreter for the fused rollout.
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

from ebmgraph.kernels.mppi import plan_cem, plan_mppi
from ebmgraph.kernels.rollout import MLPPredictor, RolloutCost, mlp_rollout_reference

P, T, S, A = 3, 5, 4, 4


def problem(device="cpu", per_problem_goal=True):
    g = torch.Generator().manual_seed(0)
    B = torch.eye(A) * 0.8 + 0.1 * torch.randn(A, S, generator=g)
    W = torch.cat([torch.zeros(S, S), B], 0)  # [S+A, S]: s-part zero, a-part B
    pred = MLPPredictor([(W.to(device), torch.zeros(S, device=device))], act="tanh", residual=True)
    goal = torch.randn(P, S, generator=g) * 2 if per_problem_goal else torch.randn(S, generator=g) * 2
    cost = RolloutCost(goal=goal.to(device), w_goal=1.0)
    s0 = torch.randn(P, S, generator=g).to(device)
    mean0 = torch.zeros(P, T, A, device=device)
    return pred, cost, s0, mean0


def energy64(s0, acts, pred, cost):
    return mlp_rollout_reference(s0.double(), acts.double(), pred.to(torch.float64), cost.to(torch.float64))


PLANNERS = {
    "mppi": lambda *a, **k: plan_mppi(*a, iters=8, samples=64, temperature=0.5, sigma=0.7, bounds=(-3.0, 3.0), **k),
    "cem": lambda *a, **k: plan_cem(*a, iters=8, samples=64, elite_frac=0.1, momentum=0.1, sigma=0.7,
                                    bounds=(-3.0, 3.0), **k),
}


@pytest.mark.parametrize("name", list(PLANNERS))
def test_planner_lowers_energy_and_reports_it_truthfully(name):
    pred, cost, s0, mean0 = problem()
    res = PLANNERS[name](s0, mean0, pred, cost, generator=torch.Generator().manual_seed(1), rollout="fused")
    e0 = energy64(s0, mean0, pred, cost)
    e_best = energy64(s0, res.best_actions, pred, cost)
    e_mean = energy64(s0, res.mean, pred, cost)
    # the reported best energy is the energy of the reported best actions
    torch.testing.assert_close(res.best_energy.double(), e_best, rtol=1e-4, atol=1e-4)
    # never higher than anything sampled (history) nor than the initial mean (sample 0 is the mean)
    assert (res.best_energy <= res.history.min(0).values + 1e-6).all()
    assert (e_best <= e0).all()
    # the plan is much better than the start: < 25% of the initial energy
    assert (e_best < 0.25 * e0).all(), (e_best, e0)
    assert (e_mean < 0.5 * e0).all(), (e_mean, e0)
    assert res.history.shape == (8, P) and res.mean.shape == (P, T, A)
    assert ((res.best_actions >= -3) & (res.best_actions <= 3)).all()


@pytest.mark.parametrize("name", list(PLANNERS))
def test_same_seed_same_plan_and_fused_equals_reference(name):
    pred, cost, s0, mean0 = problem(per_problem_goal=(name == "mppi"))
    run = lambda seed, rollout: PLANNERS[name](s0, mean0, pred, cost,  # noqa: E731
                                               generator=torch.Generator().manual_seed(seed), rollout=rollout)
    a, b = run(3, "fused"), run(3, "fused")
    assert torch.equal(a.mean, b.mean) and torch.equal(a.best_actions, b.best_actions)
    c = run(4, "fused")
    assert not torch.equal(a.mean, c.mean)  # the seed matters
    r = run(3, "reference")
    torch.testing.assert_close(a.mean, r.mean, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a.best_energy, r.best_energy, rtol=1e-4, atol=1e-4)


def test_argument_errors():
    pred, cost, s0, mean0 = problem()
    with pytest.raises(ValueError):
        plan_mppi(s0[:2], mean0, pred, cost, samples=8)
    with pytest.raises(ValueError):
        plan_cem(s0, mean0, pred, cost, samples=1)


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("name", list(PLANNERS))
def test_gpu_plan_and_cuda_graph(name):
    pred, cost, s0, mean0 = problem("cuda")
    gen = lambda: torch.Generator(device="cuda").manual_seed(1)  # noqa: E731
    res = PLANNERS[name](s0, mean0, pred, cost, generator=gen(), rollout="fused")
    e0 = energy64(s0, mean0, pred, cost)
    assert (energy64(s0, res.best_actions, pred, cost) < 0.25 * e0).all()
    resg = PLANNERS[name](s0, mean0, pred, cost, generator=gen(), rollout="fused", cuda_graph=True)
    torch.cuda.synchronize()
    e_g = energy64(s0, resg.best_actions, pred, cost)
    assert (e_g < 0.25 * e0).all()
    torch.testing.assert_close(resg.best_energy.double(), e_g, rtol=2e-3, atol=2e-3)
