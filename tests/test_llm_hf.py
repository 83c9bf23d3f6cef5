"""``--llm hf``: the embedded model through transformers (GPU when present, else CPU)."""
from __future__ import annotations

import pytest

from fecc.errors import UserError
from fecc.llm.local import is_installed
from fecc.llm.registry import make_proposer

pytest.importorskip("transformers")


def test_unknown_model_is_a_user_error():
    with pytest.raises(UserError, match="unknown local model 'nope'"):
        make_proposer("hf:nope")


def test_cuda_asked_without_a_gpu_is_a_user_error(monkeypatch):
    from fecc.llm import hf_backend

    if not is_installed("qwen0.5b"):
        pytest.skip("Qwen 0.5B weights not installed")
    monkeypatch.setattr(hf_backend, "cuda_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA GPU"):
        make_proposer("hf", backend_options={"device": "cuda"})


@pytest.mark.slow
@pytest.mark.llm
def test_real_model_answers_through_transformers():
    """Qwen 0.5B dequantised by transformers answers the seed-004 prompt (~1–3 minutes on 2 cores)."""
    if not is_installed("qwen0.5b"):
        pytest.skip("Qwen 0.5B weights not installed")
    from fecc.llm.base import ProposalError

    from llm_contexts import credit_context

    proposer = make_proposer("hf", max_corrections=1, max_tokens=250)
    assert proposer.backend.device in ("cpu", "cuda") and proposer.grammar_for(("a",)) is None
    try:
        prop = proposer.propose(credit_context())
        assert prop.raw.lstrip().startswith(("def f", "```"))
    except ProposalError as exc:  # unconstrained answers may be refused; the parser must say why
        assert exc.reason
    assert proposer.usage.calls >= 1 and proposer.usage.completion_tokens > 0
