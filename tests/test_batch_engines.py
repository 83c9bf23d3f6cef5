"""Scoring on existing engines: Spark ``mapInPandas`` (local[2]), Dask ``map_partitions`` on a
``LocalCluster``, and the Ray Data callable class — each equal to ``fecc score`` row for
row (exactly: all of them score through ``Bundle.predict``), empty partitions included.

Spark needs pyspark and Java, Dask needs ``dask[distributed]``, Ray ``ray[data]``; each
group skips with the reason when its engine is absent.  The Ray class is also tested on
plain pandas batches, which needs nothing but pandas.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import fecc_runtime
from fecc_runtime import BundleError
from fecc_runtime.batch import manifest_digest
from fecc_runtime.ray import BundleScorer
from _models import make_table, train_xgb

FEATURES = [f"x{i}" for i in range(6)]
# pyspark 4.x warns about pandas 3 on every conversion; the tests check the results instead
pytestmark = [pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


def _compile(model, data, out):
    proc = subprocess.run([sys.executable, "-m", "fecc.cli", "compile", str(model), str(data), "-o", str(out),
                           "--search", "none", "-q"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A bundle, a second bundle with the same directory name, a multi-class bundle, a table
    to score (NaN included, an id and a text column to keep) and ``fecc score``'s answer."""
    import xgboost as xgb

    d = tmp_path_factory.mktemp("engines")
    train = make_table(n=400, seed=21)
    train_xgb(train, d / "model.json", rounds=12)
    train.to_csv(d / "train.csv", index=False)
    _compile(d / "model.json", d / "train.csv", d / "credit")
    # another model in another directory also called "credit"
    (d / "other").mkdir()
    train_xgb(train, d / "other" / "model.json", rounds=5, depth=2, seed=1)
    _compile(d / "other" / "model.json", d / "train.csv", d / "other" / "credit")
    # three classes: one prediction column per class
    multi = train.assign(y=pd.cut(train["x0"].fillna(0), [-np.inf, -0.5, 0.5, np.inf], labels=False))
    booster = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "nthread": 1},
                        xgb.DMatrix(multi[FEATURES], label=multi["y"]), num_boost_round=6)
    booster.save_model(d / "multi.json")
    multi.to_csv(d / "multi.csv", index=False)
    _compile(d / "multi.json", d / "multi.csv", d / "multi")

    table = make_table(n=2000, seed=22, nan_frac=0.1).drop(columns=["y"])
    table.insert(0, "id", np.arange(len(table), dtype=np.int64))
    table["note"] = [f"r{i}" for i in range(len(table))]
    table.to_parquet(d / "table.parquet")
    proc = subprocess.run([sys.executable, "-m", "fecc.cli", "score", str(d / "credit"), str(d / "table.parquet"),
                           "-o", str(d / "scores.parquet"), "--keep", "id", "-q"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    expected = pd.read_parquet(d / "scores.parquet")
    assert list(expected.columns) == ["id", "prediction"] and len(expected) == len(table)
    return {"dir": d, "credit": d / "credit", "other": d / "other" / "credit", "multi": d / "multi",
            "table": table, "expected": expected}


# --------------------------------------------------------------------- Ray class

def test_bundle_scorer_on_pandas_batches(files):
    table, expected = files["table"], files["expected"]
    scorer = BundleScorer(files["credit"], keep=["id", "note"])
    parts = [scorer(table.iloc[lo:hi]) for lo, hi in ((0, 700), (700, 700), (700, 2000))]
    assert len(parts[1]) == 0 and list(parts[1].columns) == ["id", "note", "prediction"]
    out = pd.concat(parts)
    assert list(out.columns) == ["id", "note", "prediction"]
    assert out.index.equals(table.index) and np.array_equal(out["id"], expected["id"])
    assert np.array_equal(out["prediction"].to_numpy(), expected["prediction"].to_numpy())
    assert (out["note"] == table["note"]).all()
    margin = BundleScorer(files["credit"], output="margin")(table)
    assert list(margin.columns) == ["margin"]
    assert np.array_equal(margin["margin"], fecc_runtime.load(files["credit"]).predict(table, output="margin"))


def test_bundle_scorer_refuses_another_bundle_and_bad_output(files):
    digest = manifest_digest(files["credit"])
    assert BundleScorer(files["credit"], digest=digest).bundle is BundleScorer(files["credit"]).bundle  # cached
    with pytest.raises(BundleError, match="expected .* changed after the job was planned"):
        BundleScorer(files["other"], digest=digest)
    with pytest.raises(BundleError, match="output must be 'prediction' or 'margin', got 'proba'"):
        BundleScorer(files["credit"], output="proba")
    with pytest.raises(BundleError, match="input lacks 1 feature column"):
        BundleScorer(files["credit"])(files["table"].drop(columns=["x3"]))


def test_ray_data_map_batches(files):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'fecc-runtime[ray]')")
    pytest.importorskip("ray.data")
    table, expected = files["table"], files["expected"]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        ds = ray.data.from_pandas([table.iloc[:900], table.iloc[900:900], table.iloc[900:]])
        out = ds.map_batches(BundleScorer, fn_constructor_kwargs={"bundle": str(files["credit"]), "keep": ["id"]},
                             batch_format="pandas", batch_size=256,
                             compute=ray.data.ActorPoolStrategy(size=1)).to_pandas()
    finally:
        ray.shutdown()
    out = out.sort_values("id").reset_index(drop=True)
    assert np.array_equal(out["id"], expected["id"])
    assert np.array_equal(out["prediction"].to_numpy(), expected["prediction"].to_numpy())


# ------------------------------------------------------------------------- Dask

@pytest.fixture(scope="module")
def dask_client():
    pytest.importorskip("dask.dataframe", reason="dask is not installed (pip install 'fecc-runtime[dask]')")
    distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=50)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_equals_fecc_score_with_empty_partitions(files, dask_client):
    import dask.dataframe as dd

    from fecc_runtime import dask as fecc_dask

    table, expected = files["table"], files["expected"]
    ddf = dd.from_pandas(table, npartitions=5)
    scored = fecc_dask.score(ddf, files["credit"], keep=["id", "note"])
    assert list(scored.columns) == ["id", "note", "prediction"] and scored.npartitions == 5
    out = scored.compute()
    assert out.index.equals(table.index)
    assert np.array_equal(out["id"], expected["id"])
    assert np.array_equal(out["prediction"].to_numpy(), expected["prediction"].to_numpy())
    # a filter empties the first partitions; the others keep their rows in order
    late = ddf[ddf["id"] >= 1500]
    assert [len(p) for p in late.partitions][:3] == [0, 0, 0]
    out = fecc_dask.score(late, files["credit"]).compute()
    assert list(out.columns) == ["prediction"] and out.index.equals(table.index[1500:])
    assert np.array_equal(out["prediction"].to_numpy(), expected["prediction"].to_numpy()[1500:])


