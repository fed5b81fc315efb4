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
import keyword
import math
import re
import reprlib

import sympy

from .errors import Loc, SpecError
from .ir import BinOp, Call, Expr, Neg, Num, Ref, Weight

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_MAX_LEN = 10_000       # characters of one expression: a 1,000-term sum A(x) + A(x) + ... fits
_MAX_DEPTH = 60         # depth of the expression tree built (calls, parentheses, operators)
_BALANCE = 16           # a +/- chain of more terms is built as a balanced tree, depth ~log2(terms)
_QUOTE = 80             # characters of an expression quoted in an error message
_MAX_INT = 10**15       # largest integer constant (or index value) an index expression may hold
_MAX_DEGREE = 64        # largest polynomial degree of an index expression (t**2, T*t, ...)
_MAX_NUM = 1e300        # largest magnitude of a number in a value expression or module argument
_INDEX_FNS = {"floor": sympy.floor, "ceiling": sympy.ceiling}  # what sympy prints for // (round trip)

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 80
_short.maxlevel = 3


def short_repr(value) -> str:
    """A bounded repr for error messages (a YAML alias bomb must not expand into the message)."""
    try:
        return _short.repr(value)
    except Exception:  # a repr that fails is still a spec problem, not a crash
        return f"<{type(value).__name__}>"


def quote(text) -> str:
    """``text`` quoted for an error message: at most about 80 characters, cut with an ellipsis.

    >>> quote("A(x) + " * 300)[:30]
    "'A(x) + A(x) + A(x) + A(x) + A"
    """
    s = str(text)
    if len(s) <= _QUOTE:
        return repr(s)
    return f"{s[:_QUOTE - 8]!r}… ({len(s)} characters)"


def check_name(name: str, loc: Loc, what: str = "name") -> str:
    if not isinstance(name, str) or not _NAME.match(name) or keyword.iskeyword(name):
        raise SpecError(f"bad {what} {short_repr(name)}: use letters, digits and _ (starting with a letter; "
                        f"not a Python keyword)", loc, (short_repr(name),))
    return name


def _parse(text: str, loc: Loc) -> ast.expr:
    if not isinstance(text, (str, int, float)) or isinstance(text, bool):
        raise SpecError(f"expected an expression, got {type(text).__name__} {short_repr(text)}", loc)
    if isinstance(text, int) and abs(text) > _MAX_INT:
        raise SpecError(f"number too large: {short_repr(text)}", loc)
    text = str(text)
    if len(text) > _MAX_LEN:
        raise SpecError(f"expression longer than {_MAX_LEN} characters: {quote(text)}", loc)
    if not text.isprintable():
        raise SpecError(f"expression contains unprintable characters: {quote(text)}", loc)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (MemoryError, RecursionError):
        raise SpecError(f"cannot parse {quote(text)}: nested too deeply for Python's parser", loc) from None
    except (SyntaxError, ValueError) as exc:
        msg = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
        raise SpecError(f"cannot parse {quote(text)}: {msg}", loc) from None
    return tree.body


def _chain(node: ast.AST) -> list[tuple[str, ast.AST]]:
    """The terms of a flat ``+``/``-`` chain with their signs, first term ``+``.

    Python parses ``a + b - c`` as the left-nested ``(a + b) - c``, so a sum of n terms is a
    tree n deep; walking its left spine in a loop (not by recursion) reads it at any length.
    A parenthesized group is a right operand, so it stays one term.
    """
    rev = []
    while isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        rev.append(("+" if isinstance(node.op, ast.Add) else "-", node.right))
        node = node.left
    rev.append(("+", node))
    return rev[::-1]


def _fold(terms: list, join):
    """Combine signed terms ``[(sign, x), ...]`` (first sign ``+``) with ``join(op, left, right)``.

    Up to :data:`_BALANCE` terms: left to right, ``((a + b) - c) + d``, as Python reads them (so
    specs print back as written). Longer: a balanced tree ``(a + b) - (c - d)`` of depth
    ~log2(n), so a 1,000-term sum is 10 levels deep for every pass that recurses over the IR. Its
    printed form (right groups in parentheses) has at most ~log2(n) + 2 terms per chain and
    reads back left to right into the same tree.
    """
    if len(terms) <= _BALANCE:
        out = terms[0][1]
        for op, x in terms[1:]:
            out = join(op, out, x)
        return out
    return _balanced(terms, join)


