"""End-to-end search on small generated data: a planted hard region, pure noise, permuted labels, determinism."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from fecc.ir import to_math
from fecc.llm.grammar_proposer import GrammarProposer
from fecc.lower.numba_backend import emit_module, write_module
from fecc.search import SearchOptions, run_search
from fecc.search.archive import read_candidates
from fecc.search.crossfit import gate_folds
from fecc_runtime.experts import ExpertSet

FEATURES = [f"x{i}" for i in range(6)]
OPTIONS = dict(n_regions=3, max_proposals=8, global_proposals=8, iterations=4, optuna_trials=12, seed=7)


def in_planted(X: np.ndarray) -> np.ndarray:
    return (X[:, 3] > 0.7) & (X[:, 5] < 0.2)


def make_planted(n: int, seed: int, *, with_region: bool = True):
    """Features U(0,1) (x4 5% missing); outside the region y follows a smooth logistic rule,
    inside x3 > 0.7 & x5 < 0.2 it follows a reversed rule in x1 that the legacy model never saw."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n * 2, 6))
    if not with_region:
        X = X[~in_planted(X)]
    X = X[:n]
    logit = 3.0 * (X[:, 0] - 0.5) + 2.0 * (X[:, 1] - 0.5) - 1.5 * (X[:, 2] - 0.5)
    p = 1.0 / (1.0 + np.exp(-logit))
    planted = in_planted(X)
    p[planted] = np.where(X[planted, 1] < 0.5, 0.95, 0.05)
    y = (rng.uniform(size=len(X)) < p).astype(np.float64)
    X[rng.uniform(size=len(X)) < 0.05, 4] = np.nan
    return pd.DataFrame(X, columns=FEATURES), y


def legacy_model(X: pd.DataFrame, y: np.ndarray) -> xgb.Booster:
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.1, "seed": 0, "nthread": 1}
    return xgb.train(params, xgb.DMatrix(X.to_numpy(), label=y, missing=np.nan), num_boost_round=100)


def folds_for(y: np.ndarray, seed: int = 1, task: str = "binary"):
    """The gate's outer folds, as ``fecc compile`` cuts them."""
    return gate_folds(y, task=task, k=5, inner_k=5, seed=seed)


def compile_data(seed=1, n=2400, noise=False, permute=False):
    """Compile rows (X, y, legacy margin) and fresh rows from the same law for judging what ships."""
    Xl, yl = make_planted(2000, seed + 100, with_region=False)
    X, y = make_planted(n, seed)
    Xt, yt = make_planted(3000, seed + 200)
    rng = np.random.default_rng(seed + 5)
    if noise:
        yl = (rng.uniform(size=len(yl)) < 0.5).astype(float)
        y = (rng.uniform(size=len(y)) < 0.5).astype(float)
        yt = (rng.uniform(size=len(yt)) < 0.5).astype(float)
    if permute:
        y = rng.permutation(y)
    booster = legacy_model(Xl, yl)
    margin = lambda D: booster.predict(xgb.DMatrix(D.to_numpy(), missing=np.nan),  # noqa: E731
                                       output_margin=True).astype(np.float64)
    return X, y, margin(X), (Xt, yt, margin(Xt))


def search(tmp_path, noise=False, permute=False, data_seed=1, **over):
    X, y, m, fresh = compile_data(seed=data_seed, noise=noise, permute=permute)
    opts = SearchOptions.from_dict({**OPTIONS, **over})
    folds = folds_for(y, seed=opts.seed)
    result = run_search(X=X, y=y, legacy_margin=m, task="binary", folds=folds, proposer=GrammarProposer(),
                        options=opts, workdir=tmp_path)
    return result, (X, y, m, fresh)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return search(tmp_path_factory.mktemp("planted"))


