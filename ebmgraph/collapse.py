"""Which standard architecture a spec is, and whether it can collapse (Figure 10, §4.3, §4.5).

Planning comes first: a spec with action variables is Mode-2 planning (Fig. 4), two
levels of actions make it hierarchical (Fig. 16), sampled latents put it under
uncertainty (Fig. 17); an observed action array rolled through the world model and
compared with a policy's output is a policy learned from planning (Fig. 5). A planning
spec's energy is a cost to minimize, not a trained prediction: it cannot collapse.

Otherwise the analysis looks at the prediction energy D(u, v) (the first divergence —
sq_dist, l1_dist, cosine_dist, huber or a two-argument quadratic — between two values):

* one side is an observed y and the other does not depend on y or on a latent:
  (a) prediction / deterministic generative — cannot collapse;
* the other side depends on a latent z: (b) generative latent-variable — can collapse
  when z has as much capacity as y (continuous, unregularized, dim z >= dim y);
* the other side depends on y itself: (c) auto-encoder — can collapse when no code on
  the way from y is narrower than y and none is regularized;
* both sides are representations of inputs: (d) joint embedding, or JEPA (Figure 12)
  when a predictor or latent sits on one side — can collapse unless an
  information-maximizing regularizer (VICReg, Barlow Twins; §4.5.1) covers both branches;
  a JEPA latent is also checked for capacity.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from . import ir
from .elements import ancestors_of
from .errors import Loc, SpecError
from .modules import KINDS


@dataclass
class ArchReport:
    code: str            # 10a | 10b | 10c | 10d | jepa | ebm | cost | other
    label: str
    can_collapse: bool
    reasons: list[str] = field(default_factory=list)
    warnings: list[SpecError] = field(default_factory=list)


DIVERGENCES = ("sq_dist", "l1_dist", "cosine_dist", "huber", "quadratic")


def _kind(g: ir.Graph, fn: str) -> str:
    mod = g.module(fn)
    return mod.kind if mod else fn


def _divergences(g: ir.Graph):
    """(energy, u, v) for each term that is (a weighted) two-argument divergence.

    Costs that read a state and an action (``pendulum_cost(s, a)``) compare nothing: skipped.

    Terms that read a latent or action directly (H(ž, z̃) of Fig. 19–20, a policy's
    imitation of planned actions) compare latents, not predictions of data: skipped.
    """
    free = {v.name for v in g.variables if v.role in ("latent", "action")}
    out = []
    for e in g.energies:
        node = e.value
        while isinstance(node, ir.BinOp) and node.op == "*":
            node = node.right if isinstance(node.left, (ir.Num, ir.Weight)) else node.left
        if isinstance(node, ir.Call) and len(node.args) == 2:
            if _kind(g, node.fn) in DIVERGENCES and not any(
                    isinstance(a, ir.Ref) and a.name in free for a in node.args):
                out.append((e, node.args[0], node.args[1]))
    return out


def _regularized(g: ir.Graph) -> set[str]:
    """Variables read alone by a single-argument energy term (R(z), l1(z), ...)."""
    out = set()
    for e in g.energies:
        for c in ir.calls(e.value):
            if len(c.args) == 1 and isinstance(c.args[0], ir.Ref):
                mod = g.module(c.fn)
                kind = mod.kind if mod else c.fn
                if kind in KINDS and KINDS[kind].role in ("regularizer", "energy"):
                    out.add(c.args[0].name)
    return out


def _planning(g: ir.Graph) -> ArchReport | None:
    """Mode-2 planning (Fig. 4, 16, 17) or a policy learned from planned actions (Fig. 5)."""
    actions = [v for v in g.variables if v.role == "action"]
    recurrences = [f for f in g.functions if f.loop is not None and any(r.name == f.target.name for r in ir.refs(f.value))]
    if actions:
        levels = max(len({v.index for v in actions if v.index is not None}), len(recurrences))
        uncertain = any(v.role == "latent" for v in g.variables)
        if levels >= 2:
            return (ArchReport("hplan", "hierarchical planning under uncertainty (Fig. 17)", False) if uncertain
                    else ArchReport("hplan", "hierarchical planning (Fig. 16)", False))
        return (ArchReport("plan", "planning under uncertainty, Mode-2 (Fig. 4, 17)", False) if uncertain
                else ArchReport("plan", "planning, Mode-2 (Fig. 4)", False))
    observed = {v.name for v in g.variables if v.role == "observed" and v.index is not None}
    planned = {r.name for f in recurrences for r in ir.refs(f.value) if r.name in observed}
    for e, u, v in _divergences(g):
        if any(isinstance(x, ir.Ref) and x.name in planned for x in (u, v)):
            return ArchReport("policy", "policy learned from planned actions, Mode-2 to Mode-1 (Fig. 5)", False,
                              [f"{e.name} compares the planned actions with the policy's (§3.1.3)"])
    return None


class _Graph:
    """What the collapse analysis asks of a checked graph: element ancestors, widths, latents and their limits."""

    def __init__(self, chk):
        g: ir.Graph = chk.graph
        self.chk, self.g, self.EG = chk, g, chk.elements
        self.observed = {v.name for v in g.variables if v.role == "observed"}
        self.latents = {v.name: v for v in g.variables if v.role == "latent"}
        self.regularized = _regularized(g)
        self.defs = {f.target.name: f.value for f in g.functions if f.loop is None and f.target.index is None}

    def nodes(self, expr, loop, t) -> set:
        return {(r.name, self.chk.position(r, loop, t)) for r in ir.refs(expr)}

    def anc_nodes(self, expr, loop=None, t=None) -> set:
        ns = self.nodes(expr, loop, t)
        return ancestors_of(self.EG, [n for n in ns if n in self.EG]) | ns

    def anc(self, expr, loop=None, t=None) -> set[str]:
        return {n for n, _ in self.anc_nodes(expr, loop, t)}

    def width(self, name: str) -> int:
        n = 1
        for d in self.chk.shapes.get(name, ()):
            n *= d
        return n

    def latent_limited(self, z: str, target_width: int) -> tuple[bool, str]:
        v = self.latents[z]
        if isinstance(v.domain, ir.Discrete):
            return True, f"{z} is discrete ({v.domain.K} values)"
        if z in self.regularized:
            return True, f"{z} is regularized"
        if self.width(z) < target_width:
            return True, f"{z} has {self.width(z)} dims < {target_width}"
        return False, (f"latent {z} ({self.width(z)} dims) is as wide as the prediction target ({target_width}) "
                       f"and no regularizer limits it: for any target some {z} gives zero energy (§4.5, Fig. 10b)")

    def raw_observed(self, x, depth: int = 0) -> str | None:
        """The observed y that ``x`` is, or a fixed, parameter-free transform of (``Up(y)`` with
        ``Up: scale(1, 20)``): such a side cannot move, so the energy is still a prediction of y."""
        if isinstance(x, ir.Ref):
            if x.name in self.observed:
                return x.name
            if x.index is None and x.name in self.defs and depth < 8:
                return self.raw_observed(self.defs[x.name], depth + 1)
            return None
        if isinstance(x, ir.Call) and len(x.args) == 1:
            mod = self.g.module(x.fn)
            kind = mod.kind if mod else x.fn
            frozen = (mod is not None and not mod.trainable) or kind in ("scale", "identity")
            return self.raw_observed(x.args[0], depth + 1) if frozen else None
        return None


def analyze(chk) -> ArchReport:
    """Which architecture of Figure 10 (or JEPA, planning) the spec is, and whether it can collapse (§4.3, §4.5)."""
    g: ir.Graph = chk.graph
    plan = _planning(g)
    if plan is not None:
        return plan
    G = _Graph(chk)
    divs = _divergences(g)
    if not divs:
        return _free_form(G)
    e, u, v = divs[0]
    t0 = chk.loop_values(e.loop)[0] if e.loop else None
    y = G.raw_observed(u) or G.raw_observed(v)
    report = _prediction(G, e, u, v, t0, y) if y is not None else _joint_embedding(G, divs, e, u, v, t0)
    if report.can_collapse:
        for why in report.reasons:
            report.warnings.append(SpecError(f"{report.label} CAN COLLAPSE: {why}", e.loc or Loc(g.file), (e.name,)))
    return report


def _free_form(G: _Graph) -> ArchReport:
    """No divergence between two sides: a free-form energy (Fig. 8, 9) or a cost."""
    joint = any(len(G.anc(e.value, e.loop, G.chk.loop_values(e.loop)[0]) & G.observed) >= 2 for e in G.g.energies)
    if G.latents:
        return ArchReport("ebm", "latent-variable EBM (Fig. 9)", False,
                          ["a free-form energy of (x, y, z): only contrastive training keeps it from flattening"])
    if joint:
        return ArchReport("ebm", "energy-based model F(x, y) (Fig. 8)", False,
                          ["a free-form energy network: only contrastive training keeps it from flattening"])
    return ArchReport("cost", "cost / critic evaluation (no prediction energy)", False)


def _prediction(G: _Graph, e, u, v, t0, y: str) -> ArchReport:
    """One side is the observed y: an auto-encoder (10c), a latent-variable generative model (10b) or a
    prediction (10a)."""
    y_side, other = (u, v) if G.raw_observed(u) == y else (v, u)
    y_nodes = G.nodes(y_side, e.loop, t0)
    other_anc = G.anc_nodes(other, e.loop, t0)
    lat_here = sorted({n for n, _ in other_anc} & set(G.latents))
    if y_nodes & other_anc:
        # auto-encoder: the codes on the way from y to its reconstruction
        down = set().union(*[nx.descendants(G.EG, n) for n in y_nodes])
        codes = sorted({n for n, _ in (down & other_anc)} - G.observed)
        narrow = [n for n in codes if G.width(n) < G.width(y)]
        limited = [n for n in codes if n in G.regularized or
                   (n in G.latents and isinstance(G.latents[n].domain, ir.Discrete))]
        report = ArchReport("10c", "auto-encoder (Fig. 10c)", not (narrow or limited))
        if report.can_collapse:
            report.reasons.append(
                f"no code between {y} and its reconstruction is narrower than {y} ({G.width(y)} dims) or regularized: "
                f"the auto-encoder can learn the identity and give low energy to every {y} (Fig. 10c)")
        return report
    if lat_here:
        bad = [G.latent_limited(z, G.width(y)) for z in lat_here]
        report = ArchReport("10b", "generative latent-variable architecture (Fig. 10b)", any(not ok for ok, _ in bad))
        report.reasons += [why for ok, why in bad if not ok]
        return report
    return ArchReport("10a", "prediction / deterministic generative (Fig. 10a)", False,
                      [f"one prediction for each input: only {y} = prediction has zero energy"])


def _joint_embedding(G: _Graph, divs, e, u, v, t0) -> ArchReport:
    """Both sides are representations: a joint embedding (10d), a JEPA (Fig. 12) or an H-JEPA (Fig. 15)."""
    au, av = G.anc(u, e.loop, t0), G.anc(v, e.loop, t0)
    obs_u, obs_v = au & G.observed, av & G.observed
    lat_u, lat_v = au & set(G.latents), av & set(G.latents)
    lat_here = sorted(lat_u | lat_v)
    depth_u, depth_v = len(G.anc_nodes(u, e.loop, t0)), len(G.anc_nodes(v, e.loop, t0))
    is_jepa = bool(lat_here) or depth_u != depth_v
    levels = sum(1 for d in divs if not any(isinstance(x, ir.Ref) and x.name in G.observed for x in d[1:]))
    report = ArchReport("jepa" if is_jepa else "10d",
                        ("hierarchical JEPA (Fig. 15)" if levels >= 2 else "JEPA (Fig. 12)") if is_jepa
                        else "joint embedding architecture (Fig. 10d)", False)
    covered_u = covered_v = False
    for r in G.g.regularizers:
        if isinstance(r.value, ir.Call) and r.value.fn in ("vicreg", "barlow", "variance", "sigreg"):
            reg_anc = G.anc(r.value)
            covered_u |= bool(obs_u & reg_anc) and bool((au & reg_anc) - G.observed)
            covered_v |= bool(obs_v & reg_anc) and bool((av & reg_anc) - G.observed)
    if not (covered_u and covered_v):
        report.can_collapse = True
        report.reasons.append(
            "no information-maximizing regularizer (vicreg, barlow, variance, sigreg) covers both branches: the encoders "
            "can ignore their inputs and output equal constants (Fig. 10d, §4.5.1) unless trained contrastively")
    target_side = u if not lat_u else v  # the side without the latent: s_y
    tw = G.width(target_side.name) if isinstance(target_side, ir.Ref) else 0
    for z in lat_here:
        ok, why = G.latent_limited(z, tw)
        if not ok:
            report.can_collapse = True
            report.reasons.append(why.replace("Fig. 10b", "Fig. 12"))
    return report
