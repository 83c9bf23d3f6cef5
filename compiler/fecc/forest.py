"""The forest IR: one frozen description of a tree ensemble, built once by the frontend.

:func:`fecc.frontend.load_forest` reads a legacy model (XGBoost JSON/UBJSON, LightGBM
``model.txt``) or the search's aggregator into a :class:`Forest`; every tree lowering
(the C engine and its node arrays, tl2cgen's if/else code, the ONNX graphs) takes that
object and nothing else, so the model file is read once per compile and the base
score, the category encoder and the output transform are worked out in one place.

Nodes keep the numbering of the reader (treelite numbers each tree breadth-first from
its root, left child first) and their native precision: float32 thresholds and leaves
for XGBoost, which compares float32 features against float32 thresholds, float64 for
LightGBM.  A split sends a row left when ``x <cmp> threshold`` holds, right otherwise,
and a missing value (NaN) the way ``default_left`` says; a categorical split tests
whether the value's category (the value truncated to an integer) is listed, and sends
listed categories right when ``cats_right`` is set (XGBoost), left otherwise (LightGBM).

This module imports numpy only: ``lower/`` sees the forest, never the frontend.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

__all__ = ["Forest", "Tree", "LEAF", "NUMERICAL", "CATEGORICAL", "COMPARISONS"]

#: Node kinds (``Tree.node_type``), treelite's numbering.
LEAF, NUMERICAL, CATEGORICAL = 0, 1, 2
#: The comparisons a numerical split may use.
COMPARISONS = ("<", "<=", ">", ">=")


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Tree:
    """One tree; every array has one entry per node (index 0 is the root).

    Attributes
    ----------
    node_type : int8, :data:`LEAF`, :data:`NUMERICAL` or :data:`CATEGORICAL`.
    left, right : int32 child indices (-1 for a leaf).
    feature : int32 feature index a split tests (0 for a leaf).
    threshold : a numerical split's threshold, in the forest's ``threshold_type``.
    cmp : the comparison of a numerical split (one of :data:`COMPARISONS`, ``""`` elsewhere).
    default_left : where a missing value goes.
    leaf_value : a leaf's value, in the forest's ``leaf_type`` (0 for splits).
    cat_begin, cat_end : the slice of ``cat_list`` a categorical split lists.
    cat_list : the listed categories of every categorical split, concatenated.
    cats_right : whether a categorical split sends its listed categories right.
    weight : training rows (LightGBM) or hessian sum (XGBoost cover) per node; ones
        when the model records neither (used only to describe the trees' shape).
    """

    node_type: np.ndarray
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    cmp: np.ndarray
    default_left: np.ndarray
    leaf_value: np.ndarray
    cat_begin: np.ndarray
    cat_end: np.ndarray
    cat_list: np.ndarray
    cats_right: np.ndarray
    weight: np.ndarray

    def __post_init__(self):
        n = len(self.node_type)
        for name in ("node_type", "left", "right", "feature", "threshold", "cmp", "default_left", "leaf_value",
                     "cat_begin", "cat_end", "cats_right", "weight"):
            value = getattr(self, name)
            if len(value) != n:
                raise ValueError(f"Tree.{name} has {len(value)} entries for {n} nodes")
            object.__setattr__(self, name, _frozen(value))
        object.__setattr__(self, "cat_list", _frozen(self.cat_list))

    @property
    def num_node(self) -> int:
        return len(self.node_type)

    def categories(self, node: int) -> np.ndarray:
        """The categories split ``node`` lists."""
        return self.cat_list[self.cat_begin[node]:self.cat_end[node]]


@dataclass(frozen=True, eq=False)
class Forest:
    """A tree ensemble as every lowering sees it.

    The margin of output column ``k`` is ``base_margin[k]`` plus the leaves of the trees
    with ``tree_class == k``, added in tree order; the output is ``postprocess`` of the
    margins (``link`` names the same in fecc's words).

    Attributes
    ----------
    origin : where the forest came from (the model file's path), for messages.
    source_format : ``"xgboost_json"``, ``"xgboost_ubjson"`` or ``"lightgbm"``.
    sha256 : hex digest of the model file's bytes.
    num_feature, num_class : input columns, output columns (1 for binary and regression).
    trees : the trees, in model order.
    tree_class : int32, the output column of each tree.
    base_margin : the intercept per output column, in margin space and ``leaf_type``, exactly as
        the producing library adds it (XGBoost: its float32 arithmetic on ``base_score``).
    threshold_type, leaf_type : ``"float32"`` or ``"float64"``.
    postprocess : the output transform, by treelite's name (``"sigmoid"``, ``"softmax"``,
        ``"identity"``, ``"exponential"``, ``"multiclass_ova"`` ...); ``sigmoid_alpha`` its scale.
    link : the same transform in fecc's words (:class:`fecc.frontend.LegacyModel`'s ``link``).
    feature_names, feature_types : as stored in the model (``None`` when it stored none).
    categories : the training categories of an XGBoost 3.1+ category encoder, ``{feature index (str):
        [category, ...]}`` in code order (the trees test codes; the manifest lists these values).
    zero_threshold : LightGBM reads ``|x| <= 1e-35`` as an exact zero before any split.
    treelite : the reader's model object, for tl2cgen's C code generator (not part of the IR).
    """

    origin: str
    source_format: str
    sha256: str
    num_feature: int
    num_class: int
    trees: tuple[Tree, ...]
    tree_class: np.ndarray
    base_margin: np.ndarray
    threshold_type: str
    leaf_type: str
    postprocess: str
    sigmoid_alpha: float
    link: str
    feature_names: tuple[str, ...] | None = None
    feature_types: tuple[str, ...] | None = None
    categories: Mapping[str, list] = field(default_factory=dict)
    zero_threshold: bool = False
    treelite: Any = field(default=None, repr=False)

    def __post_init__(self):
        for name in ("tree_class", "base_margin"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        if len(self.tree_class) != len(self.trees):
            raise ValueError(f"{len(self.tree_class)} tree classes for {len(self.trees)} trees")
        if len(self.base_margin) != self.num_class:
            raise ValueError(f"{len(self.base_margin)} base margins for {self.num_class} outputs")
        for name in ("threshold_type", "leaf_type"):
            if getattr(self, name) not in ("float32", "float64"):
                raise ValueError(f"Forest.{name} must be float32 or float64, got {getattr(self, name)!r}")

    @property
    def num_tree(self) -> int:
        return len(self.trees)

    @property
    def num_node(self) -> int:
        return sum(t.num_node for t in self.trees)

    @property
    def has_categorical(self) -> bool:
        return any(bool((t.node_type == CATEGORICAL).any()) for t in self.trees)

    def comparisons(self) -> set[str]:
        """The comparisons the numerical splits use."""
        return {str(c) for t in self.trees for c in np.unique(t.cmp[t.node_type == NUMERICAL])}
