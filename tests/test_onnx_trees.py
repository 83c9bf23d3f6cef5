"""The ONNX tree target (``fecc compile --trees onnx``): one ai.onnx.ml TreeEnsemble graph
per ensemble, served by onnxruntime, must take every row down the same path as the
model's own library.

* every fixture of the model zoo (XGBoost 1.7-3.2, LightGBM 2.3-4.7: binary, regression,
  poisson/gamma/tweedie, softprob/softmax, ova, dart, rf, categorical) against the
  margins and outputs the producing library recorded (rows on thresholds, their ulps,
  NaN, ±inf, huge values, unseen categories);
* hypothesis rows of thresholds, their float32/float64 neighbours, NaN, ±inf, huge and
  tiny magnitudes, and negative / fractional / unseen / huge categories, against the C
  engine (which the zoo tests hold to the libraries) and xgboost;
* the float32 threshold rule for LightGBM graphs with float32 input;
* same model, same bytes; whole bundles (legacy only, and with an ONNX aggregator) load
  and replay parity; a runtime without onnxruntime says what is missing.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import fecc  # noqa: E402
import fecc_runtime  # noqa: E402
from fecc.driver import CompileOptions, compile_bundle  # noqa: E402
from fecc.errors import UserError  # noqa: E402
from fecc.forest import CATEGORICAL, NUMERICAL  # noqa: E402
from fecc.frontend import load_forest, load_legacy_model  # noqa: E402
from fecc.lower import lower_trees  # noqa: E402
from fecc.lower.onnx_trees import lower_onnx, onnx_threshold  # noqa: E402
from fecc_runtime.onnx_trees import OnnxTreeEnsemble  # noqa: E402
from fecc_runtime.trees import TreeEnsemble  # noqa: E402

pytestmark = pytest.mark.backend_trees_onnx

MODELS = Path(__file__).parent / "data" / "models"
INDEX = json.loads((MODELS / "index.json").read_text())["fixtures"]
FIXTURES = {e["path"]: e for e in INDEX}
ATOL = 1e-6
RUNTIME = Path(__file__).resolve().parents[1] / "runtime"


def _lower(path: Path, out: Path, **kw) -> tuple[dict, OnnxTreeEnsemble]:
    model = load_legacy_model(path)
    entry = lower_onnx(load_forest(model), out, name="legacy", **kw)
    return entry, OnnxTreeEnsemble(out, entry)


# ------------------------------------------------------------------ model zoo

@pytest.mark.parametrize("fixture_id", sorted(FIXTURES))
def test_zoo_fixture_matches_library(fixture_id, tmp_path):
    """Margins ≤ 1e-6 and outputs ≤ 1e-6 (probability space) from the library's own
    predictions, batch and single row; a batch split over threads changes nothing."""
    fx = FIXTURES[fixture_id]
    entry, ens = _lower(MODELS / fx["path"], tmp_path)
    data = np.load(MODELS / fx["data"], allow_pickle=False)
    X, kinds = data["X"], data["row_kind"]
    want_margin = data["margin"].reshape(len(X), -1)
    margin = ens.predict(X, margin=True).reshape(len(X), -1)
    err = np.abs(margin - want_margin).max(axis=1)
    assert err.max() <= ATOL, f"margin off by {err.max():.3g} on {sorted(set(kinds[err > ATOL]))}"
    out = ens.predict(X).reshape(len(X), -1)
    want_out = data["output"].reshape(len(X), -1)
    if fx["link"] == "argmax":  # multi:softmax: xgboost returns the class index
        np.testing.assert_array_equal(out.argmax(axis=1), want_out[:, 0])
    else:
        np.testing.assert_allclose(out, want_out, rtol=0, atol=ATOL)
    rows = np.stack([np.atleast_1d(ens.predict_row(x, margin=True)) for x in X[::7]])
    np.testing.assert_array_equal(rows, margin[::7])
    big = np.tile(X, (8, 1))  # > 256 rows per thread: split over the runtime's threads
    np.testing.assert_array_equal(ens.predict(big, margin=True).reshape(len(big), -1), np.tile(margin, (8, 1)))
    assert entry["feature_type"] == ("float64" if fx["format"] == "lightgbm" else "float32")


# ----------------------------------------------------- edge rows vs C engine

def _splits(model_path: Path, fmt: str) -> tuple[list[np.ndarray], dict[int, int]]:
    """Numerical thresholds per feature and the largest listed category per categorical feature."""
    forest = load_forest(model_path)
    thr: list[list[float]] = [[] for _ in range(forest.num_feature)]
    cats: dict[int, int] = {}
    for f in forest.trees:
        for i in np.flatnonzero(f.node_type == NUMERICAL):
            thr[int(f.feature[i])].append(float(f.threshold[i]))
        for i in np.flatnonzero(f.node_type == CATEGORICAL):
            feat = int(f.feature[i])
            cats[feat] = max(cats.get(feat, 0), int(max(f.categories(i), default=0)))
    return [np.unique(np.asarray(t, dtype=np.float64)) for t in thr], cats


_SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 3.4e38, -3.4e38, 1e-36, -1e-36, 1e-40, -1e-40,
            float(np.float32(1e-35)), -float(np.float32(1e-35)), 1e300, -1e300, 1e-300]


def _numeric_pool(t: np.ndarray, dtype) -> list[np.ndarray]:
    """Thresholds, their neighbours in float32 and float64 (for float64 models) and the
    float32 roundings of float64 thresholds; and, as a second pool, special values."""
    t32 = t.astype(np.float32)
    near = [t, t32, np.nextafter(t32, np.float32(np.inf)), np.nextafter(t32, np.float32(-np.inf)),
            np.nextafter(t, np.inf), np.nextafter(t, -np.inf)]
    near = np.concatenate([np.asarray(p, dtype=np.float64) for p in near])
    with np.errstate(over="ignore"):  # 1e300 in a float32 pool is inf
        special = np.unique(np.asarray(_SPECIAL).astype(dtype))
    return [np.unique(near.astype(dtype)), special] if near.size else [special]


def _category_pool(top: int) -> list[np.ndarray]:
    """Listed and unseen codes; their fractions; negative values, LightGBM's zeros, values
    around 2^24, NaN and ±inf."""
    k = np.arange(-3, top + 4, dtype=np.float64)
    tiny = float(np.float32(1e-35))  # LightGBM reads |x| <= this as 0: -tiny is category 0 there
    return [k, np.concatenate([k + 0.5, k + 0.999]),
            np.array([-0.0, -0.5, -1e-30, -tiny, -1e-36, tiny, 2.0 ** 24 - 1, 2.0 ** 24, 2.0 ** 24 + 2,
                      1e9, 1e30, np.nan, np.inf, -np.inf])]


def _rows_strategy(pools: list[list[np.ndarray]]):
    """Rows whose every value comes from its feature's pools (each pool equally likely)."""
    row = st.tuples(*[st.one_of(*[st.sampled_from(p.tolist()) for p in ps]) for ps in pools])
    return st.lists(row, min_size=1, max_size=24)


