"""Whether a search over ``a[t]`` can keep each node's predicted state, and one step of it (§3.1.2, Fig. 4).

A tree search that stores per node the world model's state after its prefix (as MuZero and mctx
keep embeddings) expands a node with **one** predictor step instead of re-scoring the whole
sequence from ``s[0]``. That is exact when the spec is *step-wise* in the searched array ``a``::

    s[k0]   = <anything of the observed inputs>            (the state before a[0])
    s[t+1]  = Pred(s[t], a[t], x[t], g, ...)               one recurrence (an ir.Rollout) reading a[0..L-1]
    cost[t]: <expression of s[t+1], s[t], a[t] and          per-step templates; one element may also
              values computed from observed inputs alone>   stand alone (a terminal V(s[T]))
    R:       <anything that reads no action>               constant during the search

:func:`analyze_stepwise` says whether a checked spec has this form and, if not, why (one line).
Specs that do not fit are searched by re-scoring each simulation's whole sequence (``MCTS``
does that for them). :class:`StepModel` is the step: ``(s[k], a[k]) -> (s[k+1], e_k)`` for a
``[B]`` batch whose rows may sit at different steps ``k``, where ``e_k`` is every energy element
that becomes computable at step ``k`` (the elements whose latest action is ``a[k]``), weighted.
Summed over ``k`` and added to the constant part it is the energy the generated forward computes
(up to the order of floating-point additions; tests/test_mcts_state.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import ir
from ..conventions import as_energy, is_scalar_shape, repeat_rows
from ..runtime import per_sample_column
from ..elements import ancestors_of

F64 = torch.float64


@dataclass(frozen=True)
class StepTerm:
    """An energy term's elements that depend on the action: element ``t`` is computed at step
    ``k = t + delta`` for ``t`` in ``lo..hi`` (a single element: ``t = lo = hi = 0``, ``k = delta``)."""

    name: str
    expr: ir.Expr
    loop: str | None
    delta: int
    lo: int
    hi: int


@dataclass(frozen=True)
class Stepwise:
    """A step-wise spec: the recurrence over ``action`` and how to compute one step of it.

    ``refs`` maps the ``uid`` of every reference in the predictor call and the step terms to how a step
    reads it: ``("state",)`` the state before the step, ``("new",)`` after it, ``("action",)`` the step's
    action, ``("whole", name)`` an action-free value, ``("at", name, p)`` its element ``p``,
    ``("shift", name, c)`` its element ``t + c`` (``t`` the term's loop value; the predictor's per-step
    inputs read ``k + c``). ``constant`` lists ``evaluate(outputs=)`` labels of the energy that reads no
    action; ``needs`` the action-free values the step reads."""

    action: str
    state: str
    module: str
    call: ir.Call
    base: int  # position of the state before a[0]
    L: int
    K: int
    terms: tuple[StepTerm, ...]
    refs: dict
    constant: tuple[str, ...]
    needs: tuple[str, ...]

    def describe(self) -> str:
        return (f"{self.state}[t+1] = {self.module}(...) over {self.action}[0..{self.L - 1}]; per step: "
                + (", ".join(t.name for t in self.terms) or "nothing")
                + (f"; constant: {', '.join(self.constant)}" if self.constant else ""))


def _descendants(G, sources) -> set:
    seen, stack = set(sources), list(sources)
    while stack:
        for m in G.succ[stack.pop()]:
            if m not in seen:
                seen.add(m)
                stack.append(m)
    return seen


def _elem(name: str, p: int, chk) -> str:
    return f"{name}[{p}]" if name in chk.lengths else name


def analyze_stepwise(chk, rollouts, action: str, chance=()) -> tuple[Stepwise | None, str]:
    """The step-wise description of a checked spec searched over ``action``, or None and why not.

    The stages: the one recurrence that reads ``action`` (:func:`_recurrence`), nothing else computed from
    it (:func:`_outside_recurrence`), how the predictor's arguments are read (:meth:`_Reads.predictor`),
    then the energy terms split into per-step templates and a constant part (:func:`_step_terms`).

    Args:
        chk: the checked graph (``ebm.checked``); rollouts: its recurrences (``ebm.rollouts``).
        action: the searched discrete array ``a[t]``; chance: latents drawn during the search.
    """
    found = _recurrence(chk, rollouts, action)
    if isinstance(found, str):
        return None, found
    r, L, K = found
    dep = _descendants(chk.elements, [(action, p) for p in range(L)])
    why = _outside_recurrence(chk, r, action, dep, chance)
    if why:
        return None, why
    reads = _Reads(chk, r, action, dep)
    call = chk.graph.functions[r.function].value
    why = reads.predictor(call)
    if why:
        return None, why
    found = _step_terms(chk, action, dep, reads)
    if isinstance(found, str):
        return None, found
    terms, constant = found
    return Stepwise(action, r.state, r.module, call, reads.base, L, K, terms, reads.refs, constant,
                    tuple(sorted(reads.needs))), "fits"


def _recurrence(chk, rollouts, action: str):
    """``(rollout, L, K)``: the one recurrence reading ``action`` (``L`` elements, ``K`` values) one element per
    step, or why not (a string)."""
    g = chk.graph
    L = chk.lengths.get(action)
    if L is None:
        return f"{action} is not an array"
    var = g.var(action)
    if var is None or not isinstance(var.domain, ir.Discrete):
        return f"{action} is not discrete"
    reads = [r for r in rollouts if any(i.name == action and i.kind == "p" for i in r.inputs)]
    if len(reads) != 1:
        return (f"no recurrence s[t+1] = Pred(s[t], {action}[t], ...) reads {action}" if not reads else
                f"{len(reads)} recurrences read {action}; one state per node is kept")
    r = reads[0]
    inp = next(i for i in r.inputs if i.name == action)
    if (inp.start, inp.stop) != (0, L) or r.steps != L:
        return f"the recurrence of {r.state} must read {action}[0..{L - 1}], one element per step"
    return r, L, var.domain.K


def _outside_recurrence(chk, r, action: str, dep: set, chance) -> str | None:
    """Why the elements computed from ``action`` (``dep``) or from the chance latents are not only the
    recurrence's state ``r.state[start..start+L-1]`` (None when they are)."""
    L = chk.lengths[action]
    noisy = _descendants(chk.elements, [(c, p) for c in chance for p in range(chk.lengths.get(c, 1))])
    for n, p in sorted(noisy, key=str):
        if str(n).startswith("energy:") or n == r.state:
            return f"{n.removeprefix('energy:')} reads the chance latent(s) {', '.join(chance)}"
    for n, p in sorted(dep, key=str):
        if n == action or str(n).startswith("energy:"):
            continue
        if n != r.state or not (r.start <= p < r.start + L):
            return (f"{_elem(n, p, chk)} is computed from {action} outside the recurrence of {r.state}; "
                    f"only the recurrence's state is kept per node")
    return None


