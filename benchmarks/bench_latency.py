"""Latency of fecc's compiled trees against XGBoost, measured in one run.

Trains two XGBoost models on synthetic data (30 float32 features, 2% NaN), lowers
them with :func:`fecc.lower.lower_trees`, loads them with
:class:`fecc_runtime.trees.TreeEnsemble`, and prints:

* single row: median microseconds per call, one thread, cycling through the same
  2000 distinct float32 rows for every contender: fecc ``Bundle.predict_one`` (dict,
  numpy row) and ``TreeEnsemble.predict_row`` through both row engines (the node
  arrays and tl2cgen's if/else code; the manifest's ``row_engine`` is the one the
  bundle uses) vs ``xgboost.Booster.inplace_predict`` on a (1, 30) array with
  ``nthread=1``;
* batch: best-of-N seconds for 100k rows with all CPUs, fecc ``predict`` vs
  ``inplace_predict``.

Ratios are xgboost / fecc (above 1 means fecc is faster).  Not a test; see README.md.

Run:  .venv/bin/python benchmarks/bench_latency.py [--rows 100000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import xgboost as xgb

import fecc_runtime
from fecc_runtime.trees import TreeEnsemble

MODELS = {"small: 100 trees, depth 6": (100, 6), "large: 500 trees, depth 8": (500, 8)}
N_FEATURE = 30


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic binary task with interactions; 2% of values missing."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURE)).astype(np.float32)
    logit = X[:, 0] * X[:, 1] + np.sin(X[:, 2] * 2) + 0.5 * X[:, 3:10].sum(axis=1) - X[:, 10] ** 2
    y = (logit + rng.normal(scale=0.5, size=n) > 0).astype(np.float32)
    X[rng.random(X.shape) < 0.02] = np.nan
    return X, y


def median_us(fn, x, n_calls: int) -> float:
    """Median wall time of ``fn(x)`` in microseconds over ``n_calls`` calls."""
    for _ in range(min(100, n_calls)):
        fn(x)
    times = np.empty(n_calls)
    clock = time.perf_counter_ns
    for i in range(n_calls):
        t0 = clock()
        fn(x)
        times[i] = clock() - t0
    return float(np.median(times)) / 1e3


def best_s(fn, X, repeat: int) -> float:
    """Best wall time of ``fn(X)`` in seconds over ``repeat`` runs (after one warm-up)."""
    fn(X)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(X)
        best = min(best, time.perf_counter() - t0)
    return best


def time_fecc_rows(bundle, bundle_dir: Path, rows, dict_rows, calls: int, it) -> tuple[float, float, dict]:
    """Median µs of ``Bundle.predict_one`` on numpy rows and on dicts, and of each row engine's
    ``TreeEnsemble.predict_row``; ``it`` is the run's shared row counter (every contender
    cycles through the same distinct rows)."""
    entry = bundle.manifest["legacy"]
    us_one = median_us(lambda _: bundle.predict_one(rows[next(it) % len(rows)]), None, calls)
    us_dict = median_us(lambda _: bundle.predict_one(dict_rows[next(it) % len(rows)]), None, calls)
    us_engine = {}
    for row_engine in ("array", "ifelse"):
        e = TreeEnsemble(bundle_dir, {**entry, "row_engine": row_engine}, n_threads=1)
        us_engine[row_engine] = median_us(lambda _: e.predict_row(rows[next(it) % len(rows)]), None, calls)
        e.close()
    return us_one, us_dict, us_engine


def build(workdir: Path, n_tree: int, depth: int, X_train, y_train, n_cpu: int) -> tuple[Path, float]:
    """Train the model, save it with data, compile a bundle (``--search none``); reuse if present."""
    bundle = workdir / "bundle"
    if (bundle / "manifest.json").is_file():
        return bundle, float("nan")
    import pandas as pd

    from fecc.driver import CompileOptions, compile_bundle

    workdir.mkdir(parents=True, exist_ok=True)
    cols = [f"f{i}" for i in range(N_FEATURE)]
    booster = xgb.train({"objective": "binary:logistic", "max_depth": depth, "eta": 0.1, "nthread": n_cpu, "seed": 0},
                        xgb.DMatrix(X_train, y_train, feature_names=cols), num_boost_round=n_tree)
    booster.save_model(workdir / "model.json")
    pd.DataFrame(X_train[:2000], columns=cols).assign(y=y_train[:2000]).to_parquet(workdir / "data.parquet")
    t0 = time.perf_counter()
    compile_bundle(workdir / "model.json", workdir / "data.parquet", bundle, CompileOptions(search="none"))
    return bundle, time.perf_counter() - t0


def parse_args(description: str, workdir_help: str) -> argparse.Namespace:
    """The options every latency benchmark takes (rows, repetitions, calls, a reusable workdir)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--rows", type=int, default=100_000, help="batch rows (default 100000)")
    ap.add_argument("--repeat", type=int, default=5, help="batch repetitions, best is kept")
    ap.add_argument("--row-calls", type=int, default=2000, help="single-row calls per median")
    ap.add_argument("--workdir", type=Path, default=None, help=workdir_help + " (default: a temporary directory)")
    return ap.parse_args()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], "keep models and bundles here and reuse them")

    n_cpu = len(os.sched_getaffinity(0))
    print(f"xgboost {xgb.__version__}, {n_cpu} CPUs, batch {args.rows} rows, "
          f"{N_FEATURE} features, 2% NaN")
    X_train, y_train = make_data(20_000, seed=0)
    X_test, _ = make_data(args.rows, seed=1)
    rows = [X_test[i] for i in range(min(args.row_calls, len(X_test)))]
    rows_2d = [r[None, :] for r in rows]  # the same rows as (1, 30) arrays
    cols = [f"f{i}" for i in range(N_FEATURE)]
    dict_rows = [dict(zip(cols, r.tolist())) for r in rows]

    with tempfile.TemporaryDirectory(prefix="fecc-bench-") as tmp:
        root = args.workdir or Path(tmp)
        for label, (n_tree, depth) in MODELS.items():
            bundle_dir, t_compile = build(root / f"{n_tree}x{depth}", n_tree, depth, X_train, y_train, n_cpu)
            booster = xgb.Booster(model_file=str(bundle_dir.parent / "model.json"))  # what the bundle was built from
            bundle = fecc_runtime.load(bundle_dir)
            entry = bundle.manifest["legacy"]

            # parity on the batch, so a fast wrong answer cannot pass unnoticed
            ref = booster.inplace_predict(X_test)
            got = bundle.predict(X_test)
            max_abs = float(np.abs(got - ref).max())

            # single row, one thread, every contender on the same distinct rows
            booster.set_param({"nthread": 1})
            it = iter(range(1 << 62))
            us_xgb = median_us(lambda _: booster.inplace_predict(rows_2d[next(it) % len(rows)]), None,
                               args.row_calls // 4)
            us_one, us_dict, us_engine = time_fecc_rows(bundle, bundle_dir, rows, dict_rows, args.row_calls, it)

            # batch, all CPUs
            booster.set_param({"nthread": n_cpu})
            s_xgb = best_s(lambda X: booster.inplace_predict(X), X_test, args.repeat)
            s_fecc = best_s(lambda X: bundle.predict(X), X_test, args.repeat)

            print(f"\n{label}  ({entry['num_node']} nodes, compiled in {t_compile:.1f} s, "
                  f"engine {entry['batch_engine']}, row engine {entry['row_engine']}, "
                  f"max |fecc - xgboost| = {max_abs:.2e})")
            print(f"  single row  xgboost inplace_predict      {us_xgb:9.1f} us")
            print(f"              fecc Bundle.predict_one(dict) {us_dict:8.1f} us   ratio {us_xgb / us_dict:6.1f}x")
            print(f"              fecc Bundle.predict_one(row)  {us_one:8.1f} us   ratio {us_xgb / us_one:6.1f}x")
            for row_engine, what in (("array", "node arrays"), ("ifelse", "if/else code")):
                us = us_engine[row_engine]
                mark = "*" if row_engine == entry["row_engine"] else " "
                print(f"              fecc predict_row, {what:12s}{mark}{us:7.1f} us   ratio {us_xgb / us:6.1f}x")
            print(f"  batch       xgboost inplace_predict      {s_xgb:9.3f} s")
            print(f"              fecc Bundle.predict          {s_fecc:9.3f} s    ratio {s_xgb / s_fecc:6.2f}x")


if __name__ == "__main__":
    main()
