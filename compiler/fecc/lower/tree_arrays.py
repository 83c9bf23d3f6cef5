"""The node arrays the C array engine walks, flattened from the forest IR, and the rules read from their shape.

:func:`flatten` turns a :class:`~fecc.forest.Forest` into the arrays written to
``trees/{name}.npz`` (one record per node, :func:`node_dtype`); the rules pick, from
the trees' shape alone (never a timing, so bundles stay deterministic), which code
scores one row (:func:`row_engine`), how the batch pass walks a block
(:func:`batch_shape`), and whether missing values fold into the block copy and the
shallow pass exists (:func:`can_fold_nan`, :func:`has_shallow_pass`).
"""
from __future__ import annotations

import io
import zipfile
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..forest import LEAF, NUMERICAL, Forest

__all__ = ["flatten", "node_dtype", "feat_bits", "row_engine", "batch_shape", "can_fold_nan", "has_shallow_pass",
           "write_npz", "BATCH_SHAPES", "STEP"]

#: How the batch engine walks a block of rows, per shape of the trees (see
#: :func:`_batch_shape`; measured in benchmarks/README.md): rows per block, trees
#: walked together per pass over it (their leaves are still added in model order),
#: and whether a pass stops as soon as every walk of the block stands on a leaf.
BATCH_SHAPES = {
    "even": {"block_rows": 64, "tree_group": 8, "stop_early": False},
    "uneven": {"block_rows": 32, "tree_group": 4, "stop_early": True},
}
#: Trees are "uneven" (LightGBM's leaf-wise trees) when the leaf a row reaches is on
#: average less deep than this fraction of the tree's depth, over the whole model.
UNEVEN_DEPTH = 0.8
#: Trees walked together for one row (``fecc_predict_one``).
ROW_GROUP = 8
#: One row goes through tl2cgen's if/else code instead of the node arrays when the
#: array walk may take more than this many times the steps the if/else code takes
#: (see :func:`_row_engine`).
ROW_IFELSE_STEPS = 3.0

#: Models with fewer nodes than this would score batches through tl2cgen's if/else
#: code (``batch_engine="ifelse"``).  0: never -- on the benchmark's small model
#: (100 trees, depth 6) the array engine was already faster than the if/else row loop
#: (0.66 s vs 0.79-1.4 s per 100k rows, loaded 2-core machine), so every model uses the
#: array engine.  A fixed rule, not a compile-time measurement, so the bundle is
#: deterministic; the runtime honours either value.
IFELSE_MAX_NODES = 0

# How the engine steps for each split comparison "go left when x OP thr" (see
# FECC_STEP in the template).  The step evaluates a non-strict comparison ("expr"),
# which gcc compiles to one flag-consuming add; it is false for NaN, so NaN and a
# leaf's NaN threshold take the "stay" way.  Hence the node's offset points to the
# child that a false comparison leads to ("child": left under "<", since x >= thr
# means right), a leaf has offset 0, and its default-left bit is the one under
# which a NaN feature also stays.  NaN folding (slot 0: missing goes right, slot 1:
# missing goes left) keeps the raw value in the slot whose default is the way NaN
# already goes, and an infinity that goes the other way against every threshold in
# the other slot.
_STEP = {
    "<": {"child": "left", "expr": "fv_ >= nd_->thr", "sign": "+",
          "slot0": "isnan(v) ? INFINITY : (v)", "slot1": "(v)"},
    ">": {"child": "left", "expr": "fv_ <= nd_->thr", "sign": "+",
          "slot0": "isnan(v) ? -INFINITY : (v)", "slot1": "(v)"},
    "<=": {"child": "right", "expr": "fv_ <= nd_->thr", "sign": "-",
           "slot0": "(v)", "slot1": "isnan(v) ? -INFINITY : (v)"},
    ">=": {"child": "right", "expr": "fv_ >= nd_->thr", "sign": "-",
           "slot0": "(v)", "slot1": "isnan(v) ? INFINITY : (v)"},
}
_INFO_DEFAULT_LEFT, _INFO_CATEGORICAL, _INFO_CATS_GO_RIGHT = 1, 2, 4
#: NaN folding stores each block of features twice on the stack; above this many
#: bytes the engine tests NaN per step instead.
NAN_FOLD_MAX_BYTES = 64 * 1024


