"""Options given by name: the one way a stage's options dataclass reads a mapping.

Every stage has one frozen options dataclass whose fields are documented and whose
``__post_init__`` checks the values (STYLE.md).  The CLI (``--set NAME=VALUE``), JSON
files and the API hand options over as a mapping; :func:`options_from_mapping` rejects
unknown names, converts text to each field's type (the type of its default) and then
builds the dataclass, which validates the values.  It imports nothing of fecc, so any
stage may use it.
"""
from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any, Mapping, TypeVar

T = TypeVar("T")

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def options_from_mapping(cls: type[T], values: Mapping[str, Any] | None, *, kind: str) -> T:
    """``cls(**values)`` with every value converted to its field's type.

    Parameters
    ----------
    cls : a dataclass whose fields all have defaults.
    values : option name → value (text from a command line, or a JSON value).
    kind : what the options are called in messages, e.g. ``"search option"``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones), a value that does not
        convert to its field's type, or one the dataclass refuses.
    """
    values = dict(values or {})
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {kind}(s): {', '.join(unknown)} (known: {', '.join(known)})")
    defaults = {f.name: (f.default if f.default is not MISSING else f.default_factory())  # type: ignore[misc]
                for f in fields(cls) if f.default is not MISSING or f.default_factory is not MISSING}
    return cls(**{name: _convert(value, defaults.get(name), f"{kind} {name}") for name, value in values.items()})


def _convert(value: Any, default: Any, what: str) -> Any:
    """``value`` as the type of ``default`` (a field without a default keeps the value)."""
    if isinstance(default, bool):  # before int: bool is an int
        if isinstance(value, str):
            if value.lower() not in _TRUE + _FALSE:
                raise ValueError(f"{what} must be a boolean, got {value!r}")
            return value.lower() in _TRUE
        return bool(value)
    try:
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if isinstance(default, tuple):
        if isinstance(value, str):  # "a, b" → ("a", "b")
            return tuple(v for v in (s.strip() for s in value.split(",")) if v)
        return tuple(value)
    return value
