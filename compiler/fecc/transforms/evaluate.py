"""The real score of a candidate feature: its cross-fitted gain over the frozen legacy model.

For a program ``f`` (or a set of them) and K folds of the compile rows, each fold fits a
tiny, ridge-regularised correction *on its training rows only*, with the legacy margin
as offset:

* binary — logistic regression of ``y`` on ``[z, max(z, 0), missing]`` with base margin
  = legacy margin, a few Newton steps in numpy;
* regression — ridge least squares of ``y − legacy`` on the same columns,

where ``z`` is the feature clipped to the training rows' 0.5%/99.5% quantiles and
standardised with their mean and standard deviation (NaN/±inf: ``z = 0`` and the
``missing`` indicator, present only when the training rows have non-finite values).
The fold's held-out rows are scored with that correction, so every row gets one
out-of-fold (OOF) margin, and

    gain = metric(y, OOF margin) − metric(y, legacy margin recalibrated)

on the same rows, where "recalibrated" is legacy plus an intercept fitted the same way
(out of fold, no feature), so that no feature is credited with what a constant shift of
the legacy margin does (for AUC it changes nothing; for the log loss and RMSE it can be
large when the compile rows' base rate differs from the legacy training data's), with the metric of :func:`fecc.search.metrics.score` (AUC for binary,
−RMSE for regression; higher is better).  ``z`` is the paired z statistic of the per-row
loss reduction (log loss or squared error) on the OOF rows and ``fold_gains`` the gain on
each fold's held-out rows alone: what :mod:`.search` uses to refuse lucky candidates.
Results are cached by canonical postfix text (a set by its sorted texts).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ..ir import Expr, evaluate, features_of, parse_postfix, to_postfix
from ..search import metrics

CLIP_Q = 0.005


@dataclass
class Evaluation:
    """The real score of one program or set of programs."""

    key: str                        # canonical postfix (a set: texts joined by " | ")
    gain: float                     # OOF metric − legacy metric (0.0 for a degenerate feature)
    metric: float                   # OOF metric of legacy + correction
    legacy: float                   # reference: legacy (recalibrated out of fold) metric on the same rows
    z: float                        # paired z of the per-row loss reduction
    fold_gains: tuple[float, ...]   # gain on each fold's held-out rows
    valid: bool = True              # False: constant / unusable feature (see message)
    message: str = ""
    seconds: float = 0.0
    loss_rows: np.ndarray | None = field(default=None, repr=False)   # OOF loss per row (sets only)

    @property
    def folds_positive(self) -> int:
        return int(sum(g > 0 for g in self.fold_gains))


def stratified_folds(y: np.ndarray, k: int = 5, *, seed: int = 0, task: str = "binary") -> list[np.ndarray]:
    """``k`` disjoint held-out index arrays covering every row, stratified on ``y``.

    Binary tasks stratify on the label, regression on deciles of ``y``.  Deterministic
    for a seed.
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.size
    if k < 2 or k > n:
        raise ValueError(f"need 2 <= folds <= rows, got {k} folds for {n} rows")
    rng = np.random.default_rng(seed)
    if task == "binary":
        strata = (y > 0.5).astype(int)
    else:
        edges = np.quantile(y, np.linspace(0, 1, 11)[1:-1])
        strata = np.searchsorted(edges, y, side="right")
    fold_of = np.empty(n, dtype=int)
    offset = 0
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        idx = idx[rng.permutation(idx.size)]
        fold_of[idx] = (np.arange(idx.size) + offset) % k
        offset += idx.size
    return [np.flatnonzero(fold_of == f) for f in range(k)]


