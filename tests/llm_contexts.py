"""Small, realistic ProposalContexts for the LLM tests (and for recording real answers)."""
from __future__ import annotations

import numpy as np

from fecc.ir import Const, Feature, Param, make
from fecc.llm.base import FeatureStat, ProposalContext

CREDIT_FEATURES = ("age", "income", "debt_ratio", "late_payments", "open_lines")
HEART_FEATURES = ("age", "resting_bp", "cholesterol", "max_heart_rate", "st_depression")


def _rows(rng, features, spec, n=20, kinds=("false negative", "false positive", "high uncertainty")):
    rows = []
    for i in range(n):
        row = {f: round(float(rng.uniform(*spec[f])), 3) for f in features}
        if i % 7 == 3:
            row[features[-1]] = None  # a missing value, as the search writes it
        row["label"] = float(i % 2)
        row["legacy_margin"] = round(float(rng.normal(0, 1)), 4)
        row["error_type"] = kinds[i % len(kinds)]
        rows.append(row)
    return tuple(rows)


def _stats(rng, features, spec):
    out = []
    for f in features:
        lo, hi = spec[f]
        out.append(FeatureStat(f, iv=round(float(rng.uniform(0.01, 0.5)), 3), psi=round(float(rng.uniform(0, 0.3)), 3),
                               mean=(lo + hi) / 2, std=(hi - lo) / 3.5, min=lo, max=hi, missing=0.02))
    return tuple(out)


def credit_context(seed: int = 0, iteration: int = 0, *, current=None, current_params=None, feedback=None):
    """Credit default, region ``age > 50 and income <= 3000``, current expert ``w0 * log(debt_ratio)``."""
    rng = np.random.default_rng(seed)
    spec = {"age": (51, 80), "income": (800, 3000), "debt_ratio": (0, 2), "late_payments": (0, 6),
            "open_lines": (0, 12)}
    region = make("and", make("gt", Feature("age"), Const(50.0)), make("le", Feature("income"), Const(3000.0)))
    if current is None:
        current = make("mul", Param("w0"), make("log", Feature("debt_ratio")))
        current_params = {"w0": 0.35}
    return ProposalContext(
        task="binary task: predict whether a loan applicant defaults within two years; add a correction to the "
             "frozen legacy model's margin (log-odds) inside one hard region",
        objective="binary:logistic", metric_name="auc", region_rule="age > 50 and income <= 3000", region=region,
        features=CREDIT_FEATURES, current=current, current_params=dict(current_params or {}),
        current_metric=0.7123, feature_stats=_stats(rng, CREDIT_FEATURES, spec),
        instances=_rows(rng, CREDIT_FEATURES, spec),
        positive=("w0 * log(debt_ratio): valid AUC 0.7091 -> 0.7123",),
        negative=("adding a constant offset: AUC unchanged",), feedback=feedback, iteration=iteration, seed=seed,
        extra={"reserved": ("t_age", "t_income")})


def heart_context(seed: int = 0, iteration: int = 0):
    """Heart disease, region ``max_heart_rate <= 140``, constant current expert ``c0``."""
    rng = np.random.default_rng(100 + seed)
    spec = {"age": (29, 77), "resting_bp": (94, 200), "cholesterol": (126, 564), "max_heart_rate": (71, 140),
            "st_depression": (0, 6.2)}
    region = make("le", Feature("max_heart_rate"), Const(140.0))
    return ProposalContext(
        task="binary task: predict heart disease from clinical measurements; add a correction to the frozen "
             "legacy model's margin (log-odds) inside one hard region",
        objective="binary:logistic", metric_name="auc", region_rule="max_heart_rate <= 140", region=region,
        features=HEART_FEATURES, current=Param("c0"), current_params={"c0": 0.12}, current_metric=0.8312,
        feature_stats=_stats(rng, HEART_FEATURES, spec), instances=_rows(rng, HEART_FEATURES, spec),
        iteration=iteration, seed=seed)


def housing_context(seed: int = 0, iteration: int = 0):
    """House prices (regression), region ``rooms > 6``, no current correction yet."""
    rng = np.random.default_rng(200 + seed)
    features = ("rooms", "age", "distance", "tax", "lstat")
    spec = {"rooms": (6, 9), "age": (2, 100), "distance": (1, 12), "tax": (187, 711), "lstat": (1.7, 38)}
    return ProposalContext(
        task="regression task: predict the median house value (in $1000s); add a correction to the frozen legacy "
             "model's prediction inside one hard region",
        objective="reg:squarederror", metric_name="rmse", region_rule="rooms > 6",
        region=make("gt", Feature("rooms"), Const(6.0)), features=features, current=Const(0.0), current_params={},
        current_metric=3.41, feature_stats=_stats(rng, features, spec),
        instances=_rows(rng, features, spec, kinds=("under-predicted", "over-predicted")), iteration=iteration,
        seed=seed)


ALL_CONTEXTS = {"credit": credit_context, "heart": heart_context, "housing": housing_context}
