"""Context-aware aggregation (seed 004 §4.3): a small, regularised XGBoost over x ⊕ [ŷ_base, φ].

Inputs: the model's features ``x`` followed by ``fecc_runtime.experts.interaction_features``
(``[ŷ_base, f_k, f_k − ŷ_base, div(f_k, ŷ_base)]`` per expert, NaN outside its region) —
the runtime's own function, so training and serving build the same matrix.

Output, in margin space::

    final = ŷ_base + offset + trees(x ⊕ φ)

* ``offset = Σ_k (f_k − ŷ_base)`` over the experts whose region holds the row when
  ``aggregator_base = "legacy+experts"`` (default), else 0.  The trees are trained with
  ``base_margin = ŷ_base + offset``, so they learn a correction *on top of* the plain
  sum of legacy and experts; with no trees the ensemble is that sum.
* ``trees`` is the booster's margin with a zero global bias (``base_score`` 0.5 for
  ``binary:logistic``, 0 for regression), i.e. what ``predict(output_margin=True)``
  returns without a base margin.

The trees are fitted on the *valid* split — rows the experts' parameters were not fitted
on — with the number of rounds chosen by 3-fold cross-validation on it (early stopping).
If cross-validation finds no round that beats the plain sum, the aggregator is the sum
(``kind = "sum"``, no booster).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xgboost as xgb

from fecc_runtime.experts import expert_offset, feature_names as phi_names

from . import metrics
from .options import SearchOptions


@dataclass
class Aggregator:
    """The fitted aggregator (``kind`` ``"xgboost"`` or ``"sum"``)."""

    kind: str
    base: str
    n_model_features: int
    feature_names: list[str]
    expert_names: list[str]
    booster: xgb.Booster | None = None
    params: dict = field(default_factory=dict)
    n_rounds: int = 0
    cv: dict = field(default_factory=dict)

    def offset(self, phi: np.ndarray) -> np.ndarray:
        if self.base == "legacy":
            return np.zeros(phi.shape[0])
        return expert_offset(phi, len(self.expert_names))

    def margin(self, X: np.ndarray, phi: np.ndarray) -> np.ndarray:
        """Final margin for rows ``X`` with interaction features ``phi`` (column 0 is ŷ_base)."""
        base = phi[:, 0] + self.offset(phi)
        if self.booster is None:
            return base
        dm = xgb.DMatrix(np.hstack([X, phi]), missing=np.nan)
        return base + self.booster.predict(dm, output_margin=True)

    def save_json(self, path: Path) -> Path | None:
        """Write the booster as XGBoost JSON (for ``fecc.lower.lower_trees``); ``None`` if there is none."""
        if self.booster is None:
            return None
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(path))
        return path

    def to_manifest(self) -> dict:
        return {
            "kind": self.kind,
            "base_margin": self.base,
            "formula": ("margin = base_margin + offset + trees(concat(x, features))"
                        if self.kind == "xgboost" else "margin = base_margin + offset"),
            "offset": ("sum over experts whose region holds the row of (f_k - base_margin)"
                       if self.base == "legacy+experts" else "0"),
            "n_model_features": self.n_model_features,
            "feature_names": list(self.feature_names),
            "experts": list(self.expert_names),
            "n_rounds": self.n_rounds,
            "params": dict(self.params),
            "cv": dict(self.cv),
        }


def fit_aggregator(*, task: str, X: np.ndarray, phi: np.ndarray, y: np.ndarray, model_features: list[str],
                   expert_names: list[str], options: SearchOptions) -> Aggregator:
    """Fit the aggregator on one split (the valid split; see the module docstring)."""
    names = list(model_features) + phi_names(expert_names)
    agg = Aggregator(kind="sum", base=options.aggregator_base, n_model_features=len(model_features),
                     feature_names=names, expert_names=list(expert_names))
    if options.aggregator == "sum" or not expert_names:
        return agg
    base = phi[:, 0] + agg.offset(phi)
    params = {
        "objective": "binary:logistic" if task == "binary" else "reg:squarederror",
        "eval_metric": "logloss" if task == "binary" else "rmse",
        "base_score": 0.5 if task == "binary" else 0.0,   # zero bias in margin space
        "max_depth": options.agg_max_depth,
        "eta": options.agg_eta,
        "lambda": options.agg_lambda,
        "min_child_weight": options.agg_min_child_weight,
        "subsample": options.agg_subsample,
        "tree_method": "hist",
        "seed": options.seed,
        "nthread": options.n_jobs,
    }
    dtrain = xgb.DMatrix(np.hstack([X, phi]), label=y, base_margin=base, missing=np.nan)
    cv = xgb.cv(params, dtrain, num_boost_round=options.agg_max_rounds, nfold=3,
                stratified=task == "binary", seed=options.seed, early_stopping_rounds=10, verbose_eval=False)
    col = "test-logloss-mean" if task == "binary" else "test-rmse-mean"
    best = float(cv[col].iloc[-1])
    base_loss = float(np.mean(metrics.loss_rows(task, y, base)))
    if task == "regression":
        base_loss = float(np.sqrt(base_loss))
    agg.cv = {"metric": col.split("-")[1], "base": round(base_loss, 6), "best": round(best, 6),
              "rounds": int(len(cv))}
    agg.params = {k: v for k, v in params.items() if k != "nthread"}
    if not best < base_loss:
        return agg
    agg.kind = "xgboost"
    agg.n_rounds = int(len(cv))
    agg.booster = xgb.train(params, dtrain, num_boost_round=agg.n_rounds)
    return agg
