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
    bm = m["aggregator"]["base_map"]
    assert f"base:      margin = {bm['shift']} + {bm['scale']} × legacy margin" in res.stdout
    for e in m["experts"]:
        assert f"{e['name']}: if {e['region']['rule']}: margin += {e['correction']['math']}" in res.stdout


def test_base_map_ships_with_the_ensemble_and_every_engine_applies_it(bundle, planted_files, tmp_path):
    """The search repairs ``shift + scale · legacy margin`` (fecc.search.base_map); the bundle
    carries the map (format version 2), and the C library and the numba path both apply it:
    a manifest whose map is put back to the identity is refused by the parity replay."""
    import shutil

    import numpy as np
    import pandas as pd

    from fecc_runtime import BundleError

    out, _ = bundle
    m = json.loads((out / "manifest.json").read_text())
    bm = m["aggregator"]["base_map"]
    assert bm["scale"] > 0 and (bm["scale"], bm["shift"]) != (1.0, 0.0)
    assert m["format_version"] == 2
    assert m["ensemble"]["base_map"] == {"scale": bm["scale"], "shift": bm["shift"]}
    rows = pd.read_parquet(planted_files / "new.parquet").drop(columns="y")
    c = fecc_runtime.load(out, engine="native").predict(rows, output="margin")
    nb = fecc_runtime.load(out, engine="numba").predict(rows, output="margin")
    np.testing.assert_allclose(c, nb, rtol=1e-9, atol=1e-9)

    def rewritten(fn):
        dst = tmp_path / f"b{len(list(tmp_path.iterdir()))}"
        shutil.copytree(out, dst)
        man = json.loads((dst / "manifest.json").read_text())
        fn(man)
        (dst / "manifest.json").write_text(json.dumps(man))
        return dst

    def identity(man):
        man["aggregator"].pop("base_map")
        man["ensemble"].pop("base_map")

    with pytest.raises(BundleError, match="parity"):
        fecc_runtime.load(rewritten(identity), engine="numba")
    # an old (version 1) manifest cannot carry a map: a runtime must not ignore it
    with pytest.raises(BundleError, match="says format version 1"):
        fecc_runtime.load(rewritten(lambda man: man.update(format_version=1)))
    with pytest.raises(BundleError, match="scale > 0"):
        fecc_runtime.load(rewritten(lambda man: man["aggregator"]["base_map"].update(scale=-1.0)))
    with pytest.raises(BundleError, match="disagree on the base map"):
        fecc_runtime.load(rewritten(lambda man: man["ensemble"].pop("base_map")), engine="native")
