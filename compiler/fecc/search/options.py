"""The one options dataclass of the search stage (API and CLI share it)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping


@dataclass(frozen=True)
class SearchOptions:
    """Options of the NSR-Boost search (seed 004).  Unknown keys are rejected by :meth:`from_dict`.

    Attributes
    ----------
    n_regions : at most this many hard regions (one expert chain each).
    cart_depth : depth of the CART tree fitted to the residual target on the train split.
    region_target : what the CART tree fits: ``"excess"`` (default) — for binary tasks
        ``|y − p| − 2p(1 − p)``, the absolute residual minus what a calibrated model with
        that probability expects, so regions are where the legacy model is *wrong more
        than it believes* rather than merely uncertain (for regression the same as
        ``"abs"``); ``"abs"`` — ``|y − ŷ|`` as in seed 004 §4.1.
    min_leaf : fewest train rows a region may hold (CART ``min_samples_leaf``, and the
        floor under boundary refinement).
    iterations : successful (accepted) structure changes per chain before it stops (seed 004's T).
    max_proposals : budget of proposals per chain, accepted or not.
    optuna_trials : TPE trials per candidate structure (seed 004's M).
    tau0 : initial annealing tolerance: a candidate is accepted when its validation score
        exceeds the current one minus ``tau``.
    tau_decay : ``tau`` is multiplied by this after every proposal.
    n_instances : region rows shown to the proposer as few-shot context (seed 004's N).
    refine_boundaries : let the first inner loop of each chain move the region's
        thresholds (seed 004's boundary refinement).
    refine_width : thresholds may move by this many train standard deviations of their feature.
    expert_min_z : an expert is kept only if its loss reduction on the validation rows of
        its region has a paired z statistic at least this large (it must earn its place
        on rows it was not fitted on).
    aggregator : ``"xgboost"`` (seed 004's context-aware aggregator) or ``"sum"``
        (legacy margin plus the experts' corrections, no trees).
    aggregator_base : base margin the aggregator trees correct: ``"legacy+experts"``
        (legacy margin plus the experts' corrections; zero trees = the plain sum) or
        ``"legacy"`` (the legacy margin only).
    agg_max_rounds : most boosting rounds of the aggregator (chosen by CV on valid).
    agg_max_depth, agg_eta, agg_lambda, agg_min_child_weight, agg_subsample :
        aggregator XGBoost parameters: kept small and regularised on purpose.
    gate_tolerance : the ensemble ships when its holdout metric is no worse than the
        legacy model's by more than this (AUC points, or RMSE units).
    seed : seed of every random choice (proposer, Optuna, aggregator).
    time_budget_s : wall-clock budget of the chains; past it, chains stop proposing
        (a safety net: a run that hits it is no longer reproducible).
    n_jobs : threads for XGBoost.
    """

    n_regions: int = 5
    cart_depth: int = 3
    region_target: str = "excess"
    min_leaf: int = 20
    iterations: int = 5
    max_proposals: int = 15
    optuna_trials: int = 24
    tau0: float = 0.002
    tau_decay: float = 0.7
    n_instances: int = 20
    refine_boundaries: bool = True
    refine_width: float = 0.25
    expert_min_z: float = 1.64
    aggregator: str = "xgboost"
    aggregator_base: str = "legacy+experts"
    agg_max_rounds: int = 60
    agg_max_depth: int = 2
    agg_eta: float = 0.05
    agg_lambda: float = 10.0
    agg_min_child_weight: float = 5.0
    agg_subsample: float = 0.8
    gate_tolerance: float = 0.0
    seed: int = 0
    time_budget_s: float = 600.0
    n_jobs: int = 1

    def __post_init__(self):
        positive = ("n_regions", "cart_depth", "min_leaf", "iterations", "max_proposals",
                    "optuna_trials", "agg_max_rounds", "agg_max_depth", "n_jobs")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.region_target not in ("excess", "abs"):
            raise ValueError(f"region_target must be 'excess' or 'abs', got {self.region_target!r}")
        if self.aggregator not in ("xgboost", "sum"):
            raise ValueError(f"aggregator must be 'xgboost' or 'sum', got {self.aggregator!r}")
        if self.aggregator_base not in ("legacy+experts", "legacy"):
            raise ValueError(f"aggregator_base must be 'legacy+experts' or 'legacy', got {self.aggregator_base!r}")
        if not 0.0 < self.tau_decay <= 1.0:
            raise ValueError(f"tau_decay must be in (0, 1], got {self.tau_decay!r}")
        if self.tau0 < 0 or self.gate_tolerance < 0 or self.refine_width < 0:
            raise ValueError("tau0, gate_tolerance and refine_width must be non-negative")
        if not 0.0 < self.agg_subsample <= 1.0:
            raise ValueError(f"agg_subsample must be in (0, 1], got {self.agg_subsample!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "SearchOptions":
        """Build from a mapping (e.g. CLI ``--search-option k=v``); unknown keys raise ``ValueError``."""
        values = dict(values or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown search option(s): {', '.join(unknown)} (known: {', '.join(known)})")
        converted = {}
        for name, value in values.items():
            default = getattr(cls, name)
            if isinstance(default, bool) and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(f"search option {name} must be a boolean, got {value!r}")
                value = value.lower() in ("true", "1", "yes")
            elif isinstance(default, bool):
                value = bool(value)
            elif isinstance(default, int):
                value = int(value)
            elif isinstance(default, float):
                value = float(value)
            converted[name] = value
        return cls(**converted)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
