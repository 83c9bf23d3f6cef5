"""Metrics on margins, shared by the chains, the aggregator and the gate.

Everything here takes *margins* (log-odds for ``binary``, the prediction itself for
``regression``) because experts and the aggregator correct the legacy model in margin
space.  ``score`` is the one number the search maximises: AUC for binary tasks, minus
RMSE for regression, so that "higher is better" holds everywhere.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

TASKS = ("binary", "regression")


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return task


def sigmoid(m: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-m))


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC with ties counted half (same value as ``sklearn.metrics.roc_auc_score``).

    NaN when only one class is present.
    """
    y = np.asarray(y) > 0.5
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n0 * n1))


def logloss_rows(y: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """Per-row binary log loss from the margin, stable for large |margin|."""
    m = np.asarray(margin, dtype=np.float64)
    return np.logaddexp(0.0, m) - np.asarray(y, dtype=np.float64) * m


def squared_rows(y: np.ndarray, margin: np.ndarray) -> np.ndarray:
    return (np.asarray(y, dtype=np.float64) - margin) ** 2


def loss_rows(task: str, y: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """The training loss per row: log loss (binary) or squared error (regression)."""
    return logloss_rows(y, margin) if task == "binary" else squared_rows(y, margin)


def score(task: str, y: np.ndarray, margin: np.ndarray) -> float:
    """The selection metric, higher is better: AUC (binary) or −RMSE (regression)."""
    if task == "binary":
        return auc(y, margin)
    return -float(np.sqrt(np.mean(squared_rows(y, margin))))


def metric_name(task: str) -> str:
    return "auc" if task == "binary" else "rmse"


def report(task: str, y: np.ndarray, margin: np.ndarray) -> dict[str, float | int | None]:
    """Readable metrics for manifests and reports (NaN written as ``None``)."""
    y = np.asarray(y, dtype=np.float64)
    out: dict[str, float | int | None] = {"n": int(y.size)}
    if y.size == 0:
        return out
    if task == "binary":
        a = auc(y, margin)
        out["auc"] = None if np.isnan(a) else round(a, 6)
        out["logloss"] = round(float(np.mean(logloss_rows(y, margin))), 6)
        out["accuracy"] = round(float(np.mean((margin > 0) == (y > 0.5))), 6)
    else:
        out["rmse"] = round(float(np.sqrt(np.mean(squared_rows(y, margin)))), 6)
        out["mae"] = round(float(np.mean(np.abs(y - margin))), 6)
    return out


def residuals(task: str, y: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """``y − ŷ_base`` in output space (probability for binary), as in seed 004 §4.1."""
    pred = sigmoid(margin) if task == "binary" else margin
    return np.asarray(y, dtype=np.float64) - pred


def paired_z(before: np.ndarray, after: np.ndarray) -> float:
    """One-sided paired z statistic of the loss reduction ``before − after`` (0 if no variance)."""
    d = np.asarray(before, dtype=np.float64) - np.asarray(after, dtype=np.float64)
    if d.size < 2:
        return 0.0
    sd = float(np.std(d, ddof=1))
    if sd == 0.0:
        return 0.0 if float(np.mean(d)) <= 0 else float("inf")
    return float(np.mean(d) / (sd / np.sqrt(d.size)))


def region_target(task: str, y: np.ndarray, margin: np.ndarray, kind: str = "excess") -> np.ndarray:
    """What the region-finding CART fits (see ``SearchOptions.region_target``)."""
    r = np.abs(residuals(task, y, margin))
    if kind == "excess" and task == "binary":
        p = sigmoid(np.asarray(margin, dtype=np.float64))
        return r - 2.0 * p * (1.0 - p)
    return r
