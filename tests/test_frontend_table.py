"""Reading and lining up user tables: every user mistake is a UserError with a clear message."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fecc.errors import UserError
from fecc.frontend import prepare, read_table


def _prep(df, **kw):
    args = dict(model_feature_names=("a", "b"), num_feature=2, task="binary")
    args.update(kw)
    return prepare(df, **args)


def test_reads_parquet_and_csv(tmp_path):
    df = pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4], "y": [0, 1]})
    df.to_parquet(tmp_path / "d.parquet")
    df.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "noext").write_bytes((tmp_path / "d.parquet").read_bytes())
    for name in ("d.parquet", "d.csv", "noext"):
        got = read_table(tmp_path / name)
        assert list(got.columns) == ["a", "b", "y"] and len(got) == 2


def _file(p, name, content: bytes):
    (p / name).write_bytes(content)
    return p / name


@pytest.mark.parametrize("setup, fragment", [
    (lambda p: p / "missing.csv", "not found"),
    (lambda p: p, "is a directory"),
    (lambda p: _file(p, "e.csv", b""), "empty"),
    (lambda p: _file(p, "h.csv", b"a,b,y\n"), "no rows"),
    (lambda p: _file(p, "bad.parquet", b"PAR1garbage"), "cannot read"),
])
def test_bad_files_are_one_line_errors(tmp_path, setup, fragment):
    with pytest.raises(UserError, match=fragment) as info:
        read_table(setup(tmp_path))
    assert "\n" not in str(info.value)


def test_target_rules():
    df = pd.DataFrame({"a": [1.0, 2.0], "b": [0.0, 1.0], "label": [0, 1], "other": [5, 6]})
    assert _prep(df).target == "label"
    df2 = df.drop(columns=["label", "other"]).assign(z=[1, 0])
    assert _prep(df2).target == "z"
    with pytest.raises(UserError, match="cannot tell which column is the target"):
        _prep(df.drop(columns=["label"]).assign(z=[1, 0]))
    with pytest.raises(UserError, match="'nope' is not in the table"):
        _prep(df, target="nope")
    with pytest.raises(UserError, match="also a model feature"):
        _prep(df, target="a")


def test_features_in_model_order_extra_columns_noted():
    df = pd.DataFrame({"b": [1, 2], "extra": ["x", "y"], "a": [3.5, np.nan], "y": [0, 1]})
    ds = _prep(df)
    assert list(ds.X.columns) == ["a", "b"]
    assert ds.X.dtypes.tolist() == [np.float64, np.float64]
    assert any("ignoring 1 column" in n for n in ds.notes)


def test_missing_feature_columns_are_named():
    df = pd.DataFrame({"a": [1.0], "y": [1]})
    with pytest.raises(UserError, match="lacks 1 model feature column.*'b'"):
        _prep(df)


def test_non_numeric_features_are_named():
    df = pd.DataFrame({"a": ["x", "y"], "b": [1.0, 2.0], "y": [0, 1]})
    with pytest.raises(UserError, match=r"non-numeric feature column\(s\): a \("):
        _prep(df)


def test_target_problems():
    base = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 3.0]})
    with pytest.raises(UserError, match="1 missing value"):
        _prep(base.assign(y=[0, np.nan, 1]))
    with pytest.raises(UserError, match="0/1 target"):
        _prep(base.assign(y=[0, 2, 1]))
    with pytest.raises(UserError, match="not numeric"):
        _prep(base.assign(y=["no", "yes", "no"]))
    ds = _prep(base.assign(y=[0.5, 2.0, -1.0]), task="regression")
    assert ds.y.tolist() == [0.5, 2.0, -1.0]


def test_nan_and_inf_features_allowed():
    df = pd.DataFrame({"a": [np.nan, np.inf], "b": [-np.inf, 1.0], "y": [0, 1]})
    ds = _prep(df)
    assert np.isnan(ds.X["a"][0]) and any("infinite" in n for n in ds.notes)


def test_unnamed_model_maps_by_position_with_a_note():
    df = pd.DataFrame({"p": [1.0], "q": [2.0], "y": [1]})
    ds = prepare(df, model_feature_names=None, num_feature=2, task="binary")
    assert ds.feature_names == ("p", "q")
    assert any("by position" in n for n in ds.notes)
    with pytest.raises(UserError, match="--feature-names"):
        prepare(df.assign(r=[3.0]), model_feature_names=None, num_feature=2, task="binary", target="y")
    ds = prepare(df, model_feature_names=None, num_feature=2, task="binary", feature_names=("q", "p"))
    assert list(ds.X.columns) == ["q", "p"]


def test_compile_time_and_runtime_code_categories_by_one_rule():
    """Exact value first, then its string form (a CSV's 1 finds a stored "1"); unseen and
    missing values are NaN; the compiler's codes are the runtime's, value for value."""
    import math

    from fecc.frontend.table import _category_codes
    from fecc_runtime.bundle import category_code, category_lookup
    from fecc_runtime.errors import BundleError

    stored = ("1", "a", 2, "2")
    lookup = category_lookup(stored)
    expect = {"1": 0, 1: 0, "a": 1, 2: 2, 2.0: 2, "2": 3, "zz": None, None: None, float("nan"): None, 7: None}
    for value, code in expect.items():
        got = category_code(lookup, value)
        assert (math.isnan(got) if code is None else got == code), (value, got)
    with pytest.raises(BundleError, match="takes a category value, got list"):
        category_code(lookup, [1], "c")
    col = pd.Series(["1", 1, "a", 2, "2", "zz", None, float("nan"), 7], name="c", dtype=object)
    notes: list[str] = []
    codes, cats = _category_codes(col, stored, notes)
    runtime = [category_code(lookup, v) for v in col]
    assert np.array_equal(codes.to_numpy(), np.array(runtime), equal_nan=True)
    assert cats == list(stored) and any("not seen in training" in n for n in notes)
