"""The JSON search space of an LLM answer: a range per tunable parameter."""
from __future__ import annotations

import json
import math
import re

from .answer_text import AnswerError
from .base import ParamRange

_KNOWN_KEYS = {"low", "high", "log", "init"}


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnswerError(f"{what} must be a number, got {json.dumps(value)}")
    if not math.isfinite(value):
        raise AnswerError(f"{what} must be finite, got {value}")
    return float(value)


def parse_space(text: str, *, line_offset: int = 0) -> tuple[dict[str, ParamRange], str]:
    """Parse the JSON search space; returns the ranges and the JSON text that was read.

    Accepted per parameter: ``{"low": a, "high": b}`` with optional ``"log": bool`` and
    ``"init": v`` (a warm start inside the range), or the short form ``[a, b]``.  The
    object may be wrapped as ``{"params": {...}}`` or ``{"space": {...}}``.
    """

    def no_duplicates(pairs):
        seen = {}
        for key, value in pairs:
            if key in seen:
                raise AnswerError(f"parameter {key!r} appears twice in the JSON search space")
            seen[key] = value
        return seen

    stripped = text.lstrip()
    skipped = text[: len(text) - len(stripped)].count("\n")
    try:
        obj, end = json.JSONDecoder(object_pairs_hook=no_duplicates).raw_decode(stripped)
    except json.JSONDecodeError as exc:
        raise AnswerError(f"the search space is not valid JSON: {exc.msg}",
                          line=line_offset + skipped + exc.lineno, col=exc.colno) from None
    trailing = stripped[end:].strip().strip("`").strip()
    if trailing:
        raise AnswerError(f"unexpected text after the JSON search space: {trailing[:40]!r}")
    if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in ("params", "space", "search_space"):
        obj = next(iter(obj.values()))
    if not isinstance(obj, dict):
        raise AnswerError("the search space must be a JSON object {\"name\": {\"low\": ..., \"high\": ...}}")
    space: dict[str, ParamRange] = {}
    for name, spec in obj.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise AnswerError(f"parameter name {name!r} is not an identifier")
        if isinstance(spec, list):
            if len(spec) != 2:
                raise AnswerError(f"range of {name!r} must be [low, high], got {len(spec)} numbers")
            spec = {"low": spec[0], "high": spec[1]}
        if not isinstance(spec, dict):
            raise AnswerError(f"range of {name!r} must be an object {{\"low\": ..., \"high\": ...}}")
        unknown = set(spec) - _KNOWN_KEYS
        if unknown:
            raise AnswerError(f"range of {name!r} has unknown key(s) {sorted(unknown)}; use low, high, log, init")
        if "low" not in spec or "high" not in spec:
            raise AnswerError(f"range of {name!r} needs both \"low\" and \"high\"")
        low = _number(spec["low"], f"{name}.low")
        high = _number(spec["high"], f"{name}.high")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise AnswerError(f"{name}.log must be true or false")
        init = _number(spec["init"], f"{name}.init") if spec.get("init") is not None else None
        if not low < high:
            raise AnswerError(f"range of {name!r} is empty: low {low} must be below high {high}")
        if log and low <= 0:
            raise AnswerError(f"range of {name!r} is log-scaled, so low must be > 0 (got {low})")
        if init is not None and not low <= init <= high:
            raise AnswerError(f"{name}.init {init} is outside [{low}, {high}]")
        space[name] = ParamRange(low, high, log, init)
    return space, stripped[:end]
