"""Safe parsing of the paper's notation: nothing in a spec is ever evaluated.

Expressions are read with Python's ``ast`` parser (which builds a tree and runs
nothing), checked against a whitelist of node kinds, and converted into the IR's
expression nodes; index expressions become sympy integer expressions built from
``sympy.Symbol`` and ``sympy.Integer`` directly (no ``sympify`` of raw text).
Attribute access, dunder names, lambdas, comprehensions, strings and keyword
arguments in expressions are all spec errors.
"""
from __future__ import annotations

import ast
import math
import re

import sympy

from .errors import Loc, SpecError
from .ir import BinOp, Call, Expr, Neg, Num, Ref, Weight

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_MAX_LEN = 2000


def check_name(name: str, loc: Loc, what: str = "name") -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError(f"bad {what} {name!r}: use letters, digits and _ (starting with a letter)", loc, (str(name),))
    return name


def _parse(text: str, loc: Loc) -> ast.expr:
    if not isinstance(text, (str, int, float)) or isinstance(text, bool):
        raise SpecError(f"expected an expression, got {type(text).__name__} {text!r}", loc)
    text = str(text)
    if len(text) > _MAX_LEN:
        raise SpecError(f"expression longer than {_MAX_LEN} characters", loc)
    if not text.isprintable():
        raise SpecError(f"expression contains unprintable characters: {text!r}", loc)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        msg = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
        raise SpecError(f"cannot parse {text!r}: {msg}", loc) from None
    return tree.body


def _bad(node: ast.AST, text: str, loc: Loc) -> SpecError:
    what = {
        ast.Attribute: "attribute access ('.')",
        ast.Lambda: "lambda",
        ast.Constant: "this constant",
        ast.Starred: "'*' unpacking",
    }.get(type(node), type(node).__name__)
    return SpecError(f"{what} is not allowed in {text!r}", loc)


def _ident(node: ast.Name, text: str, loc: Loc) -> str:
    if node.id.startswith("_") or not _NAME.match(node.id):
        raise SpecError(f"name {node.id!r} is not allowed in {text!r}", loc, (node.id,))
    return node.id


def _number(node: ast.AST) -> float | None:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        if not math.isfinite(node.value):
            return None
        return node.value
    return None


# ----------------------------------------------------------------------------- index expressions
def _iexpr(node: ast.AST, text: str, loc: Loc, depth: int = 0) -> sympy.Expr:
    if depth > 50:
        raise SpecError(f"index expression nested too deeply in {text!r}", loc)
    if isinstance(node, ast.Constant):
        if type(node.value) is int:
            return sympy.Integer(node.value)
        raise SpecError(f"index must be an integer expression in {text!r}", loc)
    if isinstance(node, ast.Name):
        return sympy.Symbol(_ident(node, text, loc), integer=True)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _iexpr(node.operand, text, loc, depth + 1)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        a = _iexpr(node.left, text, loc, depth + 1)
        b = _iexpr(node.right, text, loc, depth + 1)
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        if isinstance(node.op, (ast.Div, ast.FloorDiv)):
            if b == 0:
                raise SpecError(f"division by zero in index {text!r}", loc)
            return a / b if isinstance(node.op, ast.Div) else sympy.floor(a / b)
        raise SpecError(f"operator {type(node.op).__name__} is not allowed in index {text!r}", loc)
    raise _bad(node, text, loc)


def parse_index(text, loc: Loc) -> sympy.Expr:
    """Parse an index expression such as ``t+1``, ``2k+2`` (written ``2*k+2``) or ``T/2``."""
    if isinstance(text, bool):
        raise SpecError(f"index must be an integer expression, got {text!r}", loc)
    src = str(text)
    # the paper writes 2k for 2*k: accept a number followed by a name
    src = re.sub(r"(?<![A-Za-z_0-9])(\d+)([A-Za-z_])", r"\1*\2", src)
    return _iexpr(_parse(src, loc), src, loc)


def parse_range(text, loc: Loc) -> tuple[sympy.Expr, sympy.Expr]:
    """Parse ``lo..hi`` (inclusive)."""
    if not isinstance(text, str) or text.count("..") != 1:
        raise SpecError(f"an index range is written lo..hi (e.g. 0..T-1), got {text!r}", loc)
    lo, hi = text.split("..")
    return parse_index(lo, loc), parse_index(hi, loc)


def parse_target(text: str, loc: Loc) -> Ref:
    """Parse the left side of a binding: ``s_x``, ``s[0]``, ``s[t+1]``, ``cost[t]``."""
    node = _parse(text, loc)
    if isinstance(node, ast.Name):
        return Ref(_ident(node, text, loc))
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        return Ref(_ident(node.value, text, loc), _iexpr(node.slice, text, loc))
    raise SpecError(f"expected a name or name[index] on the left, got {text!r}", loc)


