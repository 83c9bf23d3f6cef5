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
    if model.format in ("xgboost_json", "xgboost_ubjson"):
        import xgboost as xgb

        # the bytes the frontend read (JSON or UBJSON: xgboost tells them apart), not the file again
        booster = xgb.Booster(model_file=bytearray(model.source) if model.source else str(model.path))
        # table columns may be named differently from the model's features (positional
        # mapping); categorical features arrive as integer codes, typed "c" here
        booster.feature_names = None
        booster.feature_types = None
        types = list(model.feature_types) if model.feature_types and "c" in model.feature_types else None
        dm = xgb.DMatrix(X.to_numpy(dtype=np.float64), missing=np.nan, feature_types=types,
                         enable_categorical=types is not None)
        out = booster.predict(dm, output_margin=True)
        return np.asarray(out, dtype=np.float64)
    if model.format == "lightgbm":
        import lightgbm as lgb

        booster = (lgb.Booster(model_str=model.source.decode("utf-8")) if model.source
                   else lgb.Booster(model_file=str(model.path)))
        out = booster.predict(X.to_numpy(dtype=np.float64), raw_score=True)
        return np.asarray(out, dtype=np.float64)
    raise UserError(f"no reference predictor for model format {model.format!r}")
