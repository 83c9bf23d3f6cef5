"""Progress output: the per-chain steps the search emits and how the CLI's reporter prints them."""
from __future__ import annotations

import io
import re
from dataclasses import replace

import numpy as np
import pytest
import xgboost as xgb

from fecc.llm.grammar_proposer import GrammarProposer
from fecc.progress import Reporter, format_step
from fecc.search import SearchOptions, run_search
from fecc.search.experts import ChainStep
from test_search_pipeline import folds_for, legacy_model, make_planted

STEP = ChainStep(chain="region_3", chain_no=2, n_chains=5, proposal=6, max_proposals=15, accepted=2,
                 iterations=5, metric_name="auc", best=0.74213, legacy=0.731, llm_seconds=41.2, seconds=55.0,
                 last="hinge on x1: accepted")


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_plain_reporter_prints_one_line_per_step_and_the_outcome():
    out = io.StringIO()
    r = Reporter(out)
    assert not r.live  # a StringIO is not a terminal
    r(f"search: 5 hard region(s)")
    r.chain_step(replace(STEP, proposal=0))  # the chain's start: nothing to say yet
    r.chain_step(STEP)
    r.chain_step(replace(STEP, done=True, outcome="kept: valid z = 2.10"))
    lines = out.getvalue().splitlines()
    assert lines[0] == "[fecc] search: 5 hard region(s)"
    assert len(lines) == 3
    assert "chain 2/5 region_3" in lines[1] and " 6/15 proposals" in lines[1] and "2/5 accepted" in lines[1]
    assert "auc 0.7421 (legacy 0.7310)" in lines[1] and "LLM 41 s" in lines[1]
    assert "last: hinge on x1: accepted" in lines[1]
    assert lines[2].endswith("kept: valid z = 2.10")
    assert "\r" not in out.getvalue()


def test_live_reporter_redraws_one_bar_and_closes_it_before_text():
    out = _Tty()
    r = Reporter(out)
    assert r.live
    r.chain_step(replace(STEP, proposal=3))
    r.chain_step(STEP)
    r("an unrelated line")
    r.chain_step(replace(STEP, proposal=15, done=True, outcome="dropped: not significant"))
    text = out.getvalue()
    assert text.count("\r\x1b[2K") == 3
    assert "██████░░░░░░░░░" in text  # 6 of 15 → 6 of 15 cells
    # the text line starts on its own line, after the open bar
    assert "\n[fecc] an unrelated line\n" in text
    assert text.endswith("  └ dropped: not significant\n")


def test_grammar_proposer_shows_no_llm_time():
    text = format_step(replace(STEP, llm_seconds=0.0), bar=False)
    assert "LLM" not in text and "55 s" in text


class _Usage:
    seconds = 0.0


class TimedGrammar(GrammarProposer):
    """The grammar proposer with an LLM-like usage counter: 2 s of 'LLM time' per answer."""

    def __init__(self):
        super().__init__()
        self.usage = _Usage()

    def propose(self, ctx):
        self.usage.seconds += 2.0
        return super().propose(ctx)


@pytest.mark.parametrize("proposer_cls", [GrammarProposer, TimedGrammar])
def test_search_sends_a_step_per_proposal_and_a_final_one_per_chain(tmp_path, proposer_cls):
    Xl, yl = make_planted(1500, 101, with_region=False)
    X, y = make_planted(1600, 1)
    booster = legacy_model(Xl, yl)
    margin = booster.predict(xgb.DMatrix(X.to_numpy(), missing=np.nan), output_margin=True).astype(float)
    steps, lines = [], []

    class Sink:
        def __call__(self, msg):
            lines.append(msg)

        def chain_step(self, step):
            steps.append(step)

    opts = SearchOptions.from_dict(dict(n_regions=2, max_proposals=4, global_proposals=4, iterations=3,
                                        optuna_trials=8, seed=3))
    run_search(X=X, y=y, legacy_margin=margin, task="binary", folds=folds_for(y), proposer=proposer_cls(),
               options=opts, workdir=tmp_path, progress=Sink())
    assert lines, "text lines still arrive"
    chains = sorted({s.chain for s in steps})
    assert 1 <= len(chains) <= 3  # the whole-space chain, then up to 2 regions
    for name in chains:
        own = [s for s in steps if s.chain == name]
        assert [s.proposal for s in own[:-1]] == list(range(len(own) - 1))  # start, then after each proposal
        assert own[-1].done and own[-1].outcome.startswith(("kept: ", "dropped: "))
        assert sum(s.done for s in own) == 1
        assert all(s.n_chains >= len(chains) and s.max_proposals == 4 for s in own)
        assert all(a.accepted <= b.accepted for a, b in zip(own, own[1:]))
        assert own[-1].proposal <= 4 and own[-1].metric_name == "oof gain"
        if proposer_cls is TimedGrammar:
            assert own[-1].llm_seconds == pytest.approx(2.0 * own[-1].proposal)
        else:
            assert all(s.llm_seconds == 0.0 for s in own)
    assert [s.chain_no for s in steps if s.done] == list(range(1, len(chains) + 1))
    assert steps[-1].n_chains == len(chains)


def test_a_spent_llm_budget_stops_every_chain_and_the_search_finishes(tmp_path):
    """The compile-wide budget: once the proposer says it is spent, chains stop asking."""
    from fecc.llm.base import BudgetExhausted

    class Budgeted(GrammarProposer):
        def __init__(self, calls):
            super().__init__()
            self.left, self.asked = calls, 0

        def propose(self, ctx):
            self.asked += 1
            if self.left <= 0:
                raise BudgetExhausted("LLM call budget spent (3 of 3 calls)")
            self.left -= 1
            return super().propose(ctx)

    Xl, yl = make_planted(1500, 101, with_region=False)
    X, y = make_planted(1600, 1)
    margin = legacy_model(Xl, yl).predict(xgb.DMatrix(X.to_numpy(), missing=np.nan), output_margin=True)
    lines = []
    proposer = Budgeted(3)
    opts = SearchOptions.from_dict(dict(n_regions=3, max_proposals=6, iterations=6, optuna_trials=6, seed=3))
    result = run_search(X=X, y=y, legacy_margin=margin.astype(float), task="binary", folds=folds_for(y),
                        proposer=proposer, options=opts, workdir=tmp_path, progress=lines.append)
    n_chains = len(result.chains)
    assert n_chains >= 2
    # 3 answers, then one refused ask per chain that was still running
    # (the gate's outer searches ask too: each of their chains asks once and stops)
    assert proposer.asked <= 3 + n_chains + sum(o["chains"] for o in result.outer)
    assert sum(c["proposals"] for c in result.chains) == 3
    assert any("budget spent" in line and "chain stops" in line for line in lines)
    assert result.gate.decision in ("ensemble", "legacy-only")
