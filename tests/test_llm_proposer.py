"""LLMProposer: prompt → backend → parse → validate → correction rounds → Proposal, with budgets."""
from __future__ import annotations

import pytest

from fecc.ir import Feature, Param, make
from fecc.llm.base import Proposal, ProposalError, Proposer
from fecc.llm.llm_proposer import BackendError, Budget, BudgetExhausted, Completion, LLMProposer, changes_function
from fecc.llm.prompts import example_index, render_messages
from fecc.llm.base import ParamRange

from llm_contexts import ALL_CONTEXTS, credit_context

GOOD = '''def f(x, params):
    # intent: late payments add risk for older low-income applicants
    return params["w0"] * log(x["debt_ratio"]) + params["w1"] * x["late_payments"]
{"w1": {"low": -1, "high": 1}}'''
UNCHANGED = '''def f(x, params):
    # intent: nothing new
    return params["w0"] * log(x["debt_ratio"])
{}'''
BAD_FEATURE = '''def f(x, params):
    # intent: use salary
    return params["w0"] * log(x["debt_ratio"]) + params["w1"] * x["salary"]
{"w1": {"low": -1, "high": 1}}'''


class Scripted:
    """A backend that answers from a list and remembers what it was asked."""

    name = "scripted"

    def __init__(self, answers, supports_grammar=True):
        self.answers = list(answers)
        self.supports_grammar = supports_grammar
        self.requests = []

    def complete(self, messages, *, grammar, temperature, max_tokens, seed):
        self.requests.append(dict(messages=messages, grammar=grammar, temperature=temperature, seed=seed))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return Completion(answer, prompt_tokens=1000, completion_tokens=80, seconds=0.01)


def test_it_is_a_proposer_and_returns_ir():
    backend = Scripted([GOOD])
    p = LLMProposer(backend)
    assert isinstance(p, Proposer)
    prop = p.propose(credit_context())
    assert isinstance(prop, Proposal)
    assert prop.expr == make("add", make("mul", Param("w0"), make("log", Feature("debt_ratio"))),
                             make("mul", Param("w1"), Feature("late_payments")))
    assert prop.space == {"w1": ParamRange(-1.0, 1.0)}
    assert prop.intent.startswith("late payments") and prop.raw == GOOD
    assert prop.usage["calls"] == 1 and prop.usage["completion_tokens"] == 80
    req = backend.requests[0]
    assert req["temperature"] == 0.1 and req["grammar"].startswith("root ::=")
    assert 'x[\\"debt_ratio\\"]' in req["grammar"]


def test_a_rejected_answer_is_fed_back_and_corrected():
    backend = Scripted([BAD_FEATURE, GOOD])
    p = LLMProposer(backend, max_corrections=2)
    prop = p.propose(credit_context())
    assert prop.usage["corrections"] == 1
    second = backend.requests[1]["messages"]
    assert second[-2] == {"role": "assistant", "content": BAD_FEATURE}
    assert "unknown feature 'salary'" in second[-1]["content"] and second[-1]["role"] == "user"
    assert backend.requests[1]["seed"] == backend.requests[0]["seed"] + 1
    assert p.usage.corrections == 1 and p.usage.rejected_answers == 1 and p.usage.valid_first_try == 0
    assert p.usage.reasons == {"unknown feature": 1}


def test_unchanged_function_is_rejected():
    p = LLMProposer(Scripted([UNCHANGED]), max_corrections=0)
    with pytest.raises(ProposalError, match="unchanged on the region") as info:
        p.propose(credit_context())
    assert info.value.raw == UNCHANGED


def test_after_the_last_correction_the_reason_is_raised():
    p = LLMProposer(Scripted([BAD_FEATURE, BAD_FEATURE, BAD_FEATURE]), max_corrections=2)
    with pytest.raises(ProposalError, match="salary") as info:
        p.propose(credit_context())
    assert info.value.usage["calls"] == 3
    assert p.usage.calls == 3 and p.usage.accepted == 0


def test_reserved_region_params_cannot_be_new_params():
    answer = GOOD.replace('"w1"', '"t_age"').replace("params[\"w1\"]", "params[\"t_age\"]")
    with pytest.raises(ProposalError, match="reserved"):
        LLMProposer(Scripted([answer]), max_corrections=0).propose(credit_context())