class _Reads:
    """How a step reads each reference of the predictor call and the step terms (``Stepwise.refs``, keyed by
    the ``Ref`` node's uid), and the action-free values those reads need (``needs``)."""

    def __init__(self, chk, r, action: str, dep: set):
        self.chk, self.r, self.action, self.dep = chk, r, action, dep
        self.base = r.start - 1  # position of the state before a[0]
        self.refs: dict[int, tuple] = {}
        self.needs: set[str] = set()

    def classify(self, ref: ir.Ref, pos: int, k: int, t: int | None):
        """How step ``k`` reads ``ref`` at ``pos``, or a reason string; ``t``: the term's loop value when the
        position moves with it (None: a fixed position)."""
        state, action = self.r.state, self.action
        if ref.name == state and pos == self.base + k + 1:
            return ("new",)
        if ref.name == state and pos == self.base + k:
            return ("state",)
        if ref.name == action:
            return ("action",) if pos == k else f"reads {action}[{pos}] at step {k} (only the step's own action)"
        if (ref.name, pos) in self.dep:
            return f"reads {_elem(ref.name, pos, self.chk)}, which is not the state before or after step {k}"
        self.needs.add(ref.name)
        if ref.index is None:
            return ("whole", ref.name)
        return ("shift", ref.name, pos - t) if t is not None else ("at", ref.name, pos)

    def note(self, ref: ir.Ref, how, what: str) -> str | None:
        """Record ``how`` ``ref`` is read; why not (a string) when it is a reason or differs from an earlier step."""
        if isinstance(how, str):
            return f"{what} {how}"
        if self.refs.setdefault(ref.uid, how) != how:
            return f"{what} reads {ref.name} at positions that do not move one step per step"
        return None

    def predictor(self, call: ir.Call) -> str | None:
        """Record the predictor's arguments: the state, the action, per-step inputs and constants."""
        r, action, chk = self.r, self.action, self.chk
        ps_of = {i.name: i for i in r.inputs}
        for a in call.args:
            if a.name == r.state:
                self.refs[a.uid] = ("state",)
            elif a.name == action:
                self.refs[a.uid] = ("action",)
            elif any((a.name, p) in self.dep for p in range(chk.lengths.get(a.name, 1))):
                return f"the predictor reads {a.name}, which is computed from {action}"
            else:
                i = ps_of[a.name]
                self.needs.add(a.name)
                self.refs[a.uid] = ("shift", a.name, i.start) if i.kind == "p" else (
                    ("whole", a.name) if i.start is None else ("at", a.name, i.start))
        return None


