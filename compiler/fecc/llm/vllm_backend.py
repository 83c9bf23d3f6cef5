"""vLLM on a GPU machine: a thin, optional path (``--llm vllm:MODEL``, extra ``fecc[gpu]``).

vllm only installs with CUDA, so it is imported lazily and its absence is a clear
:class:`~fecc.errors.UserError`.  Grammar-constrained decoding uses vLLM's guided
decoding with the same GBNF text when the installed version supports it.  Serving vLLM
over HTTP and pointing ``--llm openai:...`` at it (``grammar_field="guided_grammar"``)
is the tested path; this in-process backend is for batch jobs on a GPU box.
"""
from __future__ import annotations

import time

from ..errors import UserError
from .llm_proposer import BackendError, Completion


class VLLMBackend:
    """A model served in-process by vLLM.

    Parameters
    ----------
    model : a model name or local path vLLM can load (no hub access on fecc machines).
    **engine : passed to ``vllm.LLM`` (e.g. ``gpu_memory_utilization=0.5``).
    """

    def __init__(self, model: str, **engine):
        try:
            import vllm
        except ImportError:
            raise UserError("--llm vllm:... needs vllm, which installs only on CUDA machines: "
                            "pip install 'fecc[gpu]' (or serve vLLM and use --llm openai:URL#model)") from None
        self._vllm = vllm
        self.name = f"vllm:{model}"
        self.llm = vllm.LLM(model=model, **engine)
        try:
            from vllm.sampling_params import GuidedDecodingParams  # noqa: F401
            self.supports_grammar = True
        except ImportError:  # an old or a newer vllm without this API: plain sampling
            self.supports_grammar = False

    def _guided(self, grammar: str | None):
        if grammar is None:
            return None
        try:
            from vllm.sampling_params import GuidedDecodingParams
        except ImportError:
            return None
        return GuidedDecodingParams(grammar=grammar)

    def complete(self, messages, *, grammar=None, temperature=0.1, max_tokens=400, seed=0) -> Completion:
        kwargs = dict(temperature=temperature, max_tokens=max_tokens, seed=seed)
        guided = self._guided(grammar)
        if guided is not None:
            kwargs["guided_decoding"] = guided
        start = time.perf_counter()
        try:
            params = self._vllm.SamplingParams(**kwargs)
            out = self.llm.chat(messages, params, use_tqdm=False)[0]
        except Exception as exc:  # noqa: BLE001 - vllm raises many kinds; the proposer needs one
            raise BackendError(f"vllm failed: {exc}") from exc
        gen = out.outputs[0]
        return Completion(text=gen.text, prompt_tokens=len(out.prompt_token_ids or ()),
                          completion_tokens=len(gen.token_ids or ()), seconds=time.perf_counter() - start,
                          finish_reason=gen.finish_reason or "", model=self.name)
