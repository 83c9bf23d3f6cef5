"""Parity matrix of the C backend: ``experts.c`` vs the IR's numpy evaluator and the numba module.

The backend × op matrix of ``test_numba_parity.py`` extended to C: one expert per
operator of ``fecc.ir.OPS``, compiled with the ensemble library's flags, checked on edge
rows (NaN, ±inf, ±0, 1e300, tiny values, values exactly on the thresholds, exp's clip and
overflow points) and random rows.  Every operator is bit-exact against numpy except the
ones computed by a transcendental function (:data:`LIBM`): the C library's ``log1p``,
``exp``, ``tanh`` may differ from numpy's vectorised kernels (SVML on AVX-512) in the
last place; those are checked within :data:`LIBM_ULPS` and bit-exact against the numba
module in plain-Python mode, which calls the same C library.  Then hypothesis
expressions, the all-experts entry point, and whole bundles: the C ensemble library vs
the search's ``SearchResult.predict_margin`` and vs the numba engine, batch and one row.
"""
from __future__ import annotations

import ctypes
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given

from fecc.ir import OPS, Unary, Feature, evaluate
from fecc.lower.c_backend import CBackend, LoweringError, emit_experts_c, identifiers, literal
from fecc.lower.ensemble import CFLAGS
from fecc.lower.numba_backend import write_module
from fecc.search import Expert, function_names
from fecc_runtime.experts import ExpertSet, interaction_features, expert_offset

from ir_strategies import FEATURES as H_FEATURES, columns, num_exprs
from test_numba_parity import EXPERTS, FEATURES, OP_NAMES, ROWS, COLS, BY_OP

pytestmark = pytest.mark.backend_c

#: Operators computed by a C-library transcendental function (explicit skip list for bit-exactness vs numpy).
LIBM = frozenset({"log", "exp", "sigmoid", "tanh"})
#: How far those may be from numpy's result, in units in the last place.
LIBM_ULPS = 4


def compile_c(text: str, out_dir: Path, name: str = "experts") -> ctypes.CDLL:
    """Compile one C file into a shared library with the ensemble library's flags and load it."""
    out_dir = Path(out_dir)
    (out_dir / f"{name}.c").write_text(text)
    subprocess.run(["gcc", *CFLAGS, "-shared", "-o", f"{name}.so", f"{name}.c", "-lm"], cwd=out_dir, check=True,
                   capture_output=True)
    lib = ctypes.CDLL(str((out_dir / f"{name}.so").resolve()))
    return lib


def scalar_values(lib, name: str, restype, rows: np.ndarray) -> np.ndarray:
    """``name(const double* x)`` called on every row."""
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = [ctypes.c_void_p]
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    step = rows.shape[1] * 8
    dtype = np.float64 if restype is ctypes.c_double else np.int32
    return np.array([f(rows.ctypes.data + i * step) for i in range(len(rows))], dtype=dtype)


def bits(a: np.ndarray) -> np.ndarray:
    """float64 bit patterns, every NaN the same (payloads are not semantics)."""
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isnan(a), np.int64(0x7FF8000000000000), a.view(np.int64))


def ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units in the last place between finite float64s of the same sign (0 where equal)."""
    ia, ib = a.view(np.int64).astype(object), b.view(np.int64).astype(object)
    return np.array([abs(x - y) for x, y in zip(ia, ib)], dtype=np.float64)


def assert_exact(got, want):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    bad = bits(got) != bits(want)
    assert not bad.any(), f"{bad.sum()} rows differ, first: got {got[bad][:3]}, want {want[bad][:3]}"


def assert_close_ulps(got, want, max_ulps=LIBM_ULPS):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    fin = np.isfinite(want) & np.isfinite(got)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)])
    same_sign = np.signbit(got[fin]) == np.signbit(want[fin])
    assert same_sign.all()
    d = ulps(got[fin], want[fin])
    assert d.max(initial=0) <= max_ulps, f"{d.max()} ulps apart"


@pytest.fixture(scope="module")
def op_lib(tmp_path_factory):
    """All the op-matrix experts in one C file, compiled."""
    return compile_c(emit_experts_c(EXPERTS, FEATURES).text, tmp_path_factory.mktemp("c_ops"))


@pytest.fixture(scope="module")
def python_module(tmp_path_factory):
    """The numba module of the same experts, run as plain Python (the C library's math, like C)."""
    out = tmp_path_factory.mktemp("py_ops")
    write_module(EXPERTS, FEATURES, out)
    entries = [{"name": e.name, **function_names(e.name)} for e in EXPERTS]
    return ExpertSet(out, entries, "experts.py", use_numba=False)


def _c_op_values(lib, op_name):
    e = BY_OP[op_name]
    if OPS[op_name].result == "bool":
        return scalar_values(lib, f"{e.name}_region", ctypes.c_int32, ROWS).astype(bool), evaluate(e.region, COLS)
    with np.errstate(all="ignore"):
        return scalar_values(lib, f"{e.name}_correction", ctypes.c_double, ROWS), evaluate(e.correction, COLS)


@pytest.mark.parametrize("op_name", OP_NAMES)
def test_op_parity_vs_numpy(op_lib, op_name):
    got, want = _c_op_values(op_lib, op_name)
    if want.dtype == bool:
        np.testing.assert_array_equal(got, want)
    elif op_name in LIBM:
        assert_close_ulps(got, want)
    else:
        assert_exact(got, want)


@pytest.mark.parametrize("op_name", OP_NAMES)
def test_op_parity_vs_numba_python(op_lib, python_module, op_name):
    """Bit for bit against the numba module in plain-Python mode: same formulas, same C library."""
    got, _ = _c_op_values(op_lib, op_name)
    e = BY_OP[op_name]
    fns = function_names(e.name)
    fn = getattr(python_module.module, fns["region_function" if OPS[op_name].result == "bool" else "correction_function"])
    with np.errstate(all="ignore"):
        want = np.array([fn(r) for r in ROWS], dtype=got.dtype)
    if got.dtype == bool:
        np.testing.assert_array_equal(got, want)
    else:
        assert_exact(got, want)


def test_libm_ops_are_mostly_exact(op_lib):
    """The ulp allowance is an allowance: most values of log/exp/sigmoid/tanh match numpy exactly."""
    for op_name in sorted(LIBM):
        got, want = _c_op_values(op_lib, op_name)
        assert (bits(got) == bits(want)).mean() > 0.5, op_name


def _phi_batch(lib, X, base, k):
    f = lib.fecc_experts_batch
    f.restype = None
    f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    X = np.ascontiguousarray(X, dtype=np.float64)
    base = np.ascontiguousarray(base, dtype=np.float64)
    phi = np.empty((len(X), 3 * k))
    off = np.empty(len(X))
    f(X.ctypes.data, base.ctypes.data, len(X), phi.ctypes.data, off.ctypes.data)
    return phi, off


def test_all_experts_entry_point_matches_interaction_features(op_lib):
    """``fecc_experts_phi``: the aggregator's inputs and the offset, as the runtime defines them."""
    base = np.linspace(-3, 3, len(ROWS))
    base[::17] = -0.0
    base[5::19] = 0.0
    phi, off = _phi_batch(op_lib, ROWS, base, len(EXPERTS))
    with np.errstate(all="ignore"):
        values = np.column_stack([e.values(COLS, base) for e in EXPERTS])
        want = interaction_features(base, values)
        want_off = expert_offset(want, len(EXPERTS))
    exact = [k for k, e in enumerate(EXPERTS) if not (set(n.op for n in e.correction.walk() if hasattr(n, "op")) & LIBM)]
    for k in exact:
        assert_exact(phi[:, 3 * k:3 * k + 3].ravel(), want[:, 1 + 3 * k:4 + 3 * k].ravel())
    np.testing.assert_allclose(phi, want[:, 1:], rtol=1e-14, atol=1e-14, equal_nan=True)
    np.testing.assert_allclose(off, want_off, rtol=1e-14, atol=1e-15)


def test_offset_is_exact_without_libm_ops(tmp_path):
    ex = [e for e in EXPERTS if not (set(n.op for n in e.correction.walk() if hasattr(n, "op")) & LIBM)]
    lib = compile_c(emit_experts_c(ex, FEATURES).text, tmp_path)
    base = np.linspace(-2, 2, len(ROWS))
    phi, off = _phi_batch(lib, ROWS, base, len(ex))
    with np.errstate(all="ignore"):
        want = interaction_features(base, np.column_stack([e.values(COLS, base) for e in ex]))
    assert_exact(phi.ravel(), want[:, 1:].ravel())
    assert_exact(off, expert_offset(want, len(ex)))


def test_literals_round_trip_through_gcc(tmp_path):
    values = [0.1, -2.5e-09, 5e-324, 1.7976931348623157e308, 2.0 ** -1074, 1e300, -0.0, 0.0, 1 / 3, 50.000000000000007,
              np.inf, -np.inf]
    body = "\n".join(f"double v{i}(const double* x) {{ (void)x; return {literal(v)}; }}" for i, v in enumerate(values))
    lib = compile_c("#include <math.h>\n" + body + "\n", tmp_path, "lits")
    row = np.zeros(1)
    for i, v in enumerate(values):
        got = scalar_values(lib, f"v{i}", ctypes.c_double, row[None, :])[0]
        assert bits(np.array([got]))[0] == bits(np.array([v]))[0], (v, got)
    assert literal(np.nan) == "NAN"


def test_feature_names_become_valid_c(tmp_path):
    names = ["int", "NAN", "isnan", "x", "a b", "a-b", "1st", "ü", "expert_1", "log", "y1", "phi", "a_b"]
    ids = identifiers(names)
    assert len(set(ids.values())) == len(names)
    from fecc.ir import Binary, Const

    e = Expert(name="expert_1", region_index=1, region=Binary("gt", Feature("int"), Const(0.0)), region_rule="",
               correction=Binary("add", Feature("isnan"), Binary("mul", Feature("NAN"), Feature("a b"))),
               structure=Feature("x"), params={}, metrics={})
    lib = compile_c(emit_experts_c([e], names).text, tmp_path)
    row = np.arange(len(names), dtype=np.float64)[None, :] + 1.0
    assert scalar_values(lib, "expert_1_correction", ctypes.c_double, row)[0] == 3.0 + 2.0 * 5.0


def test_unbound_parameter_and_unknown_node_are_errors():
    from fecc.ir import Binary, Const, Param

    backend = CBackend({"a": "a"})
    with pytest.raises(LoweringError, match="unbound"):
        backend.code(Binary("add", Feature("a"), Param("p")))

    class Mystery(Const):
        pass

    with pytest.raises(LoweringError, match="Mystery"):
        backend.code(Mystery(1.0))
    with pytest.raises(LoweringError, match="not a model feature"):
        backend.code(Feature("zzz"))


def test_emit_is_stable_and_comments_cannot_close():
    a = emit_experts_c(EXPERTS, FEATURES).text
    assert a == emit_experts_c(list(EXPERTS), list(FEATURES)).text
    e = Expert(name="expert_1", region_index=1, region=Unary("isnan", Feature("a")), region_rule="a */ b /* c",
               correction=Feature("a"), structure=Feature("a"), params={}, metrics={})
    text = emit_experts_c([e], ["a"]).text
    assert "a */ b" not in text


# --- random well-typed expressions (hypothesis): C vs numba-as-Python (bit for bit) and numpy

@given(expr=num_exprs(max_leaves=10, with_params=False), cols=columns(6))
def test_random_expressions(expr, cols):
    e = Expert(name="expert_1", region_index=1, region=Unary("not", Unary("isnan", Feature(H_FEATURES[0]))),
               region_rule="", correction=expr, structure=expr, params={}, metrics={})
    X = np.column_stack([cols[f] for f in H_FEATURES])
    with tempfile.TemporaryDirectory() as d:
        lib = compile_c(emit_experts_c([e], list(H_FEATURES)).text, Path(d))
        got = scalar_values(lib, "expert_1_correction", ctypes.c_double, X)
        write_module([e], list(H_FEATURES), Path(d))
        es = ExpertSet(Path(d), [{"name": "expert_1", **function_names("expert_1")}], "experts.py", use_numba=False)
        with np.errstate(all="ignore"):
            py = np.array([es.module.expert_1_correction(r) for r in X], dtype=np.float64)
            want = evaluate(expr, cols)
    assert_exact(got, py)
    uses_libm = any(getattr(n, "op", None) in LIBM for n in expr.walk())
    if not uses_libm:
        assert_exact(got, want)
    else:  # as the numba parity test: same NaN pattern, values within a few ulps
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=4e-16 * 8, atol=0, equal_nan=True)


