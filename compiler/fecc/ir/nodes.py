"""Expression IR nodes.

Every transformation and expert fecc emits is a tree of these frozen dataclasses.
Nodes check their own typing when built (an ill-typed tree cannot exist), compare and
hash structurally, and print as canonical postfix (``str(node)``), so two equal
expressions always print the same and a printed expression parses back to an equal one.

Constants compare by their float64 bit pattern: ``Const(nan) == Const(nan)`` and
``Const(0.0) != Const(-0.0)``, which is what structural identity needs.
"""
from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from typing import Iterator

from .ops import NUM, OPS, get_op


class IRTypeError(ValueError):
    """An expression that is not well typed (e.g. ``add`` of a comparison)."""


_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Expr:
    """Base of all IR nodes."""

    __slots__ = ()

    @property
    def type(self) -> str:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    @property
    def children(self) -> tuple["Expr", ...]:
        return ()

    def __str__(self) -> str:
        from .postfix import to_postfix

        return to_postfix(self)

    def walk(self) -> Iterator["Expr"]:
        """Every node of the tree, parents before children (pre-order)."""
        stack: list[Expr] = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


@dataclass(frozen=True, eq=True)
class Feature(Expr):
    """A column of the input table, by name."""

    name: str

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise IRTypeError(f"feature name must be a non-empty string, got {self.name!r}")

    @property
    def type(self) -> str:
        return NUM


@dataclass(frozen=True, eq=False)
class Const(Expr):
    """A float64 literal."""

    value: float

    def __post_init__(self):
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise IRTypeError(f"constant must be a number, got {self.value!r}")
        object.__setattr__(self, "value", float(self.value))

    @property
    def type(self) -> str:
        return NUM

    def _bits(self) -> bytes:
        if math.isnan(self.value):
            return b"nan"  # all NaNs are the same constant
        return struct.pack("<d", self.value)

    def __eq__(self, other):
        return isinstance(other, Const) and self._bits() == other._bits()

    def __hash__(self):
        return hash(("Const", self._bits()))

    def __repr__(self):
        return f"Const({self.value!r})"


@dataclass(frozen=True, eq=True)
class Param(Expr):
    """A named free parameter, bound to a number before evaluation (tuned by Optuna)."""

    name: str

    def __post_init__(self):
        if not isinstance(self.name, str) or not _PARAM_NAME.match(self.name):
            raise IRTypeError(f"parameter name must be an identifier, got {self.name!r}")

    @property
    def type(self) -> str:
        return NUM


def _check_args(op_name: str, args: tuple[Expr, ...]) -> None:
    op = get_op(op_name) if op_name in OPS else None
    if op is None:
        raise IRTypeError(f"unknown operator {op_name!r}")
    if len(args) != op.arity:
        raise IRTypeError(f"{op_name} takes {op.arity} operand(s), got {len(args)}")
    for i, (want, arg) in enumerate(zip(op.args, args)):
        if not isinstance(arg, Expr):
            raise IRTypeError(f"{op_name} operand {i} is not an expression: {arg!r}")
        if arg.type != want:
            raise IRTypeError(f"{op_name} operand {i} must be {want}, got {arg.type} ({arg})")


@dataclass(frozen=True, eq=True)
class Unary(Expr):
    """``op(x)`` for a one-operand operator of :data:`fecc.ir.ops.OPS`."""

    op: str
    x: Expr

    def __post_init__(self):
        _check_args(self.op, (self.x,))

    @property
    def type(self) -> str:
        return OPS[self.op].result

    @property
    def children(self):
        return (self.x,)


@dataclass(frozen=True, eq=True)
class Binary(Expr):
    """``op(a, b)``: arithmetic, comparison or logic, per :data:`fecc.ir.ops.OPS`."""

    op: str
    a: Expr
    b: Expr

    def __post_init__(self):
        _check_args(self.op, (self.a, self.b))

    @property
    def type(self) -> str:
        return OPS[self.op].result

    @property
    def children(self):
        return (self.a, self.b)


@dataclass(frozen=True, eq=True)
class Where(Expr):
    """``then if cond else otherwise``, elementwise."""

    cond: Expr
    then: Expr
    otherwise: Expr

    op = "where"

    def __post_init__(self):
        _check_args("where", (self.cond, self.then, self.otherwise))

    @property
    def type(self) -> str:
        return NUM

    @property
    def children(self):
        return (self.cond, self.then, self.otherwise)


def make(op_name: str, *args: Expr) -> Expr:
    """Build the node for ``op_name`` applied to ``args`` (the one place that maps arity to class)."""
    arity = get_op(op_name).arity
    if len(args) != arity:
        raise IRTypeError(f"{op_name} takes {arity} operand(s), got {len(args)}")
    if op_name == "where":
        return Where(*args)
    return Unary(op_name, *args) if arity == 1 else Binary(op_name, *args)


def rebuild(node: Expr, children: tuple[Expr, ...]) -> Expr:
    """``node`` with its children replaced (leaves are returned unchanged)."""
    if not children:
        return node
    return make(node.op, *children)


# Convenience constructors used by the search and by tests.
def feature(name: str) -> Feature:
    return Feature(name)


def const(value: float) -> Const:
    return Const(value)


def param(name: str) -> Param:
    return Param(name)
