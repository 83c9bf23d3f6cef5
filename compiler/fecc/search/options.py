"""The one options dataclass of the search stage (API and CLI share it)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from ..option_values import options_from_mapping


@dataclass(frozen=True)
class SearchOptions:
    """Options of the NSR-Boost search (seed 004).  Unknown keys are rejected by :meth:`from_dict`.

    Attributes
    ----------
    n_folds : the search's cross-fitting folds (stratified); every choice is made on
        out-of-fold predictions, and what ships is refitted on all rows.  The gate's outer
        folds are given to :func:`run_search` (``fecc compile`` uses ``gate_folds``).
    gate_folds : outer folds: the whole search is rerun on each fold's complement and
        judged on the fold.
    fold_repeats : cut the folds this many times (each row is judged once per cut);
        ``0`` (default) repeats only when rows are few (``ceil(2000 / n)``, at most 3).
    base_map : the margin the search repairs: ``"affine"`` (default) — ``shift + scale ·
        legacy margin`` fitted on the search's rows (:mod:`fecc.search.base_map`: an
        increasing map, so the legacy ranking is unchanged, that takes the legacy model's
        miscalibration out of the residuals first); ``"identity"`` — the legacy margin.
    global_expert : run a chain over the whole feature space first (an additive
        correction over several features), before the CART regions.
    n_regions : at most this many hard regions (one expert chain each).
    cart_depth : depth of the CART tree fitted to the residual target.
    region_target : what the CART tree fits: ``"excess"`` (default) — for binary tasks
        ``|y − p| − 2p(1 − p)``, the absolute residual minus what a calibrated model with
        that probability expects, so regions are where the model is *wrong more than it
        believes* rather than merely uncertain (for regression the same as ``"abs"``);
        ``"abs"`` — ``|y − ŷ|`` as in seed 004 §4.1.  Residuals are out of fold, after the
        whole-space expert.
    min_leaf : fewest rows a region may hold (CART ``min_samples_leaf``, and the floor
        under boundary refinement).
    iterations : successful (accepted) structure changes per chain before it stops (seed 004's T).
    max_proposals : budget of proposals per chain, accepted or not.
    global_proposals : the same budget for the whole-space chain.
    optuna_trials : TPE trials for a candidate's new shape constants (seed 004's M); linear
        weights are solved in closed form.
    ridge : penalty on the linear weights, in pseudo-observations on each term's
        standardised scale.
    tau0 : initial annealing tolerance: a candidate is accepted when its out-of-fold score
        (fraction of the legacy loss removed) exceeds the current one minus ``tau``.
    tau_decay : ``tau`` is multiplied by this after every proposal.
    n_instances : region rows shown to the proposer as few-shot context (seed 004's N).
    refine_boundaries : let the seed step of each chain move the region's thresholds
        (seed 004's boundary refinement), separately in every fit.
    refine_width : thresholds may move by this many standard deviations of their feature.
    aggregator : ``"xgboost"`` (seed 004's context-aware aggregator) or ``"sum"``
        (legacy margin plus the experts' corrections, no trees).
    aggregator_base : base margin the aggregator trees correct: ``"legacy+experts"``
        (legacy margin plus the experts' corrections; zero trees = the plain sum) or
        ``"legacy"`` (the legacy margin only).
    agg_max_rounds : most boosting rounds of the aggregator (chosen on out-of-fold loss).
    agg_max_depth, agg_eta, agg_lambda, agg_min_child_weight, agg_subsample :
        aggregator XGBoost parameters: kept small and regularised on purpose.
    gate_alpha : the ensemble ships when the paired test on out-of-fold predictions
        (DeLong for AUC, paired z for RMSE) gives a one-sided p-value at most this.
    seed : seed of every random choice (folds, proposer, Optuna, aggregator).
    time_budget_s : wall-clock budget of the chains; past it, chains stop proposing
        (a safety net: a run that hits it is no longer reproducible).
    n_jobs : threads for XGBoost.
    n_workers : processes that run the gate's outer-fold searches (the built-in grammar
        proposer only; LLM proposers run them one after the other).
    """

    n_folds: int = 5
    gate_folds: int = 5
    fold_repeats: int = 0
    base_map: str = "affine"
    global_expert: bool = True
    n_regions: int = 4
    cart_depth: int = 3
    region_target: str = "excess"
    min_leaf: int = 30
    iterations: int = 6
    max_proposals: int = 10
    global_proposals: int = 16
    optuna_trials: int = 12
    ridge: float = 2.0
    tau0: float = 0.0002
    tau_decay: float = 0.7
    n_instances: int = 20
    refine_boundaries: bool = True
    refine_width: float = 0.25
    aggregator: str = "xgboost"
    aggregator_base: str = "legacy+experts"
    agg_max_rounds: int = 200
    agg_max_depth: int = 2
    agg_eta: float = 0.1
    agg_lambda: float = 10.0
    agg_min_child_weight: float = 5.0
    agg_subsample: float = 0.8
    gate_alpha: float = 0.05
    seed: int = 0
    time_budget_s: float = 600.0
    n_jobs: int = 1
    n_workers: int = 2

    def __post_init__(self):
        positive = ("cart_depth", "min_leaf", "iterations", "max_proposals", "global_proposals",
                    "optuna_trials", "agg_max_rounds", "agg_max_depth", "n_jobs", "n_workers")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.region_target not in ("excess", "abs"):
            raise ValueError(f"region_target must be 'excess' or 'abs', got {self.region_target!r}")
        if self.base_map not in ("affine", "identity"):
            raise ValueError(f"base_map must be 'affine' or 'identity', got {self.base_map!r}")
        if self.aggregator not in ("xgboost", "sum"):
            raise ValueError(f"aggregator must be 'xgboost' or 'sum', got {self.aggregator!r}")
        if self.aggregator_base not in ("legacy+experts", "legacy"):
            raise ValueError(f"aggregator_base must be 'legacy+experts' or 'legacy', got {self.aggregator_base!r}")
        if not 0.0 < self.tau_decay <= 1.0:
            raise ValueError(f"tau_decay must be in (0, 1], got {self.tau_decay!r}")
        if self.n_regions < 0:
            raise ValueError(f"n_regions must be at least 0, got {self.n_regions!r}")
        if self.n_folds < 2 or self.gate_folds < 2:
            raise ValueError(f"n_folds and gate_folds must be at least 2, got {self.n_folds!r}, {self.gate_folds!r}")
        if not 0 <= self.fold_repeats <= 10:
            raise ValueError(f"fold_repeats must be in 0..10, got {self.fold_repeats!r}")
        if self.tau0 < 0 or self.refine_width < 0 or self.ridge < 0:
            raise ValueError("tau0, ridge and refine_width must be non-negative")
        if not 0.0 < self.gate_alpha < 0.5:
            raise ValueError(f"gate_alpha must be in (0, 0.5), got {self.gate_alpha!r}")
        if not 0.0 < self.agg_subsample <= 1.0:
            raise ValueError(f"agg_subsample must be in (0, 1], got {self.agg_subsample!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "SearchOptions":
        """Build from a mapping (e.g. CLI ``--set k=v``); unknown keys raise ``ValueError``
        (see :func:`fecc.option_values.options_from_mapping`)."""
        return options_from_mapping(cls, values, kind="search option")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