# ----------------------------------------------------------------------------- value expressions
def parse_expr(text, loc: Loc, weights: frozenset[str] | set[str] = frozenset()) -> Expr:
    """Parse the right side of a function or energy term into IR nodes.

    Names listed in ``weights`` become :class:`Weight` nodes; other bare names are
    variable references, resolved by the checker.

    >>> from ebmgraph.ir import expr_str
    >>> expr_str(parse_expr("D(s_y, Pred(s_x, z)) + 0.1*R(z)", Loc()))
    'D(s_y, Pred(s_x, z)) + 0.1*R(z)'
    """
    src = str(text) if not isinstance(text, bool) else text
    node = _parse(src, loc)
    return _vexpr(node, str(src), loc, frozenset(weights), 0)


def _vexpr(node: ast.AST, text: str, loc: Loc, weights: frozenset, depth: int) -> Expr:
    if depth > 60:
        raise SpecError(f"expression nested too deeply in {text!r}", loc)
    num = _number(node)
    if num is not None:
        return Num(float(num))
    if isinstance(node, ast.Name):
        name = _ident(node, text, loc)
        return Weight(name) if name in weights else Ref(name)
    if isinstance(node, ast.Subscript):
        if not isinstance(node.value, ast.Name):
            raise SpecError(f"only a variable can be indexed in {text!r}", loc)
        return Ref(_ident(node.value, text, loc), _iexpr(node.slice, text, loc))
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise _bad(node.func, text, loc)
        if node.keywords:
            raise SpecError(f"keyword arguments belong in the module's declaration, not in {text!r}", loc)
        fn = _ident(node.func, text, loc)
        args = tuple(_vexpr(a, text, loc, weights, depth + 1) for a in node.args)
        if not args:
            raise SpecError(f"{fn}() needs at least one argument in {text!r}", loc, (fn,))
        return Call(fn, args)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _vexpr(node.operand, text, loc, weights, depth + 1)
        if isinstance(node.op, ast.UAdd):
            return inner
        return Num(-inner.value) if isinstance(inner, Num) else Neg(inner)
    if isinstance(node, ast.BinOp):
        ops = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
        op = ops.get(type(node.op))
        if op is None:
            raise SpecError(f"operator {type(node.op).__name__} is not allowed in {text!r} (use + - * /)", loc)
        return BinOp(op, _vexpr(node.left, text, loc, weights, depth + 1),
                     _vexpr(node.right, text, loc, weights, depth + 1))
    raise _bad(node, text, loc)


# ----------------------------------------------------------------------------- module declarations
def parse_module(text, loc: Loc) -> tuple[str, tuple, tuple, bool]:
    """Parse ``mlp(34, 64, 32, act=relu)`` or ``fixed(linear(3, 3))`` or ``identity``.

    Returns (kind, args, kwargs, trainable). Arguments are numbers, booleans
    (true/false), names (activation names, size names) or size arithmetic kept as text.
    """
    node = _parse(text, loc)
    trainable = True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "fixed":
        if len(node.args) != 1 or node.keywords:
            raise SpecError(f"fixed(...) takes one module, got {text!r}", loc)
        node, trainable = node.args[0], False
    if isinstance(node, ast.Name):
        return _ident(node, text, loc), (), (), trainable
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise SpecError(f"a module is written kind(args...), e.g. mlp(64, 128, 32); got {text!r}", loc)
    kind = _ident(node.func, text, loc)
    args = tuple(_marg(a, text, loc) for a in node.args)
    kwargs = []
    for kw in node.keywords:
        if kw.arg is None:
            raise SpecError(f"'**' is not allowed in {text!r}", loc)
        if not _NAME.match(kw.arg):
            raise SpecError(f"bad keyword {kw.arg!r} in {text!r}", loc)
        kwargs.append((kw.arg, _marg(kw.value, text, loc)))
    return kind, args, tuple(kwargs), trainable


def _marg(node: ast.AST, text: str, loc: Loc):
    num = _number(node)
    if num is not None:
        return num
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _number(node.operand)
        if inner is not None:
            return -inner
    if isinstance(node, ast.Name):
        name = _ident(node, text, loc)
        return {"true": True, "false": False, "True": True, "False": False}.get(name, name)
    if isinstance(node, ast.BinOp):  # size arithmetic such as S+A: validated, kept as text
        expr = _iexpr(node, text, loc)
        return str(expr)
    raise _bad(node, text, loc)


def resolve_int(value, sizes: dict[str, int], loc: Loc, what: str) -> int:
    """An int from a literal or size arithmetic (``S+A``), with the sizes given."""
    if isinstance(value, bool):
        raise SpecError(f"{what}: expected an integer, got {value!r}", loc)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        expr = parse_index(value, loc)
        return resolve_iexpr(expr, sizes, loc, what)
    raise SpecError(f"{what}: expected an integer, got {value!r}", loc)


def resolve_iexpr(expr: sympy.Expr, env: dict[str, int], loc: Loc, what: str) -> int:
    """Evaluate an integer index expression with the symbols bound in ``env``."""
    free = {s.name for s in expr.free_symbols}
    missing = sorted(free - set(env))
    if missing:
        raise SpecError(f"{what}: unknown name(s) {', '.join(missing)} in {expr}", loc, tuple(missing))
    val = expr.subs({sympy.Symbol(k, integer=True): v for k, v in env.items() if k in free})
    if not (val.is_number and val.is_integer):
        raise SpecError(f"{what}: {expr} is not an integer ({val}) for {env}", loc)
    return int(val)
