"""Parse an LLM answer — ``def f(x, params): ...`` plus a JSON search space — into the IR.

Nothing the LLM writes is executed.  The answer is cut into its parts
(:mod:`fecc.llm.answer_text`), the function is read with :mod:`ast` against a whitelist
and translated node by node into :mod:`fecc.ir` (:mod:`fecc.llm.python_subset`, which
documents the accepted subset), the JSON search space is read
(:mod:`fecc.llm.space_json`), forgotten ranges are inferred (:mod:`fecc.llm.ranges`) and
the expression is validated.  Every refusal is an :class:`AnswerError` that names the
line and column, written so that it can be fed back to the LLM.  The inverse, IR →
the answer's Python, is :mod:`fecc.llm.python_print`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Mapping

from ..ir import Expr, Limits, params_of, validate
from ..ir.validate import IRValidationError
from .answer_text import AnswerError, split_answer
from .base import ParamRange
from .python_subset import intent_of, parse_function, parse_function_notes
from .ranges import RangeInference, infer_range
from .space_json import parse_space

__all__ = ["AnswerError", "ParsedAnswer", "RangeInference", "infer_range", "parse_answer", "parse_function",
           "parse_space", "split_answer"]


@dataclass(frozen=True)
class ParsedAnswer:
    """A parsed answer: the expression, its search space and what the LLM said it does."""

    expr: Expr
    space: dict[str, ParamRange]
    intent: str = ""
    code: str = ""
    space_text: str = ""
    notes: tuple[str, ...] = field(default=())  # harmless things we dropped (unused ranges)


def parse_answer(
    text: str,
    *,
    features: Collection[str] | None = None,
    frozen: Mapping[str, float] | Collection[str] = (),
    limits: Limits | None = Limits(),
    default_range: ParamRange | None = None,
    infer: RangeInference | None = None,
) -> ParsedAnswer:
    """Parse a whole answer (function + JSON space) and check it is usable.

    Parameters
    ----------
    text : the LLM's answer.
    features : feature names the function may read (``None``: any).
    frozen : names of parameters that already have a value (the current expert's);
        they may be used without a range.
    limits : size caps passed to :func:`fecc.ir.validate`.
    default_range : when given, a parameter used without a range gets this one (listed
        in ``notes``) instead of rejecting the answer — small models often forget one.
    infer : when given, a parameter used without a range first gets one inferred from
        its use (:func:`infer_range`; listed in ``notes``); ``default_range`` covers the rest.

    Returns
    -------
    ParsedAnswer
        Ranges for parameters the expression does not use are dropped (listed in ``notes``).

    Raises
    ------
    AnswerError
        With a reason suitable as feedback to the LLM.
    """
    code, code_line, space_text, space_line = split_answer(text)
    expr, repairs = parse_function_notes(code, features=features, line_offset=code_line)
    space, space_text = parse_space(space_text, line_offset=space_line)
    used = params_of(expr)
    frozen_names = set(frozen)
    missing = [p for p in used if p not in space and p not in frozen_names]
    filled: tuple[str, ...] = ()
    if missing and infer is not None:
        still = []
        for p in missing:
            got = infer_range(expr, p, infer)
            if got is None:
                still.append(p)
            else:
                space = {**space, p: got[0]}
                filled += (got[1],)
        missing = still
    if missing and default_range is not None:
        space = {**space, **{p: default_range for p in missing}}
        filled += tuple(f"parameter {p!r} had no range; given the default "
                       f"[{default_range.low:g}, {default_range.high:g}]" for p in missing)
        missing = []
    if missing:
        frozen_hint = (f"; the frozen parameters you may reuse without a range are "
                       f"{', '.join(sorted(frozen_names))}" if frozen_names else "")
        raise AnswerError("parameter(s) used but without a range in the JSON search space: "
                          + ", ".join(repr(p) for p in missing) + frozen_hint)
    notes = tuple(repairs) + filled + tuple(f"range for unused parameter {p!r} dropped" for p in space
                                            if p not in used)
    space = {p: r for p, r in space.items() if p in used}
    try:
        validate(expr, features=features, params=set(space) | frozen_names, limits=limits)
    except IRValidationError as exc:
        raise AnswerError("the function is not acceptable: " + "; ".join(exc.problems)) from None
    return ParsedAnswer(expr=expr, space=space, intent=intent_of(code), code=code, space_text=space_text, notes=notes)
