"""Residual-guided region identification (seed 004 §4.1).

A shallow CART tree is fitted to the legacy model's absolute residuals on the train
split (by default their excess over what the legacy model itself expects, see
``SearchOptions.region_target``); each leaf is a candidate region, its root-to-leaf path a conjunction of
threshold tests.  A leaf's priority score is its *excess error*,
``C = Σ_{i ∈ leaf} (|r_i| − mean|r|)``: it grows with both the leaf's error level and
its coverage, so a large leaf of slightly-worse rows competes with a small leaf of very
bad rows.  Leaves with ``C > 0`` are hard regions; the ``n_regions`` best are kept.
Leaves are disjoint, so chains do not interfere.

Region membership is *defined by the IR predicate*, never by the fitted tree: every
later stage (chains, aggregator, emitted code, runtime) evaluates the same predicate.

Missing values: CART sees NaN replaced by a value below the column's minimum, so a NaN
always follows the ``<=`` branch; the predicate states that explicitly
(``x <= t or isnan(x)``) for features that had missing values in the train split.
Thresholds are written as parameters (``@t_1`` …) with their CART values, so the first
inner loop of a chain may move them (boundary refinement, seed 004 §4.2).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeRegressor

from ..ir import Binary, Expr, Feature, Param, Unary, bind, to_math
from ..llm.base import ParamRange


@dataclass(frozen=True)
class Region:
    """One hard region: a predicate with threshold parameters and their CART values.

    Attributes
    ----------
    index : 1-based rank by priority score.
    predicate : IR boolean expression; thresholds are parameters ``t_1`` … .
    thresholds : CART value of each threshold parameter.
    ranges : how far boundary refinement may move each threshold.
    score : excess absolute residual of the leaf (the priority ``C``).
    n_train : train rows in the leaf.
    mean_abs_residual : mean |residual| of the leaf's train rows.
    """

    index: int
    predicate: Expr
    thresholds: dict[str, float]
    ranges: dict[str, ParamRange] = field(default_factory=dict)
    score: float = 0.0
    n_train: int = 0
    mean_abs_residual: float = 0.0

    def bound(self, values: dict[str, float] | None = None) -> Expr:
        """The predicate with thresholds bound (to ``values`` where given, else CART's)."""
        return bind(self.predicate, {**self.thresholds, **(values or {})})

    def rule(self, values: dict[str, float] | None = None) -> str:
        """Readable rule text, e.g. ``x3 > 0.7 and x5 <= 0.2``."""
        return rule_text(self.bound(values))


def rule_text(predicate: Expr) -> str:
    return to_math(predicate, digits=6)


def _path_conditions(tree, leaf: int) -> list[tuple[int, str, float]]:
    """(feature index, "le"/"gt", threshold) for each test from the root to ``leaf``."""
    parent = {}
    for node in range(tree.node_count):
        for child, side in ((tree.children_left[node], "le"), (tree.children_right[node], "gt")):
            if child != -1:
                parent[child] = (node, side)
    conds = []
    node = leaf
    while node in parent:
        up, side = parent[node]
        conds.append((int(tree.feature[up]), side, float(tree.threshold[up])))
        node = up
    return conds[::-1]


def _tightest(conds: list[tuple[int, str, float]]) -> list[tuple[int, str, float]]:
    """Merge repeated tests of one feature in one direction into the tightest one, in first-use order."""
    best: dict[tuple[int, str], float] = {}
    for f, side, t in conds:
        key = (f, side)
        if key not in best:
            best[key] = t
        else:
            best[key] = min(best[key], t) if side == "le" else max(best[key], t)
    return [(f, side, best[(f, side)]) for (f, side) in best]


def find_regions(X: pd.DataFrame, target: np.ndarray, *, n_regions: int, depth: int,
                 min_leaf: int, refine_width: float, seed: int) -> list[Region]:
    """Hard regions of the legacy model on the train rows ``X`` (see the module docstring).

    ``target`` is the per-row error measure the tree fits (|residual|, or its excess over
    what the legacy model expects; see ``SearchOptions.region_target``).
    """
    abs_residual = np.asarray(target, dtype=np.float64)
    values = X.to_numpy(dtype=np.float64)
    has_nan = np.isnan(values).any(axis=0)
    filled = values.copy()
    for j in np.flatnonzero(has_nan):
        col = values[:, j]
        present = col[~np.isnan(col)]
        low = float(present.min()) if present.size else 0.0
        filled[np.isnan(col), j] = low - 1.0 - abs(low)  # below every value: NaN goes to "<="
    tree = DecisionTreeRegressor(max_depth=depth, min_samples_leaf=min_leaf, random_state=seed)
    tree.fit(filled, abs_residual)
    leaf_of = tree.apply(filled)
    mean_all = float(abs_residual.mean())
    std = np.nanstd(values, axis=0)

    candidates = []
    for leaf in np.unique(leaf_of):
        rows = leaf_of == leaf
        excess = float(np.sum(abs_residual[rows] - mean_all))
        if excess > 0 and rows.sum() >= min_leaf:
            candidates.append((excess, int(leaf), int(rows.sum()), float(abs_residual[rows].mean())))
    candidates.sort(key=lambda c: (-c[0], c[1]))

    regions = []
    for rank, (excess, leaf, n, mean_abs) in enumerate(candidates[:n_regions], start=1):
        conds = _tightest(_path_conditions(tree.tree_, leaf))
        if not conds:  # a tree with a single leaf: no region worth an expert
            continue
        terms: list[Expr] = []
        thresholds: dict[str, float] = {}
        ranges: dict[str, ParamRange] = {}
        for i, (j, side, t) in enumerate(conds, start=1):
            name = f"t_{i}"
            # float32-exact CART thresholds print long; 9 significant digits keep the split
            t = float(np.float64(f"{t:.9g}"))
            thresholds[name] = t
            width = refine_width * float(std[j]) if np.isfinite(std[j]) and std[j] > 0 else 0.0
            if width > 0:
                ranges[name] = ParamRange(t - width, t + width, init=t)
            x, p = Feature(str(X.columns[j])), Param(name)
            if side == "le":
                test: Expr = Binary("le", x, p)
                if has_nan[j]:
                    test = Binary("or", test, Unary("isnan", x))
            else:
                test = Binary("gt", x, p)
            terms.append(test)
        pred = terms[0]
        for t in terms[1:]:
            pred = Binary("and", pred, t)
        regions.append(Region(rank, pred, thresholds, ranges, round(excess, 6), n, round(mean_abs, 6)))
    return regions
