"""From a compiled Mode-2 spec to the energy-fused Triton kernels (kernels/rollout.py, kernels/mppi.py).

A spec fits when its energy is exactly what the fused kernel computes (§3.1.2, Fig. 4)::

    s[0]   = <anything of the observed inputs>
    s[t+1] = Pred(s[t], a[t])                      Pred: mlp, a: a declared action array
    cost[t]: w * C(s[t+1])                         C: quadratic(n)           (at most one)
         or: w * sq_dist(s[t+1], g)                g: an observed goal [S]  (at most one)
    V:       w * Critic(s[T])                      Critic: mlp(S, h, 1)      (optional)

Then :func:`fused_energy` evaluates the whole rollout and its energy in one kernel (no
trajectory written) and :func:`plan` runs MPPI or CEM with every iteration's rollouts fused.
:func:`analyze_fused` says why a spec does not fit.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import ir
from .lower import position


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


def analyze_fused(ebm) -> tuple[FusedRollout | None, str]:
    """The fused description of a compiled spec, or None and the reason it does not fit."""
    chk, g = ebm.checked, ebm.graph
    if len(ebm.rollouts) != 1:
        return None, f"{len(ebm.rollouts)} rollouts; the fused kernel takes exactly one"
    r = ebm.rollouts[0]
    if r["order"] != "sp":
        return None, "the predictor must read (s[t], a[t])"
    mod = chk.modules[r["module"]]
    if mod.kind != "mlp":
        return None, f"predictor {r['module']} is {mod.kind}, not mlp"
    rec = next(f for f in g.functions if f.target.name == r["target"] and f.loop is not None)
    act = next(a for a in rec.value.args if isinstance(a, ir.Ref) and a.name != r["target"])
    var = g.var(act.name)
    T = r["steps"]
    if var is None or var.role != "action" or chk.lengths.get(act.name) != T:
        return None, f"{act.name} must be a declared action array of length {T}"
    ts = chk.loop_values(rec.loop)
    if [position(chk, act, rec.loop, t) for t in ts] != list(range(T)) or \
            [position(chk, rec.target, rec.loop, t) for t in ts] != list(range(1, T + 1)):
        return None, "the recurrence must run s[1..T] from a[0..T-1]"
    base = next((f for f in g.functions if f.target.name == r["target"] and f.loop is None), None)
    if base is None:
        return None, f"{r['target']}[0] must be computed from the observed inputs"
    import networkx as nx

    upstream = {n for n, _ in nx.ancestors(chk.elements, (r["target"], 0))}
    if any(g.var(n) is not None and g.var(n).role != "observed" for n in upstream):
        return None, f"{r['target']}[0] reads a latent or action; the fused kernel starts from observed inputs"
    quad = goal = critic = None
    S = chk.shapes[r["target"]]
    for e in g.energies:
        w, call = _weighted_call(e.value)
        if call is None:
            return None, f"energy {e.name} is not a weighted module call"
        kind = chk.modules[chk.call_module[id(call)]].kind
        refs = call.args
        if e.loop is not None:
            lts = chk.loop_values(e.loop)
            if not isinstance(refs[0], ir.Ref) or refs[0].name != r["target"] or \
                    [position(chk, refs[0], e.loop, t) for t in lts] != list(range(1, T + 1)):
                return None, f"energy {e.name} must read {r['target']}[t+1] for every step"
            if kind == "quadratic" and len(refs) == 1 and quad is None:
                quad = (call.fn, w)
            elif kind == "sq_dist" and len(refs) == 2 and isinstance(refs[1], ir.Ref) and goal is None \
                    and refs[1].name not in chk.lengths and (g.var(refs[1].name) or ir.Var("", "")).role == "observed":
                goal = (refs[1].name, w)
            else:
                return None, f"energy {e.name}: per-step terms must be quadratic(s) or sq_dist(s, goal)"
        else:
            if not (len(refs) == 1 and isinstance(refs[0], ir.Ref) and refs[0].name == r["target"]
                    and position(chk, refs[0], None, None) == T):
                return None, f"energy {e.name} must read {r['target']}[T]"
            info = chk.modules[chk.call_module[id(call)]]
            if info.kind != "mlp" or info.out_shape != (1,) or len(info.args) > 3 or critic is not None:
                return None, f"energy {e.name}: a terminal term must be one critic mlp(S, h, 1)"
            critic = (call.fn, w)
    if quad is None and goal is None:
        return None, "no per-step cost on the rollout"
    if quad and goal:
        return None, "a quadratic cost and a goal distance together are not fused (one goal per kernel)"
    if len(S) != 1:
        return None, f"state shape {list(S)} must be a vector"
    return FusedRollout(r["target"], act.name, r["module"], T, quad, goal, critic), "fits"


def kernel_problem(ebm, fr: FusedRollout, inputs: dict):
    """(s0 [B,S], actions [B,T,A], MLPPredictor, RolloutCost) for the kernels, from spec inputs."""
    from kernels.rollout import RolloutCost

    from .interp import eval_expr
    from .rollout import mlp_predictor

    x = ebm.prepare(inputs)
    chk = ebm.checked
    base = next(f for f in ebm.graph.functions if f.target.name == fr.state and f.loop is None)
    cache: dict = {}

    def lookup(name, p):  # observed leaves, or other functions of them (s[0] = Enc(s_x) ...)
        if name in x:
            return x[name][:, p] if name in chk.lengths else x[name]
        if (name, p) not in cache:
            f = next(f for f in ebm.graph.functions if f.target.name == name and f.loop is None)
            cache[(name, p)] = eval_expr(chk, ebm.mods, f.value, lookup, ebm.weights())
        return cache[(name, p)]

    s0 = eval_expr(chk, ebm.mods, base.value, lookup, ebm.weights())
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
    from kernels.rollout import mlp_rollout

    fr, why = analyze_fused(ebm)
    if fr is None:
        raise ValueError(f"{ebm.graph.name} does not fit the fused kernel: {why}")
    s0, actions, pred, cost = kernel_problem(ebm, fr, inputs)
    return mlp_rollout(s0, actions, pred, cost, impl=impl)


def plan(ebm, observed: dict, *, method: str = "mppi", init=None, generator=None, seed: int = 0, **settings):
    """MPPI or CEM over the action array with every rollout fused (``kernels/mppi.py``).

    Returns the kernels' ``PlanResult`` (mean, std, best_actions, best_energy, history).
    """
    from kernels.mppi import plan_cem, plan_mppi

    fr, why = analyze_fused(ebm)
    if fr is None:
        raise ValueError(f"{ebm.graph.name} does not fit the fused planner: {why}")
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
    with torch.no_grad():
        return fn(s0.detach(), mean0, pred, cost.to(s0.dtype), bounds=bounds, generator=generator, **settings)
