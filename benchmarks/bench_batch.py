"""Batch scoring of one parquet file (1M rows by default): ``fecc score`` vs Spark vs Dask.

All in one run, on the same file and bundle (XGBoost 100 trees, depth 6, 30 features:
the bundle bench_serve.py builds), each reading the parquet file and writing its scores
as parquet, with the row id kept:

* ``fecc score BUNDLE data.parquet -o scores.parquet --keep id`` — wall time of the
  whole command (Python start, bundle verification, read, score, write);
* Spark ``local[2]``: ``spark.read.parquet`` → :func:`fecc_runtime.spark.score` →
  ``write.parquet``, twice (the first job also starts the Python workers); the session
  start is timed apart;
* Dask ``LocalCluster`` (2 worker processes, 1 thread each): ``dd.read_parquet`` →
  :func:`fecc_runtime.dask.score` → ``to_parquet``, twice; the cluster start is timed apart;
* ``Bundle.predict`` on the table already in memory — the scoring alone.

Every engine's scores are checked equal to ``fecc score``'s, row for row by id.  The
load average is printed before and after.  Not a test.

Run:  .venv/bin/python benchmarks/bench_batch.py [--rows 1000000] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from bench_serve import N_FEATURE, build_bundle, loadavg  # noqa: E402


def make_table(path: Path, rows: int) -> None:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(rows, N_FEATURE)).astype(np.float32)
    X[rng.random(X.shape) < 0.02] = np.nan
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(N_FEATURE)])
    df.insert(0, "id", np.arange(rows, dtype=np.int64))
    df.to_parquet(path, row_group_size=131072)


def check(name: str, got: pd.DataFrame, ref: pd.DataFrame) -> None:
    got = got.sort_values("id").reset_index(drop=True)
    if not (np.array_equal(got["id"], ref["id"]) and np.array_equal(got["prediction"], ref["prediction"])):
        raise SystemExit(f"{name}: scores differ from fecc score's")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "fecc-bench-serve")
    ap.add_argument("--skip", default="", help="comma-separated engines to skip: spark,dask")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    bundle = build_bundle(args.workdir)
    data = args.workdir / f"batch-{args.rows}.parquet"
    if not data.exists():
        make_table(data, args.rows)
    out = args.workdir / "batch-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    print(f"{args.rows} rows, {N_FEATURE} features; bundle {bundle}; cpus {os.cpu_count()}")
    print(f"load before: {loadavg()}")
    results = {}

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fecc.cli", "score", str(bundle), str(data), "-o", str(out / "fecc.parquet"),
                    "--keep", "id", "-q"], check=True)
    results["fecc score (whole command)"] = time.perf_counter() - t0
    ref = pd.read_parquet(out / "fecc.parquet").sort_values("id").reset_index(drop=True)

    import fecc_runtime

    b = fecc_runtime.load(bundle)
    table = pd.read_parquet(data)
    t0 = time.perf_counter()
    pred = b.predict(table)
    results["Bundle.predict (in memory, scoring only)"] = time.perf_counter() - t0
    if not np.array_equal(pred, ref["prediction"].to_numpy()):
        raise SystemExit("Bundle.predict differs from fecc score")
    del table

    if "spark" not in skip:
        import warnings

        os.environ["PYSPARK_PYTHON"] = sys.executable
        warnings.filterwarnings("ignore")
        from pyspark.sql import SparkSession

        from fecc_runtime import spark as fecc_spark

        t0 = time.perf_counter()
        spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
                 .config("spark.driver.memory", "4g")
                 .config("spark.ui.showConsoleProgress", "false").getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        results["Spark local[2]: session start"] = time.perf_counter() - t0
        for run in ("first job", "second job"):  # the first also starts the Python workers, warms the JVM
            t0 = time.perf_counter()
            scored = fecc_spark.score(spark.read.parquet(str(data)), bundle, keep=["id"])
            scored.write.mode("overwrite").parquet(str(out / "spark"))
            results[f"Spark local[2]: read + score + write, {run}"] = time.perf_counter() - t0
        spark.stop()
        check("spark", pd.read_parquet(out / "spark"), ref)

    if "dask" not in skip:
        import dask.dataframe as dd
        from distributed import Client, LocalCluster

        from fecc_runtime import dask as fecc_dask

        t0 = time.perf_counter()
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=50)
        client = Client(cluster)
        results["Dask LocalCluster(2): cluster start"] = time.perf_counter() - t0
        for run in ("first job", "second job"):  # the first also loads the bundle in each worker
            t0 = time.perf_counter()
            fecc_dask.score(dd.read_parquet(str(data)), bundle, keep=["id"]).to_parquet(str(out / "dask"))
            results[f"Dask LocalCluster(2): read + score + write, {run}"] = time.perf_counter() - t0
        client.close()
        cluster.close()
        check("dask", pd.read_parquet(out / "dask"), ref)

    print(f"load after: {loadavg()}")
    print("\n| path | seconds |\n|---|---|")
    for name, secs in results.items():
        print(f"| {name} | {secs:.2f} |")


if __name__ == "__main__":
    main()
