"""Score a Spark DataFrame with a bundle: ``DataFrame.mapInPandas`` on the executors.

>>> from fecc_runtime import spark as fecc_spark
>>> scored = fecc_spark.score(df, "bundle/", keep=["id"])   # a lazy DataFrame: id, prediction

The driver loads and verifies the bundle once (a bundle that fails is refused before
any task runs), copies it under a name made of its manifest hash and ships it with
``SparkContext.addFile(dir, recursive=True)``.  On the executors each Python worker
loads and verifies its copy once (:func:`fecc_runtime.batch.cached_bundle`) and scores
every Arrow batch of its partitions, in order, through :meth:`Bundle.predict` — the
same numbers as ``fecc score``.

The executors' Python needs ``fecc_runtime`` (with pandas and pyarrow, the ``spark``
extra) installed, the bundle's compiled library needs the driver's CPU architecture
and OS, and ``PYSPARK_PYTHON`` must name that interpreter.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from .batch import cached_bundle, check_columns, load_pinned, output_columns, score_frame

__all__ = ["score"]

_STAGED: dict[str, Path] = {}  # manifest sha256 -> the copy shipped from this driver


class _PartitionScorer:
    """The ``mapInPandas`` function: pandas frames in, scored frames out, one bundle per worker.

    A module-level class, so that Spark pickles it by reference and the executors share
    this module's bundle cache across tasks.
    """

    def __init__(self, file_name: str, digest: str, keep: Sequence[str], output: str):
        self.file_name, self.digest, self.keep, self.output = file_name, digest, tuple(keep), output
        self.__name__ = "fecc_score"  # the name Spark shows for the UDF

    def __call__(self, frames):
        from pyspark import SparkFiles

        bundle = cached_bundle(SparkFiles.get(self.file_name), self.digest)
        for frame in frames:
            yield score_frame(bundle, frame, self.keep, self.output)


def _ship(sc, bundle_dir: Path, digest: str) -> str:
    """Copy the bundle to a directory named by its manifest hash and ``addFile`` it.

    Spark refuses two files of one name from different paths; the hash in the name
    keeps two bundles both called ``bundle`` apart, and adding the same copy twice is
    a no-op.
    """
    name = f"fecc-{digest[:16]}-{bundle_dir.name}"
    staged = _STAGED.get(digest)
    if staged is None or not staged.is_dir():
        root = Path(tempfile.mkdtemp(prefix="fecc-spark-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)  # Spark may fetch it until the driver ends
        staged = root / name
        shutil.copytree(bundle_dir, staged, ignore=shutil.ignore_patterns("__pycache__"))
        _STAGED[digest] = staged
        sc.addFile(str(staged), recursive=True)
    return name


def score(df, bundle: str | Path, *, keep: Sequence[str] = (), output: str = "prediction",
          trusted_keys=None):
    """Score ``df`` with the bundle at ``bundle``; returns a lazy Spark DataFrame.

    Parameters
    ----------
    df : pyspark.sql.DataFrame with a column per feature of the bundle (by name;
        categorical features hold their category values; null is missing).
    bundle : the bundle directory, on the driver.
    keep : input columns to copy into the output (an id, say), before the scores.
    output : ``"prediction"`` or ``"margin"``.
    trusted_keys : Ed25519 public keys; the bundle's signature is checked here, and the
        workers score only a bundle with this very manifest (by its sha256).

    Returns
    -------
    pyspark.sql.DataFrame
        The ``keep`` columns, then ``prediction`` (``prediction_0 …`` for one value per
        class), doubles; within each partition the rows keep their order.

    Raises
    ------
    fecc_runtime.BundleError
        The bundle fails verification on the driver, or ``df`` lacks a feature or a
        kept column.
    """
    from pyspark.sql.types import DoubleType, StructField, StructType

    bundle_dir = Path(bundle).resolve()
    b, digest = load_pinned(bundle_dir, trusted_keys)  # a bad bundle fails here, before any task
    cols = check_columns(b, df.columns, keep, output)
    by_name = {f.name: f for f in df.schema.fields}
    schema = StructType([by_name[k] for k in keep]
                        + [StructField(n, DoubleType(), True) for n in output_columns(b, output)])
    name = _ship(df.sparkSession.sparkContext, bundle_dir, digest)
    return df.select(*cols).mapInPandas(_PartitionScorer(name, digest, keep, output), schema)
