"""The tree lowering as a build step, and the runtime engine around it.

Determinism (same model => byte-identical sources, arrays and library), the errors a
user sees, the runtime without xgboost/treelite/tl2cgen, threading and input checks.
Parity with XGBoost itself is in test_trees_parity.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _trees_util import make_xy

xgb = pytest.importorskip("xgboost")
pytest.importorskip("treelite")
pytest.importorskip("tl2cgen")

from fecc.errors import CompileError, UserError  # noqa: E402
from fecc.lower import lower_trees  # noqa: E402
from fecc.frontend import load_forest  # noqa: E402
from fecc.lower import cbuild, tree_arrays  # noqa: E402
from fecc_runtime.trees import TreeEngineError, TreeEnsemble  # noqa: E402

MODELS_DIR = Path(__file__).parent / "data" / "models"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engine")
    X, y = make_xy(2000, 5, seed=7)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "seed": 0, "nthread": 1},
                        xgb.DMatrix(X, (y > 0.5).astype(np.float32)), num_boost_round=30)
    path = tmp / "model.json"
    booster.save_model(path)
    entry = lower_trees(load_forest(path), tmp / "a", name="legacy")
    return {"path": path, "tmp": tmp, "entry": entry, "bundle": tmp / "a",
            "booster": xgb.Booster(model_file=str(path)), "X": X}


def test_build_is_byte_identical(model):
    """Same model, other directory, same bytes: sources, arrays and the library."""
    entry_b = lower_trees(load_forest(model["path"]), model["tmp"] / "b", name="legacy")
    assert entry_b == model["entry"]
    files_a = sorted(p.relative_to(model["bundle"]) for p in model["bundle"].rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(model["tmp"] / "b") for p in (model["tmp"] / "b").rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (model["bundle"] / rel).read_bytes() == (model["tmp"] / "b" / rel).read_bytes(), rel


def test_manifest_paths_are_relative_and_listed(model):
    entry = model["entry"]
    json.dumps(entry)  # JSON-serialisable
    listed = set(entry["sources"]) | {entry["library"], entry["arrays"]}
    on_disk = {str(p.relative_to(model["bundle"])) for p in model["bundle"].rglob("*") if p.is_file()}
    assert listed == on_disk
    assert all(not Path(p).is_absolute() for p in listed)
    assert "trees/legacy.c" in entry["sources"] and entry["library"] == "trees/legacy.so"


def test_no_build_paths_in_outputs(model):
    """The scratch directory must not leak into what is shipped (reproducibility)."""
    for p in model["bundle"].rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert b"fecc-trees-" not in data and b"/tmp/" not in data, p


def test_unreadable_models_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_forest(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_forest(bad)
    # a document the frontend describes but the tree reader refuses: treelite's word, in one line
    doc = json.loads(MODELS_DIR.joinpath("xgboost-2.0.3/binary_logistic.json").read_text())
    doc["learner"]["gradient_booster"]["model"]["trees"][0]["split_indices"] = "oops"
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="cannot read xgboost_json model"):
        load_forest(odd)
    with pytest.raises(UserError, match="name"):
        lower_trees(load_forest(MODELS_DIR / "xgboost-2.0.3/binary_logistic.json"), tmp_path / "out", name="../evil")


def test_gcc_failure_is_compile_error(model, tmp_path, monkeypatch):
    monkeypatch.setattr(cbuild, "CC", "false")  # /bin/false: exits 1 for every file
    with pytest.raises(CompileError, match="gcc failed"):
        lower_trees(load_forest(model["path"]), tmp_path / "out")
    monkeypatch.setattr(cbuild, "CC", "no-such-compiler-fecc")
    with pytest.raises(CompileError, match="not found"):
        lower_trees(load_forest(model["path"]), tmp_path / "out2")


def test_runtime_needs_no_tree_libraries(model, tmp_path):
    """Load and score in a fresh interpreter where xgboost/treelite/tl2cgen cannot import."""
    X = model["X"][:50]
    np.save(tmp_path / "X.npy", X)
    want = model["booster"].inplace_predict(X)
    script = f"""
import sys, json
for mod in ("xgboost", "treelite", "tl2cgen", "fecc"):
    sys.modules[mod] = None  # any import of these now fails