def _sample(pools: list[list[np.ndarray]], n: int, seed: int, dtype) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cols = []
    for ps in pools:
        which = rng.integers(0, len(ps), n)
        cols.append(np.array([rng.choice(ps[w]) for w in which]))
    return np.column_stack(cols).astype(dtype)


class _Pair:
    """A model lowered both ways: the ONNX graph and the C engine (the reference)."""

    def __init__(self, model_path: Path, out: Path, *, input_type: str | None = None):
        model = load_legacy_model(model_path)
        self.model = model
        self.c = TreeEnsemble(out / "c", lower_trees(load_forest(model), out / "c"))
        entry = lower_onnx(load_forest(model), out / "onnx", input_type=input_type)
        self.onnx = OnnxTreeEnsemble(out / "onnx", entry)
        self.dtype = np.float32 if entry["feature_type"] == "float32" else np.float64
        thresholds, cats = _splits(model.path, model.format)
        self.pools = [_category_pool(cats[j]) if j in cats else _numeric_pool(thresholds[j], self.dtype)
                      for j in range(len(thresholds))]


def _train_many_categories(out: Path, library: str) -> Path:
    """A model whose categorical splits list categories far above 64 (ORT's small-set path)."""
    rng = np.random.default_rng(4)
    n = 4000
    X = np.column_stack([rng.normal(size=n), rng.integers(0, 300, n), rng.normal(size=n)]).astype(np.float64)
    X[rng.random(n) < 0.05, 1] = np.nan
    code = np.nan_to_num(X[:, 1], nan=7).astype(int)
    y = (((code * 7) % 11 < 5) ^ (X[:, 0] > 0.2)).astype(np.float64)
    if library == "xgboost":
        import xgboost as xgb

        d = xgb.DMatrix(X, y, feature_types=["q", "c", "q"], enable_categorical=True)
        booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "max_cat_to_onehot": 1, "seed": 0,
                             "nthread": 1}, d, num_boost_round=12)
        path = out / "many_cats.json"
        booster.save_model(path)
        return path
    import lightgbm as lgb

    ds = lgb.Dataset(X, y, categorical_feature=[1], free_raw_data=False)
    booster = lgb.train({"objective": "binary", "num_leaves": 15, "max_cat_threshold": 128, "min_data_per_group": 5,
                         "cat_smooth": 1, "verbose": -1, "num_threads": 1, "seed": 0}, ds, num_boost_round=12)
    path = out / "many_cats.txt"
    booster.save_model(str(path))
    return path


