"""Transforms are IR: the backends that lower experts lower them too, and agree with the reference.

Programs are drawn from the automaton (the space the teaming search decodes) and
evaluated on rows with NaN, ±inf, zeros and huge values: the numba backend's Python
text (run as plain Python, the module's no-numba path) and the ONNX expression graph
must give the numpy reference evaluator's value on every row.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from fecc.ir import evaluate
from fecc.lower.numba_backend import _HELPER_ARGS, HELPERS, NumbaBackend
from fecc.transforms.automaton import Automaton, Limits
from fecc.transforms.vocab import Vocab

FEATURES = ["a", "b c", "d"]


def _programs(n=300, seed=0):
    v = Vocab.build(FEATURES)
    auto = Automaton(v, Limits(max_programs=1))
    rng = np.random.default_rng(seed)
    out = {}
    while len(out) < n:
        (expr,) = v.parse(auto.sample(rng))
        out.setdefault(str(expr), expr)
    return list(out.values())


def _rows():
    special = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-12, 1e300, -1e300, math.inf, -math.inf, math.nan, 3.7, -2.2]
    rng = np.random.default_rng(1)
    cols = {f: np.concatenate([rng.choice(special, 60), rng.normal(size=40) * 10]) for f in FEATURES}
    return cols


#: operators whose libm and numpy results may differ by an ulp (test_numba_parity.py); with
#: them a composed program may lose that ulp to cancellation, so it is compared to a
#: tolerance scaled by the row's inputs; every other program must agree bit for bit
INEXACT = {"log", "exp", "sigmoid", "tanh"}


def _scale(cols):
    """Per row: the largest finite input magnitude (at least 1)."""
    X = np.column_stack([cols[f] for f in FEATURES])
    return np.maximum(1.0, np.max(np.where(np.isfinite(X), np.abs(X), 0.0), axis=1))


def _same(a, b, *, exact=True, scale=1.0):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if np.array_equal(a, b, equal_nan=True):
        return True
    return not exact and bool(np.all(np.isclose(a, b, rtol=1e-9, atol=1e-13 * scale, equal_nan=True)))


def test_numba_backend_text_matches_the_reference_on_every_row():
    cols = _rows()
    locals_ = {f: f"x{j}" for j, f in enumerate(FEATURES)}
    for expr in _programs():
        be = NumbaBackend(locals_)
        code = be.code(expr)
        src = ["import math"]
        for name, (body, _doc, _) in HELPERS.items():
            if name in be.helpers:
                src.append(f"def {name}({_HELPER_ARGS.get(name, 'x')}):")
                src += ["    " + line for line in body]
        src.append(f"def f({', '.join(locals_.values())}):\n    return {code}")
        ns: dict = {}
        exec("\n".join(src), ns)  # noqa: S102 - our own lowering of our own IR
        with np.errstate(all="ignore"):
            ref = evaluate(expr, cols)
        got = []
        for i in range(len(ref)):
            try:
                got.append(float(ns["f"](*(float(cols[f][i]) for f in FEATURES))))
            except (OverflowError, ZeroDivisionError):
                got.append(math.nan)
        exact = not INEXACT & {getattr(n, "op", None) for n in expr.walk()}
        scale = _scale(cols)
        bad = [i for i in range(len(ref)) if not _same(got[i], ref[i], exact=exact, scale=scale[i])]
        assert not bad, (str(expr), code, [(got[i], ref[i]) for i in bad[:3]])


def test_onnx_expression_graph_matches_the_reference():
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from fecc.lower.onnx_graph import expressions_model

    cols = _rows()
    exprs = {f"t{i}": e for i, e in enumerate(_programs(120, seed=2))}
    model = expressions_model(exprs, FEATURES)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    X = np.column_stack([cols[f] for f in FEATURES])
    outs = sess.run(None, {"X": X})
    with np.errstate(all="ignore"):
        for (name, expr), got in zip(exprs.items(), outs):
            ref = evaluate(expr, cols)
            exact = not INEXACT & {getattr(n, "op", None) for n in expr.walk()}
            assert _same(got, ref, exact=exact, scale=_scale(cols)), (name, str(expr))
