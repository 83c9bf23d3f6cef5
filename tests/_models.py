"""Small legacy models trained inside tests (fixed seeds, a few trees, seconds)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def make_table(n: int = 600, n_features: int = 6, seed: int = 0, task: str = "binary", nan_frac: float = 0.05) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    logit = 1.2 * X[:, 0] - 0.8 * X[:, 1] + 0.5 * X[:, 2] * X[:, 3]
    X[rng.random(X.shape) < nan_frac] = np.nan
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(n_features)])
    if task == "binary":
        df["y"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    else:
        df["y"] = logit + rng.normal(scale=0.3, size=n)
    return df


def train_xgb(df: pd.DataFrame, path: Path, *, objective: str = "binary:logistic", rounds: int = 20, depth: int = 3,
              seed: int = 0) -> Path:
    import xgboost as xgb

    feats = [c for c in df.columns if c != "y"]
    booster = xgb.train({"objective": objective, "max_depth": depth, "eta": 0.3, "seed": seed, "nthread": 1},
                        xgb.DMatrix(df[feats], label=df["y"]), num_boost_round=rounds)
    booster.save_model(path)
    return path
