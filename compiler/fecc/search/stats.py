"""Feature statistics and error annotations shown to proposers (seed 004 §4.2, prompt context).

* **IV** (information value) of a feature *inside a region*, for the sign of the legacy
  model's residual (under- vs over-prediction).  For a binary task the residual sign is
  the label itself, so this is the classic IV; for regression it says which features
  separate rows the legacy model under-predicts from rows it over-predicts.
* **PSI** (population stability index) of the region's rows against the whole train split:
  how different the region's distribution of a feature is.
* **Error types** of sampled rows: false negative / false positive / high uncertainty /
  correct (binary), under- / over-prediction (regression).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..llm.base import FeatureStat

_EPS = 0.5  # Laplace smoothing of bin counts: IV and PSI stay finite on empty bins


def _bins(reference: np.ndarray, n_bins: int) -> np.ndarray:
    """Quantile edges of the non-missing reference values (unique, may be fewer than asked)."""
    values = reference[~np.isnan(reference)]
    if values.size == 0:
        return np.array([])
    edges = np.unique(np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return edges


def _bin_index(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin per value; NaN gets its own last bin."""
    idx = np.searchsorted(edges, x, side="right")
    idx[np.isnan(x)] = edges.size + 1
    return idx


def information_value(x: np.ndarray, target: np.ndarray, n_bins: int = 10) -> float:
    """IV of ``x`` for a boolean ``target``, on quantile bins (missing values form a bin)."""
    x = np.asarray(x, dtype=np.float64)
    target = np.asarray(target, dtype=bool)
    if target.all() or not target.any():
        return 0.0
    idx = _bin_index(x, _bins(x, n_bins))
    k = int(idx.max()) + 1
    pos = np.bincount(idx[target], minlength=k) + _EPS
    neg = np.bincount(idx[~target], minlength=k) + _EPS
    used = np.bincount(idx, minlength=k) > 0
    p, q = pos[used] / pos[used].sum(), neg[used] / neg[used].sum()
    return float(np.sum((p - q) * np.log(p / q)))


def population_stability(sample: np.ndarray, reference: np.ndarray, n_bins: int = 10) -> float:
    """PSI of ``sample`` against ``reference`` on the reference's quantile bins."""
    sample = np.asarray(sample, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if sample.size == 0 or reference.size == 0:
        return 0.0
    edges = _bins(reference, n_bins)
    k = edges.size + 2
    a = np.bincount(_bin_index(sample, edges), minlength=k) + _EPS
    b = np.bincount(_bin_index(reference, edges), minlength=k) + _EPS
    a, b = a / a.sum(), b / b.sum()
    return float(np.sum((a - b) * np.log(a / b)))


def feature_stats(region: pd.DataFrame, whole: pd.DataFrame, residual: np.ndarray) -> tuple[FeatureStat, ...]:
    """One :class:`FeatureStat` per column, highest IV first (ties by column order)."""
    target = np.asarray(residual) > 0
    out = []
    for name in region.columns:
        x = region[name].to_numpy(dtype=np.float64)
        present = x[~np.isnan(x)]
        out.append(FeatureStat(
            name=name,
            iv=round(information_value(x, target), 6),
            psi=round(population_stability(x, whole[name].to_numpy(dtype=np.float64)), 6),
            mean=float(present.mean()) if present.size else 0.0,
            std=float(present.std()) if present.size else 0.0,
            min=float(present.min()) if present.size else 0.0,
            max=float(present.max()) if present.size else 0.0,
            missing=float(np.isnan(x).mean()) if x.size else 0.0,
        ))
    order = sorted(range(len(out)), key=lambda i: (-out[i].iv, i))
    return tuple(out[i] for i in order)


def error_types(task: str, y: np.ndarray, margin: np.ndarray, *, uncertainty: float = 0.1) -> np.ndarray:
    """Fine-grained error type of each row under the legacy model (an array of strings)."""
    y = np.asarray(y, dtype=np.float64)
    margin = np.asarray(margin, dtype=np.float64)
    if task == "binary":
        p = 1.0 / (1.0 + np.exp(-np.clip(margin, -50, 50)))
        out = np.where(y > 0.5, np.where(p >= 0.5, "true positive", "false negative"),
                       np.where(p >= 0.5, "false positive", "true negative")).astype(object)
        out[np.abs(p - 0.5) < uncertainty] = "high uncertainty"
        return out
    r = y - margin
    scale = float(np.std(r)) or 1.0
    return np.where(r > scale, "under-prediction", np.where(r < -scale, "over-prediction", "close")).astype(object)


def sample_instances(task: str, rows: pd.DataFrame, y: np.ndarray, margin: np.ndarray, n: int,
                     rng: np.random.Generator, legacy: np.ndarray | None = None) -> tuple[dict, ...]:
    """``n`` region rows for the prompt, errors first, each with its label and error type.

    ``margin`` is the current hybrid's margin (legacy + current correction), which the
    error types describe; ``legacy`` (default: ``margin``) is the frozen model's.
    """
    legacy = margin if legacy is None else legacy
    if len(rows) == 0 or n <= 0:
        return ()
    kinds = error_types(task, y, margin)
    wrong = np.flatnonzero(~np.isin(kinds, ["true positive", "true negative", "close"]))
    right = np.setdiff1d(np.arange(len(rows)), wrong)
    take_wrong = rng.permutation(wrong)[: max(n - n // 4, n - right.size)]
    take_right = rng.permutation(right)[: n - take_wrong.size]
    chosen = np.sort(np.concatenate([take_wrong, take_right]))
    out = []
    for i in chosen:
        rec = {k: (None if np.isnan(v) else float(v)) for k, v in rows.iloc[int(i)].items()}
        rec["label"] = float(y[i])
        rec["legacy_margin"] = round(float(legacy[i]), 6)
        rec["current_margin"] = round(float(margin[i]), 6)
        rec["error_type"] = str(kinds[i])
        out.append(rec)
    return tuple(out)
