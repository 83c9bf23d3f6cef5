"""Lower a legacy tree ensemble (XGBoost JSON, LightGBM model.txt) to a C library.

What ends up in the bundle, under ``out_dir/trees/``:

``{name}.c``, ``{name}_tu{i}.c``, ``{name}.h``
    tl2cgen's if/else code for the whole ensemble (``predict(union Entry*, int, float*)``
    in ``{name}.c``; the trees, 25 per translation unit, in ``{name}_tu{i}.c``: gcc's
    time grows faster than linearly with function size, and units compile in
    parallel), generated without threshold quantization so every comparison is the
    model's own float32 (XGBoost) or float64 (LightGBM) comparison.
``{name}_engine.c``
    fecc's glue (rendered from ``templates/c/engine.c.j2``): a single-row entry point that
    wraps tl2cgen's ``predict`` (NaN -> missing, output zeroed, postprocess), and the
    array engine that walks the node arrays: for blocks of rows level by level
    (batch), and for one row a few trees at a time (``fecc_predict_one``).
``{name}.npz``
    The flattened node arrays the array engine walks (written byte-for-byte
    deterministically).
``{name}.so``
    Both C files compiled with gcc and fixed flags in a scratch directory, so the same
    model gives the same bytes.

Why two engines: tl2cgen's branchy code falls out of the instruction cache on large
ensembles and loses to XGBoost in batch (DESIGN.md measured 3.5x), and even for one
row its data-dependent branches mispredict: over distinct rows, one row through the
node arrays was 1.2x (10 trees) to 6x (500 trees of depth 8) faster.  The array
engine is data-driven, so its code size does not grow with the model; its walks
are branch-free and independent, so they overlap in the CPU.  Its leaves accumulate
in XGBoost's order (base score first, then trees in model order, in the leaf type),
so batch and single-row margins are bit-identical to XGBoost's.  Which code scores
one row is chosen per model by a rule (:func:`_row_engine`) and recorded in the
manifest entry (``row_engine``); the batch walk's shape too follows the trees'
shape (:func:`_batch_shape`; its block size is the entry's ``block_rows``).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from fecc.errors import CompileError, UserError

__all__ = ["lower_trees", "MODEL_FORMATS", "CFLAGS", "LDFLAGS", "node_dtype"]

#: Model formats :func:`lower_trees` reads, mapped to the treelite loader that reads them.
MODEL_FORMATS = ("xgboost_json", "xgboost_ubjson", "lightgbm")

#: gcc flags; fixed so that the same model gives the same library, byte for byte.
#: No -march (the bundle runs on other machines), no -ffast-math (it would break the
#: NaN tests and the float semantics), no -g and -fno-ident (no paths or compiler
#: banner in the binary).
CFLAGS = ("-std=c99", "-O3", "-fPIC", "-fno-ident")
#: Link flags: a shared library, no build-id note (it would hash the same bytes anyway).
LDFLAGS = ("-shared", "-Wl,--build-id=none")
#: The C compiler (a module attribute, so tests can point it at something broken).
CC = "gcc"
#: Trees per tl2cgen translation unit.
TREES_PER_UNIT = 25

#: Version of the C interface between the library and ``fecc_runtime.trees`` (entry
#: points, node layout); the template's ``fecc_abi_version`` returns the same number.
ENGINE_ABI = 3

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

# treelite's enums (treelite/enum/operator.h, tree_node_type.h)
_CMP = {2: "<", 3: "<=", 4: ">", 5: ">="}
_NUMERICAL, _CATEGORICAL = 1, 2
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
_SUPPORTED_POSTPROCESS = (
    "identity", "identity_multiclass", "sigmoid", "multiclass_ova", "exponential",
    "logarithm_one_plus_exp", "softmax",
)
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
                num_feature: int, threshold_type: str, child: str, model_path: Path) -> np.ndarray:
    """Pack per-node fields (``left`` global; a leaf's is itself) into :func:`node_dtype`
    records, with offsets to the ``child`` (``"left"`` or ``"right"``) child."""
    fb = feat_bits(num_feature)
    offset = left - np.arange(len(left), dtype=np.int64)
    if child == "right":
        offset = np.where(offset > 0, offset + 1, offset)  # a leaf's 0 stays 0
    if len(left) and (offset.min() < 0 or int(offset.max()) >= 1 << (29 - fb)):
        raise UserError(f"{model_path}: a tree is too large for the batch engine's node layout "
                        f"({num_feature} features leave {29 - fb} bits for child offsets)")
    if len(feat) and (feat.min() < 0 or feat.max() >= num_feature):
        raise UserError(f"{model_path}: a split uses a feature index outside 0..{num_feature - 1}")
    nodes = np.zeros(len(thr), dtype=node_dtype(threshold_type))
    nodes["thr"] = thr
    info = info.astype(np.uint64)
    nodes["meta"] = ((info & _INFO_DEFAULT_LEFT) | (feat.astype(np.uint64) << 1)
                     | (((info & _INFO_CATEGORICAL) != 0).astype(np.uint64) << (fb + 1))
                     | (((info & _INFO_CATS_GO_RIGHT) != 0).astype(np.uint64) << (fb + 2))
                     | (offset.astype(np.uint64) << (fb + 3))).astype(np.uint32)
    return nodes


@contextlib.contextmanager
def _native_log_captured():
    """Capture what treelite/tl2cgen's C++ loggers print on fds 1 and 2.

    Their INFO/WARNING lines ("Parallel compilation enabled", "model ... originated
    from a newer Treelite version" — tl2cgen bundles an older treelite) are noise
    to a user; the captured text is attached to any error raised inside instead.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    # tl2cgen also logs through a Python callback that print()s: catch that text too,
    # or it reaches stdout after the fds are restored and corrupts the CLI's JSON
    py_log = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink, contextlib.redirect_stdout(py_log), \
            contextlib.redirect_stderr(py_log):
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            except Exception as exc:
                sink.seek(0)
                log = (sink.read().decode("utf-8", "replace") + py_log.getvalue()).strip()
                if log and exc.args and isinstance(exc.args[0], str):
                    exc.args = (f"{exc.args[0]} [treelite/tl2cgen said: {log[-500:]}]", *exc.args[1:])
                raise
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def lower_trees(model_path: Path, out_dir: Path, *, name: str = "legacy",
                model_format: str = "xgboost_json") -> dict[str, Any]:
    """Compile a tree ensemble into ``out_dir/trees/`` and describe it for the manifest.

    Parameters
    ----------
    model_path : Path
        The model file: XGBoost JSON (``model_format="xgboost_json"``), XGBoost
        UBJSON (``"xgboost_ubjson"``; base score as treelite computes it, and no
        category encoder support) or LightGBM ``model.txt`` (``"lightgbm"``).
    out_dir : Path
        The bundle directory; files go to ``out_dir/trees/`` (created if needed).
    name : str
        Stem of the emitted files; a C identifier-like name (letters, digits, ``_``).
    model_format : str
        One of :data:`MODEL_FORMATS`.

    Returns
    -------
    dict
        A JSON-serialisable manifest entry; paths are relative to ``out_dir``.  Keys:
        ``name``, ``model_format``, ``model_sha256``, ``sources``, ``library``,
        ``arrays``, ``num_feature``, ``num_class``, ``num_tree``, ``num_node``,
        ``postprocess``, ``sigmoid_alpha``, ``base_score`` (per output column, margin
        space), ``threshold_type``, ``leaf_type``, ``has_categorical``,
        ``batch_engine`` (``"blocked"`` or ``"ifelse"``), ``row_engine`` (``"array"``
        or ``"ifelse"``: which C code scores one row, see :func:`_row_engine`), ``block_rows``,
        ``engine_abi``, ``node_child`` (``"left"`` or ``"right"``: the child a node's
        offset points to), ``node_feat_bits`` (bits of a node's ``meta`` holding the
        feature index), ``compiler`` (cc, version, flags, tl2cgen/treelite versions).

    Raises
    ------
    UserError
        The model cannot be read, or uses something the engine does not support.
    CompileError
        gcc failed or is missing.
    """
    model_path, out_dir = Path(model_path), Path(out_dir)
    if model_format not in MODEL_FORMATS:
        raise UserError(f"unknown tree model format {model_format!r}; expected one of {MODEL_FORMATS}")
    if not name.replace("_", "").isalnum() or not name.isascii() or name[0].isdigit():
        raise UserError(f"tree module name {name!r} must be letters, digits and '_', not starting with a digit")
    if not model_path.is_file():
        raise UserError(f"model file not found: {model_path}")

    import tl2cgen
    import treelite

    categories: dict[str, list[Any]] = {}
    load_path = model_path
    with tempfile.TemporaryDirectory(prefix="fecc-model-") as mtmp:
        if model_format == "xgboost_json":
            load_path, categories = _strip_xgboost_encoder(model_path, Path(mtmp))
        with _native_log_captured():
            model = _load(load_path, model_format, treelite)
    forest = _flatten(model, model_path)
    forest["lightgbm_zero"] = model_format == "lightgbm"
    if model_format == "xgboost_json":
        forest["arrays"]["base_score"] = _xgboost_base_margin(model_path, forest["arrays"]["base_score"])
    model_sha256 = hashlib.sha256(model_path.read_bytes()).hexdigest()

    trees_dir = out_dir / "trees"
    trees_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fecc-trees-") as tmp:
        tmp = Path(tmp)
        gen = tmp / "tl2cgen"
        # quantize=0: compare against the model's own thresholds, never bin indices.
        # parallel_comp splits the trees over translation units: gcc's time grows
        # faster than linearly with function size, and the units compile in parallel.
        n_units = max(1, -(-forest["num_tree"] // TREES_PER_UNIT))
        with _native_log_captured():
            tl2cgen.generate_c_code(model, gen, {"quantize": 0, "parallel_comp": n_units})
        sources = {f"{name}.h": (gen / "header.h").read_text()}
        units = ["main"] + sorted((p.stem for p in gen.glob("tu*.c")), key=lambda s: int(s[2:]))
        for unit in units:
            fname = f"{name}.c" if unit == "main" else f"{name}_{unit}.c"
            text = (gen / f"{unit}.c").read_text()
            sources[fname] = text.replace('#include "header.h"', f'#include "{name}.h"')
        shape = BATCH_SHAPES[_batch_shape(forest)]
        sources[f"{name}_engine.c"] = _render_engine(name, forest, model_sha256, shape)
        build = tmp / "build"
        build.mkdir()
        for fname, text in sources.items():
            (build / fname).write_text(text)
            (trees_dir / fname).write_text(text)
        so_name = f"{name}.so"
        cc_version = _gcc(build, [f for f in sources if f.endswith(".c")], so_name)
        shutil.copyfile(build / so_name, trees_dir / so_name)
    _write_npz(trees_dir / f"{name}.npz", forest["arrays"])

    num_node = int(forest["arrays"]["nodes"].shape[0])
    return {
        "name": name,
        "model_format": model_format,
        "model_sha256": model_sha256,
        "sources": [f"trees/{f}" for f in sources],
        "library": f"trees/{so_name}",
        "arrays": f"trees/{name}.npz",
        "num_feature": forest["num_feature"],
        "num_class": forest["num_class"],
        "num_tree": forest["num_tree"],
        "num_node": num_node,
        "postprocess": forest["postprocess"],
        "sigmoid_alpha": forest["sigmoid_alpha"],
        "base_score": [float(b) for b in forest["arrays"]["base_score"]],
        "threshold_type": forest["threshold_type"],
        "feature_type": forest["threshold_type"],
        "leaf_type": forest["leaf_type"],
        "has_categorical": forest["has_categorical"],
        "categories": categories,
        "batch_engine": "ifelse" if num_node < IFELSE_MAX_NODES else "blocked",
        "row_engine": _row_engine(forest),
        "node_child": _STEP[forest["cmp"]]["child"],
        "block_rows": shape["block_rows"],
        "engine_abi": ENGINE_ABI,
        "node_feat_bits": feat_bits(forest["num_feature"]),
        "compiler": {
            "cc": "gcc", "version": cc_version, "flags": list(CFLAGS), "ldflags": list(LDFLAGS),
            "tl2cgen": tl2cgen.__version__, "treelite": treelite.__version__,
        },
    }


def _strip_xgboost_encoder(model_path: Path, tmp: Path) -> tuple[Path, dict[str, list[Any]]]:
    """Drop XGBoost >= 3.1's category encoder, which treelite refuses to load.

    A model trained on pandas categories stores the training categories per feature
    (``gradient_booster.model.cats``) and recodes DataFrame input at predict time; the
    trees themselves test category *codes*.  fecc's runtime takes codes (float32,
    ``category position in the training categories``), so the trees alone are the
    model; the categories go into the manifest entry so that whoever builds X maps
    values to the same codes.  Returns the path to load and ``{feature index (str):
    [category, ...]}`` in code order.
    """
    try:
        doc = json.loads(model_path.read_text())
        model = doc["learner"]["gradient_booster"]["model"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return model_path, {}  # let treelite produce its own error message
    cats = model.get("cats") if isinstance(model, dict) else None
    if not cats or not cats.get("feature_segments"):
        return model_path, {}
    categories: dict[str, list[Any]] = {}
    for i, enc in enumerate(cats.get("enc", [])):
        offsets, values = enc.get("offsets", []), enc.get("values", [])
        if offsets:  # strings: UTF-8 bytes, one [offsets[j], offsets[j+1]) slice each
            names = [bytes(values[a:b]).decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:])]
        else:  # numeric categories are stored as their values
            names = list(values)
        if names:
            categories[str(i)] = names
    del model["cats"]
    out = tmp / "model-without-encoder.json"
    out.write_text(json.dumps(doc))
    return out, categories


def _load(model_path: Path, model_format: str, treelite: Any) -> Any:
    """Read the model with treelite; any failure is the user's model, in one line."""
    try:
        if model_format == "xgboost_json":
            return treelite.frontend.load_xgboost_model(str(model_path))
        if model_format == "xgboost_ubjson":
            return treelite.frontend.load_xgboost_model(str(model_path), format_choice="ubjson")
        return treelite.frontend.load_lightgbm_model(str(model_path))
    except Exception as exc:  # treelite raises its own TreeliteError with C++ context
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read {model_format} model {model_path}: {first}") from None


def _flatten(model: Any, model_path: Path) -> dict[str, Any]:
    """Turn treelite's trees into the node arrays of the batch engine.

    Nodes are renumbered breadth-first per tree so that the two children of a split
    are adjacent (right = left + 1); a leaf's child offset is 0 and its threshold NaN
    (and its default direction the one the engine's step takes for NaN, see
    ``_STEP``), so extra steps past it stay on it.  That lets the engine take exactly
    ``depth`` steps for every row without a branch on "is leaf".
    """
    h = model.get_header_accessor()
    num_target = int(h.get_field("num_target")[0])
    num_class = int(h.get_field("num_class")[0])
    if num_target != 1:
        raise UserError(f"{model_path}: multi-target models are not supported (num_target={num_target})")
    if list(h.get_field("leaf_vector_shape")) != [1, 1]:
        raise UserError(f"{model_path}: vector-leaf trees are not supported")
    if int(h.get_field("average_tree_output")[0]):
        raise UserError(f"{model_path}: averaged (random forest) outputs are not supported")
    postprocess = str(h.get_field("postprocessor"))
    if postprocess not in _SUPPORTED_POSTPROCESS:
        raise UserError(f"{model_path}: output transform {postprocess!r} is not supported")
    class_id = h.get_field("class_id").astype(np.int32)
    base_scores = np.asarray(h.get_field("base_scores"), dtype=np.float64).reshape(-1)[:num_class]

    num_tree = int(model.num_tree)
    first = model.get_tree_accessor(0)
    thr_dtype = first.get_field("threshold").dtype
    leaf_dtype = first.get_field("leaf_value").dtype
    threshold_type = "float32" if thr_dtype == np.float32 else "float64"
    leaf_type = "float32" if leaf_dtype == np.float32 else "float64"
    ndt = np.dtype([("thr", thr_dtype), ("feat", "<i8"), ("left", "<i8"), ("info", "<i8")])

    nodes_out, leaf_out, roots, depths, weight_out = [], [], [], [], []
    cat_words: list[np.ndarray] = []
    cat_begin_out, cat_nwords_out = [], []
    cmps: set[str] = set()
    n_cat_words = 0
    offset = 0
    for t in range(num_tree):
        acc = model.get_tree_accessor(t)
        f = {k: acc.get_field(k) for k in (
            "node_type", "cleft", "cright", "split_index", "default_left", "leaf_value",
            "threshold", "cmp", "category_list_right_child", "category_list",
            "category_list_begin", "category_list_end")}
        n = len(f["node_type"])
        weight = np.ones(n)  # training rows per node (LightGBM), else hessian sum (XGBoost)
        for field in ("data_count", "sum_hess"):
            w, present = acc.get_field(field), acc.get_field(f"{field}_present")
            if len(w) == n and len(present) == n and present.all():
                weight = w.astype(np.float64)
                break
        new_id = np.full(n, -1, dtype=np.int64)
        order = []  # old node ids in new order
        depth_of = np.zeros(n, dtype=np.int64)
        new_id[0] = 0
        order.append(0)
        queue = deque([0])
        while queue:
            old = queue.popleft()
            if f["node_type"][old] != 0:  # inner node: its children get two adjacent slots
                for child in (f["cleft"][old], f["cright"][old]):
                    new_id[child] = len(order)
                    order.append(int(child))
                    depth_of[child] = depth_of[old] + 1
                    queue.append(int(child))
        if len(order) != n:
            raise UserError(f"{model_path}: tree {t} has unreachable nodes")
        nodes = np.zeros(n, dtype=ndt)
        leaf = np.zeros(n, dtype=leaf_dtype)
        cat_begin = np.zeros(n, dtype=np.int32)
        cat_nwords = np.zeros(n, dtype=np.int32)
        for new, old in enumerate(order):
            ntype = int(f["node_type"][old])
            if ntype == 0:
                nodes[new] = (np.nan, 0, offset + new, 0)
                leaf[new] = f["leaf_value"][old]
                continue
            info = _INFO_DEFAULT_LEFT if f["default_left"][old] else 0
            thr = 0.0
            if ntype == _NUMERICAL:
                cmp = _CMP.get(int(f["cmp"][old]))
                if cmp is None:
                    raise UserError(f"{model_path}: tree {t} uses an unsupported comparison (code {int(f['cmp'][old])})")
                cmps.add(cmp)
                thr = f["threshold"][old]
            elif ntype == _CATEGORICAL:
                info |= _INFO_CATEGORICAL
                if f["category_list_right_child"][old]:
                    info |= _INFO_CATS_GO_RIGHT
                cats = np.asarray(f["category_list"][f["category_list_begin"][old]:f["category_list_end"][old]], dtype=np.int64)
                nwords = int(cats.max()) // 32 + 1 if cats.size else 0
                bits = np.zeros(nwords, dtype=np.uint32)
                for c in cats:
                    bits[c >> 5] |= np.uint32(1) << np.uint32(c & 31)
                cat_words.append(bits)
                cat_begin[new] = n_cat_words
                cat_nwords[new] = nwords
                n_cat_words += nwords
            else:
                raise UserError(f"{model_path}: tree {t} has an unknown node type {ntype}")
            left = offset + int(new_id[f["cleft"][old]])
            if int(new_id[f["cright"][old]]) + offset != left + 1:
                raise AssertionError("breadth-first numbering must make children adjacent")
            nodes[new] = (thr, int(f["split_index"][old]), left, info)
        nodes_out.append(nodes)
        leaf_out.append(leaf)
        weight_out.append(weight[np.asarray(order, dtype=np.int64)])
        cat_begin_out.append(cat_begin)
        cat_nwords_out.append(cat_nwords)
        roots.append(offset)
        depths.append(int(depth_of.max()))
        offset += n
    if len(cmps) > 1:
        raise UserError(f"{model_path}: mixed split comparisons {sorted(cmps)} are not supported")
    cmp = cmps.pop() if cmps else "<"
    has_categorical = bool(n_cat_words) or any(((nb["info"] & _INFO_CATEGORICAL) != 0).any() for nb in nodes_out)
    num_feature = int(h.get_field("num_feature")[0])
    flat = np.concatenate(nodes_out)
    child = _STEP[cmp]["child"]
    if child == "left":  # a leaf's default-left bit: the one under which a NaN feature stays
        flat["info"][flat["left"] == np.arange(len(flat))] = _INFO_DEFAULT_LEFT
    arrays = {
        "nodes": _pack_nodes(flat["thr"], flat["feat"], flat["left"], flat["info"], num_feature,
                             threshold_type, child, model_path),
        "leaf": np.concatenate(leaf_out),
        "tree_root": np.asarray(roots, dtype=np.int32),
        "tree_depth": np.asarray(depths, dtype=np.int32),
        "tree_class": class_id,
        "base_score": base_scores.astype(leaf_dtype),
        "cat_bits": np.concatenate(cat_words) if cat_words else np.zeros(1, dtype=np.uint32),
        "cat_begin": np.concatenate(cat_begin_out),
        "cat_nwords": np.concatenate(cat_nwords_out),
    }
    return {
        "arrays": arrays,
        "num_feature": num_feature,
        "num_class": num_class,
        "num_tree": num_tree,
        "postprocess": postprocess,
        "sigmoid_alpha": float(h.get_field("sigmoid_alpha")[0]),
        "threshold_type": threshold_type,
        "leaf_type": leaf_type,
        "cmp": cmp,
        "has_categorical": has_categorical,
        "node_weight": np.concatenate(weight_out),  # not shipped: for the row-engine rule
    }


# XGBoost keeps base_score as a probability-space float and turns it into a margin
# in float32 with the C library's logf (xgboost/src/objective/regression_loss.h,
# ProbToMargin); treelite does the same in double.  The two can differ in the last
# bit, which would make every batch margin differ in the last bit, so for XGBoost
# models fecc redoes XGBoost's float32 arithmetic.
_LOGIT_OBJECTIVES = ("binary:logistic", "reg:logistic", "binary:logitraw")
_LOG_OBJECTIVES = ("count:poisson", "reg:gamma", "reg:tweedie")


def _xgboost_base_margin(model_path: Path, treelite_base: np.ndarray) -> np.ndarray:
    """Base margin per output column exactly as XGBoost computes it (float32)."""
    if treelite_base.dtype != np.float32:
        return treelite_base
    try:
        learner = json.loads(model_path.read_text())["learner"]
        objective = learner["objective"]["name"]
        raw = str(learner["learner_model_param"]["base_score"]).strip("[]")
        prob = np.asarray([float(v) for v in raw.split(",")], dtype=np.float32)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return treelite_base  # not plain XGBoost JSON: keep treelite's value
    if prob.size == 1:
        prob = np.repeat(prob, treelite_base.size)
    if prob.size != treelite_base.size:
        return treelite_base
    libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    libm.logf.restype, libm.logf.argtypes = ctypes.c_float, [ctypes.c_float]
    if objective in _LOGIT_OBJECTIVES:
        margin = [-libm.logf(float(np.float32(1) / p - np.float32(1))) for p in prob]
    elif objective in _LOG_OBJECTIVES:
        margin = [libm.logf(float(p)) for p in prob]
    else:
        margin = list(prob)
    margin = np.asarray(margin, dtype=np.float32)
    # Only a last-bit correction is expected; anything larger means the objective
    # table above is wrong for this model, and treelite's value is the safer one.
    if not np.allclose(margin, treelite_base, rtol=1e-5, atol=1e-6):
        return treelite_base
    return margin


#: The engine's public functions (``fecc_<name>``); an engine rendered without tl2cgen's
#: code renames them to ``<api_prefix><name>`` so that several share one library.
ENGINE_PUBLIC = ("abi_version", "node_feat_bits", "num_feature", "num_class", "node_size", "postprocess",
                 "predict_batch", "predict_one")


def _render_engine(name: str, forest: dict[str, Any], model_sha256: str, shape: dict[str, Any], *,
                   api_prefix: str | None = None, library: str = "") -> str:
    """Fill ``templates/c/engine.c.j2``; the template only places names and literals.

    ``api_prefix`` (e.g. ``"fecc_legacy_"``): the array engine alone, without tl2cgen's
    if/else entry points, its public functions renamed with that prefix (for the
    ensemble library, :mod:`fecc.lower.ensemble`, which is named ``library``).
    """
    from ..templating import environment

    env = environment()
    is_f32 = forest["leaf_type"] == "float32"
    step = _STEP[forest["cmp"]]
    return env.get_template("c/engine.c.j2").render(
        name=name,
        model_sha256=model_sha256,
        num_feature=forest["num_feature"],
        num_class=forest["num_class"],
        block_rows=shape["block_rows"],
        tree_group=shape["tree_group"],
        feat_bits=feat_bits(forest["num_feature"]),
        threshold_t="float" if forest["threshold_type"] == "float32" else "double",
        leaf_t="float" if is_f32 else "double",
        exp="expf" if is_f32 else "exp",
        log1p="log1pf" if is_f32 else "log1p",
        cmp=forest["cmp"],
        nan_fold=_can_fold_nan(forest, shape["block_rows"]),
        shallow=_has_shallow_pass(forest, shape["block_rows"]),
        goes_expr=step["expr"].replace("fv_", "(fv)").replace("nd_->thr", "(thr)"),
        child=step["child"],
        step_expr=step["expr"],
        step_sign=step["sign"],
        nan_go="(m_ & 1u)" if step["child"] == "right" else "!(m_ & 1u)",
        cat_bias="- 1 " if step["child"] == "right" else "",
        leaf_default_left=int(step["child"] == "left"),
        slot0=step["slot0"],
        slot1=step["slot1"],
        engine_abi=ENGINE_ABI,
        row_group=ROW_GROUP,
        stop_early=shape["stop_early"],
        postprocess=forest["postprocess"],
        sigmoid_alpha=repr(float(np.float32(forest["sigmoid_alpha"]))),
        has_categorical=forest["has_categorical"],
        lightgbm_zero=forest["lightgbm_zero"],
        tl2cgen=api_prefix is None,
        api_prefix=api_prefix or "fecc_",
        public_functions=ENGINE_PUBLIC,
        library=library,
    )


def array_engine_source(model_path: Path, model_format: str, *, name: str, api_prefix: str,
                        library: str) -> tuple[str, dict[str, Any]]:
    """The array engine of a model alone (no tl2cgen code), public names prefixed.

    Reads the model exactly as :func:`lower_trees` does (same flattening, same batch
    shape, same NaN folding), so the engine walks the node arrays ``lower_trees``
    wrote into the bundle (``trees/{name}.npz``) and gives the same margins.  Returns
    the C text and what a caller needs to know about it: ``num_feature``,
    ``num_class``, ``feature_type``, ``leaf_type``, ``block_rows``.
    """
    import treelite

    model_path = Path(model_path)
    with tempfile.TemporaryDirectory(prefix="fecc-model-") as mtmp:
        load_path = model_path
        if model_format == "xgboost_json":
            load_path, _ = _strip_xgboost_encoder(model_path, Path(mtmp))
        with _native_log_captured():
            model = _load(load_path, model_format, treelite)
    forest = _flatten(model, model_path)
    forest["lightgbm_zero"] = model_format == "lightgbm"
    shape = BATCH_SHAPES[_batch_shape(forest)]
    sha = hashlib.sha256(model_path.read_bytes()).hexdigest()
    text = _render_engine(name, forest, sha, shape, api_prefix=api_prefix, library=library)
    return text, {"num_feature": forest["num_feature"], "num_class": forest["num_class"],
                  "feature_type": forest["threshold_type"], "leaf_type": forest["leaf_type"],
                  "block_rows": shape["block_rows"]}


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


def _gcc(build: Path, sources: list[str], output: str, cflags: tuple[str, ...] = CFLAGS) -> str:
    """Compile ``sources`` (relative to ``build``) into ``output`` with ``cflags``; return gcc's version.

    Each source becomes an object file (in parallel, one gcc per CPU), then they are
    linked in the given order.  Relative paths, a scratch cwd and a fixed locale keep
    paths and messages out of the binary and the build reproducible.
    """
    cc = shutil.which(CC)
    if cc is None:
        raise CompileError(f"{CC!r} not found on PATH; fecc needs gcc to build tree libraries")
    env = {**os.environ, "LC_ALL": "C", "SOURCE_DATE_EPOCH": "0"}

    def run(cmd: list[str]) -> None:
        proc = subprocess.run(cmd, cwd=build, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
            raise CompileError(f"gcc failed ({' '.join(cmd)}):\n{tail}")

    objects = [src[:-2] + ".o" for src in sources]
    jobs = [[cc, *cflags, "-c", src, "-o", obj] for src, obj in zip(sources, objects)]
    n_jobs = max(1, min(len(jobs), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))
    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        for fut in [pool.submit(run, cmd) for cmd in jobs]:
            fut.result()
    run([cc, *LDFLAGS, "-o", output, *objects, "-lm"])
    ver = subprocess.run([cc, "-dumpfullversion"], capture_output=True, text=True, env=env)
    return ver.stdout.strip()


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


def describe(entry: dict[str, Any]) -> str:
    """One line about a lowered ensemble, for logs and the audit report."""
    return (f"{entry['name']}: {entry['num_tree']} trees, {entry['num_node']} nodes, "
            f"{entry['num_feature']} features, {entry['num_class']} outputs, "
            f"{entry['postprocess']}, batch engine {entry['batch_engine']}")

