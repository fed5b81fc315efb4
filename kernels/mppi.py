"""MPPI and CEM planning steps over P problems x K samples with the fused rollout inside.

Everything after argument set-up is device-side torch ops: no .item(), no Python branch on a tensor
value, so on CUDA the ``iters`` iterations queue without host synchronisation (and can be captured
in one CUDA graph with ``cuda_graph=True``).  Energies come from ``kernels.rollout.mlp_rollout``
(``rollout="auto"`` = fused kernel when possible, "fused" = required, "reference" = plain torch).

Sample 0 of every problem is the current mean (zero noise) when ``include_mean=True``, so the best
energy returned is never above the energy of the initial mean.

The settings are named as :func:`ebmgraph.infer.sampling.cem` / ``mppi`` name them (``samples``,
``iters``, ``sigma``, ``temperature``, ``elite_frac``, ``momentum``, ``min_sigma``), and both count
CEM's elites with :func:`n_elites`, written once here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Tuple, Union

import torch

if TYPE_CHECKING:  # the rollout module imports triton: read when a plan runs, not when this module is imported
    from .rollout import MLPPredictor, RolloutCost

__all__ = ["PlanResult", "plan_mppi", "plan_cem", "mppi_step", "cem_step", "plan_energy", "n_elites"]


def n_elites(elite_frac: float, samples: int) -> int:
    """How many of ``samples`` candidates CEM refits to: ``round(elite_frac · samples)``, at least 1 and at
    most ``samples``. The one rule of the fused kernels and of :func:`ebmgraph.infer.sampling.cem`.

    Example:
        >>> [n_elites(0.1, k) for k in (4, 64, 1024)]
        [1, 6, 102]
    """
    return min(int(samples), max(1, int(round(float(elite_frac) * int(samples)))))


Bounds = Optional[Tuple[Union[float, torch.Tensor], Union[float, torch.Tensor]]]


@dataclass
class PlanResult:
    mean: torch.Tensor  # [P,T,A] final sampling mean (MPPI / CEM plan)
    std: torch.Tensor  # [P,T,A] final sampling std (constant sigma for MPPI)
    best_actions: torch.Tensor  # [P,T,A] lowest-energy sample seen
    best_energy: torch.Tensor  # [P]
    history: torch.Tensor  # [iters, P] lowest sampled energy per iteration


@dataclass
class _Ctx:
    s0: torch.Tensor  # [P*K, S]
    cost: RolloutCost  # goal expanded to [P*K, S] when per-problem
    predictor: MLPPredictor
    P: int
    K: int
    lo: Optional[torch.Tensor]
    hi: Optional[torch.Tensor]
    keep: torch.Tensor  # [1,K,1,1]: 0 for the mean sample, 1 otherwise
    generator: Optional[torch.Generator]
    impl: str
    precision: str
    penalty: Optional[Callable] = None  # actions [P*K, T, A] -> [P*K], added to the rollout energy


def _make_ctx(s0, mean0, predictor, cost, K, bounds, generator, include_mean, impl, precision, penalty=None) -> _Ctx:
    P, T, A = mean0.shape
    if s0.shape[0] != P:
        raise ValueError(f"s0 is [{s0.shape[0]},S] but mean0 has P={P}")
    if K < 2:
        raise ValueError(f"samples must be >= 2, got {K}")
    dev = mean0.device
    goal = cost.goal
    if goal.dim() == 2:
        if goal.shape[0] != P:
            raise ValueError("per-problem goal must be [P,S]")
        goal = goal.repeat_interleave(K, 0)
    cost_pk = dataclasses.replace(cost, goal=goal)
    lo = hi = None
    if bounds is not None:
        lo = torch.as_tensor(bounds[0], dtype=mean0.dtype, device=dev)
        hi = torch.as_tensor(bounds[1], dtype=mean0.dtype, device=dev)
    keep = torch.ones(1, K, 1, 1, dtype=mean0.dtype, device=dev)
    if include_mean:
        keep[:, 0] = 0.0
    return _Ctx(s0.repeat_interleave(K, 0).contiguous(), cost_pk, predictor, P, K, lo, hi, keep, generator,
                impl, precision, penalty)


def _clamp(x, c: _Ctx):
    if c.lo is not None:
        x = torch.maximum(torch.minimum(x, c.hi), c.lo)
    return x


def _sample(mean, std, c: _Ctx):
    from .rollout import mlp_rollout

    P, T, A = mean.shape
    noise = torch.randn(P, c.K, T, A, generator=c.generator, device=mean.device, dtype=mean.dtype)
    acts = _clamp(mean[:, None] + noise * std[:, None] * c.keep, c)
    flat = acts.reshape(P * c.K, T, A)
    E = mlp_rollout(c.s0, flat, c.predictor, c.cost, impl=c.impl, precision=c.precision).to(mean.dtype)
    if c.penalty is not None:
        E = E + c.penalty(flat).to(mean.dtype)
    return acts, E.view(P, c.K)


def _track_best(acts, E, best_A, best_E):
    idx = E.argmin(1)
    e = E.gather(1, idx[:, None])[:, 0]
    a = acts[torch.arange(acts.shape[0], device=acts.device), idx]
    better = e < best_E
    return torch.where(better[:, None, None], a, best_A), torch.where(better, e, best_E), e


def mppi_step(mean, std, best_A, best_E, c: _Ctx, temperature: float):
    """One MPPI iteration: sample, roll out, softmax(-E/temperature) weights, weighted-mean update."""
    acts, E = _sample(mean, std, c)
    w = torch.softmax(-E / temperature, dim=1)  # softmax subtracts the max itself
    new_mean = (w[:, :, None, None] * acts).sum(1)
    best_A, best_E, emin = _track_best(acts, E, best_A, best_E)
    return new_mean, std, best_A, best_E, emin


def cem_step(mean, std, best_A, best_E, c: _Ctx, n_elite: int, momentum: float, min_sigma: float):
    """One CEM iteration: sample, roll out, keep the n_elite lowest energies, refit mean/std."""
    acts, E = _sample(mean, std, c)
    idx = torch.topk(E, n_elite, dim=1, largest=False).indices
    P, K, T, A = acts.shape
    elites = acts.gather(1, idx[:, :, None, None].expand(P, n_elite, T, A))
    mean = momentum * mean + (1.0 - momentum) * elites.mean(1)
    std = (momentum * std + (1.0 - momentum) * elites.std(1, unbiased=False)).clamp_min(min_sigma)
    best_A, best_E, emin = _track_best(acts, E, best_A, best_E)
    return mean, std, best_A, best_E, emin


def _run(step, mean0, std0, c: _Ctx, iters: int, cuda_graph: bool) -> PlanResult:
    def loop(mean, std):
        best_A = mean.clone()
        best_E = torch.full((c.P,), float("inf"), dtype=mean.dtype, device=mean.device)
        hist = []
        for _ in range(iters):
            mean, std, best_A, best_E, emin = step(mean, std, best_A, best_E)
            hist.append(emin)
        return PlanResult(mean, std, best_A, best_E, torch.stack(hist))

    if not (cuda_graph and mean0.is_cuda):
        return loop(mean0, std0)
    return _graphed(loop, mean0, std0, c.generator)


def _graphed(loop, mean0, std0, generator):
    """Capture all iterations in one CUDA graph and replay it once (no host sync inside).
    A warm-up iteration (Triton JIT) runs first with the RNG state restored afterwards."""
    gen = generator
    state = gen.get_state() if gen is not None else torch.cuda.get_rng_state()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        loop(mean0.clone(), std0.clone())
    torch.cuda.current_stream().wait_stream(side)
    if gen is not None:
        gen.set_state(state)
    else:
        torch.cuda.set_rng_state(state)
    graph = torch.cuda.CUDAGraph()
    if gen is not None:
        if not hasattr(graph, "register_generator_state"):
            raise RuntimeError("this torch cannot capture a custom generator; pass generator=None")
        graph.register_generator_state(gen)
    static_mean, static_std = mean0.clone(), std0.clone()
    with torch.cuda.graph(graph):
        out = loop(static_mean, static_std)
    graph.replay()
    return out


def _std0(mean0, sigma):
    return torch.as_tensor(sigma, dtype=mean0.dtype, device=mean0.device).expand_as(mean0).clone()


def plan_mppi(s0: torch.Tensor, mean0: torch.Tensor, predictor: MLPPredictor, cost: RolloutCost,
              iters: int = 8, samples: int = 256, temperature: float = 1.0, sigma=0.5, bounds: Bounds = None,
              generator: Optional[torch.Generator] = None, *, include_mean: bool = True, rollout: str = "auto",
              precision: str = "tf32", cuda_graph: bool = False, penalty: Optional[Callable] = None) -> PlanResult:
    """MPPI over P problems: s0 [P,S], mean0 [P,T,A]; ``samples`` K each; softmin ``temperature``; noise std
    ``sigma`` (float, [A] or [P,T,A]); ``bounds`` = (lo, hi) clamp of the actions; ``penalty``
    (actions [P*K,T,A] -> [P*K]) added to every sample's energy."""
    c = _make_ctx(s0, mean0, predictor, cost, samples, bounds, generator, include_mean, rollout, precision, penalty)
    step = lambda m, s, bA, bE: mppi_step(m, s, bA, bE, c, temperature)  # noqa: E731
    return _run(step, mean0, _std0(mean0, sigma), c, iters, cuda_graph)


