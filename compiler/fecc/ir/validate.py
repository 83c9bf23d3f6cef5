"""Checks that an expression may be used: known features, declared parameters, size limits."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

from .analysis import depth, features_of, params_of, size
from .nodes import Expr


class IRValidationError(ValueError):
    """An expression that is well typed but not acceptable here; ``problems`` lists each reason."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Limits:
    """Size caps for expressions the search may propose (keeps experts readable and fast)."""

    max_depth: int = 12
    max_size: int = 64
    max_params: int = 12


def validate(
    expr: Expr,
    *,
    features: Collection[str] | None = None,
    params: Collection[str] | None = None,
    expect: str | None = "num",
    limits: Limits | None = Limits(),
) -> Expr:
    """Return ``expr`` unchanged if it is acceptable, else raise :class:`IRValidationError`.

    Parameters
    ----------
    features : names the expression may read (``None``: any).
    params : parameter names that have a value or a search range (``None``: any).
    expect : required result type, ``"num"`` or ``"bool"`` (``None``: either).
    limits : size caps, or ``None`` for none.
    """
    problems: list[str] = []
    if not isinstance(expr, Expr):
        raise IRValidationError([f"not an expression: {expr!r}"])
    if expect is not None and expr.type != expect:
        problems.append(f"result must be {expect}, got {expr.type}")
    if features is not None:
        allowed = set(features)
        unknown = [f for f in features_of(expr) if f not in allowed]
        if unknown:
            problems.append("unknown feature(s): " + ", ".join(repr(f) for f in unknown))
    if params is not None:
        declared = set(params)
        missing = [p for p in params_of(expr) if p not in declared]
        if missing:
            problems.append("parameter(s) without a value or range: " + ", ".join("@" + p for p in missing))
    if limits is not None:
        d, s, p = depth(expr), size(expr), len(params_of(expr))
        if d > limits.max_depth:
            problems.append(f"depth {d} exceeds {limits.max_depth}")
        if s > limits.max_size:
            problems.append(f"{s} nodes exceed {limits.max_size}")
        if p > limits.max_params:
            problems.append(f"{p} parameters exceed {limits.max_params}")
    if problems:
        raise IRValidationError(problems)
    return expr
