"""Unit tests of the search's parts: options, metrics, statistics, regions, grammar proposer, archive, gate."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fecc.ir import DIV_EPS, Binary, Const, Feature, Param, evaluate, params_of, validate
from fecc.llm.base import FeatureStat, ProposalContext, ProposalError, Proposer
from fecc.llm.grammar_proposer import GrammarProposer
from fecc.search import SearchOptions, metrics
from fecc.search.archive import Archive, read_candidates
from fecc.search.gate import decide
from fecc.search.regions import find_regions
from fecc.search.stats import error_types, feature_stats, information_value, population_stability
import fecc_runtime.experts as rt


def test_options_from_dict_converts_and_rejects_unknown():
    o = SearchOptions.from_dict({"n_regions": "3", "tau0": "0.01", "refine_boundaries": "false"})
    assert (o.n_regions, o.tau0, o.refine_boundaries) == (3, 0.01, False)
    with pytest.raises(ValueError, match="unknown search option.*bogus"):
        SearchOptions.from_dict({"bogus": 1})
    with pytest.raises(ValueError):
        SearchOptions(aggregator="magic")
    with pytest.raises(ValueError):
        SearchOptions(n_folds=1)
    with pytest.raises(ValueError):
        SearchOptions(gate_alpha=0.7)
    assert SearchOptions(n_regions=0).n_regions == 0  # the whole-space expert alone


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.normal(size=500), 1)  # many ties
    assert metrics.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert np.isnan(metrics.auc(np.ones(5), np.arange(5)))


def test_logloss_is_stable_for_huge_margins():
    out = metrics.logloss_rows(np.array([1.0, 0.0]), np.array([-1000.0, -1000.0]))
    assert out[0] == pytest.approx(1000.0) and out[1] == pytest.approx(0.0)


def test_iv_and_psi():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=2000)
    assert information_value(x, x > 0.5) > 1.0
    assert information_value(x, rng.uniform(size=2000) > 0.5) < 0.05
    assert population_stability(x, x) == pytest.approx(0.0, abs=1e-9)
    assert population_stability(x[x > 0.8], x) > 1.0
    x[::10] = np.nan  # missing values form their own bin, no NaN result
    assert np.isfinite(information_value(x, x > 0.5))


def test_feature_stats_rank_by_iv_and_error_types():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"noise": rng.uniform(size=400), "signal": rng.uniform(size=400)})
    stats = feature_stats(df, df, df["signal"].to_numpy() - 0.5)
    assert stats[0].name == "signal" and stats[0].iv > stats[1].iv
    kinds = error_types("binary", np.array([1, 1, 0, 0, 1]), np.array([3.0, -3.0, 3.0, -3.0, 0.1]))
    assert list(kinds) == ["true positive", "false negative", "false positive", "true negative", "high uncertainty"]


def test_regions_follow_planted_error_and_nan_routing():
    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.uniform(size=(3000, 3)), columns=["a", "b", "c"])
    X.loc[X.index[::20], "c"] = np.nan
    err = np.where((X["a"] > 0.8) & (X["b"] < 0.3), 1.0, 0.1) + rng.uniform(0, 0.05, 3000)
    regions = find_regions(X, err, n_regions=3, depth=3, min_leaf=20, refine_width=0.25, seed=0)
    top = regions[0]
    masks = np.array([evaluate(r.bound(), X) for r in regions])
    mask = masks.any(axis=0)
    truth = ((X["a"] > 0.8) & (X["b"] < 0.3)).to_numpy()
    assert (mask & truth).sum() / truth.sum() > 0.9 and truth[mask].mean() > 0.9
    # depth 3 splits the planted leaf once more, on c; NaN follows the "<=" side, stated in the rule
    assert any("isnan(c)" in r.rule() for r in regions)
    assert masks[:, np.isnan(X["c"].to_numpy()) & truth].sum() == (np.isnan(X["c"].to_numpy()) & truth).sum()
    assert set(params_of(top.predicate)) == set(top.thresholds) == set(top.ranges)
    for r in regions:  # leaves are disjoint
        assert r.score > 0 and r.n_train >= 20
    assert masks.sum(axis=0).max() <= 1


def _ctx(seed=0, **over) -> ProposalContext:
    stats = (FeatureStat("a", 0.9, 0.1, 0.5, 0.3, 0.0, 1.0, 0.0), FeatureStat("b", 0.2, 0.0, 5.0, 2.0, 0.0, 10.0, 0.1))
    base = dict(task="binary", objective="binary:logistic", metric_name="auc", region_rule="a > 0.5",
                region=Binary("gt", Feature("a"), Const(0.5)), features=("a", "b"), current=Param("c_0"),
                current_params={"c_0": 0.3}, current_metric=0.7, feature_stats=stats, seed=seed,
                extra={"correction_scale": 3.0, "reserved": ("t_1",)})
    base.update(over)
    return ProposalContext(**base)


def test_grammar_proposer_is_deterministic_valid_and_incremental():
    g = GrammarProposer()
    assert isinstance(g, Proposer)
    seen = set()
    for seed in range(30):
        p = g.propose(_ctx(seed))
        assert p == g.propose(_ctx(seed))
        new = [n for n in params_of(p.expr) if n != "c_0"]
        assert new and set(new) == set(p.space) and "t_1" not in new
        validate(p.expr, features=("a", "b"), params={"c_0", *p.space})
        assert p.expr.a == Param("c_0")  # an edit of the current expression, not a rewrite
        for r in p.space.values():
            assert r.low < r.high and r.low <= r.init <= r.high
        seen.add(p.intent.split(" ")[0])
    assert {"step", "linear", "hinge"} <= seen


def test_grammar_proposer_avoids_listed_failures():
    g = GrammarProposer(moves={"step": 1.0, "linear": 1.0})
    first = g.propose(_ctx(3))
    other = g.propose(_ctx(3, negative=(first.intent + ": auc 0.6 vs 0.7 (rejected)",)))
    assert other.intent != first.intent


def test_grammar_proposer_stops_at_size_limit():
    big = Param("c_0")
    for i in range(20):
        big = Binary("add", big, Binary("mul", Param(f"p{i}"), Feature("a")))
    with pytest.raises(ProposalError):
        GrammarProposer().propose(_ctx(current=big))


def test_archive_roundtrip(tmp_path):
    with Archive(tmp_path / "a.sqlite", run="r1", options={"seed": 1}, started=0.0) as a:
        a.record(chain="region_1", region_rule="a > 1", region_postfix="$a 1.0 gt", iteration=0, proposal=0,
                 proposer="grammar", expr_postfix="@c_0", params_json={"c_0": 0.5}, status="accepted")
        with pytest.raises(KeyError):
            a.record(nonsense=1)
    rows = read_candidates(tmp_path / "a.sqlite")
    assert len(rows) == 1 and rows[0]["params_json"] == '{"c_0": 0.5}' and rows[0]["run"] == "r1"


def test_gate_ships_only_a_significant_out_of_fold_gain():
    from fecc.search.crossfit import make_folds

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000).astype(float)
    signal = rng.normal(size=2000)
    legacy = (y - 0.5) + rng.normal(0, 1.5, 2000)
    folds = make_folds(y, task="binary", seed=0)
    worse = legacy + rng.normal(0, 3, 2000)
    g = decide(task="binary", y=y, legacy_margin=legacy, ensemble_margin=worse, folds=folds, region_masks={},
               alpha=0.05)
    assert g.decision == "legacy-only" and "not significant" in g.reason and g.test.gain < 0
    same = decide(task="binary", y=y, legacy_margin=legacy, ensemble_margin=legacy + 0.0, folds=folds,
                  region_masks={}, alpha=0.05)
    assert same.decision == "legacy-only" and same.test.gain == 0.0  # no gain is no reason to ship
    better = legacy + 1.0 * (y - 0.5) + 0.1 * signal
    ok = decide(task="binary", y=y, legacy_margin=legacy, ensemble_margin=better, folds=folds, region_masks={},
                alpha=0.05)
    assert ok.decision == "ensemble" and ok.test.p_value < 0.05 and ok.test.interval[0] > 0
    slot = ok.to_manifest()
    assert slot["test"]["name"] == "delong" and slot["split"] == "out-of-fold"
    assert len(slot["folds"]) == 5 and all(f["gain"] > 0 for f in slot["folds"])
    none = decide(task="regression", y=y, legacy_margin=legacy, ensemble_margin=None, folds=folds,
                  region_masks={}, alpha=0.05)
    assert none.decision == "legacy-only" and none.metric == "rmse"


def test_runtime_safe_div_matches_ir():
    assert rt.DIV_EPS == DIV_EPS
    vals = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-9, -1e-9, 2.0, -3.0, 1e300])
    a, b = np.meshgrid(vals, vals)
    want = evaluate(Binary("div", Feature("a"), Feature("b")), {"a": a.ravel(), "b": b.ravel()})
    np.testing.assert_array_equal(rt.safe_div(a.ravel(), b.ravel()), want)
    phi = rt.interaction_features(np.array([1.0, -2.0]), np.array([[3.0], [np.nan]]))
    np.testing.assert_array_equal(phi[0], [1.0, 3.0, 2.0, 3.0 / (1.0 + DIV_EPS)])
    assert np.isnan(phi[1, 1:]).all()
    assert rt.expert_offset(phi, 1).tolist() == [2.0, 0.0]


def test_sample_instances_prefers_errors_and_is_seeded():
    from fecc.search.stats import sample_instances

    rng_data = np.random.default_rng(4)
    rows = pd.DataFrame({"a": rng_data.uniform(size=100), "b": np.where(np.arange(100) % 9 == 0, np.nan, 1.0)})
    y = (rng_data.uniform(size=100) < 0.5).astype(float)
    margin = np.where(np.arange(100) < 10, -3.0 * (2 * y - 1), 3.0 * (2 * y - 1))  # 10 confident errors
    a = sample_instances("binary", rows, y, margin, 12, np.random.default_rng(0), legacy=np.zeros(100))
    b = sample_instances("binary", rows, y, margin, 12, np.random.default_rng(0), legacy=np.zeros(100))
    assert a == b and len(a) == 12
    kinds = [r["error_type"] for r in a]
    assert sum(k in ("false positive", "false negative") for k in kinds) == 9  # n - n//4 errors at most, here 9
    assert all(r["legacy_margin"] == 0.0 for r in a)
    assert all(set(r) == {"a", "b", "label", "legacy_margin", "current_margin", "error_type"} for r in a)


def test_base_map_recovers_a_miscalibrated_margin_and_stays_finite():
    """fecc.search.base_map: the affine map of the legacy margin the search repairs."""
    from fecc.search.base_map import fit_base_map

    rng = np.random.default_rng(3)
    m = rng.normal(0.0, 3.0, 20_000)
    # an overconfident legacy margin: the true log-odds are 0.25 m - 1
    y = (rng.random(m.size) < 1.0 / (1.0 + np.exp(-(0.25 * m - 1.0)))).astype(float)
    scale, shift = fit_base_map("binary", y, m)
    assert abs(scale - 0.25) < 0.02 and abs(shift + 1.0) < 0.06
    # regression: least squares
    scale, shift = fit_base_map("regression", 2.0 * m + 1.0 + rng.normal(0, 0.1, m.size), m)
    assert abs(scale - 2.0) < 1e-2 and abs(shift - 1.0) < 1e-2
    # a margin that separates the classes: the ridge keeps the scale finite
    sep = np.r_[rng.normal(-4, 0.1, 50), rng.normal(4, 0.1, 50)]
    scale, shift = fit_base_map("binary", np.r_[np.zeros(50), np.ones(50)], sep)
    assert np.isfinite(scale) and 0 < scale < 10
    # a margin that ranks the wrong way round, or a constant one: the identity
    assert fit_base_map("binary", (m < 0).astype(float), m) == (1.0, 0.0)
    assert fit_base_map("binary", y, np.zeros_like(m)) == (1.0, 0.0)
    assert fit_base_map("binary", y[:2], m[:2]) == (1.0, 0.0)


def test_base_map_leaves_the_legacy_ranking_alone():
    """An increasing map: the base margin's AUC is the legacy margin's, on any rows."""
    from fecc.search.base_map import fit_base_map
    from fecc_runtime.format import base_margin

    rng = np.random.default_rng(5)
    m = rng.normal(0, 2, 3000)
    y = (rng.random(3000) < 1 / (1 + np.exp(-0.4 * m))).astype(float)
    scale, shift = fit_base_map("binary", y, m)
    assert metrics.auc(y, base_margin(m, scale, shift)) == metrics.auc(y, m)