def test_planted_region_found_shipped_and_fresh_rows_improve(planted):
    from fecc.search import metrics

    result, (X, y, m, (Xt, yt, mt)) = planted
    assert result.gate.decision == "ensemble", result.gate.reason
    regional = [e for e in result.experts if e.region_index > 0]
    assert regional and all(0 < e.strength <= 1 for e in result.experts)
    truth = in_planted(Xt.to_numpy())
    covered = np.zeros(len(Xt), dtype=bool)
    for e in regional:
        covered |= e.mask(Xt)
    # the regional experts cover most of the planted region; one of them sits mostly inside it
    assert covered[truth].mean() >= 0.7
    assert max(truth[e.mask(Xt)].mean() for e in regional) >= 0.5
    assert result.gate.test.gain > 0.01 and result.gate.test.p_value < 0.05, result.gate.to_manifest()
    # what ships beats the legacy model on rows nobody saw
    fresh_gain = metrics.auc(yt, result.predict_margin(Xt, mt)) - metrics.auc(yt, mt)
    assert fresh_gain > 0.01


def test_experts_are_clamped_to_what_they_did_on_the_compile_rows(planted):
    """A served row far outside the compile rows (1e6 in every feature) moves no margin further
    than the experts moved a compile row: corrections are clamped to their fitted range."""
    result, (X, y, m, _) = planted
    far = pd.DataFrame(np.full((2, len(FEATURES)), 1e6) * np.array([[1], [-1]]), columns=FEATURES)
    missing = pd.DataFrame(np.full((1, len(FEATURES)), np.nan), columns=FEATURES)
    for e in result.experts:
        seen = e.corrections(X.astype(np.float32).astype(np.float64))[e.mask(X)]
        got = e.corrections(far)
        assert np.isfinite(e.corrections(missing)).all()  # undefined → 0: the row keeps its legacy margin
        assert np.all(got >= seen.min() - 1e-5 * (1 + abs(seen.min())))
        assert np.all(got <= seen.max() + 1e-5 * (1 + abs(seen.max())))
        assert "max(min(" in to_math(e.correction)


def test_manifest_is_json_and_complete(planted):
    result, _ = planted
    man = result.to_manifest()
    json.dumps(man, allow_nan=False)
    e = man["experts"][0]
    assert e["name"] == "expert_1" and e["batch_function"] == "expert_1_batch"
    assert {"rule", "postfix"} <= set(e["region"]) and {"math", "postfix"} <= set(e["correction"])
    assert man["gate"]["decision"] == "ensemble"
    assert man["gate"]["test"]["name"] == "delong" and man["gate"]["test"]["p_value"] < 0.05
    assert man["gate"]["protocol"]["k"] == 5 and len(man["gate"]["folds"]) == 5
    assert man["search"]["protocol"]["inner"]["k"] == 5 and man["search"]["protocol"]["outer"]["k"] == 5
    assert [f["fold"] for f in man["search"]["outer_folds"]] == list(range(5))
    assert man["aggregator"]["feature_names"][:7] == FEATURES + ["base_margin"]
    assert man["experts"][0]["region"]["whole_space"] is True


def test_archive_has_every_candidate(planted):
    result, _ = planted
    rows = read_candidates(result.archive_path)
    assert len(rows) >= len(result.regions)  # at least every chain's seed
    assert {"accepted"} <= {r["status"] for r in rows}
    assert all(r["expr_postfix"] for r in rows if r["status"] in ("accepted", "rejected"))
    total = sum(e.proposals + 1 for e in result.experts) + sum(1 for _ in result.dropped)
    assert len(rows) >= total - len(result.dropped)


def test_runtime_features_equal_compiler_features(planted, tmp_path):
    """The aggregator's training matrix (IR evaluator) equals what the runtime computes."""
    from fecc_runtime.experts import interaction_features

    from fecc_runtime.format import base_margin

    result, (X, y, m_legacy, _) = planted
    m = base_margin(m_legacy, *result.aggregator.base_map)  # what the experts repair
    write_module(result.experts, result.feature_names, tmp_path)
    entries = result.to_manifest()["experts"]
    es = ExpertSet(tmp_path, entries, "experts.py")
    Xn = X.to_numpy(np.float32).astype(np.float64)  # the runtime scores float32-rounded rows
    X = pd.DataFrame(Xn, columns=X.columns)
    got = es.features(Xn, m)
    want = interaction_features(m, np.column_stack([e.values(X, m) for e in result.experts]))
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-12, equal_nan=True)
    # and the final margin from runtime pieces equals the search's ensemble margin
    agg = result.aggregator
    final = got[:, 0] + es.offset(got)
    if agg.booster is not None:
        final = final + agg.booster.predict(xgb.DMatrix(np.hstack([Xn, got]), missing=np.nan), output_margin=True)
    np.testing.assert_allclose(final, agg.margin(Xn, want), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result.predict_margin(X, m_legacy), final, rtol=1e-6, atol=1e-6)