import numpy as np
from pathlib import Path
from fecc_runtime.trees import TreeEnsemble
entry = json.loads({json.dumps(json.dumps(model["entry"]))})
ens = TreeEnsemble(Path({str(model["bundle"])!r}), entry)
X = np.load({str(tmp_path / "X.npy")!r})
print(json.dumps([ens.predict(X).tolist(), [ens.predict_row(x) for x in X]]))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    batch, rows = json.loads(proc.stdout)
    np.testing.assert_allclose(batch, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(rows, want, rtol=0, atol=1e-6)


def test_threads_and_blocks_do_not_change_results(model):
    X = np.vstack([model["X"]] * 3)  # 6000 rows: several blocks per thread
    one = TreeEnsemble(model["bundle"], model["entry"], n_threads=1).predict(X, margin=True)
    for n_threads in (2, 3, 7):
        ens = TreeEnsemble(model["bundle"], model["entry"], n_threads=n_threads)
        np.testing.assert_array_equal(ens.predict(X, margin=True), one)
        ens.close()
    for n in (0, 1, 63, 64, 65, 257):  # block edges
        got = TreeEnsemble(model["bundle"], model["entry"], n_threads=2).predict(X[:n], margin=True)
        np.testing.assert_array_equal(got, one[:n])


def test_ifelse_batch_engine_agrees(model):
    """The tl2cgen row loop (chosen for small models) gives the same scores to 1e-6."""
    entry = {**model["entry"], "batch_engine": "ifelse"}
    ens = TreeEnsemble(model["bundle"], entry)
    blocked = TreeEnsemble(model["bundle"], model["entry"])
    np.testing.assert_allclose(ens.predict(model["X"]), blocked.predict(model["X"]), rtol=0, atol=1e-6)


def test_one_row_scores_exactly_like_a_batch(model):
    """The array row engine takes the batch's steps and additions: identical margins;
    tl2cgen's if/else code (the other row engine) agrees to 1e-6."""
    X = model["X"][:300]
    assert model["entry"]["row_engine"] == "array"
    ens = TreeEnsemble(model["bundle"], model["entry"])
    batch = ens.predict(X, margin=True)
    np.testing.assert_array_equal([ens.predict_row(x, margin=True) for x in X], batch)
    np.testing.assert_array_equal([ens.predict_row(x) for x in X], ens.predict(X))
    ifelse = TreeEnsemble(model["bundle"], {**model["entry"], "row_engine": "ifelse"})
    np.testing.assert_allclose([ifelse.predict_row(x, margin=True) for x in X], batch, rtol=1e-6, atol=1e-6)
    # float64 rows are rounded to float32 in C exactly as numpy rounds a batch
    X64 = X.astype(np.float64) * (1 + 1e-9)
    for e in (ens, ifelse):
        np.testing.assert_array_equal([e.predict_row(x, margin=True) for x in X64],
                                      [e.predict_row(x, margin=True) for x in X64.astype(np.float32)])
    np.testing.assert_array_equal([ens.predict_row(x, margin=True) for x in X64], ens.predict(X64, margin=True))


def test_row_engine_rule():
    """The array walk unless it would take over ROW_IFELSE_STEPS times the steps of
    the if/else code: trees whose rows nearly all stop at shallow leaves, with a
    long, rarely taken chain."""
    def forest(depth: int, chain_weight: float) -> dict:
        # 16 trees, each a chain numbered breadth-first: inner node 2k has the leaf
        # 2k + 1 on its left and the next inner node (or the last leaf) on its right
        n = 2 * depth + 1
        left = np.arange(n, dtype=np.int64)  # a leaf's "left child" is itself
        inner = 2 * np.arange(depth)
        left[inner] = inner + 1
        nodes = tree_arrays._pack_nodes(np.where(left == np.arange(n), np.nan, 0.5), np.zeros(n, np.int64), left,
                                      np.zeros(n, np.int64), 1, "float32", "left", Path("m"))
        weight = np.full(n, chain_weight)
        weight[1] = 1.0  # the first leaf, one step down
        k = 16
        return {"arrays": {"nodes": np.concatenate([nodes] * k), "tree_root": np.arange(k, dtype=np.int32) * n,
                           "tree_depth": np.full(k, depth, dtype=np.int32)},
                "node_weight": np.concatenate([weight] * k), "num_feature": 1, "cmp": "<"}
    assert tree_arrays.row_engine(forest(10, 1.0)) == "array"  # rows spread over the chain
    assert tree_arrays.row_engine(forest(30, 1e-3)) == "ifelse"  # nearly all stop after one step


def test_inputs_are_checked_and_converted(model):
    ens = TreeEnsemble(model["bundle"], model["entry"])
    X = model["X"][:20]
    want = ens.predict(X)
    np.testing.assert_array_equal(ens.predict(X.astype(np.float64)), want)  # converted
    np.testing.assert_array_equal(ens.predict(np.asfortranarray(X)), want)  # made contiguous
    assert ens.predict(X[:0]).shape == (0,)
    assert isinstance(ens.predict_row(X[0]), float)
    with pytest.raises(ValueError):
        ens.predict(X[:, :3])
    with pytest.raises(ValueError):
        ens.predict_row(X[0, :3])


def test_mismatched_entry_is_refused(model, tmp_path):
    with pytest.raises(TreeEngineError):
        TreeEnsemble(model["bundle"], {**model["entry"], "num_feature": 4})
    with pytest.raises(TreeEngineError):
        TreeEnsemble(model["bundle"], {**model["entry"], "engine_abi": 99})
    with pytest.raises(TreeEngineError):
        TreeEnsemble(model["bundle"], {**model["entry"], "library": "trees/nothing.so"})
    # node indices pointing outside the arrays are caught before any C code runs
    import shutil
    bundle = tmp_path / "tampered"
    shutil.copytree(model["bundle"], bundle)
    with np.load(bundle / "trees/legacy.npz") as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    arrays["nodes"]["meta"][0] |= np.uint32(1 << 31)  # left-child offset far past the end
    np.savez(bundle / "trees/legacy.npz", **arrays)
    with pytest.raises(TreeEngineError, match="out of range"):
        TreeEnsemble(bundle, model["entry"])
