"""The transforms must earn their place against NSR alone (``fecc.search.select.prefer``).

Unit tests of the paired selection on planted out-of-fold margins, then two compiles:
a table whose signal is an interaction the legacy stumps and a one-feature expert cannot
represent (the transforms win the selection and ship), and a table where the transforms
add nothing to what NSR alone finds (the selection refuses them and the bundle's experts,
aggregator and code are those of the ``--transforms none`` compile of the same inputs).
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from fecc.search.select import DECISIONS, Selection, prefer, served_oof

KEYS = {"test", "statistic", "p_value", "gain", "interval", "decision", "reason"}


def _side(oof, experts=1, shipped=True):
    """A stand-in for a SearchResult: what prefer reads."""
    return SimpleNamespace(oof_margin=oof, experts=[object()] * experts, shipped=shipped)


def _binary(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    legacy = 0.8 * x[:, 0]
    signal = legacy + 1.2 * x[:, 1]
    y = (rng.random(n) < 1 / (1 + np.exp(-signal))).astype(float)
    return y, legacy, signal, rng


def test_no_transform_chosen_means_nsr_alone_untested():
    y, legacy, _, _ = _binary()
    s = prefer(task="binary", y=y, legacy_margin=legacy, alone=_side(legacy), derived=None, alpha=0.05)
    assert s.decision == "nsr-alone" and s.test is None and not s.transforms
    entry = s.to_manifest()
    assert KEYS <= set(entry) and entry["p_value"] is None and "chose no transform" in entry["reason"]
    json.dumps(entry, allow_nan=False)


def test_a_clearly_better_derived_side_wins_and_is_recorded():
    y, legacy, signal, rng = _binary()
    alone = _side(legacy + 0.05 * rng.normal(size=y.size))
    derived = _side(signal)
    s = prefer(task="binary", y=y, legacy_margin=legacy, alone=alone, derived=derived, alpha=0.05)
    assert s.decision == "transforms", s.reason
    entry = s.to_manifest()
    assert KEYS <= set(entry) and entry["decision"] in DECISIONS
    assert entry["test"] == "delong" and entry["gain"] > 0 and entry["p_value"] <= 0.05
    assert entry["interval"][0] < entry["gain"] < entry["interval"][1]
    assert entry["loss_test"]["gain"] > 0 and entry["oof"]["with_transforms"]["auc"] > entry["oof"]["nsr_alone"]["auc"]
    json.dumps(entry, allow_nan=False)
    # the same inputs give the same record
    again = prefer(task="binary", y=y, legacy_margin=legacy, alone=alone, derived=derived, alpha=0.05)
    assert again.to_manifest() == entry


def test_equal_sides_refused_and_a_side_that_kept_nothing_is_legacy():
    y, legacy, signal, _ = _binary()
    s = prefer(task="binary", y=y, legacy_margin=legacy, alone=_side(signal), derived=_side(signal.copy()),
               alpha=0.05)
    assert s.decision == "nsr-alone" and "not better" in s.reason and s.test.gain == 0
    # NSR alone kept nothing: it serves legacy, whatever its outer folds' margins were
    nothing = _side(signal, experts=0, shipped=False)
    assert np.array_equal(served_oof(nothing, legacy), legacy)
    s = prefer(task="binary", y=y, legacy_margin=legacy, alone=nothing, derived=_side(signal), alpha=0.05)
    assert s.decision == "transforms" and s.test.legacy == pytest.approx(s.oof["nsr_alone"]["auc"])


def test_a_derived_side_its_gate_refused_never_ships():
    y, legacy, signal, _ = _binary()
    s = prefer(task="binary", y=y, legacy_margin=legacy, alone=_side(legacy), derived=_side(signal, shipped=False),
               alpha=0.05)
    assert s.decision == "nsr-alone" and "gate kept legacy" in s.reason and s.test.p_value < 0.05


def test_better_auc_but_worse_log_loss_is_refused():
    y, legacy, signal, _ = _binary()
    # same ranking as the signal, far too confident: AUC up, log loss much worse
    s = prefer(task="binary", y=y, legacy_margin=legacy, alone=_side(legacy), derived=_side(8.0 * signal),
               alpha=0.05)
    assert s.decision == "nsr-alone" and "log loss is worse" in s.reason


def test_regression_uses_the_paired_z_on_squared_error():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2000, 2))
    y = x[:, 0] + 0.7 * x[:, 1] + 0.3 * rng.normal(size=2000)
    legacy = x[:, 0]
    s = prefer(task="regression", y=y, legacy_margin=legacy, alone=_side(legacy + 0.1 * x[:, 1]),
               derived=_side(legacy + 0.7 * x[:, 1]), alpha=0.05)
    assert s.decision == "transforms" and s.test.name == "paired-z" and s.test.metric == "rmse"
    assert s.loss_test is None and s.test.gain > 0
    s = prefer(task="regression", y=y, legacy_margin=legacy, alone=_side(legacy + 0.7 * x[:, 1]),
               derived=_side(legacy + 0.1 * x[:, 1]), alpha=0.05)
    assert s.decision == "nsr-alone" and s.test.gain < 0
    with pytest.raises(ValueError, match="needs the search alone"):
        prefer(task="regression", y=y, legacy_margin=legacy, alone=None, derived=_side(legacy), alpha=0.05)


def test_selection_is_a_plain_record():
    s = Selection("nsr-alone", "why", 0.05)
    assert s.to_manifest()["decision"] == "nsr-alone" and s.to_manifest()["interval"] is None


# --------------------------------------------------------------------------- compiles

xgb = pytest.importorskip("xgboost")
pytest.importorskip("torch")

from fecc.driver import CompileOptions, compile_bundle  # noqa: E402

SEARCH = {"n_regions": 1, "max_proposals": 4, "iterations": 2, "optuna_trials": 8}
TRANSFORM = dict(golden=100, epochs=15, refit_epochs=3, rounds=1, starts=8, grad_steps=4, eval_top=24, audit=4,
                 probe_invalid=0, max_features=5, time_budget_s=60.0)
FEATURES = [f"x{i}" for i in range(1, 6)]


def _table(n: int, seed: int, logit) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f: rng.normal(size=n) for f in FEATURES})
    return X.assign(y=(rng.random(n) < 1 / (1 + np.exp(-logit(X)))).astype(int))


def _legacy(d, seed=11):
    legacy = _table(2000, seed, lambda X: 0.8 * X["x3"])
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 1, "eta": 0.3, "seed": 0, "nthread": 1},
                        xgb.DMatrix(legacy[FEATURES], label=legacy["y"]), num_boost_round=20)
    booster.save_model(d / "model.json")


def _compile(d, name: str, transforms: str, transform_options=None, seed=3) -> dict:
    out = d / name
    compile_bundle(d / "model.json", d / "data.parquet", out,
                   CompileOptions(seed=seed, search_options=SEARCH, transforms=transforms,
                                  transform_options=transform_options or {}))
    return json.loads((out / "manifest.json").read_text())


def _shipped_content(manifest: dict) -> dict:
    """What the bundle serves: everything but the transform search's record (and the report, which renders it)."""
    search = {k: v for k, v in manifest["search"].items() if k != "transforms"}
    files = {f: h for f, h in _files(manifest).items() if not f.startswith("report")}
    keep = {k: v for k, v in manifest.items() if k not in ("search", "files")}
    return {**keep, "search": search, "files": files}


