"""The student LLM (seed 000 §3.4): a small packaged model, LoRA-tuned on the golden examples.

The base model is one of the GGUF files fecc ships as pip packages (SmolLM2-135M on a
CPU, a Qwen2.5-Coder model on a GPU), loaded through transformers' GGUF loader
(``gguf_file=``, dequantised) after its sha256 is checked (:func:`fecc.llm.local.resolve_model`).
A peft LoRA adapter (``q_proj``/``v_proj``) is trained for two tasks on the same examples:

* **generate** — ``<prompt> ⟶ the sequence`` (the better part of the examples, by real score);
* **score** — ``<prompt> <sequence> score: ⟶ d``, a digit 0–9: the decile of the
  example's real score among the golden examples.

Only the adapter is saved (``adapter_model.safetensors`` + ``adapter_config.json``); its
sha256 goes into the experience archive.

Text form: each vocabulary token is written as one word after a space — a feature by its
column name (non-word characters written ``_``; its ``$name`` postfix token when that
collides with another token), a constant by its number (a word for the common ones:
``half``, ``one``, ``two``: one LLM token instead of four), an operator by its IR name, ``;`` for ``SEP`` and
``end`` for ``END`` — and a sequence's LLM token ids are the concatenation of its
tokens' ids, so the probability of a vocabulary token after a prefix is exactly that of
its full string.  :meth:`Student.begin` / :meth:`Student.logprobs` / :meth:`Student.advance`
serve product-of-experts decoding (:mod:`.poe`): one batched forward pass scores every
multi-token candidate string after a prefix (the prefix's key/value cache is reused), a
single-token candidate costs nothing beyond the prefix's own logits.
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .model import _single_threaded
from .vocab import BOS, END, K_CONST, K_FEATURE, PAD, SEP, Vocab

_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DIGITS = tuple(str(d) for d in range(10))
#: constants written as words: one LLM token each instead of three or four digits and a dot
NUMBER_WORDS = {0.0: "zero", 0.5: "half", 1.0: "one", 2.0: "two", 3.0: "three", 10.0: "ten"}
SCORE_SUFFIX = " score:"


def token_texts(vocab: Vocab) -> list[str | None]:
    """The LLM text of each vocabulary token (``None`` for ``<pad>``/``<bos>``)."""
    texts: list[str | None] = [None] * len(vocab)
    texts[SEP], texts[END] = ";", "end"
    for i, (tok, kind) in enumerate(zip(vocab.tokens, vocab.kinds)):
        if i in (PAD, BOS, SEP, END):
            continue
        texts[i] = NUMBER_WORDS.get(float(tok), tok) if kind == K_CONST else tok
    taken = {t for i, t in enumerate(texts) if t is not None and vocab.kinds[i] != K_FEATURE}
    feature_ids = [j for j, k in enumerate(vocab.kinds) if k == K_FEATURE]
    for i, name in zip(feature_ids, vocab.features):
        word = name if _WORD.match(name) else re.sub(r"\W+", "_", name).strip("_")
        texts[i] = word if word and _WORD.match(word) and word not in taken else vocab.tokens[i]
        taken.add(texts[i])
    return texts


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class _Decoding:
    """One sequence being decoded: its key/value cache and next-token log-probabilities."""

    cache: object
    last: object          # torch tensor (llm vocab,) of log-probs of the next LLM token


class Student:
    """A causal LM with a LoRA adapter, speaking the vocabulary's text form.

    Build with :meth:`from_gguf` (a packaged model) or pass any transformers causal LM and
    tokenizer (the tests use a tiny randomly initialised Llama).  ``cpu_threads``: torch
    threads on the CPU (measured on a loaded 2-core machine, one LoRA step of SmolLM2-135M
    took 3.6 s on one thread and 7-10 s on two; 0 leaves torch's setting).
    """

    def __init__(self, model, tokenizer, vocab: Vocab, *, task: str = "binary", device: str = "cpu",
                 base_name: str = "custom", base_sha256: str | None = None, lora_r: int = 8, lora_alpha: int = 16,
                 seed: int = 0, cpu_threads: int = 1):
        import peft
        import torch

        self.torch = torch
        self.vocab = vocab
        self.tokenizer = tokenizer
        self.device = device
        self.cpu_threads = int(cpu_threads)
        self.base_name = base_name
        self.base_sha256 = base_sha256
        self.seed = int(seed)
        torch.manual_seed(self.seed)
        cfg = peft.LoraConfig(r=int(lora_r), lora_alpha=int(lora_alpha), lora_dropout=0.0,
                              target_modules=["q_proj", "v_proj"], bias="none")
        with warnings.catch_warnings():  # peft asks transformers a deprecated question
            warnings.simplefilter("ignore", FutureWarning)
            self.model = peft.get_peft_model(model, cfg).to(device)
        self.model.eval()
        base = self.model.get_base_model()
        params = inspect.signature(base.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._inner = base.get_decoder() if hasattr(base, "get_decoder") else base.model
        self._head = base.get_output_embeddings()
        self.texts = token_texts(vocab)
        self.piece_ids: list[list[int]] = [self._ids(" " + t) if t is not None else [] for t in self.texts]
        kind = "classification" if task == "binary" else "regression"
        # short on purpose (every training step and decoding pass pays for it); the
        # column names are learnt from the examples
        self.prompt_ids = self._bos() + self._ids(f"A new {kind} feature in postfix:")
        self.score_ids = self._ids(SCORE_SUFFIX)
        self.digit_ids = [self._ids(d)[0] for d in DIGITS]
        self.bin_edges: np.ndarray | None = None
        self.bin_centres: np.ndarray | None = None
        self.trained_steps = 0
        self._prompt_cache = None

    # --- construction ----------------------------------------------------------------
    @classmethod
    def from_gguf(cls, model: str, vocab: Vocab, *, task: str = "binary", device: str = "cpu", **kw) -> "Student":
        """A packaged GGUF model (a key of :data:`fecc.llm.local.MODELS` or a ``.gguf`` path), sha256-checked."""
        import torch
        import transformers

        from ..llm.local import MODELS, resolve_model

        if model in MODELS:
            path, sha = resolve_model(model), MODELS[model].sha256
        else:
            path, sha = Path(model), None
            if not path.is_file():
                raise FileNotFoundError(f"no GGUF model at {model!r} (known keys: {', '.join(MODELS)})")
        opts = dict(gguf_file=path.name, local_files_only=True)
        tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), **opts)
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.utils.logging.disable_progress_bar()   # no dequantisation bars in fecc's output
        try:
            lm = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=dtype, **opts)
        finally:
            if bars:
                transformers.utils.logging.enable_progress_bar()
        return cls(lm, tok, vocab, task=task, device=device, base_name=model if model in MODELS else path.name,
                   base_sha256=sha, **kw)

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _bos(self) -> list[int]:
        bos = getattr(self.tokenizer, "bos_token_id", None)
        return [int(bos)] if bos is not None else []

    def seq_ids(self, seq: Sequence[int]) -> list[int]:
        """LLM ids of a vocabulary sequence (``BOS``/``PAD`` dropped, up to and with ``END``)."""
        out: list[int] = []
        for t in seq:
            t = int(t)
            if t in (PAD, BOS):
                continue
            out += self.piece_ids[t]
            if t == END:
                break
        return out

    # --- training --------------------------------------------------------------------
    def _bins(self, scores: np.ndarray) -> np.ndarray:
        edges = np.quantile(scores, np.linspace(0, 1, 11)[1:-1])
        self.bin_edges = edges
        b = np.searchsorted(edges, scores, side="right")
        self.bin_centres = np.array([float(np.mean(scores[b == d])) if np.any(b == d) else np.nan for d in range(10)])
        # empty bins (ties): the nearest filled bin's centre
        filled = np.flatnonzero(np.isfinite(self.bin_centres))
        for d in range(10):
            if not np.isfinite(self.bin_centres[d]):
                self.bin_centres[d] = self.bin_centres[filled[np.argmin(np.abs(filled - d))]]
        return b

    def examples(self, seqs: Sequence[Sequence[int]], scores: Sequence[float], *, top_fraction: float = 0.5):
        """Training rows ``(ids, first target position)`` for both tasks."""
        scores = np.asarray(scores, dtype=np.float64)
        bins = self._bins(scores)
        cut = np.quantile(scores, 1.0 - top_fraction) if 0 < top_fraction < 1 else -np.inf
        rows = []
        for s, sc, b in zip(seqs, scores, bins):
            body = self.seq_ids(s)
            if sc >= cut:
                rows.append((self.prompt_ids + body, len(self.prompt_ids)))
            ids = self.prompt_ids + body + self.score_ids + [self.digit_ids[int(b)]]
            rows.append((ids, len(ids) - 1))
        return rows

    def _loss(self, rows):
        torch = self.torch
        F = torch.nn.functional
        L = max(len(r[0]) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(rows), L), int(pad), dtype=torch.long)
        att = torch.zeros((len(rows), L), dtype=torch.long)
        pos_b, pos_t, tgt = [], [], []
        for i, (r, first) in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            att[i, : len(r)] = 1
            for t in range(first, len(r)):
                pos_b.append(i)
                pos_t.append(t - 1)
                tgt.append(r[t])
        ids, att = ids.to(self.device), att.to(self.device)
        h = self._inner(input_ids=ids, attention_mask=att).last_hidden_state
        logits = self._head(h[torch.tensor(pos_b, device=self.device), torch.tensor(pos_t, device=self.device)]).float()
        return F.cross_entropy(logits, torch.tensor(tgt, device=self.device))

    @_single_threaded
    def finetune(self, seqs: Sequence[Sequence[int]], scores: Sequence[float], *, steps: int = 40, batch: int = 8,
                 lr: float = 2e-3, top_fraction: float = 0.5, max_seconds: float | None = None) -> dict:
        """LoRA training on both tasks; returns ``{"steps", "loss", "seconds", "examples"}``."""
        torch = self.torch
        start = time.perf_counter()
        rows = self.examples(seqs, scores, top_fraction=top_fraction)
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        rng = np.random.default_rng(self.seed + self.trained_steps)
        self.model.train()
        losses = []
        done = 0
        for step in range(int(steps)):
            idx = rng.choice(len(rows), size=min(batch, len(rows)), replace=False)
            loss = self._loss([rows[i] for i in idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            done += 1
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                break
        self.model.eval()
        self.trained_steps += done
        self._prompt_cache = None
        return {"steps": done, "loss": float(np.mean(losses[-5:])) if losses else float("nan"),
                "first_loss": losses[0] if losses else float("nan"),
                "seconds": time.perf_counter() - start, "examples": len(rows)}

    def save_adapter(self, directory: Path) -> tuple[Path, str]:
        """Save only the LoRA adapter; returns its directory and the safetensors file's sha256."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():  # "no config file next to the GGUF": the vocabulary is unchanged
            warnings.simplefilter("ignore", UserWarning)
            self.model.save_pretrained(str(directory))
        weights = directory / "adapter_model.safetensors"
        if not weights.is_file():
            raise RuntimeError(f"peft did not write {weights}")
        return directory, sha256_file(weights)

    # --- score prediction ------------------------------------------------------------
    @_single_threaded
    def predict(self, seqs: Sequence[Sequence[int]], *, batch: int = 32) -> np.ndarray:
        """Predicted real score of each sequence: the expected decile centre under the digit distribution."""
        torch = self.torch
        if not seqs:
            return np.zeros(0)
        centres = self.bin_centres if self.bin_centres is not None else np.arange(10, dtype=float)
        out = []
        with torch.no_grad():
            for b in range(0, len(seqs), batch):
                rows = [self.prompt_ids + self.seq_ids(s) + self.score_ids for s in seqs[b: b + batch]]
                L = max(len(r) for r in rows)
                ids = torch.zeros((len(rows), L), dtype=torch.long)
                att = torch.zeros((len(rows), L), dtype=torch.long)
                for i, r in enumerate(rows):
                    ids[i, : len(r)] = torch.tensor(r)
                    att[i, : len(r)] = 1
                h = self._inner(input_ids=ids.to(self.device), attention_mask=att.to(self.device)).last_hidden_state
                last = torch.tensor([len(r) - 1 for r in rows], device=self.device)
                logits = self._head(h[torch.arange(len(rows), device=self.device), last]).float()
                p = torch.softmax(logits[:, self.digit_ids], dim=-1).cpu().numpy().astype(np.float64)
                out.append(p @ centres)
        return np.concatenate(out)

    # --- token probabilities for product-of-experts decoding ------------------------
    def _forward(self, ids, cache):
        out = self.model(input_ids=ids, use_cache=True, **{self._cache_kw: cache})
        new_cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        return out.logits, new_cache

    @_single_threaded
    def begin(self, n: int) -> list[_Decoding]:
        """``n`` fresh decodings after the generation prompt (the prompt runs once)."""
        torch = self.torch
        with torch.no_grad():
            if self._prompt_cache is None:
                ids = torch.tensor([self.prompt_ids], device=self.device)
                logits, cache = self._forward(ids, None)
                self._prompt_cache = (cache, torch.log_softmax(logits[0, -1].float(), dim=-1).cpu())
            cache, last = self._prompt_cache
            return [_Decoding(copy.deepcopy(cache), last.clone()) for _ in range(n)]

    @_single_threaded
    def logprobs(self, dec: _Decoding, allowed: np.ndarray, new_tokens: Sequence[int] = ()) -> np.ndarray:
        """log p(full string of each allowed vocabulary token | prefix), renormalised over ``allowed``.

        ``new_tokens`` (vocabulary ids) are first appended to the decoding's prefix.  One
        batched forward pass does both: each row is the new tokens' string followed by one
        multi-token candidate's string (all but its last LLM token) over a copy of the
        prefix's key/value cache; single-token candidates are read off the prefix's own
        logits.  ``-inf`` for tokens not allowed.
        """
        torch = self.torch
        new_ids = [i for t in new_tokens for i in self.piece_ids[int(t)]]
        out = np.full(len(self.vocab), -np.inf)
        cands = [int(t) for t in np.flatnonzero(allowed) if self.piece_ids[int(t)]]
        multi = [t for t in cands if len(self.piece_ids[t]) > 1]
        lp = None
        with torch.no_grad():
            if multi:
                past = dec.cache.get_seq_length()
                L = len(new_ids) + max(len(self.piece_ids[t]) for t in multi) - 1
                ids = torch.zeros((len(multi), L), dtype=torch.long)
                for i, t in enumerate(multi):
                    row = new_ids + self.piece_ids[t][:-1]
                    ids[i, : len(row)] = torch.tensor(row)
                cache = copy.deepcopy(dec.cache)
                cache.batch_repeat_interleave(len(multi))
                logits, cache = self._forward(ids.to(self.device), cache)
                lp = torch.log_softmax(logits.float(), dim=-1).cpu()
                if new_ids:
                    cache.batch_select_indices(torch.tensor([0], device=self.device))
                    extra = cache.get_seq_length() - (past + len(new_ids))
                    if extra > 0:  # a negative crop removes tokens in every transformers version
                        cache.crop(-extra)
                    dec.cache = cache
                    dec.last = lp[0, len(new_ids) - 1].clone()
            elif new_ids:
                logits, cache = self._forward(torch.tensor([new_ids], device=self.device), dec.cache)
                dec.cache = cache
                dec.last = torch.log_softmax(logits[0, -1].float(), dim=-1).cpu()
        if not cands:
            if allowed[PAD]:
                out[PAD] = 0.0
            return out
        last = dec.last
        score = {t: float(last[self.piece_ids[t][0]]) for t in cands}
        base = len(new_ids)
        for i, t in enumerate(multi):
            p = self.piece_ids[t]
            score[t] += float(sum(lp[i, base + j, p[j + 1]] for j in range(len(p) - 1)))
        vals = np.array([score[t] for t in cands])
        vals = vals - np.logaddexp.reduce(vals)
        out[cands] = vals
        return out

    @_single_threaded
    def advance(self, dec: _Decoding, tokens: Sequence[int]) -> None:
        """Append vocabulary tokens' strings to the decoding's prefix (no candidates scored)."""
        torch = self.torch
        pieces = [i for t in tokens for i in self.piece_ids[int(t)]]
        if not pieces:
            return
        with torch.no_grad():
            logits, cache = self._forward(torch.tensor([pieces], device=self.device), dec.cache)
            dec.cache = cache
            dec.last = torch.log_softmax(logits[0, -1].float(), dim=-1).cpu()


def tiny_llama(tokenizer, *, hidden: int = 32, layers: int = 2, seed: int = 0):
    """A tiny randomly initialised Llama over ``tokenizer``'s vocabulary (for tests and dry runs)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=2, num_key_value_heads=1, intermediate_size=2 * hidden,
                      max_position_embeddings=512, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg)


def gguf_tokenizer(model: str = "smollm2"):
    """The tokenizer stored in a packaged GGUF file (sha256-checked), or ``None`` if it is not installed."""
    import transformers

    from ..llm.local import is_installed, resolve_model

    if not is_installed(model):
        return None
    path = resolve_model(model)
    return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
