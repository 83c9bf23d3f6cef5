"""Paired tests of "the ensemble beats the legacy model" on the same rows.

* :func:`delong` — DeLong's test for two correlated ROC AUCs (DeLong, DeLong &
  Clarke-Pearson 1988), computed with midranks (Sun & Xu 2014): the variance of
  ``AUC_new − AUC_legacy`` from the structural components of both scores.
* :func:`paired_loss` — the paired z test of a per-row loss difference (log loss for
  binary, squared error for regression); a large-sample test, the rows being the pairs.

Both return a :class:`PairedTest` with a one-sided p-value for "new is better" and a
two-sided interval of the gain at the stated confidence.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from scipy.stats import rankdata

_N = NormalDist()


@dataclass(frozen=True)
class PairedTest:
    """One paired comparison; ``gain`` > 0 means the new scores are better."""

    name: str
    metric: str
    legacy: float
    new: float
    gain: float
    se: float
    statistic: float
    p_value: float          # one-sided: H0 "new is not better"
    confidence: float
    interval: tuple[float, float]

    def to_manifest(self) -> dict:
        r = lambda v: round(float(v), 6) if np.isfinite(v) else None  # noqa: E731
        return {"name": self.name, "metric": self.metric, "legacy": r(self.legacy), "new": r(self.new),
                "gain": r(self.gain), "se": r(self.se), "statistic": r(self.statistic),
                "p_value": r(self.p_value), "confidence": self.confidence,
                "interval": [r(self.interval[0]), r(self.interval[1])]}


def _finish(name, metric, legacy, new, gain, se, confidence) -> PairedTest:
    if se > 0 and np.isfinite(se):
        z = gain / se
        p = 1.0 - _N.cdf(z)
    else:
        z = 0.0 if gain == 0 else float(np.sign(gain)) * float("inf")
        p = 0.5 if gain == 0 else (0.0 if gain > 0 else 1.0)
    half = _N.inv_cdf(0.5 + confidence / 2.0) * se if np.isfinite(se) else float("inf")
    return PairedTest(name, metric, float(legacy), float(new), float(gain), float(se), float(z), float(p),
                      float(confidence), (float(gain - half), float(gain + half)))


def _components(y: np.ndarray, score: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    pos, neg = score[y], score[~y]
    m, n = pos.size, neg.size
    all_ranks = rankdata(np.concatenate([pos, neg]))
    v10 = (all_ranks[:m] - rankdata(pos)) / n          # per positive: share of negatives below
    v01 = 1.0 - (all_ranks[m:] - rankdata(neg)) / m    # per negative: share of positives above
    return float(v10.mean()), v10, v01


def delong(y: np.ndarray, legacy: np.ndarray, new: np.ndarray, confidence: float = 0.95) -> PairedTest:
    """DeLong's paired test of ``AUC(new) − AUC(legacy)`` (NaN statistics if one class only)."""
    y = np.asarray(y) > 0.5
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        nan = float("nan")
        return PairedTest("delong", "auc", nan, nan, nan, nan, nan, 1.0, confidence, (nan, nan))
    a0, v10_0, v01_0 = _components(y, np.asarray(legacy, dtype=np.float64))
    a1, v10_1, v01_1 = _components(y, np.asarray(new, dtype=np.float64))
    s10 = np.cov(np.vstack([v10_0, v10_1]))
    s01 = np.cov(np.vstack([v01_0, v01_1]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return _finish("delong", "auc", a0, a1, a1 - a0, float(np.sqrt(max(var, 0.0))), confidence)


def paired_loss(loss_legacy: np.ndarray, loss_new: np.ndarray, *, metric: str,
                confidence: float = 0.95) -> PairedTest:
    """Paired z test of the mean per-row loss reduction ``loss_legacy − loss_new``.

    ``metric`` ``"logloss"`` reports mean losses; ``"rmse"`` reports root mean squared
    errors, with the gain and its interval carried over by the delta method.
    """
    a = np.asarray(loss_legacy, dtype=np.float64)
    b = np.asarray(loss_new, dtype=np.float64)
    d = a - b
    n = d.size
    se = float(np.std(d, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    if metric == "rmse":
        r0, r1 = float(np.sqrt(a.mean())), float(np.sqrt(b.mean()))
        # d(RMSE) ≈ d(MSE) / (2 RMSE): the gain in RMSE units, same z as the MSE test
        scale = 1.0 / (r0 + r1) if (r0 + r1) > 0 else 0.0
        return _finish("paired-z", "rmse", r0, r1, r0 - r1, se * scale * 1.0 if scale else se, confidence)
    return _finish("paired-z", metric, float(a.mean()), float(b.mean()), float(d.mean()), se, confidence)