def node_dtype(threshold_type: str) -> np.dtype:
    """The numpy layout of one node, matching ``fecc_node_t`` in the engine template.

    ``meta`` packs, from bit 0: default-left (1 bit), the feature index (``feat_bits``
    bits, see :func:`feat_bits`), categorical (1 bit), listed-categories-go-right
    (1 bit), and above that the offset from the node to one of its adjacent children,
    the left one for strict comparisons and the right one otherwise (the entry's
    ``node_child``), 0 for a leaf.
    """
    fields = [("thr", "<f4" if threshold_type == "float32" else "<f8"), ("meta", "<u4")]
    if threshold_type == "float64":
        fields.append(("pad", "<u4"))
    return np.dtype(fields, align=True)


def feat_bits(num_feature: int) -> int:
    """Bits of ``meta`` that hold the feature index (at least 1)."""
    return max(1, int(num_feature - 1).bit_length())


def _pack_nodes(thr: np.ndarray, feat: np.ndarray, left: np.ndarray, info: np.ndarray,
                num_feature: int, threshold_type: str, child: str, where: str) -> np.ndarray:
    """Pack per-node fields (``left`` global; a leaf's is itself) into :func:`node_dtype`
    records, with offsets to the ``child`` (``"left"`` or ``"right"``) child."""
    fb = feat_bits(num_feature)
    offset = left - np.arange(len(left), dtype=np.int64)
    if child == "right":
        offset = np.where(offset > 0, offset + 1, offset)  # a leaf's 0 stays 0
    if len(left) and (offset.min() < 0 or int(offset.max()) >= 1 << (29 - fb)):
        raise UserError(f"{where}: a tree is too large for the batch engine's node layout "
                        f"({num_feature} features leave {29 - fb} bits for child offsets)")
    if len(feat) and (feat.min() < 0 or feat.max() >= num_feature):
        raise UserError(f"{where}: a split uses a feature index outside 0..{num_feature - 1}")
    nodes = np.zeros(len(thr), dtype=node_dtype(threshold_type))
    nodes["thr"] = thr
    info = info.astype(np.uint64)
    nodes["meta"] = ((info & _INFO_DEFAULT_LEFT) | (feat.astype(np.uint64) << 1)
                     | (((info & _INFO_CATEGORICAL) != 0).astype(np.uint64) << (fb + 1))
                     | (((info & _INFO_CATS_GO_RIGHT) != 0).astype(np.uint64) << (fb + 2))
                     | (offset.astype(np.uint64) << (fb + 3))).astype(np.uint32)
    return nodes


