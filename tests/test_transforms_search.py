"""The teaming transformation search end to end, with small budgets (seconds)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fecc.ir import Binary, Const, Feature, Param
from fecc.llm.base import ParamRange, Proposal, ProposalError
from fecc.llm.grammar_proposer import GrammarProposer
from fecc.transforms import TransformOptions, search_transforms
from fecc.transforms.archive import read_adapters, read_candidates
from fecc.transforms.automaton import Automaton
from fecc.transforms.teacher import project
from fecc.transforms.vocab import Vocab

pytest.importorskip("torch")

SMALL = dict(golden=100, epochs=15, refit_epochs=3, rounds=1, starts=8, grad_steps=4, eval_top=24, audit=4,
             probe_invalid=16, max_features=6)


def _data(n=1500, seed=0, signal=True):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(1, 6)})
    m = 0.8 * X["x3"].to_numpy()
    logit = m + (1.5 * X["x1"] * X["x2"]).to_numpy() if signal else m
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return X, y, m


def test_planted_interaction_is_found_with_positive_oof_gain(tmp_path):
    X, y, m = _data()
    res = search_transforms(X, y, m, "binary", options=TransformOptions(seed=0, **SMALL), workdir=tmp_path)
    assert res.transforms, res.stats
    best = res.transforms[0]
    assert {"x1", "x2"} <= set(best.features)
    assert best.metrics["gain"] > 0.05 and best.metrics["z"] > 2.5 and best.metrics["metric"] == "auc"
    entry = best.to_dict()
    assert set(entry) == {"name", "postfix", "math", "features", "metrics"}
    col = res.values(X)[best.name].to_numpy()
    assert abs(np.corrcoef(np.nan_to_num(col), (X["x1"] * X["x2"]).to_numpy())[0, 1]) > 0.7
    assert best.name not in X.columns and list(res.augment(X).columns)[-1] == best.name
    st = res.stats
    for key in ("generated", "invalid", "evaluated", "ranked_out", "lambda", "timings"):
        assert key in st
    assert st["invalid"] == 0 and st["lambda"] == 1.0 and st["decoder"] == "ml"
    assert st["evaluated"] >= 100 and st["ranking"]["evaluated"] > 0
    assert 0 <= st["invalid_unconstrained"]["rate"] <= 1
    rows = read_candidates(res.archive_path)
    assert sum(r["status"] == "evaluated" for r in rows) == st["evaluated"] - st["degenerate"]
    assert {r["source"] for r in rows} >= {"teacher:grammar", "ml"}
    assert res.manifest()["search"]["transforms"] is st


def test_pure_noise_chooses_nothing():
    X, y, m = _data(signal=False, seed=1)
    res = search_transforms(X, y, m, "binary", options=TransformOptions(seed=0, **SMALL))
    assert res.transforms == []
    assert res.stats["chosen"] == 0 and res.archive_path is None


def test_same_seed_same_result(tmp_path):
    X, y, m = _data(1000, seed=2)
    opts = TransformOptions(seed=5, **SMALL)
    a = search_transforms(X, y, m, "binary", options=opts, workdir=tmp_path / "a")
    b = search_transforms(X, y, m, "binary", options=opts, workdir=tmp_path / "b")
    assert [t.to_dict() for t in a.transforms] == [t.to_dict() for t in b.transforms]
    drop = ("timings", "seconds")
    assert {k: v for k, v in a.stats.items() if k not in drop} == {k: v for k, v in b.stats.items() if k not in drop}
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("run", "seconds")} for r in rows]  # noqa: E731
    assert strip(read_candidates(a.archive_path)) == strip(read_candidates(b.archive_path))


def test_regression_task_and_caller_folds():
    rng = np.random.default_rng(3)
    n = 1200
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.normal(size=n)})
    m = X["b"].to_numpy()
    y = m + 1.5 * np.abs(X["a"].to_numpy()) + 0.3 * rng.normal(size=n)
    folds = [np.arange(i, n, 4) for i in range(4)]
    res = search_transforms(X, y, m, "regression", folds, TransformOptions(seed=0, folds=4, min_folds_positive=3,
                                                                             **SMALL))
    assert res.stats["folds"] == 4 and res.stats["metric"] == "rmse"
    assert res.transforms and "a" in res.transforms[0].features


def test_options_are_validated():
    with pytest.raises(ValueError):
        TransformOptions(decoder="oracle")
    with pytest.raises(ValueError):
        TransformOptions(lam=1.5)
    with pytest.raises(ValueError):
        TransformOptions(golden=0)
    with pytest.raises(ValueError):
        TransformOptions(min_folds_positive=6, folds=5)
    with pytest.raises(ValueError, match="unknown transform option"):
        TransformOptions.from_dict({"nope": 1})
    o = TransformOptions.from_dict({"lam": "0.3", "rounds": "2", "decoder": "teaming", "constants": "1,2",
                                    "student_rank": "false"})
    assert o.lam == 0.3 and o.rounds == 2 and o.constants == (1.0, 2.0) and o.student_rank is False
    assert o.effective_lambda == 0.3 and TransformOptions().effective_lambda == 1.0
    assert TransformOptions(decoder="student").effective_lambda == 0.0


def test_projection_of_proposer_structures_onto_the_vocabulary():
    v = Vocab.build(["x", "z"])
    auto = Automaton(v)
    inter = Binary("mul", Param("a"), Binary("mul", Binary("sub", Feature("x"), Const(3.7)),
                                             Binary("sub", Feature("z"), Const(-1.2))))
    assert project(inter, {"a": ParamRange(-1, 1, init=0.0)}, auto) == ["$x $z mul"]
    assert project(Const(1.0), {}, auto) == []


class _Junk:
    name = "junk"

    def __init__(self):
        self.i = 0

    def propose(self, ctx):
        self.i += 1
        if self.i % 3 == 0:
            raise ProposalError("backend down")
        if self.i % 3 == 1:
            return Proposal(expr=Const(2.0), space={})                     # nothing expressible
        return Proposal(expr=Binary("mul", Feature("x1"), Feature("x2")), space={})


def test_proposer_teachers_write_golden_examples(tmp_path):
    X, y, m = _data(800)
    opts = TransformOptions(seed=0, teacher="proposer", teacher_calls=30, **{**SMALL, "golden": 40, "rounds": 0})
    res = search_transforms(X, y, m, "binary", options=opts, proposer=GrammarProposer())
    assert res.stats["teacher"]["name"] == "grammar" and res.stats["teacher"]["asked"] == 30
    junk = search_transforms(X, y, m, "binary", options=opts, proposer=_Junk(), workdir=tmp_path)
    t = junk.stats["teacher"]
    assert t["name"] == "junk" and t["errors"] == 10 and t["invalid"] == 10
    assert junk.transforms and junk.transforms[0].postfix == "$x1 $x2 mul"
    sources = {r["source"] for r in read_candidates(junk.archive_path)}
    assert sources == {"teacher:junk", "teacher:grammar"}        # the rest topped up by the grammar


def test_teaming_with_a_tiny_student(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from _tokenizers import bpe_tokenizer

    from fecc.transforms.student import Student, tiny_llama

    X, y, m = _data(800)
    opts = TransformOptions(seed=0, decoder="teaming", lam=0.8, llm_decodes=8, student_steps=3,
                            **{**SMALL, "golden": 40, "probe_invalid": 4, "epochs": 5})
    cols = ["x1", "x2", "x3", "x4", "x5"]
    tok = bpe_tokenizer()
    assert transformers is not None

    # the search builds its vocabulary from the data: build the student on the same one
    from fecc.transforms.search import _Search

    vocab = _Search(X, y, m, "binary", None, opts, None, None, None, None).vocab
    assert list(vocab.features) == cols
    student = Student(tiny_llama(tok), tok, vocab)
    res = search_transforms(X, y, m, "binary", options=opts, workdir=tmp_path, student=student)
    st = res.stats
    assert st["decoder"] == "teaming" and st["lambda"] == 0.8
    assert st["student"]["steps"] == 3 and st["student"]["scoring_passes"] > 0
    assert st["invalid"] == 0 and "student" in st["ranking"]["tau"]
    ad = read_adapters(res.archive_path)
    assert len(ad) == 1 and ad[0]["sha256"] == res.adapter["sha256"]
    assert {r["source"] for r in read_candidates(res.archive_path)} >= {"teaming"}
