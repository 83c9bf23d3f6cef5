"""--llm specs → proposers."""
from __future__ import annotations

import pytest

from fecc.errors import UserError
from fecc.llm.llm_proposer import LLMProposer
from fecc.llm.openai_backend import OpenAIBackend
from fecc.llm.registry import make_backend, make_proposer, resolve_spec
from fecc.llm.replay import RecordingBackend, ReplayBackend


def test_none_gives_the_grammar_proposer():
    grammar = pytest.importorskip("fecc.llm.grammar_proposer")
    p = make_proposer("none")
    assert isinstance(p, grammar.GrammarProposer)
    with pytest.raises(UserError, match="--record needs an LLM"):
        make_proposer("none", record="x.jsonl")


def test_openai_spec(tmp_path):
    p = make_proposer("openai:http://127.0.0.1:9/v1#my-model", record=tmp_path / "r.jsonl", temperature=0.3,
                      backend_options={"timeout": 2})
    assert isinstance(p, LLMProposer) and p.temperature == 0.3
    assert isinstance(p.backend, RecordingBackend) and isinstance(p.backend.inner, OpenAIBackend)
    assert p.backend.inner.url == "http://127.0.0.1:9/v1/chat/completions" and p.backend.inner.model == "my-model"
    assert p.backend.inner.timeout == 2
    # a '#' inside the URL is fine: the model is after the last one
    assert make_backend("openai:http://h/v1#frag#m").model == "m"


def test_replay_spec(tmp_path):
    f = tmp_path / "r.jsonl"
    f.write_text("")
    p = make_proposer(f"replay:{f}")
    assert isinstance(p.backend, ReplayBackend)
    with pytest.raises(UserError, match="record the recording"):
        make_proposer(f"replay:{f}", record=tmp_path / "x.jsonl")


@pytest.mark.parametrize("spec, words", [
    ("bogus", "unknown --llm spec"), ("openai:http://h/v1", "openai:URL#MODEL"), ("openai:#m", "openai:URL#MODEL"),
    ("openai:ftp://h#m", "not an http"), ("replay:", "replay:FILE"), ("replay:/nonexistent.jsonl", "does not exist"),
    ("vllm:", "vllm:MODEL"), ("local:gpt5", "unknown local model"),
    ("openai:http://h/v1#m", "unexpected keyword"),
])
def test_bad_specs_are_user_errors(spec, words):
    options = {"bogus_option": 1} if spec == "openai:http://h/v1#m" else None
    with pytest.raises(UserError, match=words):
        make_proposer(spec, backend_options=options)


def test_vllm_missing_is_a_clear_error():
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed")
    except ImportError:
        pass
    with pytest.raises(UserError, match="needs vllm"):
        make_proposer("vllm:Qwen/Qwen2.5-Coder-0.5B-Instruct")


def test_auto_resolves_to_a_concrete_spec():
    assert resolve_spec("auto") in ("none", "local:qwen0.5b")
    assert resolve_spec(None) == "none"  # the default: the grammar proposer (see the accuracy benchmark)
    assert resolve_spec("openai:http://h#m") == "openai:http://h#m"


def test_specs_that_cannot_work_are_refused_before_any_work(tmp_path):
    """A missing recording or an unknown local model is one UserError at option time,
    not a failure after the trees were lowered."""
    from fecc.errors import UserError
    from fecc.llm.registry import check_spec

    with pytest.raises(UserError, match="no recording at"):
        check_spec(f"replay:{tmp_path / 'missing.jsonl'}")
    with pytest.raises(UserError, match="expects replay:FILE"):
        check_spec("replay:")
    with pytest.raises(UserError, match="unknown local model 'nosuchmodel'"):
        check_spec("local:nosuchmodel")
    with pytest.raises(UserError, match="unknown local model"):
        check_spec(f"local:{tmp_path / 'absent.gguf'}")
    recording = tmp_path / "answers.jsonl"
    recording.write_text("")
    check_spec(f"replay:{recording}")  # present: accepted
    check_spec("none")
