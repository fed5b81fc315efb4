"""Planning and energy evaluation through the energy-fused Triton kernels (kernels/rollout.py, kernels/mppi.py).

For a Mode-2 spec that fits (``ebmgraph.fusion.analyze_fused``; ``ebm.explain()`` says),
:func:`fused_energy` evaluates the whole rollout and its energy in one kernel (no
trajectory written) and :func:`plan_fused` runs MPPI or CEM with every iteration's rollouts
fused (§3.1.2, Fig. 4).
"""
from __future__ import annotations

import torch

from .. import ir
from ..fusion import FusedRollout, analyze_fused
from ..runtime import mlp_predictor


def _analysis(ebm) -> FusedRollout:
    fr, why = analyze_fused(ebm.checked, ebm.rollouts)
    if fr is None:
        raise ValueError(f"{ebm.graph.name} does not fit the fused kernel: {why}")
    return fr


def kernel_problem(ebm, fr: FusedRollout, inputs: dict):
    """(s0 [B,S], actions [B,T,A], MLPPredictor, RolloutCost) for the kernels, from spec inputs."""
    from ..kernels.rollout import RolloutCost

    x = ebm.prepare(inputs)
    s0 = ebm.evaluate(x, outputs=[f"{fr.state}[0]"])[f"{fr.state}[0]"]  # s[0] = Enc(...) from the generated code
    pred = mlp_predictor(ebm.mods[fr.predictor])
    S = pred.state_dim
    if fr.quadratic:
        m = ebm.mods[fr.quadratic[0]]
        Q = fr.quadratic[1] * (m.L @ m.L.t())
        cost_goal, w_goal = m.goal, 0.0
    else:
        Q = None
        cost_goal, w_goal = x[fr.goal[0]], fr.goal[1]
    critic = ()
    act = "tanh"
    if fr.critic:
        cm = ebm.mods[fr.critic[0]]
        lins = [m for m in cm.net if isinstance(m, torch.nn.Linear)]
        critic = tuple((lin.weight.t() * (fr.critic[1] if i == len(lins) - 1 else 1.0),
                        lin.bias * (fr.critic[1] if i == len(lins) - 1 else 1.0)) for i, lin in enumerate(lins))
        act = cm.act
    cost = RolloutCost(goal=cost_goal.reshape(-1, S) if cost_goal.dim() > 1 else cost_goal, w_goal=float(w_goal),
                       Q=Q, critic_layers=critic, critic_act=act)
    return s0, x.get(fr.action), pred, cost


def fused_energy(ebm, *, impl: str = "auto", **inputs) -> torch.Tensor:
    """Total energy ``[B]`` through the energy-fused kernel (falls back to its torch reference)."""
    from ..kernels.rollout import mlp_rollout

    fr = _analysis(ebm)
    s0, actions, pred, cost = kernel_problem(ebm, fr, inputs)
    return mlp_rollout(s0, actions, pred, cost, impl=impl)


def plan_fused(ebm, observed: dict, *, method: str = "mppi", init=None, generator=None, seed: int = 0,
               penalty=None, **settings):
    """MPPI or CEM over the action array with every rollout fused (``kernels/mppi.py``).

    Args:
        settings: the kernels' settings, named as :func:`ebmgraph.infer.sampling.cem` / ``mppi`` name them
            (``samples``, ``iters``, ``sigma``, ``temperature`` / ``elite_frac``, ``momentum``, ``min_sigma``)
            and the kernels' own (``rollout``, ``precision``, ``include_mean``, ``cuda_graph``).
        penalty: ``{action: [N, T, A]} -> [N]`` added to every sample's energy (as ``minimize(penalty=)``).

    Returns the kernels' ``PlanResult`` (mean, std, best_actions, best_energy, history).
    """
    from ..kernels.mppi import plan_cem, plan_mppi

    fr = _analysis(ebm)
    dummy = ebm.random_inputs(1, only=[fr.action])[fr.action]
    B = next(iter(observed.values())).shape[0]
    x = {**observed, fr.action: dummy.expand(B, *dummy.shape[1:]).contiguous()}
    s0, _, pred, cost = kernel_problem(ebm, fr, x)
    var = ebm.graph.var(fr.action)
    mean0 = init if init is not None else torch.zeros(B, fr.steps, *ebm.checked.shapes[fr.action],
                                                      dtype=s0.dtype, device=s0.device)
    bounds = None
    if isinstance(var.domain, ir.Real) and var.domain.bounded:
        bounds = (var.domain.lo if var.domain.lo is not None else -float("inf"),
                  var.domain.hi if var.domain.hi is not None else float("inf"))
    if generator is None:
        generator = torch.Generator(device=s0.device).manual_seed(seed)
    fn = {"mppi": plan_mppi, "cem": plan_cem}[method]
    extra = None
    if penalty is not None:
        def extra(acts):  # [N, T, A] in the kernel's dtype -> [N]
            return penalty({fr.action: acts.to(ebm.dtype)})
    with torch.no_grad():
        return fn(s0.detach(), mean0, pred, cost.to(s0.dtype), bounds=bounds, generator=generator, penalty=extra,
                  **settings)
