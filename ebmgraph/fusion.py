"""Whether a Mode-2 spec's energy is exactly what the energy-fused Triton kernel computes (§3.1.2, Fig. 4).

An analysis of the checked graph and its :class:`~ebmgraph.ir.Rollout` records; it needs
no weights. A spec fits when its energy has this form::

    s[0]   = <anything of the observed inputs>
    s[t+1] = Pred(s[t], a[t])                      Pred: mlp, a: a declared action array
    cost[t]: w * C(s[t+1])                         C: quadratic(n)           (at most one)
         or: w * sq_dist(s[t+1], g)                g: an observed goal [S]  (at most one)
    V:       w * Critic(s[T])                      Critic: mlp(S, h, 1)      (optional)

Then ``ebmgraph.infer.fused`` evaluates the whole rollout and its energy in one kernel (no
trajectory written) and plans with MPPI or CEM with every iteration's rollouts fused.
:func:`analyze_fused` says why a spec does not fit.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import ir
from .check import Checked
from .elements import ancestors_of


@dataclass(frozen=True)
class FusedRollout:
    state: str                     # the rolled-out array (s)
    action: str                    # the per-step action array (a)
    predictor: str                 # module name of Pred
    steps: int                     # T
    quadratic: tuple | None        # (module name, weight)
    goal: tuple | None             # (observed variable, weight)
    critic: tuple | None           # (module name, weight)

    def describe(self) -> str:
        parts = [f"{self.predictor} over {self.steps} steps"]
        if self.quadratic:
            parts.append(f"{self.quadratic[1]:g}*{self.quadratic[0]}(s)")
        if self.goal:
            parts.append(f"{self.goal[1]:g}*|s - {self.goal[0]}|^2")
        if self.critic:
            parts.append(f"{self.critic[1]:g}*{self.critic[0]}(s[T])")
        return ", ".join(parts)


def _weighted_call(e: ir.Expr):
    w = 1.0
    while isinstance(e, ir.BinOp) and e.op == "*" and isinstance(e.left, ir.Num):
        w *= e.left.value
        e = e.right
    return (w, e) if isinstance(e, ir.Call) else (None, None)


def analyze_fused(chk: Checked, rollouts: tuple[ir.Rollout, ...]) -> tuple[FusedRollout | None, str]:
    """The fused description of a checked spec with its rollouts, or None and the reason it does not fit."""
    g = chk.graph
    if len(rollouts) != 1:
        return None, f"{len(rollouts)} rollouts; the fused kernel takes exactly one"
    r = rollouts[0]
    if r.order != "sp":
        return None, "the predictor must read (s[t], a[t])"
    mod = chk.modules[r.module]
    if mod.kind != "mlp":
        return None, f"predictor {r.module} is {mod.kind}, not mlp"
    rec = g.functions[r.function]
    act = next(a for a in rec.value.args if isinstance(a, ir.Ref) and a.name != r.state)
    var = g.var(act.name)
    T = r.steps
    if var is None or var.role != "action" or chk.lengths.get(act.name) != T:
        return None, f"{act.name} must be a declared action array of length {T}"
    if not isinstance(var.domain, ir.Real):
        return None, (f"{act.name} is discrete ({var.domain.K} values); the fused kernel samples continuous "
                      f"actions (plan discrete actions with exhaustive, dp, beam or mcts)")
    ts = chk.loop_values(rec.loop)
    if chk.positions(act, rec.loop, ts) != list(range(T)) or \
            chk.positions(rec.target, rec.loop, ts) != list(range(1, T + 1)):
        return None, "the recurrence must run s[1..T] from a[0..T-1]"
    base = next((f for f in g.functions if f.target.name == r.state and f.loop is None), None)
    if base is None:
        return None, f"{r.state}[0] must be computed from the observed inputs"
    upstream = {n for n, _ in ancestors_of(chk.elements, [(r.state, 0)])}
    if any(g.var(n) is not None and g.var(n).role != "observed" for n in upstream):
        return None, f"{r.state}[0] reads a latent or action; the fused kernel starts from observed inputs"
    quad = goal = critic = None
    S = chk.shapes[r.state]
    for e in g.energies:
        w, call = _weighted_call(e.value)
        if call is None:
            return None, f"energy {e.name} is not a weighted module call"
        kind = chk.modules[chk.module_of(call)].kind
        refs = call.args
        if e.loop is not None:
            lts = chk.loop_values(e.loop)
            if not isinstance(refs[0], ir.Ref) or refs[0].name != r.state or \
                    chk.positions(refs[0], e.loop, lts) != list(range(1, T + 1)):
                return None, f"energy {e.name} must read {r.state}[t+1] for every step"
            if kind == "quadratic" and len(refs) == 1 and quad is None:
                quad = (call.fn, w)
            elif kind == "sq_dist" and len(refs) == 2 and isinstance(refs[1], ir.Ref) and goal is None \
                    and refs[1].name not in chk.lengths and getattr(g.var(refs[1].name), "role", None) == "observed":
                goal = (refs[1].name, w)
            else:
                return None, f"energy {e.name}: per-step terms must be quadratic(s) or sq_dist(s, goal)"
        else:
            if not (len(refs) == 1 and isinstance(refs[0], ir.Ref) and refs[0].name == r.state
                    and chk.position(refs[0], None, None) == T):
                return None, f"energy {e.name} must read {r.state}[T]"
            info = chk.modules[chk.module_of(call)]
            if info.kind != "mlp" or info.out_shape != (1,) or len(info.args) > 3 or critic is not None:
                return None, f"energy {e.name}: a terminal term must be one critic mlp(S, h, 1)"
            critic = (call.fn, w)
    if quad is None and goal is None:
        return None, "no per-step cost on the rollout"
    if quad and goal:
        return None, "a quadratic cost and a goal distance together are not fused (one goal per kernel)"
    if len(S) != 1:
        return None, f"state shape {list(S)} must be a vector"
    return FusedRollout(r.state, act.name, r.module, T, quad, goal, critic), "fits"


