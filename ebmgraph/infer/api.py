"""``minimize``: one entry point, dispatched by the variables' domains (§3.1.2, §4.2, §5).

Objective wrappers (``infer/objectives.py``) change *what* is minimized, not how:
adversarial latents (§5, games) make the objective ``max_w E``; sampled latents
(Figure 17) make it ``mean + λ·std`` over Gibbs draws (eq. 23) of the energy less their priors R(z).
"""
from __future__ import annotations

import functools
import math

import torch

from .. import ir
from ..errors import SpecError
from ..util import as_generator
from .core import MinimizeResult, Objective, Problem, check_weights
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
             generator: torch.Generator | None = None, maximize=(), sample=None, n_draws: int | None = None,
             risk: float | None = None, inner_steps: int | None = None, inner_lr: float | None = None,
             exhaustive_limit: int = 65536, batch: int | None = None, fused: bool = False, penalty=None,
             weights: dict | None = None, **settings) -> MinimizeResult:
    """Minimize the energy over latents and actions: ``argmin_z E(x, z)`` (§3.1.2, eq. 4–5).

    One objective contract: every method minimizes what ``sample``/``risk``/``n_draws``, ``maximize``,
    ``penalty`` and ``weights`` say, or refuses the combination with an error naming the setting (MCTS takes
    sampled latents as chance nodes, i.e. ``risk=0``, and none of the others; the fused kernels take ``penalty``
    only; ``dp``, ``beam`` and ``mixed`` take ``weights`` only). A setting that would change nothing is
    refused too (``risk=`` with no sampled latent, ``inner_steps=`` with nothing maximized).

    Args:
        ebm: a compiled model.
        observed: ``{name: [B, *shape]}`` for every variable not minimized over.
        over: names of latents/actions to minimize over (default: all not observed).
        method: ``auto`` | ``gradient`` | ``cem`` | ``mppi`` | ``exhaustive`` | ``beam`` | ``dp``
            | ``mcts`` | ``mixed``.
        seed, generator: randomness (a generator wins over the seed).
        maximize: latents to maximize over, adversarially (§5: ``min_a max_w E``); ``inner_steps``
            (default 50) and ``inner_lr`` (0.1): the ascent over continuous ones.
        sample: latents drawn rather than minimized (default: those marked ``sampled: true``); the objective
            becomes ``mean + risk·std`` (``risk`` default 0) over ``n_draws`` (default 16) draws (Figure 17)
            of the energy without the sampled latents' own priors R(z) (the draws already follow them).
        penalty: optional ``{name: value} -> [N]`` added to the objective while minimizing (not to
            the reported energy), e.g. a noisy latent's information cost (§4.5).
        weights: overrides of the spec's symbolic weights, ``{name: number}`` (the configurator's u_i,
            eq. 1–3), for every energy evaluation of this minimization and the energy reported; the model's
            own weights are not touched (amortized inference minimizes with the encoder term off, Fig. 20).
        fused: with ``cem``/``mppi`` on a Mode-2 spec that fits the energy-fused kernel (``ebm.explain()``
            says), run every iteration's rollouts in one Triton kernel (``ebmgraph.infer.fused.plan_fused``),
            with the unfused planners' settings (``samples``, ``iters``, ``sigma``, ``init``, ``temperature`` /
            ``elite_frac``, ``momentum``, ``min_sigma``), defaults and elite count.
        settings: method settings (``optimizer``, ``steps``, ``restarts``, ``init``, ``samples``,
            ``iters``, ``width``, ``simulations``, ``compile`` ...).

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
    given = _check_call(observed, method, settings, exhaustive_limit, n_draws, risk, inner_steps, inner_lr)
    observed = dict(observed or {})
    over, maximize, sample = _roles(ebm.graph, observed, over, maximize, sample)
    weights = check_weights(ebm, weights) or None
    _check_objective(ebm.graph, method, fused, maximize, sample, given, penalty, weights)
    gen = as_generator(generator if generator is not None else seed)
    if fused:
        return _fused(ebm, observed, over, method, seed, generator, settings, penalty)
    if method == "mcts":
        return _mcts(ebm, observed, over, sample, gen, batch, settings)
    prob = Problem(ebm, observed, over, batch=batch, handled=tuple(maximize) + tuple(sample), weights=weights)
    _wrap_objective(prob, method, sample, maximize, penalty, given, gen)
    return _run(prob, method, gen, exhaustive_limit, settings, sample, maximize)


def _check_call(observed, method: str, settings: dict, exhaustive_limit: int, n_draws, risk, inner_steps,
                inner_lr) -> dict:
    """Refuse a malformed call (an unknown method, ``observed`` not a dict, meaningless settings); returns the
    objective settings given, ``{"n_draws": .., "risk": .., "inner_steps": .., "inner_lr": ..}`` (those not None)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    if observed is not None and not isinstance(observed, dict):
        raise SpecError(f"observed must be a dict {{name: [B, *shape] tensor}}, got {type(observed).__name__}"
                        + (" (pass observed={'x': x})" if isinstance(observed, torch.Tensor) else ""))
    given = {k: v for k, v in (("n_draws", n_draws), ("risk", risk), ("inner_steps", inner_steps),
                               ("inner_lr", inner_lr)) if v is not None}
    check_settings({**given, "exhaustive_limit": exhaustive_limit, **settings})
    if risk is not None and (isinstance(risk, bool) or not isinstance(risk, (int, float)) or not math.isfinite(risk)):
        raise SpecError(f"setting risk must be a finite number, got {risk!r}")
    return given


