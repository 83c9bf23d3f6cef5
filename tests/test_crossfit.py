"""Cross-fitting core: folds, the weight/shape split, the closed-form weights, shrinkage, DeLong."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from fecc.errors import UserError
from fecc.ir import Binary, Const, Feature, Param, Unary, Where, evaluate
from fecc.ir.postfix import parse_postfix
from fecc.llm.base import ParamRange
from fecc.search.crossfit import Fitter, best_shrink, linear_form, make_folds, solve_weights
from fecc.search.significance import delong, paired_loss


def test_folds_cover_every_row_once_per_cut_and_are_stratified():
    y = np.array([0] * 800 + [1] * 200, dtype=float)
    f = make_folds(y, task="binary", k=5, seed=3)
    assert f.repeats == 2 and f.n_fits == 10  # 1000 rows: cut twice
    for r in range(f.repeats):
        tests = np.concatenate([f.test(r * 5 + j) for j in range(5)])
        assert sorted(tests.tolist()) == list(range(1000))
    for j in range(f.n_fits):
        assert not set(f.test(j)) & set(f.train(j))
        assert y[f.test(j)].mean() == pytest.approx(0.2)
    g = make_folds(y, task="binary", k=5, seed=3)
    assert (f.assign == g.assign).all()
    assert not (f.assign[0] == f.assign[1]).all()
    assert make_folds(np.r_[y, y, y], task="binary", seed=0).repeats == 1


def test_folds_refuse_what_cannot_be_cross_fitted():
    with pytest.raises(UserError, match="single class"):
        make_folds(np.zeros(500), task="binary", seed=0)
    with pytest.raises(UserError, match="3 row"):
        make_folds(np.r_[np.zeros(500), np.ones(3)], task="binary", seed=0)
    with pytest.raises(UserError, match="constant"):
        make_folds(np.full(500, 2.5), task="regression", seed=0)
    with pytest.raises(UserError, match="at least 50"):
        make_folds(np.arange(20.0), task="regression", seed=0)


def test_linear_form_finds_weights_and_keeps_the_rest():
    x, z = Feature("x"), Feature("z")
    expr = Binary("add", Binary("add", Param("c"), Binary("mul", Param("a"), Binary("sub", x, Const(1.0)))),
                  Binary("sub", Where(Binary("gt", z, Param("t")), Param("b"), Const(0.0)),
                         Binary("mul", Param("d"), Unary("tanh", Binary("div", x, Param("d"))))))
    form = linear_form(expr)
    assert form.weights == ("c", "a", "b")
    assert form.rest is not None  # @d appears twice: not a weight
    data = {"x": np.linspace(-2, 2, 9), "z": np.linspace(0, 1, 9)}
    values = {"a": 0.7, "b": -1.2, "c": 0.3, "d": 1.5, "t": 0.4}
    rebuilt = evaluate(form.rest, data, values) + sum(
        values[w] * evaluate(b, data, values) for w, b in zip(form.weights, form.bases))
    np.testing.assert_allclose(rebuilt, evaluate(expr, data, values))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.sampled_from(["@a $x mul @b $z mul add", "$x @t gt @a 0 where @c add",
                        "@a $x @k sub 0 max mul $z neg @b mul sub", "@a @b $x mul add $z @c mul sub"]),
       st.lists(st.floats(-3, 3), min_size=4, max_size=4))
def test_linear_form_reconstructs_every_expression(text, vals):
    expr = parse_postfix(text)
    form = linear_form(expr)
    names = ("a", "b", "c", "t", "k")
    values = dict(zip(names, vals + [0.5]))
    data = {"x": np.linspace(-2, 2, 7), "z": np.linspace(3, -1, 7)}
    rest = evaluate(form.rest, data, values) if form.rest is not None else 0.0
    rebuilt = rest + sum(values[w] * evaluate(b, data, values) for w, b in zip(form.weights, form.bases))
    np.testing.assert_allclose(rebuilt, evaluate(expr, data, values), atol=1e-12)


def test_solve_weights_matches_a_penalised_logistic_regression():
    rng = np.random.default_rng(0)
    n = 3000
    B = np.column_stack([np.ones(n), rng.normal(size=n), rng.uniform(size=n)])
    offset = rng.normal(0, 0.5, n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(offset + 0.3 + 0.8 * B[:, 1] - B[:, 2])))).astype(float)
    w = solve_weights("binary", y, offset, B, ridge=0.0)
    np.testing.assert_allclose(w, [0.3, 0.8, -1.0], atol=0.2)
    # same optimum as sklearn without penalty (offset folded in by a large-C fit on augmented data is
    # awkward; compare instead the gradient at the optimum, which must vanish)
    p = 1 / (1 + np.exp(-(offset + B @ w)))
    assert np.abs(B.T @ (p - y)).max() < 1e-4 * n
    # no offset: equals sklearn's unpenalised fit
    sk = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-10, max_iter=1000).fit(B, y)
    w0 = solve_weights("binary", y, np.zeros(n), B, ridge=0.0, newton_steps=30)
    np.testing.assert_allclose(w0, sk.coef_[0], atol=1e-4)
    # regression: least squares; a ridge shrinks toward zero
    yr = offset + 2.0 * B[:, 1] + rng.normal(0, 0.1, n)
    np.testing.assert_allclose(solve_weights("regression", yr, offset, B, 0.0), [0, 2, 0], atol=0.02)
    assert abs(solve_weights("regression", yr, offset, B, 1e5)[1]) < 2.0


def test_fitter_tunes_shape_constants_and_solves_weights():
    rng = np.random.default_rng(1)
    n = 2000
    x = rng.uniform(-2, 2, n)
    offset = np.zeros(n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(1.5 * np.maximum(x - 0.5, 0) - 0.2)))).astype(float)
    expr = parse_postfix("@c @a $x @k sub 0 max mul add")
    fitter = Fitter("binary", expr, {"k": ParamRange(-1.5, 1.5, init=0.0), "a": ParamRange(-3, 3, init=0),
                                     "c": ParamRange(-3, 3, init=0)}, ridge=1.0, trials=16)
    assert fitter.form.weights == ("c", "a") and fitter.shape_params == ["k"]
    got = fitter.fit(y, offset, {"x": x}, frozen={}, seed=0)
    assert abs(got["k"] - 0.5) < 0.4 and got["a"] > 0.8
    # frozen shape constants stay where they are
    assert fitter.fit(y, offset, {"x": x}, frozen={"k": 1.0}, seed=0)["k"] == 1.0
    assert fitter.fit(y, offset, {"x": x}, frozen={}, seed=0) == got  # seeded


def test_best_shrink_picks_the_out_of_fold_strength():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 5000).astype(float)
    base = np.zeros(5000)
    noise = rng.normal(0, 1, 5000)
    s, _ = best_shrink("binary", y, base, noise)
    assert s <= 0.1  # pure noise: (nearly) strength 0
    assert best_shrink("binary", y, base, -2.0 * (y - 0.5))[0] == 0.0  # harmful: dropped
    signal = 2.0 * (y - 0.5)
    assert best_shrink("binary", y, base, signal)[0] == 1.0
    assert 0.0 < best_shrink("binary", y, base, 0.5 * signal + 3.0 * noise)[0] < 0.6


def test_delong_agrees_with_auc_and_detects_a_real_difference():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 1500).astype(float)
    a = (y - 0.5) + rng.normal(0, 1.2, 1500)
    b = a + 0.6 * (y - 0.5) + rng.normal(0, 0.3, 1500)
    t = delong(y, a, b)
    assert t.legacy == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert t.new == pytest.approx(roc_auc_score(y, b), abs=1e-12)
    assert t.gain > 0 and t.p_value < 1e-3 and t.interval[0] < t.gain < t.interval[1]
    same = delong(y, a, a)
    assert same.gain == 0 and same.p_value == 0.5
    rev = delong(y, b, a)
    assert rev.p_value > 0.99
    # variance matches a bootstrap of the AUC difference
    boots = []
    for i in range(300):
        idx = np.random.default_rng(i).integers(0, 1500, 1500)
        boots.append(roc_auc_score(y[idx], b[idx]) - roc_auc_score(y[idx], a[idx]))
    assert t.se == pytest.approx(np.std(boots), rel=0.25)


def test_paired_loss_for_rmse_reports_the_rmse_gain():
    rng = np.random.default_rng(4)
    e0 = rng.normal(0, 1.0, 4000) ** 2
    e1 = e0 * 0.8
    t = paired_loss(e0, e1, metric="rmse")
    assert t.legacy == pytest.approx(np.sqrt(e0.mean()))
    assert t.gain == pytest.approx(np.sqrt(e0.mean()) - np.sqrt(e1.mean()))
    assert t.p_value < 1e-6
