"""``minimize``: one entry point, dispatched by the variables' domains (§3.1.2, §4.2, §5).

Objective wrappers (``infer/objectives.py``) change *what* is minimized, not how:
adversarial latents (§5, games) make the objective ``max_w E``; sampled latents
(Figure 17) make it ``mean + λ·std`` over Gibbs draws (eq. 23) of the energy less their priors R(z).
"""
from __future__ import annotations

import functools
import math

import torch

from ..errors import SpecError
from ..util import as_generator
from .core import MinimizeResult, Problem
from .discrete import beam, dp, exhaustive, mixed, space_size
from .gradient import gradient
from .objectives import with_adversary, with_penalty, with_risk
from .sampling import cem, mppi

METHODS = ("auto", "gradient", "cem", "mppi", "exhaustive", "beam", "dp", "mcts", "mixed")

_POS_INT = ("steps", "restarts", "samples", "iters", "width", "simulations", "history", "ls_steps", "max_configs",
            "chunk", "n_draws", "inner_steps", "exhaustive_limit")
_POS_NUM = ("lr", "sigma", "temperature", "init_scale", "c", "inner_lr", "sigma_decay")
_NONNEG = ("noise_beta",)
_UNIT = {"elite_frac": (0.0, 1.0, "in (0, 1]"), "momentum": (-1e-300, 1.0 - 1e-12, "in [0, 1)")}


def check_settings(settings: dict) -> None:
    """Refuse method settings that cannot mean anything (``steps=-5``, ``width=0``, ``lr=nan``)."""
    for k, v in settings.items():
        if k in _POS_INT and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise SpecError(f"setting {k} must be a positive integer, got {v!r}")
        if k in _POS_NUM and v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                                or not math.isfinite(v) or v <= 0):
            raise SpecError(f"setting {k} must be a positive finite number, got {v!r}")
        if k in _NONNEG and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0):
            raise SpecError(f"setting {k} must be a non-negative finite number, got {v!r}")
        if k in _UNIT and (isinstance(v, bool) or not isinstance(v, (int, float)) or not _UNIT[k][0] < v <= _UNIT[k][1]):
            raise SpecError(f"setting {k} must be a number {_UNIT[k][2]}, got {v!r}")


@functools.lru_cache(maxsize=None)
def _known_settings(fn) -> tuple[str, ...] | None:
    """The keyword-only settings ``fn`` takes (None when it takes any); read once per function."""
    import inspect

    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return tuple(n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n != "generator")


def _settings_for(fn, method: str, settings: dict) -> None:
    """Name the settings a method takes when it is given one it does not."""
    known = _known_settings(fn)
    if known is None:
        return
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise SpecError(f"method {method!r} takes no setting {', '.join(unknown)}; its settings: {', '.join(known)}")


def _auto(prob: Problem, exhaustive_limit: int) -> tuple[str, str]:
    disc = [n for n in prob.over if prob.is_discrete(n)]
    cont = [n for n in prob.over if not prob.is_discrete(n)]
    if not disc:
        return "gradient", f"all of {cont} continuous: projected L-BFGS"
    N = space_size(prob, disc)
    if cont:
        return "mixed", f"{disc} discrete ({N} configurations) and {cont} continuous: enumerate, then L-BFGS"
    if N <= exhaustive_limit:
        return "exhaustive", f"discrete, {N} <= {exhaustive_limit} configurations: exact enumeration"
    if len(disc) == 1 and len(prob.shape(disc[0])) == 1 and prob.objective_fn is None:
        try:
            _is_chain(prob, disc[0])
            return "dp", f"{disc[0]} is a discrete chain ({N} configurations): exact dynamic programming"
        except SpecError as exc:
            return "beam", f"{N} configurations, not a chain ({exc.args[0][:80]}...): beam search"
    raise SpecError(f"no automatic method for {N} discrete configurations over {disc}; "
                    f"choose method='mcts' or 'beam' on one array")


