"""``fecc score`` streams its input and writes its output atomically (issues 18.5, 19.5).

Parquet is read row group by row group, CSV in chunks; batch by batch equals the whole
table scored at once, rows keep their order, ``--keep`` columns keep their values (and
their parquet types), and any failure leaves a previous output file byte for byte as
it was, with no temporary file behind.
"""
from __future__ import annotations

import io
import os
import stat

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import fecc_runtime
from fecc.cli import main
from fecc.driver import CompileOptions, compile_bundle
from fecc.scoring import score
from fecc.errors import UserError
from fecc.progress import Reporter
from _models import make_table, train_xgb

N = 5000


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream")
    df = make_table(n=600, seed=21)
    train_xgb(df, d / "model.json")
    df.to_parquet(d / "train.parquet")
    compile_bundle(d / "model.json", d / "train.parquet", d / "b", CompileOptions(search="none"))
    new = make_table(n=N, seed=22).drop(columns=["y"])
    rng = np.random.default_rng(5)
    new.insert(0, "id", pa.array(rng.permutation(N) * 3, type=pa.int64()).to_pandas())  # not sorted: order matters
    new["code"] = [f"{i:05d}" for i in range(N)]   # text with leading zeros
    # a nullable integer column: parquet keeps it int64 with nulls
    nullable = pa.array([None if i % 11 == 0 else i for i in range(N)], type=pa.int64())
    table = pa.Table.from_pandas(new, preserve_index=False).append_column("maybe", nullable)
    pq.write_table(table, d / "new.parquet", row_group_size=997)  # 6 row groups, sizes not a batch multiple
    new.to_csv(d / "new.csv", index=False)
    bundle = fecc_runtime.load(d / "b")
    ref = bundle.predict(new)
    return d, new, ref


def _scores(path):
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"code": str})


def test_parquet_has_several_row_groups(setup):
    d, *_ = setup
    assert pq.ParquetFile(d / "new.parquet").metadata.num_row_groups == 6


@pytest.mark.parametrize("src", ["new.parquet", "new.csv"])
@pytest.mark.parametrize("dst", ["s.parquet", "s.csv"])
@pytest.mark.parametrize("batch_rows", [300, 1 << 18])
def test_batches_equal_whole_table_scoring(setup, tmp_path, src, dst, batch_rows):
    d, new, ref = setup
    n = score(d / "b", d / src, tmp_path / dst, keep=("id", "code"), batch_rows=batch_rows)
    assert n == N
    got = _scores(tmp_path / dst)
    assert list(got.columns) == ["id", "code", "prediction"] and len(got) == N
    if src.endswith(".csv") and dst.endswith(".parquet"):
        # from a CSV, --keep columns are the text written there (one type for every chunk)
        assert pq.read_schema(tmp_path / dst).field("id").type == pa.string()
        assert got["id"].tolist() == [str(i) for i in new["id"]]              # row order kept
    else:
        assert np.array_equal(got["id"].to_numpy(), new["id"].to_numpy())      # row order kept
    assert got["code"].tolist() == new["code"].tolist()                        # "00042" stays "00042"
    if dst.endswith(".parquet"):
        assert np.array_equal(got["prediction"].to_numpy(), ref)               # bit for bit
    else:
        assert np.allclose(got["prediction"].to_numpy(), ref, rtol=0, atol=1e-15)
    assert sorted(os.listdir(tmp_path)) == [dst]                               # no temporary file left


def test_parquet_keep_columns_keep_their_types(setup, tmp_path):
    d, *_ = setup
    score(d / "b", d / "new.parquet", tmp_path / "s.parquet", keep=("maybe", "id", "maybe"), batch_rows=700)
    schema = pq.read_schema(tmp_path / "s.parquet")
    assert schema.names == ["maybe", "id", "prediction"]
    assert schema.field("maybe").type == pa.int64() and schema.field("id").type == pa.int64()
    got = pq.read_table(tmp_path / "s.parquet").column("maybe").to_pylist()
    assert got == [None if i % 11 == 0 else i for i in range(N)]


def test_margins_and_feature_keep(setup, tmp_path):
    d, new, _ = setup
    score(d / "b", d / "new.csv", tmp_path / "m.parquet", keep=("x0",), output="margin", batch_rows=999)
    got = pd.read_parquet(tmp_path / "m.parquet")
    assert list(got.columns) == ["x0", "margin"]
    assert np.array_equal(got["margin"].to_numpy(), fecc_runtime.load(d / "b").predict(new, output="margin"))
    assert np.array_equal(got["x0"].to_numpy(), new["x0"].to_numpy(), equal_nan=True)


def _previous(tmp_path, name):
    out = tmp_path / name
    out.write_bytes(b"previous scores, must survive\n")
    os.chmod(out, 0o640)
    return out


