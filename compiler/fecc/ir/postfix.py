"""Canonical postfix text for IR expressions (seed 000's token sequences).

Tokens are separated by single spaces:

* ``$name`` — a feature; characters other than ``A-Z a-z 0-9 _ .`` are written as
  ``%XX`` (UTF-8 bytes), so any column name survives a round trip;
* ``@name`` — a parameter (an identifier);
* a number — a float64 constant, written with Python's shortest round-trip ``repr``
  (``0.1``, ``-2.5e-09``, ``nan``, ``inf``, ``-inf``);
* an operator name from :data:`fecc.ir.ops.OPS` (``add``, ``div``, ``where``, ...).

``parse_postfix(to_postfix(e)) == e`` for every expression ``e``.
"""
from __future__ import annotations

import math
import re
from urllib.parse import quote, unquote

from .nodes import Const, Expr, Feature, IRTypeError, Param, make
from .ops import OPS


class IRSyntaxError(ValueError):
    """Postfix text that does not parse; ``token`` and ``column`` locate the problem."""

    def __init__(self, message: str, *, token: int, column: int, text: str):
        self.token = token
        self.column = column
        self.text = text
        super().__init__(f"{message} (token {token}, column {column})")


_SAFE = "_."
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|nan)$")


def format_number(value: float) -> str:
    """Shortest text that reads back as the same float64."""
    if math.isnan(value):
        return "nan"
    return repr(float(value))


def _feature_token(name: str) -> str:
    return "$" + quote(name, safe=_SAFE)


def to_postfix(expr: Expr) -> str:
    """The canonical postfix text of ``expr``."""
    out: list[str] = []
    # iterative post-order so that very deep trees do not hit the recursion limit
    stack: list[tuple[Expr, bool]] = [(expr, False)]
    while stack:
        node, expanded = stack.pop()
        if isinstance(node, Feature):
            out.append(_feature_token(node.name))
        elif isinstance(node, Param):
            out.append("@" + node.name)
        elif isinstance(node, Const):
            out.append(format_number(node.value))
        elif expanded:
            out.append(node.op)
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in reversed(node.children))
    return " ".join(out)


def _tokens(text: str):
    """Yield (index, column, token) for each whitespace-separated token."""
    for i, m in enumerate(re.finditer(r"\S+", text)):
        yield i, m.start(), m.group()


def parse_postfix(text: str) -> Expr:
    """Parse postfix text into an expression.

    Raises
    ------
    IRSyntaxError
        With the token index and column of the first problem: an unknown token, an
        operator without enough operands, an ill-typed operand, or leftover operands.
    """
    if not isinstance(text, str):
        raise IRSyntaxError(f"postfix must be text, got {type(text).__name__}", token=0, column=0, text=str(text))
    stack: list[tuple[Expr, int, int]] = []
    for index, column, tok in _tokens(text):

        def fail(msg: str):
            raise IRSyntaxError(f"{msg} at {tok!r}", token=index, column=column, text=text)

        if tok.startswith("$"):
            try:
                name = unquote(tok[1:], errors="strict") if len(tok) > 1 else ""
            except UnicodeDecodeError:
                fail("feature name is not percent-encoded UTF-8")
            if not name:
                fail("empty feature name")
            stack.append((Feature(name), index, column))
        elif tok.startswith("@"):
            try:
                stack.append((Param(tok[1:]), index, column))
            except IRTypeError as e:
                fail(str(e))
        elif _NUMBER.match(tok):
            stack.append((Const(float(tok)), index, column))
        elif tok in OPS:
            arity = OPS[tok].arity
            if len(stack) < arity:
                fail(f"{tok} needs {arity} operand(s) but only {len(stack)} precede it")
            args = [s[0] for s in stack[-arity:]]
            del stack[-arity:]
            try:
                stack.append((make(tok, *args), index, column))
            except IRTypeError as e:
                fail(str(e))
        else:
            fail("unknown token")
    if not stack:
        raise IRSyntaxError("empty expression", token=0, column=0, text=text)
    if len(stack) > 1:
        _, index, column = stack[-2]
        raise IRSyntaxError(
            f"{len(stack)} values left on the stack; the expression must reduce to one",
            token=index, column=column, text=text,
        )
    return stack[0][0]