def flatten(forest: Forest) -> dict[str, Any]:
    """The forest's node arrays as the engine walks them, and what the shape rules read.

    Nodes are renumbered breadth-first per tree so that the two children of a split
    are adjacent (right = left + 1); a leaf's child offset is 0 and its threshold NaN
    (and its default direction the one the engine's step takes for NaN, see
    ``_STEP``), so extra steps past it stay on it.  That lets the engine take exactly
    ``depth`` steps for every row without a branch on "is leaf".
    """
    where = forest.origin
    thr_dtype = np.dtype(forest.threshold_type)
    leaf_dtype = np.dtype(forest.leaf_type)
    ndt = np.dtype([("thr", thr_dtype), ("feat", "<i8"), ("left", "<i8"), ("info", "<i8")])

    nodes_out, leaf_out, roots, depths, weight_out = [], [], [], [], []
    cat_words: list[np.ndarray] = []
    cat_begin_out, cat_nwords_out = [], []
    n_cat_words = 0
    offset = 0
    for t, tree in enumerate(forest.trees):
        n = tree.num_node
        new_id = np.full(n, -1, dtype=np.int64)
        order = []  # old node ids in new order
        depth_of = np.zeros(n, dtype=np.int64)
        new_id[0] = 0
        order.append(0)
        queue = deque([0])
        while queue:
            old = queue.popleft()
            if tree.node_type[old] != LEAF:  # inner node: its children get two adjacent slots
                for child in (tree.left[old], tree.right[old]):
                    new_id[child] = len(order)
                    order.append(int(child))
                    depth_of[child] = depth_of[old] + 1
                    queue.append(int(child))
        if len(order) != n:
            raise UserError(f"{where}: tree {t} has unreachable nodes")
        nodes = np.zeros(n, dtype=ndt)
        leaf = np.zeros(n, dtype=leaf_dtype)
        cat_begin = np.zeros(n, dtype=np.int32)
        cat_nwords = np.zeros(n, dtype=np.int32)
        for new, old in enumerate(order):
            ntype = int(tree.node_type[old])
            if ntype == LEAF:
                nodes[new] = (np.nan, 0, offset + new, 0)
                leaf[new] = tree.leaf_value[old]
                continue
            info = _INFO_DEFAULT_LEFT if tree.default_left[old] else 0
            thr = 0.0
            if ntype == NUMERICAL:
                thr = tree.threshold[old]
            else:  # CATEGORICAL: the listed categories as a bitset
                info |= _INFO_CATEGORICAL
                if tree.cats_right[old]:
                    info |= _INFO_CATS_GO_RIGHT
                cats = np.asarray(tree.categories(old), dtype=np.int64)
                nwords = int(cats.max()) // 32 + 1 if cats.size else 0
                bits = np.zeros(nwords, dtype=np.uint32)
                for c in cats:
                    bits[c >> 5] |= np.uint32(1) << np.uint32(c & 31)
                cat_words.append(bits)
                cat_begin[new] = n_cat_words
                cat_nwords[new] = nwords
                n_cat_words += nwords
            left = offset + int(new_id[tree.left[old]])
            if int(new_id[tree.right[old]]) + offset != left + 1:
                raise AssertionError("breadth-first numbering must make children adjacent")
            nodes[new] = (thr, int(tree.feature[old]), left, info)
        nodes_out.append(nodes)
        leaf_out.append(leaf)
        weight_out.append(tree.weight[np.asarray(order, dtype=np.int64)])
        cat_begin_out.append(cat_begin)
        cat_nwords_out.append(cat_nwords)
        roots.append(offset)
        depths.append(int(depth_of.max()))
        offset += n
    cmps = forest.comparisons()
    cmp = cmps.pop() if cmps else "<"
    num_feature = forest.num_feature
    flat = np.concatenate(nodes_out)
    child = _STEP[cmp]["child"]
    if child == "left":  # a leaf's default-left bit: the one under which a NaN feature stays
        flat["info"][flat["left"] == np.arange(len(flat))] = _INFO_DEFAULT_LEFT
    arrays = {
        "nodes": _pack_nodes(flat["thr"], flat["feat"], flat["left"], flat["info"], num_feature,
                             forest.threshold_type, child, where),
        "leaf": np.concatenate(leaf_out),
        "tree_root": np.asarray(roots, dtype=np.int32),
        "tree_depth": np.asarray(depths, dtype=np.int32),
        "tree_class": np.asarray(forest.tree_class, dtype=np.int32),
        "base_score": np.asarray(forest.base_margin, dtype=leaf_dtype),
        "cat_bits": np.concatenate(cat_words) if cat_words else np.zeros(1, dtype=np.uint32),
        "cat_begin": np.concatenate(cat_begin_out),
        "cat_nwords": np.concatenate(cat_nwords_out),
    }
    return {
        "arrays": arrays,
        "num_feature": num_feature,
        "num_class": forest.num_class,
        "num_tree": forest.num_tree,
        "postprocess": forest.postprocess,
        "sigmoid_alpha": forest.sigmoid_alpha,
        "threshold_type": forest.threshold_type,
        "leaf_type": forest.leaf_type,
        "cmp": cmp,
        "has_categorical": forest.has_categorical,
        "lightgbm_zero": forest.zero_threshold,
        "node_weight": np.concatenate(weight_out),  # not shipped: for the row-engine rule
    }


def _row_engine(forest: dict[str, Any]) -> str:
    """Which code scores one row: ``"array"`` (``fecc_predict_one``) or ``"ifelse"``.

    A rule on the model's shape, not a timing, so the bundle is deterministic.  The
    array walk takes, per group of ``ROW_GROUP`` trees, the deepest tree's depth in
    steps (fewer when all walks reach leaves early); tl2cgen's code visits one node
    per level of the leaf a row reaches (:func:`_mean_leaf_depths`).  Measured on
    one thread over 2,000 distinct rows (benchmarks/README.md), an array step cost
    1.4-4.7 ns and an if/else node 3.3-24 ns (more the larger the code: branch
    mispredictions and instruction-cache misses), so the array walk won on every
    model tried (1.2x on 20 small LightGBM trees to 6.4x on 500 XGBoost trees of
    depth 8), which took at most 2.3 times the if/else steps.  Beyond ``ROW_IFELSE_STEPS`` times, the
    if/else code is chosen: trees where nearly every row stops at a shallow leaf
    and a few go down a long chain.
    """
    a = forest["arrays"]
    depth = a["tree_depth"].astype(np.int64)
    array_steps = sum(int(depth[i:i + ROW_GROUP].max()) * len(depth[i:i + ROW_GROUP])
                      for i in range(0, len(depth), ROW_GROUP))
    ifelse_steps = float(_mean_leaf_depths(forest).sum())
    return "ifelse" if array_steps > ROW_IFELSE_STEPS * max(ifelse_steps, 1.0) else "array"


