"""Lower a tree ensemble (the forest IR) to one ONNX graph (``ai.onnx.ml`` ``TreeEnsemble``, opset 5).

What ends up in the bundle, under ``out_dir/trees/``: ``{name}.onnx``, a graph with one
input ``X`` (``[N, num_feature]``, NaN = missing) and one output ``margin`` (``[N]`` for
one output column, ``[N, num_class]`` otherwise): the raw sum of the leaves plus the
base score, before the output transform.  The runtime applies the transform.

The graph, for a model with categorical splits on features ``c1, c2, ...``::

    X ── (LightGBM: |x| <= 1e-35f -> 0) ──┬────────────────────────────┐
                                          └─ Gather c1,c2,.. ─ code ── Concat ── TreeEnsemble ── margin

How each split is lowered, so that every row takes the branch the model's own library
takes (the rules the C engine, ``templates/c/engine.c.j2``, follows and the model zoo
tests check against XGBoost and LightGBM):

* Numerical split "left when ``x OP t``" (XGBoost ``<``, LightGBM ``<=``): mode
  ``BRANCH_LT``/``BRANCH_LEQ``/... with the true branch on the left; a NaN goes to the
  true branch when the node's default is left (``nodes_missing_value_tracks_true``).
  Thresholds keep the model's type: float32 for XGBoost (which compares float32 values
  with float32 thresholds), float64 for LightGBM, whose graph then takes float64 input
  exactly as LightGBM and the C runtime read it.  A float64-threshold model may also be
  lowered for float32 input (``input_type="float32"``): each threshold becomes the
  float32 that gives the same decision for *every* float32 value (``x <= t`` ⇔
  ``x <= ⌊t⌋₃₂``, the largest float32 not above ``t``; ``x < t`` ⇔ ``x < ⌈t⌉₃₂``;
  ``>`` and ``>=`` alike), so the path is still exact; only the leaf sums are float32.
* Categorical split: ``BRANCH_MEMBER`` on the listed categories, true branch on the side
  the listed categories go (right for XGBoost, left for LightGBM).  Like treelite and
  the C engine, a value's category is the value truncated to an integer, and negative
  values or values above 2^24 match no category; the graph computes that "code" column
  once per categorical feature (``floor(x)``, or -1, which is in no set) and the splits
  test it, so 2.7 tests category 2 and -0.5 or 1e30 fall on the unlisted side.
* LightGBM reads ``|x| <= 1e-35`` as an exact zero (``kZeroThreshold``); the graph does
  the same before any split.

Leaves accumulate in the input type (onnxruntime sums float32 leaves in float32 and
float64 in float64), tree by tree in model order, starting from the base score (one
single-leaf tree per output column placed first), which is XGBoost's own order: with
one onnxruntime thread per call the margins equal XGBoost's bit for bit (the runtime
splits batches over its own threads for that reason; onnxruntime's tree-parallel
modes re-associate the sum).

The ``.onnx`` bytes depend only on the model file and fecc's version: no timestamps,
random ids or paths; the producer is ``fecc``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import UserError
from ..forest import CATEGORICAL, LEAF, NUMERICAL, Forest
from .trees import check_name

__all__ = ["lower_onnx", "tree_model", "tree_nodes", "ONNX_OPSET", "ONNX_ML_OPSET", "onnx_threshold"]

#: Opsets of the emitted graph: ``ai.onnx.ml`` 5 has ``TreeEnsemble`` with set
#: membership and per-node missing-value tracking (onnxruntime >= 1.21); the default
#: domain opset and IR version are the ones that came with it (onnx 1.16).
ONNX_OPSET = 21
ONNX_ML_OPSET = 5
IR_VERSION = 10

# TreeEnsemble's nodes_modes (onnx/defs/traditionalml/defs.cc)
_BRANCH_LEQ, _BRANCH_LT, _BRANCH_GTE, _BRANCH_GT, _BRANCH_MEMBER = 0, 1, 2, 3, 6
_MODE = {"<=": _BRANCH_LEQ, "<": _BRANCH_LT, ">=": _BRANCH_GTE, ">": _BRANCH_GT}
#: The largest category a value can stand for (treelite: larger values match nothing).
MAX_CATEGORY = 1 << 24
#: The code of a value that is no category (negative or above MAX_CATEGORY); no set lists it.
_NO_CATEGORY = -1.0
#: The set of a categorical split that lists no category: a value no code takes.
_EMPTY_SET = -2.0
#: LightGBM's kZeroThreshold, as it compares it (``(double)1e-35f``).
_LGBM_ZERO = float(np.float32(1e-35))


def onnx_threshold(threshold: float, cmp: str) -> np.float32:
    """The float32 threshold that makes ``x cmp t32`` equal ``x cmp threshold`` for every
    float32 ``x`` (``threshold`` a float64): round down for ``<=`` and ``>``, up for ``<``
    and ``>=``.  Exact float32 thresholds are kept as they are."""
    t64 = np.float64(threshold)
    with np.errstate(over="ignore"):  # beyond float32's range: ±inf, or one step back to ±FLT_MAX
        t32 = np.float32(t64)
        if np.isnan(t64) or np.float64(t32) == t64:
            return t32
        down = cmp in ("<=", ">")
        if (np.float64(t32) > t64) == down:  # rounded the wrong way: one float32 step back
            t32 = np.nextafter(t32, np.float32(-np.inf if down else np.inf))
    return t32


def lower_onnx(forest: Forest, out_dir: Path, *, name: str = "legacy", input_type: str | None = None) -> dict[str, Any]:
    """Lower a forest to ``out_dir/trees/{name}.onnx`` and describe it for the manifest.

    Parameters
    ----------
    forest : Forest
        The ensemble (:func:`fecc.frontend.load_forest`).
    out_dir : Path
        The bundle directory; the graph goes to ``out_dir/trees/`` (created if needed).
    name : str
        Stem of the file; letters, digits and ``_``.
    input_type : ``"float32"``, ``"float64"`` or None
        The graph's input (and accumulation) type.  None: the model's threshold type
        (float32 for XGBoost, float64 for LightGBM), exact for every input the C
        runtime accepts.  ``"float32"`` for a LightGBM model rounds each threshold to
        the float32 that keeps every float32 input's decision (see the module doc).

    Returns
    -------
    dict
        The manifest entry: ``engine`` (``"onnx"``), ``name``, ``model_format``,
        ``model_sha256``, ``onnx`` (path relative to ``out_dir``), ``onnx_sha256``,
        ``input``/``output`` (tensor names), ``opset``, ``num_feature``, ``num_class``,
        ``num_tree``, ``num_node``, ``postprocess``, ``sigmoid_alpha``, ``base_score``,
        ``threshold_type``, ``feature_type`` (the input type), ``leaf_type`` (the
        accumulation type), ``has_categorical``, ``categories``, ``compiler``.

    Raises
    ------
    UserError
        The forest uses something the lowering does not support, or the ``onnx``
        package is missing.
    """
    out_dir = Path(out_dir)
    check_name(name)
    if input_type not in (None, "float32", "float64"):
        raise UserError(f"ONNX input type must be 'float32' or 'float64', got {input_type!r}")
    onnx = _import_onnx()
    import treelite

    threshold_type = forest.threshold_type
    if input_type is None:
        input_type = threshold_type
    if input_type == "float64" and threshold_type == "float32":
        raise UserError(f"{forest.origin}: the model compares float32 values; its ONNX graph takes float32 input")
    dtype = np.dtype(np.float32 if input_type == "float32" else np.float64)
    graph = _build_graph(onnx, forest, dtype, name=name,
                         doc=f"fecc {__version__}: {forest.source_format} model sha256 {forest.sha256}")
    onnx.checker.check_model(graph)
    data = graph.SerializeToString(deterministic=True)

    trees_dir = out_dir / "trees"
    trees_dir.mkdir(parents=True, exist_ok=True)
    (trees_dir / f"{name}.onnx").write_bytes(data)
    return {
        "engine": "onnx",
        "name": name,
        "model_format": forest.source_format,
        "model_sha256": forest.sha256,
        "onnx": f"trees/{name}.onnx",
        "onnx_sha256": hashlib.sha256(data).hexdigest(),
        "input": "X",
        "output": "margin",
        "opset": {"ai.onnx": ONNX_OPSET, "ai.onnx.ml": ONNX_ML_OPSET},
        "num_feature": forest.num_feature,
        "num_class": forest.num_class,
        "num_tree": forest.num_tree,
        "num_node": forest.num_node,
        "postprocess": forest.postprocess,
        "sigmoid_alpha": forest.sigmoid_alpha,
        "base_score": [float(b) for b in forest.base_margin],
        "threshold_type": threshold_type,
        "feature_type": input_type,
        "leaf_type": input_type,
        "has_categorical": forest.has_categorical,
        "categories": {k: list(v) for k, v in forest.categories.items()},
        "compiler": {"onnx": onnx.__version__, "treelite": treelite.__version__},
    }


def _import_onnx() -> Any:
    """The onnx package; onnxruntime must be there too (the bundle is verified through it)."""
    try:
        import onnx
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise UserError(f"the ONNX tree target needs onnx and onnxruntime ({exc.name} is missing): "
                        "pip install 'fecc[onnx]'") from None
    return onnx


def tree_model(forest: Forest, *, input_type: str = "float32", name: str = "legacy", doc: str = "") -> Any:
    """The ``onnx.ModelProto`` :func:`lower_onnx` writes, without writing it (goldens, inspection)."""
    return _build_graph(_import_onnx(), forest, np.dtype(input_type), name=name, doc=doc)


def _build_graph(onnx: Any, forest: Forest, dtype: np.dtype, *, name: str, doc: str) -> Any:
    """The ONNX model: input preprocessing, one TreeEnsemble node, the output shape."""
    from onnx import TensorProto, helper

    num_feature, num_class = forest.num_feature, forest.num_class
    nodes, inits = tree_nodes(forest, dtype)
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    out_shape = ["N"] if num_class == 1 else ["N", num_class]
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("X", elem, ["N", num_feature])],
        [helper.make_tensor_value_info("margin", elem, out_shape)], initializer=inits,
    )
    model = helper.make_model(
        graph, producer_name="fecc", producer_version=__version__, doc_string=doc,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET), helper.make_opsetid("ai.onnx.ml", ONNX_ML_OPSET)],
    )
    model.ir_version = IR_VERSION
    return model


def tree_nodes(forest: Forest, dtype: np.dtype, *, x: str = "X", prefix: str = "",
               out: str = "margin") -> tuple[list, list]:
    """The nodes and initializers that turn input ``x`` into the forest's margin ``out``.

    ``out`` is ``[N]`` for one output column, else ``[N, num_class]``, in ``dtype``;
    every other value, node and initializer name starts with ``prefix``, so several
    ensembles fit in one graph.
    """
    from onnx import helper, numpy_helper

    p = prefix

    num_feature, num_class = forest.num_feature, forest.num_class
    class_id = np.asarray(forest.tree_class, dtype=np.int64)
    base = forest.base_margin
    # columns holding category codes: one per feature that any categorical split tests
    cat_feats = sorted({int(f.feature[i]) for f in forest.trees for i in np.flatnonzero(f.node_type == CATEGORICAL)})
    cat_column = {feat: num_feature + j for j, feat in enumerate(cat_feats)}

    modes: list[int] = []
    feats: list[int] = []
    splits: list[float] = []
    true_ids: list[int] = []
    true_leaf: list[int] = []
    false_ids: list[int] = []
    false_leaf: list[int] = []
    missing_true: list[int] = []
    members: list[float] = []
    leaf_target: list[int] = []
    leaf_weight: list[float] = []
    roots: list[int] = []

    def constant_tree(value: float, target: int) -> None:
        # TreeEnsemble has no single-leaf trees: a split whose two branches are one leaf
        roots.append(len(modes))
        modes.append(_BRANCH_LEQ)
        feats.append(0)
        splits.append(0.0)
        true_ids.append(len(leaf_weight))
        false_ids.append(len(leaf_weight))
        true_leaf.append(1)
        false_leaf.append(1)
        missing_true.append(0)
        leaf_target.append(target)
        leaf_weight.append(value)

    # the base score first, so that the sum runs in XGBoost's order
    for k in range(num_class):
        if base[k] != 0:
            constant_tree(float(base[k]), k)
    for t, f in enumerate(forest.trees):
        target = int(class_id[t])
        ntype = f.node_type
        if ntype[0] == LEAF:
            constant_tree(float(f.leaf_value[0]), target)
            continue
        inner = np.flatnonzero(ntype != LEAF)
        leaves = np.flatnonzero(ntype == LEAF)
        node_id = np.full(len(ntype), -1, dtype=np.int64)
        node_id[inner] = len(modes) + np.arange(len(inner))
        node_id[leaves] = len(leaf_weight) + np.arange(len(leaves))
        roots.append(int(node_id[0]))
        for i in inner:
            left, right = int(f.left[i]), int(f.right[i])
            default_left = bool(f.default_left[i])
            if ntype[i] == NUMERICAL:
                op = str(f.cmp[i])
                thr = f.threshold[i]
                modes.append(_MODE[op])
                feats.append(int(f.feature[i]))
                splits.append(float(onnx_threshold(thr, op)) if dtype == np.float32 else float(thr))
                on_true, on_false, missing = left, right, default_left
            else:
                cats = np.asarray(f.categories(i), dtype=np.int64)
                cats = np.unique(cats[(cats >= 0) & (cats <= MAX_CATEGORY)])
                modes.append(_BRANCH_MEMBER)
                feats.append(cat_column[int(f.feature[i])])
                splits.append(0.0)
                members.extend(cats.astype(np.float64).tolist() if cats.size else [_EMPTY_SET])
                members.append(float("nan"))
                if bool(f.cats_right[i]):
                    on_true, on_false, missing = right, left, not default_left
                else:
                    on_true, on_false, missing = left, right, default_left
            true_ids.append(int(node_id[on_true]))
            true_leaf.append(int(ntype[on_true] == LEAF))
            false_ids.append(int(node_id[on_false]))
            false_leaf.append(int(ntype[on_false] == LEAF))
            missing_true.append(int(missing))
        leaf_target.extend([target] * len(leaves))
        leaf_weight.extend(f.leaf_value[leaves].astype(np.float64).tolist())

    def tensor(values, np_dtype, tname):
        return numpy_helper.from_array(np.asarray(values, dtype=np_dtype), tname)

    nodes = []
    inits = []
    if forest.zero_threshold:
        # LightGBM reads |x| <= kZeroThreshold as 0 (NaN stays NaN: the comparison is false)
        inits += [tensor(_LGBM_ZERO, dtype, p + "zero_threshold"), tensor(0.0, dtype, p + "zero")]
        nodes += [
            helper.make_node("Abs", [x], [p + "x_abs"], name=p + "x_abs"),
            helper.make_node("LessOrEqual", [p + "x_abs", p + "zero_threshold"], [p + "x_is_zero"], name=p + "x_is_zero"),
            helper.make_node("Where", [p + "x_is_zero", p + "zero", x], [p + "x_read"], name=p + "x_read"),
        ]
        x = p + "x_read"
    if cat_feats:
        # category code: floor(x) for 0 <= x <= 2^24 (abs() turns -0.0 into 0.0), else -1; NaN stays NaN.
        # floor alone would already miss every set for the others (sets hold 0..2^24); the
        # explicit -1 keeps the membership tests on small integers whatever onnxruntime does
        # with them inside (it may roll EQ chains into bitsets).
        inits += [tensor(cat_feats, np.int64, p + "cat_features"), tensor(0.0, dtype, p + "zero_c"),
                  tensor(float(MAX_CATEGORY), dtype, p + "max_category"), tensor(_NO_CATEGORY, dtype, p + "no_category")]
        nodes += [
            helper.make_node("Gather", [x, p + "cat_features"], [p + "cat_x"], name=p + "cat_x", axis=1),
            helper.make_node("Less", [p + "cat_x", p + "zero_c"], [p + "cat_neg"], name=p + "cat_neg"),
            helper.make_node("Greater", [p + "cat_x", p + "max_category"], [p + "cat_big"], name=p + "cat_big"),
            helper.make_node("Or", [p + "cat_neg", p + "cat_big"], [p + "cat_none"], name=p + "cat_none"),
            helper.make_node("Floor", [p + "cat_x"], [p + "cat_floor"], name=p + "cat_floor"),
            helper.make_node("Abs", [p + "cat_floor"], [p + "cat_int"], name=p + "cat_int"),
            helper.make_node("Where", [p + "cat_none", p + "no_category", p + "cat_int"], [p + "cat_code"], name=p + "cat_code"),
            helper.make_node("Concat", [x, p + "cat_code"], [p + "x_trees"], name=p + "x_trees", axis=1),
        ]
        x = p + "x_trees"
    attrs = dict(
        aggregate_function=1,  # SUM
        post_transform=0,      # NONE: the graph returns the margin
        n_targets=num_class,
        tree_roots=roots,
        nodes_modes=tensor(modes, np.uint8, "nodes_modes"),
        nodes_featureids=feats,
        nodes_splits=tensor(splits, dtype, "nodes_splits"),
        nodes_truenodeids=true_ids,
        nodes_trueleafs=true_leaf,
        nodes_falsenodeids=false_ids,
        nodes_falseleafs=false_leaf,
        nodes_missing_value_tracks_true=missing_true,
        leaf_targetids=leaf_target,
        leaf_weights=tensor(leaf_weight, dtype, "leaf_weights"),
    )
    if members:
        attrs["membership_values"] = tensor(members, dtype, "membership_values")
    margin = out if num_class > 1 else p + "margin_2d"
    nodes.append(helper.make_node("TreeEnsemble", [x], [margin], name=p + "trees", domain="ai.onnx.ml", **attrs))
    if num_class == 1:
        inits.append(tensor([1], np.int64, p + "squeeze_axes"))
        nodes.append(helper.make_node("Squeeze", [margin, p + "squeeze_axes"], [out], name=out))
    return nodes, inits


def describe(entry: dict[str, Any]) -> str:
    """One line about a lowered ensemble, for logs and the audit report."""
    return (f"{entry['name']}: {entry['num_tree']} trees, {entry['num_node']} nodes, "
            f"{entry['num_feature']} features, {entry['num_class']} outputs, {entry['postprocess']}, "
            f"ONNX ({entry['feature_type']} input)")
