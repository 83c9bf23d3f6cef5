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

The trees learn from the experts' *out-of-fold* values (each row's expert outputs come
from experts fitted without it), with the number of rounds chosen on the held-out loss
of every cross-fitting fit.  If no round beats the plain sum out of fold, the aggregator
is the sum (``kind = "sum"``, no booster).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xgboost as xgb

from fecc_runtime.format import BASE_MAP_SEMANTICS, base_margin, expert_offset, interaction_features, phi_names

from . import metrics
from .base_map import FITTED as BASE_MAP_FITTED
from .crossfit import Folds
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
    base_map: tuple[float, float] = (1.0, 0.0)   # (scale, shift): base = shift + scale · legacy margin

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

    def ensemble_margin(self, X, legacy_margin: np.ndarray, experts) -> np.ndarray:
        """Final margin of ``experts`` and this aggregator on rows ``X`` (a DataFrame of the
        input row's columns) from the *raw* legacy margin, as the bundle computes it: the
        base margin, the experts' values on it, their interaction features, the trees."""
        base = base_margin(legacy_margin, *self.base_map)
        values = np.column_stack([e.values(X, base) for e in experts])
        return self.margin(X.to_numpy(np.float64), interaction_features(base, values))

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
            # only when the map is not the identity (an entry without it: base = legacy margin)
            **({"base_map": {"scale": self.base_map[0], "shift": self.base_map[1],
                             "semantics": BASE_MAP_SEMANTICS,
                             "fitted": BASE_MAP_FITTED}}
               if self.base_map != (1.0, 0.0) else {}),
        }


#: a fold stops growing trees after this many rounds without a better held-out loss
EARLY_STOP = 25


def _params(task: str, options: SearchOptions) -> dict:
    return {
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


def fit_aggregator(*, task: str, X: np.ndarray, phi: list[np.ndarray], y: np.ndarray, folds: Folds,
                   model_features: list[str], expert_names: list[str],
                   options: SearchOptions, base_map: tuple[float, float] = (1.0, 0.0)) -> tuple[Aggregator, np.ndarray]:
    """Fit the aggregator on out-of-fold expert outputs; return it and its OOF margin.

    ``phi[r]`` is the interaction matrix built from the experts' out-of-fold values of
    cut ``r`` (``folds.repeats`` of them).  For every fit of every cut the trees are
    grown on the fit's training rows with that fit's held-out rows watched; the number of
    rounds is the one with the lowest held-out loss averaged over all fits (``0``: the
    plain sum).  The returned margin is each row's held-out prediction at that number of
    rounds, averaged over the cuts: what the gate judges.  The shipped booster is then
    grown on all rows (cut 0's out-of-fold inputs) for the chosen rounds.
    """
    names = list(model_features) + phi_names(expert_names)
    agg = Aggregator(kind="sum", base=options.aggregator_base, n_model_features=len(model_features),
                     feature_names=names, expert_names=list(expert_names), base_map=tuple(base_map))
    bases = [p[:, 0] + agg.offset(p) for p in phi]
    plain = np.mean(bases, axis=0)
    if options.aggregator == "sum" or not expert_names:
        return agg, plain
    params = _params(task, options)
    rounds = options.agg_max_rounds
    curves, preds = [], []
    for j in range(folds.n_fits):
        r = j // folds.k
        tr, te = folds.train(j), folds.test(j)
        M = np.hstack([X, phi[r]])
        dtr = xgb.DMatrix(M[tr], label=y[tr], base_margin=bases[r][tr], missing=np.nan)
        dte = xgb.DMatrix(M[te], label=y[te], base_margin=bases[r][te], missing=np.nan)
        seen: dict = {}
        booster = xgb.train(params, dtr, num_boost_round=rounds, evals=[(dte, "heldout")], evals_result=seen,
                            verbose_eval=False, early_stopping_rounds=EARLY_STOP)
        per_round = np.asarray(seen["heldout"][params["eval_metric"]], dtype=np.float64)
        # a fit that stopped early is taken to stay at its last held-out loss
        per_round = np.concatenate([per_round, np.full(rounds - per_round.size, per_round[-1])])
        if task == "regression":
            per_round = per_round ** 2  # rmse → mean squared error
        start = float(np.mean(metrics.loss_rows(task, y[te], bases[r][te])))
        curves.append(np.concatenate([[start], per_round]) * te.size)  # summed held-out loss after t rounds
        preds.append((r, te, booster, dte))
    total = np.sum(curves, axis=0) / (folds.n * folds.repeats)
    best = int(np.argmin(total))
    base_loss = float(total[0])
    agg.cv = {"metric": "logloss" if task == "binary" else "mse", "base": round(base_loss, 6), "best": round(float(total[best]), 6),
              "rounds": best, "fits": folds.n_fits}
    agg.params = {k: v for k, v in params.items() if k != "nthread"}
    if best == 0:
        return agg, plain
    oof = np.zeros((folds.repeats, folds.n))
    for r, te, booster, dte in preds:
        oof[r, te] = booster.predict(dte, output_margin=True,
                                     iteration_range=(0, min(best, booster.num_boosted_rounds())))
    agg.kind = "xgboost"
    agg.n_rounds = best
    full = xgb.DMatrix(np.hstack([X, phi[0]]), label=y, base_margin=bases[0], missing=np.nan)
    agg.booster = xgb.train(params, full, num_boost_round=best)
    return agg, oof.mean(axis=0)