_PAIRS = {
    "xgb-categorical": lambda out: MODELS / "xgboost-3.2.0/binary_categorical.json",
    "xgb-softprob": lambda out: MODELS / "xgboost-2.0.3/multi_softprob.json",
    "lgbm-categorical": lambda out: MODELS / "lightgbm-4.7.0/binary_categorical.txt",
    "lgbm-multiclass": lambda out: MODELS / "lightgbm-3.3.5/multiclass.txt",
    "xgb-300-categories": lambda out: _train_many_categories(out, "xgboost"),
    "lgbm-300-categories": lambda out: _train_many_categories(out, "lightgbm"),
}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    cache: dict[str, _Pair] = {}

    def get(key: str) -> _Pair:
        if key not in cache:
            out = tmp_path_factory.mktemp(key)
            cache[key] = _Pair(_PAIRS[key](out), out)
        return cache[key]

    return get


@pytest.mark.parametrize("key", sorted(_PAIRS))
def test_edge_rows_match_c_engine(pairs, key):
    """Every row takes the C engine's path: margins are equal, bit for bit."""
    pair = pairs(key)

    @settings(max_examples=60)
    @given(_rows_strategy(pair.pools))
    def check(rows):
        X = np.asarray(rows, dtype=pair.dtype)
        np.testing.assert_array_equal(pair.onnx.predict(X, margin=True), pair.c.predict(X, margin=True))

    check()


@pytest.mark.parametrize("key", ["xgb-categorical", "xgb-softprob", "xgb-300-categories"])
def test_edge_rows_match_xgboost(pairs, key):
    """The same kind of rows against xgboost itself (its category rule included)."""
    import xgboost as xgb

    pair = pairs(key)
    booster = xgb.Booster(model_file=str(pair.model.path))
    X = _sample(pair.pools, 3000, 11, np.float32)
    want = booster.inplace_predict(X, predict_type="margin").astype(np.float64)
    np.testing.assert_array_equal(pair.onnx.predict(X, margin=True), want.reshape(pair.onnx.predict(X, margin=True).shape))