def test_backend_errors_become_proposal_errors():
    p = LLMProposer(Scripted([BackendError("connection refused")]))
    with pytest.raises(ProposalError, match="backend failed: connection refused"):
        p.propose(credit_context())
    assert p.usage.backend_errors == 1 and p.usage.backend_error == "connection refused"


def test_no_grammar_when_the_backend_cannot_or_when_disabled():
    b = Scripted([GOOD], supports_grammar=False)
    LLMProposer(b).propose(credit_context())
    assert b.requests[0]["grammar"] is None
    b = Scripted([GOOD])
    LLMProposer(b, use_grammar=False).propose(credit_context())
    assert b.requests[0]["grammar"] is None


def test_budgets():
    p = LLMProposer(Scripted([GOOD] * 5), budget=Budget(max_calls=2))
    p.propose(credit_context())
    p.propose(credit_context(seed=1))
    with pytest.raises(BudgetExhausted, match="call budget"):
        p.propose(credit_context(seed=2))
    p = LLMProposer(Scripted([GOOD] * 5), budget=Budget(max_tokens=1000))
    p.propose(credit_context())
    with pytest.raises(BudgetExhausted, match="token budget"):
        p.propose(credit_context())
    p = LLMProposer(Scripted([GOOD] * 5), budget=Budget(max_seconds=0.0))
    with pytest.raises(BudgetExhausted, match="time budget"):
        p.propose(credit_context())


def test_usage_accumulates():
    p = LLMProposer(Scripted([GOOD, BAD_FEATURE, GOOD]))
    p.propose(credit_context())
    p.propose(credit_context(seed=1))
    u = p.usage.as_dict()
    assert u["proposals"] == 2 and u["accepted"] == 2 and u["calls"] == 3
    assert u["prompt_tokens"] == 3000 and u["completion_tokens"] == 240 and u["valid_first_try"] == 1


def test_changes_function_uses_region_rows():
    ctx = credit_context()
    cur = ctx.current
    # structurally different, equal on every row: x * 1 is folded away
    same = make("mul", cur, make("add", Param("z"), make("sub", Param("z"), Param("z"))))
    assert not changes_function(cur, cur, current_params=ctx.current_params, space={}, rows=ctx.instances)
    assert changes_function(make("add", cur, Param("k")), cur, current_params=ctx.current_params,
                            space={"k": ParamRange(-1, 1)}, rows=ctx.instances)
    # a term that is zero for every region row (late_payments is never negative there)
    zero = make("add", cur, make("mul", Param("k"), make("min", Feature("late_payments"), make("neg", Feature("late_payments")))))
    rows = tuple({**r, "late_payments": 0.0} for r in ctx.instances)
    assert not changes_function(zero, cur, current_params=ctx.current_params, space={"k": ParamRange(-1, 1)},
                                rows=rows)
    assert same is not None


def test_prompts_are_deterministic_and_vary_the_example():
    for make_ctx in ALL_CONTEXTS.values():
        a, b = render_messages(make_ctx(seed=3)), render_messages(make_ctx(seed=3))
        assert a == b
        text = a[1]["content"]
        assert "## Region" in text and "rows of the region" in text and "Example of an incremental edit" in text
    seen = {example_index(credit_context(seed=s)) for s in range(20)}
    assert len(seen) >= 3


def test_prompt_holds_the_seed_004_sections():
    ctx = credit_context(feedback="line 3, col 5: unknown feature 'salary'")
    text = render_messages(ctx)[1]["content"]
    for part in ["## Task", "auc = 0.7123", 'return params["w0"] * log(x["debt_ratio"])', "w0 = 0.35",
                 "feature,IV,PSI,mean", "\nlate_payments,", "false negative,", "Example of an incremental edit", "Positive constraints",
                 "Negative constraints", "previous answer was rejected", "unknown feature 'salary'",
                 "log(v) = log(1 + |v|)"]:
        assert part in text, part
    table = text[text.index("rows of the region"):]
    assert table.count("\n") >= 20 + 3  # header, 20 instances, fences