def _files(manifest: dict) -> dict:
    files = manifest.get("files")
    if isinstance(files, dict):
        return dict(files)
    return {f["path"]: f.get("sha256") for f in files}


@pytest.fixture(scope="module")
def noise_pair(tmp_path_factory):
    """Compile data whose only news is additive in x4 (NSR alone finds it); the transform search is made
    to choose something anyway (bars lowered to nothing), and the selection must refuse it."""
    d = tmp_path_factory.mktemp("sel")
    _legacy(d)
    _table(1200, 5, lambda X: 0.8 * X["x3"] + 0.9 * X["x4"]).to_parquet(d / "data.parquet")
    loose = dict(TRANSFORM, min_gain=0.0, min_z=-100.0, min_folds_positive=0)
    teaming = _compile(d, "teaming", "teaming", loose)
    none = _compile(d, "none", "none")
    return d, teaming, none


def test_transforms_that_add_nothing_are_refused_and_the_bundle_is_the_none_bundle(noise_pair):
    d, teaming, none = noise_pair
    st = teaming["search"]["transforms"]
    assert st["chosen_postfix"], "the loosened transform search should have chosen at least one transform"
    sel = st["selection"]
    assert KEYS <= set(sel) and sel["decision"] == "nsr-alone", sel
    assert sel["test"] == "delong" and sel["p_value"] is not None
    assert st["shipped"] is False and teaming["transforms"] == []
    assert none["gate"]["decision"] == "ensemble"      # NSR alone ships experts here: a real comparison
    assert _shipped_content(teaming) == _shipped_content(none)
    for rel in ("experts/experts.py", "ensemble/experts.c"):
        if (d / "none" / rel).exists():
            assert (d / "teaming" / rel).read_bytes() == (d / "none" / rel).read_bytes(), rel
    assert "transform selection: nsr-alone" in __import__("fecc").inspect(d / "teaming")


def test_manifest_selection_is_json_and_deterministic(noise_pair, tmp_path):
    d, teaming, _ = noise_pair
    json.dumps(teaming["search"]["transforms"]["selection"], allow_nan=False)
    (tmp_path / "model.json").write_bytes((d / "model.json").read_bytes())
    (tmp_path / "data.parquet").write_bytes((d / "data.parquet").read_bytes())
    again = _compile(tmp_path, "teaming", "teaming", dict(TRANSFORM, min_gain=0.0, min_z=-100.0, min_folds_positive=0))
    assert again["search"]["transforms"] == teaming["search"]["transforms"]
    assert _shipped_content(again) == _shipped_content(teaming)
