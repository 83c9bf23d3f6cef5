"""Parity matrix: the emitted numba module vs the IR's numpy evaluator, for every operator.

One module holds one expert per operator of ``fecc.ir.OPS`` (numeric operators as the
correction, predicates as the region); each is checked on edge rows (NaN, ±inf, ±0,
huge and tiny values, values exactly on the thresholds, exp's clip and overflow points)
and random rows, jitted and as plain Python.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from fecc.ir import OPS, Binary, Const, Feature, Unary, evaluate, make
from fecc.lower.numba_backend import LoweringError, NumbaBackend, emit_module, write_module
from fecc.search import Expert, function_names
from fecc_runtime.experts import ExpertSet

FEATURES = ["a", "b", "c"]
EDGE = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e300, -1e300, 1e-300, -1e-300, 0.7, 0.5, 50.0, 50.000000000000007,
        709.78, 710.0, -745.0, 1.0, -1.0, 2.5, 1e-9, -1e-9]
OP_NAMES = sorted(OPS)


def _args(op_name):
    """Operands of the right types for ``op_name`` over features a, b, c."""
    out = []
    for i, kind in enumerate(OPS[op_name].args):
        f = Feature(FEATURES[i % 3])
        out.append(f if kind == "num" else Binary("gt", f, Const(0.7 if i == 0 else 0.5)))
    return out


def _expert(k: int, op_name: str) -> Expert:
    node = make(op_name, *_args(op_name))
    if node.type == "bool":
        region, correction = node, Feature("a")
    else:
        region, correction = Unary("not", Unary("isnan", Feature("c"))), node
    return Expert(name=f"expert_{k}", region_index=k, region=region, region_rule=op_name,
                  correction=correction, structure=correction, params={}, metrics={}, iterations=0)


EXPERTS = [_expert(k, op) for k, op in enumerate(OP_NAMES, start=1)]
BY_OP = dict(zip(OP_NAMES, EXPERTS))


def _rows() -> np.ndarray:
    rng = np.random.default_rng(0)
    pairs = np.array(list(itertools.product(EDGE, EDGE)), dtype=np.float64)
    c = np.resize(np.array(EDGE + [3.0]), len(pairs))
    edge = np.column_stack([pairs, c])
    rand = rng.normal(0, 3, size=(300, 3))
    return np.ascontiguousarray(np.vstack([edge, rand, edge[:, [1, 0, 2]]]))


ROWS = _rows()
COLS = {f: ROWS[:, j] for j, f in enumerate(FEATURES)}


@pytest.fixture(scope="module", params=["numba", "python"])
def expert_set(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"parity_{request.param}")
    write_module(EXPERTS, FEATURES, out)
    entries = [{"name": e.name, **function_names(e.name)} for e in EXPERTS]
    return ExpertSet(out, entries, "experts.py", use_numba=request.param == "numba")


def _scalar(fn, rows) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.array([fn(r) for r in rows])


def _assert_same(got, want):
    got, want = np.asarray(got), np.asarray(want)
    if want.dtype == bool:
        np.testing.assert_array_equal(got.astype(bool), want)
        return
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    # + - * /, comparisons, where, min/max are exact; log1p/exp/tanh may differ by an ulp
    np.testing.assert_allclose(got, want, rtol=4e-16 * 8, atol=0, equal_nan=True)


@pytest.mark.parametrize("op_name", OP_NAMES)
def test_op_parity(expert_set, op_name):
    e = BY_OP[op_name]
    mod = expert_set.module
    fns = function_names(e.name)
    if OPS[op_name].result == "bool":
        got = _scalar(getattr(mod, fns["region_function"]), ROWS)
        _assert_same(got, evaluate(e.region, COLS))
    else:
        got = _scalar(getattr(mod, fns["correction_function"]), ROWS)
        _assert_same(got, evaluate(e.correction, COLS))


def test_batch_matches_reference_semantics(expert_set):
    base = np.linspace(-3, 3, len(ROWS))
    got = expert_set.values(ROWS, base)
    for k, e in enumerate(EXPERTS):
        with np.errstate(all="ignore"):
            want = e.values(COLS, base)
        _assert_same(got[:, k], want)
    # the one-call entry point agrees with the per-expert batch functions
    out = np.empty((len(ROWS), len(EXPERTS)))
    with np.errstate(all="ignore"):
        expert_set.module.predict_experts(ROWS, base, out)
    np.testing.assert_array_equal(out, got)


def test_unbound_parameter_and_unknown_node_are_errors():
    from fecc.ir import Param

    backend = NumbaBackend({"a": "a"})
    with pytest.raises(LoweringError, match="unbound"):
        backend.code(Binary("add", Feature("a"), Param("p")))

    class Mystery(Const):
        pass

    with pytest.raises(LoweringError, match="Mystery"):
        backend.code(Mystery(1.0))
    with pytest.raises(LoweringError, match="not a model feature"):
        backend.code(Feature("zzz"))


def test_runtime_without_numba_module_attribute(tmp_path):
    write_module(EXPERTS[:2], FEATURES, tmp_path)
    entries = [{"name": e.name, **function_names(e.name)} for e in EXPERTS[:2]]
    es = ExpertSet(tmp_path, entries, "experts.py", use_numba=False)
    assert es.jitted is False
    assert es.features(ROWS, np.zeros(len(ROWS))).shape == (len(ROWS), 1 + 3 * 2)
    assert es.feature_names[:4] == ["base_margin", "expert_1", "expert_1_delta", "expert_1_ratio"]


def test_emit_is_stable():
    assert emit_module(EXPERTS, FEATURES).text == emit_module(list(EXPERTS), list(FEATURES)).text


# --- random well-typed expressions (hypothesis), plain-Python mode of the same emitted source
from hypothesis import given  # noqa: E402

from ir_strategies import FEATURES as H_FEATURES, columns, num_exprs  # noqa: E402

pytestmark = pytest.mark.backend_numba


@given(expr=num_exprs(max_leaves=10, with_params=False), cols=columns(6))
def test_random_expressions_match_the_reference(expr, cols):
    import tempfile
    from pathlib import Path

    e = Expert(name="expert_1", region_index=1, region=Unary("not", Unary("isnan", Feature(H_FEATURES[0]))),
               region_rule="", correction=expr, structure=expr, params={}, metrics={}, iterations=0)
    with tempfile.TemporaryDirectory() as d:
        write_module([e], list(H_FEATURES), Path(d))
        es = ExpertSet(Path(d), [{"name": "expert_1", **function_names("expert_1")}], "experts.py",
                       use_numba=False)
        X = np.column_stack([cols[f] for f in H_FEATURES])
        got = _scalar(es.module.expert_1_correction, X)
        with np.errstate(all="ignore"):
            want = evaluate(expr, cols)
        _assert_same(got, want)
        base = np.zeros(len(X))
        _assert_same(es.values(X, base)[:, 0], e.values(cols, base))
