"""Compiled trees vs the library that trained them, on the decision path's edges.

Each model is trained here on generated data (fixed seeds), saved, lowered once per
module with :func:`fecc.lower.lower_trees` and loaded with the runtime's
:class:`fecc_runtime.trees.TreeEnsemble`.  Rows are made of values exactly on split
thresholds, the float32 just below/above them, NaN, +-inf, +-1e38, 0 and -0.0.

* batch (array engine) margins must equal ``xgboost.Booster.inplace_predict`` bit for
  bit: same path, same float32 additions in the same order; so must single rows
  through the node arrays (``row_engine="array"``, the same steps and additions);
* tl2cgen's code (``row_engine="ifelse"``) takes the same path but adds leaves through
  double literals with the base score last, so its margins may differ in the last
  float32 bits: compared to 1e-6 relative;
* transformed outputs (sigmoid, softmax) within 1e-6 absolute.

``inplace_predict`` is the reference because ``DMatrix`` refuses inf.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _trees_util import SPECIAL, edge_matrix, edge_values, make_xy, thresholds_by_feature

xgb = pytest.importorskip("xgboost")
pytest.importorskip("treelite")
pytest.importorskip("tl2cgen")

from fecc.frontend import load_forest  # noqa: E402
from fecc.lower import lower_trees  # noqa: E402
from fecc_runtime.trees import TreeEnsemble  # noqa: E402

pytestmark = pytest.mark.backend_trees_c

N_FEATURE = 6


def _train(tmp: Path, params: dict, X, y, rounds: int, name: str):
    booster = xgb.train({"seed": 0, "nthread": 1, **params}, xgb.DMatrix(X, y), num_boost_round=rounds)
    path = tmp / f"{name}.json"
    booster.save_model(path)
    # reload: the bundle is built from the file, so the reference must be too
    return path, xgb.Booster(model_file=str(path))


def _compiled(tmp_path_factory, name: str, params: dict, rounds: int, y_fn=None):
    tmp = tmp_path_factory.mktemp(name)
    X, y = make_xy(3000, N_FEATURE, seed=1)
    if y_fn is not None:
        y = y_fn(y)
    path, booster = _train(tmp, params, X, y, rounds, name)
    entry = lower_trees(load_forest(path), tmp / "bundle", name="legacy")
    ens = TreeEnsemble(tmp / "bundle", entry)
    return {"booster": booster, "entry": entry, "ens": ens, "ifelse": _ifelse(tmp / "bundle", entry),
            "thresholds": thresholds_by_feature(path, N_FEATURE)}


def _ifelse(bundle: Path, entry: dict) -> TreeEnsemble:
    """The same library with single rows through tl2cgen's code."""
    return TreeEnsemble(bundle, {**entry, "row_engine": "ifelse"})


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return _compiled(tmp_path_factory, "binary", {"objective": "binary:logistic", "max_depth": 4}, 20,
                     lambda y: (y > 0.5).astype(np.float32))


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    return _compiled(tmp_path_factory, "regression", {"objective": "reg:squarederror", "max_depth": 5}, 20)


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory):
    return _compiled(tmp_path_factory, "multiclass",
                     {"objective": "multi:softprob", "num_class": 3, "max_depth": 3}, 8,
                     lambda y: np.digitize(y, [0.0, 1.0]).astype(np.float32))


@pytest.fixture(scope="module")
def categorical(tmp_path_factory):
    """pandas categories; the runtime takes the codes (position in the categories)."""
    pd = pytest.importorskip("pandas")
    tmp = tmp_path_factory.mktemp("categorical")
    rng = np.random.default_rng(2)
    n = 3000
    letters = list("abcdefghijklmnopqrstuvwxyz") + [f"z{i}" for i in range(14)]  # 40 > 32: two words
    df = pd.DataFrame({
        "x": rng.normal(size=n).astype(np.float32),
        "c": pd.Categorical(rng.choice(letters, n), categories=letters),
        "d": pd.Categorical(rng.choice(["u", "v", "w"], n)),
    })
    code = df["c"].cat.codes.to_numpy()
    y = ((code % 3 == 0) ^ (df["x"].to_numpy() > 0) ^ (df["d"].cat.codes.to_numpy() == 1)).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "max_cat_to_onehot": 1, "seed": 0},
                        xgb.DMatrix(df, y, enable_categorical=True), num_boost_round=15)
    path = tmp / "categorical.json"
    booster.save_model(path)
    entry = lower_trees(load_forest(path), tmp / "bundle", name="legacy")
    X = np.column_stack([df["x"], code, df["d"].cat.codes]).astype(np.float32)
    return {"booster": xgb.Booster(model_file=str(path)), "entry": entry, "ens": TreeEnsemble(tmp / "bundle", entry),
            "ifelse": _ifelse(tmp / "bundle", entry), "X": X, "df": df, "letters": letters}