def normalize_folds(folds, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds as ``(train, held_out)`` index pairs.

    Accepts a list of ``(train, held_out)`` pairs, or a list of held-out arrays (each
    fold then trains on the other folds' rows).
    """
    folds = list(folds)
    if len(folds) < 2:
        raise ValueError("need at least 2 folds")
    pairs = []
    if all(isinstance(f, tuple) and len(f) == 2 for f in folds):
        for tr, va in folds:
            pairs.append((np.asarray(tr, dtype=np.int64), np.asarray(va, dtype=np.int64)))
    else:
        held = [np.asarray(f, dtype=np.int64) for f in folds]
        every = np.concatenate(held)
        if np.unique(every).size != every.size:
            raise ValueError("held-out folds overlap")
        for i, va in enumerate(held):
            tr = np.concatenate([h for j, h in enumerate(held) if j != i])
            pairs.append((np.sort(tr), np.sort(va)))
    for tr, va in pairs:
        if tr.size == 0 or va.size == 0 or tr.max(initial=-1) >= n or va.max(initial=-1) >= n:
            raise ValueError("a fold has no rows or an index past the data")
        if np.intersect1d(tr, va).size:
            raise ValueError("a fold trains on rows it holds out")
    return pairs


def _scaler(v: np.ndarray, tr: np.ndarray) -> tuple[float, float, float, float, bool] | None:
    """(clip low, clip high, mean, std, has missing) of one feature on the training rows ``tr``; None: constant."""
    finite = np.isfinite(v[tr])
    ft = v[tr][finite]
    if ft.size < 2:
        return None
    lo, hi = np.quantile(ft, [CLIP_Q, 1.0 - CLIP_Q])
    if not hi > lo:
        lo, hi = float(ft.min()), float(ft.max())
        if not hi > lo:
            return None
    ct = np.clip(ft, lo, hi)
    mu, sd = float(ct.mean()), float(ct.std())
    if not sd > 1e-12:
        return None
    return float(lo), float(hi), mu, sd, bool(not finite.all())


def _apply(v: np.ndarray, scaler, hinge: bool) -> np.ndarray:
    """The correction's columns of one feature: ``z``, ``max(z, 0)``, the missing indicator."""
    lo, hi, mu, sd, miss = scaler
    finite = np.isfinite(v)
    z = np.where(finite, (np.clip(np.where(finite, v, lo), lo, hi) - mu) / sd, 0.0)
    cols = [z]
    if hinge:
        cols.append(np.maximum(z, 0.0))
    if miss:
        cols.append((~finite).astype(np.float64))
    return np.column_stack(cols)


def _design(v: np.ndarray, tr: np.ndarray, hinge: bool) -> np.ndarray | None:
    """Columns of one feature for every row, scaled on the training rows ``tr`` (None: constant)."""
    sc = _scaler(v, tr)
    return None if sc is None else _apply(v, sc, hinge)


def _fit_logistic(X: np.ndarray, y: np.ndarray, offset: np.ndarray, ridge: float, steps: int) -> np.ndarray:
    n, p = X.shape
    A = np.column_stack([np.ones(n), X])
    w = np.zeros(p + 1)
    pen = np.full(p + 1, ridge)
    pen[0] = 1e-6
    for _ in range(steps):
        eta = offset + A @ w
        prob = metrics.sigmoid(eta)
        g = A.T @ (prob - y) + pen * w
        h = (A * (prob * (1.0 - prob))[:, None]).T @ A + np.diag(pen)
        try:
            delta = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            break
        w -= delta
        if np.max(np.abs(delta)) < 1e-8:
            break
    return w


def _fit_ridge(X: np.ndarray, r: np.ndarray, ridge: float) -> np.ndarray:
    n, p = X.shape
    A = np.column_stack([np.ones(n), X])
    pen = np.full(p + 1, ridge)
    pen[0] = 1e-6
    return np.linalg.solve(A.T @ A + np.diag(pen), A.T @ r)


class GainEvaluator:
    """Cross-fitted gain of legacy + candidate features (see the module docstring).

    Parameters
    ----------
    X : the compile rows (numeric columns; others are ignored).
    y : labels (0/1 for binary).
    legacy_margin : the frozen legacy model's margin on ``X`` (log-odds for binary).
    task : ``"binary"`` or ``"regression"``.
    folds : held-out index arrays or ``(train, held_out)`` pairs over ``X``'s rows.
    ridge : L2 penalty of the correction's coefficients (standardised columns).
    newton_steps : Newton iterations of the logistic fit.
    hinge : add ``max(z, 0)`` to each feature's columns.
    """

    def __init__(self, X: pd.DataFrame, y, legacy_margin, task: str, folds, *, ridge: float = 2.0,
                 newton_steps: int = 8, hinge: bool = True):
        self.task = metrics.check_task(task)
        self.y = np.asarray(y, dtype=np.float64)
        self.m = np.asarray(legacy_margin, dtype=np.float64)
        n = self.y.size
        if len(X) != n or self.m.size != n:
            raise ValueError(f"X, y and legacy_margin disagree on the number of rows ({len(X)}, {n}, {self.m.size})")
        self.columns = {c: X[c].to_numpy(np.float64) for c in X.columns
                        if pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c])}
        self.folds = normalize_folds(folds, n)
        self.rows = np.sort(np.concatenate([va for _, va in self.folds]))
        if np.unique(self.rows).size != self.rows.size:
            raise ValueError("held-out folds overlap")
        self.ridge, self.newton_steps, self.hinge = float(ridge), int(newton_steps), bool(hinge)
        # the reference every gain is measured against: legacy recalibrated out of fold (an
        # intercept fitted on each fold's training rows), so that no feature is credited
        # with what a constant shift of the legacy margin would do
        self.base = self.m.copy()
        empty = np.zeros((n, 0))
        for tr, va in self.folds:
            if self.task == "binary":
                w = _fit_logistic(empty[tr], self.y[tr], self.m[tr], self.ridge, self.newton_steps)
            else:
                w = _fit_ridge(empty[tr], self.y[tr] - self.m[tr], self.ridge)
            self.base[va] = self.m[va] + w[0]
        yr, br = self.y[self.rows], self.base[self.rows]
        self.legacy_raw = metrics.score(self.task, yr, self.m[self.rows])
        self.legacy = metrics.score(self.task, yr, br)
        self.legacy_loss = metrics.loss_rows(self.task, yr, br)
        self.legacy_fold = [metrics.score(self.task, self.y[va], self.base[va]) for _, va in self.folds]
        self._cache: dict[str, Evaluation] = {}
        self._values: dict[str, np.ndarray] = {}
        self.calls = 0            # real evaluations computed (cache misses)
        self.seconds = 0.0

    # --- feature values ------------------------------------------------------------
    def values(self, expr: Expr) -> np.ndarray:
        """The feature's values on every compile row (the IR's numpy reference evaluator)."""
        key = to_postfix(expr)
        v = self._values.get(key)
        if v is None:
            missing = [f for f in features_of(expr) if f not in self.columns]
            if missing:
                raise KeyError(f"feature(s) not in the data: {missing}")
            v = np.asarray(evaluate(expr, self.columns), dtype=np.float64)
            if len(self._values) < 4096:
                self._values[key] = v
        return v

    def cached(self, key: str) -> Evaluation | None:
        return self._cache.get(key)

    @staticmethod
    def key_of(exprs: Sequence[Expr] | Expr) -> str:
        if isinstance(exprs, Expr):
            return to_postfix(exprs)
        return " | ".join(sorted(to_postfix(e) for e in exprs))

    # --- scoring -------------------------------------------------------------------
    def score(self, expr: Expr | str) -> Evaluation:
        """Gain of legacy + one feature (cached by its postfix text)."""
        if isinstance(expr, str):
            expr = parse_postfix(expr)
        return self.score_set([expr])

    def score_set(self, exprs: Sequence[Expr], *, baseline: Evaluation | None = None,
                  keep_loss: bool = False) -> Evaluation:
        """Gain of legacy + all of ``exprs`` jointly.

        With ``baseline`` (an evaluation made with ``keep_loss``), ``z`` is the paired z
        of the loss reduction *against the baseline's* OOF losses, and ``gain`` is still
        measured against legacy (the caller subtracts ``baseline.gain`` for the increment).
        """
        exprs = list(exprs)
        key = self.key_of(exprs)
        hit = self._cache.get(key)
        if hit is not None and baseline is None and (hit.loss_rows is not None or not keep_loss):
            return hit
        start = time.perf_counter()
        self.calls += 1
        try:
            vals = [self.values(e) for e in exprs]
        except Exception as exc:  # noqa: BLE001 - a program the data cannot evaluate
            ev = Evaluation(key, 0.0, self.legacy, self.legacy, 0.0, tuple(0.0 for _ in self.folds), False,
                            f"cannot evaluate: {exc}")
            self._cache[key] = ev
            return ev
        oof = self.m.copy()
        for tr, va in self.folds:
            cols = []
            for v in vals:
                d = _design(v, tr, self.hinge)
                if d is None:
                    ev = Evaluation(key, 0.0, self.legacy, self.legacy, 0.0, tuple(0.0 for _ in self.folds), False,
                                    "constant on a fold's training rows")
                    ev.seconds = time.perf_counter() - start
                    self._cache[key] = ev
                    self.seconds += ev.seconds
                    return ev
                cols.append(d)
            D = np.column_stack(cols)
            if self.task == "binary":
                w = _fit_logistic(D[tr], self.y[tr], self.m[tr], self.ridge, self.newton_steps)
            else:
                w = _fit_ridge(D[tr], self.y[tr] - self.m[tr], self.ridge)
            oof[va] = self.m[va] + w[0] + D[va] @ w[1:]
        rows = self.rows
        metric = metrics.score(self.task, self.y[rows], oof[rows])
        loss = metrics.loss_rows(self.task, self.y[rows], oof[rows])
        before = baseline.loss_rows if baseline is not None and baseline.loss_rows is not None else self.legacy_loss
        z = metrics.paired_z(before, loss)
        fold_gains = tuple(metrics.score(self.task, self.y[va], oof[va]) - leg
                           for (_, va), leg in zip(self.folds, self.legacy_fold))
        ev = Evaluation(key, float(metric - self.legacy), float(metric), float(self.legacy), float(z),
                        tuple(float(g) for g in fold_gains), True, "",
                        time.perf_counter() - start, loss if keep_loss else None)
        self.seconds += ev.seconds
        if baseline is None:
            self._cache[key] = ev
        return ev

    def oof_margin(self, exprs: Sequence[Expr]) -> np.ndarray:
        """The OOF margin of legacy + ``exprs`` on every row (legacy where a row is in no fold)."""
        vals = [self.values(e) for e in exprs]
        oof = self.m.copy()
        for tr, va in self.folds:
            D = np.column_stack([_design(v, tr, self.hinge) for v in vals])
            if self.task == "binary":
                w = _fit_logistic(D[tr], self.y[tr], self.m[tr], self.ridge, self.newton_steps)
            else:
                w = _fit_ridge(D[tr], self.y[tr] - self.m[tr], self.ridge)
            oof[va] = self.m[va] + w[0] + D[va] @ w[1:]
        return oof