def test_categorical_rule_row_by_row(pairs):
    """The category rule spelled out on the trained 300-category XGBoost model: a value
    stands for its integer part; negative values, values above 2^24 and ±inf match no
    category (the unlisted side); NaN takes the default branch."""
    pair = pairs("xgb-300-categories")
    base = np.array([[0.3, 0.0, -0.1]], dtype=np.float32)

    def margin(v):
        x = base.copy()
        x[0, 1] = v
        return pair.onnx.predict(x, margin=True)[0]

    for k in (0, 5, 17, 64, 150, 299):
        assert margin(k + 0.25) == margin(k + 0.999) == margin(k)
    unseen = margin(1000)
    for v in (-0.5, -1, -1e-30, np.inf, -np.inf, 2.0 ** 24 + 2, 1e30):
        assert margin(v) == unseen, v
    assert margin(-0.0) == margin(0)
    assert margin(np.nan) == pair.c.predict(np.array([[0.3, np.nan, -0.1]], dtype=np.float32), margin=True)[0]
    # LightGBM reads |x| <= 1e-35 as 0 before the category rule: -1e-36 is category 0
    lgbm = pairs("lgbm-300-categories")
    X = np.array([[0.3, v, -0.1] for v in (0.0, -1e-36, -float(np.float32(1e-35)), -1.0, np.nan)])
    got = lgbm.onnx.predict(X, margin=True)
    np.testing.assert_array_equal(got, lgbm.c.predict(X, margin=True))
    assert got[0] == got[1] == got[2] != got[3]


# ------------------------------------------- float32 input for float64 thresholds

@settings(max_examples=300)
@given(t=st.floats(allow_nan=False, allow_infinity=True, width=64),
       x=st.floats(allow_nan=False, allow_infinity=True, width=32))
def test_float32_threshold_keeps_every_decision(t, x):
    """For each comparison, ``x OP t32 == x OP t`` for float32 ``x``: checked on ``x``
    itself and on the float32 values around ``t``."""
    t32s = {op: onnx_threshold(t, op) for op in ("<", "<=", ">", ">=")}
    with np.errstate(over="ignore"):
        near = np.float32(t)
        xs = [np.float32(x), near, np.nextafter(near, np.float32(np.inf)), np.nextafter(near, np.float32(-np.inf))]
    for v in xs:
        v64 = np.float64(v)
        assert (v <= t32s["<="]) == (v64 <= t)
        assert (v < t32s["<"]) == (v64 < t)
        assert (v > t32s[">"]) == (v64 > t)
        assert (v >= t32s[">="]) == (v64 >= t)


@pytest.mark.parametrize("fixture_id", ["lightgbm-4.7.0/binary_categorical.txt", "lightgbm-4.7.0/regression.txt"])
def test_lightgbm_float32_graph_keeps_every_decision(fixture_id, tmp_path):
    """A LightGBM graph lowered for float32 input (thresholds rounded by the rule above)
    takes the C engine's path for float32 rows; only the leaf sum is float32."""
    pair = _Pair(MODELS / fixture_id, tmp_path, input_type="float32")
    assert pair.dtype == np.float32
    X = _sample(pair.pools, 4000, 5, np.float32)
    got, want = pair.onnx.predict(X, margin=True), pair.c.predict(X.astype(np.float64), margin=True)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)
    data = np.load(MODELS / FIXTURES[fixture_id]["data"])
    X32 = data["X"].astype(np.float32)
    np.testing.assert_allclose(pair.onnx.predict(X32), pair.c.predict(X32.astype(np.float64)), rtol=0, atol=ATOL)


# ------------------------------------------------------------ odd tree shapes

