"""A small, value-preserving simplifier.

Every rule keeps the value of the expression for *all* inputs, NaN and ±inf included
(that is why ``x * 0`` is not folded to ``0``: it is NaN for ``x = inf``).  Only the
sign of a zero may change (``-0.0 + 0.0`` is ``0.0``), which no comparison sees.
"""
from __future__ import annotations

import numpy as np

from .analysis import features_of, params_of, transform
from .evaluate import evaluate
from .nodes import Binary, Const, Expr, Unary, Where


def _is_const(node: Expr, value: float | None = None) -> bool:
    return isinstance(node, Const) and (value is None or node.value == value)


def _closed(node: Expr) -> bool:
    return not features_of(node) and not params_of(node)


def _fold(node: Expr) -> Expr:
    if isinstance(node, Where):
        if _closed(node.cond):
            return node.then if bool(evaluate(node.cond, {})) else node.otherwise
        if node.then == node.otherwise:
            return node.then
        return node
    if node.type == "num" and node.children and all(_is_const(c) for c in node.children):
        return Const(float(evaluate(node, {})))
    if isinstance(node, Unary):
        x = node.x
        if node.op == "neg" and isinstance(x, Unary) and x.op == "neg":
            return x.x
        if node.op == "not" and isinstance(x, Unary) and x.op == "not":
            return x.x
        if node.op == "abs" and isinstance(x, Unary) and x.op in ("abs", "neg", "square", "sqrt", "exp", "log"):
            # |−y| = |y|, and the others are never negative
            return Unary("abs", x.x) if x.op == "neg" else x
        if node.op in ("log", "sqrt") and isinstance(x, Unary) and x.op in ("abs", "neg"):
            return Unary(node.op, x.x)  # both already take |x|
        return node
    if isinstance(node, Binary):
        a, b, op = node.a, node.b, node.op
        if op == "add":
            if _is_const(b, 0.0):
                return a
            if _is_const(a, 0.0):
                return b
            if isinstance(b, Unary) and b.op == "neg":
                return Binary("sub", a, b.x)
        if op == "sub":
            if _is_const(b, 0.0):
                return a
            if isinstance(b, Unary) and b.op == "neg":
                return Binary("add", a, b.x)
        if op == "mul":
            if _is_const(b, 1.0):
                return a
            if _is_const(a, 1.0):
                return b
            if _is_const(b, -1.0):
                return Unary("neg", a)
        if op in ("min", "max") and a == b:
            return a
        return node
    return node


def simplify(expr: Expr) -> Expr:
    """Apply the rules bottom-up until nothing changes."""
    with np.errstate(all="ignore"):
        prev = None
        while prev != expr:
            prev, expr = expr, transform(expr, _fold)
    return expr
