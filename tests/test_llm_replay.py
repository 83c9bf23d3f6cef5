"""Record/replay: every prompt/answer pair with its prompt hash; replay is deterministic; a miss is an error."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fecc.errors import UserError
from fecc.ir import to_postfix
from fecc.llm.base import ProposalError
from fecc.llm.llm_proposer import Completion, LLMProposer
from fecc.llm.prompts import render_messages
from fecc.llm.answer import parse_function, split_answer
from fecc.llm.registry import make_proposer
from fecc.llm.replay import RecordingBackend, ReplayBackend, ReplayMiss, prompt_key, replay_records

from llm_contexts import ALL_CONTEXTS, credit_context

REPLAY_DIR = Path(__file__).parent / "data" / "replay"

ANSWERS = ['''def f(x, params):
    # intent: older applicants with many late payments
    return params["w0"] * log(x["debt_ratio"]) + params["a"] * x["late_payments"]
{"a": {"low": -1, "high": 1}}''', '''def f(x, params):
    # intent: broken
    return x["nope"]
{}''', '''def f(x, params):
    # intent: open lines
    return params["w0"] * log(x["debt_ratio"]) - params["b"] * sqrt(x["open_lines"])
{"b": {"low": 0, "high": 2}}''']


class Counting:
    name = "counting"
    supports_grammar = True

    def __init__(self):
        self.i = 0

    def complete(self, messages, *, grammar, temperature, max_tokens, seed):
        self.i += 1
        return Completion(ANSWERS[(self.i - 1) % len(ANSWERS)], prompt_tokens=10, completion_tokens=5, seconds=0.1,
                          model="counting-model")



def _outcomes(proposer, contexts) -> list[str]:
    """Postfix of each proposal, or the reason it was refused."""
    out = []
    for ctx in contexts:
        try:
            out.append(to_postfix(proposer.propose(ctx).expr))
        except ProposalError as exc:
            out.append(exc.reason)
    return out

def test_prompt_key_is_the_sha256_of_canonical_messages():
    m = [{"role": "user", "content": "héllo"}]
    assert prompt_key(m) == prompt_key([{"content": "héllo", "role": "user"}])
    assert prompt_key(m) != prompt_key([{"role": "user", "content": "hello"}])
    assert len(prompt_key(m)) == 64


def test_record_then_replay_gives_the_same_proposals(tmp_path):
    path = tmp_path / "rec.jsonl"
    live = LLMProposer(RecordingBackend(Counting(), path))
    contexts = [credit_context(seed=s) for s in range(3)]
    first = _outcomes(live, contexts)
    records = replay_records(path)
    assert len(records) == live.usage.calls
    for rec in records:
        assert rec["key"] == prompt_key(rec["messages"]) and rec["model"] == "counting-model"
        assert rec["temperature"] in (0.1, 0.5) and len(rec["grammar_sha256"]) == 64
    for _ in range(2):  # twice: replay is repeatable, not just once
        assert _outcomes(make_proposer(f"replay:{path}"), contexts) == first


def test_a_prompt_asked_twice_replays_its_answers_in_order(tmp_path):
    path = tmp_path / "rec.jsonl"
    rec = RecordingBackend(Counting(), path)
    msgs = render_messages(credit_context())
    a = [rec.complete(msgs, grammar=None, temperature=0.1, max_tokens=10, seed=0).text for _ in range(2)]
    replay = ReplayBackend(path)
    assert [replay.complete(msgs).text for _ in range(2)] == a
    with pytest.raises(ReplayMiss, match="no more answers"):
        replay.complete(msgs)


def test_a_miss_is_a_clear_error(tmp_path):
    path = tmp_path / "rec.jsonl"
    RecordingBackend(Counting(), path).complete([{"role": "user", "content": "a"}], grammar=None, temperature=0.1,
                                                max_tokens=5, seed=0)
    with pytest.raises(ReplayMiss, match="no answer recorded for prompt sha256 .*record again"):
        ReplayBackend(path).complete([{"role": "user", "content": "b"}])
    # the miss is not swallowed into a ProposalError: a replayed compile must not diverge silently
    with pytest.raises(ReplayMiss):
        make_proposer(f"replay:{path}").propose(credit_context())


def test_bad_replay_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        ReplayBackend(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": "abc"}\n')
    with pytest.raises(UserError, match="bad.jsonl:1: not a replay record"):
        ReplayBackend(bad)
    tampered = tmp_path / "t.jsonl"
    tampered.write_text(json.dumps({"key": "0" * 64, "messages": [], "answer": "x"}) + "\n")
    with pytest.raises(UserError, match="sha256"):
        ReplayBackend(tampered)


# --------------------------------------------------------------------------- real recorded answers


def _recordings():
    return sorted(REPLAY_DIR.glob("*.jsonl"))


@pytest.mark.parametrize("path", _recordings(), ids=lambda p: p.name)
def test_recorded_real_answers_replay(path):
    """Answers the real local model gave (tests/data/replay, recorded by scripts in this test's docstring).

    Every record must be well formed; the proposer run over the recorded contexts must
    reproduce exactly the recorded requests (same prompt hashes), and the grammar-
    constrained answers must parse into IR (or fail with a reason, which is recorded too).
    """
    records = replay_records(path)
    assert records
    for rec in records:
        assert rec["key"] == prompt_key(rec["messages"])
        assert rec["model"].startswith("local:")
    meta = json.loads((path.with_suffix(".meta.json")).read_text())
    # recorded before forgotten ranges were inferred: replay with the proposer as it was
    proposer = make_proposer(f"replay:{path}", max_corrections=meta["max_corrections"],
                             use_grammar=meta["use_grammar"], infer_ranges=meta.get("infer_ranges", False))
    outcomes = []
    for item in meta["contexts"]:
        ctx = ALL_CONTEXTS[item["name"]](seed=item["seed"], iteration=item.get("iteration", 0))
        try:
            prop = proposer.propose(ctx)
            outcomes.append(to_postfix(prop.expr))
        except ProposalError as exc:
            outcomes.append("error: " + exc.reason)
    assert outcomes == meta["outcomes"]
    assert proposer.usage.calls == len(records)
    if meta["use_grammar"]:
        # under the grammar every answer is whitelisted Python that parses into IR; what
        # the proposer may still reject is semantic (a parameter without a range, no change)
        for rec in records:
            code, line, space, _ = split_answer(rec["answer"])
            assert parse_function(code, line_offset=line).type == "num"
            json.loads(space)


def test_inferred_ranges_rescue_a_recorded_answer_that_forgot_one():
    """Qwen 0.5B's housing answer used params["rooms_cut"] without a range (recorded
    outcome: refused).  With inference it is a location on `rooms`: accepted first try,
    with the region's range of `rooms` and a note saying so."""
    path = REPLAY_DIR / "qwen05b_grammar.jsonl"
    meta = json.loads(path.with_suffix(".meta.json").read_text())
    i = next(k for k, o in enumerate(meta["outcomes"]) if "rooms_cut" in o)
    item = meta["contexts"][i]
    ctx = ALL_CONTEXTS[item["name"]](seed=item["seed"], iteration=item.get("iteration", 0))
    proposer = make_proposer(f"replay:{path}", max_corrections=meta["max_corrections"],
                             use_grammar=meta["use_grammar"])
    prop = proposer.propose(ctx)
    assert "@rooms_cut" in to_postfix(prop.expr) and proposer.usage.valid_first_try == 1
    stats = {s.name: s for s in ctx.feature_stats}
    r = prop.space["rooms_cut"]
    assert (r.low, r.high) == (stats["rooms"].min, stats["rooms"].max)
    assert any("a location on rooms" in n for n in prop.usage["notes"])