def test_single_leaf_trees_and_base_score(tmp_path):
    """Trees that are one leaf (no split gained enough) and a base score: still summed
    in XGBoost's order, so the margins equal xgboost's bit for bit."""
    import xgboost as xgb

    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.float32)
    d = xgb.DMatrix(X, y)
    params = {"objective": "binary:logistic", "max_depth": 3, "base_score": 0.3, "seed": 0, "nthread": 1}
    booster = xgb.train(params, d, 4)
    booster = xgb.train(dict(params, gamma=1e9), d, 3, xgb_model=booster)  # three single-leaf trees
    booster.save_model(tmp_path / "m.json")
    trees = json.loads((tmp_path / "m.json").read_text())["learner"]["gradient_booster"]["model"]["trees"]
    assert sum(len(t["left_children"]) == 1 for t in trees) == 3
    _, ens = _lower(tmp_path / "m.json", tmp_path / "b")
    X[::5, 2] = np.nan
    np.testing.assert_array_equal(ens.predict(X, margin=True), booster.inplace_predict(X, predict_type="margin"))


# --------------------------------------------------------------- determinism

@pytest.mark.parametrize("fixture_id", ["xgboost-3.2.0/binary_pandas_categories.json",
                                        "lightgbm-4.7.0/binary_categorical.txt"])
def test_same_model_same_bytes(fixture_id, tmp_path):
    model = load_legacy_model(MODELS / fixture_id)
    a = lower_onnx(load_forest(model), tmp_path / "a")
    b = lower_onnx(load_forest(model), tmp_path / "b")
    assert a == b
    data = (tmp_path / "a" / a["onnx"]).read_bytes()
    assert data == (tmp_path / "b" / b["onnx"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == a["onnx_sha256"]
    proto = onnx.load_from_string(data)
    assert (proto.producer_name, proto.producer_version) == ("fecc", fecc.__version__)
    assert not proto.metadata_props and str(tmp_path) not in str(proto)
    assert {o.domain: o.version for o in proto.opset_import} == {"": 21, "ai.onnx.ml": 5}


# ------------------------------------------------------------------- bundles

def _table(fixture_id: str):
    import pandas as pd

    data = np.load(MODELS / FIXTURES[fixture_id]["data"])
    model = load_legacy_model(MODELS / fixture_id)
    names = list(model.feature_names or [f"f{i}" for i in range(model.num_feature)])
    return pd.DataFrame(data["X"], columns=names), data


def test_cli_compiles_an_onnx_bundle(tmp_path):
    """``fecc compile --trees onnx``: the bundle holds the graph (no C), loads through
    the runtime with hash checks and parity replay, scores like the library, and the
    same inputs give the same bytes."""
    from click.testing import CliRunner

    from fecc.cli import main

    fixture_id = "lightgbm-4.7.0/binary_categorical.txt"
    df, data = _table(fixture_id)
    df.to_parquet(tmp_path / "data.parquet")
    for out in ("b1", "b2"):
        res = CliRunner().invoke(main, ["compile", str(MODELS / fixture_id), str(tmp_path / "data.parquet"),
                                        "-o", str(tmp_path / out), "--search", "none", "--trees", "onnx", "-q"])
        assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "b1" / "manifest.json").read_text())
    assert m["legacy"]["engine"] == "onnx" and "trees/legacy.onnx" in m["files"]
    assert not any(f.endswith((".so", ".c")) for f in m["files"])
    for rel in m["files"]:
        assert (tmp_path / "b1" / rel).read_bytes() == (tmp_path / "b2" / rel).read_bytes(), rel
    b = fecc_runtime.load(tmp_path / "b1")
    assert isinstance(b._legacy, OnnxTreeEnsemble)
    np.testing.assert_allclose(b.predict(df), data["output"], rtol=0, atol=ATOL)
    assert b.predict_one(df.iloc[3].to_dict()) == pytest.approx(data["output"][3], abs=ATOL)
    graph = tmp_path / "b1" / "trees" / "legacy.onnx"
    graph.chmod(0o644)
    graph.write_bytes(graph.read_bytes() + b"\0")
    with pytest.raises(fecc_runtime.BundleError, match="legacy.onnx was modified"):
        fecc_runtime.load(tmp_path / "b1")


