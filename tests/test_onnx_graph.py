"""The one-graph ONNX lowering (``--emit onnx``, ``model.onnx``) against numpy and the native bundle.

The backend × op matrix (one expression per operator of ``fecc.ir.OPS``) on the edge rows
of ``test_numba_parity.py``, in a graph that onnxruntime alone runs: every operator
equals numpy's value (up to the sign of a zero: onnxruntime's ``Where`` returns +0.0 when
it picks a -0.0 from its first input, and no IR operator or tree split tells the two
zeros apart) except the transcendental ones (:data:`LIBM`), which are within a few ulps.
Then hypothesis expressions, and whole bundles: ``model.onnx`` vs the native bundle
(≤ 1e-6 on edge rows, as issue 18 asks), legacy-only graphs for every link, LightGBM,
the runtime's lazy onnxruntime import, and the graph scored by a bare onnxruntime
session.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from hypothesis import given

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from fecc.ir import OPS, evaluate  # noqa: E402
from fecc.lower.onnx_graph import NO_EXACT_TWIN, LoweringError, OnnxBackend, expressions_model  # noqa: E402

from ir_strategies import FEATURES as H_FEATURES, columns, num_exprs  # noqa: E402
from test_c_parity import LIBM, assert_close_ulps, edge_rows  # noqa: E402
from test_numba_parity import BY_OP, COLS, FEATURES, OP_NAMES, ROWS  # noqa: E402

pytestmark = pytest.mark.backend_onnx


def run_exprs(exprs: dict, feature_names, X: np.ndarray) -> dict:
    model = expressions_model(exprs, feature_names)
    import onnx

    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(exprs, sess.run(list(exprs), {"X": np.ascontiguousarray(X, dtype=np.float64)})))


def assert_same_value(got, want):
    """Equal as numbers (NaN == NaN; -0.0 == 0.0, the one thing onnxruntime's Where changes)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = np.isnan(want) | (got == want)
    assert ok.all(), f"{(~ok).sum()} values differ, first: got {got[~ok][:3]}, want {want[~ok][:3]}"


@pytest.fixture(scope="module")
def op_outputs():
    exprs = {op: (BY_OP[op].region if OPS[op].result == "bool" else BY_OP[op].correction) for op in OP_NAMES}
    return exprs, run_exprs(exprs, FEATURES, ROWS)


@pytest.mark.parametrize("op_name", OP_NAMES)
def test_op_parity_vs_numpy(op_outputs, op_name):
    exprs, outs = op_outputs
    got = outs[op_name]
    with np.errstate(all="ignore"):
        want = evaluate(exprs[op_name], COLS)
    if want.dtype == bool:
        np.testing.assert_array_equal(got, want)
    elif op_name in LIBM:
        assert_close_ulps(got, want)
    else:
        assert_same_value(got, want)


def test_every_op_without_an_exact_twin_is_documented():
    from fecc.lower.onnx_graph import OnnxBackend as B

    exact = {"neg": "Neg", "abs": "Abs", "add": "Add", "sub": "Sub", "mul": "Mul", "isnan": "IsNaN", "not": "Not",
             "lt": "Less", "le": "LessOrEqual", "gt": "Greater", "ge": "GreaterOrEqual", "eq": "Equal", "and": "And",
             "or": "Or", "where": "Where", "sqrt": "Sqrt(Abs)"}
    for op in OPS:
        assert op in exact or op in NO_EXACT_TWIN, op
        assert op == "where" or hasattr(B, "op_" + op), op


@given(expr=num_exprs(max_leaves=10, with_params=False), cols=columns(6))
def test_random_expressions_match_the_reference(expr, cols):
    X = np.column_stack([cols[f] for f in H_FEATURES])
    got = run_exprs({"e": expr}, list(H_FEATURES), X)["e"]
    with np.errstate(all="ignore"):
        want = evaluate(expr, cols)
    if not any(getattr(n, "op", None) in LIBM for n in expr.walk()):
        assert_same_value(got, want)
    else:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=4e-16 * 8, atol=0, equal_nan=True)


def test_unknown_node_and_unbound_parameter_are_errors():
    from fecc.ir import Binary, Const, Feature, Param
    from fecc.lower.onnx_graph import _Graph

    be = OnnxBackend(_Graph(), "X", {"a": 0})
    with pytest.raises(LoweringError, match="unbound"):
        be.lower(Binary("add", Feature("a"), Param("p")))

    class Mystery(Const):
        pass

    with pytest.raises(LoweringError, match="Mystery"):
        be.lower(Mystery(1.0))
    with pytest.raises(LoweringError, match="not a model feature"):
        be.lower(Feature("zzz"))


# --- whole bundles

from _planted import planted_bundle  # noqa: E402


@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory):
    return planted_bundle(tmp_path_factory.mktemp("planted_onnx"), emit="onnx")