def test_dask_multiclass_gets_one_column_per_class(files, dask_client):
    import dask.dataframe as dd

    from fecc_runtime import dask as fecc_dask

    table = files["table"]
    out = fecc_dask.score(dd.from_pandas(table, npartitions=3), files["multi"], output="margin").compute()
    assert list(out.columns) == ["margin_0", "margin_1", "margin_2"]
    assert np.array_equal(out.to_numpy(), fecc_runtime.load(files["multi"]).predict(table, output="margin"))


def test_dask_refuses_bad_input_and_a_bundle_swapped_after_planning(files, dask_client, tmp_path):
    import dask.dataframe as dd

    from fecc_runtime import dask as fecc_dask

    ddf = dd.from_pandas(files["table"], npartitions=2)
    with pytest.raises(BundleError, match="the table lacks 1 feature column.*'x2'"):
        fecc_dask.score(ddf.drop(columns=["x2"]), files["credit"])
    with pytest.raises(BundleError, match="keep column.*'nope'"):
        fecc_dask.score(ddf, files["credit"], keep=["nope"])
    moved = tmp_path / "credit"
    shutil.copytree(files["credit"], moved)
    planned = fecc_dask.score(ddf, moved)
    shutil.rmtree(moved)
    shutil.copytree(files["other"], moved)  # same path, another model
    with pytest.raises(BundleError, match="changed after the job was planned"):
        planned.compute()


# ------------------------------------------------------------------------ Spark

def _java_missing() -> str | None:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "java is not installed (Spark needs Java 17: apt-get install openjdk-17-jre-headless)"
    return None


@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'fecc-runtime[spark]')")
    reason = _java_missing()
    if reason:
        pytest.skip(reason)
    import warnings

    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable  # the executors' Python must have fecc_runtime
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    session = (SparkSession.builder.master("local[2]").appName("fecc-test")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", "300")  # several batches per partition
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _spark_frame(spark, table: pd.DataFrame, slices: int):
    """A Spark DataFrame of ``table`` in ``slices`` contiguous partitions, NaN as null."""
    records = [tuple(None if isinstance(v, float) and np.isnan(v) else (v.item() if hasattr(v, "item") else v)
                     for v in row) for row in table.itertuples(index=False)]
    schema = "id long, " + ", ".join(f"{c} double" for c in FEATURES) + ", note string"
    return spark.createDataFrame(spark.sparkContext.parallelize(records, slices), schema)


def test_spark_equals_fecc_score_in_order(files, spark):
    from fecc_runtime import spark as fecc_spark

    table, expected = files["table"], files["expected"]
    sdf = _spark_frame(spark, table, 3)
    scored = fecc_spark.score(sdf, files["credit"], keep=["id", "note"])
    assert scored.columns == ["id", "note", "prediction"]
    assert dict(scored.dtypes)["prediction"] == "double"
    out = scored.toPandas()
    # partitions come back in order and each keeps its rows' order: the whole table's order
    assert np.array_equal(out["id"], expected["id"])
    assert np.array_equal(out["prediction"].to_numpy(), expected["prediction"].to_numpy())
    assert (out["note"] == table["note"]).all()


def test_spark_empty_partitions_and_two_bundles_of_one_name(files, spark):
    from fecc_runtime import spark as fecc_spark

    table = files["table"].head(5)
    sdf = _spark_frame(spark, table, 8)  # 8 slices for 5 rows: three are empty
    assert sorted(len(p) for p in sdf.rdd.glom().collect())[:3] == [0, 0, 0]
    for path in (files["credit"], files["other"]):  # both directories are called "credit"
        out = fecc_spark.score(sdf, path, keep=["id"]).toPandas()
        assert out["id"].tolist() == table["id"].tolist()
        assert np.array_equal(out["prediction"].to_numpy(), fecc_runtime.load(path).predict(table))
    with pytest.raises(BundleError, match="the table lacks 1 feature column.*'x5'"):
        fecc_spark.score(sdf.drop("x5"), files["credit"])


def test_spark_refuses_a_bundle_that_fails_verification(files, spark, tmp_path):
    from fecc_runtime import spark as fecc_spark

    bad = tmp_path / "credit"
    shutil.copytree(files["credit"], bad)
    (bad / "trees" / "legacy.npz").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="bundle file trees/legacy.npz was modified"):
        fecc_spark.score(_spark_frame(spark, files["table"].head(3), 1), bad)
