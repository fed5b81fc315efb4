"""The IR: a spec in the paper's symbols as a few frozen dataclasses (Figure 18).

Grammar (every node is immutable; change one with ``dataclasses.replace``)::

    Graph    := name figure description indices sizes weights
                variables modules functions energies regularizers
    Index    := name lo hi                     # t: lo..hi, inclusive; lo/hi are IExpr
    Var      := name role shape domain index   # role ∈ observed | latent | action
    Domain   := Real(lo, hi) | Discrete(K)
    ModDecl  := name kind args kwargs inner   # inner: a wrapped ModDecl (fixed(mlp(...)))
    Function := target:Ref value:Expr loop    # s[t+1] = Pred(s[t], a[t]) loops over t
    Energy   := name value:Expr loop          # cost[t] = C(s[t+1]), summed over t
    BatchReg := name value:Expr               # batch-level regularizer (VICReg, Barlow Twins)
    Expr     := Ref(name, index) | Call(fn, args) | Num(value) | Weight(name)
              | BinOp(op, left, right) | Neg(operand)
    IExpr    := a sympy integer expression over index and size symbols (t + 1, 2*k + 2, T/2)

Records the passes derive from a checked graph (not written in specs)::

    Rollout      := state function module start steps order inputs   # s[t+1] = Pred(s[t], a[t], ...)
    RolloutInput := name kind start stop                                # p: a[start..stop-1]; c: one value

Roles follow the symbols of Figure 18: observed variables and outputs of deterministic
functions are filled circles; latents and actions are hollow circles; functions are
rounded boxes; energy terms are red boxes whose scalar outputs add up to the energy.
Source locations are kept for error messages and never take part in equality.

Every expression node carries a ``uid``, fx-style: an integer drawn from one process-wide counter
when the node is constructed (so parsing a spec, or a pass building a new node, gives fresh ones,
unique within a graph). ``dataclasses.replace`` carries it over, so a node rebuilt by a pass keeps
the checker's side tables (:meth:`ebmgraph.check.Checked.module_of`, ``operand_shapes``), which
are keyed by it. Like source locations, uids take no part in equality, hashing or ``repr``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Union

import sympy

from .errors import Loc

ROLES = ("observed", "latent", "action")
_NOLOC = Loc()


def _loc() -> Loc:
    return field(default=_NOLOC, compare=False, repr=False)


_UIDS = itertools.count(1)


def _uid() -> int:
    """A node's stable id: keyword-only, fresh per construction, kept by ``dataclasses.replace``."""
    return field(default_factory=_UIDS.__next__, compare=False, repr=False, kw_only=True)


# ----------------------------------------------------------------------------- domains
@dataclass(frozen=True)
class Real:
    """A continuous domain, optionally boxed: lo <= v <= hi (None = unbounded)."""

    lo: float | None = None
    hi: float | None = None

    @property
    def bounded(self) -> bool:
        return self.lo is not None or self.hi is not None


@dataclass(frozen=True)
class Discrete:
    """K values, fed to modules as a one-hot vector of width K (§4.5, discrete latents)."""

    K: int


Domain = Union[Real, Discrete]


# ----------------------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Ref:
    """A variable, optionally one element of a time-indexed array: ``s`` or ``s[t+1]``."""

    name: str
    index: sympy.Expr | None = None
    uid: int = _uid()


@dataclass(frozen=True)
class Call:
    """A module applied to arguments; several arguments are concatenated on the last axis."""

    fn: str
    args: tuple["Expr", ...]
    uid: int = _uid()


@dataclass(frozen=True)
class Num:
    value: float
    uid: int = _uid()


@dataclass(frozen=True)
class Weight:
    """A symbolic weight (the paper's u_i, v_j of eq. 1–3), set at run time."""

    name: str
    uid: int = _uid()


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * /
    left: "Expr"
    right: "Expr"
    uid: int = _uid()


@dataclass(frozen=True)
class Neg:
    operand: "Expr"
    uid: int = _uid()


Expr = Union[Ref, Call, Num, Weight, BinOp, Neg]


def walk(e: Expr):
    """Yield every node of an expression, parents before children."""
    yield e
    if isinstance(e, Call):
        for a in e.args:
            yield from walk(a)
    elif isinstance(e, BinOp):
        yield from walk(e.left)
        yield from walk(e.right)
    elif isinstance(e, Neg):
        yield from walk(e.operand)


