"""IR -> DOT in the symbols of Figure 18.

Drawing rules (one table of styles keyed by node kind, sorted attributes, nodes in IR order,
so the text is deterministic and golden-testable):

* variables are circles: filled for observed variables and outputs of deterministic
  functions, hollow for latents, hollow with a blue border for actions, each action array
  driven by a dashed ``Actor`` box (Figures 4, 16);
* deterministic functions are rounded boxes with arrows input -> box -> output;
* energy terms are red boxes joined to what they read by plain lines (dir=none, as in a
  factor graph); a sum ``u1*IC1(s) + u2*IC2(s)`` draws one box per component (Figure 6) and a
  weight other than 1 labels that box's lines; a regularizer R(z) sits beside its latent
  (the non-deterministic function of Figure 18, right);
* the layout runs bottom to top (inputs below, energies above, as the paper draws);
  a recurrence ``s[t+1] = Pred(s[t], a[t])`` is one horizontal row (rank=same):
  s[0] -> Pred -> s[1] -> ... with C(s[t]) above and the actions below (Figure 4); a second
  level (index k, Figures 16-17) rises above the first, its sub-goal terms between them.

Large T: an index with more than ``MAX_STEPS`` (6) values is unrolled for its first 3 and
last 2 values; a dashed "…" node joins the elements on either side of the gap.
``plates=True`` draws one step of each index instead, inside a plate (cluster)
labelled with the index's range.
"""
from __future__ import annotations

import html

from .. import ir
from ..check import Checked
from ..expr import resolve_iexpr
from . import notation as nt

MAX_STEPS = 6
HEAD, TAIL = 3, 2  # values of a long index that are drawn before / after the "…"

ACTION_COLOR = "#1f5fbf"
ENERGY_COLOR = "#c00000"
STYLES: dict[str, dict[str, str]] = {
    "observed": {"shape": "circle", "style": "filled", "fillcolor": "#b3b3b3", "color": "black"},
    "derived": {"shape": "circle", "style": "filled", "fillcolor": "#b3b3b3", "color": "black"},
    "latent": {"shape": "circle", "style": "solid", "color": "black"},
    "sampled": {"shape": "circle", "style": "dashed", "color": "black"},
    "action": {"shape": "circle", "style": "solid", "color": ACTION_COLOR, "penwidth": "2"},
    "function": {"shape": "box", "style": "rounded", "color": "black"},
    "energy": {"shape": "box", "style": "filled", "fillcolor": "#f6c3c3", "color": ENERGY_COLOR, "penwidth": "1.5"},
    "batchreg": {"shape": "box", "style": "dashed", "color": ENERGY_COLOR},
    "actor": {"shape": "box", "style": "dashed,rounded", "color": ACTION_COLOR, "fontcolor": ACTION_COLOR},
    "gap": {"shape": "plaintext"},
}
EDGE_STYLES: dict[str, dict[str, str]] = {
    "flow": {},                                          # deterministic: input -> function -> output
    "factor": {"dir": "none", "color": ENERGY_COLOR},     # energy term reads a variable
    "actor": {"style": "dashed", "color": ACTION_COLOR, "arrowhead": "open"},
    "gap": {"style": "dashed", "dir": "none"},
    "plate": {"style": "dotted", "dir": "none", "constraint": "false"},
    "invis": {"style": "invis"},                        # layout only: keeps levels apart
}
GRAPH_ATTRS = {"rankdir": "BT", "nodesep": "0.3", "ranksep": "0.35", "newrank": "true",
               "fontname": "Helvetica"}
NODE_ATTRS = {"fontname": "Helvetica", "fontsize": "12", "margin": "0.04", "width": "0.4", "height": "0.3"}
EDGE_ATTRS = {"arrowsize": "0.7", "fontname": "Helvetica", "fontsize": "10", "fontcolor": ENERGY_COLOR}


