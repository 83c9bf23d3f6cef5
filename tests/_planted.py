"""Bundles with experts, made without running the search: experts written as IR, an
aggregator trained with xgboost on their interaction features, and the driver's own
``compile_bundle`` (writer, lowering, parity replay, report) with ``run_search``
replaced by a function returning that :class:`~fecc.search.SearchResult`.

Used by the C ensemble and ONNX graph tests; fast (a small legacy model, no search).
"""
from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import xgboost as xgb

from fecc.ir import parse_postfix, to_math
from fecc_runtime.experts import expert_offset, feature_names as phi_names, interaction_features

#: Five experts over f0..f7: every numeric operator class, NaN-routing regions, thresholds.
PLANTED = [
    ("$f0 0.5 gt", "0.3 $f1 0.2 sub 0.0 max mul $f4 0.5 gt -0.2 0.0 where add"),
    ("$f2 -0.3 le $f3 isnan or", "$f5 tanh 0.25 mul $f6 $f7 min 0.1 mul add"),
    ("$f6 1.0 lt $f7 0.0 ge and", "$f1 $f2 div log 0.1 mul $f0 sign 0.05 mul sub"),
    ("$f4 0.0 gt $f5 isnan not and", "$f3 square -0.05 mul $f2 exp 0.01 mul add $f1 cube 0.001 mul add"),
    ("$f1 -1.0 gt", "$f7 sigmoid 0.5 sub $f6 abs sqrt 0.02 mul sub $f0 neg $f3 max 0.03 mul add"),
]


def make_table(n_rows: int, n_features: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Features f0.. (5% missing) and a binary target with signal the legacy model half misses."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    logit = X[:, 0] - 0.8 * X[:, 1] + 0.6 * X[:, 2] * X[:, 3] + 0.7 * np.maximum(X[:, 1] - 0.2, 0) * (X[:, 0] > 0.5)
    y = (logit + rng.normal(scale=0.7, size=n_rows) > 0).astype(np.float64)
    X[rng.random(X.shape) < 0.05] = np.nan
    return pd.DataFrame(X.astype(np.float64), columns=[f"f{i}" for i in range(n_features)]), y


def planted_result(model_path: Path, X: pd.DataFrame, y: np.ndarray, *, base_margin: str = "legacy+experts",
                   agg_rounds: int = 30, experts=PLANTED):
    """A shipped :class:`~fecc.search.SearchResult` with the planted experts and an xgboost aggregator."""
    from fecc.frontend import load_legacy_model, reference_margin
    from fecc.search import Expert, SearchOptions
    from fecc.search.aggregate import Aggregator
    from fecc.search.driver import SearchResult
    from fecc.search.gate import GateResult

    names = [str(c) for c in X.columns]
    X32 = X.astype(np.float32).astype(np.float64)
    model = load_legacy_model(model_path)
    m = reference_margin(model, X32)
    ex = []
    for k, (region, correction) in enumerate(experts, start=1):
        r, c = parse_postfix(region), parse_postfix(correction)
        ex.append(Expert(name=f"expert_{k}", region_index=k, region=r, region_rule=to_math(r), correction=c,
                         structure=c, params={}, metrics={}))
    with np.errstate(all="ignore"):
        values = np.column_stack([e.values(X32, m) for e in ex])
        phi = interaction_features(m, values)
    agg = Aggregator(kind="sum", base=base_margin, n_model_features=len(names),
                     feature_names=names + phi_names([e.name for e in ex]), expert_names=[e.name for e in ex])
    if agg_rounds:
        base = m + (expert_offset(phi, len(ex)) if base_margin == "legacy+experts" else 0.0)
        d = xgb.DMatrix(np.hstack([X32.to_numpy(), phi]), label=y, base_margin=base, missing=np.nan)
        agg.booster = xgb.train({"objective": "binary:logistic", "base_score": 0.5, "max_depth": 3, "eta": 0.2,
                                 "seed": 0, "nthread": 1}, d, num_boost_round=agg_rounds)
        agg.kind, agg.n_rounds = "xgboost", agg_rounds
    gate = GateResult(decision="ensemble", reason="planted experts (test fixture, no search)", metric="auc", alpha=0.05)
    return SearchResult(task="binary", feature_names=names, experts=ex, aggregator=agg, gate=gate,
                        options=SearchOptions())


def planted_bundle(root: Path, *, n_trees: int = 20, depth: int = 4, n_features: int = 8, n_rows: int = 1200,
                   seed: int = 0, emit: str = "native", base_margin: str = "legacy+experts", agg_rounds: int = 30,
                   model_path: Path | None = None, experts=PLANTED, table=None):
    """Compile a bundle with the planted experts; returns ``(bundle_dir, result, model_path, X)``.

    ``table``: ``(X, y)`` to use (with ``model_path``) instead of the generated data."""
    from fecc.driver import CompileOptions, compile_bundle

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    X, y = table if table is not None else make_table(n_rows, n_features, seed)
    if model_path is None:
        model_path = root / "model.json"
        booster = xgb.train({"objective": "binary:logistic", "max_depth": depth, "eta": 0.3, "seed": 0, "nthread": 1},
                            xgb.DMatrix(X.to_numpy(np.float32), y, feature_names=list(X.columns)), n_trees)
        booster.save_model(model_path)
    X.assign(y=y).to_parquet(root / "data.parquet")
    result = planted_result(model_path, X, y, base_margin=base_margin, agg_rounds=agg_rounds, experts=experts)
    out = root / f"bundle_{emit}"
    with mock.patch("fecc.search.run_search", lambda **kw: result):
        compile_bundle(model_path, root / "data.parquet", out,
                       CompileOptions(search="nsr", llm="none", emit=emit, force=True, search_options={"n_workers": 1}))
    return out, result, model_path, X
