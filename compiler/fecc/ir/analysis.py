"""Queries and rewrites over expression trees that every stage shares."""
from __future__ import annotations

from typing import Mapping

from .nodes import Const, Expr, Feature, Param, rebuild


def _names_of(expr: Expr, kind: type) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for node in expr.walk():
        if isinstance(node, kind):
            seen.setdefault(node.name)
    return tuple(seen)


def features_of(expr: Expr) -> tuple[str, ...]:
    """Feature names the expression reads, in first-use order."""
    return _names_of(expr, Feature)


def params_of(expr: Expr) -> tuple[str, ...]:
    """Parameter names the expression uses, in first-use order."""
    return _names_of(expr, Param)


def size(expr: Expr) -> int:
    """Number of nodes."""
    return sum(1 for _ in expr.walk())


def depth(expr: Expr) -> int:
    """Length of the longest root-to-leaf path (a leaf has depth 1)."""
    best = 0
    stack = [(expr, 1)]
    while stack:
        node, d = stack.pop()
        best = max(best, d)
        stack.extend((c, d + 1) for c in node.children)
    return best


def transform(expr: Expr, fn) -> Expr:
    """Bottom-up rewrite: ``fn`` sees each node after its children were rewritten."""
    new_children = tuple(transform(c, fn) for c in expr.children)
    node = rebuild(expr, new_children) if new_children != expr.children else expr
    return fn(node)


def bind(expr: Expr, values: Mapping[str, float], *, strict: bool = True) -> Expr:
    """Replace parameters by constants.  With ``strict``, every parameter must have a value."""

    def sub(node: Expr) -> Expr:
        if isinstance(node, Param):
            if node.name in values:
                return Const(float(values[node.name]))
            if strict:
                raise KeyError(f"no value for parameter @{node.name}")
        return node

    return transform(expr, sub)


def rename_params(expr: Expr, mapping: Mapping[str, str]) -> Expr:
    """Rename parameters (e.g. to give each expert its own namespace)."""
    return transform(expr, lambda n: Param(mapping.get(n.name, n.name)) if isinstance(n, Param) else n)