def _step_terms(chk, action: str, dep: set, reads: _Reads):
    """``(terms, constant)``: each energy term's elements that read ``action`` as one :class:`StepTerm`, and the
    ``evaluate`` labels of the elements that do not; or why the terms do not follow the steps (a string)."""
    G = chk.elements
    terms, constant = [], []
    for e in chk.graph.energies:
        ts = chk.loop_values(e.loop)
        nodes = [("energy:" + e.name, t if e.loop else 0) for t in ts]
        live = [(t, n) for t, n in zip(ts, nodes) if n in dep]
        if not live:
            constant.append("energy:" + e.name)
            continue
        if e.loop is not None:
            constant += [f"energy:{e.name}[{t}]" for t, n in zip(ts, nodes) if n not in dep]
        deltas = set()
        for t, n in live:
            k = max(p for m, p in ancestors_of(G, [n]) if m == action)
            deltas.add(k - (t if e.loop else 0))
            for ref in ir.refs(e.value):
                moves = e.loop is not None and len(set(chk.positions(ref, e.loop, [u for u, _ in live]))) > 1
                why = reads.note(ref, reads.classify(ref, chk.position(ref, e.loop, t), k, t if moves else None),
                                 f"energy {e.name}")
                if why:
                    return why
        if len(deltas) != 1:
            return f"energy {e.name}'s steps do not follow {action} one step per step"
        lt = [t for t, _ in live]
        if lt != list(range(lt[0], lt[-1] + 1)):
            return f"energy {e.name}: the steps that read {action} are not consecutive"
        terms.append(StepTerm(e.name, e.value, e.loop, deltas.pop(), lt[0] if e.loop else 0, lt[-1] if e.loop else 0))
    return tuple(terms), tuple(constant)


