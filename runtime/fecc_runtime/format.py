"""The bundle format contract: what the compiler writes and the runtime reads, in one place.

Everything here is part of the format a bundle on disk is read with, so the compiler
(``fecc.bundle``, ``fecc.frontend``, ``fecc.search``, ``fecc.lower``) imports it from
this module instead of keeping its own copy, and a change to any of it is a change of
:data:`FORMAT_VERSION`:

* the format's name and version (``manifest.json``'s ``format`` / ``format_version``);
* hashing: every file the manifest lists is named by the sha256 of its bytes;
* the category rule: how a category value becomes the integer code the trees test;
* the experts: the names of an expert's emitted functions, what an expert means
  (:data:`EXPERT_SEMANTICS`), and the interaction-feature layout the aggregator reads;
* the transforms (seed 000): what a transform column is (:data:`TRANSFORM_SEMANTICS`,
  :func:`round_float32`) and where the transform columns sit (:func:`input_layout`).

The experts' and the aggregator's *base margin* is an increasing affine map of the legacy
margin ``m`` (:func:`base_margin`; the manifest's ``aggregator.base_map``, absent = the
identity)::

    base(x) = shift + scale · m(x)          (scale > 0: the legacy ranking is unchanged)

Expert semantics (margin space), for expert ``k`` with region predicate ``R_k`` and
correction ``g_k``::

    f_k(x) = base(x) + g_k(x)   if R_k(x)      (g_k NaN or ±inf on a row → 0: the legacy margin)
    f_k(x) = NaN                otherwise       (XGBoost reads NaN as missing)

Transforms (``manifest["transforms"]``, in order ``tf_1, tf_2, …``): each is an IR
expression over the model's features, computed on the float32-rounded features and
rounded through float32 itself::

    tf_t(x) = float32(expr_t(float32(x)))      (float64 arithmetic in between)
    ±inf (an overflow) → NaN                   (a missing value, as XGBoost reads NaN)

The experts and the aggregator read the *input row* ``x⁺ = concat([x, tf_1(x), …])``
(:func:`input_layout`): an expert's ``x[j]`` with ``j >= len(features)`` is a transform;
the legacy trees read ``x`` alone.  A bundle without transforms has ``x⁺ = x``.

The aggregator's input is ``concat([x⁺, features(x⁺, base)])`` with
``features = [base, φ_1, …, φ_K]`` and ``φ_k = [f_k, f_k − base, div(f_k, base)]``, where
``div(a, b) = a / (b + 1e-9)`` if ``b >= 0`` else ``a / (b − 1e-9)`` — the IR's safe
division, so the ratio is finite wherever ``f_k`` is.  Outside its region all three
columns of an expert are NaN.  :func:`interaction_features` is the one definition of
this layout: the compiler builds the aggregator's training matrix with it too.

This module imports numpy and the standard library only.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import BundleError

__all__ = [
    "FORMAT", "FORMAT_VERSION", "SUPPORTED_VERSIONS", "format_version", "sha256_file", "sha256_bytes", "category_lookup", "category_code",
    "DIV_EPS", "PHI_SUFFIXES", "safe_div", "interaction_features", "phi_names", "expert_offset",
    "BASE_MAP_SEMANTICS", "base_map", "check_base_map", "base_margin", "EXPERT_SEMANTICS", "function_names", "TRANSFORM_SEMANTICS", "round_float32", "transform_value", "input_layout",
]

# --------------------------------------------------------------------------- name and version

#: ``manifest.json``'s ``format``.
FORMAT = "fecc-bundle"
#: ``manifest.json``'s newest ``format_version``.  Version 2 adds the aggregator's
#: ``base_map`` (the experts' base margin as an affine map of the legacy margin); a bundle
#: without one is written as version 1, so that an older runtime still loads it and a
#: runtime that would ignore the map (and score wrong) refuses the bundle instead.
FORMAT_VERSION = 2
#: The versions this runtime reads; it refuses any other.
SUPPORTED_VERSIONS = (1, 2)


def format_version(manifest: dict) -> int:
    """The oldest format version that can describe ``manifest`` (what the writer stamps)."""
    agg = manifest.get("aggregator")
    return 2 if isinstance(agg, dict) and agg.get("base_map") is not None else 1

# --------------------------------------------------------------------------- hashing


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``: how the manifest names a file's content (and the model's)."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

# --------------------------------------------------------------------------- categories


def category_lookup(categories) -> dict:
    """Category value -> code for one feature: each stored value, then its string form.

    The string form lets a CSV's ``1`` find a model's stored ``"1"``; an exact value
    always wins.  The compiler (``fecc.frontend.table``) codes training data with this
    same rule, so what the search saw is what the bundle serves.
    """
    lookup = {c: i for i, c in enumerate(categories)}
    for i, c in enumerate(categories):
        lookup.setdefault(str(c), i)
    return lookup


def category_code(lookup: dict, value, name: str = "?") -> float:
    """The code of ``value`` (float), NaN when missing (None/NaN) or never seen in training."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    try:
        code = lookup.get(value)
        if code is None:
            code = lookup.get(str(value))
    except TypeError:  # unhashable: a list, a dict ...
        raise BundleError(f"feature {name!r} takes a category value, got {type(value).__name__}") from None
    return math.nan if code is None else float(code)

