"""What the batch-engine scorers share: one verified bundle per process, and scoring one
pandas frame into the output columns.

:mod:`fecc_runtime.spark`, :mod:`fecc_runtime.dask` and :mod:`fecc_runtime.ray` each
hand the engine a small picklable object that names the bundle by path and by the
sha256 of its ``manifest.json``; in each worker process the first partition loads and
verifies the bundle (hashes, parity replay) and later partitions reuse it.  The key
holds the manifest's hash, so a bundle replaced at the same path is loaded afresh,
never served stale.

Output columns follow ``fecc score``: the kept input columns, then ``prediction``
(``margin`` with ``output="margin"``), or ``prediction_0 … prediction_{K-1}`` for a
model with one value per class.  Rows keep their order (and, for pandas, their index).
"""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .bundle import Bundle, load
from .errors import BundleError

__all__ = ["cached_bundle", "check_columns", "load_pinned", "manifest_digest", "n_outputs", "output_columns",
           "score_frame"]

_CACHE: dict[tuple[str, str], Bundle] = {}
_LOCK = threading.Lock()


def manifest_digest(path: str | Path) -> str:
    """sha256 (hex) of the bundle's ``manifest.json``: names the whole bundle, since the
    manifest holds the sha256 of every other file."""
    mpath = Path(path) / "manifest.json"
    try:
        return hashlib.sha256(mpath.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise BundleError(f"{path} is not a fecc bundle (no manifest.json)") from None


def cached_bundle(path: str | Path, digest: str | None = None) -> Bundle:
    """The bundle at ``path``, loaded and verified once per process.

    ``digest`` is the manifest hash the caller expects (the one seen on the driver);
    a bundle whose manifest differs is refused, so every worker scores with the bundle
    that was verified where the job was planned.
    """
    path = Path(path).resolve()
    found = manifest_digest(path)
    if digest is not None and found != digest:
        raise BundleError(f"bundle at {path} has manifest sha256 {found[:12]}…, expected {digest[:12]}… "
                          "(it changed after the job was planned)")
    key = (str(path), found)
    bundle = _CACHE.get(key)
    if bundle is None:
        with _LOCK:  # threads of one worker (Dask, Ray) load it once between them
            bundle = _CACHE.get(key)
            if bundle is None:
                bundle = _CACHE[key] = load(path)
    return bundle


def load_pinned(path: str | Path, trusted_keys=None) -> tuple[Bundle, str]:
    """Load and verify a bundle where a job is planned; return it and its manifest's sha256.

    The workers are then given that hash (see :func:`cached_bundle`), so they score
    exactly the manifest verified here, signature included when ``trusted_keys`` are given.
    """
    digest = manifest_digest(path)
    bundle = load(path, trusted_keys=trusted_keys)
    if manifest_digest(path) != digest:
        raise BundleError(f"bundle at {path} changed while it was being verified; try again")
    return bundle, digest


def n_outputs(bundle: Bundle) -> int:
    """Values per row: 1, or the number of classes for a multi-class model (except argmax)."""
    k = int(bundle.manifest["legacy"].get("num_class", 1) or 1)
    return 1 if k == 1 or bundle.link == "argmax" else k


def output_columns(bundle: Bundle, output: str = "prediction") -> list[str]:
    """The names of the score columns, as ``fecc score`` writes them."""
    if output not in ("prediction", "margin"):
        raise BundleError(f"output must be 'prediction' or 'margin', got {output!r}")
    k = n_outputs(bundle)
    return [output] if k == 1 else [f"{output}_{i}" for i in range(k)]


def check_columns(bundle: Bundle, columns: Sequence[str], keep: Sequence[str], output: str) -> list[str]:
    """Check a table's columns before a job starts; return the columns the scorer reads.

    Raises :class:`BundleError` naming a missing feature or kept column, or a kept
    column that would clash with a score column.
    """
    have = set(columns)
    missing = [n for n in bundle.feature_names if n not in have]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:8])
        raise BundleError(f"the table lacks {len(missing)} feature column(s) of the bundle: {shown}")
    bad_keep = [k for k in keep if k not in have]
    if bad_keep:
        raise BundleError(f"keep column(s) not in the table: {', '.join(map(repr, bad_keep))}")
    clash = [k for k in keep if k in output_columns(bundle, output)]
    if clash:
        raise BundleError(f"keep column {clash[0]!r} has the name of a score column; rename it first")
    return list(dict.fromkeys([*bundle.feature_names, *keep]))


def score_frame(bundle: Bundle, frame: Any, keep: Sequence[str] = (), output: str = "prediction"):
    """Score one pandas DataFrame: the ``keep`` columns, then the score column(s), same index."""
    import pandas as pd

    names = output_columns(bundle, output)
    if len(frame) == 0:
        values = np.empty((0, len(names)))
    else:
        values = np.asarray(bundle.predict(frame, output=output), dtype=np.float64).reshape(len(frame), len(names))
    out = frame[list(keep)].copy() if keep else pd.DataFrame(index=frame.index)
    for i, name in enumerate(names):
        out[name] = values[:, i]
    return out
