"""What the native backends (C, ONNX) lower for one expert: its IR and the text auditors read.

The numba module is emitted from the search's ``Expert`` objects; the C and ONNX
backends take this smaller record instead, built either from such an object or from a
bundle manifest's ``experts`` entry (whose postfix IR parses back to the very same
expressions), so ``lower/`` needs nothing from ``search/`` to lower a bundle.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from ..ir import Expr, parse_postfix, to_math, to_postfix
from ..ir.named import NamedExpression


class ExpertRecord(Protocol):
    """What the numba module is emitted from: an expert with its search record.

    The search's ``fecc.search.Expert`` has these attributes; ``lower/`` names the
    shape it reads instead of importing the search (imports run one way).
    """

    name: str
    region: Expr
    correction: Expr
    region_rule: str
    params: Mapping[str, float]
    metrics: Mapping[str, Any]
    iterations: int


@dataclass(frozen=True)
class TransformSource(NamedExpression):
    """One transform for the backends: a named numeric IR expression over the model's features.

    The search's :class:`fecc.transforms.Transform` has the same ``name`` and ``expr``;
    :meth:`from_manifest` reads a manifest ``transforms`` entry back (its postfix).
    """

    name: str
    expr: Expr

    @classmethod
    def of(cls, transform: Any) -> "TransformSource":
        return transform if isinstance(transform, TransformSource) else cls(transform.name, transform.expr)

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any]) -> "TransformSource":
        return cls(entry["name"], parse_postfix(entry["postfix"]))


@dataclass(frozen=True)
class ExpertSource:
    """One expert for the native backends.

    Attributes
    ----------
    name : ``expert_<n>``.
    region : IR predicate (every parameter bound).
    correction : IR numeric expression (every parameter bound), in margin units.
    region_rule : the region in words, as the manifest and the report state it.
    params : the tuned parameter values (documentation only: they are already bound).
    """

    name: str
    region: Expr
    correction: Expr
    region_rule: str = ""
    params: Mapping[str, float] = field(default_factory=dict)

    @property
    def correction_math(self) -> str:
        return to_math(self.correction)

    @classmethod
    def of(cls, expert: Any) -> "ExpertSource":
        """From anything with ``name``, ``region``, ``correction`` (and optionally
        ``region_rule``, ``params``): the search's ``Expert``, or an ``ExpertSource``."""
        if isinstance(expert, ExpertSource):
            return expert
        return cls(name=expert.name, region=expert.region, correction=expert.correction,
                   region_rule=getattr(expert, "region_rule", "") or "", params=dict(getattr(expert, "params", {}) or {}))

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any]) -> "ExpertSource":
        """From a manifest ``experts`` entry (its ``region``/``correction`` postfix)."""
        return cls(name=entry["name"], region=parse_postfix(entry["region"]["postfix"]),
                   correction=parse_postfix(entry["correction"]["postfix"]),
                   region_rule=entry["region"].get("rule", ""),
                   params={k: v for k, v in (entry.get("params") or {}).items() if isinstance(v, (int, float))})


def source_hash(experts: Sequence[Any], feature_names: Sequence[str], transforms: Sequence[Any] = ()) -> str:
    """sha256 of what emitted expert code is generated from (feature order, names, postfix IR;
    the transforms' names and postfix IR when there are any).

    The same value as :func:`fecc.lower.numba_backend.source_hash`, so the numba
    module, the C source and the ONNX graph of one bundle name the same hash.
    """
    payload = {"features": list(feature_names),
               "experts": [{"name": e.name, "region": to_postfix(e.region), "correction": to_postfix(e.correction)}
                           for e in experts]}
    if transforms:
        payload["transforms"] = [{"name": t.name, "postfix": to_postfix(t.expr)} for t in transforms]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
