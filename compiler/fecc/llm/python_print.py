"""IR → the Python subset the LLM answers in (the inverse of :mod:`fecc.llm.answer`).

Used to show the current expert to the LLM in the form it must answer in:
``x["name"]``, ``params["p"]``, the IR's function names, ``a if c else b``.  The
spelling of each operator is the grammar's (:func:`fecc.llm.grammar_gbnf.spell`), so
what the prompt shows, what the grammar allows and what the parser reads agree; the
walk and the parentheses are the IR's one printer (:class:`fecc.ir.printing.Printer`)
with the op table's precedences (:attr:`fecc.ir.Op.prec`).
"""
from __future__ import annotations

from functools import lru_cache

from ..ir import OPS, Expr
from ..ir.printing import Printer, Spelling, call, infix, prefix
from .grammar_gbnf import python_string, spell


def _spelling(name: str) -> Spelling:
    op = OPS[name]
    s = spell(op)
    if s.kind in ("function", "bool_function"):
        return call(s.text, op.arity)
    if s.kind == "where":
        # the conditional expression binds loosest: every operand that is itself one is wrapped
        return Spelling("{1} if {0} else {2}", op.prec, (op.prec + 1,) * 3)
    if s.kind == "neg":
        return prefix("-", op.prec)
    if s.kind == "not":
        return prefix("not ", op.prec)
    # binary infix: + - * / comparisons and/or.  A right operand of equal precedence keeps
    # its parentheses even for + and *: float addition is not associative, and the round
    # trip through the parser must give the same tree; comparisons never chain
    return infix(s.text, op.prec, left=op.prec + 1 if s.kind == "compare" else None)


@lru_cache(maxsize=1)
def _spellings() -> dict[str, Spelling]:
    # built on first use: an operator the grammar cannot spell fails where it is printed
    return {name: _spelling(name) for name in OPS}


class PythonPrinter(Printer):
    """The answer's Python subset: ``x["age"] * params["a"] + log(x["income"])``."""

    negative_prec = OPS["neg"].prec
    language = "the prompt's Python printer"

    def __init__(self) -> None:
        super().__init__()
        self.spellings = _spellings()

    def feature(self, name: str) -> str:
        return f"x[{python_string(name)}]"

    def param(self, name: str) -> str:
        return f"params[{python_string(name)}]"


def to_python(expr: Expr) -> str:
    """The expression as one line of the accepted Python subset (the inverse of the parser).

    ``parse_function(f"def f(x, params):\\n    return {to_python(e)}")`` gives back ``e``
    (up to a negated constant, which reads back as a negative constant).
    """
    return PythonPrinter().code(expr)


def function_source(expr: Expr, *, intent: str = "") -> str:
    """``expr`` as a complete answer-style function ``def f(x, params): ... return ...``."""
    lines = ["def f(x, params):"]
    if intent:
        lines.append(f"    # intent: {intent}")
    lines.append(f"    return {to_python(expr)}")
    return "\n".join(lines)
