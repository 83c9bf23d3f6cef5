"""The legacy-model frontend reads every library version's files the same way.

Fixtures come from ``tests/fixtures/make_models.py``: each was trained with an old
XGBoost/LightGBM in a side venv, and ``tests/data/models/index.json`` says how it was
trained (the expectations below never come from the code under test).  The base
score and link are checked against *the writing library's own* margins and outputs:
the margin is rebuilt from the model file (intercept + the leaf each row reached,
recorded by that library) and the output from the margin through ``link``.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fecc.errors import UserError
from fecc.frontend.models import LegacyModel, load_legacy_model

MODELS = Path(__file__).parent / "data" / "models"
INDEX = json.loads((MODELS / "index.json").read_text())["fixtures"]
FIXTURES = {f"{e['path']}": e for e in INDEX}


def _fixture(request_id: str) -> tuple[dict, LegacyModel, dict]:
    entry = FIXTURES[request_id]
    model = load_legacy_model(MODELS / entry["path"])
    data = dict(np.load(MODELS / entry["data"]))
    return entry, model, data


@pytest.mark.parametrize("fixture_id", sorted(FIXTURES))
def test_metadata_matches_how_the_fixture_was_trained(fixture_id):
    entry, model, data = _fixture(fixture_id)
    path = MODELS / entry["path"]
    assert model.path == path.resolve()
    assert model.format == entry["format"]
    assert model.objective == entry["objective"]
    assert model.task == entry["task"]
    assert model.link == entry["link"]
    assert model.num_class == entry["num_class"]
    assert model.num_feature == entry["num_feature"] == data["X"].shape[1]
    assert model.booster == entry["booster"]
    assert model.num_trees == data["leaf"].shape[1]
    assert model.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    if entry["library"] == "xgboost":
        assert model.library_version == entry["library_version"]
    else:
        assert model.library_version is None and model.format_version in ("v3", "v4")
    names = entry["feature_names"]
    assert model.feature_names == (tuple(names) if names else None)


@pytest.mark.parametrize("fixture_id", sorted(FIXTURES))
def test_feature_types_mark_categorical_columns(fixture_id):
    entry, model, _ = _fixture(fixture_id)
    if entry["feature_types"]:
        assert model.feature_types == tuple(entry["feature_types"])
    elif entry["library"] == "xgboost":
        assert model.feature_types is None  # XGBoost stores [] when none were given
    else:
        assert model.feature_types == ("float",) * entry["num_feature"]
    if entry.get("categories"):
        expected = [None] * entry["num_feature"]
        for column, values in entry["categories"].items():
            expected[entry["feature_names"].index(column)] = tuple(values)
        assert model.categories == tuple(expected)
    else:
        assert model.categories is None


def _leaf_sum_xgboost(path: Path, leaf: np.ndarray, num_class: int) -> np.ndarray:
    """Sum of the leaf values each row reached, per class, read from the JSON."""
    doc = json.loads(path.read_text())
    booster = doc["learner"]["gradient_booster"]
    model = booster["gbtree"]["model"] if booster["name"] == "dart" else booster["model"]
    weights = booster.get("weight_drop") or [1.0] * len(model["trees"])
    total = np.zeros((leaf.shape[0], num_class))
    for t, tree in enumerate(model["trees"]):
        # A leaf's value sits in split_conditions at the leaf's node id.
        values = np.asarray(tree["split_conditions"], dtype=np.float64)
        total[:, model["tree_info"][t]] += values[leaf[:, t]] * weights[t]
    return total


def _leaf_sum_lightgbm(path: Path, leaf: np.ndarray, num_class: int) -> np.ndarray:
    """Same for a LightGBM model.txt: ``leaf_value=`` lines in tree order."""
    trees = [np.array(line.split("=", 1)[1].split(), dtype=np.float64)
             for line in path.read_text().splitlines() if line.startswith("leaf_value=")]
    total = np.zeros((leaf.shape[0], num_class))
    for t, values in enumerate(trees):
        total[:, t % num_class] += values[leaf[:, t]]
    return total


@pytest.mark.parametrize("fixture_id", sorted(FIXTURES))
def test_base_margin_reproduces_the_library_margin(fixture_id):
    entry, model, data = _fixture(fixture_id)
    if model.format == "xgboost_ubjson":
        pytest.skip("same trees as the JSON sibling; compared in test_ubjson_reads_like_json")
    leaf, margin = data["leaf"], data["margin"].reshape(len(data["leaf"]), -1)
    summer = _leaf_sum_lightgbm if model.format == "lightgbm" else _leaf_sum_xgboost
    rebuilt = summer(MODELS / entry["path"], leaf, model.num_class) + np.atleast_1d(model.base_margin)
    # XGBoost accumulates in float32: a few ulps of the margin.
    np.testing.assert_allclose(rebuilt, margin, rtol=0, atol=2e-6)


def _apply_link(margin: np.ndarray, link: str) -> np.ndarray:
    if link == "identity":
        return margin
    if link == "logistic":
        return 1.0 / (1.0 + np.exp(-margin))
    if link == "exp":
        return np.exp(margin)
    if link == "softmax":
        e = np.exp(margin - margin.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if link == "argmax":
        return margin.argmax(axis=1).astype(np.float64)
    raise AssertionError(f"unexpected link {link}")


@pytest.mark.parametrize("fixture_id", sorted(FIXTURES))
def test_link_turns_library_margin_into_library_output(fixture_id):
    _, model, data = _fixture(fixture_id)
    rows = len(data["X"])
    margin = data["margin"].reshape(rows, -1)
    output = data["output"].reshape(rows, -1)
    expected = _apply_link(margin, model.link).reshape(rows, -1)
    np.testing.assert_allclose(expected, output, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fixture_id", sorted(FIXTURES))
def test_base_score_is_the_link_of_base_margin(fixture_id):
    _, model, _ = _fixture(fixture_id)
    score = np.atleast_1d(model.base_score).astype(np.float64)
    margin = np.atleast_1d(model.base_margin).astype(np.float64)
    assert score.shape == margin.shape == (model.num_class,)
    if model.link in ("logistic", "exp", "identity"):
        np.testing.assert_allclose(_apply_link(margin, model.link), score, rtol=1e-12)
    elif model.format == "lightgbm":
        np.testing.assert_allclose(score, 1.0 / model.num_class)
    else:
        np.testing.assert_array_equal(score, margin)  # XGBoost softmax: added unchanged


@pytest.mark.parametrize("fixture_id", sorted(k for k, e in FIXTURES.items() if e["format"] == "xgboost_ubjson"))
def test_ubjson_reads_like_json(fixture_id):
    entry, ubj, _ = _fixture(fixture_id)
    js = load_legacy_model(MODELS / entry["path"].replace(".ubj", ".json"))
    differ = {f for f in LegacyModel.__dataclass_fields__ if getattr(ubj, f) != getattr(js, f)}
    assert differ == {"path", "format", "sha256", "source"}  # the same model, other bytes


def test_xgboost_version_differences_are_normalised():
    """1.7's "5E-1" and 3.2's "[3.475E-1]" both become a float; [] becomes None."""
    old = load_legacy_model(MODELS / "xgboost-1.7.6" / "binary_logistic.json")
    new = load_legacy_model(MODELS / "xgboost-3.2.0" / "binary_logistic.json")
    assert isinstance(old.base_score, float) and isinstance(new.base_score, float)
    assert old.base_score == 0.5 and old.base_margin == 0.0
    multi = load_legacy_model(MODELS / "xgboost-3.2.0" / "multi_softprob.json")
    assert isinstance(multi.base_score, tuple) and len(set(multi.base_score)) > 1
    nonames = load_legacy_model(MODELS / "xgboost-1.7.6" / "binary_logistic_nonames.json")
    assert nonames.feature_names is None and nonames.feature_types is None


def test_extension_is_not_trusted(tmp_path):
    """A JSON model named .txt and a model.txt named .json still load as what they are."""
    src_json = MODELS / "xgboost-2.0.3" / "binary_logistic.json"
    src_txt = MODELS / "lightgbm-4.7.0" / "binary.txt"
    (tmp_path / "model.txt").write_bytes(src_json.read_bytes())
    (tmp_path / "model.json").write_bytes(src_txt.read_bytes())
    assert load_legacy_model(tmp_path / "model.txt").format == "xgboost_json"
    assert load_legacy_model(tmp_path / "model.json").format == "lightgbm"


# ------------------------------------------------------------------ rejected inputs

def _edit_xgb(tmp_path: Path, edit, source: str = "xgboost-3.2.0/binary_logistic.json") -> Path:
    doc = json.loads((MODELS / source).read_text())
    edit(doc)
    out = tmp_path / "edited.json"
    out.write_text(json.dumps(doc))
    return out


def _set_objective(name):
    def edit(doc):
        doc["learner"]["objective"] = {"name": name}
    return edit


def _gblinear(doc):
    # The layout XGBoost writes for booster="gblinear".
    doc["learner"]["gradient_booster"] = {"name": "gblinear", "model": {"weights": [0.1] * 9}}


def _vector_leaf(doc):
    for tree in doc["learner"]["gradient_booster"]["model"]["trees"]:
        tree["tree_param"]["size_leaf_vector"] = "3"


def _multi_target(doc):
    doc["learner"]["learner_model_param"]["num_target"] = "2"


def _drop_trees(doc):
    del doc["learner"]["gradient_booster"]["model"]["trees"][-1]


def _lightgbm_edit(tmp_path: Path, old: str, new: str) -> Path:
    text = (MODELS / "lightgbm-4.7.0" / "binary.txt").read_text()
    assert old in text
    out = tmp_path / "model.txt"
    out.write_text(text.replace(old, new, 1))
    return out


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    out = tmp_path / name
    out.write_bytes(data)
    return out


def _truncated(tmp_path: Path, source: str, name: str) -> Path:
    data = (MODELS / source).read_bytes()
    return _write(tmp_path, name, data[: len(data) // 2])


BAD_INPUTS = {
    "missing": (lambda p: p / "nope.json", r"not found"),
    "directory": (lambda p: p, r"not a file"),
    "empty": (lambda p: _write(p, "m.json", b""), r"empty"),
    "whitespace": (lambda p: _write(p, "m.json", b"  \n"), r"empty"),
    "random json": (lambda p: _write(p, "m.json", b'{"a": [1, 2, 3]}'), r"not an XGBoost model"),
    "json list": (lambda p: _write(p, "m.json", b"[1, 2]"), r"not a model fecc can read"),
    "csv": (lambda p: _write(p, "m.csv", b"a,b\n1,2\n"), r"not a model fecc can read"),
    "random bytes": (lambda p: _write(p, "m.dat", bytes(range(7, 200))), r"not a model fecc can read"),
    "pickle": (lambda p: _write(p, "m.pkl", pickle.dumps({"learner": 1})), r"pickle"),
    "gzip": (lambda p: _write(p, "m.json.gz", gzip.compress(
        (MODELS / "xgboost-1.7.6/binary_logistic.json").read_bytes())), r"compressed"),
    # Files the libraries themselves refuse (xgboost raises, lightgbm aborts).
    "json with BOM": (lambda p: _write(p, "m.json", b"\xef\xbb\xbf" + (
        MODELS / "xgboost-1.7.6/binary_logistic.json").read_bytes()), r"byte-order mark"),
    "lightgbm CRLF": (lambda p: _write(p, "model.txt", (
        MODELS / "lightgbm-3.3.5/binary.txt").read_bytes().replace(b"\n", b"\r\n")), r"CRLF"),
    "old xgboost binary": (lambda p: _write(p, "m.model", b"binf" + bytes(64)), r"old binary format"),
    "truncated json": (lambda p: _truncated(p, "xgboost-1.7.6/binary_logistic.json", "m.json"), r"truncated"),
    "truncated ubjson": (lambda p: _truncated(p, "xgboost-3.2.0/binary_logistic.ubj", "m.ubj"), r"truncated"),
    "truncated lightgbm": (lambda p: _truncated(p, "lightgbm-4.7.0/binary.txt", "m.txt"), r"truncated"),
    "gblinear": (lambda p: _edit_xgb(p, _gblinear), r"gblinear"),
    "unknown objective": (lambda p: _edit_xgb(p, _set_objective("reg:made_up")), r"unknown .*objective 'reg:made_up'"),
    "ranking": (lambda p: _edit_xgb(p, _set_objective("rank:pairwise")), r"ranking models are not supported"),
    "survival": (lambda p: _edit_xgb(p, _set_objective("survival:cox")), r"survival models are not supported"),
    "hinge": (lambda p: _edit_xgb(p, _set_objective("binary:hinge")), r"binary:hinge"),
    "vector leaf": (lambda p: _edit_xgb(p, _vector_leaf), r"vector-leaf"),
    "multi target": (lambda p: _edit_xgb(p, _multi_target), r"multi-target"),
    "tree count mismatch": (lambda p: _edit_xgb(p, _drop_trees), r"declares 8 trees but holds 7"),
    "lightgbm json dump": (lambda p: _write(p, "m.json", json.dumps(
        {"name": "tree", "objective": "binary", "tree_info": []}).encode()), r"LightGBM JSON dump"),
    "lightgbm ranking": (lambda p: _lightgbm_edit(p, "objective=binary sigmoid:1", "objective=lambdarank"),
                         r"unsupported LightGBM objective 'lambdarank'"),
    "lightgbm sigmoid": (lambda p: _lightgbm_edit(p, "objective=binary sigmoid:1", "objective=binary sigmoid:2"),
                         r"sigmoid=2"),
    "lightgbm reg_sqrt": (lambda p: _lightgbm_edit(p, "objective=binary sigmoid:1", "objective=regression sqrt"),
                          r"reg_sqrt"),
    "lightgbm linear tree": (lambda p: _lightgbm_edit(p, "shrinkage=", "is_linear=1\nshrinkage="), r"linear trees"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_clear_user_error(tmp_path, case):
    make, pattern = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(UserError) as info:
        load_legacy_model(path)
    message = str(info.value)
    assert re.search(pattern, message), message
    assert "\n" not in message and len(message) < 300
    if path.name not in ("nope.json",) and path.is_file():
        assert message.startswith(path.name), "the message names the file"


def test_dart_is_loaded_with_its_booster_named():
    """dart is accepted; whether it lowers exactly is tests/test_models_zoo.py's job."""
    for entry in INDEX:
        if entry["booster"] == "dart":
            assert load_legacy_model(MODELS / entry["path"]).booster == "dart"


