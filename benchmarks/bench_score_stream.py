"""Peak memory of ``fecc score`` on a large parquet file (issue 18.5), measured in one run.

Trains a legacy XGBoost model (100 trees, depth 6) on 10 float64 features (2% NaN),
compiles it legacy-only (``fecc compile --search none``), writes a parquet file of
``--rows`` rows (default 10M, row groups of 1M, plus an int64 ``id``) without ever
holding it in memory, then runs ``fecc score BUNDLE data.parquet -o scores.parquet
--keep id -q`` in a child process and reports that child's peak resident memory
(``/usr/bin/time -f %M``; the generator's own memory is not counted).  With
``--whole`` it also measures the whole-table path fecc score had before streaming
(``pd.read_parquet`` + ``Bundle.predict`` + ``DataFrame.to_parquet``) for comparison.
Spot-checks the streamed scores against ``Bundle.predict`` on the first and last row
groups.  Not a test; see README.md.

Run:  .venv/bin/python benchmarks/bench_score_stream.py [--rows 10000000] [--whole] [--keep-files]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_FEATURE = 10
GROUP_ROWS = 1_000_000

WHOLE = r"""
import sys, pandas as pd, fecc_runtime
b = fecc_runtime.load(sys.argv[1])
df = pd.read_parquet(sys.argv[2])
out = df[["id"]].copy()
out["prediction"] = b.predict(df)
out.to_parquet(sys.argv[3], index=False)
"""


def features(rng: np.random.Generator, n: int) -> np.ndarray:
    X = rng.normal(size=(n, N_FEATURE))
    X[rng.random(X.shape) < 0.02] = np.nan
    return X


def label(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    z = np.nan_to_num(X)
    logit = 1.2 * z[:, 0] - 0.8 * z[:, 1] + 0.5 * z[:, 2] * z[:, 3] + 0.3 * np.sin(3 * z[:, 4])
    return (rng.random(len(X)) < 1 / (1 + np.exp(-logit))).astype(int)


def write_table(path: Path, rows: int, seed: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    names = [f"f{i}" for i in range(N_FEATURE)]
    writer = None
    for start in range(0, rows, GROUP_ROWS):
        n = min(GROUP_ROWS, rows - start)
        X = features(rng, n)
        cols = [pa.array(np.arange(start, start + n, dtype=np.int64))] + [pa.array(X[:, i]) for i in range(N_FEATURE)]
        table = pa.Table.from_arrays(cols, names=["id"] + names)
        if writer is None:
            writer = pq.ParquetWriter(str(path), table.schema)
        writer.write_table(table, row_group_size=GROUP_ROWS)
    writer.close()


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """(peak RSS in MiB, wall seconds, exit status) of one child process.

    Through ``/usr/bin/time`` when present: a child forked straight from this (large)
    process would report this process's pages as its own peak, since Linux keeps the
    high-water mark of the memory a process had before ``exec``.  ``time`` is small.
    """
    t0 = time.perf_counter()
    if Path("/usr/bin/time").exists():
        with tempfile.NamedTemporaryFile("r", suffix=".rss") as fh:
            rc = subprocess.run(["/usr/bin/time", "-q", "-f", "%M", "-o", fh.name] + cmd).returncode
            kib = float(open(fh.name).read().split()[-1])
        return kib / 1024, time.perf_counter() - t0, rc
    proc = subprocess.Popen(cmd)  # upper bound: includes this process's pages at fork
    _, status, usage = os.wait4(proc.pid, 0)
    return usage.ru_maxrss / 1024, time.perf_counter() - t0, os.waitstatus_to_exitcode(status)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--whole", action="store_true", help="also measure the whole-table (pre-streaming) path")
    ap.add_argument("--workdir", default=None, help="where to put the files (default: a temp dir)")
    ap.add_argument("--keep-files", action="store_true")
    args = ap.parse_args()

    import pandas as pd
    import pyarrow.parquet as pq
    import xgboost as xgb

    import fecc_runtime

    work = Path(args.workdir or tempfile.mkdtemp(prefix="fecc-bench-stream-"))
    work.mkdir(parents=True, exist_ok=True)
    fecc = str(Path(sys.executable).with_name("fecc"))
    try:
        rng = np.random.default_rng(0)
        X = features(rng, 20_000)
        names = [f"f{i}" for i in range(N_FEATURE)]
        train = pd.DataFrame(X, columns=names).assign(y=label(X, rng))
        booster = xgb.train({"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "seed": 0, "nthread": 2},
                            xgb.DMatrix(train[names], label=train["y"]), num_boost_round=100)
        booster.save_model(str(work / "model.json"))
        train.to_parquet(work / "train.parquet")
        subprocess.run([fecc, "compile", str(work / "model.json"), str(work / "train.parquet"), "-o",
                        str(work / "bundle"), "--search", "none", "-q"], check=True, stdout=subprocess.DEVNULL)
        t0 = time.perf_counter()
        write_table(work / "data.parquet", args.rows, seed=1)
        gen_s = time.perf_counter() - t0
        size_mb = (work / "data.parquet").stat().st_size / 2**20
        results = {"rows": args.rows, "features": N_FEATURE, "row_groups": pq.ParquetFile(work / "data.parquet").num_row_groups,
                   "input_mib": round(size_mb, 1), "generate_s": round(gen_s, 1)}

        rss, wall, rc = measure([fecc, "score", str(work / "bundle"), str(work / "data.parquet"), "-o",
                                 str(work / "scores.parquet"), "--keep", "id", "-q"])
        if rc != 0:
            raise SystemExit(f"fecc score failed with status {rc}")
        results["stream"] = {"peak_rss_mib": round(rss, 1), "seconds": round(wall, 1),
                             "rows_per_s": round(args.rows / wall)}

        # spot check: first and last row groups against the runtime on the same rows
        b = fecc_runtime.load(work / "bundle")
        src, got = pq.ParquetFile(work / "data.parquet"), pq.ParquetFile(work / "scores.parquet")
        assert got.metadata.num_rows == args.rows
        offsets = np.cumsum([0] + [got.metadata.row_group(i).num_rows for i in range(got.num_row_groups)])
        for g in sorted({0, src.num_row_groups - 1}):
            rows = src.read_row_group(g).to_pandas()
            start = g * GROUP_ROWS
            sel = [i for i in range(got.num_row_groups) if offsets[i] < start + len(rows) and offsets[i + 1] > start]
            scored = pd.concat([got.read_row_group(i).to_pandas() for i in sel], ignore_index=True)
            scored = scored.iloc[start - offsets[sel[0]]:start - offsets[sel[0]] + len(rows)]
            assert np.array_equal(scored["id"].to_numpy(), rows["id"].to_numpy())
            assert np.array_equal(scored["prediction"].to_numpy(), b.predict(rows)), f"row group {g} differs"
        results["spot_check"] = "first and last row groups equal Bundle.predict bit for bit"

        if args.whole:
            rss, wall, rc = measure([sys.executable, "-c", WHOLE, str(work / "bundle"), str(work / "data.parquet"),
                                     str(work / "whole.parquet")])
            results["whole_table"] = ({"peak_rss_mib": round(rss, 1), "seconds": round(wall, 1)} if rc == 0
                                      else {"failed": rc})
        print(json.dumps(results, indent=2))
    finally:
        if not args.keep_files:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
