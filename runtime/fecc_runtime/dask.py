"""Score a Dask DataFrame with a bundle: ``map_partitions`` with a declared ``meta``.

>>> from fecc_runtime import dask as fecc_dask
>>> scored = fecc_dask.score(ddf, "bundle/", keep=["id"])   # lazy: id, prediction
>>> scored.to_parquet("scores/")

The bundle is verified once where the graph is built, then loaded and verified once per
worker process (:func:`fecc_runtime.batch.cached_bundle`): the directory must be at the
same path on every worker (a local cluster, a shared file system, or baked into the
workers' image).  Each partition keeps its index and its row order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .batch import cached_bundle, check_columns, load_pinned, output_columns, score_frame

__all__ = ["score"]


class _PartitionScorer:
    """The ``map_partitions`` function: one pandas partition in, its scores out."""

    def __init__(self, path: str, digest: str, keep: Sequence[str], output: str):
        self.path, self.digest, self.keep, self.output = path, digest, tuple(keep), output

    def __call__(self, frame):
        return score_frame(cached_bundle(self.path, self.digest), frame, self.keep, self.output)

    def __dask_tokenize__(self):
        # the same bundle, columns and output: the same task keys (dask can reuse results)
        return ("fecc-score", self.path, self.digest, self.keep, self.output)


def score(ddf, bundle: str | Path, *, keep: Sequence[str] = (), output: str = "prediction",
          trusted_keys=None):
    """Score ``ddf`` with the bundle at ``bundle``; returns a lazy Dask DataFrame.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame with a column per feature of the bundle (by name).
    bundle : the bundle directory, at this path on every worker.
    keep : input columns to copy into the output, before the scores.
    output : ``"prediction"`` or ``"margin"``.
    trusted_keys : Ed25519 public keys; the bundle's signature is checked here, and the
        workers score only a bundle with this very manifest (by its sha256).

    Returns
    -------
    dask.dataframe.DataFrame
        The ``keep`` columns, then ``prediction`` (``prediction_0 …`` for one value per
        class) as float64, with the input's index and divisions.

    Raises
    ------
    fecc_runtime.BundleError
        The bundle fails verification here, or ``ddf`` lacks a feature or a kept column.
    """
    import pandas as pd

    bundle_dir = Path(bundle).resolve()
    b, digest = load_pinned(bundle_dir, trusted_keys)  # a bad bundle fails here, before any task
    cols = check_columns(b, list(ddf.columns), keep, output)
    meta = ddf._meta[list(keep)].copy() if keep else pd.DataFrame(index=ddf._meta.index)
    for name in output_columns(b, output):
        meta[name] = pd.Series(dtype="float64")
    scorer = _PartitionScorer(str(bundle_dir), digest, keep, output)
    return ddf[cols].map_partitions(scorer, meta=meta, align_dataframes=False)
