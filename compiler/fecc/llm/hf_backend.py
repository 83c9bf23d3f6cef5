"""The embedded model run with transformers (``--llm hf[:KEY]``): GPU when there is one.

Loads the same sha256-checked GGUF file as :mod:`fecc.llm.local` (``gguf_file=``;
transformers dequantises it), offline (``local_files_only``).  On a machine with a CUDA
GPU the model runs there in bfloat16; otherwise on the CPU in float32.

transformers has no GBNF grammar, so answers are not constrained (``supports_grammar``
is false) and validity rests on the parser's error feedback.  On two CPU cores it is
several times slower than llama.cpp (``benchmarks/bench_llm_backends.py``), which is why
``local`` stays the default; this backend is for GPU machines without a CUDA build of
llama.cpp and for the token-level work llama.cpp cannot do.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..errors import UserError
from .llm_proposer import BackendError, Completion
from .local import DEFAULT_MODEL, MODELS, resolve_model


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - no torch: no GPU path
        return False


class TransformersBackend:
    """A causal LM from a GGUF file, through transformers.

    Parameters
    ----------
    model : a key of :data:`fecc.llm.local.MODELS` or a path to a ``.gguf`` file.
    device : ``"cuda"``, ``"cpu"``, or ``None`` for CUDA when available.
    threads : CPU threads for torch (``None``: torch's default).
    """

    supports_grammar = False

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str | None = None, threads: int | None = None,
                 cache: Path | None = None):
        try:
            import torch
            import transformers
        except ImportError:
            raise UserError("--llm hf needs transformers and torch: pip install 'fecc[hf]'") from None
        if model in MODELS:
            path = resolve_model(model, cache=cache)
            self.name = f"hf:{model}"
        elif model.endswith(".gguf") and Path(model).is_file():
            path = Path(model)
            self.name = f"hf:{path.name}"
        else:
            raise UserError(f"unknown local model {model!r}; known: {', '.join(MODELS)} or a .gguf path")
        self.device = device or ("cuda" if cuda_available() else "cpu")
        if self.device.startswith("cuda") and not cuda_available():
            raise UserError("--llm hf: device cuda asked for, but torch sees no CUDA GPU")
        if threads:
            torch.set_num_threads(int(threads))
        self._torch = torch
        start = time.perf_counter()
        kw = dict(gguf_file=path.name, local_files_only=True)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), **kw)
            dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
            self.model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=dtype, **kw)
        except Exception as exc:  # noqa: BLE001 - transformers raises many kinds for a bad file
            raise UserError(f"--llm hf: transformers could not load {path.name}: {exc}") from None
        self.model.to(self.device).eval()
        self.load_seconds = time.perf_counter() - start

    def complete(self, messages, *, grammar=None, temperature=0.1, max_tokens=400, seed=0) -> Completion:
        torch = self._torch
        start = time.perf_counter()
        try:
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                     return_dict=True)
            ids = {k: v.to(self.device) for k, v in ids.items()}
            torch.manual_seed(seed)
            sample = temperature > 0
            with torch.inference_mode():
                out = self.model.generate(**ids, max_new_tokens=max_tokens, do_sample=sample,
                                          temperature=temperature if sample else None,
                                          top_k=40 if sample else None, top_p=0.95 if sample else None,
                                          pad_token_id=self.tokenizer.eos_token_id)
        except Exception as exc:  # noqa: BLE001 - out of memory, bad template, ...
            raise BackendError(f"transformers failed: {type(exc).__name__}: {exc}") from exc
        n_prompt = int(ids["input_ids"].shape[1])
        new = out[0, n_prompt:]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        finish = "length" if int(new.shape[0]) >= max_tokens else "stop"
        return Completion(text=text, prompt_tokens=n_prompt, completion_tokens=int(new.shape[0]),
                          seconds=time.perf_counter() - start, finish_reason=finish, model=self.name)