def plan_cem(s0: torch.Tensor, mean0: torch.Tensor, predictor: MLPPredictor, cost: RolloutCost,
             iters: int = 8, samples: int = 256, elite_frac: float = 0.1, momentum: float = 0.1, sigma=0.5,
             bounds: Bounds = None, generator: Optional[torch.Generator] = None, *, min_sigma: float = 1e-3,
             include_mean: bool = True, rollout: str = "auto", precision: str = "tf32",
             cuda_graph: bool = False, penalty: Optional[Callable] = None) -> PlanResult:
    """Cross-entropy method: keep the :func:`n_elites` best of ``samples``, refit mean/std with ``momentum``
    (weight of the old value), std at least ``min_sigma``; ``penalty`` as in :func:`plan_mppi`."""
    c = _make_ctx(s0, mean0, predictor, cost, samples, bounds, generator, include_mean, rollout, precision, penalty)
    n_elite = n_elites(elite_frac, samples)
    step = lambda m, s, bA, bE: cem_step(m, s, bA, bE, c, n_elite, momentum, min_sigma)  # noqa: E731
    return _run(step, mean0, _std0(mean0, sigma), c, iters, cuda_graph)


def plan_energy(s0, actions, predictor, cost, impl: str = "auto"):
    """Energy [P] of one action sequence per problem (s0 [P,S], actions [P,T,A])."""
    from .rollout import mlp_rollout

    return mlp_rollout(s0, actions, predictor, cost, impl=impl)