class StepModel:
    """One step of a step-wise spec over its modules, for a ``[B]`` batch at per-row steps ``k [B]``.

    Built once per search: ``context(observed)`` evaluates the action-free values the steps read
    (the state before ``a[0]``, observed arrays, encodings of observed inputs) and the constant energy
    through ``ebm.evaluate(outputs=)``; ``step(ctx, s, a, k)`` is tensor code only (traced by
    ``torch.compile`` and ``torch.export`` inside the search's simulation, the model's weights live)."""

    def __init__(self, ebm, sw: Stepwise):
        self.ebm, self.sw = ebm, sw

    def context(self, observed: dict) -> tuple[torch.Tensor, ...]:
        """``(s[base] [B, *S], constant energy [B] float64, *needs)`` for these observations."""
        sw = self.sw
        first = f"{sw.state}[{sw.base}]"
        with torch.no_grad():
            vals = self.ebm.evaluate(dict(observed), outputs=[first, *sw.needs], validate=False)
            if sw.constant:  # single energy steps, element by element from the state already computed
                vals.update(self.ebm.evaluate({**observed, first: vals[first]}, outputs=list(sw.constant),
                                              validate=False))
        s0 = vals[first]
        const = torch.zeros(s0.shape[0], dtype=F64, device=s0.device)
        for lab in sw.constant:
            const = const + vals[lab].to(F64)
        return (s0, const) + tuple(vals[n] for n in sw.needs)

    def step(self, ctx: tuple, s: torch.Tensor, a: torch.Tensor, k):
        """``(s[base+k] [B, *S], a[k] [B] long, k) -> (s[base+k+1], e_k [B] float64)``: :meth:`predict`
        then :meth:`energy`."""
        new = self.predict(ctx, s, a, k)
        return new, self.energy(ctx, s, new, a, k)

    def predict(self, ctx: tuple, s: torch.Tensor, a: torch.Tensor, k) -> torch.Tensor:
        """The predictor's step ``s[base+k+1] = Pred(s[base+k], a[k], ...)`` ``[B, *S]``.

        ``k``: the step of every row ``[B]`` (long), or one ``int`` for all rows."""
        return self._ev(self.sw.call, ctx, {"state": s, "action": self._onehot(a, s)}, k, False, 1)

    def energy(self, ctx: tuple, s: torch.Tensor, new: torch.Tensor, a: torch.Tensor, k, rep: int = 1):
        """``e_k`` ``[R]`` float64: the energy elements computed at step ``k`` of each row, weighted and summed,
        from the states before (``s``) and after (``new``) and the action ``a`` ``[R]``. ``k``: ``[R]`` long,
        or one ``int`` (then the terms that exist at it are known without a tensor operation). ``rep``: rows
        per problem (``R = B·rep``, row ``b·rep + j`` of problem ``b``: several steps scored at once)."""
        env = {"state": s, "new": new, "action": self._onehot(a, s)}
        e_k = None
        for term in self.sw.terms:
            t = k - term.delta
            if not isinstance(k, torch.Tensor) and not term.lo <= t <= term.hi:
                continue  # no element of this term at this step
            v = torch.as_tensor(as_energy(self._ev(term.expr, ctx, env, t, True, rep)), dtype=s.dtype, device=s.device)
            v = v.expand(s.shape[0]).to(F64)
            if isinstance(k, torch.Tensor):
                v = torch.where((t >= term.lo) & (t <= term.hi), v, 0.0)
            e_k = v if e_k is None else e_k + v
        return e_k if e_k is not None else torch.zeros(s.shape[0], dtype=F64, device=s.device)

    def _onehot(self, a, s):
        return torch.nn.functional.one_hot(a, self.sw.K).to(s.dtype)

    def _ev(self, e, ctx, env, t, in_energy: bool, rep: int):
        """Expression ``e`` at loop value ``t`` (``[R]`` or an int) over the values in ``env`` and ``ctx``."""
        sw, ebm = self.sw, self.ebm
        chk = ebm.checked
        if isinstance(e, ir.Ref):
            how = sw.refs[e.uid]
            if how[0] in env:
                return env[how[0]]
            v = ctx[2 + sw.needs.index(how[1])]
            v = repeat_rows(v, rep) if rep > 1 else v
            if how[0] == "whole":
                return v
            if how[0] == "at":
                return v[:, how[2]]
            if not isinstance(t, torch.Tensor):
                return v[:, min(max(t + how[2], 0), v.shape[1] - 1)]
            return v[torch.arange(v.shape[0], device=v.device), (t + how[2]).clamp(0, v.shape[1] - 1)]
        if isinstance(e, ir.Num):
            return e.value
        if isinstance(e, ir.Weight):
            return getattr(ebm, f"weight_{e.name}")
        if isinstance(e, ir.Neg):
            return -self._ev(e.operand, ctx, env, t, in_energy, rep)
        if isinstance(e, ir.BinOp):
            left = self._ev(e.left, ctx, env, t, in_energy, rep)
            right = self._ev(e.right, ctx, env, t, in_energy, rep)
            ls, rs = chk.operand_shapes(e)
            if is_scalar_shape(ls, in_energy=in_energy) and not is_scalar_shape(rs, in_energy=in_energy):
                left = per_sample_column(left, len(rs))
            elif is_scalar_shape(rs, in_energy=in_energy) and not is_scalar_shape(ls, in_energy=in_energy):
                right = per_sample_column(right, len(ls))
            return {"+": lambda: left + right, "-": lambda: left - right, "*": lambda: left * right,
                    "/": lambda: left / right}[e.op]()
        if isinstance(e, ir.Call):
            mod = chk.module_of(e)
            out = ebm.mods[mod](*(self._ev(a, ctx, env, t, in_energy, rep) for a in e.args))
            shape = chk.modules[mod].out_shape
            return as_energy(out) if in_energy and shape and is_scalar_shape(shape, in_energy=True) else out
        raise TypeError(e)