# --- whole bundles: the C ensemble library end to end

from _planted import planted_bundle  # noqa: E402

EDGE_VALUES = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e300, -1e300, 1e-300, 0.5, 0.2, -0.3, 1.0, -1.0, 50.0, 710.0]


def edge_rows(X, seed=3) -> np.ndarray:
    """Compile rows with, per row, several columns set to edge values and to the experts' thresholds."""
    rng = np.random.default_rng(seed)
    rows = X.to_numpy(np.float64)[:200].copy()
    for i in range(len(rows)):
        cols = rng.choice(rows.shape[1], size=3, replace=False)
        rows[i, cols] = rng.choice(EDGE_VALUES, size=3)
    extra = np.array([[v] * X.shape[1] for v in EDGE_VALUES])
    return np.vstack([rows, extra])


@pytest.fixture(scope="module")
def native_bundle(tmp_path_factory):
    return planted_bundle(tmp_path_factory.mktemp("planted_c"))


def test_bundle_records_the_c_engine(native_bundle):
    import fecc_runtime

    out, result, _, _ = native_bundle
    m = json.loads((out / "manifest.json").read_text())
    assert m["experts_engine"] == "c" and m["emit"] == "native"
    assert m["ensemble"]["library"] == "ensemble/ensemble.so"
    assert {"ensemble/experts.c", "ensemble/legacy_engine.c", "ensemble/aggregator_engine.c", "ensemble/ensemble.c",
            "ensemble/ensemble.so"} <= set(m["files"])
    assert "-ffp-contract=off" in m["ensemble"]["compiler"]["flags"]
    assert "-fno-fast-math" in m["ensemble"]["compiler"]["flags"]
    source = (out / "ensemble/experts.c").read_text()
    for e in m["experts"]:
        assert e["correction"]["postfix"].split()[0] in source and f"{e['name']}_region" in source
    b = fecc_runtime.load(out)
    assert b.engine == "c" and b.uses_experts


