"""The real score of a transform: cross-fitted gain of legacy + feature, decided out of fold."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fecc.ir import parse_postfix
from fecc.search import metrics
from fecc.transforms.evaluate import GainEvaluator, fit_correction, normalize_folds, stratified_folds


def _planted(n=2000, seed=0, signal=True):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(1, 6)})
    m = 0.8 * X["x3"].to_numpy()                      # legacy ignores x1 * x2
    logit = m + (1.5 * X["x1"] * X["x2"]).to_numpy() if signal else m
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return X, y, m


def test_stratified_folds_cover_every_row_once_and_keep_the_class_balance():
    y = np.r_[np.ones(100), np.zeros(400)]
    folds = stratified_folds(y, 5, seed=3)
    every = np.concatenate(folds)
    assert np.array_equal(np.sort(every), np.arange(500))
    assert all(abs(y[f].mean() - 0.2) < 0.02 for f in folds)
    assert all(np.array_equal(a, b) for a, b in zip(folds, stratified_folds(y, 5, seed=3)))
    reg = stratified_folds(np.linspace(0, 1, 100), 4, task="regression")
    assert sorted(len(f) for f in reg) == [25, 25, 25, 25]
    with pytest.raises(ValueError):
        stratified_folds(y, 1)


def test_folds_as_held_out_arrays_or_pairs():
    held = [np.arange(0, 5), np.arange(5, 10)]
    pairs = normalize_folds(held, 10)
    assert np.array_equal(pairs[0][0], np.arange(5, 10)) and np.array_equal(pairs[0][1], np.arange(5))
    same = normalize_folds([(p[0], p[1]) for p in pairs], 10)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(pairs, same))
    with pytest.raises(ValueError):
        normalize_folds([np.arange(5), np.arange(3, 8)], 10)        # overlapping
    with pytest.raises(ValueError):
        normalize_folds([(np.arange(5), np.arange(4, 6))], 10)      # one fold only


def test_planted_interaction_has_a_large_positive_oof_gain():
    X, y, m = _planted()
    ev = GainEvaluator(X, y, m, "binary", stratified_folds(y, 5, seed=0))
    assert ev.legacy_raw == pytest.approx(metrics.auc(y, m))
    assert abs(ev.legacy - ev.legacy_raw) < 0.005           # recalibration barely moves the AUC
    good = ev.score("$x1 $x2 mul")
    assert good.valid and good.gain > 0.08 and good.z > 5 and good.folds_positive == 5
    noise = ev.score("$x4 $x5 mul")
    assert noise.gain < 0.005 and noise.z < 2
    # a constant feature is degenerate, not an error
    const = ev.score(parse_postfix("$x1 $x1 sub"))
    assert not const.valid and const.gain == 0.0
    # cached by postfix text: a second call costs nothing
    calls = ev.calls
    assert ev.score("$x1 $x2 mul") is good and ev.calls == calls


def test_only_training_rows_fit_the_correction():
    """Changing the labels of one fold's held-out rows cannot change that fold's fitted correction."""
    X, y, m = _planted(600)
    folds = stratified_folds(y, 3, seed=0)
    a = GainEvaluator(X, y, m, "binary", folds)
    y2 = y.copy()
    y2[folds[0]] = 1 - y2[folds[0]]
    b = GainEvaluator(X, y2, m, "binary", folds)
    expr = parse_postfix("$x1 $x2 mul")
    oof_a, oof_b = a.oof_margin([expr]), b.oof_margin([expr])
    assert np.allclose(oof_a[folds[0]], oof_b[folds[0]])          # fold 0 trains on folds 1, 2 only
    assert not np.allclose(oof_a[folds[1]], oof_b[folds[1]])


def test_sets_and_baselines():
    X, y, m = _planted()
    ev = GainEvaluator(X, y, m, "binary", stratified_folds(y, 5, seed=0))
    e1 = parse_postfix("$x1 $x2 mul")
    one = ev.score_set([e1], keep_loss=True)
    assert one.loss_rows is not None and one.loss_rows.size == y.size
    two = ev.score_set([e1, parse_postfix("$x4")], baseline=one)
    assert two.gain - one.gain < 0.002 and two.z < 2              # x4 adds nothing on top
    assert GainEvaluator.key_of([parse_postfix("$x4"), e1]) == "$x1 $x2 mul | $x4"


def test_regression_gain_is_minus_rmse_difference_and_nan_inputs_are_fine():
    """Gains are measured against legacy recalibrated out of fold: a shift earns no feature credit."""
    rng = np.random.default_rng(0)
    n = 1500
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    X.loc[rng.random(n) < 0.1, "a"] = np.nan
    m = X["b"].to_numpy()
    y = m + 2.0 * np.nan_to_num(X["a"].to_numpy()) ** 2 + 0.1 * rng.normal(size=n)
    ev = GainEvaluator(X, y, m, "regression", stratified_folds(y, 5, task="regression"))
    assert ev.legacy_raw == pytest.approx(-np.sqrt(np.mean((y - m) ** 2)))
    assert ev.legacy > ev.legacy_raw + 0.4                 # y is shifted by 2 E[a^2]: the intercept fixes it
    sq = ev.score("$a square")
    assert sq.valid and sq.gain > 0.5 and sq.metric == pytest.approx(ev.legacy + sq.gain)
    assert ev.score("$b").gain < 0.01


def test_fit_correction_on_all_rows_predicts_new_rows():
    X, y, m = _planted(3000)
    v = (X["x1"] * X["x2"]).to_numpy()
    predict = fit_correction([v[:2000]], y[:2000], m[:2000], "binary")
    delta = predict([v[2000:]])
    assert metrics.auc(y[2000:], m[2000:] + delta) > metrics.auc(y[2000:], m[2000:]) + 0.05


def test_bad_inputs():
    X, y, m = _planted(100)
    with pytest.raises(ValueError):
        GainEvaluator(X, y[:50], m, "binary", stratified_folds(y, 3))
    with pytest.raises(ValueError):
        GainEvaluator(X, y, m, "multiclass", stratified_folds(y, 3))
    ev = GainEvaluator(X, y, m, "binary", stratified_folds(y, 3))
    missing = ev.score("$nope")
    assert not missing.valid and "cannot evaluate" in missing.message