def _is_chain(prob: Problem, name: str) -> None:
    for node, sc in prob.scopes().items():
        pos = sorted(p for (_, p) in sc)
        if len(pos) > 2 or (len(pos) == 2 and pos[1] - pos[0] != 1):
            raise SpecError(f"{node[0][7:]}[{node[1]}] reads {len(pos)} non-chain elements of {name}")


def minimize(ebm, observed: dict | None = None, over=None, method: str = "auto", *, seed: int = 0,
             generator: torch.Generator | None = None, maximize=(), sample=None, n_draws: int = 16,
             risk: float = 0.0, inner_steps: int = 50, inner_lr: float = 0.1, exhaustive_limit: int = 65536,
             batch: int | None = None, fused: bool = False, penalty=None, **settings) -> MinimizeResult:
    """Minimize the energy over latents and actions: ``argmin_z E(x, z)`` (§3.1.2, eq. 4–5).

    Args:
        ebm: a compiled model.
        observed: ``{name: [B, *shape]}`` for every variable not minimized over.
        over: names of latents/actions to minimize over (default: all not observed).
        method: ``auto`` | ``gradient`` | ``cem`` | ``mppi`` | ``exhaustive`` | ``beam`` | ``dp``
            | ``mcts`` | ``mixed``.
        seed, generator: randomness (a generator wins over the seed).
        maximize: latents to maximize over, adversarially (§5: ``min_a max_w E``).
        sample: latents drawn rather than minimized (default: those marked ``sampled: true``);
            the objective becomes ``mean + risk·std`` over ``n_draws`` draws (Figure 17) of the
            energy without the sampled latents' own priors R(z) (the draws already follow them).
        penalty: optional ``{name: value} -> [N]`` added to the objective while minimizing (not to
            the reported energy), e.g. a noisy latent's information cost (§4.5).
        fused: with ``cem``/``mppi`` on a Mode-2 spec that fits the energy-fused kernel
            (``ebm.explain()`` says), run every iteration's rollouts in one Triton kernel
            (``ebmgraph.infer.fused.plan_fused``; settings ``samples``, ``iters``, ``sigma``, ``init``,
            ``temperature`` / ``elite_frac``, ``momentum``).
        settings: method settings (``optimizer``, ``steps``, ``restarts``, ``init``, ``samples``,
            ``iters``, ``width``, ``simulations`` ...).

    Returns:
        MinimizeResult with ``values`` ``{name: [B, *shape]}``, ``energy`` ``[B]``, ``terms``,
        ``trace``, ``method`` and ``info["explanation"]``.

    Example:
        >>> import ebmgraph, torch
        >>> ebm = ebmgraph.compile("specs/fig12_jepa.yaml")
        >>> obs = ebm.random_inputs(2, only=["x", "y"])
        >>> r = minimize(ebm, obs, over=["z"], method="gradient", steps=20)
        >>> bool((r.energy <= ebm.energy(**obs, z=torch.zeros(2, 2)).total + 1e-6).all())
        True
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    g = ebm.graph
    if observed is not None and not isinstance(observed, dict):
        raise SpecError(f"observed must be a dict {{name: [B, *shape] tensor}}, got {type(observed).__name__}"
                        + (" (pass observed={'x': x})" if isinstance(observed, torch.Tensor) else ""))
    check_settings({"n_draws": n_draws, "inner_steps": inner_steps, "inner_lr": inner_lr,
                    "exhaustive_limit": exhaustive_limit, **settings})
    observed = dict(observed or {})
    maximize = [maximize] if isinstance(maximize, str) else list(maximize)
    if sample is None:
        sample = [v.name for v in g.variables if v.sampled and v.name not in observed
                  and (over is None or v.name not in over) and v.name not in maximize]
    sample = [sample] if isinstance(sample, str) else list(sample)
    if over is None:
        over = [v.name for v in g.variables if v.name not in observed and v.name not in maximize
                and v.name not in sample]
    gen = as_generator(generator if generator is not None else seed)
    if fused:
        return _fused(ebm, observed, over, method, seed, generator, settings)
    if method == "mcts":
        from .mcts import MCTS
        from .mcts_loop import LoopMCTS

        settings = dict(settings)
        impl = settings.pop("impl", "tensor")  # the batched tensor tree, or the per-problem reference
        if impl not in ("tensor", "loop"):
            raise SpecError(f"MCTS impl={impl!r}: choose 'tensor' (batched) or 'loop' (per-problem reference)")
        sims = settings.pop("simulations", 200)
        _settings_for(MCTS.__init__, method, settings)
        cls = MCTS if impl == "tensor" else LoopMCTS
        return cls(ebm, observed, over, sample=sample, generator=gen, batch=batch, **settings).search(sims)
    prob = Problem(ebm, observed, over, batch=batch, handled=tuple(maximize) + tuple(sample))
    for w in maximize + sample:
        if g.var(w) is None:
            raise SpecError(f"unknown variable {w}")
    if sample:
        if maximize:
            raise SpecError("maximize= and sampled latents together are not supported")
        with_risk(prob, sample, n_draws, risk, gen)
    if maximize:
        with_adversary(prob, maximize, inner_steps, inner_lr)
    if penalty is not None:
        with_penalty(prob, penalty)
    explanation = f"method={method} (chosen by the caller)"
    if method == "auto":
        method, explanation = _auto(prob, exhaustive_limit)
    if method in ("dp", "beam") and prob.objective_fn is not None:
        raise SpecError(f"{method} reads per-step energies; it does not combine with maximize= or sampled latents")
    fns = {"gradient": gradient, "cem": cem, "mppi": mppi, "exhaustive": exhaustive, "beam": beam, "dp": dp,
           "mixed": mixed}
    _settings_for(fns[method], method, settings)
    res = fns[method](prob, generator=gen, **settings)
    info = dict(res.info, explanation=explanation)
    if sample:
        info["sampled"] = sample
    if maximize:
        info["maximized"] = maximize
    return MinimizeResult(res.values, res.energy, res.terms, res.trace, res.method, info)


def _fused(ebm, observed, over, method, seed, generator, settings) -> MinimizeResult:
    """MPPI / CEM with the energy-fused rollout kernel (``kernels/mppi.py``, issue 6)."""
    from ..fusion import analyze_fused
    from .fused import plan_fused

    fr, why = analyze_fused(ebm.checked, ebm.rollouts)
    if method not in ("cem", "mppi"):
        raise SpecError(f"fused=True plans with method='cem' or 'mppi', not {method!r}")
    if fr is None:
        raise SpecError(f"{ebm.graph.name} does not fit the fused planner: {why}")
    if list(over) != [fr.action]:
        raise SpecError(f"the fused planner minimizes over the action array {fr.action}, not {list(over)}")
    names = {"samples": "K", "iters": "iters", "sigma": "sigma", "temperature": "lam", "elite_frac": "elite_frac",
             "momentum": "momentum"}
    unknown = sorted(set(settings) - set(names) - {"init"})
    if unknown:
        raise SpecError(f"fused planning does not take {', '.join(unknown)}")
    kw = {names[k]: v for k, v in settings.items() if k in names}
    init = settings.get("init", {}).get(fr.action) if isinstance(settings.get("init"), dict) else None
    res = plan_fused(ebm, observed, method=method, init=init, generator=generator, seed=seed, **kw)
    values = {fr.action: res.best_actions.to(ebm.dtype)}
    with torch.no_grad():
        out = ebm.energy(**observed, **values)
    return MinimizeResult(values, out.total, out.terms, res.history, f"{method}/fused",
                          {"explanation": f"energy-fused rollout kernel: {fr.describe()} (Triton on CUDA or in "
                                          f"the interpreter, else the kernel's torch reference)"})