def test_ensemble_bundle_with_onnx_aggregator(tmp_path):
    """With the NSR search, the aggregator (an XGBoost model too) is lowered to ONNX as
    well; the bundle verifies against the compile-time reference (xgboost + IR)."""
    from test_search_pipeline import legacy_model, make_planted

    Xl, yl = make_planted(2000, 101, with_region=False)
    legacy_model(Xl, yl).save_model(tmp_path / "model.json")
    X, y = make_planted(2400, 1)
    X.assign(y=y).to_parquet(tmp_path / "data.parquet")
    search = {"n_regions": 4, "max_proposals": 8, "iterations": 4, "optuna_trials": 16}
    summary = compile_bundle(tmp_path / "model.json", tmp_path / "data.parquet", tmp_path / "b",
                             CompileOptions(seed=7, llm="none", search_options=search, trees="onnx"))
    assert summary["gate"] == "ensemble", summary
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["aggregator"]["trees"]["engine"] == "onnx" and "trees/aggregator.onnx" in m["files"]
    b = fecc_runtime.load(tmp_path / "b")
    Xn, _ = make_planted(300, 55)
    batch = b.predict(Xn)
    one = [b.predict_one(r) for r in Xn.head(20).to_dict("records")]
    np.testing.assert_allclose(one, batch[:20], rtol=0, atol=ATOL)


def test_unknown_tree_target_is_one_line_error(tmp_path):
    with pytest.raises(UserError, match="--trees must be 'c' or 'onnx'"):
        CompileOptions(trees="llvm")
    with pytest.raises(UserError, match="takes float32 input"):
        lower_onnx(load_forest(MODELS / "xgboost-3.2.0/binary_logistic.json"), tmp_path, input_type="float64")


def test_compile_without_onnx_is_one_line_error(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from fecc.cli import main

    df, _ = _table("xgboost-3.2.0/binary_logistic.json")
    df.to_parquet(tmp_path / "data.parquet")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    res = CliRunner().invoke(main, ["compile", str(MODELS / "xgboost-3.2.0/binary_logistic.json"),
                                    str(tmp_path / "data.parquet"), "-o", str(tmp_path / "b"), "--search", "none",
                                    "--trees", "onnx", "-q"])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "needs onnx and onnxruntime" in lines[0] and "pip install" in lines[0], res.output
    assert not (tmp_path / "b").exists()


def test_runtime_without_onnxruntime_says_so(tmp_path):
    """fecc_runtime imports with numpy alone; loading an ONNX bundle there is one clear error."""
    df, _ = _table("xgboost-3.2.0/binary_logistic.json")
    df.to_parquet(tmp_path / "data.parquet")
    compile_bundle(MODELS / "xgboost-3.2.0/binary_logistic.json", tmp_path / "data.parquet", tmp_path / "b",
                   CompileOptions(search="none", trees="onnx"))
    site = tmp_path / "site"
    site.mkdir()
    np_dir = Path(np.__file__).parent
    os.symlink(np_dir, site / "numpy")
    if (np_dir.parent / "numpy.libs").exists():
        os.symlink(np_dir.parent / "numpy.libs", site / "numpy.libs")
    stdlib = sysconfig.get_paths()["stdlib"]
    sys_path = [p for p in sys.path if p == stdlib or p.endswith(("lib-dynload", ".zip"))] + [str(site), str(RUNTIME)]
    code = (f"import sys; sys.path[:] = {sys_path!r}\n"
            "import fecc_runtime\n"
            "try:\n"
            "    fecc_runtime.load(sys.argv[1])\n"
            "except fecc_runtime.BundleError as exc:\n"
            "    print(exc)\n")
    proc = subprocess.run([sys.executable, "-S", "-E", "-c", code, str(tmp_path / "b")],
                          capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "")})
    assert proc.returncode == 0, proc.stderr
    assert "needs onnxruntime" in proc.stdout and "pip install 'fecc-runtime[onnx]'" in proc.stdout, proc.stdout
