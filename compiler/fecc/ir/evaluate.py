"""The numpy reference evaluator: the one definition every backend is tested against."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .nodes import Const, Expr, Feature, Param
from .ops import OPS


def _column(data, name: str, n: int | None) -> np.ndarray:
    try:
        col = data[name]
    except (KeyError, IndexError):
        raise KeyError(f"expression reads feature {name!r}, which the data does not have") from None
    return np.asarray(col, dtype=np.float64)


def _length(data) -> int | None:
    if hasattr(data, "shape") and getattr(data, "ndim", 1) == 2:
        return int(data.shape[0])
    for value in (data.values() if hasattr(data, "values") and callable(data.values) else []):
        return int(np.asarray(value).shape[0]) if np.ndim(value) else None
    return None


def evaluate(expr: Expr, data: Mapping[str, np.ndarray], params: Mapping[str, float] | None = None) -> np.ndarray:
    """Evaluate ``expr`` on columns ``data[name]`` (a dict of arrays or a DataFrame).

    Numbers are float64; the result is a float64 array for a numeric expression and a
    bool array for a predicate, always of the data's length (constants broadcast).
    Floating-point warnings are silenced: ``inf`` and ``NaN`` are values here, and the
    operator table defines what each operator does with them.
    """
    params = params or {}
    n = _length(data)

    def ev(node: Expr):
        if isinstance(node, Feature):
            return _column(data, node.name, n)
        if isinstance(node, Const):
            return np.float64(node.value)
        if isinstance(node, Param):
            try:
                return np.float64(params[node.name])
            except KeyError:
                raise KeyError(f"no value for parameter @{node.name}") from None
        return OPS[node.op].numpy(*(ev(c) for c in node.children))

    with np.errstate(all="ignore"):
        out = ev(expr)
    dtype = np.bool_ if expr.type == "bool" else np.float64
    out = np.asarray(out, dtype=dtype)
    if out.ndim == 0 and n is not None:
        out = np.full(n, out, dtype=dtype)
    return out
