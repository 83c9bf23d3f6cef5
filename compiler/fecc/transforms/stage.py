"""The transforms as a stage of ``fecc compile``: their served columns, and the refit the gate runs.

Two things the later stages need from a :class:`~fecc.transforms.TransformResult`:

* :func:`served_columns` / :func:`augment` — the transform columns exactly as the bundle
  computes them (the format's rule, :data:`fecc_runtime.format.TRANSFORM_SEMANTICS`):
  each expression evaluated by the IR's numpy evaluator on the float32-rounded features,
  its value rounded through float32.  The expert search, the aggregator and the parity
  vectors all read these values, so what was fitted is what is served.
* :class:`TransformRefit` — the transform search as a picklable callable that the gate
  (:func:`fecc.search.run_search`, ``refit_features``) runs *inside every outer fold*, on
  that fold's training rows only.  Transforms chosen on all compile rows would have seen
  the held-out rows' labels; rerunning the choice in each fold keeps the gate's
  out-of-fold test honest for the whole pipeline (transforms + experts + aggregator).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from fecc_runtime.format import round_float32, transform_value

from ..ir import evaluate, features_of
from .options import TransformOptions


def served_columns(transforms: Sequence[Any], X: pd.DataFrame) -> pd.DataFrame:
    """The transforms' columns on ``X`` as the bundle computes them: ``float32(expr(float32(x)))``, ±inf → NaN.

    ``transforms`` are :class:`~fecc.transforms.Transform` (anything with ``name`` and ``expr``).
    """
    out = {}
    for t in transforms:
        cols = {f: round_float32(X[f].to_numpy(np.float64)) for f in features_of(t.expr)}
        out[t.name] = transform_value(evaluate(t.expr, cols))
    return pd.DataFrame(out, index=X.index, columns=[t.name for t in transforms])


def augment(transforms: Sequence[Any], X: pd.DataFrame) -> pd.DataFrame:
    """``X`` with the served transform columns appended (``X`` itself, copied, when there are none)."""
    if not transforms:
        return X.copy()
    return pd.concat([X, served_columns(transforms, X)], axis=1)


@dataclass(frozen=True)
class FoldTransforms:
    """What one fold's transform search chose: appends those columns to any rows of the base features."""

    transforms: tuple

    def augment(self, X: pd.DataFrame) -> pd.DataFrame:
        return augment(self.transforms, X)

    def summary(self) -> list[str]:
        """The chosen programs (postfix), for the manifest's ``outer_folds``."""
        return [t.postfix for t in self.transforms]


@dataclass(frozen=True)
class TransformRefit:
    """The transform search rerun on a fold's training rows (picklable: the gate's helper process runs it).

    Calling it with the base features of the training rows returns a
    :class:`FoldTransforms` that the fold applies to its training and held-out rows.
    """

    options: TransformOptions

    def __call__(self, X: pd.DataFrame, y: np.ndarray, legacy_margin: np.ndarray, task: str, *, seed: int,
                 workdir: Path | None = None) -> FoldTransforms:
        from dataclasses import replace

        from .search import search_transforms

        result = search_transforms(X, y, legacy_margin, task, None, replace(self.options, seed=int(seed)),
                                   workdir=workdir)
        return FoldTransforms(tuple(result.transforms))
