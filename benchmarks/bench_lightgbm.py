"""Latency of fecc's compiled trees against LightGBM and lleaves, measured in one run.

Trains a LightGBM binary model on the synthetic data of ``bench_latency.py`` (30 float32
features, 2% NaN; 100 trees, 63 leaves, fixed seeds), saves ``model.txt``, compiles it
into a bundle with :func:`fecc.driver.compile_bundle` (``search="none"``: compile only),
and prints:

* single row: median microseconds per call, one thread, cycling through the same 2000
  distinct rows for every contender: ``lightgbm.Booster.predict`` on a (1, 30) array
  with ``num_threads=1``, lleaves ``Model.predict`` on a (1, 30) float64 array with
  ``n_jobs=1``, fecc ``Bundle.predict_one`` on a numpy row and on a dict, and
  ``TreeEnsemble.predict_row`` through both row engines (the node arrays, tl2cgen's
  if/else code; ``*`` marks the manifest's ``row_engine``);
* batch: best-of-N seconds for 100k rows with all CPUs: lightgbm, lleaves, fecc
  ``Bundle.predict``.

Ratios are other / fecc (above 1 means fecc is faster).  lleaves (LightGBM -> LLVM) is
optional (``pip install lleaves``); without it its lines say "lleaves not installed", and
"lleaves not usable" when it imports but cannot compile (see README.md).
Not a test; see README.md.

Run:  .venv/bin/python benchmarks/bench_lightgbm.py [--rows 100000] [--repeat 5] [--workdir DIR]
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import fecc_runtime
import lightgbm as lgb
import numpy as np
from bench_latency import (  # same data and timers
    N_FEATURE,
    parse_args,
    best_s,
    make_data,
    median_us,
    time_fecc_rows,
)

N_TREE, N_LEAVES = 100, 63
COLS = [f"f{i}" for i in range(N_FEATURE)]


def build(workdir: Path, X_train, y_train, n_cpu: int) -> tuple[Path, float]:
    """Train the model, save it with data, compile a bundle (``search="none"``); reuse if present."""
    bundle = workdir / "bundle"
    if (bundle / "manifest.json").is_file():
        return bundle, float("nan")
    import pandas as pd
    from fecc.driver import CompileOptions, compile_bundle

    workdir.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(X_train, columns=COLS)  # a DataFrame, so model.txt stores the feature names
    params = {"objective": "binary", "num_leaves": N_LEAVES, "learning_rate": 0.1, "num_threads": n_cpu,
              "seed": 0, "deterministic": True, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(df, y_train), num_boost_round=N_TREE)
    booster.save_model(workdir / "model.txt")
    df.iloc[:2000].assign(y=y_train[:2000]).to_parquet(workdir / "data.parquet")
    t0 = time.perf_counter()
    compile_bundle(workdir / "model.txt", workdir / "data.parquet", bundle, CompileOptions(search="none"))
    return bundle, time.perf_counter() - t0


def load_lleaves(workdir: Path):
    """lleaves model compiled from ``model.txt`` (cached object file), or None and why not.

    lleaves 1.3.0 uses llvmlite's legacy pass manager, which llvmlite 0.45+ removed (numba
    0.68 needs llvmlite 0.50), so an import that works can still fail to compile.
    """
    try:
        import lleaves
    except ImportError:
        return None, float("nan"), "lleaves not installed"
    cache = workdir / "lleaves.o"
    fresh = not cache.is_file()
    model = lleaves.Model(model_file=str(workdir / "model.txt"))
    t0 = time.perf_counter()
    try:
        model.compile(cache=str(cache))
    except Exception as e:  # noqa: BLE001 - any failure just drops lleaves from the table
        return None, float("nan"), f"lleaves not usable ({type(e).__name__}: {e})"
    return model, (time.perf_counter() - t0) if fresh else float("nan"), ""


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], "keep the model, bundle and lleaves object here and reuse them")

    n_cpu = len(os.sched_getaffinity(0))
    print(f"lightgbm {lgb.__version__}, {n_cpu} CPUs, batch {args.rows} rows, "
          f"{N_FEATURE} features, 2% NaN")
    X_train, y_train = make_data(20_000, seed=0)
    X_test, _ = make_data(args.rows, seed=1)
    X_test64 = X_test.astype(np.float64)  # lleaves' native dtype (use_fp64): no copy inside its predict
    rows = [X_test[i] for i in range(min(args.row_calls, len(X_test)))]
    rows_2d, rows_2d64 = [r[None, :] for r in rows], [X_test64[i:i + 1] for i in range(len(rows))]
    dict_rows = [dict(zip(COLS, r.tolist())) for r in rows]

    with tempfile.TemporaryDirectory(prefix="fecc-bench-") as tmp:
        root = (args.workdir or Path(tmp)) / f"lgb{N_TREE}x{N_LEAVES}"
        bundle_dir, t_compile = build(root, X_train, y_train, n_cpu)
        booster = lgb.Booster(model_file=str(root / "model.txt"))  # what the bundle was built from
        llv, t_llv, why = load_lleaves(root)
        if why:
            print(why)
            why = why.split(" (")[0]  # the short form for the table
        bundle = fecc_runtime.load(bundle_dir)
        entry = bundle.manifest["legacy"]

        # parity on the batch (probabilities), so a fast wrong answer cannot pass unnoticed
        ref = booster.predict(X_test, num_threads=n_cpu)
        got = bundle.predict(X_test)
        max_abs = float(np.abs(got - ref).max())
        llv_abs = float(np.abs(llv.predict(X_test64, n_jobs=n_cpu) - ref).max()) if llv else float("nan")

        # single row, one thread, every contender on the same distinct rows
        it = iter(range(1 << 62))
        us_lgb = median_us(lambda _: booster.predict(rows_2d[next(it) % len(rows)], num_threads=1), None,
                           args.row_calls // 4)
        us_llv = median_us(lambda _: llv.predict(rows_2d64[next(it) % len(rows)], n_jobs=1), None,
                           args.row_calls) if llv else None
        us_one, us_dict, us_engine = time_fecc_rows(bundle, bundle_dir, rows, dict_rows, args.row_calls, it)

        # batch, all CPUs
        s_lgb = best_s(lambda X: booster.predict(X, num_threads=n_cpu), X_test, args.repeat)
        s_llv = best_s(lambda X: llv.predict(X, n_jobs=n_cpu), X_test64, args.repeat) if llv else None
        s_fecc = best_s(lambda X: bundle.predict(X), X_test, args.repeat)

        print(f"\nlightgbm binary: {N_TREE} trees, {N_LEAVES} leaves  ({entry['num_node']} nodes, "
              f"fecc compiled in {t_compile:.1f} s, lleaves in {t_llv:.1f} s, engine {entry['batch_engine']}, "
              f"row engine {entry['row_engine']}, blocks of {entry['block_rows']})")
        print(f"  parity      max |fecc - lightgbm| = {max_abs:.2e}, "
              + (f"max |lleaves - lightgbm| = {llv_abs:.2e}" if llv else why))
        print("  single row (1 thread)                                    lightgbm/fecc" + ("  lleaves/fecc" if llv else ""))
        print(f"              lightgbm Booster.predict       {us_lgb:9.1f} us")
        print(f"              lleaves Model.predict          {us_llv:9.1f} us" if llv
              else f"              {why}")
        mark = {e: "*" if e == entry["row_engine"] else " " for e in us_engine}
        for name, us in (("fecc Bundle.predict_one(row)", us_one), ("fecc Bundle.predict_one(dict)", us_dict),
                         (f"fecc predict_row, node arrays{mark['array']}", us_engine["array"]),
                         (f"fecc predict_row, if/else    {mark['ifelse']}", us_engine["ifelse"])):
            print(f"              {name:31s}{us:9.1f} us   {us_lgb / us:9.1f}x"
                  + (f"   {us_llv / us:10.2f}x" if llv else ""))
        print(f"  batch       lightgbm Booster.predict       {s_lgb:9.3f} s    ratio {s_lgb / s_fecc:6.2f}x")
        print(f"              lleaves Model.predict          {s_llv:9.3f} s    ratio {s_llv / s_fecc:6.2f}x" if llv
              else f"              {why}")
        print(f"              fecc Bundle.predict            {s_fecc:9.3f} s")


if __name__ == "__main__":
    main()
