"""Human-readable math form of expressions, for docstrings, reports and prompts."""
from __future__ import annotations

import re

from .nodes import Const, Expr, Feature, Param
from .ops import OPS
from .postfix import format_number

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _feature(name: str) -> str:
    return name if _IDENT.match(name) else f"x[{name!r}]"


def to_math(expr: Expr, *, digits: int | None = None) -> str:
    """Infix text with the fewest parentheses, e.g. ``0.5 * log(1 + |age|) - b``.

    ``digits`` rounds constants to that many significant digits (for prose only;
    the postfix form stays exact).
    """

    def num(v: float) -> str:
        return format(v, f".{digits}g") if digits is not None else format_number(v)

    def go(node: Expr) -> tuple[str, int]:
        if isinstance(node, Feature):
            return _feature(node.name), 100
        if isinstance(node, Param):
            return node.name, 100
        if isinstance(node, Const):
            text = num(node.value)
            return text, (6 if text.startswith("-") else 100)
        op = OPS[node.op]
        parts = []
        for i, child in enumerate(node.children):
            text, prec = go(child)
            # function-call forms never need inner parentheses; infix forms do when the
            # operand binds looser, or equally on the right of a non-associative operator
            infix = op.prec < 100
            tighter = prec > op.prec or (prec == op.prec and (i == 0 or node.op in ("add", "mul", "and", "or")))
            if infix and not tighter:
                text = f"({text})"
            parts.append(text)
        return op.math.format(*parts), op.prec

    return go(expr)[0]
