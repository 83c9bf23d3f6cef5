"""Whole bundles (fecc compile --search none → fecc_runtime.load → Bundle.predict) for
every model kind of the fixture zoo: the public runtime API, not just the tree engine,
must reproduce the producing library's outputs (≤ 1e-6) on rows with NaN, values on
thresholds, huge values and unseen categories."""
from __future__ import annotations

import numpy as np
import pytest

import fecc_runtime

from _zoo import CHOSEN, MODELS, zoo_bundle, zoo_table


@pytest.mark.parametrize("entry", CHOSEN, ids=[e["path"] for e in CHOSEN])
def test_bundle_reproduces_library_outputs(entry, tmp_path_factory):
    df = zoo_table(entry)
    b = fecc_runtime.load(zoo_bundle(entry, tmp_path_factory.getbasetemp() / "zoo"))
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