def _balanced(terms: list, join):
    if len(terms) <= 2:
        return terms[0][1] if len(terms) == 1 else join(terms[1][0], terms[0][1], terms[1][1])
    m = (len(terms) + 1) // 2
    op = terms[m][0]
    # a - (b - c + d) = a - b + c - d: behind a '-' the signs of the right group flip
    right = [("+", terms[m][1])] + [(sg if op == "+" else "+-"[sg == "+"], x) for sg, x in terms[m + 1:]]
    return join(op, _balanced(terms[:m], join), _balanced(right, join))


def _term_depths(n: int, signs: list[str], depth: int) -> list[int]:
    """The depth at which each of ``n`` chain terms sits once folded below a node at ``depth``."""
    out = [0] * n

    def join(op, a, b):
        return ("node", a, b)

    tree = _fold([(sg, i) for sg, i in zip(signs, range(n))], join)
    stack = [(tree, depth)]
    while stack:
        t, d = stack.pop()
        if isinstance(t, tuple):
            stack += [(t[1], d + 1), (t[2], d + 1)]
        else:
            out[t] = d
    return out


def _bad(node: ast.AST, text: str, loc: Loc) -> SpecError:
    what = {
        ast.Attribute: "attribute access ('.')",
        ast.Lambda: "lambda",
        ast.Constant: "this constant",
        ast.Starred: "'*' unpacking",
    }.get(type(node), type(node).__name__)
    return SpecError(f"{what} is not allowed in {quote(text)}", loc)


def _ident(node: ast.Name, text: str, loc: Loc) -> str:
    if node.id.startswith("_") or not _NAME.match(node.id):
        raise SpecError(f"name {quote(node.id)} is not allowed in {quote(text)}", loc, (node.id,))
    return node.id