def test_bundle_matches_search_reference(native_bundle):
    """Bundle predictions vs ``SearchResult.predict_margin`` (numpy IR evaluator + xgboost)."""
    import fecc_runtime
    from fecc.frontend import load_legacy_model, reference_margin

    out, result, model_path, X = native_bundle
    model = load_legacy_model(model_path)
    b = fecc_runtime.load(out)
    rows = edge_rows(X)
    finite = ~np.isinf(rows).any(axis=1) & ~(np.abs(np.nan_to_num(rows)) > 3e38).any(axis=1)  # xgboost refuses inf
    import pandas as pd

    P = pd.DataFrame(rows[finite], columns=X.columns)
    with np.errstate(all="ignore"):
        want = result.predict_margin(P, reference_margin(model, P.astype(np.float32).astype(np.float64)))
    got = b.predict(rows[finite], output="margin")
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(b.predict(rows[finite]), 1 / (1 + np.exp(-want)), rtol=0, atol=1e-12)
    assert (got == want).mean() > 0.9  # the rest differ in the last bits of a tanh/exp/log1p


def test_c_engine_matches_numba_engine_on_edge_rows(native_bundle):
    import fecc_runtime

    out, _, _, X = native_bundle
    rows = edge_rows(X, seed=4)
    c = fecc_runtime.load(out)
    nb = fecc_runtime.load(out, engine="numba")
    assert nb.engine == "numba"
    with np.errstate(all="ignore"):
        got, want = c.predict(rows, output="margin"), nb.predict(rows, output="margin")
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_one_row_equals_batch_bit_for_bit(native_bundle):
    import fecc_runtime

    out, _, _, X = native_bundle
    b = fecc_runtime.load(out)
    rows = edge_rows(X, seed=5)
    batch = b.predict(rows, output="margin")
    one = np.array([b.predict_one(r, output="margin") for r in rows])
    assert_exact(one, batch)
    names = list(X.columns)
    as_dict = [b.predict_one(dict(zip(names, r.tolist())), output="margin") for r in rows[:20]]
    assert_exact(as_dict, batch[:20])
    assert b.predict_one(dict(zip(names, rows[0].tolist()))) == pytest.approx(1 / (1 + np.exp(-batch[0])), abs=1e-15)
    # threads: the batch split over threads gives the same bits as one call
    big = np.repeat(rows, 20, axis=0)
    assert_exact(b.predict(big, output="margin"), np.repeat(batch, 20))


