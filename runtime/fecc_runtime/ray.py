"""Score a Ray Dataset with a bundle: a callable class for ``Dataset.map_batches``.

>>> from fecc_runtime.ray import BundleScorer
>>> scored = ds.map_batches(BundleScorer, fn_constructor_kwargs={"bundle": "/data/bundle", "keep": ["id"]},
...                         batch_format="pandas", concurrency=4)

(Ray 2.51 and later prefer ``compute=ray.data.ActorPoolStrategy(size=4)`` to
``concurrency=4``; both make an actor pool.)  Ray builds one ``BundleScorer`` per actor: the constructor loads and verifies the
bundle once (the directory must be at that path on every node, e.g. a shared file
system or the job's ``runtime_env``), and each call scores one pandas batch in order.
The class needs no Ray import: it is plain Python over pandas frames.  To check a
signed bundle, verify it where the pipeline is built and pin the actors to it::

    bundle, digest = fecc_runtime.batch.load_pinned(path, trusted_keys=["signer.pub.pem"])
    ds.map_batches(BundleScorer, fn_constructor_kwargs={"bundle": path, "digest": digest}, ...)
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .batch import cached_bundle, output_columns, score_frame

__all__ = ["BundleScorer"]


class BundleScorer:
    """Scores pandas batches with one verified bundle.

    Parameters
    ----------
    bundle : the bundle directory.
    keep : batch columns to copy into the output, before the scores.
    output : ``"prediction"`` or ``"margin"``.
    digest : sha256 of the ``manifest.json`` the caller expects (see
        :func:`fecc_runtime.batch.manifest_digest`); a different bundle is refused.
    """

    def __init__(self, bundle: str | Path, keep: Sequence[str] = (), output: str = "prediction",
                 digest: str | None = None):
        self.bundle = cached_bundle(bundle, digest)
        self.keep = tuple(keep)
        self.output = output
        self.columns = output_columns(self.bundle, output)  # checks ``output`` before any batch

    def __call__(self, batch):
        """One pandas batch in, the ``keep`` columns and the score column(s) out."""
        return score_frame(self.bundle, batch, self.keep, self.output)
