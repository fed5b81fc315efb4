"""The paper's symbols as text: HTML-like labels for graphviz and the total energy in LaTeX.

Names follow one convention (Figure 18 and §4.4): ``_`` separates a base from its
subscripts, and the words ``tilde`` (a prediction, s̃), ``check`` (a minimizer, ž), ``hat``
and ``bar`` put that accent on the base: ``s_y_tilde`` is s̃ with subscript y.

The total energy is built with sympy from the IR (eq. 1–3, 11): modules become sympy
``Function``s, variables ``Symbol``s with subscripts, arrays ``Indexed`` and terms summed over
an index a ``Sum``; weights (``0.1``, the configurator's ``u1``) stay as coefficients.
"""
from __future__ import annotations

import html
import unicodedata

import sympy

from .. import ir
from ..modules import KINDS

ACCENTS = {"tilde": "\u0303", "check": "\u030c", "hat": "\u0302", "bar": "\u0304"}
GREEK = {n: chr(c) for n, c in [
    ("alpha", 0x3B1), ("beta", 0x3B2), ("gamma", 0x3B3), ("delta", 0x3B4), ("epsilon", 0x3B5),
    ("eta", 0x3B7), ("theta", 0x3B8), ("lambda", 0x3BB), ("mu", 0x3BC), ("pi", 0x3C0),
    ("rho", 0x3C1), ("sigma", 0x3C3), ("tau", 0x3C4), ("phi", 0x3C6), ("psi", 0x3C8), ("omega", 0x3C9)]}


def split_name(name: str) -> tuple[str, list[str], list[str]]:
    """``s_y_tilde`` -> (``s``, [``tilde``], [``y``]): base, accents, subscripts."""
    base, *rest = name.split("_")
    accents = [p for p in rest if p in ACCENTS]
    subs = [p for p in rest if p not in ACCENTS and p]
    return base, accents, subs


def name_html(name: str) -> str:
    """A symbol name as an HTML-like label fragment: ``s_y_tilde`` -> ``s̃<sub>y</sub>``.

    Example:
        >>> name_html("s_y_tilde"), name_html("z_check"), name_html("Enc_x")
        ('s̃<sub>y</sub>', 'ž', 'Enc<sub>x</sub>')
    """
    base, accents, subs = split_name(name)
    base = GREEK.get(base, base)
    text = unicodedata.normalize("NFC", base + "".join(ACCENTS[a] for a in accents))
    out = html.escape(text)
    if subs:
        out += "<sub>" + html.escape(",".join(subs)) + "</sub>"
    return out


def index_text(index) -> str:
    """An index as the paper writes it: ``t+1``, ``2*k+2`` -> ``2k+2``."""
    return ir.index_str(index).replace("*", "")


def ref_html(r: ir.Ref | str, index=None) -> str:
    """``s[t+1]`` with the base name in the paper's notation; ``index`` overrides ``r.index``."""
    name = r if isinstance(r, str) else r.name
    idx = index if index is not None else (None if isinstance(r, str) else r.index)
    return name_html(name) + ("" if idx is None else f"[{html.escape(index_text(idx))}]")


# ----------------------------------------------------------------------------- additive terms
def split_terms(e: ir.Expr) -> list[tuple[list[ir.Expr], ir.Expr]]:
    """Split an energy expression into additive components ``(coefficients, core)``.

    ``u1*IC1(s) + 0.5*IC2(s)`` -> ``[([u1], IC1(s)), ([0.5], IC2(s))]``; a minus sign is the
    coefficient ``Num(-1)``. Coefficients are numbers and weights only (eq. 1–3).
    """
    if isinstance(e, ir.BinOp) and e.op in "+-":
        right = split_terms(e.right)
        if e.op == "-":
            right = [([ir.Num(-1.0), *c], core) for c, core in right]
        return split_terms(e.left) + right
    if isinstance(e, ir.Neg):
        return [([ir.Num(-1.0), *c], core) for c, core in split_terms(e.operand)]
    if isinstance(e, ir.BinOp) and e.op == "*":
        for coef, rest in ((e.left, e.right), (e.right, e.left)):
            if _is_coef(coef):
                return [([coef, *c], core) for c, core in split_terms(rest)]
    if isinstance(e, ir.BinOp) and e.op == "/" and isinstance(e.right, ir.Num) and e.right.value:
        return [([ir.Num(1.0 / e.right.value), *c], core) for c, core in split_terms(e.left)]
    return [([], e)]


def _is_coef(e: ir.Expr) -> bool:
    return all(isinstance(n, (ir.Num, ir.Weight, ir.BinOp, ir.Neg)) for n in ir.walk(e)) and not ir.refs(e)


def coef_text(coefs: list[ir.Expr]) -> str | None:
    """``[Num(0.1), Weight(u1)]`` -> ``"0.1·u1"``; ``None`` when the product is 1."""
    parts = [ir.expr_str(c) for c in coefs if not (isinstance(c, ir.Num) and c.value == 1.0)]
    if parts.count("-1") % 2 == 1:
        parts = [p for p in parts if p != "-1"]
        return "−" + ("·".join(parts) if parts else "1")
    parts = [p for p in parts if p != "-1"]
    return "·".join(parts) if parts else None