# --------------------------------------------------------------------------- experts

#: What the base margin is, written into the manifest next to the map's constants.
BASE_MAP_SEMANTICS = "base = shift + scale * legacy_margin (float64; scale > 0, so the legacy ranking is unchanged)"


def base_map(entry) -> tuple[float, float]:
    """``(scale, shift)`` of a manifest ``base_map`` entry (``None``: the identity ``(1.0, 0.0)``).

    Raises :class:`~fecc_runtime.errors.BundleError` for anything but a positive finite
    ``scale`` and a finite ``shift``.
    """
    if entry is None:
        return 1.0, 0.0
    try:
        scale, shift = float(entry["scale"]), float(entry["shift"])
    except (TypeError, KeyError, ValueError):
        raise BundleError(f"malformed base_map {entry!r}: expected {{'scale': > 0, 'shift': finite}}") from None
    try:
        return check_base_map(scale, shift)
    except ValueError:
        raise BundleError(f"base_map needs a finite scale > 0 and a finite shift, got {entry!r}") from None


def check_base_map(scale: float, shift: float) -> tuple[float, float]:
    """``(scale, shift)`` as floats when they describe an increasing map (finite ``scale > 0``,
    finite ``shift``); ``ValueError`` otherwise.  The one check, for the runtime and the lowerings."""
    scale, shift = float(scale), float(shift)
    if not (math.isfinite(scale) and scale > 0 and math.isfinite(shift)):
        raise ValueError(f"the base map needs a finite scale > 0 and a finite shift, got ({scale!r}, {shift!r})")
    return scale, shift


