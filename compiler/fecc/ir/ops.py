"""The operator table: every operator of the expression IR, defined once.

Each operator has a fixed signature (argument types and result type), a numpy
reference implementation, an infix/function form for printing, and a one-line
definition that backends must reproduce exactly.  The *safe* operators (``div``,
``log``, ``sqrt``, ``exp``) are total: they never raise and never produce a value a
backend could disagree on, so every backend implements them from this table.

Types are ``"num"`` (float64 values, NaN allowed) and ``"bool"`` (IEEE comparisons:
any comparison with NaN is false, except ``ne``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

NUM = "num"
BOOL = "bool"

#: ``div(a, b) = a / (b + DIV_EPS)`` when ``b >= 0`` (``-0.0`` included), else ``a / (b - DIV_EPS)``.
DIV_EPS = 1e-9
#: ``exp`` clips its argument from above so that it never overflows to ``inf``.
EXP_CLIP = 50.0


@dataclass(frozen=True)
class Op:
    """One IR operator.

    Attributes
    ----------
    name : postfix token and canonical name.
    args : argument types, in order.
    result : result type.
    numpy : reference implementation on float64 / bool arrays.
    math : format string for :func:`fecc.ir.printing.to_math` (``{0}``, ``{1}`` = operands).
    prec : precedence of the printed form (higher binds tighter; 100 = function call).
    definition : the exact semantics in words, copied into emitted code comments.
    """

    name: str
    args: tuple[str, ...]
    result: str
    numpy: Callable[..., np.ndarray]
    math: str
    prec: int = 100
    definition: str = ""

    @property
    def arity(self) -> int:
        return len(self.args)


def _safe_div(a, b):
    return a / np.where(b >= 0, b + DIV_EPS, b - DIV_EPS)


def _safe_exp(x):
    return np.exp(np.where(x > EXP_CLIP, EXP_CLIP, x))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _op(name, args, result, fn, math, prec=100, definition=""):
    return Op(name, tuple(args), result, fn, math, prec, definition)


_N, _B = NUM, BOOL

OPS: dict[str, Op] = {
    o.name: o
    for o in [
        # unary, num -> num
        _op("neg", [_N], _N, np.negative, "-{0}", 6, "-x"),
        _op("abs", [_N], _N, np.abs, "|{0}|", 100, "|x|"),
        _op("log", [_N], _N, lambda x: np.log1p(np.abs(x)), "log(1 + |{0}|)", 100,
            "log(1 + |x|): total, 0 at 0, symmetric in sign"),
        _op("sqrt", [_N], _N, lambda x: np.sqrt(np.abs(x)), "sqrt(|{0}|)", 100, "sqrt(|x|)"),
        _op("exp", [_N], _N, _safe_exp, "exp(min({0}, 50))", 100,
            "exp(x) with x clipped above at 50 (NaN stays NaN)"),
        _op("sigmoid", [_N], _N, _sigmoid, "sigmoid({0})", 100, "1 / (1 + exp(-x))"),
        _op("tanh", [_N], _N, np.tanh, "tanh({0})", 100, "tanh(x)"),
        _op("square", [_N], _N, lambda x: x * x, "{0}^2", 8, "x * x"),
        _op("cube", [_N], _N, lambda x: x * x * x, "{0}^3", 8, "x * x * x"),
        _op("sign", [_N], _N, np.sign, "sign({0})", 100, "-1, 0 or 1; NaN stays NaN"),
        # unary predicates
        _op("isnan", [_N], _B, np.isnan, "isnan({0})", 100, "x is missing (NaN)"),
        _op("not", [_B], _B, np.logical_not, "not {0}", 2, "logical not"),
        # binary arithmetic
        _op("add", [_N, _N], _N, np.add, "{0} + {1}", 4, "a + b"),
        _op("sub", [_N, _N], _N, np.subtract, "{0} - {1}", 4, "a - b"),
        _op("mul", [_N, _N], _N, np.multiply, "{0} * {1}", 5, "a * b"),
        _op("div", [_N, _N], _N, _safe_div, "{0} / {1}", 5,
            "a / (b + 1e-9) if b >= 0 else a / (b - 1e-9)"),
        _op("min", [_N, _N], _N, np.minimum, "min({0}, {1})", 100, "smaller of a, b; NaN if either is NaN"),
        _op("max", [_N, _N], _N, np.maximum, "max({0}, {1})", 100, "larger of a, b; NaN if either is NaN"),
        # comparisons (IEEE: false when either side is NaN, except ne)
        _op("lt", [_N, _N], _B, np.less, "{0} < {1}", 3, "a < b"),
        _op("le", [_N, _N], _B, np.less_equal, "{0} <= {1}", 3, "a <= b"),
        _op("gt", [_N, _N], _B, np.greater, "{0} > {1}", 3, "a > b"),
        _op("ge", [_N, _N], _B, np.greater_equal, "{0} >= {1}", 3, "a >= b"),
        _op("eq", [_N, _N], _B, np.equal, "{0} == {1}", 3, "a == b"),
        _op("ne", [_N, _N], _B, np.not_equal, "{0} != {1}", 3, "a != b"),
        # logic
        _op("and", [_B, _B], _B, np.logical_and, "{0} and {1}", 1, "a and b"),
        _op("or", [_B, _B], _B, np.logical_or, "{0} or {1}", 0, "a or b"),
        # selection: both branches are evaluated; the condition picks one
        _op("where", [_B, _N, _N], _N, np.where, "{1} if {0} else {2}", -1,
            "then-value where cond is true, else-value otherwise"),
    ]
}

UNARY = frozenset(n for n, o in OPS.items() if o.arity == 1)
BINARY = frozenset(n for n, o in OPS.items() if o.arity == 2)
COMPARISONS = frozenset({"lt", "le", "gt", "ge", "eq", "ne"})
#: Binary operators whose operands can be swapped without changing the value.
COMMUTATIVE = frozenset({"add", "mul", "min", "max", "eq", "ne", "and", "or"})


def get_op(name: str) -> Op:
    """The operator called ``name``; ``KeyError`` names the known ones."""
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown operator {name!r} (known: {', '.join(sorted(OPS))})") from None