def test_a_wide_table_lists_only_the_strongest_features_statistics():
    # 85 features (Caravan): the full statistics table overflowed the local model's
    # 4,096-token context and every call was refused
    from dataclasses import replace

    from fecc.llm.base import FeatureStat
    from fecc.llm.prompts import MAX_STAT_ROWS

    base = credit_context()
    names = tuple(f"f{i:02d}" for i in range(85))
    stats = tuple(FeatureStat(n, iv=round(0.001 * ((i * 37) % 85), 3), psi=0.0, mean=0.0, std=1.0, min=-2.0, max=2.0,
                              missing=0.0) for i, n in enumerate(names))
    wide = replace(base, features=names, feature_stats=stats, instances=())
    text = render_messages(wide)[1]["content"]
    table = text[text.index("feature,IV,PSI"):]
    table = table[: table.index("```")]
    listed = [line.split(",")[0] for line in table.strip().splitlines()[1:]]
    strongest = [s.name for s in sorted(stats, key=lambda s: -s.iv)[:MAX_STAT_ROWS]]
    assert sorted(listed) == sorted(strongest) and len(listed) == MAX_STAT_ROWS
    assert listed == [n for n in names if n in set(listed)]  # in the context's order
    assert f"{85 - MAX_STAT_ROWS} more features with lower IV are not listed" in text
    assert "Allowed names: " + ", ".join(names) + "." in text  # every feature stays usable
    # a table that fits is listed whole, with no note
    narrow = render_messages(credit_context())[1]["content"]
    assert "more features with lower IV" not in narrow
    assert all(f"\n{f}," in narrow for f in base.features)


def test_a_default_range_can_stand_in_for_a_forgotten_one():
    forgot = GOOD.replace('{"w1": {"low": -1, "high": 1}}', '{}')
    with pytest.raises(ProposalError, match="without a range"):
        LLMProposer(Scripted([forgot]), max_corrections=0, infer_ranges=False).propose(credit_context())
    prop = LLMProposer(Scripted([forgot]), default_range=ParamRange(-2, 2),
                       infer_ranges=False).propose(credit_context())
    assert prop.space == {"w1": ParamRange(-2.0, 2.0)}
    assert prop.usage["notes"] == ["parameter 'w1' had no range; given the default [-2, 2]"]


@pytest.mark.parametrize("body, space, expect, note", [
    # a weight: [-scale, scale] from 0 (the credit context has no correction_scale: 3)
    ('return params["w0"] * log(x["debt_ratio"]) + params["w1"] * x["late_payments"]', "{}",
     ParamRange(-3.0, 3.0, init=0.0), "a weight: [-3, 3]"),
    # a location on a feature: that feature's range in the region, from its midpoint
    ('return params["w0"] * log(x["debt_ratio"]) + (0.5 if x["age"] > params["w1"] else 0)', "{}",
     ParamRange(51.0, 80.0, init=65.5), "a location on age"),
    ('return params["w0"] * log(x["debt_ratio"]) + tanh(x["income"] - params["w1"])', "{}",
     ParamRange(800.0, 3000.0, init=1900.0), "a location on income"),
])
def test_a_forgotten_range_is_inferred_from_the_parameters_use(body, space, expect, note):
    answer = "def f(x, params):\n    # intent: test\n    " + body + "\n" + space
    prop = LLMProposer(Scripted([answer]), max_corrections=0).propose(credit_context())
    assert prop.space == {"w1": expect}
    assert any(note in n for n in prop.usage["notes"])


def test_a_location_on_a_feature_without_stats_is_still_refused():
    ctx = credit_context()
    ctx = type(ctx)(**{**vars(ctx), "feature_stats": tuple(s for s in ctx.feature_stats if s.name != "age")})
    answer = ('def f(x, params):\n    # intent: t\n    return params["w0"] * log(x["debt_ratio"]) + '
              '(0.5 if x["age"] > params["cut"] else 0)\n{}')
    with pytest.raises(ProposalError, match="without a range.*'cut'"):
        LLMProposer(Scripted([answer]), max_corrections=0).propose(ctx)