def base_margin(legacy_margin: np.ndarray, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    """The experts' and the aggregator's base margin: ``shift + scale · legacy_margin`` in float64
    (one multiply, one add, in that order: every backend computes the same bits)."""
    m = np.asarray(legacy_margin, dtype=np.float64)
    if scale == 1.0 and shift == 0.0:
        return m.copy()
    return shift + scale * m


#: What an expert means, written into the manifest next to each expert.
EXPERT_SEMANTICS = ("margin space: f(x) = base_margin(x) + correction(x) if region(x) else NaN; "
                    "a correction that is NaN or +-inf on a row counts as 0")


def function_names(expert_name: str) -> dict[str, str]:
    """Names of the emitted module's functions for one expert (the manifest lists them)."""
    return {"function": expert_name, "batch_function": f"{expert_name}_batch",
            "region_function": f"{expert_name}_region", "correction_function": f"{expert_name}_correction"}


#: Safe-division epsilon; equal to ``fecc.ir.ops.DIV_EPS`` (a compiler test checks it).
DIV_EPS = 1e-9
#: Column suffixes of one expert's interaction vector φ_k.
PHI_SUFFIXES = ("", "_delta", "_ratio")


def safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The IR's ``div``: ``a / (b + eps)`` where ``b >= 0`` (``-0.0`` included), else ``a / (b − eps)``."""
    with np.errstate(all="ignore"):
        return a / np.where(b >= 0, b + DIV_EPS, b - DIV_EPS)


def interaction_features(base: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``[base, f_1, f_1 − base, div(f_1, base), …]`` from ``values[:, k] = f_k`` (NaN outside regions).

    Parameters
    ----------
    base : (n,) legacy margin.
    values : (n, K) expert outputs in margin space.

    Returns
    -------
    (n, 1 + 3K) float64 array.
    """
    base = np.asarray(base, dtype=np.float64).reshape(-1)
    values = np.asarray(values, dtype=np.float64).reshape(base.shape[0], -1)
    n, k = values.shape
    out = np.empty((n, 1 + 3 * k), dtype=np.float64)
    out[:, 0] = base
    with np.errstate(all="ignore"):
        for j in range(k):
            f = values[:, j]
            out[:, 1 + 3 * j] = f
            out[:, 2 + 3 * j] = f - base
            out[:, 3 + 3 * j] = safe_div(f, base)
    return out


def phi_names(expert_names: Sequence[str]) -> list[str]:
    """Column names of :func:`interaction_features`: ``base_margin``, ``expert_1``, ``expert_1_delta``, …"""
    return ["base_margin"] + [f"{name}{s}" for name in expert_names for s in PHI_SUFFIXES]


def expert_offset(features: np.ndarray, n_experts: int) -> np.ndarray:
    """Sum of the experts' corrections ``Σ_k (f_k − base)`` over the experts whose region holds the row.

    This is the aggregator's extra base margin when the manifest says
    ``"base_margin": "legacy+experts"``: final margin = base + offset + trees.  The sum
    runs in expert order from 0.0 (not numpy's pairwise ``sum``), so every backend
    (numba, C, ONNX) can add the same numbers in the same order and get the same bits.
    """
    deltas = np.asarray(features, dtype=np.float64)[:, 2::3][:, :n_experts]
    out = np.zeros(deltas.shape[0], dtype=np.float64)
    for k in range(deltas.shape[1]):
        d = deltas[:, k]
        out += np.where(np.isnan(d), 0.0, d)
    return out

# --------------------------------------------------------------------------- transforms

#: What a transform column means, written into the manifest's ``search.transforms``.
TRANSFORM_SEMANTICS = ("tf(x) = float32(expr(float32(x))), float64 arithmetic in between, +-inf -> NaN "
                       "(missing); the experts and the aggregator read concat([x, tf_1(x), ...])")


def round_float32(values: np.ndarray) -> np.ndarray:
    """``values`` rounded through float32 and back to float64 (overflow to ±inf, NaN kept).

    The one rounding of the format: the features before the experts see them, and each
    transform's value before the experts and the aggregator see it.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(values, dtype=np.float64).astype(np.float32).astype(np.float64)


def transform_value(values: np.ndarray) -> np.ndarray:
    """A transform's served value from its float64 expression value: rounded through float32,
    ±inf (an overflow) → NaN, so the aggregator's trees read it as missing."""
    v = round_float32(values)
    return np.where(np.isinf(v), np.nan, v)


def input_layout(feature_names: Sequence[str], transforms: Sequence[dict] | None) -> list[str]:
    """Column names of the experts' and the aggregator's input row: the features, then the transforms.

    ``transforms`` is the manifest's ``transforms`` list (each entry has a ``name``).
    A transform named like a feature is refused: the layout would be ambiguous.
    """
    names = [str(n) for n in feature_names]
    extra = [str(t["name"]) for t in (transforms or ())]
    clash = sorted(set(names) & set(extra)) or sorted({n for n in extra if extra.count(n) > 1})
    if clash:
        raise BundleError(f"transform name(s) {clash} repeat a feature or another transform")
    return names + extra


# --------------------------------------------------------------------------- input rows

def feature_rows(X, num_feature: int, dtype=np.float32) -> np.ndarray:
    """``X`` as a C-contiguous ``(n, num_feature)`` array of ``dtype``, the type the compiled
    trees read (float32 for XGBoost); values beyond its range become ±inf, as the trees read
    them.  Raises ``ValueError`` naming the expected shape; every batch entry point (the
    native ensemble, the one-graph ONNX session) checks its input here."""
    with np.errstate(over="ignore"):
        rows = np.ascontiguousarray(X, dtype=dtype)
    if rows.ndim != 2 or rows.shape[1] != num_feature:
        raise ValueError(f"expected X of shape (n, {num_feature}), got {rows.shape}")
    return rows