def test_onnx_bundle_manifest_and_engine(onnx_bundle):
    import fecc_runtime

    out, _, _, _ = onnx_bundle
    m = json.loads((out / "manifest.json").read_text())
    assert m["emit"] == "onnx" and m["onnx_model"]["path"] == "model.onnx"
    assert m["onnx_model"]["no_exact_twin"] == NO_EXACT_TWIN
    assert "model.onnx" in m["files"]
    b = fecc_runtime.load(out)
    assert b.engine == "onnx" and b._legacy is None  # no compiled library loaded
    assert fecc_runtime.load(out, engine="native").engine == "c"


def test_onnx_graph_matches_native_bundle_on_edge_rows(onnx_bundle):
    import fecc_runtime

    out, _, _, X = onnx_bundle
    rows = edge_rows(X, seed=11)
    g, nat = fecc_runtime.load(out), fecc_runtime.load(out, engine="native")
    with np.errstate(all="ignore"):
        for output in ("prediction", "margin"):
            a, b = g.predict(rows, output=output), nat.predict(rows, output=output)
            assert np.abs(a - b).max() <= 1e-6, output
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    one = [g.predict_one(r) for r in rows[:10]]
    np.testing.assert_allclose(one, nat.predict(rows[:10]), rtol=0, atol=1e-12)
    assert isinstance(one[0], float)


def test_bare_onnxruntime_scores_model_onnx(onnx_bundle):
    """What a user without fecc_runtime does: one InferenceSession, default options."""
    import fecc_runtime

    out, _, _, X = onnx_bundle
    rows = edge_rows(X, seed=12)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["X"] and sess.get_inputs()[0].shape == ["N", X.shape[1]]
    with np.errstate(over="ignore"):
        pred = sess.run(["prediction"], {"X": rows.astype(np.float32)})[0]
    assert pred.shape == (len(rows),)
    with np.errstate(all="ignore"):
        want = fecc_runtime.load(out, engine="native").predict(rows)
    assert np.abs(pred - want).max() <= 1e-6


@pytest.mark.parametrize("model_file,fmt", [
    ("xgboost-3.2.0/binary_logistic.json", "xgboost_json"),
    ("xgboost-3.2.0/reg_squarederror.json", "xgboost_json"),
    ("xgboost-3.2.0/multi_softprob.json", "xgboost_json"),
    ("xgboost-3.2.0/multi_softmax.json", "xgboost_json"),
    ("xgboost-3.2.0/count_poisson.json", "xgboost_json"),
    ("lightgbm-4.7.0/regression.txt", "lightgbm"),
    ("lightgbm-4.7.0/multiclass.txt", "lightgbm"),
])
def test_legacy_only_graphs_for_every_link(tmp_path, model_file, fmt):
    """``--search none --emit onnx``: the legacy trees and the link alone, against the native bundle."""
    from pathlib import Path

    import fecc_runtime
    from fecc.driver import CompileOptions, compile_bundle

    models = Path(__file__).parent / "data" / "models"
    src = models / model_file
    arrays = np.load(src.with_suffix(".npz"))
    X = arrays["X"].astype(np.float32).astype(np.float64)
    import pandas as pd

    cols = [f"f{i}" for i in range(X.shape[1])]
    data = tmp_path / "data.parquet"
    pd.DataFrame(X, columns=cols).to_parquet(data)
    out = tmp_path / "b"
    compile_bundle(src, data, out, CompileOptions(search="none", emit="onnx", feature_names=tuple(cols)))
    g, nat = fecc_runtime.load(out), fecc_runtime.load(out, engine="native")
    rows = np.vstack([X[:300], np.full((1, X.shape[1]), np.nan), np.zeros((1, X.shape[1])),
                      np.full((1, X.shape[1]), np.inf), np.full((1, X.shape[1]), -1e300)])
    with np.errstate(all="ignore"):
        a, b = g.predict(rows), nat.predict(rows)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(g.predict(rows, output="margin"), nat.predict(rows, output="margin"),
                                   rtol=1e-12, atol=1e-12)


def test_runtime_imports_onnxruntime_lazily(onnx_bundle, monkeypatch):
    import fecc_runtime

    out, _, _, _ = onnx_bundle
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # "not installed"
    with pytest.raises(fecc_runtime.BundleError, match="onnxruntime"):
        fecc_runtime.load(out)
    assert fecc_runtime.load(out, engine="native").engine == "c"  # the native code still serves


def test_native_bundle_has_no_graph(tmp_path):
    import fecc_runtime

    out, _, _, _ = planted_bundle(tmp_path, n_rows=400, agg_rounds=5)
    with pytest.raises(fecc_runtime.BundleError, match="no ONNX graph"):
        fecc_runtime.load(out, engine="onnx")