def _batch_shape(forest: dict[str, Any]) -> str:
    """``"even"`` or ``"uneven"`` trees, the key of :data:`BATCH_SHAPES` the batch engine uses.

    Every walk of a pass takes the group's deepest depth in steps.  On depth-wise
    trees (XGBoost's) rows end near that depth anyway, and big blocks with 8 trees
    per pass keep the most loads in flight.  On leaf-wise trees (LightGBM's: a
    63-leaf tree 22 deep where rows stop after 8 steps on average) smaller blocks
    and groups let a pass stop early, when the deepest walk of 32 rows x 4 trees is
    done: 12-15% faster there, 5-15% slower on XGBoost's trees (measured).
    """
    expected = float(_mean_leaf_depths(forest).sum())
    return "uneven" if expected < UNEVEN_DEPTH * float(forest["arrays"]["tree_depth"].sum()) else "even"


def _mean_leaf_depths(forest: dict[str, Any]) -> np.ndarray:
    """Per tree, the mean depth of the leaf a row reaches: leaves weighted by the
    training rows that reached them (LightGBM) or their hessian sum (XGBoost's
    cover), each leaf once where the model records neither."""
    a = forest["arrays"]
    fb = feat_bits(forest["num_feature"])
    offset = (a["nodes"]["meta"] >> np.uint32(fb + 3)).astype(np.int64)
    n = len(offset)
    depth = np.zeros(n, dtype=np.int64)
    to_left = -1 if _STEP[forest["cmp"]]["child"] == "right" else 0
    for i in np.flatnonzero(offset):  # parents come before their children
        left = i + offset[i] + to_left
        depth[left] = depth[left + 1] = depth[i] + 1
    tree = np.searchsorted(a["tree_root"], np.arange(n), side="right") - 1
    leaf = offset == 0
    w = np.asarray(forest.get("node_weight", np.ones(n)), dtype=np.float64)[leaf]
    n_tree = len(a["tree_root"])
    total = np.bincount(tree[leaf], weights=w, minlength=n_tree)
    return np.bincount(tree[leaf], weights=w * depth[leaf], minlength=n_tree) / np.where(total > 0, total, 1.0)


def _can_fold_nan(forest: dict[str, Any], block_rows: int) -> bool:
    """Whether missing values can be folded into the block copy (see the template):
    no numerical split has a NaN threshold (XGBoost and LightGBM never write one; an
    infinite threshold is fine) and two copies of a block fit the stack budget."""
    nodes = forest["arrays"]["nodes"]
    fb = feat_bits(forest["num_feature"])
    meta = nodes["meta"].astype(np.int64)
    inner_numerical = ((meta >> (fb + 3)) != 0) & (((meta >> (fb + 1)) & 1) == 0)
    size = 2 * forest["num_feature"] * block_rows * nodes["thr"].dtype.itemsize
    return not np.isnan(nodes["thr"][inner_numerical]).any() and size <= NAN_FOLD_MAX_BYTES


#: Trees of at most this depth take the batch engine's vectorizable shallow pass.
SHALLOW_DEPTH = 2


def _has_shallow_pass(forest: dict[str, Any], block_rows: int) -> bool:
    """Whether the batch engine gets its pass for shallow trees (``fecc_shallow`` in the
    template): some tree is at most :data:`SHALLOW_DEPTH` deep, missing values fold (the
    pass reads a column-major copy of the folded block) and no split is categorical.
    Measured on the aggregator of benchmarks/bench_experts.py (200 trees of depth 2):
    see benchmarks/README.md."""
    return (not forest["has_categorical"] and _can_fold_nan(forest, block_rows)
            and bool((forest["arrays"]["tree_depth"] <= SHALLOW_DEPTH).any()))


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an ``.npz`` that ``np.load`` reads, with fixed zip timestamps (np.savez
    stamps the current time, which would break byte-identical bundles)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


#: How a split comparison steps (public name of ``_STEP`` for the engine template's lowering).
STEP = _STEP
row_engine, batch_shape, can_fold_nan, has_shallow_pass = _row_engine, _batch_shape, _can_fold_nan, _has_shallow_pass
write_npz = _write_npz
