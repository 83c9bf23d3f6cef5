"""Build the forest IR (:class:`fecc.forest.Forest`) from a legacy model, once per compile.

The trees are read by treelite (the reader tl2cgen's C code generator needs anyway)
from the bytes :func:`~fecc.frontend.models.load_legacy_model` already read: the model
file is not opened again.  Here, once, the model is also checked for what the tree
backends cannot reproduce exactly (vector leaves, averaged outputs, unknown output
transforms or comparisons), XGBoost >= 3.1's category encoder is taken out of the
document (treelite refuses it; the trees test codes, the manifest lists the values),
and the base margin is computed the way XGBoost computes it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..forest import CATEGORICAL, LEAF, NUMERICAL, Forest, Tree
from ..native import native_log_captured
from .models import LegacyModel, load_legacy_model

__all__ = ["load_forest"]

# treelite's comparison codes (treelite/enum/operator.h)
_CMP = {2: "<", 3: "<=", 4: ">", 5: ">="}
#: Output transforms (treelite's names) the lowerings reproduce.
SUPPORTED_POSTPROCESS = (
    "identity", "identity_multiclass", "sigmoid", "multiclass_ova", "exponential",
    "logarithm_one_plus_exp", "softmax",
)
# treelite's per-node fields, as the forest IR names them
_FIELDS = {"node_type": "node_type", "left": "cleft", "right": "cright", "feature": "split_index",
           "default_left": "default_left", "leaf_value": "leaf_value", "threshold": "threshold",
           "cats_right": "category_list_right_child", "cat_begin": "category_list_begin",
           "cat_end": "category_list_end"}


def load_forest(model: LegacyModel | str | Path) -> Forest:
    """The forest IR of a legacy model (or of any XGBoost JSON / LightGBM file, given its path).

    Parameters
    ----------
    model : LegacyModel, str or Path
        What :func:`~fecc.frontend.load_legacy_model` returned (its bytes are reused), or
        a path, which is read with it first.

    Raises
    ------
    UserError
        The file cannot be read, or holds trees the lowerings cannot reproduce exactly.
    """
    if not isinstance(model, LegacyModel):
        model = load_legacy_model(model)
    import treelite

    categories: dict[str, list[Any]] = {}
    with native_log_captured():
        tl = _read(model, treelite, categories)
    return _forest(tl, model, categories)


def _read(model: LegacyModel, treelite: Any, categories: dict) -> Any:
    """The treelite model of ``model.source``; any failure is the user's model, in one line."""
    try:
        if model.format == "xgboost_json":
            return treelite.frontend.from_xgboost_json(_strip_xgboost_encoder(model.source, categories))
        if model.format == "xgboost_ubjson":
            return treelite.frontend.from_xgboost_ubjson(model.source)
        # treelite's Python API reads LightGBM text from a path (or a lightgbm.Booster): hand it
        # the bytes already read through a scratch file rather than opening the user's file again
        with tempfile.TemporaryDirectory(prefix="fecc-model-") as tmp:
            path = Path(tmp) / "model.txt"
            path.write_bytes(model.source)
            return treelite.frontend.load_lightgbm_model(str(path))
    except Exception as exc:  # treelite raises its own TreeliteError with C++ context
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read {model.format} model {model.path}: {first}") from None


def _strip_xgboost_encoder(source: bytes, categories: dict) -> bytes:
    """Drop XGBoost >= 3.1's category encoder, which treelite refuses to load.

    A model trained on pandas categories stores the training categories per feature
    (``gradient_booster.model.cats``) and recodes DataFrame input at predict time; the
    trees themselves test category *codes*.  fecc's runtime takes codes (float32,
    ``category position in the training categories``), so the trees alone are the
    model; the categories go into ``categories`` (``{feature index (str): [category,
    ...]}`` in code order) so that whoever builds X maps values to the same codes.
    Returns the document to load: the original bytes when there is no encoder.
    """
    try:
        doc = json.loads(source)
        booster = doc["learner"]["gradient_booster"]["model"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return source  # let treelite produce its own error message
    cats = booster.get("cats") if isinstance(booster, dict) else None
    if not cats or not cats.get("feature_segments"):
        return source
    for i, enc in enumerate(cats.get("enc", [])):
        offsets, values = enc.get("offsets", []), enc.get("values", [])
        if offsets:  # strings: UTF-8 bytes, one [offsets[j], offsets[j+1]) slice each
            names = [bytes(values[a:b]).decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:])]
        else:  # numeric categories are stored as their values
            names = list(values)
        if names:
            categories[str(i)] = names
    del booster["cats"]
    return json.dumps(doc).encode()


