"""The base margin the search repairs: an increasing affine map of the legacy margin.

A legacy model trained on other rows is often miscalibrated on the compile rows — a
default XGBoost fitted to a small or imbalanced table is overconfident, a model trained
before a shift is off in level and spread.  Left as it is, that miscalibration is most of
what the residuals show: the hard regions are where the model is overconfident, the
experts and the aggregator's first trees spend themselves on undoing it, and the
log-loss choices of the search (annealing, strengths, the aggregator's rounds) are
dominated by a fix that does not move the AUC.  So the search starts from

    base = shift + scale · legacy_margin        (scale > 0)

fitted on the rows the search is given: a two-parameter logistic regression of the label
on the legacy margin (binary) or a least-squares line (regression).  An increasing map
leaves the legacy model's ranking — its AUC — exactly as it is; what the experts and the
aggregator add on top is then a repair of the ranking.  The map is part of the search:
each outer fold of the gate fits its own on its own rows, and the gate judges the result
against the raw legacy margin.  It ships (``aggregator.base_map``) only with the
ensemble; a legacy-only bundle keeps the legacy model untouched.
"""
from __future__ import annotations

import numpy as np

from .crossfit import round_sig

#: How the map is fitted, as the manifest's ``aggregator.base_map.fitted`` says it.
FITTED = ("logistic regression of the label on the legacy margin (binary), least squares (regression), "
          "on the compile rows")
#: Newton steps of the two-parameter logistic fit (it converges in a handful).
_MAX_STEPS = 50


def fit_base_map(task: str, y: np.ndarray, legacy_margin: np.ndarray) -> tuple[float, float]:
    """``(scale, shift)`` of the affine map of ``legacy_margin`` that best predicts ``y``.

    Binary: maximum likelihood of ``y ~ Bernoulli(sigmoid(shift + scale·m))``; regression:
    least squares of ``y ≈ shift + scale·m``.  Both rounded to 6 significant digits (the
    literals the bundle carries are what the search used).  The identity ``(1.0, 0.0)``
    when the fit does not give a finite, positive scale (a legacy margin that is constant,
    or that ranks the rows the wrong way round on these rows — the gate then judges the
    search on the raw margin's terms).
    """
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    m = np.asarray(legacy_margin, dtype=np.float64).reshape(-1)
    if m.size < 3 or not np.all(np.isfinite(m)) or np.ptp(m) == 0.0:
        return 1.0, 0.0
    if task == "binary":
        scale, shift = _logistic(y, m)
    else:
        scale, shift = _least_squares(y, m)
    if not (np.isfinite(scale) and np.isfinite(shift) and scale > 0.0):
        return 1.0, 0.0
    return round_sig(scale), round_sig(shift)


def _least_squares(y: np.ndarray, m: np.ndarray) -> tuple[float, float]:
    mc = m - m.mean()
    scale = float(np.dot(mc, y - y.mean()) / np.dot(mc, mc))
    return scale, float(y.mean() - scale * m.mean())


def _logistic(y: np.ndarray, m: np.ndarray) -> tuple[float, float]:
    """Newton's method on the mean log loss of ``(scale, shift)``, from the identity, with step halving.

    A ridge of one pseudo-row pulls toward the identity, so that a legacy margin that
    separates the rows perfectly (maximum likelihood: an infinite scale) stays finite.
    """
    A = np.column_stack([m, np.ones_like(m)])
    identity = np.array([1.0, 0.0])
    ridge = 1.0 / y.size

    def loss(w):
        z = A @ w
        return float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * ridge * np.sum((w - identity) ** 2))

    w = identity.copy()
    current = loss(w)
    for _ in range(_MAX_STEPS):
        p = 1.0 / (1.0 + np.exp(-(A @ w)))
        grad = A.T @ (p - y) / y.size + ridge * (w - identity)
        hess = (A * (p * (1.0 - p))[:, None]).T @ A / y.size + ridge * np.eye(2)
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        t = 1.0
        while t > 1e-6:
            trial = w - t * step
            value = loss(trial)
            if value <= current:
                break
            t /= 2.0
        else:
            break
        w, gain = trial, current - value
        current = value
        if gain < 1e-12:
            break
    return float(w[0]), float(w[1])
