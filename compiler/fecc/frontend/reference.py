"""Predictions of the legacy model by the library that produced it.

These are the ground truth every compiled backend is checked against (parity vectors
in the bundle, compile-time checks).  Only the compiler imports xgboost/lightgbm;
the runtime never does.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import UserError
from .models import LegacyModel


def reference_margin(model: LegacyModel, X: pd.DataFrame) -> np.ndarray:
    """Raw margins (before the link) of ``model`` on ``X`` (model feature order).

    Returns shape ``(n,)`` for binary/regression and ``(n, num_class)`` for multiclass.
    """
    if model.format == "xgboost_json":
        import xgboost as xgb

        booster = xgb.Booster(model_file=str(model.path))
        # feature names of the table may differ from the model's (positional mapping)
        booster.feature_names = None
        booster.feature_types = None
        data = X.copy()
        data.columns = [f"f{i}" for i in range(X.shape[1])]
        cat = any(isinstance(t, pd.CategoricalDtype) for t in data.dtypes)
        dm = xgb.DMatrix(data, missing=np.nan, enable_categorical=cat)
        out = booster.predict(dm, output_margin=True)
        return np.asarray(out, dtype=np.float64)
    if model.format == "lightgbm":
        import lightgbm as lgb

        booster = lgb.Booster(model_file=str(model.path))
        out = booster.predict(X.to_numpy(dtype=np.float64), raw_score=True)
        return np.asarray(out, dtype=np.float64)
    raise UserError(f"no reference predictor for model format {model.format!r}")