class Canvas:
    """Nodes, edges, rank groups and plates, in insertion order."""

    def __init__(self):
        self.nodes: dict[str, dict[str, str]] = {}
        self.edges: list[tuple[str, str, dict[str, str]]] = []
        self.ranks: list[list[str]] = []
        self.plates: dict[str, str] = {}             # cluster name -> label
        self.plate_of: dict[str, str] = {}           # node id -> cluster name

    def node(self, nid: str, kind: str, label: str, **extra: str) -> str:
        if nid not in self.nodes:
            self.nodes[nid] = {**STYLES[kind], "label": f"<{label}>", **extra}
        return nid

    def edge(self, a: str, b: str, kind: str, **extra: str) -> None:
        self.edges.append((a, b, {**EDGE_STYLES[kind], **extra}))


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _val(v: str) -> str:
    return v if v.startswith("<") and v.endswith(">") else _q(v)


def _attrs(d: dict[str, str]) -> str:
    return "[" + ", ".join(f"{k}={_val(d[k])}" for k in sorted(d)) + "]"


def _stmts(d: dict[str, str], pad: str) -> list[str]:
    """Graph attributes as ``key=value;`` statements (one per line, sorted)."""
    return [f"{pad}{k}={_val(d[k])};" for k in sorted(d)]


def emit(cv: Canvas, name: str, caption: str | None, comment: str | None = None) -> str:
    """The DOT text of a canvas; attributes sorted, nodes and edges in insertion order."""
    gattrs = dict(GRAPH_ATTRS)
    if caption:
        gattrs.update(label=f"<{html.escape(caption)}>", labelloc="t", fontsize="12")
    if comment:
        gattrs.update(comment=comment)
    out = [f"digraph {_q(name)} {{", *_stmts(gattrs, "  "), f"  node {_attrs(NODE_ATTRS)};",
           f"  edge {_attrs(EDGE_ATTRS)};"]
    for nid, a in cv.nodes.items():
        if nid not in cv.plate_of:
            out.append(f"  {_q(nid)} {_attrs(a)};")
    for cl, label in cv.plates.items():
        out.append(f"  subgraph {_q('cluster_' + cl)} {{")
        out.extend(_stmts({"label": f"<{label}>", "style": "rounded", "color": "gray40", "labeljust": "l"}, "    "))
        for nid, a in cv.nodes.items():
            if cv.plate_of.get(nid) == cl:
                out.append(f"    {_q(nid)} {_attrs(a)};")
        for grp in cv.ranks:
            if all(cv.plate_of.get(n) == cl for n in grp):
                out.append("    { rank=same; " + " ".join(_q(n) + ";" for n in grp) + " }")
        out.append("  }")
    for grp in cv.ranks:
        if all(n not in cv.plate_of for n in grp):
            out.append("  { rank=same; " + " ".join(_q(n) + ";" for n in grp) + " }")
    for a, b, at in cv.edges:
        out.append(f"  {_q(a)} -> {_q(b)}" + (f" {_attrs(at)};" if at else ";"))
    out.append("}")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- steps
def visible_steps(lo: int, hi: int) -> list[int]:
    """The values of an index that are drawn: all of them up to ``MAX_STEPS``, else the
    first ``HEAD`` and the last ``TAIL`` (a "…" stands for the rest)."""
    if hi - lo + 1 <= MAX_STEPS:
        return list(range(lo, hi + 1))
    return list(range(lo, lo + HEAD)) + list(range(hi - TAIL + 1, hi + 1))


