"""fecc compile with the NSR search, end to end: a planted hard region is repaired,
the bundle ships experts + aggregator, and the runtime reproduces the compile-time
reference (IR numpy evaluator + xgboost) bit for bit within the parity tolerance."""
from __future__ import annotations

import hashlib
import json

import pytest

import fecc_runtime
from fecc.driver import CompileOptions, compile_bundle
from fecc.search.metrics import auc
from test_search_pipeline import legacy_model, make_planted

SEARCH = {"n_regions": 4, "max_proposals": 8, "iterations": 4, "optuna_trials": 16}


@pytest.fixture(scope="module")
def planted_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    Xl, yl = make_planted(2000, 101, with_region=False)   # the legacy model never saw the region
    legacy_model(Xl, yl).save_model(d / "model.json")
    X, y = make_planted(2400, 1)
    X.assign(y=y).to_parquet(d / "data.parquet")
    Xn, yn = make_planted(3000, 55)                        # fresh rows for scoring
    Xn.assign(y=yn).to_parquet(d / "new.parquet")
    return d


def _compile(d, out, seed=7):
    return compile_bundle(d / "model.json", d / "data.parquet", out,
                          CompileOptions(seed=seed, llm="none", search_options=SEARCH))


@pytest.fixture(scope="module")
def bundle(planted_files):
    out = planted_files / "bundle"
    summary = _compile(planted_files, out)
    return out, summary


def test_planted_region_ships_experts(bundle):
    out, summary = bundle
    assert summary["gate"] == "ensemble", summary
    m = json.loads((out / "manifest.json").read_text())
    assert m["experts"] and m["experts_module"] == "experts/experts.py"
    assert m["gate"]["oof"]["ensemble"]["auc"] > m["gate"]["oof"]["legacy"]["auc"]
    assert m["gate"]["test"]["p_value"] <= m["gate"]["alpha"]
    # a regional expert sits on the planted region (x3 > 0.7 and x5 < 0.2)
    rules = [e["region"]["rule"] for e in m["experts"] if not e["region"]["whole_space"]]
    assert any("x3" in r and "x5" in r for r in rules), rules
    for rel in m["files"]:
        assert "__pycache__" not in rel


def test_runtime_improves_on_fresh_rows(bundle, planted_files):
    import pandas as pd
    import xgboost as xgb

    out, _ = bundle
    b = fecc_runtime.load(out)
    assert b.uses_experts
    new = pd.read_parquet(planted_files / "new.parquet")
    ours = b.predict(new)
    legacy = xgb.Booster(model_file=str(planted_files / "model.json")).inplace_predict(
        new.drop(columns=["y"]).to_numpy())
    assert auc(new["y"].to_numpy(), ours) > auc(new["y"].to_numpy(), legacy) + 0.01
    # the single-row path agrees with the batch path
    for i in range(0, 3000, 397):
        assert b.predict_one(new.iloc[i].to_dict()) == pytest.approx(ours[i], abs=1e-6)


def test_same_seed_same_bundle_bytes(bundle, planted_files, tmp_path):
    out, _ = bundle
    again = tmp_path / "again"
    _compile(planted_files, again)
    m1 = json.loads((out / "manifest.json").read_text())
    assert (out / "manifest.json").read_bytes() == (again / "manifest.json").read_bytes()
    for rel, digest in m1["files"].items():
        assert hashlib.sha256((again / rel).read_bytes()).hexdigest() == digest, rel


def test_cli_scores_an_ensemble_bundle(bundle, planted_files, tmp_path):
    from click.testing import CliRunner

    from fecc.cli import main

    out, _ = bundle
    res = CliRunner().invoke(main, ["score", str(out), str(planted_files / "new.parquet"), "-o", str(tmp_path / "s.csv")])
    assert res.exit_code == 0, res.stderr
    assert "legacy + experts" in res.stderr


def test_cli_inspect_shows_the_proposer_and_each_experts_rule(bundle):
    from click.testing import CliRunner

    from fecc.cli import main

    out, _ = bundle
    m = json.loads((out / "manifest.json").read_text())
    assert m["search"]["proposer"] == {"name": "grammar"}
    res = CliRunner().invoke(main, ["inspect", str(out)])
    assert res.exit_code == 0, res.stderr
    assert "proposer:  grammar" in res.stdout
    for e in m["experts"]:
        assert f"{e['name']}: if {e['region']['rule']}: margin += {e['correction']['math']}" in res.stdout
