"""Whole bundles (fecc compile --search none → fecc_runtime.load → Bundle.predict) for
every model kind of the fixture zoo: the public runtime API, not just the tree engine,
must reproduce the producing library's outputs (≤ 1e-6) on rows with NaN, values on
thresholds, huge values and unseen categories."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fecc_runtime
from fecc.driver import CompileOptions, compile_bundle
from fecc.frontend import load_legacy_model

MODELS = Path(__file__).parent / "data" / "models"
INDEX = json.loads((MODELS / "index.json").read_text())["fixtures"]
# every LightGBM kind of the newest version, every XGBoost kind of the oldest and newest
CHOSEN = [e for e in INDEX if e["path"].split("/")[0] in ("lightgbm-4.7.0", "xgboost-1.7.6", "xgboost-3.2.0")]


def _table(entry) -> pd.DataFrame:
    data = np.load(MODELS / entry["data"], allow_pickle=False)
    model = load_legacy_model(MODELS / entry["path"])
    names = list(model.feature_names or [f"f{i}" for i in range(model.num_feature)])
    df = pd.DataFrame(data["X"], columns=names)
    for i, cats in enumerate(model.categories or ()):
        if cats is not None:  # the model stored category values: the user's table holds values, not codes
            codes = df.iloc[:, i]
            df[names[i]] = [cats[int(c)] if not math.isnan(c) and 0 <= c < len(cats) and c == int(c) else None
                            for c in codes]
    return df


@pytest.mark.parametrize("entry", CHOSEN, ids=[e["path"] for e in CHOSEN])
def test_bundle_reproduces_library_outputs(entry, tmp_path):
    df = _table(entry)
    df.to_parquet(tmp_path / "data.parquet")
    compile_bundle(MODELS / entry["path"], tmp_path / "data.parquet", tmp_path / "b", CompileOptions(search="none"))
    b = fecc_runtime.load(tmp_path / "b")
    data = np.load(MODELS / entry["data"], allow_pickle=False)
    got = b.predict(df)
    expected = data["output"]
    if entry["link"] == "argmax":  # multi:softmax: the class index
        assert np.array_equal(got, expected)
    else:
        assert np.max(np.abs(got - expected)) <= 1e-6
    assert np.max(np.abs(b.predict(df, output="margin") - data["margin"])) <= 1e-5
    one = b.predict_one(df.iloc[0].to_dict())
    assert np.allclose(one, expected[0], atol=1e-6, rtol=0)