class _Drawer:
    def __init__(self, chk: Checked, collapse: bool):
        self.chk, self.g, self.collapse = chk, chk.graph, collapse
        self.cv = Canvas()
        self.env = dict(chk.sizes)
        self.leaf = {v.name: v for v in self.g.variables}
        self.arrays = set(chk.lengths)
        self.drawn_pos: dict[str, set] = {}

    # -- positions
    def steps(self, loop: str | None) -> list:
        if loop is None:
            return [None]
        if self.collapse:
            return [sympy_symbol(loop)]
        return visible_steps(*self.chk.ranges[loop])

    def pos(self, r: ir.Ref, loop: str | None, t):
        """Concrete element position (unrolled) or the index expression (collapsed)."""
        if r.index is None:
            return None
        if self.collapse:
            return r.index
        env = dict(self.env)
        if loop is not None:
            env[loop] = t
        return resolve_iexpr(r.index, env, None, ir.ref_str(r))

    def plate_for(self, nid: str, loop: str | None, index=None) -> None:
        if not self.collapse:
            return
        names = {s.name for s in index.free_symbols} if index is not None and hasattr(index, "free_symbols") else set()
        idx = [i.name for i in self.g.indices if i.name in names] or ([loop] if loop and index is None else [])
        if idx:
            i = self.g.index(idx[0])
            self.cv.plates.setdefault(idx[0], f"{html.escape(i.name)} = {html.escape(nt.index_text(i.lo))}.."
                                      f"{html.escape(nt.index_text(i.hi))}")
            self.cv.plate_of[nid] = idx[0]

    # -- nodes
    def var(self, name: str, p) -> str:
        if p is None:
            nid = f"v:{name}"
        else:
            nid = f"v:{name}[{nt.index_text(p) if self.collapse else p}]"
        if nid in self.cv.nodes:
            return nid
        v = self.leaf.get(name)
        kind = "derived" if v is None else ("sampled" if v.sampled else v.role)
        label = nt.ref_html(name, p)
        self.cv.node(nid, kind, label)
        if p is not None:
            self.drawn_pos.setdefault(name, []).append(p)
            self.plate_for(nid, None, p)
        return nid

    def arg_label(self, a: ir.Expr, loop: str | None, t, keep_loop_index: bool) -> str:
        if isinstance(a, ir.Ref):
            if a.index is None:
                return nt.name_html(a.name)
            loopy = loop is not None and loop in {s.name for s in a.index.free_symbols}
            if loopy and not keep_loop_index:
                return nt.name_html(a.name)
            return nt.ref_html(a.name, self.pos(a, loop, t))
        return self.expr_label(a, loop, t, keep_loop_index)

    def expr_label(self, e: ir.Expr, loop, t, keep: bool, term: str | None = None) -> str:
        if isinstance(e, ir.Call):
            fn = nt.call_name(self.g, e, term)
            return f"{nt.name_html(fn)}({', '.join(self.arg_label(a, loop, t, keep) for a in e.args)})"
        if isinstance(e, ir.Ref):
            return self.arg_label(e, loop, t, keep)
        if isinstance(e, ir.Num | ir.Weight):
            return html.escape(ir.expr_str(e)) if isinstance(e, ir.Num) else nt.name_html(e.name)
        if isinstance(e, ir.Neg):
            return "−" + self.expr_label(e.operand, loop, t, keep)
        if isinstance(e, ir.BinOp):
            op = {"*": "·", "-": "−"}.get(e.op, e.op)
            return f"({self.expr_label(e.left, loop, t, keep)} {op} {self.expr_label(e.right, loop, t, keep)})"
        raise TypeError(e)

    def inputs(self, e: ir.Expr, into: str, loop, t, edge: str, owner: str, weight: str | None = None) -> None:
        """Join what ``e`` reads to node ``into``: variables directly, nested function calls
        through their own rounded boxes."""
        extra = {"label": weight} if weight else {}
        args = e.args if isinstance(e, ir.Call) else (e,)
        k = 0
        for a in args:
            for sub in _top_parts(a):
                if isinstance(sub, ir.Ref):
                    self.cv.edge(self.var(sub.name, self.pos(sub, loop, t)), into, edge, **extra)
                else:  # a nested call: its own function box
                    k += 1
                    nid = f"f:{owner}/{k}"
                    self.cv.node(nid, "function", self.expr_label(sub, loop, t, False))
                    self.plate_for(nid, loop)
                    self.inputs(sub, nid, loop, t, "flow", f"{owner}/{k}")
                    self.cv.edge(nid, into, edge, **extra)

    # -- the graph
    def draw(self) -> Canvas:
        g, cv = self.g, self.cv
        for v in g.variables:
            if v.name not in self.arrays:
                self.var(v.name, None)
        chains: dict[str, list[str]] = {}
        for f in g.functions:
            recur = f.loop is not None and any(r.name == f.target.name for r in ir.refs(f.value))
            for t in self.steps(f.loop):
                p = self.pos(f.target, f.loop, t)
                out_label = f.target.name if p is None else f"{f.target.name}[{nt.index_text(p) if self.collapse else p}]"
                nid = f"f:{out_label}"
                cv.node(nid, "function", self.expr_label(f.value, f.loop, t, False))
                self.plate_for(nid, f.loop)
                self.inputs(f.value, nid, f.loop, t, "flow", out_label)
                out = self.var(f.target.name, p)
                cv.edge(nid, out, "flow")
                if recur:
                    chains.setdefault(f.target.name, []).append(nid)
        regs: list[list[str]] = []
        for en in g.energies:
            comps = nt.split_terms(en.value)
            for t in self.steps(en.loop):
                for ci, (coefs, core) in enumerate(comps):
                    base = en.name + ("" if en.loop is None else f"[{nt.index_text(t) if self.collapse else t}]")
                    owner = base + (f"#{ci}" if len(comps) > 1 else "")
                    nid = f"e:{owner}"
                    term = en.name if len(comps) == 1 else None
                    label = self.expr_label(core, en.loop, t, True, term)
                    cv.node(nid, "energy", label, tooltip=f"{en.name}: {ir.expr_str(en.value)}")
                    self.plate_for(nid, en.loop)
                    w = nt.coef_text(coefs)
                    self.inputs(core, nid, en.loop, t, "factor", owner, weight=w)
                    rs = ir.refs(core)
                    if (isinstance(core, ir.Call) and nt.fn_role(g, core.fn) == "regularizer" and len(rs) == 1
                            and self.leaf.get(rs[0].name) is not None and self.leaf[rs[0].name].role == "latent"):
                        regs.append([self.var(rs[0].name, self.pos(rs[0], en.loop, t)), nid])
        for r in g.regularizers:
            nid = f"r:{r.name}"
            cv.node(nid, "batchreg", self.expr_label(r.value, None, None, True))
            self.inputs(r.value, nid, None, None, "factor", r.name)
        for v in g.variables:  # arrays no term reads still show their drawn steps
            if v.name in self.arrays and v.name not in self.drawn_pos:
                for t in self.steps(v.index):
                    self.var(v.name, t)
        for v in g.variables:
            if v.role == "action":
                digits = "".join(ch for ch in v.name if ch.isdigit())
                aid = cv.node(f"actor:{v.name}", "actor", "Actor" + (f"<sub>{digits}</sub>" if digits else ""))
                for nid in [n for n in cv.nodes if n == f"v:{v.name}" or n.startswith(f"v:{v.name}[")]:
                    cv.edge(aid, nid, "actor")
        gaps = self._gaps()
        rows: dict[str, tuple[list[str], list[str]]] = {}
        for name, fns in chains.items():
            members = [n for n in cv.nodes if n.startswith(f"v:{name}[")] + fns + gaps.get(name, [])
            if self.collapse:
                members = [n for n in members if n in cv.plate_of]
            cv.ranks.append(members)
            rows[name] = (members, fns)
            inrow = set(members)  # keep a chain's row tight: s[t] -> Pred -> s[t+1] side by side
            cv.edges = [(a, b, {**at, "weight": "8"}) if a in inrow and b in inrow else (a, b, at)
                        for a, b, at in cv.edges]
        for v in g.variables:  # actions (and latent sequences) along a row below their chain
            if v.name in self.arrays and not self.collapse:
                row = [n for n in cv.nodes if n.startswith(f"v:{v.name}[")] + gaps.get(v.name, [])
                if len(row) > 1:
                    cv.ranks.append(row)
        # R(z) hangs below its latent (Figure 18, right): flip the line so R ranks lower
        flip = {(z, r) for z, r in regs}
        cv.edges = [(b, a, at) if (a, b) in flip else (a, b, at) for a, b, at in cv.edges]
        self._stack_levels(rows)
        # observed inputs along the bottom row, as the paper draws x and y (Figure 12)
        bottom = [f"v:{v.name}" for v in g.variables if v.role == "observed" and v.name not in self.arrays]
        if len(bottom) > 1:
            cv.ranks.append(bottom)
        if self.collapse:
            self._plate_links()
        return cv

    def _stack_levels(self, rows) -> None:
        """Two levels (Figures 16-17): the upper level's actions sit above the lower row."""
        import networkx as nx

        flow = nx.DiGraph((a, b) for a, b, at in self.cv.edges if "dir" not in at and "style" not in at)
        for lo_name, (lo_members, _) in rows.items():
            below = set(lo_members)
            for up_name, (up_members, up_fns) in rows.items():
                if up_name == lo_name or not any(m in flow and below & nx.ancestors(flow, m) for m in up_members):
                    continue
                # the upper level's leaf inputs (actions, latents) and what hangs below them
                # (their R(z) boxes, their Actor) all rank above the lower row
                leaves = [a for a, b, at in self.cv.edges if b in up_fns and a.startswith("v:")
                          and not any(e[1] == a and e[0].startswith("f:") for e in self.cv.edges)]
                hang = [a for a, b, at in self.cv.edges if b in leaves and a.startswith(("e:", "actor:"))]
                for a in dict.fromkeys(leaves + hang):
                    self.cv.edge(lo_members[0], a, "invis")

    def _gaps(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        if self.collapse:
            return out
        for name, ps in self.drawn_pos.items():
            ps = sorted(set(ps))
            for p, q in zip(ps, ps[1:]):
                if q - p > 1:
                    nid = self.cv.node(f"gap:{name}[{p + 1}..{q - 1}]", "gap", "…")
                    self.cv.edge(f"v:{name}[{p}]", nid, "gap")
                    self.cv.edge(nid, f"v:{name}[{q}]", "gap")
                    out.setdefault(name, []).append(nid)
        return out

    def _plate_links(self) -> None:
        """Collapsed: join an array's elements outside a plate (s[0]) to its first one inside."""
        for name, ps in self.drawn_pos.items():
            inside = sorted((n for n in self.cv.nodes if n.startswith(f"v:{name}[") and n in self.cv.plate_of),
                            key=lambda n: (len(n), n))
            outside = [n for n in self.cv.nodes if n.startswith(f"v:{name}[") and n not in self.cv.plate_of]
            if inside:
                for n in outside:
                    self.cv.edge(n, inside[0], "plate")


def _top_parts(e: ir.Expr) -> list[ir.Expr]:
    """The references and outermost calls of an argument expression."""
    if isinstance(e, (ir.Ref, ir.Call)):
        return [e]
    if isinstance(e, ir.BinOp):
        return _top_parts(e.left) + _top_parts(e.right)
    if isinstance(e, ir.Neg):
        return _top_parts(e.operand)
    return []


def sympy_symbol(name: str):
    import sympy

    return sympy.Symbol(name, integer=True)


def draw(chk: Checked, *, plates: bool = False) -> Canvas:
    """Lay a checked graph out on a :class:`Canvas` (see the module docstring for the rules)."""
    return _Drawer(chk, plates).draw()