def test_failure_mid_stream_leaves_previous_output_untouched(setup, tmp_path):
    """A bad value deep in the file: the error is one line, and the old output survives."""
    d, new, _ = setup
    bad = new.astype({"x3": object})
    bad.loc[4321, "x3"] = "oops"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    for name in ("s.parquet", "s.csv"):
        out = _previous(tmp_path, name)
        with pytest.raises(UserError, match="feature 'x3' must be numeric"):
            score(d / "b", tmp_path / "bad.csv", out, keep=("id",), batch_rows=500)
        assert out.read_bytes() == b"previous scores, must survive\n"
        assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["bad.csv", "s.csv", "s.parquet"]


def test_crash_while_writing_leaves_previous_output_untouched(setup, tmp_path, monkeypatch):
    """Not only user errors: an exception (or ^C) in the middle of the stream publishes nothing."""
    d, *_ = setup
    out = _previous(tmp_path, "s.parquet")
    calls = {"n": 0}
    real = fecc_runtime.Bundle.predict

    def flaky(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(fecc_runtime.Bundle, "predict", flaky)
    with pytest.raises(KeyboardInterrupt):
        score(d / "b", d / "new.parquet", out, batch_rows=1000)
    assert calls["n"] == 3
    assert out.read_bytes() == b"previous scores, must survive\n"
    assert sorted(os.listdir(tmp_path)) == ["s.parquet"]


def test_success_replaces_the_previous_output(setup, tmp_path):
    d, *_ = setup
    out = _previous(tmp_path, "s.parquet")
    score(d / "b", d / "new.parquet", out)
    assert len(pd.read_parquet(out)) == N
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # the replaced file's permissions


def test_new_output_gets_ordinary_permissions(setup, tmp_path):
    d, *_ = setup
    old = os.umask(0o022)
    try:
        score(d / "b", d / "new.parquet", tmp_path / "s.parquet")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "s.parquet").stat().st_mode) == 0o644


def test_refusals_before_any_row(setup, tmp_path):
    d, *_ = setup
    pq.write_table(pa.table({"x0": pa.array([], type=pa.float64())}), tmp_path / "empty.parquet")
    with pytest.raises(UserError, match="data file has no rows"):
        score(d / "b", tmp_path / "empty.parquet", tmp_path / "s.parquet")
    pd.DataFrame(columns=[f"x{i}" for i in range(6)]).to_csv(tmp_path / "empty.csv", index=False)
    with pytest.raises(UserError, match="data file has no rows"):
        score(d / "b", tmp_path / "empty.csv", tmp_path / "s.parquet")
    with pytest.raises(UserError, match="has the name of a score column"):
        score(d / "b", _with_prediction_column(d, tmp_path), tmp_path / "s.parquet", keep=("prediction",))
    assert sorted(os.listdir(tmp_path)) == ["empty.csv", "empty.parquet", "p.parquet"]


def _with_prediction_column(d, tmp_path):
    pd.read_parquet(d / "new.parquet").assign(prediction=1.0).to_parquet(tmp_path / "p.parquet")
    return tmp_path / "p.parquet"


def test_progress_bar_on_a_terminal_only(setup, tmp_path):
    d, *_ = setup
    live, log = io.StringIO(), io.StringIO()
    score(d / "b", d / "new.parquet", tmp_path / "a.parquet", batch_rows=1000, progress=Reporter(live, live=True))
    score(d / "b", d / "new.parquet", tmp_path / "b.parquet", batch_rows=1000, progress=Reporter(log, live=False))
    text = live.getvalue()
    assert text.count("\r\x1b[2K[fecc] scoring ") == 5                  # one redraw per batch
    assert "5,000/5,000 rows (100%)" in text and "1,000/5,000 rows (20%)" in text
    assert text.endswith(f"\n[fecc] scored {N} rows in " + text.rsplit(" rows in ", 1)[1])
    assert log.getvalue().count("\n") == 1 and "scoring" not in log.getvalue()  # a log gets the summary only


def test_cli_quiet_and_not_a_terminal(setup, tmp_path):
    d, *_ = setup
    res = CliRunner().invoke(main, ["score", str(d / "b"), str(d / "new.parquet"), "-o", str(tmp_path / "s.parquet"),
                                    "--keep", "id"])
    assert res.exit_code == 0, res.stderr
    assert res.stderr.strip().splitlines() == [f"[fecc] scored {N} rows in " + res.stderr.split(" rows in ", 1)[1].strip()]
    res = CliRunner().invoke(main, ["score", str(d / "b"), str(d / "new.parquet"), "-o", str(tmp_path / "s.parquet"),
                                    "-q"])
    assert res.exit_code == 0 and res.stderr == ""