def test_same_seed_same_module_and_manifest(planted, tmp_path):
    again, _ = search(tmp_path)
    first, _ = planted
    assert again.to_manifest() == first.to_manifest()
    assert emit_module(again.experts, again.feature_names).text == emit_module(first.experts, first.feature_names).text


def test_same_bundle_across_processes_and_hash_seeds(tmp_path):
    """Determinism does not depend on the process (set order, PYTHONHASHSEED)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import json, sys, tempfile\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_search_pipeline import search\n"
        "from fecc.lower.numba_backend import emit_module\n"
        "r, _ = search(tempfile.mkdtemp(), max_proposals=3, n_regions=2)\n"
        "print(json.dumps([r.to_manifest(), emit_module(r.experts, r.feature_names).text], sort_keys=True))\n"
    )
    outs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        outs.append(done.stdout)
    assert outs[0] == outs[1]


def test_gate_refuses_when_nothing_helps(tmp_path):
    result, _ = search(tmp_path, noise=True)
    assert result.gate.decision == "legacy-only"
    assert result.gate.reason
    man = result.to_manifest()
    assert man["experts"] == [] and man["aggregator"] is None


def test_permuted_labels_give_no_out_of_fold_gain(tmp_path):
    """Leakage check.  Labels permuted, and a legacy margin that is calibrated but carries no
    signal: nothing is learnable, so any out-of-fold gain would be leakage (a row judging
    something fitted, chosen or selected with its label).  A gate that judged the search on
    the rows the search chose its structures on measured a log-loss gain on each of 6 such
    cases and shipped 4; judged on outer folds the search never saw, the gains are losses."""
    from fecc.search import metrics

    ll_gains, auc_gains, shipped = [], [], 0
    for seed in range(3):
        X, y = make_planted(900, seed + 40)
        y = np.random.default_rng(seed).permutation(y)
        m = np.full(len(y), np.log(y.mean() / (1 - y.mean()))) + np.random.default_rng(seed + 1).normal(0, 0.05, len(y))
        opts = SearchOptions.from_dict({**OPTIONS, "seed": seed, "max_proposals": 3, "global_proposals": 4,
                                        "n_regions": 1, "optuna_trials": 6})
        r = run_search(X=X, y=y, legacy_margin=m, task="binary", folds=folds_for(y, seed=seed),
                       proposer=GrammarProposer(), options=opts, workdir=tmp_path / str(seed))
        ll_gains.append(r.gate.loss_test.gain)
        auc_gains.append(r.gate.test.gain)
        shipped += r.shipped
        assert r.gate.loss_test.legacy == pytest.approx(np.mean(metrics.logloss_rows(y, m)))
    assert np.mean(ll_gains) < 0, ll_gains
    assert np.mean(auc_gains) <= 0.01, auc_gains
    assert shipped == 0


def test_regression_planted_region(tmp_path):
    rng = np.random.default_rng(3)

    def draw(n, with_region):
        X = rng.uniform(size=(n * 2, 6))
        if not with_region:
            X = X[~in_planted(X)]
        X = X[:n]
        y = 2.0 * X[:, 0] + X[:, 1] + rng.normal(0, 0.1, n)
        y[in_planted(X)] += 1.5 - 3.0 * X[in_planted(X), 1]
        return pd.DataFrame(X, columns=FEATURES), y

    Xl, yl = draw(1500, False)
    booster = xgb.train({"objective": "reg:squarederror", "max_depth": 3, "eta": 0.1, "seed": 0, "nthread": 1},
                        xgb.DMatrix(Xl.to_numpy(), label=yl), num_boost_round=100)
    X, y = draw(2000, True)
    m = booster.predict(xgb.DMatrix(X.to_numpy()), output_margin=True).astype(np.float64)
    result = run_search(X=X, y=y, legacy_margin=m, task="regression", folds=folds_for(y, seed=3, task="regression"),
                        proposer=GrammarProposer(), options=SearchOptions.from_dict(OPTIONS), workdir=tmp_path)
    assert result.gate.decision == "ensemble", result.gate.reason
    assert result.gate.test.name == "paired-z" and result.gate.test.metric == "rmse"
    assert result.gate.ensemble["rmse"] < 0.95 * result.gate.legacy["rmse"]
    Xt, yt = draw(2000, True)
    mt = booster.predict(xgb.DMatrix(Xt.to_numpy()), output_margin=True).astype(np.float64)
    rmse = lambda a: float(np.sqrt(np.mean((yt - a) ** 2)))  # noqa: E731
    assert rmse(result.predict_margin(Xt, mt)) < 0.95 * rmse(mt)
    json.dumps(result.to_manifest(), allow_nan=False)


def test_chain_survives_bad_proposals_and_feeds_errors_back(tmp_path):
    """Proposer errors, invalid IR and crashes are archived, fed back, and cost only a proposal."""
    from fecc.ir import Binary, Feature, Param
    from fecc.llm.base import Proposal, ProposalError

    class Flaky:
        name = "flaky"

        def __init__(self):
            self.calls, self.feedback, self.inner = 0, [], GrammarProposer()

        def propose(self, ctx):
            self.calls += 1
            self.feedback.append(ctx.feedback)
            if self.calls == 1:
                raise ProposalError("no JSON in the answer", raw="blah")
            if self.calls == 2:
                return Proposal(Binary("add", ctx.current, Binary("mul", Param("q"), Feature("nope"))), {})
            if self.calls == 3:
                raise RuntimeError("backend fell over")
            return self.inner.propose(ctx)

    X, y, m, _ = compile_data()
    flaky = Flaky()
    result = run_search(X=X, y=y, legacy_margin=m, task="binary", folds=folds_for(y, seed=0),
                        proposer=flaky, workdir=tmp_path,
                        options=SearchOptions.from_dict({**OPTIONS, "global_expert": False, "n_regions": 1,
                                                         "max_proposals": 5}))
    statuses = [r["status"] for r in read_candidates(result.archive_path)]
    assert statuses[:4] == ["accepted", "proposer-error", "invalid", "proposer-error"]
    assert "no JSON" in flaky.feedback[1] and "nope" in flaky.feedback[2]
    assert len(statuses) == 6  # the seed + 5 proposals


@pytest.mark.parametrize("over", [{"aggregator": "sum"}, {"aggregator_base": "legacy"}])
def test_aggregator_variants(tmp_path, over):
    result, (X, y, m, (Xt, yt, mt)) = search(tmp_path, **over)
    man = result.to_manifest()
    json.dumps(man, allow_nan=False)
    if not result.shipped:
        assert man["aggregator"] is None and result.gate.reason
        return
    agg = man["aggregator"]
    assert agg["base_margin"] == result.options.aggregator_base
    if over.get("aggregator") == "sum":
        assert agg["kind"] == "sum" and result.booster is None and result.save_aggregator(tmp_path / "a.json") is None
        # the plain sum: the base margin plus each active expert's correction
        from fecc_runtime.format import base_margin

        Xh = Xt.astype(np.float32).astype(np.float64)
        bt = base_margin(mt, *result.aggregator.base_map)
        want = bt + sum(np.nan_to_num(e.values(Xh, bt) - bt) for e in result.experts)
        np.testing.assert_allclose(result.predict_margin(Xh, mt), want)
    else:
        assert agg["kind"] == "xgboost" and result.save_aggregator(tmp_path / "a.json").exists()