def _forest(tl: Any, model: LegacyModel, categories: dict) -> Forest:
    """Check treelite's model and copy it into the IR (treelite's arrays are views into its memory)."""
    where = model.path
    h = tl.get_header_accessor()
    num_target = int(h.get_field("num_target")[0])
    num_class = int(h.get_field("num_class")[0])
    if num_target != 1:
        raise UserError(f"{where}: multi-target models are not supported (num_target={num_target})")
    if list(h.get_field("leaf_vector_shape")) != [1, 1]:
        raise UserError(f"{where}: vector-leaf trees are not supported")
    if int(h.get_field("average_tree_output")[0]):
        raise UserError(f"{where}: averaged (random forest) outputs are not supported")
    postprocess = str(h.get_field("postprocessor"))
    if postprocess not in SUPPORTED_POSTPROCESS:
        raise UserError(f"{where}: output transform {postprocess!r} is not supported")
    tree_class = h.get_field("class_id").astype(np.int32)
    treelite_base = np.asarray(h.get_field("base_scores"), dtype=np.float64).reshape(-1)[:num_class]

    first = tl.get_tree_accessor(0)
    thr_dtype = first.get_field("threshold").dtype
    leaf_dtype = first.get_field("leaf_value").dtype
    trees = []
    for t in range(int(tl.num_tree)):
        acc = tl.get_tree_accessor(t)
        f = {name: np.array(acc.get_field(key), copy=True) for name, key in _FIELDS.items()}
        n = len(f["node_type"])
        bad = set(np.unique(f["node_type"]).tolist()) - {LEAF, NUMERICAL, CATEGORICAL}
        if bad:
            raise UserError(f"{where}: tree {t} has an unknown node type {sorted(bad)[0]}")
        codes = np.asarray(acc.get_field("cmp"))
        cmp = np.full(n, "", dtype="<U2")
        for i in np.flatnonzero(f["node_type"] == NUMERICAL):
            op = _CMP.get(int(codes[i]))
            if op is None:
                raise UserError(f"{where}: tree {t} uses an unsupported comparison (code {int(codes[i])})")
            cmp[i] = op
        weight = np.ones(n)  # training rows per node (LightGBM), else hessian sum (XGBoost)
        for key in ("data_count", "sum_hess"):
            w, present = acc.get_field(key), acc.get_field(f"{key}_present")
            if len(w) == n and len(present) == n and present.all():
                weight = w.astype(np.float64)
                break
        trees.append(Tree(
            node_type=f["node_type"].astype(np.int8), left=f["left"].astype(np.int32),
            right=f["right"].astype(np.int32), feature=f["feature"].astype(np.int32),
            threshold=f["threshold"].astype(thr_dtype), cmp=cmp, default_left=f["default_left"].astype(bool),
            leaf_value=f["leaf_value"].astype(leaf_dtype), cat_begin=f["cat_begin"].astype(np.int64),
            cat_end=f["cat_end"].astype(np.int64),
            cat_list=np.array(acc.get_field("category_list"), dtype=np.int64, copy=True),
            cats_right=f["cats_right"].astype(bool), weight=weight,
        ))
    forest = Forest(
        origin=str(where), source_format=model.format, sha256=model.sha256,
        num_feature=int(h.get_field("num_feature")[0]), num_class=num_class, trees=tuple(trees),
        tree_class=tree_class, base_margin=_base_margin(model, treelite_base.astype(leaf_dtype)),
        threshold_type="float32" if thr_dtype == np.float32 else "float64",
        leaf_type="float32" if leaf_dtype == np.float32 else "float64",
        postprocess=postprocess, sigmoid_alpha=float(h.get_field("sigmoid_alpha")[0]), link=model.link,
        feature_names=model.feature_names, feature_types=model.feature_types, categories=categories,
        zero_threshold=model.format == "lightgbm", treelite=tl,
    )
    if len(forest.comparisons()) > 1:
        raise UserError(f"{where}: mixed split comparisons {sorted(forest.comparisons())} are not supported")
    return forest


# XGBoost keeps base_score as a probability-space float and turns it into a margin
# in float32 with the C library's logf (xgboost/src/objective/regression_loss.h,
# ProbToMargin); treelite does the same in double.  The two can differ in the last
# bit, which would make every batch margin differ in the last bit, so for XGBoost
# JSON models fecc redoes XGBoost's float32 arithmetic (UBJSON keeps treelite's value).
_LOGIT_OBJECTIVES = ("binary:logistic", "reg:logistic", "binary:logitraw")
_LOG_OBJECTIVES = ("count:poisson", "reg:gamma", "reg:tweedie")


def _base_margin(model: LegacyModel, treelite_base: np.ndarray) -> np.ndarray:
    """Base margin per output column (``treelite_base``: treelite's, in the leaf type) exactly as
    the producing library computes it."""
    if model.format != "xgboost_json" or treelite_base.dtype != np.float32:
        return treelite_base
    base = model.base_score if isinstance(model.base_score, tuple) else (model.base_score,)
    prob = np.asarray(base, dtype=np.float32)
    if prob.size == 1:
        prob = np.repeat(prob, treelite_base.size)
    if prob.size != treelite_base.size:
        return treelite_base
    libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    libm.logf.restype, libm.logf.argtypes = ctypes.c_float, [ctypes.c_float]
    if model.objective in _LOGIT_OBJECTIVES:
        margin = [-libm.logf(float(np.float32(1) / p - np.float32(1))) for p in prob]
    elif model.objective in _LOG_OBJECTIVES:
        margin = [libm.logf(float(p)) for p in prob]
    else:
        margin = list(prob)
    margin = np.asarray(margin, dtype=np.float32)
    # Only a last-bit correction is expected; anything larger means the objective
    # table above is wrong for this model, and treelite's value is the safer one.
    if not np.allclose(margin, treelite_base, rtol=1e-5, atol=1e-6):
        return treelite_base
    return margin