@pytest.mark.parametrize("base_margin,rounds", [("legacy", 10), ("legacy+experts", 0)])
def test_other_aggregator_forms(tmp_path, base_margin, rounds):
    """``base_margin: legacy`` (no offset) and a ``sum`` aggregator (no trees) through the C library."""
    import fecc_runtime

    out, result, _, X = planted_bundle(tmp_path, base_margin=base_margin, agg_rounds=rounds, n_rows=600)
    m = json.loads((out / "manifest.json").read_text())
    assert m["ensemble"]["aggregator_trees"] == bool(rounds) and m["ensemble"]["base_margin"] == base_margin
    c, nb = fecc_runtime.load(out), fecc_runtime.load(out, engine="numba")
    rows = edge_rows(X)
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(c.predict(rows, output="margin"), nb.predict(rows, output="margin"), rtol=0,
                                   atol=1e-12)


def test_tampered_ensemble_library_is_refused(native_bundle, tmp_path):
    import shutil

    import fecc_runtime

    out, _, _, _ = native_bundle
    copy = tmp_path / "b"
    shutil.copytree(out, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["ensemble"]["abi"] = 99
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(fecc_runtime.BundleError, match="ABI"):
        fecc_runtime.load(copy, verify=False)
    m["ensemble"]["abi"] = 1
    m["ensemble"]["block_rows"] = 3
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(fecc_runtime.BundleError, match="does not match"):
        fecc_runtime.load(copy, verify=False)


def test_experts_bundle_needs_only_numpy(native_bundle, tmp_path):
    """With the experts in C, a bundle with experts serves without numba (or anything but numpy)."""
    import os
    import subprocess
    import sys
    import sysconfig

    import fecc_runtime
    from test_runtime_alone import CHILD, RUNTIME, _numpy_only_dir

    out, _, _, X = native_bundle
    stdlib = sysconfig.get_paths()["stdlib"]
    std_paths = [p for p in sys.path if p == stdlib or p.endswith(("lib-dynload", ".zip"))]
    sys_path = std_paths + [str(_numpy_only_dir(tmp_path)), str(RUNTIME)]
    rows = X.head(5).to_numpy()
    rows = np.where(np.isnan(rows), None, rows).tolist()
    code = f"import sys; sys.path[:] = {sys_path!r}\n" + CHILD
    proc = subprocess.run([sys.executable, "-S", "-E", "-c", code, str(out), json.dumps(rows)],
                          capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "")})
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert not {"numba", "fecc", "xgboost", "pandas"} & set(got["modules"])
    ref = fecc_runtime.load(out).predict(np.array(rows, dtype=float))
    assert got["pred"] == ref.tolist() and got["one"] == ref[0]


def test_lightgbm_legacy_reads_float64_in_the_library(tmp_path):
    """A LightGBM legacy model (float64 thresholds): the library's batch reads float64 rows, the
    experts float32-rounded ones, as the step-by-step engine does."""
    import pandas as pd

    import fecc_runtime

    models = Path(__file__).parent / "data" / "models" / "lightgbm-4.7.0"
    arrays = np.load(models / "binary.npz")
    names = ["age", "income_k", "segment", "n_loans", "util_ratio", "tenure_m", "score_a", "score_b"]
    keep = ~np.isinf(arrays["X"]).any(axis=1) & (np.abs(np.nan_to_num(arrays["X"])) < 1e30).all(axis=1)
    X = pd.DataFrame(arrays["X"][keep].astype(np.float64), columns=names)
    y = (arrays["output"][keep] > 0.5).astype(np.float64)
    experts = [("$age 40.0 gt", "0.2 $income_k 50.0 sub 0.0 max mul 0.01 mul $score_a tanh 0.1 mul add"),
               ("$util_ratio 0.5 le $tenure_m isnan or", "$score_b $n_loans div log 0.05 mul")]
    out, result, _, _ = planted_bundle(tmp_path, model_path=models / "binary.txt", experts=experts, table=(X, y),
                                       agg_rounds=10)
    m = json.loads((out / "manifest.json").read_text())
    assert m["experts_engine"] == "c" and m["ensemble"]["feature_type"] == "float64"
    c, nb = fecc_runtime.load(out), fecc_runtime.load(out, engine="numba")
    rows = edge_rows(X)
    with np.errstate(all="ignore"):
        got, want = c.predict(rows, output="margin"), nb.predict(rows, output="margin")
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    one = np.array([c.predict_one(r, output="margin") for r in rows])
    assert_exact(one, got)
