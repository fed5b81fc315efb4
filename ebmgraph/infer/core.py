"""The shared part of every minimizer: the problem, batched evaluation and the result record.

Inference is energy minimization (§3.1.2, §4.2, eq. 4–5): ``z* = argmin_z E(x, y, z)``.
A :class:`Problem` holds the observed values ``[B, ...]``, the names to minimize over
and an evaluator that repeats the observed values so that ``K`` candidates per problem
are scored in one ``[B*K]`` batch (row ``b*K + k`` is candidate ``k`` of problem ``b``).
"""
from __future__ import annotations

import math
import types
import weakref
from dataclasses import dataclass, field
from types import MappingProxyType

import networkx as nx
import torch

from .. import ir
from ..conventions import repeat_rows
from ..errors import Loc, SpecError


@dataclass(frozen=True)
class MinimizeResult:
    """What a minimizer found.

    Attributes:
        values: ``{name: [B, *shape]}`` in the form ``ebm.energy`` accepts (discrete values
            as integer indices ``[B]`` or ``[B, L]``).
        energy: ``[B]`` total energy at ``values``, re-evaluated through the model.
        terms: ``{term: [B]}`` breakdown at ``values``.
        trace: ``[iters, B]`` best energy so far per iteration (``[1, B]`` for one-shot methods).
        method: the method that ran (what ``"auto"`` chose).
        info: method details (``explanation`` for ``auto``, settings, counts).
    """

    values: dict
    energy: torch.Tensor
    terms: dict
    trace: torch.Tensor
    method: str
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        object.__setattr__(self, "terms", MappingProxyType(dict(self.terms)))


@dataclass(frozen=True)
class Objective:
    """What a minimizer minimizes in place of the plain energy (built by ``infer/objectives.py``).

    Attributes:
        fn: ``(values {name: [B*k, *shape]}, k) -> [B*k]``.
        report: ``values {name: [B, *shape]} -> (values to return, total [B], terms {t: [B]})``; None: the
            energy at the values.
        settings: the ``minimize`` settings it stands for (``("sample", "risk")``, ``("maximize",)``,
            ``("penalty",)`` ...), named by the errors of the paths that do not take it.
    """

    fn: object
    report: object = None
    settings: tuple = ()


def check_weights(ebm, weights: dict | None) -> dict | None:
    """Per-call overrides of the spec's symbolic weights (the configurator's u_i, eq. 1–3), checked once:
    ``{name: finite number}`` -> ``{name: 0-d tensor}`` on the model's device and dtype (None: none).
    An unknown name is refused with the spec's weights listed."""
    if weights is None:
        return None
    where = Loc(ebm.graph.file)
    if not isinstance(weights, dict):
        raise SpecError(f"weights must be a dict {{name: number}}, got {type(weights).__name__}", where)
    known = [k for k, _ in ebm.graph.weights]
    unknown = sorted(str(k) for k in weights if k not in known)
    if unknown:
        raise SpecError(f"unknown weight(s) {', '.join(unknown)}; {ebm.graph.name} has weights "
                        f"{', '.join(known) or '(none)'}", where, tuple(unknown))
    out = {}
    for k, v in weights.items():
        t = v.detach() if isinstance(v, torch.Tensor) else None
        if isinstance(v, bool) or (t is None and not isinstance(v, (int, float))) or (t is not None and t.numel() != 1):
            raise SpecError(f"weight {k} must be a number, got {v!r}", where, (k,))
        f = float(t) if t is not None else float(v)
        if not math.isfinite(f):
            raise SpecError(f"weight {k} must be a finite number, got {f}", where, (k,))
        out[k] = torch.tensor(f, dtype=ebm.dtype, device=ebm.device)
    return out