def _ref(booster, X, margin: bool) -> np.ndarray:
    return booster.inplace_predict(X, predict_type="margin" if margin else "value")


def _check_all(m, X: np.ndarray) -> None:
    """Batch and array single-row margins exact, if/else single-row margins to 1e-6
    relative, outputs to 1e-6."""
    booster, ens = m["booster"], m["ens"]
    assert ens.row_engine == "array"
    want_margin = _ref(booster, X, True).astype(np.float64).reshape(len(X), -1)
    want_out = _ref(booster, X, False).astype(np.float64).reshape(len(X), -1)
    got_margin = ens.predict(X, margin=True).reshape(len(X), -1)
    np.testing.assert_array_equal(got_margin, want_margin)
    np.testing.assert_allclose(ens.predict(X).reshape(len(X), -1), want_out, rtol=0, atol=1e-6)
    rows_margin = np.stack([np.atleast_1d(ens.predict_row(x, margin=True)) for x in X])
    np.testing.assert_array_equal(rows_margin, want_margin)
    rows_out = np.stack([np.atleast_1d(ens.predict_row(x)) for x in X])
    np.testing.assert_allclose(rows_out, want_out, rtol=0, atol=1e-6)
    ifelse = m["ifelse"]
    rows_margin = np.stack([np.atleast_1d(ifelse.predict_row(x, margin=True)) for x in X])
    np.testing.assert_allclose(rows_margin, want_margin, rtol=1e-6, atol=1e-6)
    rows_out = np.stack([np.atleast_1d(ifelse.predict_row(x)) for x in X])
    np.testing.assert_allclose(rows_out, want_out, rtol=0, atol=1e-6)


MODELS = ["binary", "regression", "multiclass"]


@pytest.mark.parametrize("model", MODELS)
def test_edge_matrix_matches_xgboost(model, request):
    """2000 rows made only of thresholds, their float32 neighbours and special values."""
    m = request.getfixturevalue(model)
    _check_all(m, edge_matrix(m["thresholds"], 2000, seed=3))


@pytest.mark.parametrize("model", MODELS)
def test_special_values_everywhere(model, request):
    """A row of one special value in every feature, for each special value."""
    m = request.getfixturevalue(model)
    _check_all(m, np.repeat(SPECIAL[:, None], N_FEATURE, axis=1).astype(np.float32))


@st.composite
def _rows(draw, thresholds: list[np.ndarray]):
    n = draw(st.integers(1, 12))
    cols = []
    for t in thresholds:
        pool = edge_values(t) if t.size else SPECIAL
        value = st.one_of(st.sampled_from(pool.tolist()), st.floats(width=32))
        cols.append(draw(st.lists(value, min_size=n, max_size=n)))
    return np.array(cols, dtype=np.float32).T.copy()


@pytest.mark.parametrize("model", MODELS)
@given(data=st.data())
def test_hypothesis_rows_match_xgboost(model, request, data):
    m = request.getfixturevalue(model)
    _check_all(m, data.draw(_rows(m["thresholds"])))


def test_manifest_describes_model(binary, multiclass):
    assert binary["entry"]["postprocess"] == "sigmoid"
    assert binary["entry"]["num_class"] == 1 and binary["entry"]["num_feature"] == N_FEATURE
    assert multiclass["entry"]["postprocess"] == "softmax" and multiclass["entry"]["num_class"] == 3
    assert multiclass["ens"].predict(np.zeros((4, N_FEATURE), np.float32)).shape == (4, 3)


# ---- categorical splits ------------------------------------------------------------


def test_categorical_codes_match_dataframe(categorical):
    """Codes in, same margins as XGBoost fed the DataFrame itself."""
    c = categorical
    assert c["entry"]["has_categorical"]
    want = c["booster"].inplace_predict(c["df"], predict_type="margin").astype(np.float64)
    np.testing.assert_array_equal(c["ens"].predict(c["X"], margin=True), want)
    assert c["entry"]["categories"]["1"] == c["letters"]  # code -> category, for the caller


@given(data=st.data())
def test_categorical_edges_match_xgboost(categorical, data):
    """Unseen codes, negative, fractional, huge, NaN and inf in the category columns."""
    weird = [np.nan, -1.0, -0.5, -0.0, 0.0, 0.5, 2.5, 31.0, 32.0, 33.0, 39.0, 40.0, 63.0, 64.0,
             1000.0, 16777216.0, 16777218.0, 1e38, np.inf, -np.inf]
    n = data.draw(st.integers(1, 10))
    X = categorical["X"][data.draw(st.lists(st.integers(0, 2999), min_size=n, max_size=n))].copy()
    for col in (1, 2):
        X[:, col] = data.draw(st.lists(st.sampled_from(weird), min_size=n, max_size=n))
    _check_all(categorical, X)


