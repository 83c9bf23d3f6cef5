"""Experts in the compiled path: legacy + 5 experts + aggregator, against the legacy model alone.

For the two models of ``bench_latency.py`` (XGBoost ``binary:logistic``, 30 float32
features, 2% NaN; 100 trees of depth 6 and 500 trees of depth 8) this script builds:

* the legacy model compiled alone (``fecc compile --search none``);
* a bundle with 5 experts written directly as IR (``fecc.ir.parse_postfix``: threshold
  regions, corrections such as ``0.3 * max(x1 - 0.2, 0) + where(x4 > 0.5, -0.2, 0)``,
  tanh, log, exp, sigmoid, sqrt, min/max) and an aggregator booster trained with xgboost
  on the interaction features, with the search's default aggregator parameters and its
  number of rounds chosen on held-out loss (at most 200, as the search allows).  The
  bundle goes through the driver's own writer (``compile_bundle`` with ``run_search``
  replaced by a function returning that result, ``--emit onnx``), so it holds the C
  ensemble library, the numba module and ``model.onnx``.

It checks the engines against each other on the test rows, then prints, measured in one
run (the ``uptime`` load before and after):

* single row: median µs per call over the same distinct rows, one thread, the best of
  ``--rounds`` rounds that time every contender in turn:
  ``xgboost.Booster.inplace_predict`` on the legacy model alone; ``Bundle.predict_one``
  (numpy row) of the legacy bundle; of the experts bundle through the C ensemble library
  (and on a dict), the numba engine (the path before the C library) and the ONNX graph;
* batch: best-of-``--repeat`` seconds for ``--rows`` rows, every CPU the process may use:
  ``inplace_predict`` on the legacy model alone, ``Bundle.predict`` of each.

Targets (issue 18): experts bundle single row ≤ 2× the legacy bundle and ≥ 20× faster
than xgboost single row; batch ≥ 1.5× faster than xgboost on the legacy model alone.

Run:  .venv/bin/python benchmarks/bench_experts.py [--rows 1000000] [--repeat 3] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import xgboost as xgb

import fecc_runtime
from bench_latency import MODELS, N_FEATURE, best_s, make_data, median_us

#: The five experts, as postfix IR over f0 .. f29 (region, correction).
EXPERTS = [
    ("$f0 0.5 gt", "0.3 $f1 0.2 sub 0.0 max mul $f4 0.5 gt -0.2 0.0 where add"),
    ("$f2 -0.3 le $f3 isnan or", "$f5 tanh 0.25 mul $f6 $f7 min 0.1 mul add"),
    ("$f6 1.0 lt $f7 0.0 ge and", "$f8 $f9 div log 0.1 mul $f10 -0.5 gt 0.15 -0.05 where add"),
    ("$f10 0.0 gt $f11 isnan not and", "$f11 square -0.05 mul $f12 exp 0.01 mul add"),
    ("$f13 -1.0 gt $f14 1.5 lt and", "$f14 sigmoid 0.5 sub $f15 abs sqrt 0.02 mul sub $f16 $f0 max 0.03 mul add"),
]
COLS = [f"f{i}" for i in range(N_FEATURE)]


def load_average() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def search_result(model_path: Path, X: np.ndarray, y: np.ndarray, agg_rounds: int | None = None):
    """A shipped SearchResult: the IR experts and an aggregator fitted like the search fits one."""
    from fecc.frontend import load_legacy_model, reference_margin
    from fecc.ir import parse_postfix, to_math
    from fecc.search import Expert, SearchOptions
    from fecc.search.aggregate import Aggregator, _params
    from fecc.search.driver import SearchResult
    from fecc.search.gate import GateResult
    from fecc_runtime.experts import expert_offset, feature_names as phi_names, interaction_features

    frame = pd.DataFrame(X.astype(np.float64), columns=COLS)
    m = reference_margin(load_legacy_model(model_path), frame)
    experts = []
    for k, (region, correction) in enumerate(EXPERTS, start=1):
        r, c = parse_postfix(region), parse_postfix(correction)
        experts.append(Expert(name=f"expert_{k}", region_index=k, region=r, region_rule=to_math(r), correction=c,
                              structure=c, params={}, metrics={}))
    with np.errstate(all="ignore"):
        phi = interaction_features(m, np.column_stack([e.values(frame, m) for e in experts]))
    base = m + expert_offset(phi, len(experts))
    # the y the aggregator learns: what the planted experts and the legacy model miss
    M = np.hstack([frame.to_numpy(), phi])
    options = SearchOptions()
    params = _params("binary", options)
    cut = int(0.8 * len(y))
    dtr = xgb.DMatrix(M[:cut], label=y[:cut], base_margin=base[:cut], missing=np.nan)
    dte = xgb.DMatrix(M[cut:], label=y[cut:], base_margin=base[cut:], missing=np.nan)
    fit = xgb.train(params, dtr, num_boost_round=options.agg_max_rounds, evals=[(dte, "heldout")],
                    early_stopping_rounds=20, verbose_eval=False)
    rounds = agg_rounds or max(1, fit.best_iteration + 1)
    full = xgb.DMatrix(M, label=y, base_margin=base, missing=np.nan)
    agg = Aggregator(kind="xgboost", base="legacy+experts", n_model_features=N_FEATURE,
                     feature_names=COLS + phi_names([e.name for e in experts]), expert_names=[e.name for e in experts],
                     booster=xgb.train(params, full, num_boost_round=rounds), params=params, n_rounds=rounds)
    gate = GateResult(decision="ensemble", reason="benchmark: experts written as IR", metric="auc", alpha=0.05)
    return SearchResult(task="binary", feature_names=COLS, experts=experts, aggregator=agg, gate=gate,
                        options=options)


def build(workdir: Path, n_tree: int, depth: int, X_train, y_train, n_cpu: int,
          agg_rounds: int | None = None) -> tuple[Path, Path, int]:
    """(legacy bundle, experts bundle, aggregator rounds); reused when present."""
    from fecc.driver import CompileOptions, compile_bundle

    legacy, experts = workdir / "legacy", workdir / "experts"
    if (legacy / "manifest.json").is_file() and (experts / "manifest.json").is_file():
        import json

        rounds = json.loads((experts / "manifest.json").read_text())["aggregator"]["n_rounds"]
        return legacy, experts, rounds
    workdir.mkdir(parents=True, exist_ok=True)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": depth, "eta": 0.1, "nthread": n_cpu, "seed": 0},
                        xgb.DMatrix(X_train, y_train, feature_names=COLS), num_boost_round=n_tree)
    model = workdir / "model.json"
    booster.save_model(model)
    data = workdir / "data.parquet"
    pd.DataFrame(X_train[:3000].astype(np.float64), columns=COLS).assign(y=y_train[:3000]).to_parquet(data)
    compile_bundle(model, data, legacy, CompileOptions(search="none", force=True))
    result = search_result(model, X_train, y_train, agg_rounds)
    with mock.patch("fecc.search.run_search", lambda **kw: result):
        compile_bundle(model, data, experts, CompileOptions(search="nsr", llm="none", emit="onnx", force=True,
                                                            search_options={"n_workers": 1}))
    return legacy, experts, result.aggregator.n_rounds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="batch rows (default 1000000)")
    ap.add_argument("--repeat", type=int, default=3, help="batch repetitions, best is kept")
    ap.add_argument("--row-calls", type=int, default=2000, help="single-row calls per median")
    ap.add_argument("--rounds", type=int, default=3, help="single-row rounds over all contenders; best median kept")
    ap.add_argument("--workdir", type=Path, default=None, help="keep models and bundles here and reuse them")
    ap.add_argument("--skip-slow", action="store_true", help="no batch timing of the numba and ONNX engines")
    ap.add_argument("--agg-rounds", type=int, default=None,
                    help="aggregator trees (default: chosen on held-out loss, at most 200, as the search does)")
    args = ap.parse_args()

    n_cpu = len(os.sched_getaffinity(0))
    X_train, y_train = make_data(20_000, seed=0)
    X_test, _ = make_data(args.rows, seed=1)
    rows = [X_test[i] for i in range(min(args.row_calls, len(X_test)))]
    dict_rows = [dict(zip(COLS, r.tolist())) for r in rows]
    with tempfile.TemporaryDirectory(prefix="fecc-bench-experts-") as tmp:
        root = args.workdir or Path(tmp)
        built = {label: build(root / f"{n_tree}x{depth}{'' if args.agg_rounds is None else f'_agg{args.agg_rounds}'}",
                              n_tree, depth, X_train, y_train, n_cpu, args.agg_rounds)
                 for label, (n_tree, depth) in MODELS.items()}
        print(f"xgboost {xgb.__version__}, {n_cpu} CPUs, batch {args.rows} rows, {N_FEATURE} features, 2% NaN, "
              f"5 experts + aggregator")
        print(f"load before: {load_average()}")
        for label, (legacy_dir, experts_dir, rounds) in built.items():
            booster = xgb.Booster(model_file=str(legacy_dir.parent / "model.json"))
            legacy = fecc_runtime.load(legacy_dir)
            c = fecc_runtime.load(experts_dir, engine="native")
            nb = fecc_runtime.load(experts_dir, engine="numba")
            ox = fecc_runtime.load(experts_dir, engine="onnx")
            assert c.engine == "c" and nb.engine == "numba" and ox.engine == "onnx"
            check = X_test[:20000]
            mc = c.predict(check, output="margin")
            d_numba = float(np.abs(mc - nb.predict(check, output="margin")).max())
            d_onnx = float(np.abs(c.predict(check) - ox.predict(check)).max())
            d_legacy = float(np.abs(legacy.predict(check) - booster.inplace_predict(check)).max())

            booster.set_param({"nthread": 1})
            it = iter(range(1 << 62))
            contenders = {
                "xgboost inplace_predict (legacy)": (
                    lambda _: booster.inplace_predict(rows[next(it) % len(rows)][None, :]), args.row_calls // 4),
                "fecc legacy alone predict_one(row)": (
                    lambda _: legacy.predict_one(rows[next(it) % len(rows)]), args.row_calls),
                "fecc experts, C library (row)": (lambda _: c.predict_one(rows[next(it) % len(rows)]), args.row_calls),
                "fecc experts, C library (dict)": (
                    lambda _: c.predict_one(dict_rows[next(it) % len(rows)]), args.row_calls),
                "fecc experts, numba engine (row)": (
                    lambda _: nb.predict_one(rows[next(it) % len(rows)]), args.row_calls // 4),
                "fecc experts, ONNX graph (row)": (
                    lambda _: ox.predict_one(rows[next(it) % len(rows)]), args.row_calls // 4),
            }
            # rounds over all contenders in turn, best median of each: a burst of load on the
            # shared machine then hits one round, not one contender
            one = {k: float("inf") for k in contenders}
            for _ in range(args.rounds):
                for k, (fn, calls) in contenders.items():
                    one[k] = min(one[k], median_us(fn, None, calls))
            booster.set_param({"nthread": n_cpu})
            batch = {
                "xgboost inplace_predict (legacy)": best_s(lambda X: booster.inplace_predict(X), X_test, args.repeat),
                "fecc legacy alone predict": best_s(lambda X: legacy.predict(X), X_test, args.repeat),
                "fecc experts, C library": best_s(lambda X: c.predict(X), X_test, args.repeat),
            }
            if not args.skip_slow:
                batch["fecc experts, numba engine"] = best_s(lambda X: nb.predict(X), X_test, 1)
                batch["fecc experts, ONNX graph"] = best_s(lambda X: ox.predict(X), X_test, 1)
            x_one = one["xgboost inplace_predict (legacy)"]
            x_batch = batch["xgboost inplace_predict (legacy)"]
            print(f"\n{label}  (aggregator {rounds} trees; max |C - numba| margin {d_numba:.1e}, "
                  f"max |C - ONNX| {d_onnx:.1e}, max |legacy - xgboost| {d_legacy:.1e})")
            for k, us in one.items():
                print(f"  single row  {k:36s} {us:9.2f} us   xgboost/this {x_one / us:7.1f}x")
            for k, s in batch.items():
                print(f"  batch       {k:36s} {s:9.3f} s    xgboost/this {x_batch / s:7.2f}x")
            ratio = one["fecc experts, C library (row)"] / one["fecc legacy alone predict_one(row)"]
            print(f"  targets: experts/legacy single row {ratio:.2f}x (<= 2), xgboost/experts single row "
                  f"{x_one / one['fecc experts, C library (row)']:.1f}x (>= 20), xgboost/experts batch "
                  f"{x_batch / batch['fecc experts, C library']:.2f}x (>= 1.5)")
        print(f"\nload after: {load_average()}")


if __name__ == "__main__":
    main()
