"""One precedence-aware printer for expressions; each language is a spelling table.

Every text form of the IR goes through :class:`Printer`: the math form of docstrings,
reports and prompts (:func:`to_math`, here), the Python subset the LLM answers in
(:func:`fecc.llm.python_print.to_python`), the numba module
(:class:`fecc.lower.numba_backend.NumbaBackend`) and the C file
(:class:`fecc.lower.c_backend.CBackend`).  A language declares, per operator, a
:class:`Spelling` — a format template, the precedence of the printed form and the
least precedence each operand may have without parentheses — plus how it writes
features, constants and parameters.  The walk, the parenthesisation and the error for
an unknown node or operator live here, once.

Precedence numbers are the language's own (higher binds tighter); :data:`ATOM` is the
precedence of names, literals and calls, which never need parentheses.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from .nodes import Expr
from .ops import OPS
from .postfix import format_number

#: Precedence of a name, a non-negative literal or a function call.
ATOM = 100
#: Operand bound of a call argument: it never needs parentheses.
ANY = -(10 ** 6)


@dataclass(frozen=True)
class Spelling:
    """How one operator is written in one language.

    Attributes
    ----------
    template : ``str.format`` text with ``{0}``, ``{1}``, ``{2}`` for the operands in IR
        order (e.g. ``"{0} + {1}"``, ``"fabs({0})"``, ``"{1} if {0} else {2}"``).
    prec : precedence of the printed form.
    operands : per operand, the least precedence it may have unparenthesised.
    minus : per operand, whether it is parenthesised when its text starts with ``-``
        (C writes ``a - (-b)`` for the reader); empty means never.
    uses : helper functions the printed form calls (collected in :attr:`Printer.helpers`).
    """

    template: str
    prec: int
    operands: tuple[int, ...]
    minus: tuple[bool, ...] = ()
    uses: tuple[str, ...] = ()


def call(function: str, arity: int, *, uses: Sequence[str] = ()) -> Spelling:
    """``function(a, b)``: a call, whose arguments never need parentheses."""
    args = ", ".join(f"{{{i}}}" for i in range(arity))
    return Spelling(f"{function}({args})", ATOM, (ANY,) * arity, uses=tuple(uses))


def prefix(symbol: str, prec: int) -> Spelling:
    """``-x``, ``not c``: an operand of equal precedence is parenthesised too (``-(-x)``)."""
    return Spelling(symbol + "{0}", prec, (prec + 1,))


def infix(symbol: str, prec: int, *, left: int | None = None, right: int | None = None,
          minus: tuple[bool, bool] = ()) -> Spelling:
    """``a op b``.  By default the left operand may have equal precedence (left-to-right
    order is the IR's) and the right one may not: ``a + (b + c)`` is not ``(a + b) + c``
    in floats.  Non-chaining operators (comparisons) pass ``left=prec + 1``."""
    return Spelling(f"{{0}} {symbol} {{1}}", prec,
                    (prec if left is None else left, prec + 1 if right is None else right), minus)


class Printer:
    """IR → source text of one language, with the fewest parentheses its table allows.

    A visitor (STYLE.md): ``lower_<node>`` per IR node class, found by name; an unknown
    node or an operator without a spelling raises :attr:`error` naming it.  Subclasses
    set :attr:`spellings`, :attr:`negative_prec`, :attr:`language` and write leaves with
    :meth:`feature`, :meth:`literal` and :meth:`param`.

    Attributes
    ----------
    helpers : the helper functions the printed code calls (:attr:`Spelling.uses`).
    """

    #: Operator name → spelling.
    spellings: Mapping[str, Spelling] = {}
    #: Precedence of a literal whose text starts with ``-`` (it reads as a prefix minus).
    negative_prec: int = ATOM
    #: Names the language in error messages ("the numba backend").
    language: str = "the printer"
    #: Exception raised for what cannot be printed.
    error: type[Exception] = ValueError

    def __init__(self) -> None:
        self.helpers: set[str] = set()

    # leaves: what a language spells its own way
    def feature(self, name: str) -> str:
        raise self.error(f"{self.language} cannot print feature {name!r}")

    def literal(self, value: float) -> str:
        return format_number(value)

    def param(self, name: str) -> str:
        raise self.error(f"parameter @{name} is unbound: bind parameters before lowering")

    # the walk
    def lower(self, node: Expr) -> tuple[str, int]:
        """(text, precedence) of ``node``."""
        method = getattr(self, "lower_" + _snake(type(node).__name__), None)
        if method is None:
            raise self.error(f"{self.language} cannot lower IR node {type(node).__name__}")
        return method(node)

    def code(self, node: Expr) -> str:
        """The text of ``node``."""
        return self.lower(node)[0]

    def lower_feature(self, node) -> tuple[str, int]:
        return self.feature(node.name), ATOM

    def lower_const(self, node) -> tuple[str, int]:
        text = self.literal(node.value)
        return text, (self.negative_prec if text.startswith("-") else ATOM)

    def lower_param(self, node) -> tuple[str, int]:
        return self.param(node.name), ATOM

    def lower_unary(self, node) -> tuple[str, int]:
        return self.apply(node.op, node.children)

    def lower_binary(self, node) -> tuple[str, int]:
        return self.apply(node.op, node.children)

    def lower_where(self, node) -> tuple[str, int]:
        return self.apply("where", node.children)

    def apply(self, op: str, children: Sequence[Expr]) -> tuple[str, int]:
        """``op`` over ``children``, each parenthesised where its precedence is too low."""
        spelling = self.spellings.get(op)
        if spelling is None:
            raise self.error(f"{self.language} has no spelling for operator {op!r}")
        self.helpers.update(spelling.uses)
        texts = []
        for i, child in enumerate(children):
            text, prec = self.lower(child)
            if prec < spelling.operands[i] or (spelling.minus and spelling.minus[i] and text.startswith("-")):
                text = f"({text})"
            texts.append(text)
        return spelling.template.format(*texts), spelling.prec


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# --------------------------------------------------------------------------- math

#: Operators whose operands may be regrouped in the math form (for reading, not for floats).
_MATH_ASSOCIATIVE = frozenset({"add", "mul", "and", "or"})
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _math_spelling(name: str) -> Spelling:
    """The op table's own printed form (``Op.math``, ``Op.prec``).  Function forms never
    need inner parentheses; infix forms do when an operand binds looser, or equally on
    the right of an operator that is not associative."""
    op = OPS[name]
    if op.prec >= ATOM:
        return Spelling(op.math, op.prec, (ANY,) * op.arity)
    bounds = tuple(op.prec if i == 0 or name in _MATH_ASSOCIATIVE else op.prec + 1 for i in range(op.arity))
    return Spelling(op.math, op.prec, bounds)


class LocalsPrinter(Printer):
    """A printer for generated functions that first copy ``x[j]`` into named locals.

    Parameters
    ----------
    locals_ : feature name → local variable name holding ``x[j]``; any other feature
        raises :attr:`error`.
    """

    def __init__(self, locals_: Mapping[str, str]):
        super().__init__()
        self.locals = locals_

    def feature(self, name: str) -> str:
        try:
            return self.locals[name]
        except KeyError:
            raise self.error(f"feature {name!r} is not a model feature") from None


def unique_identifiers(names: Sequence[str], make: Callable[[str], str]) -> dict[str, str]:
    """``name → make(name)``, made unique by ``_2``, ``_3``… suffixes in list order (stable
    for a given list).  ``make`` is a language's rule for a valid local name."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = ident = make(name)
        k = 2
        while ident in used:
            ident, k = f"{base}_{k}", k + 1
        used.add(ident)
        out[name] = ident
    return out


class MathPrinter(Printer):
    """The math form: ``0.5 * log(1 + |age|) - b``."""

    spellings = {name: _math_spelling(name) for name in OPS}
    negative_prec = OPS["neg"].prec
    language = "the math printer"

    def __init__(self, digits: int | None = None):
        super().__init__()
        self.digits = digits

    def feature(self, name: str) -> str:
        return name if _IDENT.match(name) else f"x[{name!r}]"

    def literal(self, value: float) -> str:
        return format(value, f".{self.digits}g") if self.digits is not None else format_number(value)

    def param(self, name: str) -> str:
        return name


def to_math(expr: Expr, *, digits: int | None = None) -> str:
    """Infix text with the fewest parentheses, e.g. ``0.5 * log(1 + |age|) - b``.

    ``digits`` rounds constants to that many significant digits (for prose only;
    the postfix form stays exact).
    """
    return MathPrinter(digits).code(expr)
