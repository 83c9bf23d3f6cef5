"""Deterministic train / valid / holdout splits (stratified for binary targets).

All choices are made on train and valid; holdout is touched once, by the safety gate.
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError

DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)


def make_splits(y: np.ndarray, *, task: str, seed: int, fractions=DEFAULT_FRACTIONS) -> dict[str, np.ndarray]:
    """Row indices for ``train``, ``valid`` and ``holdout``, sorted, disjoint, covering every row."""
    n = len(y)
    if n < 30:
        raise UserError(f"the table has {n} rows; the search needs at least 30 (use --search none to only compile)")
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == v) for v in np.unique(y)] if task == "binary" else [np.arange(n)]
    if task == "binary" and min(len(g) for g in groups) < 5:
        raise UserError("the target has fewer than 5 rows of one class; the search cannot validate anything")
    parts: dict[str, list[np.ndarray]] = {"train": [], "valid": [], "holdout": []}
    for g in groups:
        g = rng.permutation(g)
        a = int(round(fractions[0] * len(g)))
        b = a + int(round(fractions[1] * len(g)))
        parts["train"].append(g[:a])
        parts["valid"].append(g[a:b])
        parts["holdout"].append(g[b:])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}
