"""A small Universal Binary JSON reader, enough for XGBoost's ``.ubj`` models (no xgboost needed).

XGBoost 2.1+ saves the same document as its JSON models in UBJSON: big-endian numbers,
strings with a length prefix, and optimised containers (``$type#count``) for the big
numeric arrays, which are decoded with one ``struct.unpack`` call each.  Nesting is
capped (:data:`MAX_NESTING`) so that hostile input cannot exhaust the stack.
"""
from __future__ import annotations

import struct
from typing import Any

__all__ = ["UBJSONError", "UBJSONReader", "MAX_NESTING"]

#: Deepest nesting a model document may have (XGBoost writes under 10 levels).
MAX_NESTING = 100


class UBJSONError(ValueError):
    """The bytes are not the UBJSON document they claim to be (truncated, an unknown marker ...)."""


class UBJSONReader:
    """Decode Universal Binary JSON as XGBoost writes it (big-endian, typed arrays).

    Only what a model needs is kept cheap: typed numeric arrays become lists via
    one ``struct.unpack`` call instead of a per-element loop.
    """

    _NUMBERS = {b"i": ">b", b"U": ">B", b"I": ">h", b"l": ">i", b"L": ">q", b"d": ">f", b"D": ">d"}

    def __init__(self, data: bytes, max_nesting: int = MAX_NESTING):
        self.data = data
        self.max_nesting = max_nesting
        self.pos = 0
        self.depth = 0

    def read_document(self) -> Any:
        value = self._value(self._marker())
        return value

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise UBJSONError("unexpected end of data")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def _marker(self) -> bytes:
        marker = self._take(1)
        while marker == b"N":  # no-op padding
            marker = self._take(1)
        return marker

    def _count(self, marker: bytes | None = None) -> int:
        marker = marker or self._take(1)
        if marker not in self._NUMBERS or marker in (b"d", b"D"):
            raise UBJSONError(f"bad length marker {marker!r}")
        fmt = self._NUMBERS[marker]
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def _string(self) -> str:
        return self._take(self._count()).decode("utf-8")

    def _value(self, marker: bytes) -> Any:
        if marker in self._NUMBERS:
            fmt = self._NUMBERS[marker]
            return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]
        if marker == b"S":
            return self._string()
        if marker == b"C":
            return self._take(1).decode("ascii")
        if marker == b"T":
            return True
        if marker == b"F":
            return False
        if marker == b"Z":
            return None
        if marker in (b"[", b"{"):
            self.depth += 1
            if self.depth > self.max_nesting:
                raise UBJSONError(f"containers nested more than {self.max_nesting} levels deep")
            value = self._array() if marker == b"[" else self._object()
            self.depth -= 1
            return value
        raise UBJSONError(f"unknown marker {marker!r} at byte {self.pos - 1}")

    def _container_header(self) -> tuple[bytes | None, int | None]:
        """Read the optional ``$type`` and ``#count`` of an optimised container."""
        kind = count = None
        if self.data[self.pos:self.pos + 1] == b"$":
            self.pos += 1
            kind = self._take(1)
        if self.data[self.pos:self.pos + 1] == b"#":
            self.pos += 1
            count = self._count()
        elif kind is not None:
            raise UBJSONError("typed container without a count")
        if count is not None and count > len(self.data) - self.pos and kind not in (b"Z", b"T", b"F"):
            # every element takes at least one byte, except typed null/true/false ones
            raise UBJSONError(f"container claims {count} elements, more than the bytes left")
        if count is not None and count > len(self.data) and kind in (b"Z", b"T", b"F"):
            raise UBJSONError(f"container claims {count} empty elements; no model has that many")
        return kind, count

    def _array(self) -> list:
        kind, count = self._container_header()
        if kind in self._NUMBERS and count is not None:
            fmt = self._NUMBERS[kind]
            size = struct.calcsize(fmt)
            return list(struct.unpack(f">{count}{fmt[1]}", self._take(size * count)))
        items = []
        if count is not None:
            for _ in range(count):
                items.append(self._value(kind or self._marker()))
            return items
        while True:
            marker = self._marker()
            if marker == b"]":
                return items
            items.append(self._value(marker))

    def _object(self) -> dict:
        kind, count = self._container_header()
        obj = {}
        if count is not None:
            for _ in range(count):
                key = self._string()
                obj[key] = self._value(kind or self._marker())
            return obj
        while True:
            if self.data[self.pos:self.pos + 1] == b"}":
                self.pos += 1
                return obj
            key = self._string()
            obj[key] = self._value(self._marker())
