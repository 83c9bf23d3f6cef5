"""Lower a tree ensemble (the forest IR, :class:`fecc.forest.Forest`) to a C library.

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
one row is chosen per model by a rule (:func:`fecc.lower.tree_arrays.row_engine`) and
recorded in the manifest entry (``row_engine``); the batch walk's shape too follows the
trees' shape (:func:`~fecc.lower.tree_arrays.batch_shape`; its block size is the entry's
``block_rows``).

Layout: :mod:`fecc.lower.tree_arrays` flattens the forest into the node arrays and
holds the shape rules, :mod:`fecc.lower.cbuild` runs gcc, and this module generates
the sources (tl2cgen's, fed the forest's one treelite load, and the engine template)
and writes the bundle entry.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..forest import Forest
from ..native import native_log_captured
from . import tree_arrays
from .cbuild import CFLAGS, LDFLAGS, gcc
from .tree_arrays import (
    BATCH_SHAPES, IFELSE_MAX_NODES, ROW_GROUP, STEP, batch_shape, can_fold_nan, feat_bits, flatten, node_dtype,
    row_engine,
    write_npz,
)

__all__ = ["lower_trees", "array_engine_source", "MODEL_FORMATS", "CFLAGS", "LDFLAGS", "node_dtype"]

#: Model formats a forest may come from (:attr:`fecc.forest.Forest.source_format`).
MODEL_FORMATS = ("xgboost_json", "xgboost_ubjson", "lightgbm")
#: Trees per tl2cgen translation unit.
TREES_PER_UNIT = 25

#: Version of the C interface between the library and ``fecc_runtime.trees`` (entry
#: points, node layout); the template's ``fecc_abi_version`` returns the same number.
ENGINE_ABI = 3


def check_name(name: str) -> None:
    """Emitted files and C symbols are named after ``name``: letters, digits and ``_``."""
    if not name.replace("_", "").isalnum() or not name.isascii() or name[0].isdigit():
        raise UserError(f"tree module name {name!r} must be letters, digits and '_', not starting with a digit")


def lower_trees(forest: Forest, out_dir: Path, *, name: str = "legacy") -> dict[str, Any]:
    """Compile a forest into ``out_dir/trees/`` and describe it for the manifest.

    Parameters
    ----------
    forest : Forest
        The ensemble (:func:`fecc.frontend.load_forest`): a legacy model (XGBoost JSON,
        XGBoost UBJSON, LightGBM ``model.txt``) or the search's aggregator.
    out_dir : Path
        The bundle directory; files go to ``out_dir/trees/`` (created if needed).
    name : str
        Stem of the emitted files; a C identifier-like name (letters, digits, ``_``).

    Returns
    -------
    dict
        A JSON-serialisable manifest entry; paths are relative to ``out_dir``.  Keys:
        ``name``, ``model_format``, ``model_sha256``, ``sources``, ``library``,
        ``arrays``, ``num_feature``, ``num_class``, ``num_tree``, ``num_node``,
        ``postprocess``, ``sigmoid_alpha``, ``base_score`` (per output column, margin
        space), ``threshold_type``, ``leaf_type``, ``has_categorical``,
        ``batch_engine`` (``"blocked"`` or ``"ifelse"``), ``row_engine`` (``"array"``
        or ``"ifelse"``: which C code scores one row), ``block_rows``,
        ``engine_abi``, ``node_child`` (``"left"`` or ``"right"``: the child a node's
        offset points to), ``node_feat_bits`` (bits of a node's ``meta`` holding the
        feature index), ``compiler`` (cc, version, flags, tl2cgen/treelite versions).

    Raises
    ------
    UserError
        The forest uses something the engine does not support.
    CompileError
        gcc failed or is missing.
    """
    out_dir = Path(out_dir)
    check_name(name)
    import tl2cgen
    import treelite

    flat = flatten(forest)
    model_sha256 = forest.sha256
    trees_dir = out_dir / "trees"
    trees_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fecc-trees-") as tmp:
        tmp = Path(tmp)
        gen = tmp / "tl2cgen"
        # quantize=0: compare against the model's own thresholds, never bin indices.
        # parallel_comp splits the trees over translation units: gcc's time grows
        # faster than linearly with function size, and the units compile in parallel.
        n_units = max(1, -(-flat["num_tree"] // TREES_PER_UNIT))
        with native_log_captured():
            tl2cgen.generate_c_code(forest.treelite, gen, {"quantize": 0, "parallel_comp": n_units})
        sources = {f"{name}.h": (gen / "header.h").read_text()}
        units = ["main"] + sorted((p.stem for p in gen.glob("tu*.c")), key=lambda s: int(s[2:]))
        for unit in units:
            fname = f"{name}.c" if unit == "main" else f"{name}_{unit}.c"
            text = (gen / f"{unit}.c").read_text()
            sources[fname] = text.replace('#include "header.h"', f'#include "{name}.h"')
        shape = BATCH_SHAPES[batch_shape(flat)]
        sources[f"{name}_engine.c"] = render_engine(name, flat, model_sha256, shape)
        build = tmp / "build"
        build.mkdir()
        for fname, text in sources.items():
            (build / fname).write_text(text)
            (trees_dir / fname).write_text(text)
        so_name = f"{name}.so"
        cc_version = gcc(build, [f for f in sources if f.endswith(".c")], so_name)
        shutil.copyfile(build / so_name, trees_dir / so_name)
    write_npz(trees_dir / f"{name}.npz", flat["arrays"])

    num_node = int(flat["arrays"]["nodes"].shape[0])
    return {
        "name": name,
        "model_format": forest.source_format,
        "model_sha256": model_sha256,
        "sources": [f"trees/{f}" for f in sources],
        "library": f"trees/{so_name}",
        "arrays": f"trees/{name}.npz",
        "num_feature": flat["num_feature"],
        "num_class": flat["num_class"],
        "num_tree": flat["num_tree"],
        "num_node": num_node,
        "postprocess": flat["postprocess"],
        "sigmoid_alpha": flat["sigmoid_alpha"],
        "base_score": [float(b) for b in flat["arrays"]["base_score"]],
        "threshold_type": flat["threshold_type"],
        "feature_type": flat["threshold_type"],
        "leaf_type": flat["leaf_type"],
        "has_categorical": flat["has_categorical"],
        "categories": {k: list(v) for k, v in forest.categories.items()},
        "batch_engine": "ifelse" if num_node < IFELSE_MAX_NODES else "blocked",
        "row_engine": row_engine(flat),
        "node_child": STEP[flat["cmp"]]["child"],
        "block_rows": shape["block_rows"],
        "engine_abi": ENGINE_ABI,
        "node_feat_bits": feat_bits(flat["num_feature"]),
        "compiler": {
            "cc": "gcc", "version": cc_version, "flags": list(CFLAGS), "ldflags": list(LDFLAGS),
            "tl2cgen": tl2cgen.__version__, "treelite": treelite.__version__,
        },
    }



#: The engine's public functions (``fecc_<name>``); an engine rendered without tl2cgen's
#: code renames them to ``<api_prefix><name>`` so that several share one library.
ENGINE_PUBLIC = ("abi_version", "node_feat_bits", "num_feature", "num_class", "node_size", "postprocess",
                 "predict_batch", "predict_one")


def render_engine(name: str, forest: dict[str, Any], model_sha256: str, shape: dict[str, Any], *,
                   api_prefix: str | None = None, library: str = "") -> str:
    """Fill ``templates/c/engine.c.j2``; the template only places names and literals.

    ``api_prefix`` (e.g. ``"fecc_legacy_"``): the array engine alone, without tl2cgen's
    if/else entry points, its public functions renamed with that prefix (for the
    ensemble library, :mod:`fecc.lower.ensemble`, which is named ``library``).
    """
    from ..templating import environment

    env = environment()
    is_f32 = forest["leaf_type"] == "float32"
    step = STEP[forest["cmp"]]
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
        nan_fold=can_fold_nan(forest, shape["block_rows"]),
        shallow=tree_arrays._has_shallow_pass(forest, shape["block_rows"]),
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


def array_engine_source(forest: Forest, *, name: str, api_prefix: str, library: str) -> tuple[str, dict[str, Any]]:
    """The array engine of a forest alone (no tl2cgen code), public names prefixed.

    Flattens the forest exactly as :func:`lower_trees` does (same node arrays, same batch
    shape, same NaN folding), so the engine walks the node arrays ``lower_trees`` wrote
    into the bundle (``trees/{name}.npz``) and gives the same margins.  Returns the C text
    and what a caller needs to know about it: ``num_feature``, ``num_class``,
    ``feature_type``, ``leaf_type``, ``block_rows``.
    """
    flat = flatten(forest)
    shape = BATCH_SHAPES[batch_shape(flat)]
    text = render_engine(name, flat, forest.sha256, shape, api_prefix=api_prefix, library=library)
    return text, {"num_feature": flat["num_feature"], "num_class": flat["num_class"],
                  "feature_type": flat["threshold_type"], "leaf_type": flat["leaf_type"],
                  "block_rows": shape["block_rows"]}


def describe(entry: dict[str, Any]) -> str:
    """One line about a lowered ensemble, for logs and the audit report."""
    return (f"{entry['name']}: {entry['num_tree']} trees, {entry['num_node']} nodes, "
            f"{entry['num_feature']} features, {entry['num_class']} outputs, "
            f"{entry['postprocess']}, batch engine {entry['batch_engine']}")

