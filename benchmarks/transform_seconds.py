"""Wall time of the teaming transform search (seed 000) alone, on up to N compile rows of one data set.

The issue's budget: ≤ 5 minutes per data set of ≤ 10k compile rows on 2 cores with the
default options.  Same split as ``accuracy.py`` (legacy XGBoost on 50%, compile rows from
the next 30%); the first ``--rows`` compile rows are searched once, with the default
``TransformOptions`` (``seed`` from ``--seed``).

    python benchmarks/transform_seconds.py --dataset adult --rows 10000
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import xgboost as xgb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import _split  # noqa: E402
from datasets import DATASETS  # noqa: E402

from fecc.transforms import TransformOptions, search_transforms  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="adult", choices=list(DATASETS))
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    X, y, task = DATASETS[args.dataset]()
    legacy_idx, fit_idx, _ = _split(args.dataset, y, task, args.seed, shifted=False)
    fit_idx = fit_idx[: args.rows]
    Model = xgb.XGBClassifier if task == "binary" else xgb.XGBRegressor
    legacy = Model(random_state=args.seed, n_jobs=2).fit(X.to_numpy(np.float64)[legacy_idx], y[legacy_idx])
    Xfit = X.iloc[fit_idx].reset_index(drop=True)
    m = legacy.get_booster().predict(xgb.DMatrix(Xfit.to_numpy(np.float64), missing=np.nan),
                                     output_margin=True).astype(np.float64)
    t0 = time.time()
    result = search_transforms(Xfit, y[fit_idx], m, task, None, TransformOptions(seed=args.seed))
    seconds = time.time() - t0
    st = result.stats
    print(json.dumps({"dataset": args.dataset, "rows": int(len(Xfit)), "features": int(X.shape[1]),
                      "cpus": len(os.sched_getaffinity(0)), "load_average_1min": round(os.getloadavg()[0], 2),
                      "seconds": round(seconds, 1), "timings": st.get("timings"),
                      "generated": st.get("generated"), "evaluated": st.get("evaluated"),
                      "chosen": [t.postfix for t in result.transforms]}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
