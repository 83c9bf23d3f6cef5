"""Learned ranking before real evaluation (seeds 002/003): Kendall's τ, combined ranks, selection."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kendalltau

from fecc.transforms.ranking import RankingLog, combined_rank, kendall_tau, normalised_ranks, select


def test_kendall_tau_known_values():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    # 5 items, one discordant swap of neighbours: (C - D) / 10 = (9 - 1) / 10
    assert kendall_tau([1, 2, 3, 4, 5], [1, 2, 3, 5, 4]) == pytest.approx(0.8)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert kendall_tau(a, b) == pytest.approx(kendalltau(a, b).statistic)
    assert np.isnan(kendall_tau([1, 2], [1, 2]))                 # too few
    assert np.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))           # no variation
    assert kendall_tau([1, 2, np.nan, 3], [1, 2, 5, 3]) == pytest.approx(1.0)   # NaN pairs dropped


def test_combined_rank_weights_rankers():
    ml = np.array([0.1, 0.5, 0.3])
    st = np.array([3.0, 1.0, 2.0])
    assert np.allclose(normalised_ranks(ml), [0.0, 1.0, 0.5])
    assert np.allclose(combined_rank({"ml": ml}), [0.0, 1.0, 0.5])
    assert np.allclose(combined_rank({"ml": ml, "student": st}), [0.5, 0.5, 0.5])
    assert np.allclose(combined_rank({"ml": ml, "student": st}, {"student": 0.0}), [0.0, 1.0, 0.5])
    with pytest.raises(ValueError):
        combined_rank({})


def test_select_takes_the_top_and_audits_the_rest():
    score = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6])
    sel = select(score, 3, 2, np.random.default_rng(0))
    assert sel.evaluate.tolist() == [0, 2, 4]
    assert len(sel.audit) == 2 and not set(sel.audit) & {0, 2, 4}
    assert sorted(sel.evaluate.tolist() + sel.audit.tolist() + sel.skipped.tolist()) == list(range(7))
    everything = select(score, 10, 5, np.random.default_rng(0))
    assert len(everything.evaluate) == 7 and len(everything.skipped) == 0


def test_ranking_log_reports_tau_per_round_and_evaluations_saved():
    log = RankingLog()
    pred = np.array([1.0, 2.0, 3.0, 4.0])
    log.add({"ml": pred}, pred / 4, np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    log.add({"ml": pred + 100}, pred / 4, np.arange(4), np.array([4.0, 3.0, 2.0, 1.0]))
    log.candidates, log.evaluated, log.audited, log.skipped = 20, 6, 2, 12
    rep = log.report()
    assert rep["ranked_out"] == 12 and rep["saved_fraction"] == 0.6
    assert rep["tau"]["ml"] == pytest.approx(0.0) and rep["tau"]["combined"] == pytest.approx(0.0)


def test_rankers_are_weighted_by_the_tau_they_earned():
    log = RankingLog()
    assert log.weights(["ml", "student"]) == {"ml": 1.0, "student": 1.0}
    real = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    log.add({"ml": real, "student": -real}, real, np.arange(5), real)
    w = log.weights(["ml", "student"])
    assert w["ml"] == pytest.approx(1.0) and w["student"] == 0.0
    bad = RankingLog()
    bad.add({"ml": -real}, real, np.arange(5), real)
    assert bad.weights(["ml"]) == {"ml": 1.0}            # nobody earned a vote: all vote equally
