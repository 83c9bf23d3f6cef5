"""Hostile LLM answers inside a real search: each is refused with its reason, fed back to
the model, archived, and the compile goes on to use the one sound answer."""
from __future__ import annotations

import numpy as np
import xgboost as xgb

from fecc.llm.llm_proposer import Completion, LLMProposer
from fecc.search import SearchOptions, run_search
from fecc.search.archive import read_candidates
from test_llm_pyparse import HOSTILE
from test_search_pipeline import folds_for, legacy_model, make_planted

SOUND = ('def f(x, params):\n    # intent: ramp in x1\n    return params["c_0"] + params["w"] * (x["x1"] - 0.5)\n'
         '{"w": {"low": -6, "high": 6}}')


class ScriptedBackend:
    """An adversarial model: answers from a script, in order, whatever it is asked."""

    name = "scripted"
    supports_grammar = False

    def __init__(self, answers):
        self.answers = list(answers)
        self.asked: list[list[dict]] = []

    def complete(self, messages, *, grammar, temperature, max_tokens, seed):
        self.asked.append(messages)
        text = self.answers.pop(0) if self.answers else SOUND
        return Completion(text=text, prompt_tokens=100, completion_tokens=50, seconds=0.01)


def test_hostile_answers_are_refused_and_the_search_goes_on(tmp_path):
    hostile = [text for text, _, _ in HOSTILE[:12]]  # imports, dunder walks, open, eval, loops
    backend = ScriptedBackend(hostile)
    proposer = LLMProposer(backend, max_corrections=2)
    Xl, yl = make_planted(1500, 101, with_region=False)
    X, y = make_planted(1600, 1)
    margin = legacy_model(Xl, yl).predict(xgb.DMatrix(X.to_numpy(), missing=np.nan), output_margin=True)
    opts = SearchOptions.from_dict(dict(n_regions=1, max_proposals=6, iterations=1, optuna_trials=8, seed=3))
    result = run_search(X=X, y=y, legacy_margin=margin.astype(float), task="binary", folds=folds_for(y),
                        proposer=proposer, options=opts, workdir=tmp_path)
    u = proposer.usage
    assert u.rejected_answers == len(hostile) and not backend.answers  # every hostile answer was asked and refused
    assert u.accepted >= 1  # then the sound answer got through
    # each refusal went back to the model as a correction turn with its reason
    corrections = [m[-1]["content"] for m in backend.asked if m[-1]["role"] == "user" and len(m) > 2]
    assert any("imports are not allowed" in c for c in corrections)
    assert any("attribute access" in c or "not allowed" in c for c in corrections)
    rows = read_candidates(result.archive_path)
    errors = [r for r in rows if r["status"] == "proposer-error"]
    assert errors and all(r["message"] for r in errors)
    assert any(r["status"] in ("accepted", "rejected") and "x1" in (r["expr_postfix"] or "") for r in rows)
    assert result.gate.decision in ("ensemble", "legacy-only")