# ------------------------------------------------------------------ damaged files

_DAMAGE_SOURCES = [
    "xgboost-1.7.6/multi_softprob.json",
    "xgboost-3.2.0/binary_logistic.json",
    "xgboost-3.2.0/binary_logistic.ubj",
    "lightgbm-4.7.0/multiclass.txt",
]


@given(
    source=st.sampled_from(_DAMAGE_SOURCES),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=4),
)
def test_damaged_files_load_or_raise_user_error(tmp_path_factory, source, cut, flips):
    """Cut short or with bytes overwritten, a model either still loads or is refused
    with a UserError; never another exception (that would be a traceback for the user)."""
    data = bytearray((MODELS / source).read_bytes())
    for where, value in flips:
        data[int(where * (len(data) - 1))] = value
    data = bytes(data[: max(1, int(cut * len(data)))]) if cut < 1.0 else bytes(data)
    path = tmp_path_factory.mktemp("damaged") / Path(source).name
    path.write_bytes(data)
    try:
        model = load_legacy_model(path)
    except UserError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(model, LegacyModel)


# ------------------------------------------------------------------ current libraries

@pytest.mark.parametrize("fixture_id", sorted(FIXTURES))
def test_current_library_reproduces_the_old_library(fixture_id):
    """The compiler's reference predictions come from today's xgboost/lightgbm; they
    must equal what the version that wrote the file predicted, on every edge row."""
    entry, model, data = _fixture(fixture_id)
    X = data["X"]
    if entry["library"] == "xgboost":
        xgb = pytest.importorskip("xgboost")
        booster = xgb.Booster(model_file=str(model.path))
        types = list(model.feature_types) if model.feature_types else None
        if model.categories is not None:
            # 3.1+ re-codes pandas categories against the stored ones; to feed codes
            # as plain numbers the booster must forget its column schema.
            booster.feature_names = booster.feature_types = None
            names = types = None
        else:
            names = list(model.feature_names) if model.feature_names else None
        dm = xgb.DMatrix(X, missing=np.nan, feature_names=names, feature_types=types,
                         enable_categorical=bool(types and "c" in types))
        got = booster.predict(dm, output_margin=True)
    else:
        lgb = pytest.importorskip("lightgbm")
        got = lgb.Booster(model_file=str(model.path)).predict(X, raw_score=True)
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64).reshape(data["margin"].shape),
                               data["margin"], rtol=0, atol=1e-6)


def test_best_iteration_is_reported():
    """xgboost 1.7's train() always records the last round; 2.0+ only with early stopping."""
    assert load_legacy_model(MODELS / "xgboost-1.7.6" / "binary_logistic.json").best_iteration == 7
    assert load_legacy_model(MODELS / "xgboost-3.2.0" / "binary_logistic.json").best_iteration is None
    assert load_legacy_model(MODELS / "lightgbm-4.7.0" / "binary.txt").best_iteration is None
