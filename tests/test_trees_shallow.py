"""The batch engine's pass for shallow trees (depth <= 2, ``fecc_shallow``) against XGBoost.

Aggregators are hundreds of depth-2 trees; the engine scores them with a vectorizable
pass over a column-major copy of the folded block instead of index walks.  Its margins
must be XGBoost's bit for bit, as the walk's are: NaN both ways, ±inf, values exactly on
thresholds, single-leaf and depth-1 trees, groups that mix shallow and deep trees,
several output columns, one row and batches.
"""
from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

import fecc.lower.tree_arrays as tree_arrays
from fecc.frontend import load_forest
from fecc.lower import lower_trees
from fecc_runtime.trees import TreeEnsemble

pytestmark = pytest.mark.backend_trees_c


def _data(n=3000, f=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] - (X[:, 3] > 0.3) + rng.normal(scale=0.5, size=n) > 0).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    X[:200, 4] = np.nan  # a column missing often, so both default directions occur
    return X, y


def _edge_rows(booster: xgb.Booster, X: np.ndarray) -> np.ndarray:
    """Test rows plus values exactly on every split threshold, NaN, ±inf, huge values."""
    import json

    thr = set()
    for tree in booster.get_dump(dump_format="json"):
        stack = [json.loads(tree)]
        while stack:
            node = stack.pop()
            if "split_condition" in node:
                thr.add(float(np.float32(node["split_condition"])))
                stack += node["children"]
    rng = np.random.default_rng(1)
    rows = [X[:500]]
    t = np.array(sorted(thr), dtype=np.float32)
    on = rng.choice(t, size=(400, X.shape[1])).astype(np.float32)
    on[rng.random(on.shape) < 0.2] = np.nan
    rows.append(on)
    for v in (np.nan, np.inf, -np.inf, 0.0, -0.0, 3e38, -3e38):
        rows.append(np.full((1, X.shape[1]), v, dtype=np.float32))
    return np.vstack(rows)


@pytest.mark.parametrize("params", [
    {"objective": "binary:logistic", "max_depth": 2},
    {"objective": "binary:logistic", "max_depth": 1},
    {"objective": "reg:squarederror", "max_depth": 2, "gamma": 5.0},  # pruned: leaves at depth 0-2
    {"objective": "binary:logistic", "max_depth": 3, "gamma": 2.0},   # shallow and deep trees mixed
    {"objective": "multi:softprob", "num_class": 3, "max_depth": 2},
])
def test_shallow_pass_is_xgboost_bit_for_bit(tmp_path, params):
    X, y = _data()
    if params.get("num_class"):
        y = (np.nan_to_num(X[:, 0]) > 0).astype(np.float32) + (np.nan_to_num(X[:, 1]) > 0.5)
    booster = xgb.train({**params, "eta": 0.3, "seed": 0, "nthread": 1}, xgb.DMatrix(X, y, missing=np.nan), 60)
    path = tmp_path / "model.json"
    booster.save_model(path)
    entry = lower_trees(load_forest(path), tmp_path, name="m")
    source = (tmp_path / "trees" / "m_engine.c").read_text()
    assert "fecc_shallow(f, t" in source
    eng = TreeEnsemble(tmp_path, entry, n_threads=2)
    rows = _edge_rows(booster, X)
    with np.errstate(over="ignore"):
        want = booster.inplace_predict(rows, predict_type="margin").astype(np.float32)
    got = eng.predict(rows, margin=True).astype(np.float32).reshape(want.shape)
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
    one = np.array([eng.predict_row(r.astype(np.float64), margin=True) for r in rows[:300]], dtype=np.float32)
    np.testing.assert_array_equal(one.reshape(want[:300].shape).view(np.int32), want[:300].view(np.int32))


def test_same_sums_as_the_walk(tmp_path, monkeypatch):
    """With the pass switched off the engine walks the same trees: identical bits."""
    X, y = _data(seed=3)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "eta": 0.1, "seed": 0}, xgb.DMatrix(X, y), 200)
    booster.save_model(tmp_path / "model.json")
    rows = _edge_rows(booster, X)
    a = TreeEnsemble(tmp_path / "a", lower_trees(load_forest(tmp_path / "model.json"), tmp_path / "a", name="m")).predict(rows, margin=True)
    monkeypatch.setattr(tree_arrays, "_has_shallow_pass", lambda *args: False)
    entry = lower_trees(load_forest(tmp_path / "model.json"), tmp_path / "b", name="m")
    assert "fecc_shallow" not in (tmp_path / "b" / "trees" / "m_engine.c").read_text()
    b = TreeEnsemble(tmp_path / "b", entry).predict(rows, margin=True)
    np.testing.assert_array_equal(a, b)
