"""Every legacy fixture, lowered to C, scores exactly as the library that wrote it.

For each model in ``tests/data/models/index.json`` (XGBoost 1.7 to 3.2, LightGBM 3.3
and 4.7, see ``tests/fixtures/make_models.py``) this lowers the file with
:func:`fecc.lower.lower_trees`, loads the result with the runtime's
:class:`fecc_runtime.trees.TreeEnsemble`, and compares its margins and outputs,
batch and single-row, with the predictions *that library version* made on rows full
of NaN, exact thresholds, neighbouring ulps and unseen categories.

The tolerance is 1e-6 absolute.  XGBoost sums in float32, so a different
summation order alone can move a margin by a few float32 ulps; 1e-6 allows that
for margins of order 1 and nothing more (a row that goes down the wrong branch
moves by a whole leaf value, ~1e-2).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fecc.lower")
pytest.importorskip("treelite")
pytest.importorskip("tl2cgen")
trees_runtime = pytest.importorskip("fecc_runtime.trees")

from fecc.frontend.models import load_legacy_model  # noqa: E402
from fecc.frontend import load_forest  # noqa: E402
from fecc.lower import lower_trees  # noqa: E402

pytestmark = pytest.mark.backend_trees_c

MODELS = Path(__file__).parent / "data" / "models"
INDEX = json.loads((MODELS / "index.json").read_text())["fixtures"]
FIXTURES = {e["path"]: e for e in INDEX}
ATOL = 1e-6

# Known gaps, each with the reason; strict, so a fix turns them into XPASS failures
# that ask for this list to shrink.  Empty since the runtime reads LightGBM inputs as
# float64 and lower_trees reads UBJSON (both measured 2026-11-27).
KNOWN_FAILURES: dict[str, str] = {}

# Rows whose branch depends on comparing in float64 rather than float32.
_FLOAT64_EDGE_ROWS = ("thr", "thr-ulp64", "thr+ulp64", "rounds-onto-thr32")


def _params() -> list:
    params = []
    for fixture_id in sorted(FIXTURES):
        marks = []
        if fixture_id in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(reason=KNOWN_FAILURES[fixture_id], strict=True))
        params.append(pytest.param(fixture_id, marks=marks, id=fixture_id))
    return params


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Lower each fixture once per test module; tests share the compiled bundle."""
    cache: dict[str, tuple] = {}

    def get(fixture_id: str):
        if fixture_id not in cache:
            entry = FIXTURES[fixture_id]
            model = load_legacy_model(MODELS / entry["path"])
            out = tmp_path_factory.mktemp(fixture_id.replace("/", "_").replace(".", "_"))
            manifest = lower_trees(load_forest(model), out, name="legacy")
            ensemble = trees_runtime.TreeEnsemble(out, manifest)
            cache[fixture_id] = (model, manifest, ensemble, dict(np.load(MODELS / entry["data"])))
        return cache[fixture_id]

    return get


def _check(got: np.ndarray, want: np.ndarray, kinds: np.ndarray, what: str) -> None:
    """Assert ``got`` is within ATOL of ``want``; on failure say which kinds of row differ."""
    got = np.asarray(got, dtype=np.float64).reshape(want.shape)
    err = np.abs(got - want).reshape(len(want), -1).max(axis=1)
    bad = err > ATOL
    if bad.any():
        names, counts = np.unique(kinds[bad], return_counts=True)
        by_kind = ", ".join(f"{n}: {c}" for n, c in zip(names, counts))
        raise AssertionError(f"max |{what} - library| = {err.max():.3g} on {bad.sum()}/{len(want)} rows ({by_kind})")


@pytest.mark.parametrize("fixture_id", _params())
def test_batch_margin_matches_library(compiled, fixture_id):
    _, _, ensemble, data = compiled(fixture_id)
    want = data["margin"].reshape(len(data["X"]), -1)
    _check(ensemble.predict(data["X"], margin=True), want, data["row_kind"], "margin")


@pytest.mark.parametrize("fixture_id", _params())
def test_batch_output_matches_library(compiled, fixture_id):
    model, _, ensemble, data = compiled(fixture_id)
    got = np.asarray(ensemble.predict(data["X"], margin=False), dtype=np.float64)
    want = data["output"].reshape(len(data["X"]), -1)
    if model.link == "argmax":
        # multi:softmax: XGBoost returns the class index; the runtime returns the
        # class probabilities (the softmax of the same margins), whose argmax is it.
        got = got.reshape(len(want), -1).argmax(axis=1)
    _check(got, want, data["row_kind"], "output")


@pytest.mark.parametrize("fixture_id", _params())
def test_single_row_matches_library(compiled, fixture_id):
    _, _, ensemble, data = compiled(fixture_id)
    want = data["margin"].reshape(len(data["X"]), -1)
    got = np.stack([np.atleast_1d(ensemble.predict_row(row, margin=True)) for row in data["X"]])
    _check(got, want, data["row_kind"], "single-row margin")


@pytest.mark.parametrize("fixture_id", sorted(k for k, e in FIXTURES.items() if e["format"] == "lightgbm"))
def test_lightgbm_rows_off_float64_thresholds_match(compiled, fixture_id):
    """Everything except the float64-threshold rows (NaN, inf, unseen categories,
    float32 ulps, multiclass, dart) matches, so the known gap above stays narrow."""
    _, _, ensemble, data = compiled(fixture_id)
    keep = ~np.isin(data["row_kind"], _FLOAT64_EDGE_ROWS)
    want = data["margin"].reshape(len(data["X"]), -1)[keep]
    _check(ensemble.predict(data["X"][keep], margin=True), want, data["row_kind"][keep], "margin")