def _roles(g, observed: dict, over, maximize, sample) -> tuple[list, list, list]:
    """``(over, maximize, sample)`` as name lists: sampled latents default to those marked ``sampled: true``
    that are neither observed, minimized nor maximized; ``over`` to every other variable not observed."""
    maximize = [maximize] if isinstance(maximize, str) else list(maximize)
    if sample is None:
        sample = [v.name for v in g.variables if v.sampled and v.name not in observed
                  and (over is None or v.name not in over) and v.name not in maximize]
    sample = [sample] if isinstance(sample, str) else list(sample)
    if over is None:
        over = [v.name for v in g.variables if v.name not in observed and v.name not in maximize
                and v.name not in sample]
    for w in maximize + sample:
        if g.var(w) is None:
            raise SpecError(f"unknown variable {w}")
    return over, maximize, sample


def _run(prob: Problem, method: str, gen, exhaustive_limit: int, settings: dict, sample: list,
         maximize: list) -> MinimizeResult:
    """Choose the method (``auto``), refuse what it does not take, run it and record why it ran."""
    explanation = f"method={method} (chosen by the caller)"
    if method == "auto":
        method, explanation = _auto(prob, exhaustive_limit)
    if method in ("dp", "beam", "mixed") and prob.wrapped:
        why = ("reads per-step energies" if method != "mixed"
               else "minimizes each configuration's continuous part on the plain energy")
        raise SpecError(f"method {method!r} {why}; it does not take {_named(prob.wrapped)} "
                        f"(choose method='exhaustive', 'gradient', 'cem' or 'mppi')")
    fns = {"gradient": gradient, "cem": cem, "mppi": mppi, "exhaustive": exhaustive, "beam": beam, "dp": dp,
           "mixed": mixed}
    _settings_for(fns[method], method, settings)
    res = fns[method](prob, generator=gen, **settings)
    info = dict(res.info, explanation=explanation)
    if sample:
        info["sampled"] = sample
    if maximize:
        info["maximized"] = maximize
    if prob.weights:
        info["weights"] = {k: float(v) for k, v in prob.weights.items()}
    return MinimizeResult(res.values, res.energy, res.terms, res.trace, res.method, info)


def _mcts(ebm, observed, over, sample, gen, batch, settings) -> MinimizeResult:
    from .mcts import MCTS

    settings = dict(settings)
    impl = settings.pop("impl", "tensor")
    if impl != "tensor":  # the per-problem search is a test oracle now
        raise SpecError(f"MCTS impl={impl!r} is gone: the per-problem reference search is a test oracle now "
                        f"(tests/mcts_oracle.py); drop impl=")
    sims = settings.pop("simulations", 200)
    _settings_for(MCTS.__init__, "mcts", settings)
    return MCTS(ebm, observed, over, sample=sample, generator=gen, batch=batch, **settings).search(sims)


def _wrap_objective(prob: Problem, method: str, sample: list, maximize: list, penalty, given: dict, gen) -> None:
    """Install what ``sample``/``risk``/``n_draws``, ``maximize``, ``penalty`` and ``weights`` make the objective."""
    if sample:
        prob.wrap(with_risk(prob, sample, given.get("n_draws", 16), float(given.get("risk", 0.0)), gen))
    if maximize:
        prob.wrap(with_adversary(prob, maximize, given.get("inner_steps", 50), given.get("inner_lr", 0.1)))
    if prob.weights and method in ("cem", "mppi"):
        # their plain-energy iteration reads the model's own weights; the wrapped one evaluates through the problem
        prob.wrap(Objective(lambda values, k: prob.evaluate(values, k).total, None, ("weights",)))
    if penalty is not None:
        prob.wrap(with_penalty(prob, penalty))


def _named(settings) -> str:
    """``("sample", "risk")`` -> ``"sample= / risk="``."""
    return " / ".join(f"{s}=" for s in settings)


