"""Read a frozen legacy model file and describe it in one normalised record.

fecc never retrains or alters the legacy model; it only needs to know what the file
*is* before lowering it: which library wrote it, which objective (and so which link
turns the summed leaves into the user-facing output), how many features and classes,
the intercept, and whether it holds anything the tree backend cannot reproduce
exactly.  This module answers that without running the model, and for LightGBM
without importing lightgbm.

Formats are recognised by their bytes, not their file name:

* XGBoost JSON (``Booster.save_model("m.json")``), versions 1.0 to 3.x.  The layout
  drifted between releases; the differences handled here are

  - ``learner_model_param.base_score``: a scalar string (``"5E-1"``) up to 3.0, a
    bracketed array string (``"[5E-1]"``, one entry per class/target) from 3.1;
  - ``size_leaf_vector``: ``"0"`` in 1.x, ``"1"`` from 2.0 for scalar leaves;
  - ``iteration_indptr`` (2.0+) next to ``tree_info``;
  - ``feature_names`` / ``feature_types``: empty lists when the model was trained
    without them; ``"c"`` marks a categorical feature (1.6+);
  - categorical splits (``split_type`` 1, ``categories*`` arrays, 1.6+), whose
    unused ``split_conditions`` are a JSON ``NaN`` literal in 2.1 and ``1e-45`` in
    3.0+;
  - multiclass ``base_score``: one value added unchanged to every class (< 3.1),
    one fitted value per class (3.1+);
  - the category values of pandas categoricals, ``model.cats`` (3.1+);
  - ``dart``: trees under ``gradient_booster.gbtree`` plus ``weight_drop``.

* XGBoost UBJSON (``m.ubj``, 2.1+): the same document in Universal Binary JSON,
  decoded by a small reader (:mod:`fecc.frontend.ubjson`, no xgboost needed).
* LightGBM text (``Booster.save_model("model.txt")``), format ``v3`` (2.x) and
  ``v4`` (3.x, 4.x).

Everything we cannot lower faithfully is refused with a one-line
:class:`fecc.errors.UserError`: gblinear, multi-output/vector-leaf trees, ranking,
survival and hinge objectives, custom objectives, LightGBM linear trees, pickles,
XGBoost's deprecated binary format, files the libraries themselves cannot load
(BOM-prefixed JSON, CRLF model.txt), and files that are not models at all.
The fixtures in ``tests/data/models`` (built by ``tests/fixtures/make_models.py``
with XGBoost 1.7.6 to 3.2.0 and LightGBM 2.3.1 to 4.7.0) pin each of these.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fecc.errors import UserError

from .ubjson import UBJSONError, UBJSONReader

__all__ = ["LegacyModel", "load_legacy_model"]


@dataclass(frozen=True)
class LegacyModel:
    """What fecc knows about a legacy model file, the same for every library.

    Attributes
    ----------
    path : Path
        The model file as given (resolved to an absolute path).
    format : str
        ``"xgboost_json"``, ``"xgboost_ubjson"`` or ``"lightgbm"`` (the text
        ``model.txt``), detected from the file's content.
    library_version : str or None
        Version of the library that wrote the file, e.g. ``"1.7.6"`` from XGBoost's
        ``"version"`` field.  LightGBM does not record its version: ``None``.
    format_version : str or None
        LightGBM's model-format tag (``"v3"``, ``"v4"``); for XGBoost the same as
        ``library_version``.
    objective : str
        The objective as the library names it: ``"binary:logistic"``,
        ``"reg:squarederror"``, ``"multi:softprob"`` ... for XGBoost, ``"binary"``,
        ``"regression"``, ``"multiclass"`` ... for LightGBM.
    task : str
        ``"binary"``, ``"regression"`` or ``"multiclass"``.
    link : str
        How the margin (intercept + sum of leaves) becomes the library's default
        prediction: ``"identity"``, ``"logistic"`` (1 / (1 + exp(-m))), ``"exp"``,
        ``"softmax"`` (across classes), or ``"argmax"`` (XGBoost ``multi:softmax``,
        whose prediction is the class index; its probabilities are the softmax of
        the margins).  For LightGBM ``multiclassova`` the link is ``"logistic"``
        applied to each class separately.
    num_class : int
        Number of classes, 1 for binary and regression models.
    num_feature : int
        Number of input columns the model expects.
    feature_names : tuple of str or None
        Column names stored in the model; ``None`` when the model was trained
        without names (XGBoost then calls them ``f0..fN``, LightGBM
        ``Column_0..Column_N``).
    feature_types : tuple of str or None
        Types as stored: XGBoost's ``"float"``, ``"int"``, ``"i"``, ``"q"``, ``"c"``
        (categorical); for LightGBM ``"float"`` or ``"c"``.  ``None`` when XGBoost
        stored no types.
    base_score : float or tuple of float
        The intercept in OUTPUT space, as the library defines and stores it: for
        XGBoost the ``base_score`` parameter (a probability for logistic
        objectives, a mean for exp-link objectives, a raw score for
        ``binary:logitraw`` and softmax).  A tuple with one entry per class for
        multiclass models (XGBoost < 3.1 stores one value for all classes; it is
        repeated).
        LightGBM folds its initial score into the first trees and stores none, so
        its ``base_score`` is the link applied to a zero margin.
    base_margin : float or tuple of float
        The same intercept in MARGIN space: what is added to the sum of leaf
        values before the link.  XGBoost maps ``base_score`` through the
        objective's inverse link (logit for logistic objectives, log for
        poisson/gamma/tweedie, unchanged otherwise, including softmax and
        ``binary:logitraw``); LightGBM has 0.  Computed in float64 here; XGBoost
        computes it in float32, so the two can differ in the last float32 bit.
    num_trees : int
        Number of trees in the file (all classes and parallel trees together).
    booster : str
        ``"gbtree"`` or ``"dart"`` for XGBoost; ``"gbdt"``, ``"dart"``, ``"goss"``
        or ``"rf"`` for LightGBM.
    best_iteration : int or None
        XGBoost's ``best_iteration`` attribute (early stopping), else ``None``.
        ``Booster.predict`` and fecc use every tree, but the scikit-learn wrappers
        (``XGBClassifier.predict``) stop after ``best_iteration + 1`` rounds: when
        it is below the last round, what users saw in production may differ from
        the file's full ensemble.  LightGBM writes only the best iterations' trees
        into model.txt, so it is ``None`` there.
    categories : tuple or None
        One entry per feature when the model stored the category values it was
        trained on: a tuple of values whose position is the integer code the trees
        test, or ``None`` for a feature without stored values.  XGBoost 3.1+ stores
        them (``cats``) for pandas categoricals; LightGBM stores
        ``pandas_categorical``.  ``None`` when the model stored none: its
        categorical features then take the integer codes directly.
    sha256 : str
        Hex digest of the model file's bytes.
    source : bytes
        The model file's bytes, read once here: the forest IR (:func:`fecc.frontend.load_forest`)
        and the reference predictions are built from them, never from the file again.
    """

    path: Path
    format: str
    library_version: str | None
    format_version: str | None
    objective: str
    task: str
    link: str
    num_class: int
    num_feature: int
    feature_names: tuple[str, ...] | None
    feature_types: tuple[str, ...] | None
    base_score: float | tuple[float, ...]
    base_margin: float | tuple[float, ...]
    num_trees: int
    booster: str
    best_iteration: int | None
    categories: tuple | None
    sha256: str
    source: bytes = field(default=b"", repr=False, compare=False)


def load_legacy_model(path: str | Path) -> LegacyModel:
    """Read a legacy model file and describe it.

    Parameters
    ----------
    path : str or Path
        An XGBoost JSON or UBJSON model, or a LightGBM ``model.txt``.  The format
        is detected from the content; the extension is not trusted.

    Returns
    -------
    LegacyModel
        The normalised description.  The file itself is not modified.

    Raises
    ------
    UserError
        If the path is missing or not a file, the file is empty, truncated or not a
        model, or the model uses something fecc cannot compile exactly (gblinear,
        vector leaves, linear trees, ranking/survival/custom objectives ...).
    """
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise UserError(f"model file not found: {path}")
    if not path.is_file():
        raise UserError(f"model path is not a file: {path}")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    kind = _sniff(data, path)
    try:
        return replace(_parse(path, data, kind, digest), source=data)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # A document that parses but has the wrong shape inside (a string where a
        # number belongs, a list where an object does) is a damaged model file.
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise UserError(f"{path.name}: malformed {kind} model ({detail})") from None


def _parse(path: Path, data: bytes, kind: str, digest: str) -> LegacyModel:
    """Dispatch on the sniffed format."""
    if kind == "lightgbm":
        return _lightgbm(path, data, digest)
    if kind == "xgboost_json":
        depth = _json_nesting(data)
        if depth > MAX_NESTING:
            raise UserError(f"{path.name}: not a model: JSON nested {depth} levels deep "
                            f"(XGBoost models nest fewer than {MAX_NESTING})")
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{path.name}: not valid JSON, the file may be truncated ({exc})") from None
    else:
        try:
            doc = UBJSONReader(data, MAX_NESTING).read_document()
        except (UBJSONError, struct.error, IndexError, UnicodeDecodeError) as exc:
            raise UserError(f"{path.name}: not a readable UBJSON model, the file may be truncated ({exc})") from None
    return _xgboost(path, doc, kind, digest)


#: Deepest nesting a model document may have (XGBoost writes under 10 levels).  Deeper input is
#: refused before it is decoded: decoding it would exhaust the stack (a RecursionError, or a crash).
MAX_NESTING = 100

_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')


def _json_nesting(data: bytes) -> int:
    """Deepest ``[``/``{`` nesting of a JSON text, brackets inside strings not counted (no loop per byte)."""
    import numpy as np

    b = np.frombuffer(_JSON_STRING.sub(b"", data), dtype=np.uint8)
    step = (b == ord("[")).astype(np.int32) + (b == ord("{")) - (b == ord("]")) - (b == ord("}"))
    return int(step.cumsum().max(initial=0))


# --------------------------------------------------------------------------- sniffing

def _sniff(data: bytes, path: Path) -> str:
    """Name the format of ``data`` from its first bytes, or raise UserError."""
    name = path.name
    if not data.strip():
        raise UserError(f"{name}: the model file is empty")
    if data[:2] == b"\x1f\x8b" or data[:3] == b"BZh" or data[:6] == b"\xfd7zXZ\x00":
        raise UserError(f"{name}: the model file is compressed (gzip/bzip2/xz); decompress it first")
    if data.startswith(b"\xef\xbb\xbf"):
        # Neither xgboost nor treelite parses a JSON model after a BOM.
        raise UserError(
            f"{name}: starts with a UTF-8 byte-order mark (re-saved by an editor?); "
            "xgboost/lightgbm cannot load it either: remove the first 3 bytes"
        )
    head = data.lstrip()[:2]
    if head[:1] == b"{":
        # Text JSON continues with a quoted key or "}"; UBJSON continues with a
        # length marker for the first key, or "$"/"#" of an optimised container.
        if len(head) > 1 and head[1:2] in b"iUIlL$#":
            return "xgboost_ubjson"
        return "xgboost_json"
    if data.startswith(b"tree\r\n"):
        # LightGBM aborts the whole process (not an exception) on such a file.
        raise UserError(
            f"{name}: LightGBM model with Windows line endings (CRLF); LightGBM cannot "
            "load it either: convert it with dos2unix"
        )
    if data.startswith(b"tree\n"):
        return "lightgbm"
    if data[:1] == b"\x80" or data[:2] == b"PK":
        # Pickles (and joblib/zip archives) would have to be executed to be read.
        raise UserError(
            f"{name}: looks like a pickle/joblib file; fecc does not unpickle models, "
            "save one with booster.save_model('model.json') (XGBoost) or "
            "booster.save_model('model.txt') (LightGBM)"
        )
    convert = "load it with the xgboost version that wrote it and save_model('model.json')"
    if data.startswith(b"binf"):
        raise UserError(f"{name}: XGBoost's old binary format is not supported; {convert}")
    hint = ""
    if name.endswith((".model", ".bin", ".deprecated")):
        # The headerless old binary format has no signature to check; only hint.
        hint = f"; if it is XGBoost's old binary format, {convert}"
    raise UserError(
        f"{name}: not a model fecc can read (expected XGBoost JSON/UBJSON or LightGBM model.txt){hint}"
    )


# --------------------------------------------------------------------------- XGBoost

# objective -> (task, link, how base_score maps to the margin).  The third entry
# mirrors each objective's ProbToMargin in XGBoost's src/objective/: logistic
# objectives use the logit, the log-link count/positive objectives use log,
# everything else adds base_score unchanged.  Checked against the fixtures' own
# margins for 1.7 to 3.2 (tests/test_models_frontend.py): binary:logitraw adds
# base_score unchanged (0.5 in 1.7 shifts the margin by 0.5), and softmax does too,
# whether base_score is one scalar (< 3.1) or one value per class (3.1+).
_XGB_OBJECTIVES: dict[str, tuple[str, str, str]] = {
    "binary:logistic": ("binary", "logistic", "logit"),
    "binary:logitraw": ("binary", "identity", "identity"),
    "reg:logistic": ("regression", "logistic", "logit"),
    "reg:squarederror": ("regression", "identity", "identity"),
    "reg:linear": ("regression", "identity", "identity"),  # pre-1.0 name of the above
    "reg:squaredlogerror": ("regression", "identity", "identity"),
    "reg:pseudohubererror": ("regression", "identity", "identity"),
    "reg:absoluteerror": ("regression", "identity", "identity"),
    "reg:quantileerror": ("regression", "identity", "identity"),
    "count:poisson": ("regression", "exp", "log"),
    "reg:gamma": ("regression", "exp", "log"),
    "reg:tweedie": ("regression", "exp", "log"),
    "multi:softprob": ("multiclass", "softmax", "identity"),
    "multi:softmax": ("multiclass", "argmax", "identity"),
}

# Known but refused, with the reason users see.
_XGB_REFUSED_PREFIXES = {
    "rank:": "ranking models are not supported (fecc compiles binary, regression and multiclass models)",
    "survival:": "survival models are not supported (fecc compiles binary, regression and multiclass models)",
    "binary:hinge": "it predicts a hard 0/1 label with no score to improve on; fecc needs a scoring objective such as binary:logistic",
}


def _xgboost(path: Path, doc: Any, fmt: str, digest: str) -> LegacyModel:
    name = path.name
    if not isinstance(doc, dict) or "learner" not in doc:
        if isinstance(doc, dict) and "tree_info" in doc and "objective" in doc:
            raise UserError(f"{name}: this is a LightGBM JSON dump; give fecc the model.txt from booster.save_model()")
        raise UserError(f"{name}: JSON without a 'learner' object is not an XGBoost model")
    learner = _field(doc, "learner", dict, name)
    version = doc.get("version")
    library_version = ".".join(str(int(v)) for v in version) if isinstance(version, list) else None

    booster_doc = _field(learner, "gradient_booster", dict, name)
    booster = str(booster_doc.get("name", ""))
    if booster == "gblinear":
        raise UserError(f"{name}: gblinear (linear booster) models are not supported; fecc compiles tree ensembles")
    if booster == "dart":
        # DART keeps the trees in a nested gbtree plus one weight per tree;
        # at inference XGBoost scales each tree's output by its weight.
        model = _field(_field(booster_doc, "gbtree", dict, name), "model", dict, name)
        weights = booster_doc.get("weight_drop")
        if not isinstance(weights, list):
            raise UserError(f"{name}: dart model without 'weight_drop'; the file is damaged")
    elif booster == "gbtree":
        model = _field(booster_doc, "model", dict, name)
        weights = None
    else:
        raise UserError(f"{name}: unknown XGBoost booster {booster!r}; fecc supports gbtree and dart")

    trees = _field(model, "trees", list, name)
    declared = model.get("gbtree_model_param", {}).get("num_trees")
    if declared is not None and int(declared) != len(trees):
        raise UserError(f"{name}: declares {declared} trees but holds {len(trees)}; the file is damaged")
    if weights is not None and len(weights) != len(trees):
        raise UserError(f"{name}: dart model has {len(weights)} tree weights for {len(trees)} trees")
    for tree in trees:
        # size_leaf_vector is "0" (1.x) or "1" (2.0+) for scalar leaves; more
        # means multi_strategy="multi_output_tree", which has no exact lowering.
        if int(tree.get("tree_param", {}).get("size_leaf_vector", "0")) > 1:
            raise UserError(f"{name}: vector-leaf (multi_output_tree) models are not supported")

    objective_doc = _field(learner, "objective", dict, name)
    objective = str(objective_doc.get("name", ""))
    for prefix, why in _XGB_REFUSED_PREFIXES.items():
        if objective.startswith(prefix):
            raise UserError(f"{name}: objective {objective}: {why}")
    if objective not in _XGB_OBJECTIVES:
        raise UserError(f"{name}: unknown or unsupported XGBoost objective {objective!r}")
    task, link, to_margin = _XGB_OBJECTIVES[objective]

    params = _field(learner, "learner_model_param", dict, name)
    num_feature = int(params.get("num_feature", 0))
    num_class = max(int(params.get("num_class", "0")), 1)
    num_target = int(params.get("num_target", "1"))
    if num_target > 1:
        raise UserError(f"{name}: multi-target model ({num_target} targets) is not supported")
    if task == "multiclass" and num_class < 2:
        raise UserError(f"{name}: objective {objective} with num_class={num_class}")

    base = _xgb_base_score(params.get("base_score"), num_class, name)
    margin = tuple(_to_margin(b, to_margin, name) for b in base)

    names = learner.get("feature_names") or None
    types = learner.get("feature_types") or None
    for what, values in (("feature_names", names), ("feature_types", types)):
        if values is not None and len(values) != num_feature:
            raise UserError(f"{name}: {len(values)} {what} for {num_feature} features; the file is damaged")

    return LegacyModel(
        path=path,
        format=fmt,
        library_version=library_version,
        format_version=library_version,
        objective=objective,
        task=task,
        link=link,
        num_class=num_class,
        num_feature=num_feature,
        feature_names=tuple(str(n) for n in names) if names else None,
        feature_types=tuple(str(t) for t in types) if types else None,
        base_score=base if num_class > 1 else base[0],
        base_margin=margin if num_class > 1 else margin[0],
        num_trees=len(trees),
        booster=booster,
        best_iteration=_xgb_best_iteration(learner.get("attributes")),
        categories=_xgb_categories(model.get("cats"), num_feature, name),
        sha256=digest,
    )


def _xgb_base_score(raw: Any, num_class: int, name: str) -> tuple[float, ...]:
    """Parse ``base_score``: ``"5E-1"`` (<= 3.0) or ``"[5E-1]"`` / ``"[a,b,c]"`` (3.1+)."""
    if raw is None:
        raise UserError(f"{name}: learner_model_param has no base_score; the file is damaged")
    text = str(raw).strip()
    try:
        if text.startswith("["):
            values = tuple(float(v) for v in text.strip("[]").split(",") if v.strip())
        else:
            values = (float(text),)
    except ValueError:
        raise UserError(f"{name}: unreadable base_score {raw!r}") from None
    if len(values) == 1:
        values = values * num_class
    if len(values) != num_class:
        raise UserError(f"{name}: base_score has {len(values)} values for {num_class} classes")
    return values


def _xgb_best_iteration(attributes: Any) -> int | None:
    """``best_iteration`` from the learner's string attributes, when early stopping set it."""
    if isinstance(attributes, dict) and "best_iteration" in attributes:
        return int(attributes["best_iteration"])
    return None


def _xgb_categories(cats: Any, num_feature: int, name: str) -> tuple | None:
    """Category values stored by XGBoost 3.1+ (``model.cats.enc``), one entry per feature.

    Strings are stored as UTF-8 bytes in ``values`` cut by ``offsets``; numeric
    categories as plain ``values``; features without categories have both empty.
    """
    if not isinstance(cats, dict) or not cats.get("enc"):
        return None
    enc = cats["enc"]
    if len(enc) != num_feature:
        raise UserError(f"{name}: stored categories for {len(enc)} of {num_feature} features; the file is damaged")
    out = []
    for feature in enc:
        values, offsets = feature.get("values") or [], feature.get("offsets") or []
        if offsets:
            blob = bytes(int(v) & 0xFF for v in values)
            out.append(tuple(blob[a:b].decode("utf-8") for a, b in zip(offsets, offsets[1:])))
        else:
            out.append(tuple(values) if values else None)
    return tuple(out) if any(v is not None for v in out) else None


def _to_margin(value: float, how: str, name: str) -> float:
    """Map a stored base_score to the margin the way XGBoost's ProbToMargin does."""
    try:
        if how == "logit":
            return -math.log(1.0 / value - 1.0)
        if how == "log":
            return math.log(value)
    except (ValueError, ZeroDivisionError):
        raise UserError(f"{name}: base_score {value!r} is outside the objective's range") from None
    return value


def _field(obj: dict, key: str, kind: type, name: str) -> Any:
    """``obj[key]`` checked to be a ``kind``; a damaged model otherwise."""
    value = obj.get(key)
    if not isinstance(value, kind):
        raise UserError(f"{name}: missing or malformed '{key}' in the model; not an XGBoost model or damaged")
    return value


# --------------------------------------------------------------------------- LightGBM

# objective name -> (task, link).  Names are what LightGBM writes after
# "objective=" (its canonical names, never the aliases accepted at training).
_LGB_OBJECTIVES: dict[str, tuple[str, str]] = {
    "binary": ("binary", "logistic"),
    "cross_entropy": ("binary", "logistic"),
    "regression": ("regression", "identity"),
    "regression_l1": ("regression", "identity"),
    "huber": ("regression", "identity"),
    "fair": ("regression", "identity"),
    "quantile": ("regression", "identity"),
    "mape": ("regression", "identity"),
    "poisson": ("regression", "exp"),
    "gamma": ("regression", "exp"),
    "tweedie": ("regression", "exp"),
    "multiclass": ("multiclass", "softmax"),
    "multiclassova": ("multiclass", "logistic"),
}

_LGB_AUTO_NAME = re.compile(r"Column_(\d+)$")


def _lightgbm(path: Path, data: bytes, digest: str) -> LegacyModel:
    name = path.name
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{name}: a LightGBM model.txt must be UTF-8 text") from None
    lines = text.splitlines()
    header: dict[str, str] = {}
    for line in lines[1:]:
        if not line.strip():
            break
        key, sep, value = line.partition("=")
        if sep:
            header[key.strip()] = value.strip()
        else:
            header[line.strip()] = ""  # flags such as "average_output"

    num_trees = sum(1 for line in lines if line.startswith("Tree="))
    # A file cut short loses "end of trees"; a damaged one disagrees with its
    # own tree_sizes list (one byte count per tree).
    if "end of trees" not in text:
        raise UserError(f"{name}: LightGBM model has no 'end of trees' line; the file is truncated")
    sizes = header.get("tree_sizes", "").split()
    if sizes and len(sizes) != num_trees:
        raise UserError(f"{name}: LightGBM model lists {len(sizes)} tree sizes but holds {num_trees} trees")
    if any(line.strip() == "is_linear=1" for line in lines):
        raise UserError(f"{name}: LightGBM linear trees (linear_tree=true) are not supported")

    for key in ("max_feature_idx", "objective", "num_class"):
        if key not in header:
            raise UserError(f"{name}: LightGBM header has no '{key}'; the file is damaged")
    tokens = header["objective"].split()
    objective = tokens[0] if tokens else ""
    options = dict(t.split(":", 1) for t in tokens[1:] if ":" in t)
    flags = {t for t in tokens[1:] if ":" not in t}
    if objective not in _LGB_OBJECTIVES:
        raise UserError(f"{name}: unknown or unsupported LightGBM objective {header['objective']!r}")
    if "sqrt" in flags:
        # reg_sqrt=true: LightGBM squares the margin back (sign(m) * m^2).
        raise UserError(f"{name}: LightGBM regression with reg_sqrt=true is not supported")
    if float(options.get("sigmoid", "1")) != 1.0:
        raise UserError(f"{name}: LightGBM sigmoid={options['sigmoid']} is not supported (only 1)")
    task, link = _LGB_OBJECTIVES[objective]

    num_class = int(header["num_class"])
    num_feature = int(header["max_feature_idx"]) + 1
    raw_names = header.get("feature_names", "").split()
    if raw_names and len(raw_names) != num_feature:
        raise UserError(f"{name}: {len(raw_names)} feature names for {num_feature} features")
    auto = all((m := _LGB_AUTO_NAME.match(n)) and int(m.group(1)) == i for i, n in enumerate(raw_names))
    infos = header.get("feature_infos", "").split()
    # Numerical features are "[min:max]" or "none" (unused); categorical ones list
    # their category codes, "0:3:1".
    types = tuple("float" if i.startswith("[") or i == "none" else "c" for i in infos) or None

    margin = 0.0  # LightGBM folds its initial score (boost_from_average) into the trees
    base = {"logistic": 0.5, "exp": 1.0, "identity": 0.0, "softmax": 1.0 / max(num_class, 1)}[link]

    return LegacyModel(
        path=path,
        format="lightgbm",
        library_version=None,
        format_version=lines[1].partition("=")[2].strip() if lines[1].startswith("version=") else None,
        objective=objective,
        task=task,
        link=link,
        num_class=num_class,
        num_feature=num_feature,
        feature_names=None if auto else tuple(raw_names) or None,
        feature_types=types,
        base_score=(base,) * num_class if num_class > 1 else base,
        base_margin=(margin,) * num_class if num_class > 1 else margin,
        num_trees=num_trees,
        booster=_lgb_booster(lines, header),
        best_iteration=None,
        categories=_lgb_categories(lines, types, name),
        sha256=digest,
    )


def _lgb_booster(lines: list[str], header: dict[str, str]) -> str:
    """The boosting type from the parameters section, "rf" when outputs are averaged."""
    if "average_output" in header:
        return "rf"
    for line in lines:
        if line.startswith("[boosting: "):
            return line[len("[boosting: "):].rstrip("]").strip()
    return "gbdt"  # models written without a parameters section


def _lgb_categories(lines: list[str], types: tuple[str, ...] | None, name: str) -> tuple | None:
    """LightGBM's ``pandas_categorical`` trailer spread onto features, one entry each.

    LightGBM writes one list per pandas category column, in column order, without
    saying which column; they are the model's categorical features in order.  When
    the counts differ (some categorical features came from integer columns) the
    mapping is ambiguous, and guessing would silently recode the user's data.
    """
    values = None
    for line in reversed(lines):
        if line.startswith("pandas_categorical:"):
            try:
                values = json.loads(line[len("pandas_categorical:"):])
            except json.JSONDecodeError:
                raise UserError(f"{name}: unreadable pandas_categorical line") from None
            break
    if not values:
        return None
    slots = [i for i, t in enumerate(types or ()) if t == "c"]
    if len(slots) != len(values):
        raise UserError(
            f"{name}: pandas_categorical has {len(values)} columns but the model has "
            f"{len(slots)} categorical features; cannot tell which is which"
        )
    out: list[tuple | None] = [None] * len(types or ())
    for slot, cats in zip(slots, values):
        out[slot] = tuple(cats)
    return tuple(out)