class Problem:
    """Observed values, the variables minimized over, and batched evaluation.

    Every attribute is declared (``__slots__``): ``objective_fn`` / ``report_fn`` / ``wrapped`` are the
    installed :class:`Objective` (None / None / ``()`` for the plain energy), set by :meth:`wrap`.

    Args:
        ebm: a :class:`~ebmgraph.CompiledEBM`.
        observed: ``{name: [B, *shape]}`` fixed values (anything not minimized over).
        over: names to minimize over.
        batch: batch size when ``observed`` is empty.
        weights: overrides of the spec's symbolic weights (``{"h": 0.0}``) applied to every energy
            evaluation of this problem (:func:`check_weights`); the model's own weights are left alone.
    """

    __slots__ = ("ebm", "over", "vars", "observed", "B", "device", "dtype", "objective_fn", "report_fn", "wrapped",
                 "weights")

    def __init__(self, ebm, observed: dict | None, over, batch: int | None = None, handled=(),
                 weights: dict | None = None):
        self.ebm = ebm
        self.weights = check_weights(ebm, weights)
        g = ebm.graph
        names = [v.name for v in g.variables]
        observed = dict(observed or {})
        over = [over] if isinstance(over, str) else list(over)
        unknown = sorted((set(over) | set(observed)) - set(names))
        if unknown:
            raise SpecError(f"unknown variable(s) {', '.join(unknown)}; {g.name} has {', '.join(names)}")
        both = sorted(set(over) & set(observed))
        if both:
            raise SpecError(f"{', '.join(both)} both observed and minimized over; pick one")
        if not over:
            raise SpecError("nothing to minimize over: pass over=[...] with latent or action names")
        missing = [n for n in names if n not in over and n not in observed and n not in handled]
        if missing:
            raise SpecError(f"{', '.join(missing)} neither observed nor minimized over; "
                            f"pass a value in observed= or add to over=")
        self.over = over
        self.vars = {n: g.var(n) for n in over}
        obs = {}
        for k, v in observed.items():
            t = v if isinstance(v, torch.Tensor) else torch.as_tensor(v)
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise SpecError(f"observed {k} holds NaN or Inf values", symbols=(k,))
            if t.is_floating_point():
                t = t.to(device=ebm.device, dtype=ebm.dtype)
            else:
                t = t.to(device=ebm.device)
            obs[k] = t
        self.observed = obs
        if obs:
            self.B = next(iter(obs.values())).shape[0]
        else:
            self.B = int(batch or 1)
        self.device, self.dtype = ebm.device, ebm.dtype
        self.objective_fn = None  # (values, k) -> [B*k] of a wrapped objective; None: the plain energy
        self.report_fn = None  # values -> (values to return, total [B], terms) for wrappers
        self.wrapped: tuple = ()  # the minimize settings behind objective_fn (Objective.settings)

    def wrap(self, objective: Objective) -> None:
        """Minimize ``objective`` from now on (what ``minimize`` does with ``sample``/``risk``, ``maximize``,
        ``penalty``)."""
        self.objective_fn, self.report_fn, self.wrapped = objective.fn, objective.report, tuple(objective.settings)

    def objective(self, values: dict, k: int = 1) -> torch.Tensor:
        """What minimizers minimize, ``[B*k]``: the energy, or a wrapper's transform of it."""
        if self.objective_fn is not None:
            return self.objective_fn(values, k)
        return self.evaluate(values, k).total

    # ---------------------------------------------------------------- domains
    def is_discrete(self, name: str) -> bool:
        return isinstance(self.vars[name].domain, ir.Discrete)

    def K(self, name: str) -> int:
        return self.vars[name].domain.K

    def shape(self, name: str) -> tuple[int, ...]:
        """Per-sample shape of the value a minimizer works with (ints drop the one-hot axis)."""
        s = self.ebm.var_shape(name)
        return s[:-1] if self.is_discrete(name) else s

    def bounds(self, name: str) -> tuple[float | None, float | None]:
        d = self.vars[name].domain
        return (d.lo, d.hi) if isinstance(d, ir.Real) else (None, None)

    def project(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Clamp onto the box domain (projection after each step)."""
        lo, hi = self.bounds(name)
        return x.clamp(min=lo, max=hi) if (lo is not None or hi is not None) else x

    def center(self, name: str) -> torch.Tensor:
        """The default initial point ``[B, *shape]``: zeros projected, or the box middle."""
        lo, hi = self.bounds(name)
        x = torch.zeros((self.B,) + self.shape(name), device=self.device, dtype=self.dtype)
        if lo is not None and hi is not None:
            return x + (lo + hi) / 2.0
        return self.project(name, x)

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, values: dict, k: int = 1):
        """Energy of ``k`` candidates per problem.

        Args:
            values: ``{name: [B*k, *shape]}`` for every name in ``over`` (row ``b*k + j``).
            k: candidates per problem.

        Returns:
            EnergyResult with ``total`` ``[B*k]``.
        """
        # candidates are projected by the minimizers; the observation is encoded once per problem
        return self.ebm.evaluate({**self.given(k), **values}, validate=False, repeat=k, weights=self.weights)

    def given(self, k: int) -> dict:
        """The observed values for ``k`` candidates per problem, as ``ebm.evaluate(..., repeat=k)`` takes
        them: the spec's observed inputs once per problem, anything else held fixed (a given latent)
        repeated once per candidate."""
        g = self.ebm.graph
        return {n: (v if g.var(n).role == "observed" else repeat_rows(v, k)) for n, v in self.observed.items()}

    def sub(self, fixed: dict, over: list[str], k: int) -> "Problem":
        """A ``[B*k]`` problem with some of ``over`` fixed to ``fixed`` (used by mixed search)."""
        obs = {n: repeat_rows(v, k) for n, v in self.observed.items()}
        obs.update(fixed)
        return Problem(self.ebm, obs, over, weights=self.weights)

    def result(self, values: dict, trace, method: str, info: dict | None = None) -> MinimizeResult:
        """Re-evaluate ``values`` through the model and package them."""
        values = {n: v.detach() for n, v in values.items()}
        if self.report_fn is not None:
            values, total, terms = self.report_fn(values)
            return MinimizeResult(values, total, terms, self._trace(trace, total), method, dict(info or {}))
        with torch.no_grad():
            out = self.evaluate(values)
        if not bool(torch.isfinite(out.total).all()):
            bad = [t for t, v in out.terms.items() if not bool(torch.isfinite(v).all())]
            raise NonFiniteEnergy(f"{method}: the energy at the answer is NaN or Inf (term(s) {', '.join(bad)})",
                                  terms=bad, iteration=-1, values=values)
        return MinimizeResult(values, out.total.detach(), {k: v.detach() for k, v in out.terms.items()},
                              self._trace(trace, out.total), method, dict(info or {}))

    @staticmethod
    def _trace(trace, total):
        if trace is None or (isinstance(trace, list) and not trace):
            return total.detach().unsqueeze(0)
        if isinstance(trace, list):
            return torch.stack([t.detach() for t in trace])
        return trace

    # ---------------------------------------------------------------- structure
    def scopes(self) -> dict[tuple[str, int], frozenset]:
        """For each energy step ``("energy:NAME", t)``: the elements ``(var, pos)`` of ``over`` it reads."""
        G = self.ebm.checked.elements
        out = {}
        for node in G.nodes:
            if isinstance(node[0], str) and node[0].startswith("energy:"):
                anc = nx.ancestors(G, node)
                out[node] = frozenset(a for a in anc if a[0] in self.vars)
        return out

    def step_columns(self, name: str) -> list[int]:
        """Positions ``t`` of energy ``name``'s steps, in column order of ``EnergyResult.steps``."""
        return sorted(p for (n, p) in self.ebm.checked.elements.nodes if n == f"energy:{name}")


class NonFiniteEnergy(SpecError):
    """A minimizer met a NaN or Inf energy. ``values`` holds the last finite values found
    (``{name: [B, *shape]}``), ``terms`` the energy terms that were not finite, ``iteration``
    the first iteration where it happened."""

    def __init__(self, message: str, *, terms: list[str], iteration: int, values: dict):
        super().__init__(message, symbols=tuple(terms))
        self.terms, self.iteration, self.values = terms, iteration, values


class FiniteWatch:
    """Notes the first non-finite objective value of an iterative minimizer without a host sync
    per iteration (a flag, the iteration and the candidate are kept with tensor ops); one check
    at the end raises :class:`NonFiniteEnergy`.

    Args:
        rows: independent rows (problems, or problems × restarts); ``D``: flat width.
    """

    def __init__(self, rows: int, D: int, like: torch.Tensor):
        self.iteration = torch.full((rows,), -1, dtype=torch.long, device=like.device)
        self.x = torch.zeros(rows, D, dtype=like.dtype, device=like.device)

    def update(self, xs: torch.Tensor, fs: torch.Tensor, iteration: int) -> None:
        """``xs`` ``[rows, K, D]`` candidates with objective ``fs`` ``[rows, K]``."""
        bad = ~torch.isfinite(fs)
        first = (self.iteration < 0) & bad.any(1)
        k = bad.float().argmax(1)
        xk = xs.gather(1, k[:, None, None].expand(-1, 1, xs.shape[-1])).squeeze(1)
        self.x = torch.where(first[:, None], xk, self.x)
        self.iteration = torch.where(first, torch.full_like(self.iteration, iteration), self.iteration)

    def check(self, prob: "Problem", unpack, method: str, values: dict, rows_per_problem: int = 1) -> None:
        """Raise :class:`NonFiniteEnergy` naming the terms, the iteration and the problem, if any was seen."""
        hit = (self.iteration >= 0).nonzero()
        if hit.numel() == 0:
            return
        r = int(hit[0, 0])
        b = r // rows_per_problem
        bad_vals = {n: v[r:r + 1] for n, v in unpack(self.x).items()}
        sub = Problem(prob.ebm, {n: v[b:b + 1] for n, v in prob.observed.items()}, prob.over,
                      handled=tuple(v.name for v in prob.ebm.graph.variables), weights=prob.weights)
        try:
            with torch.no_grad():
                terms = [t for t, v in sub.evaluate(bad_vals).terms.items() if not bool(torch.isfinite(v).all())]
        except Exception:  # noqa: BLE001 - a wrapped objective may need more inputs; name what we can
            terms = []
        it = int(self.iteration[r])
        raise NonFiniteEnergy(f"{method} met a non-finite energy at iteration {it} (problem {b})"
                              + (f": term(s) {', '.join(terms)} are NaN or Inf" if terms else "")
                              + "; the last finite values are kept in the error's .values",
                              terms=terms, iteration=it, values=values)


# How the planners compile (issue 14; BENCHMARKS.md "Third pass" has the figures, AMD EPYC, one thread):
# * ``cpp.use_decompose_tanh``: inductor's exp-based tanh on the CPU (a vectorized exp instead of a scalar tanh per
#   element), read by the C++ backend only: at most ~3e-16 absolute error in float64 and ~1.8e-7 in float32 (the
#   relative error grows near 0, up to ~1e-4 at |x| = 1e-3 in float32); the compiled CEM/MPPI rollout step 64 -> 36 µs.
# * ``size_asserts`` off: the compiled wrapper does not re-check the sizes and strides Dynamo's guards already fixed.
PLANNER_COMPILE_OPTIONS = {"cpp.use_decompose_tanh": True, "size_asserts": False}
# MCTS also puts the compiled graph's wrapper (its buffers, extern matmuls and kernel calls) in C++ rather than
# Python (B = 64: 201 -> 162 µs per simulation, measured side by side); it costs compile time (B = 64, cold cache:
# ~24 s against ~13 s) and did nothing measurable for CEM/MPPI's fewer, larger operations. Its kernels also skip the
# bounds check of every indirect index (~10% of a B = 64 simulation): the tree's ids are in range by construction
# (grow() makes room before a search) and the same code run eagerly, as the tests do, checks every index; with a
# user's critic compiled in, the checks stay on (mcts.MCTS).
MCTS_COMPILE_OPTIONS = {**PLANNER_COMPILE_OPTIONS, "cpp_wrapper": True, "assert_indirect_indexing": False}


def _own_code(fn):
    """``fn`` with its own copy of its code object. Dynamo keeps compiled entries, and its recompile limit (8),
    per code object, so every planner closure built by one ``make`` (each model, size and setting) would share
    one budget and fall back to eager, silently, past the 8th; a copy per key gives each its own."""
    if not isinstance(fn, types.FunctionType):
        return fn
    out = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    out.__kwdefaults__, out.__qualname__ = fn.__kwdefaults__, fn.__qualname__
    return out


PLANNER_CACHE = weakref.WeakKeyDictionary()
"""The ``torch.compile``'d planner code of each model, ``{model: {key: compiled function}}`` (issue 27.4):
ebmgraph's own table, not an attribute written onto the user's model. An entry goes when its model is
collected, provided what it keeps does not hold the model itself: the planners here take the model as an
argument of the compiled function rather than in a closure (a closure would keep the model alive for the
process's life). Read it with :func:`compiled_planners`."""


def compiled_planners(ebm) -> MappingProxyType:
    """The compiled planner code kept for ``ebm`` (read only): ``{key: compiled function}``."""
    return MappingProxyType(PLANNER_CACHE.get(ebm, {}))


def compiled_once(ebm, key: tuple, make, options: dict | None = None):
    """``torch.compile(make(), dynamic=False, options=options)``, built once per ``key`` and model and kept in
    :data:`PLANNER_CACHE`, so later plans and searches with the same sizes and settings reuse the compiled
    code (issue 14)."""
    cache = PLANNER_CACHE.setdefault(ebm, {})
    if key not in cache:
        cache[key] = torch.compile(_own_code(make()), dynamic=False, options=options)
    return cache[key]


def packer(prob: Problem, names: list[str]):
    """``(pack, unpack, project)`` between ``{name: [..., *shape]}`` and one flat ``[..., D]`` tensor.

    ``pack(values, lead)`` concatenates the flattened values; ``unpack(X)`` splits them back;
    ``project(X)`` clamps every part onto its box domain. Gradient and sampling methods work
    on the flat form.
    """
    sizes = [int(torch.Size(prob.shape(n)).numel()) for n in names]
    if len(names) == 1:  # one variable: views and one clamp, no concatenation (planning's common case)
        (n,), shape = names, prob.shape(names[0])
        lo, hi = prob.bounds(n)

        def pack1(vals: dict, lead: tuple) -> torch.Tensor:
            return vals[n].reshape(*lead, -1)

        def unpack1(X: torch.Tensor) -> dict:
            return {n: X.reshape(*X.shape[:-1], *shape)}

        def project1(X: torch.Tensor) -> torch.Tensor:
            return X.clamp(min=lo, max=hi) if (lo is not None or hi is not None) else X

        return pack1, unpack1, project1

    shapes = [prob.shape(n) for n in names]  # read once: the closures keep no reference to the problem
    bounds = [prob.bounds(n) for n in names]

    def pack(vals: dict, lead: tuple) -> torch.Tensor:
        return torch.cat([vals[n].reshape(*lead, -1) for n in names], -1)

    def unpack(X: torch.Tensor) -> dict:
        out, i = {}, 0
        for n, s, shape in zip(names, sizes, shapes):
            out[n] = X[..., i:i + s].reshape(*X.shape[:-1], *shape)
            i += s
        return out

    def project(X: torch.Tensor) -> torch.Tensor:
        parts = [v.clamp(min=lo, max=hi) if (lo is not None or hi is not None) else v
                 for v, (lo, hi) in zip(unpack(X).values(), bounds)]
        return torch.cat([v.reshape(*X.shape[:-1], -1) for v in parts], -1)

    return pack, unpack, project


def initial_values(prob: Problem, init: dict | None) -> dict:
    """The starting point ``{name: [B, *shape]}``: ``init`` where given, else the centre / value 0."""
    init = dict(init or {})
    out = {}
    for n in prob.over:
        if n in init:
            v = torch.as_tensor(init[n], device=prob.device)
            if prob.is_discrete(n):
                v = v.long()
            else:
                v = prob.project(n, v.to(prob.dtype))
            if v.shape != (prob.B,) + prob.shape(n):
                raise SpecError(f"init[{n!r}] must have shape {[prob.B, *prob.shape(n)]}, got {list(v.shape)}")
            out[n] = v
        elif prob.is_discrete(n):
            out[n] = torch.zeros((prob.B,) + prob.shape(n), dtype=torch.long, device=prob.device)
        else:
            out[n] = prob.center(n)
    return out