def _check_objective(g, method: str, fused: bool, maximize: list, sample: list, given: dict, penalty,
                     weights=None) -> None:
    """Refuse, by name, an objective setting that the chosen path would not honour (issue 27.2)."""
    if sample and maximize:
        raise SpecError("maximize= and sampled latents together are not supported")
    if weights and (sample or maximize or fused or method == "mcts"):
        what = ("fused=True" if fused else "method 'mcts'" if method == "mcts"
                else f"sampled latents {sample}" if sample else f"maximize={maximize}")
        raise SpecError(f"weights= overrides the weights of minimize's own energy evaluations; {what} evaluates the "
                        f"model with its own weights and does not take it: drop weights= (or set them on the model)")
    for k in ("risk", "n_draws"):
        if k in given and not sample:
            raise SpecError(f"{k}= weighs draws of sampled latents, and {g.name} samples none here (mark a latent "
                            f"'sampled: true' or pass sample=[...]); drop {k}=")
    for k in ("inner_steps", "inner_lr"):
        if k in given and not maximize:
            raise SpecError(f"{k}= tunes the ascent of maximize= over continuous latents, and nothing is maximized "
                            f"here; drop {k}=")
        if k in given and all(isinstance(g.var(w).domain, ir.Discrete) for w in maximize):
            raise SpecError(f"{k}= tunes the ascent over continuous latents; maximize={maximize} is discrete "
                            f"(enumerated exactly); drop {k}=")
    if fused:
        refused = (["maximize"] if maximize else []) + ([k for k in ("sample", "risk", "n_draws")
                                                          if k == "sample" or k in given] if sample else [])
        if refused:
            what = f"sampled latents {sample}" if sample else f"maximize={maximize}"
            raise SpecError(f"fused=True plans the plain energy (plus penalty=) inside the kernel; it does not take "
                            f"{_named(refused)} ({what}): drop fused=True")
    if method == "mcts":
        refused = (["maximize"] if maximize else []) + (["penalty"] if penalty is not None else []) + \
            (["risk"] if given.get("risk", 0) != 0 else []) + (["n_draws"] if "n_draws" in given else [])
        if refused:
            raise SpecError(f"method 'mcts' minimizes the energy, with sampled latents as chance nodes (their "
                            f"expectation: risk=0, one draw per simulation); it does not take {_named(refused)} "
                            f"(method='exhaustive' or 'beam' over the same actions does)")


def _fused(ebm, observed, over, method, seed, generator, settings, penalty) -> MinimizeResult:
    """MPPI / CEM with the energy-fused rollout kernel (``kernels/mppi.py``, issue 6), with the settings,
    defaults and elite rule of :func:`~ebmgraph.infer.sampling.cem` / ``mppi``."""
    import inspect

    from ..fusion import analyze_fused
    from .fused import plan_fused

    fr, why = analyze_fused(ebm.checked, ebm.rollouts)
    if method not in ("cem", "mppi"):
        raise SpecError(f"fused=True plans with method='cem' or 'mppi', not {method!r}")
    if fr is None:
        raise SpecError(f"{ebm.graph.name} does not fit the fused planner: {why}")
    if list(over) != [fr.action]:
        raise SpecError(f"the fused planner minimizes over the action array {fr.action}, not {list(over)}")
    shared = {"cem": ("samples", "iters", "elite_frac", "momentum", "sigma", "min_sigma"),
              "mppi": ("samples", "iters", "temperature", "sigma")}[method]
    unknown = sorted(set(settings) - set(shared) - {"init"})
    if unknown:
        raise SpecError(f"fused planning does not take {', '.join(unknown)}; its settings: "
                        f"{', '.join(shared + ('init',))}")
    params = inspect.signature({"cem": cem, "mppi": mppi}[method]).parameters
    kw = {k: settings.get(k, params[k].default) for k in shared}
    var = ebm.graph.var(fr.action)
    lo, hi = (var.domain.lo, var.domain.hi) if isinstance(var.domain, ir.Real) else (None, None)
    if kw["sigma"] is None:  # as the unfused planners: a quarter of the box where bounded, else 1
        kw["sigma"] = 0.25 * (hi - lo) if (lo is not None and hi is not None) else 1.0
    init = settings.get("init", {}).get(fr.action) if isinstance(settings.get("init"), dict) else None
    if init is not None:
        init = torch.as_tensor(init, dtype=ebm.dtype, device=ebm.device).clamp(min=lo, max=hi)
    res = plan_fused(ebm, observed, method=method, init=init, generator=generator, seed=seed, penalty=penalty, **kw)
    values = {fr.action: res.best_actions.to(ebm.dtype)}
    with torch.no_grad():
        out = ebm.energy(**observed, **values)
    return MinimizeResult(values, out.total, out.terms, res.history, f"{method}/fused",
                          {"explanation": f"energy-fused rollout kernel: {fr.describe()} (Triton on CUDA or in "
                                          f"the interpreter, else the kernel's torch reference)",
                           "penalty": penalty is not None})