def refs(e: Expr) -> list[Ref]:
    return [n for n in walk(e) if isinstance(n, Ref)]


def calls(e: Expr) -> list[Call]:
    return [n for n in walk(e) if isinstance(n, Call)]


def weights_in(e: Expr) -> list[str]:
    return [n.name for n in walk(e) if isinstance(n, Weight)]


# ----------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class Index:
    """An index variable and its inclusive range: ``t: 0..T-1``."""

    name: str
    lo: sympy.Expr
    hi: sympy.Expr
    loc: Loc = _loc()


@dataclass(frozen=True)
class Var:
    """A declared (leaf) variable.

    ``shape`` is the per-sample, per-step shape; entries are ints or size names.
    ``index`` names the index variable of a time-indexed array (``a[t]``).
    ``sampled`` marks a latent drawn from its regularizer's Gibbs distribution (eq. 23)
    rather than minimized.
    """

    name: str
    role: str  # [ROLES]
    shape: tuple[int | str, ...]
    domain: Domain = Real()
    index: str | None = None
    sampled: bool = False
    loc: Loc = _loc()


@dataclass(frozen=True)
class ModDecl:
    """A module instance: ``Pred: mlp(34, 64, 32, act=relu)``; ``fixed(...)`` freezes it."""

    name: str
    kind: str
    args: tuple[int | float | str, ...] = ()
    kwargs: tuple[tuple[str, int | float | str | bool], ...] = ()
    trainable: bool = True
    loc: Loc = _loc()

    def kw(self, key: str, default=None):
        return dict(self.kwargs).get(key, default)


@dataclass(frozen=True)
class Function:
    """A deterministic function's output: ``target = value``, for each step of ``loop``."""

    target: Ref
    value: Expr
    loop: str | None = None
    loc: Loc = _loc()


@dataclass(frozen=True)
class Energy:
    """An additive energy term; with ``loop`` it is summed over that index (eq. 1–3)."""

    name: str
    value: Expr
    loop: str | None = None
    loc: Loc = _loc()


@dataclass(frozen=True)
class BatchReg:
    """A batch-level regularizer used in training (VICReg, Barlow Twins; §4.5.1, Fig. 13–14)."""

    name: str
    value: Expr
    loc: Loc = _loc()


@dataclass(frozen=True)
class Graph:
    """A whole spec. Sequences keep declaration order; names are unique within each kind."""

    name: str
    figure: str = ""
    description: str = ""
    indices: tuple[Index, ...] = ()
    sizes: tuple[tuple[str, int], ...] = ()
    weights: tuple[tuple[str, float], ...] = ()
    variables: tuple[Var, ...] = ()
    modules: tuple[ModDecl, ...] = ()
    functions: tuple[Function, ...] = ()
    energies: tuple[Energy, ...] = ()
    regularizers: tuple[BatchReg, ...] = ()
    # the configurator's table (§6): task -> weights it sets, ((task, ((weight, value), ...)), ...)
    tasks: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()
    file: str = field(default="<spec>", compare=False, repr=False)

    # -- look-ups (the IR is small; linear scans keep it a plain value) --
    def var(self, name: str) -> Var | None:
        return next((v for v in self.variables if v.name == name), None)

    def module(self, name: str) -> ModDecl | None:
        return next((m for m in self.modules if m.name == name), None)

    def index(self, name: str) -> Index | None:
        return next((i for i in self.indices if i.name == name), None)

    @property
    def derived_names(self) -> list[str]:
        """Names bound by functions, in first-definition order."""
        seen: dict[str, None] = {}
        for f in self.functions:
            seen.setdefault(f.target.name, None)
        return list(seen)

    @property
    def size_dict(self) -> dict[str, int]:
        return dict(self.sizes)

    @property
    def weight_dict(self) -> dict[str, float]:
        return dict(self.weights)


# ----------------------------------------------------------------------------- derived records
@dataclass(frozen=True)
class RolloutInput:
    """A non-state argument of a rollout's step: ``kind`` ``"p"`` reads ``name[start..stop-1]``,
    one element per step; ``"c"`` reads one value every step (``start`` = its position, None
    when ``name`` is not an array)."""

    name: str
    kind: str  # "p" | "c"
    start: int | None = None
    stop: int | None = None


