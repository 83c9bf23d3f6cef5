"""``fecc compile --transforms teaming`` end to end, and the gate's honesty with transforms.

A legacy model of additive stumps cannot represent the planted interaction ``x1 * x2 * x4``
(nor can the aggregator's depth-2 trees, so NSR alone gets little of it); the transform
search finds a product of those features, the experts and the aggregator read it as
``tf_1``, the gate ships, the transforms beat NSR alone in the selection, and every engine (C ensemble library, numba module, the one ONNX graph)
reproduces a reference computed here from the manifest alone with the IR's numpy
evaluator and xgboost — on rows with NaN and ±inf too.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import fecc_runtime
from fecc.driver import CompileOptions, compile_bundle, workdir_for
from fecc.errors import UserError
from fecc.ir import evaluate, parse_postfix
from fecc_runtime.format import expert_offset, interaction_features, round_float32

xgb = pytest.importorskip("xgboost")
pytest.importorskip("torch")

SEARCH = {"n_regions": 1, "max_proposals": 4, "iterations": 2, "optuna_trials": 8}
TRANSFORM = dict(golden=100, epochs=15, refit_epochs=3, rounds=1, starts=8, grad_steps=4, eval_top=24, audit=4,
                 probe_invalid=0, max_features=5, time_budget_s=60.0)
#: the compile fixture's: a three-way product takes a larger golden set and a second round to find
#: in most outer folds (each on 4/5 of the rows)
PLANTED = dict(TRANSFORM, golden=200, rounds=2)
FEATURES = [f"x{i}" for i in range(1, 6)]


def _rows(n: int, seed: int, interaction: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f: rng.normal(size=n) for f in FEATURES})
    logit = 0.8 * X["x3"] + (2.0 * X["x1"] * X["x2"] * X["x4"] if interaction else 0.0)
    return X.assign(y=(rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfc")
    legacy = _rows(2000, 11, interaction=False)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 1, "eta": 0.3, "seed": 0, "nthread": 1},
                        xgb.DMatrix(legacy[FEATURES], label=legacy["y"]), num_boost_round=20)
    booster.save_model(d / "model.json")
    _rows(2000, 1).to_parquet(d / "data.parquet")
    out = d / "bundle"
    summary = compile_bundle(d / "model.json", d / "data.parquet", out,
                             CompileOptions(seed=3, search_options=SEARCH, transforms="teaming",
                                            transform_options=PLANTED, emit="onnx"))
    return out, summary, json.loads((out / "manifest.json").read_text())


def _reference_margin(bundle_dir, manifest: dict, X: np.ndarray, trees: str = "xgboost") -> np.ndarray:
    """The bundle's margin from its manifest alone, by the format's rules: the base map, transforms, experts and
    offset by the IR's numpy evaluator; the trees by xgboost, or (``trees="compiled"``, for ±inf
    inputs, which xgboost refuses) by the bundle's compiled tree engines, which
    test_trees_parity checks against xgboost bit for bit, ±inf included."""
    from fecc_runtime.bundle import tree_engine
    from fecc_runtime.format import base_map, base_margin

    X32 = round_float32(X)
    if trees == "xgboost":
        legacy = xgb.Booster(model_file=str(bundle_dir.parent / "model.json"))
        legacy.feature_names = None  # positional, as the compiler's reference reads it
        m = legacy.predict(xgb.DMatrix(X.astype(np.float32), missing=np.nan), output_margin=True).astype(np.float64)
    else:
        m = np.asarray(tree_engine(bundle_dir, manifest["legacy"]).predict(X, margin=True), dtype=np.float64)
    m = base_margin(m, *base_map(manifest["aggregator"].get("base_map")))  # what the experts repair
    cols = {f["name"]: X32[:, j] for j, f in enumerate(manifest["features"])}
    for t in manifest["transforms"]:
        v = round_float32(evaluate(parse_postfix(t["postfix"]), cols))
        cols[t["name"]] = np.where(np.isinf(v), np.nan, v)   # an overflow is a missing value
    layout = [f["name"] for f in manifest["features"]] + [t["name"] for t in manifest["transforms"]]
    Xa = np.column_stack([cols[n] for n in layout])
    values = []
    for e in manifest["experts"]:
        inside = evaluate(parse_postfix(e["region"]["postfix"]), cols)
        g = evaluate(parse_postfix(e["correction"]["postfix"]), cols)
        g = np.where(np.isfinite(g), g, 0.0)
        values.append(np.where(inside, m + g, np.nan))
    phi = interaction_features(m, np.column_stack(values))
    margin = m + expert_offset(phi, len(values))
    agg = manifest["aggregator"]
    if agg.get("trees"):
        Z = np.hstack([Xa, phi])
        if trees == "xgboost":
            booster = xgb.Booster(model_file=str(workdir_for(bundle_dir) / "aggregator.json"))
            booster.feature_names = None
            t = booster.predict(xgb.DMatrix(Z, missing=np.nan), output_margin=True)
        else:
            t = tree_engine(bundle_dir, agg["trees"]).predict(Z.astype(np.float32), margin=True)
        margin = margin + np.asarray(t, dtype=np.float64)
    return margin


def _edge_rows(n: int, seed: int, infinite: bool = True) -> np.ndarray:
    X = _rows(n, seed)[FEATURES].to_numpy(np.float64).copy()
    rng = np.random.default_rng(seed)
    for v in (np.nan, np.inf, -np.inf) if infinite else (np.nan, 1e38, -1e38):
        X[rng.random(X.shape) < 0.05] = v
    X[0, :] = np.nan
    X[1, :], X[2, :] = (np.inf, -np.inf) if infinite else (1e38, -1e38)
    X[3, :] = [1e30, -1e30, 3e38, 0.0, -0.0]   # transforms overflow float32 here
    return X


def test_manifest_lists_the_transforms_and_the_search(compiled):
    out, summary, manifest = compiled
    assert manifest["gate"]["decision"] == "ensemble", manifest["gate"]
    tfs = manifest["transforms"]
    assert tfs and [t["name"] for t in tfs] == [f"tf_{i + 1}" for i in range(len(tfs))]
    for t in tfs:
        assert set(t) == {"name", "postfix", "math", "features", "metrics"}
        assert parse_postfix(t["postfix"])  # IR
    assert {"x1", "x2"} <= set(tfs[0]["features"])
    st = manifest["search"]["transforms"]
    for key in ("generated", "invalid", "evaluated", "ranked_out", "lambda", "decoder", "semantics", "shipped"):
        assert key in st, key
    assert st["invalid"] == 0 and st["lambda"] == 1.0 and st["shipped"] is True
    assert "timings" not in st and "seconds" not in st          # wall times: the summary only
    # the transforms earned their place against NSR alone (same folds and seed, base features only)
    sel = st["selection"]
    assert {"test", "statistic", "p_value", "gain", "interval", "decision", "reason"} <= set(sel)
    assert sel["decision"] == "transforms" and sel["test"] == "delong", sel
    assert sel["gain"] > 0 and sel["p_value"] <= manifest["search"]["options"]["gate_alpha"]
    assert summary["transform_selection"] == "transforms"
    json.dumps(sel, allow_nan=False)
    assert summary["transforms"]["timings"] and summary["transforms"]["chosen"] == len(tfs)
    # the experts and the aggregator read the transforms; each outer fold chose its own
    read = {f for e in manifest["experts"] for f in e["features"]} | set(manifest["aggregator"]["feature_names"])
    assert {t["name"] for t in tfs} <= read
    folds = manifest["search"]["outer_folds"]
    assert all("derived_features" in f for f in folds)
    assert sum(bool(f["derived_features"]) for f in folds) >= len(folds) - 1
    assert manifest["ensemble"]["transforms"] == [t["name"] for t in tfs]
    assert manifest["onnx_model"]["transforms"] == [t["name"] for t in tfs]
    module = (out / manifest["experts_module"]).read_text()
    assert "def transforms_batch(X, out):" in module and "TRANSFORMS = ('tf_1'" in module
    assert "fecc_transforms(" in (out / "ensemble/experts.c").read_text()


@pytest.mark.parametrize("engine", ["native", "numba", "onnx"])
def test_every_engine_matches_the_ir_reference_with_nan_and_inf(compiled, engine):
    out, _, manifest = compiled
    b = fecc_runtime.load(out, engine=engine)   # replays the parity rows (±inf rows included)
    assert b.engine == {"native": "c"}.get(engine, engine)
    for infinite, trees in ((False, "xgboost"), (True, "compiled")):
        X = _edge_rows(400, 5, infinite)
        ref = _reference_margin(out, manifest, X, trees)
        got = b.predict(X, output="margin")
        both_nan = np.isnan(ref) & np.isnan(got)
        assert np.all(both_nan | (np.abs(got - ref) <= 1e-6)), (trees, np.nanmax(np.abs(got - ref)))
    # one row at a time (the C library's row path) agrees with the batch
    for i in range(6):
        one = b.predict_one(X[i], output="margin")
        assert one == pytest.approx(got[i], abs=1e-9, nan_ok=True)


def test_parity_rows_cover_overflow_and_missing(compiled):
    out, _, manifest = compiled
    P = np.load(out / manifest["parity"]["inputs"])
    assert (P == 1e38).any() and (P == -1e38).any() and np.isnan(P).any()


def test_options_are_checked_before_any_work():
    with pytest.raises(UserError, match="--transforms must be"):
        CompileOptions(transforms="magic")
    with pytest.raises(UserError, match="needs --search nsr"):
        CompileOptions(transforms="teaming", search="none")
    with pytest.raises(UserError, match="bad transform option"):
        CompileOptions(transforms="teaming", transform_options={"no_such_knob": 1})
    opts = CompileOptions(transforms="teaming", transform_options={"rounds": "2"}, seed=9)
    assert opts.transform_options.rounds == 2 and opts.transform_options.seed == 9


def test_cli_passes_transforms(tmp_path):
    from click.testing import CliRunner

    from fecc.cli import main

    r = CliRunner().invoke(main, ["compile", str(tmp_path / "m.json"), str(tmp_path / "d.csv"), "-o",
                                  str(tmp_path / "b"), "--transforms", "teaming", "--search", "none"])
    assert r.exit_code == 2 and "needs --search nsr" in r.output
    r = CliRunner().invoke(main, ["compile", str(tmp_path / "m.json"), str(tmp_path / "d.csv"), "-o",
                                  str(tmp_path / "b"), "--transforms", "teaming", "--transform-option", "rounds"])
    assert r.exit_code == 2 and "--transform-option expects NAME=VALUE" in r.output


@pytest.mark.slow
def test_gate_with_transforms_finds_no_gain_on_permuted_labels(tmp_path):
    """Transforms chosen on all rows and reused in the outer folds would leak the held-out
    labels; the gate reruns the transform search inside each outer fold, so on labels that
    carry no signal the out-of-fold gain is nothing on average and nothing ships."""
    from fecc.llm.grammar_proposer import GrammarProposer
    from fecc.search import SearchOptions, run_search
    from fecc.search.crossfit import gate_folds
    from fecc.transforms import TransformOptions, search_transforms
    from fecc.transforms.stage import TransformRefit, augment

    gains = []
    for seed in (0, 1, 2):
        df = _rows(900, 40 + seed)
        X = df[FEATURES]
        y = np.random.default_rng(seed).permutation(df["y"].to_numpy()).astype(float)
        m = 0.8 * X["x3"].to_numpy()
        topts = TransformOptions(seed=seed, **TRANSFORM)
        sopts = SearchOptions.from_dict({"seed": seed, **SEARCH})
        chosen = search_transforms(X, y, m, "binary", None, topts).transforms
        folds = gate_folds(y, task="binary", k=sopts.gate_folds, inner_k=sopts.n_folds, seed=seed)
        res = run_search(X=augment(chosen, X), y=y, legacy_margin=m, task="binary", folds=folds,
                         proposer=GrammarProposer(), options=sopts, workdir=tmp_path / f"s{seed}",
                         base_features=FEATURES, refit_features=TransformRefit(topts))
        assert all("derived_features" in o for o in res.outer)
        assert res.gate.decision == "legacy-only"
        gains.append(res.gate.gain if res.gate.gain is not None else 0.0)
    assert np.mean(gains) <= 0.002, gains


def test_inspect_and_audit_show_the_transforms(compiled, tmp_path):
    import fecc

    out, _, manifest = compiled
    text = fecc.inspect(out)
    for t in manifest["transforms"]:
        assert f"  {t['name']} = {t['math']}" in text
    assert "transform search: ml decoder" in text
    assert "transform selection: transforms" in text
    audit = fecc.audit(out, tmp_path / "audit.md")
    assert f"transform tf_1 = {manifest['transforms'][0]['math']}" in audit.text
    assert "transform search: decoder ml" in audit.text
    assert "transform selection: transforms" in audit.text
    md = (tmp_path / "audit.md").read_text()
    assert "Transform search (teaming, seed 000)" in md and "outer folds (each chose its own)" in md
    assert "selection vs NSR alone" in md
    assert manifest["transforms"][0]["postfix"] in md


@pytest.mark.backend_c
def test_golden_transform_c_compiles_cleanly_and_matches_numba(tmp_path):
    """tests/golden/{c,numba}/experts_transforms.*: warning-free C that computes what the numba module does."""
    import ctypes
    import importlib.util
    import subprocess
    from pathlib import Path

    from fecc.lower.ensemble import CFLAGS
    from fecc.search import function_names
    from fecc_runtime.experts import ExpertSet
    from fecc_runtime.format import transform_value

    golden = Path(__file__).parent / "golden"
    (tmp_path / "experts.c").write_text((golden / "c" / "experts_transforms.c").read_text())
    proc = subprocess.run(["gcc", *CFLAGS, "-Wall", "-Wextra", "-Werror", "-shared", "-o", "experts.so", "experts.c",
                           "-lm"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lib = ctypes.CDLL(str(tmp_path / "experts.so"))
    (tmp_path / "experts.py").write_text((golden / "numba" / "experts_transforms.py").read_text())
    py = ExpertSet(tmp_path, [{"name": "expert_1", **function_names("expert_1")}], "experts.py", use_numba=False,
                   transform_names=["tf_1", "tf_2"])
    rng = np.random.default_rng(3)
    X = round_float32(rng.normal(40, 30, size=(200, 4)))
    X[::7, 1], X[::9, 3], X[5, 0], X[6, 1] = np.nan, np.inf, 3e38, 3e38   # 3e38 * 3e38 overflows: NaN
    rows = py.input_rows(X)
    fn = lib.fecc_transforms
    fn.restype, fn.argtypes = None, [ctypes.c_void_p, ctypes.c_void_p]
    out = np.empty(2)
    got = np.array([(fn(np.ascontiguousarray(r).ctypes.data, out.ctypes.data), out.copy())[1] for r in X])
    want = rows[:, 4:]
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.allclose(got, want, equal_nan=True, rtol=1e-7)
    assert np.isnan(want[5, 0]) and np.isnan(want[6, 0])
    assert np.array_equal(want, transform_value(want), equal_nan=True)   # already served values
    region = lib.expert_1_region
    region.restype, region.argtypes = ctypes.c_int32, [ctypes.c_void_p]
    inside = np.array([bool(region(np.ascontiguousarray(r).ctypes.data)) for r in rows])
    assert np.array_equal(inside, np.array([bool(py.module.expert_1_region(r)) for r in rows]))