def _number(node: ast.AST, text: str, loc: Loc) -> float | None:
    """The value of a numeric literal (None if ``node`` is not one); huge or non-finite is an error."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        v = node.value
        if isinstance(v, int) and abs(v) > _MAX_NUM or isinstance(v, float) and not math.isfinite(v):
            raise SpecError(f"number out of range in {short_repr(text)}", loc)
        return v
    return None


def _degree(e: sympy.Expr) -> int:
    """An upper bound on the polynomial degree of an index expression (floor keeps it)."""
    if e.is_Symbol:
        return 1
    if e.is_Number:
        return 0
    if e.is_Pow:
        exp = e.exp
        return _degree(e.base) * (abs(int(exp)) if exp.is_Integer else _MAX_DEGREE + 1)
    if e.is_Mul:
        return sum(_degree(a) for a in e.args)
    return max((_degree(a) for a in e.args), default=0)


def _bounded(e: sympy.Expr, text: str, loc: Loc) -> sympy.Expr:
    """Keep index arithmetic small: constants up to 1e15, degree up to 64."""
    for n in e.atoms(sympy.Rational):
        if abs(n.p) > _MAX_INT or n.q > _MAX_INT:
            raise SpecError(f"index constant too large in {short_repr(text)} (limit {_MAX_INT:.0e})", loc)
    if e.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        raise SpecError(f"index expression {short_repr(text)} is undefined", loc)
    if _degree(e) > _MAX_DEGREE:
        raise SpecError(f"index expression {short_repr(text)} has degree above {_MAX_DEGREE}", loc)
    return e


# ----------------------------------------------------------------------------- index expressions
def _iexpr(node: ast.AST, text: str, loc: Loc, depth: int = 0) -> sympy.Expr:
    if depth > 50:
        raise SpecError(f"index expression nested too deeply in {quote(text)}", loc)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        # a flat sum is one sympy Add, however many terms (nesting, not length, costs depth)
        parts = [_iexpr(t, text, loc, depth + 1) for _, t in _chain(node)]
        signs = [sg for sg, _ in _chain(node)]
        return _bounded(sympy.Add(*[v if sg == "+" else -v for sg, v in zip(signs, parts)]), text, loc)
    if isinstance(node, ast.Constant):
        if type(node.value) is int:
            return _bounded(sympy.Integer(node.value), text, loc)
        raise SpecError(f"index must be an integer expression in {short_repr(text)}", loc)
    if isinstance(node, ast.Name):
        return sympy.Symbol(_ident(node, text, loc), integer=True)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _iexpr(node.operand, text, loc, depth + 1)
        return -v if isinstance(node.op, ast.USub) else v
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _INDEX_FNS
            and len(node.args) == 1 and not node.keywords):
        # sympy prints T//2 as floor(T/2): read it back so that dumps/loads round-trips
        return _bounded(_INDEX_FNS[node.func.id](_iexpr(node.args[0], text, loc, depth + 1)), text, loc)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        # only a literal exponent, as sympy prints t*t (t**2)
        exp = node.right
        if not (isinstance(exp, ast.Constant) and type(exp.value) is int and 0 <= exp.value <= _MAX_DEGREE):
            raise SpecError(f"an index power takes a literal exponent 0..{_MAX_DEGREE} in {short_repr(text)}", loc)
        base = _iexpr(node.left, text, loc, depth + 1)
        if base.is_Number and abs(base) > 1 and exp.value * math.log10(abs(float(base))) > 15:
            raise SpecError(f"index constant too large in {short_repr(text)}", loc)
        if _degree(base) * exp.value > _MAX_DEGREE:
            raise SpecError(f"index expression {short_repr(text)} has degree above {_MAX_DEGREE}", loc)
        return _bounded(base ** exp.value, text, loc)
    if isinstance(node, ast.BinOp):
        a = _iexpr(node.left, text, loc, depth + 1)
        b = _iexpr(node.right, text, loc, depth + 1)
        if isinstance(node.op, ast.Mult) and _degree(a) + _degree(b) > _MAX_DEGREE:
            raise SpecError(f"index expression {short_repr(text)} has degree above {_MAX_DEGREE}", loc)
        if isinstance(node.op, ast.Add):
            out = a + b
        elif isinstance(node.op, ast.Sub):
            out = a - b
        elif isinstance(node.op, ast.Mult):
            out = a * b
        elif isinstance(node.op, (ast.Div, ast.FloorDiv)):
            if b == 0:
                raise SpecError(f"division by zero in index {short_repr(text)}", loc)
            out = a / b if isinstance(node.op, ast.Div) else sympy.floor(a / b)
        else:
            raise SpecError(f"operator {type(node.op).__name__} is not allowed in index {short_repr(text)}", loc)
        return _bounded(out, text, loc)
    raise _bad(node, text, loc)


def _index(node: ast.AST, text: str, loc: Loc) -> sympy.Expr:
    """An index expression in the form sympy prints and reads back unchanged.

    sympy's printer and Python's precedence disagree on some forms (``-(a + 6)*b`` is
    built as ``-1*(a + 6)*b`` but reads back as ``(-a - 6)*b``), so re-read the printed
    form until it is stable: then ``dumps``/``loads`` give back the same IR.
    """
    expr = _iexpr(node, text, loc)
    for _ in range(3):
        printed = str(expr)
        try:
            again = _iexpr(_parse(printed, loc), printed, loc)
        except SpecError:
            break
        if again == expr:
            break
        expr = again
    return expr


def parse_index(text, loc: Loc) -> sympy.Expr:
    """Parse an index expression such as ``t+1``, ``2k+2`` (written ``2*k+2``) or ``T/2``."""
    if isinstance(text, bool):
        raise SpecError(f"index must be an integer expression, got {quote(text)}", loc)
    src = str(text)
    # the paper writes 2k for 2*k: accept a number followed by a name
    src = re.sub(r"(?<![A-Za-z_0-9])(\d+)([A-Za-z_])", r"\1*\2", src)
    return _index(_parse(src, loc), src, loc)


def parse_range(text, loc: Loc) -> tuple[sympy.Expr, sympy.Expr]:
    """Parse ``lo..hi`` (inclusive)."""
    if not isinstance(text, str) or text.count("..") != 1:
        raise SpecError(f"an index range is written lo..hi (e.g. 0..T-1), got {short_repr(text)}", loc)
    lo, hi = text.split("..")
    return parse_index(lo, loc), parse_index(hi, loc)


def parse_target(text: str, loc: Loc) -> Ref:
    """Parse the left side of a binding: ``s_x``, ``s[0]``, ``s[t+1]``, ``cost[t]``."""
    node = _parse(text, loc)
    if isinstance(node, ast.Name):
        return Ref(_ident(node, text, loc))
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        return Ref(_ident(node.value, text, loc), _index(node.slice, text, loc))
    raise SpecError(f"expected a name or name[index] on the left, got {short_repr(text)}", loc)


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
    # depth is where this node will sit in the IR: calls, parentheses and operators nest, a long
    # flat sum does not (it is folded into a balanced tree), and every later pass that recurses
    # over the IR stays within Python's stack
    if depth > _MAX_DEPTH:
        raise SpecError(f"expression nested too deeply (more than {_MAX_DEPTH} levels of calls, parentheses "
                        f"and operators) in {quote(text)}", loc)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        terms = _chain(node)
        signs = [sg for sg, _ in terms]
        depths = _term_depths(len(terms), signs, depth)
        built = [(sg, _vexpr(t, text, loc, weights, d)) for (sg, t), d in zip(terms, depths)]
        return _fold(built, lambda op, a, b: BinOp(op, a, b))
    num = _number(node, text, loc)
    if num is not None:
        return Num(float(num))
    if isinstance(node, ast.Name):
        name = _ident(node, text, loc)
        return Weight(name) if name in weights else Ref(name)
    if isinstance(node, ast.Subscript):
        if not isinstance(node.value, ast.Name):
            raise SpecError(f"only a variable can be indexed in {quote(text)}", loc)
        return Ref(_ident(node.value, text, loc), _index(node.slice, text, loc))
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise _bad(node.func, text, loc)
        if node.keywords:
            raise SpecError(f"keyword arguments belong in the module's declaration, not in {quote(text)}", loc)
        fn = _ident(node.func, text, loc)
        args = tuple(_vexpr(a, text, loc, weights, depth + 1) for a in node.args)
        if not args:
            raise SpecError(f"{fn}() needs at least one argument in {quote(text)}", loc, (fn,))
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
            raise SpecError(f"operator {type(node.op).__name__} is not allowed in {quote(text)} (use + - * /)", loc)
        return BinOp(op, _vexpr(node.left, text, loc, weights, depth + 1),
                     _vexpr(node.right, text, loc, weights, depth + 1))
    raise _bad(node, text, loc)


# ----------------------------------------------------------------------------- module declarations
def parse_module(text, loc: Loc) -> tuple[str, tuple, tuple, bool]:
    """Parse ``mlp(34, 64, 32, act=relu)`` or ``fixed(linear(3, 3))`` or ``identity``.

    Returns (kind, args, kwargs, trainable). Arguments are numbers, booleans
    (true/false), names (activation names, size names) or size arithmetic kept as text.
    """
    arrow = isinstance(text, str) and "->" in text
    # the signature arrow of external(...) reads as Python's >> (a binary operator), nothing else changes
    node = _parse(text.replace("->", ">>") if arrow else text, loc)
    trainable = True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "fixed":
        if len(node.args) != 1 or node.keywords:
            raise SpecError(f"fixed(...) takes one module, got {quote(text)}", loc)
        node, trainable = node.args[0], False
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "external":
        args, ranks = _signature(node, text, loc)
        return "external", args, (("ranks", ranks),), trainable
    if arrow:
        raise SpecError(f"'->' belongs in a signature, external([in], ... -> [out]); got {quote(text)}", loc)
    if isinstance(node, ast.Name):
        return _ident(node, text, loc), (), (), trainable
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise SpecError(f"a module is written kind(args...), e.g. mlp(64, 128, 32); got {quote(text)}", loc)
    kind = _ident(node.func, text, loc)
    args = tuple(_marg(a, text, loc) for a in node.args)
    kwargs = []
    for kw in node.keywords:
        if kw.arg is None:
            raise SpecError(f"'**' is not allowed in {quote(text)}", loc)
        if not _NAME.match(kw.arg):
            raise SpecError(f"bad keyword {quote(kw.arg)} in {quote(text)}", loc)
        kwargs.append((kw.arg, _marg(kw.value, text, loc)))
    return kind, args, tuple(kwargs), trainable


def _signature(node: ast.Call, text: str, loc: Loc) -> tuple[tuple, str]:
    """``external([3], [1] -> [3])``: a module whose body the user supplies, declared by its
    signature — one shape per argument, then the output's. Returns the dimensions flat (each
    a number or size arithmetic, like any module argument) and their layout, ``"1,1->1"``."""
    usage = f"external(...) declares a signature, e.g. external([3], [1] -> [3]); got {quote(text)}"
    if node.keywords or not node.args or not (isinstance(node.args[-1], ast.BinOp)
                                              and isinstance(node.args[-1].op, ast.RShift)):
        raise SpecError(usage, loc)
    shapes = [*node.args[:-1], node.args[-1].left, node.args[-1].right]
    if not all(isinstance(s, ast.List) and s.elts for s in shapes):
        raise SpecError(usage + " (each shape is a non-empty list such as [3] or [C, H, W])", loc)
    dims = tuple(_marg(d, text, loc) for s in shapes for d in s.elts)
    ranks = [str(len(s.elts)) for s in shapes]
    return dims, ",".join(ranks[:-1]) + "->" + ranks[-1]


def _marg(node: ast.AST, text: str, loc: Loc):
    num = _number(node, text, loc)
    if num is not None:
        return num
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _number(node.operand, text, loc)
        if inner is not None:
            return -inner
    if isinstance(node, ast.Name):
        name = _ident(node, text, loc)
        return {"true": True, "false": False, "True": True, "False": False}.get(name, name)
    if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Call)):
        # size arithmetic such as S+A or T//2: validated, kept as text (an int if it is constant)
        expr = _index(node, text, loc)
        return int(expr) if expr.is_Integer else str(expr)
    raise _bad(node, text, loc)


def resolve_int(value, sizes: dict[str, int], loc: Loc, what: str) -> int:
    """An int from a literal or size arithmetic (``S+A``), with the sizes given."""
    if isinstance(value, bool):
        raise SpecError(f"{what}: expected an integer, got {short_repr(value)}", loc)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        expr = parse_index(value, loc)
        return resolve_iexpr(expr, sizes, loc, what)
    raise SpecError(f"{what}: expected an integer, got {short_repr(value)}", loc)


def resolve_iexpr(expr: sympy.Expr, env: dict[str, int], loc: Loc, what: str) -> int:
    """Evaluate an integer index expression with the symbols bound in ``env``."""
    free = {s.name for s in expr.free_symbols}
    missing = sorted(free - set(env))
    if missing:
        raise SpecError(f"{what}: unknown name(s) {', '.join(missing)} in {expr}", loc, tuple(missing))
    bad = {k: v for k, v in env.items() if k in free and (isinstance(v, bool) or not isinstance(v, int)
                                                         or abs(v) > _MAX_INT)}
    if bad:
        raise SpecError(f"{what}: {', '.join(sorted(bad))} must be integers up to {_MAX_INT:.0e}", loc, tuple(sorted(bad)))
    try:
        val = expr.subs({sympy.Symbol(k, integer=True): v for k, v in env.items() if k in free})
    except (ValueError, TypeError, ZeroDivisionError, ArithmeticError) as exc:
        raise SpecError(f"{what}: cannot evaluate {expr}: {exc}", loc) from None
    if not (val.is_number and val.is_integer):
        shown = {k: v for k, v in env.items() if k in free}
        raise SpecError(f"{what}: {expr} is not an integer ({val}) for {shown}", loc)
    out = int(val)
    if abs(out) > _MAX_INT:
        raise SpecError(f"{what}: {expr} = {short_repr(out)} is out of range (limit {_MAX_INT:.0e})", loc)
    return out
