"""Ranges for parameters an LLM answer used but gave no range, inferred from how they are used."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from ..ir import Binary, Expr, Feature, Param
from .base import ParamRange


@dataclass(frozen=True)
class RangeInference:
    """What is known to fill a range the answer forgot (see :func:`infer_range`).

    ``feature_ranges``: feature -> (min, max) of its values in the region;
    ``scale``: half-width of a correction weight's range (margin units).
    """

    feature_ranges: Mapping[str, tuple[float, float]]
    scale: float = 3.0


_LOCATION_OPS = frozenset({"lt", "le", "gt", "ge", "eq", "ne", "sub"})


def infer_range(expr: Expr, name: str, hints: RangeInference) -> tuple[ParamRange, str] | None:
    """A range for parameter ``name`` from how ``expr`` uses it, with the reason.

    A parameter compared with a feature, or subtracted from one (``x["f"] > p``,
    ``x["f"] - p``), is a location on that feature: its range is the feature's range in
    the region.  A parameter used in no such place is a weight or an offset of the
    correction: ``[-scale, scale]`` starting at 0.  A location on a feature whose range
    is unknown (or a single value) gets no range: ``None``, and the answer is refused.
    """
    located: set[str] = set()
    for node in expr.walk():
        if isinstance(node, Binary) and node.op in _LOCATION_OPS:
            pair = {type(node.a): node.a, type(node.b): node.b}
            p, f = pair.get(Param), pair.get(Feature)
            if p is not None and f is not None and p.name == name:
                located.add(f.name)
    if located:
        lows, highs = [], []
        for f in sorted(located):
            lo, hi = hints.feature_ranges.get(f, (math.nan, math.nan))
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                return None
            lows.append(lo)
            highs.append(hi)
        low, high = min(lows), max(highs)
        return (ParamRange(low, high, init=(low + high) / 2),
                f"parameter {name!r} had no range; a location on {', '.join(sorted(located))}: "
                f"its range in the region [{low:g}, {high:g}]")
    s = float(hints.scale)
    return ParamRange(-s, s, init=0.0), f"parameter {name!r} had no range; a weight: [{-s:g}, {s:g}] from 0"
