"""Helpers for the tree-lowering tests (tests/test_trees_*.py): small models trained
in the test on generated data, and the rows that probe the decision path."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# Values every split must handle exactly like XGBoost.
SPECIAL = np.array([np.nan, np.inf, -np.inf, 1e38, -1e38, 0.0, -0.0], dtype=np.float32)


def make_xy(n: int, n_feature: int, seed: int, *, nan_frac: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """float32 features with some NaN and a target with interactions."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_feature)).astype(np.float32)
    y = X[:, 0] * X[:, 1] + np.sin(2 * X[:, 2]) + (X[:, 3] > 0.3)
    X[rng.random(X.shape) < nan_frac] = np.nan
    return X, y.astype(np.float32)


def thresholds_by_feature(model_json: Path, n_feature: int) -> list[np.ndarray]:
    """Every numerical split threshold of an XGBoost JSON model, per feature (float32)."""
    trees = json.loads(Path(model_json).read_text())["learner"]["gradient_booster"]["model"]["trees"]
    found: list[list[float]] = [[] for _ in range(n_feature)]
    for tree in trees:
        split_type = tree.get("split_type", [0] * len(tree["split_indices"]))
        for node, left in enumerate(tree["left_children"]):
            if left != -1 and split_type[node] == 0:
                found[tree["split_indices"][node]].append(tree["split_conditions"][node])
    return [np.unique(np.asarray(v, dtype=np.float32)) for v in found]


def edge_values(thresholds: np.ndarray) -> np.ndarray:
    """Each threshold, the float32 just below and just above it, and the special values."""
    t = thresholds.astype(np.float32)
    below = np.nextafter(t, np.float32(-np.inf), dtype=np.float32)
    above = np.nextafter(t, np.float32(np.inf), dtype=np.float32)
    return np.concatenate([t, below, above, SPECIAL]).astype(np.float32)


def edge_matrix(thresholds: list[np.ndarray], n_rows: int, seed: int) -> np.ndarray:
    """Rows whose every value is a threshold, a neighbouring ulp or a special value."""
    rng = np.random.default_rng(seed)
    cols = []
    for t in thresholds:
        pool = edge_values(t) if t.size else SPECIAL
        cols.append(rng.choice(pool, size=n_rows))
    return np.column_stack(cols).astype(np.float32)