@dataclass(frozen=True)
class Rollout:
    """A recurrence ``s[t+1] = Pred(s[t], a[t], ...)`` run as one op (§3.1.2, Fig. 4).

    Found by :func:`ebmgraph.passes.find_rollouts`; read by lowering, the fused-kernel
    analysis and ``CompiledEBM.explain``. It writes ``state[start .. start+steps-1]`` from
    ``state[start-1]``; ``order`` has one letter per argument of the step: ``s`` the state,
    ``p`` a per-step input, ``c`` a constant (``inputs`` lists the ``p`` and ``c`` ones).
    """

    state: str
    function: int  # index of the definition in Graph.functions
    module: str  # module instance applied at every step
    start: int
    steps: int
    order: str
    inputs: tuple[RolloutInput, ...] = ()


# ----------------------------------------------------------------------------- text form
def expr_str(e: Expr) -> str:
    """The paper's notation for an expression: ``D(s_y, Pred(s_x, z)) + 0.1*R(z)``."""
    if isinstance(e, Ref):
        return e.name if e.index is None else f"{e.name}[{index_str(e.index)}]"
    if isinstance(e, Call):
        return f"{e.fn}({', '.join(expr_str(a) for a in e.args)})"
    if isinstance(e, Num):
        v = e.value
        return repr(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(e, Weight):
        return e.name
    if isinstance(e, Neg):
        inner = expr_str(e.operand)
        return f"-({inner})" if isinstance(e.operand, BinOp) else f"-{inner}"
    if isinstance(e, BinOp):
        prec = {"+": 1, "-": 1, "*": 2, "/": 2}

        def side(x: Expr, right: bool) -> str:
            s = expr_str(x)
            if isinstance(x, BinOp) and (prec[x.op] < prec[e.op] or (right and prec[x.op] == prec[e.op])):
                return f"({s})"
            return s

        sep = " " if e.op in "+-" else ""
        return f"{side(e.left, False)}{sep}{e.op}{sep}{side(e.right, True)}"
    raise TypeError(f"not an expression: {e!r}")


def index_str(i: sympy.Expr) -> str:
    return str(i).replace(" ", "") if len(str(i)) < 6 else str(i)


def ref_str(r: Ref) -> str:
    return expr_str(r)


def _shape_str(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _domain_str(d: Domain) -> str:
    if isinstance(d, Discrete):
        return f"discrete({d.K})"
    if d.bounded:
        return f"real[{d.lo}, {d.hi}]"
    return "real"


def pretty(g: Graph) -> str:
    """One text form of the IR, used by ``ebmgraph show``, errors and golden tests."""
    lines = [f"graph {g.name}" + (f"  # figure {g.figure}" if g.figure else "")]
    for i in g.indices:
        lines.append(f"  index {i.name} = {i.lo}..{i.hi}")
    if g.sizes:
        lines.append("  sizes " + ", ".join(f"{k}={v}" for k, v in g.sizes))
    if g.weights:
        lines.append("  weights " + ", ".join(f"{k}={v}" for k, v in g.weights))
    for v in g.variables:
        name = v.name + (f"[{v.index}]" if v.index else "")
        extra = " sampled" if v.sampled else ""
        lines.append(f"  {v.role:<8} {name}: {_shape_str(v.shape)} {_domain_str(v.domain)}{extra}")
    for m in g.modules:
        args = [str(a) for a in m.args] + [f"{k}={val}" for k, val in m.kwargs]
        frozen = " (fixed)" if not m.trainable else ""
        lines.append(f"  module   {m.name} = {m.kind}({', '.join(args)}){frozen}")
    for f in g.functions:
        loop = f"    for {f.loop}" if f.loop else ""
        lines.append(f"  fn       {ref_str(f.target)} = {expr_str(f.value)}{loop}")
    for e in g.energies:
        loop = f"    sum over {e.loop}" if e.loop else ""
        lines.append(f"  energy   {e.name} = {expr_str(e.value)}{loop}")
    for r in g.regularizers:
        lines.append(f"  batchreg {r.name} = {expr_str(r.value)}")
    return "\n".join(lines)