def fn_role(g: ir.Graph, fn: str) -> str:
    """``function`` | ``energy`` | ``regularizer``: what a call draws as (Figure 18)."""
    m = g.module(fn)
    kind = KINDS.get(m.kind if m is not None else fn)
    return kind.role if kind is not None else "function"


def call_name(g: ir.Graph, call: ir.Call, term_name: str | None) -> str:
    """The symbol a call is drawn with: a declared module's name, or for an inline
    kind (``sq_dist(...)``) in a one-component energy the term's name (``D``)."""
    if g.module(call.fn) is None and term_name is not None:
        return term_name
    return call.fn


# ----------------------------------------------------------------------------- LaTeX
def sym_name(name: str) -> str:
    """A sympy symbol name whose LaTeX is the paper's: ``s_y_tilde`` -> ``stilde_y`` (\\tilde{s}_{y})."""
    base, accents, subs = split_name(name)
    return base + "".join(accents) + ("_" + "_".join(subs) if subs else "")


def _inlined(g: ir.Graph) -> dict[str, ir.Expr]:
    """Derived single values that depend on a latent or action are written out in the
    energy (eq. 11: E(x, y, z) = D(s_y, Pred(s_x, z))); encoder outputs of observations and
    time-indexed arrays stay as symbols."""
    defs = {f.target.name: f.value for f in g.functions if f.target.index is None}
    free = {v.name for v in g.variables if v.role in ("latent", "action")}
    memo: dict[str, bool] = {}

    def dep(name: str) -> bool:
        if name in free:
            return True
        if name not in defs:
            return False
        if name not in memo:
            memo[name] = False
            memo[name] = any(dep(r.name) for r in ir.refs(defs[name]))
        return memo[name]

    return {n: v for n, v in defs.items() if dep(n)}


def to_sympy(g: ir.Graph, e: ir.Expr, term_name: str | None = None, inline=None) -> sympy.Expr:
    """One IR expression as a sympy expression (see the module docstring)."""
    inline = _inlined(g) if inline is None else inline

    def go(x: ir.Expr) -> sympy.Expr:
        if isinstance(x, ir.Ref):
            if x.index is None and x.name in inline:
                return go(inline[x.name])
            if x.index is None:
                return sympy.Symbol(sym_name(x.name))
            return sympy.IndexedBase(sym_name(x.name))[x.index]
        if isinstance(x, ir.Call):
            return sympy.Function(sym_name(call_name(g, x, term_name)))(*[go(a) for a in x.args])
        if isinstance(x, ir.Num):
            v = x.value
            return sympy.Integer(int(v)) if float(v).is_integer() else sympy.Float(repr(v))
        if isinstance(x, ir.Weight):
            return sympy.Symbol(sym_name(x.name))
        if isinstance(x, ir.Neg):
            return -go(x.operand)
        if isinstance(x, ir.BinOp):
            a, b = go(x.left), go(x.right)
            return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b}[x.op]()
        raise TypeError(f"not an expression: {x!r}")

    return go(e)


def energy_sympy(g: ir.Graph) -> sympy.Eq:
    """The total energy ``E(leaves) = Σ_k w_k term_k`` as an unevaluated sympy equation."""
    inline = _inlined(g)
    terms = []
    for en in g.energies:
        single = len(split_terms(en.value)) == 1
        term = to_sympy(g, en.value, en.name if single else None, inline)
        if en.loop is not None:
            idx = g.index(en.loop)
            sym = sympy.Symbol(en.loop, integer=True)
            terms.append(sympy.Sum(term, (sym, idx.lo, idx.hi)))
        else:
            terms.append(term)
    lhs = sympy.Function("E")(*[sympy.Symbol(sym_name(v.name)) for v in g.variables])
    return sympy.Eq(lhs, sympy.Add(*terms), evaluate=False)


def latex(g: ir.Graph) -> str:
    """The total energy of a graph in LaTeX, e.g. for Figure 12
    ``E{\\left(x,y,z \\right)} = D{\\left(s_{y},\\operatorname{Pred}{\\left(s_{x},z \\right)} \\right)} + 0.1 R{\\left(z \\right)}``.
    """
    return sympy.latex(energy_sympy(g))


class _CaptionPrinter(sympy.printing.str.StrPrinter):
    """Plain text for a figure caption: ``E(x, y, z) = D(s_y, Pred(s_x, z)) + 0.1*R(z)``, sums as Σ."""

    def _print_Sum(self, expr):
        (var, lo, hi), = expr.limits
        return f"Σ_{{{self._print(var)}={self._print(lo)}..{self._print(hi)}}} {self._print(expr.function)}"


def caption_text(g: ir.Graph) -> str:
    """The total energy as readable text (graphviz cannot typeset LaTeX in a picture)."""
    eq = energy_sympy(g)
    p = _CaptionPrinter()
    return f"{p.doprint(eq.lhs)} = {p.doprint(eq.rhs)}"