def fit_correction(values: Sequence[np.ndarray], y, legacy_margin, task: str, *,
                   ridge: float = 2.0, newton_steps: int = 8, hinge: bool = True):
    """Fit the evaluation's correction on *all* given rows; returns ``predict(values) -> margin delta``.

    For benchmarks and reports (what the chosen features are worth on rows never seen);
    the shipped bundle refits its own aggregator on the transforms.
    """
    vals = [np.asarray(v, dtype=np.float64) for v in values]
    y = np.asarray(y, dtype=np.float64)
    m = np.asarray(legacy_margin, dtype=np.float64)
    every = np.arange(y.size)
    scalers = [_scaler(v, every) for v in vals]
    keep = [i for i, s in enumerate(scalers) if s is not None]
    if not keep:
        return lambda new_values: np.zeros(len(np.asarray(new_values[0])))
    D = np.column_stack([_apply(vals[i], scalers[i], hinge) for i in keep])
    if task == "binary":
        w = _fit_logistic(D, y, m, ridge, newton_steps)
    else:
        w = _fit_ridge(D, y - m, ridge)

    def predict(new_values: Sequence[np.ndarray]) -> np.ndarray:
        nv = [np.asarray(v, dtype=np.float64) for v in new_values]
        Dn = np.column_stack([_apply(nv[i], scalers[i], hinge) for i in keep])
        return w[0] + Dn @ w[1:]

    return predict