# ---- LightGBM -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def lightgbm_model(tmp_path_factory):
    lgb = pytest.importorskip("lightgbm")
    tmp = tmp_path_factory.mktemp("lightgbm")
    X, y = make_xy(3000, N_FEATURE, seed=4)
    booster = lgb.train({"objective": "binary", "num_leaves": 15, "verbose": -1, "seed": 0,
                         "deterministic": True, "num_threads": 1},
                        lgb.Dataset(X, (y > 0.5).astype(np.float32)), num_boost_round=20)
    path = tmp / "model.txt"
    booster.save_model(str(path))
    booster = lgb.Booster(model_file=str(path))
    entry = lower_trees(load_forest(path), tmp / "bundle", name="legacy")
    thr = [[] for _ in range(N_FEATURE)]
    dump = booster.dump_model()
    stack = [t["tree_structure"] for t in dump["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            thr[node["split_feature"]].append(node["threshold"])
            stack += [node["left_child"], node["right_child"]]
    return {"booster": booster, "entry": entry, "ens": TreeEnsemble(tmp / "bundle", entry),
            "ifelse": _ifelse(tmp / "bundle", entry),
            "thresholds": [np.unique(np.asarray(t, dtype=np.float32)) for t in thr]}


def test_lightgbm_float32_rows_match(lightgbm_model):
    """float32 rows (widened exactly to float64, as LightGBM does) on/next to thresholds."""
    m = lightgbm_model
    assert m["entry"]["threshold_type"] == "float64"
    assert m["entry"]["block_rows"] == 32  # leaf-wise trees: the "uneven" batch shape, passes stop early
    X = np.vstack([edge_matrix(m["thresholds"], 1000, seed=5),
                   np.repeat(SPECIAL[:, None], N_FEATURE, axis=1)]).astype(np.float32)
    X64 = X.astype(np.float64)
    want_margin = m["booster"].predict(X64, raw_score=True)
    np.testing.assert_allclose(m["ens"].predict(X, margin=True), want_margin, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m["ens"].predict(X), m["booster"].predict(X64), rtol=0, atol=1e-6)
    rows = np.array([m["ens"].predict_row(x, margin=True) for x in X])
    np.testing.assert_array_equal(rows, m["ens"].predict(X, margin=True))
    rows = np.array([m["ifelse"].predict_row(x, margin=True) for x in X])
    np.testing.assert_allclose(rows, want_margin, rtol=1e-9, atol=1e-9)


def test_lightgbm_missing_value_splits_match(tmp_path):
    """LightGBM's "<= +inf" splits (present values left, NaN to its default side) with
    NaN folding in the engine: batch and single rows equal LightGBM's margins."""
    lgb = pytest.importorskip("lightgbm")
    X, y = make_xy(3000, N_FEATURE, seed=4)
    rng = np.random.default_rng(0)
    X[:, 5] = np.where(rng.random(len(X)) < 0.3, np.nan, 2.0)  # only missingness to split on
    y = (y > 0.5) ^ np.isnan(X[:, 5])
    booster = lgb.train({"objective": "binary", "num_leaves": 15, "verbose": -1, "seed": 0,
                         "deterministic": True, "num_threads": 1},
                        lgb.Dataset(X, y.astype(np.float32)), num_boost_round=20)
    path = tmp_path / "model.txt"
    booster.save_model(str(path))
    assert "inf" in " ".join(line for line in path.read_text().splitlines() if line.startswith("threshold="))
    entry = lower_trees(load_forest(path), tmp_path / "bundle", name="legacy")
    assert "FECC_SLOT0" in (tmp_path / "bundle/trees/legacy_engine.c").read_text()  # NaN folded
    ens = TreeEnsemble(tmp_path / "bundle", entry)
    X = np.vstack([X[:500], np.repeat(SPECIAL[:, None], N_FEATURE, axis=1)])
    X[500:, 5] = SPECIAL  # every special value on the missing-value split
    want = lgb.Booster(model_file=str(path)).predict(X.astype(np.float64), raw_score=True)
    np.testing.assert_allclose(ens.predict(X, margin=True), want, rtol=1e-12, atol=1e-12)
    rows = np.array([ens.predict_row(x, margin=True) for x in X])
    np.testing.assert_array_equal(rows, ens.predict(X, margin=True))
    ifelse = TreeEnsemble(tmp_path / "bundle", {**entry, "row_engine": "ifelse"})
    np.testing.assert_allclose([ifelse.predict_row(x, margin=True) for x in X], want, rtol=1e-9, atol=1e-9)
