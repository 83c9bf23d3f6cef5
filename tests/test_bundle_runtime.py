"""Bundles end to end through the runtime: compile (--search none), load, verify, score, refuse."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import xgboost as xgb

import fecc_runtime
from fecc.driver import CompileOptions, compile_bundle
from fecc.errors import UserError
from fecc_runtime import BundleError
from _models import make_table, train_xgb


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundle")
    df = make_table(n=400)
    model = train_xgb(df, d / "model.json")
    df.to_parquet(d / "data.parquet")
    out = d / "out"
    compile_bundle(model, d / "data.parquet", out, CompileOptions(search="none"))
    return d, df, model, out


def _copy(compiled, tmp_path):
    _, _, _, out = compiled
    dst = tmp_path / "b"
    shutil.copytree(out, dst)
    return dst


def test_bundle_layout_and_manifest(compiled):
    _, df, _, out = compiled
    m = json.loads((out / "manifest.json").read_text())
    assert m["format"] == "fecc-bundle" and m["format_version"] == 1
    assert [f["name"] for f in m["features"]] == [f"x{i}" for i in range(6)]
    assert m["task"] == {"kind": "binary", "objective": "binary:logistic", "link": "logistic", "num_class": 1}
    for slot in ("transforms", "experts", "aggregator", "gate", "parity", "legacy", "compiler", "inputs"):
        assert slot in m
    assert m["gate"]["decision"] == "legacy-only"
    assert "README.md" in m["files"] and any(f.endswith(".so") for f in m["files"]) and any(f.endswith(".c") for f in m["files"])
    assert not list(out.parent.glob(".out.staging-*")), "staging directory left behind"


def test_predict_matches_xgboost(compiled):
    _, df, model, out = compiled
    b = fecc_runtime.load(out)
    X = df.drop(columns=["y"])
    bst = xgb.Booster(model_file=str(model))
    ref = bst.predict(xgb.DMatrix(X, missing=np.nan))
    got = b.predict(X)
    assert np.max(np.abs(got - ref)) <= 1e-6
    ref_m = bst.predict(xgb.DMatrix(X, missing=np.nan), output_margin=True)
    assert np.max(np.abs(b.predict(X, output="margin") - ref_m)) <= 1e-5
    # one row: dict by name (extra keys ignored, None = missing) and a sequence in order
    row = X.iloc[3].to_dict()
    assert b.predict_one(dict(row, unused=1.0)) == pytest.approx(float(ref[3]), abs=1e-6)
    assert b.predict_one(list(X.iloc[3])) == pytest.approx(float(ref[3]), abs=1e-6)
    nan_row = {k: None for k in row}
    assert b.predict_one(nan_row) == pytest.approx(float(bst.inplace_predict(np.full((1, 6), np.nan))[0]), abs=1e-6)


def test_input_errors_name_the_problem(compiled):
    _, df, _, out = compiled
    b = fecc_runtime.load(out)
    with pytest.raises(BundleError, match="lacks 1 feature column.*'x2'"):
        b.predict(df.drop(columns=["x2"]))
    with pytest.raises(BundleError, match="lacks feature 'x0'"):
        b.predict_one({"x1": 1.0})
    with pytest.raises(BundleError, match="6 columns"):
        b.predict(np.zeros((2, 5)))
    with pytest.raises(BundleError, match="must be numeric"):
        b.predict_one({f"x{i}": "abc" for i in range(6)})


@pytest.mark.parametrize("tamper, fragment", [
    (lambda p: (p / "trees" / "legacy.so").write_bytes((p / "trees" / "legacy.so").read_bytes() + b"\0"), "was modified"),
    (lambda p: (p / "parity" / "expected.npy").unlink(), "missing"),
    (lambda p: (p / "manifest.json").unlink(), "no manifest.json"),
    (lambda p: (p / "manifest.json").write_text("{not json"), "not valid JSON"),
])
def test_tampered_bundles_are_refused(compiled, tmp_path, tamper, fragment):
    dst = _copy(compiled, tmp_path)
    tamper(dst)
    with pytest.raises(BundleError, match=fragment):
        fecc_runtime.load(dst)


def _rewrite(dst, fn):
    m = json.loads((dst / "manifest.json").read_text())
    fn(m)
    (dst / "manifest.json").write_text(json.dumps(m))


def test_format_version_is_checked(compiled, tmp_path):
    dst = _copy(compiled, tmp_path)
    _rewrite(dst, lambda m: m.update(format_version=99))
    with pytest.raises(BundleError, match="format version 99"):
        fecc_runtime.load(dst)


def test_parity_replay_catches_wrong_predictions(compiled, tmp_path):
    """Expected outputs that the library does not reproduce (hash updated) are refused."""
    dst = _copy(compiled, tmp_path)
    exp = np.load(dst / "parity" / "expected.npy")
    np.save(dst / "parity" / "expected.npy", exp + 1e-3)
    _rewrite(dst, lambda m: m["files"].update({"parity/expected.npy": fecc_runtime.bundle.sha256_file(dst / "parity" / "expected.npy")}))
    with pytest.raises(BundleError, match="parity check failed"):
        fecc_runtime.load(dst)


def test_library_that_cannot_load_is_a_clear_error(compiled, tmp_path):
    """A .so for another platform (here: not an ELF file at all) is refused with a hint."""
    dst = _copy(compiled, tmp_path)
    so = dst / "trees" / "legacy.so"
    so.write_bytes(b"\x7fELF-but-not-really")
    _rewrite(dst, lambda m: m["files"].update({"trees/legacy.so": fecc_runtime.bundle.sha256_file(so)}))
    with pytest.raises(BundleError, match="cannot load the compiled library"):
        fecc_runtime.load(dst)


def test_compile_is_deterministic(compiled, tmp_path):
    d, _, model, out = compiled
    again = tmp_path / "again"
    compile_bundle(model, d / "data.parquet", again, CompileOptions(search="none"))
    m1 = (out / "manifest.json").read_bytes()
    m2 = (again / "manifest.json").read_bytes()
    assert m1 == m2


def test_existing_output_needs_force(compiled, tmp_path):
    d, _, model, out = compiled
    with pytest.raises(UserError, match="--force"):
        compile_bundle(model, d / "data.parquet", out, CompileOptions(search="none"))
    other = tmp_path / "notabundle"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a fecc bundle"):
        compile_bundle(model, d / "data.parquet", other, CompileOptions(search="none", force=True))
    assert (other / "precious.txt").read_text() == "keep me"


def test_failed_compile_leaves_no_bundle(compiled, tmp_path):
    d, df, model, _ = compiled
    bad = tmp_path / "bad.parquet"
    df.drop(columns=["x1"]).to_parquet(bad)
    with pytest.raises(UserError):
        compile_bundle(model, bad, tmp_path / "never", CompileOptions(search="none"))
    assert not (tmp_path / "never").exists()
    assert not list(tmp_path.glob(".never*"))
