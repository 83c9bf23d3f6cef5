"""Record and replay LLM answers, so that a compile with an LLM is reproducible offline.

A recording is JSONL, one line per backend request, in request order::

    {"key": "<sha256 of the prompt>", "messages": [...], "answer": "...", "model": "...",
     "temperature": 0.1, "seed": 0, "grammar_sha256": "...", "usage": {...}}

The key is the sha256 of the canonical JSON of the chat messages (the whole prompt,
correction turns included).  Replay returns, for the k-th request with a given key, the
k-th answer recorded under that key — deterministic even when one prompt was asked
twice.  A prompt that was never recorded is an error (:class:`ReplayMiss`), never a
silent fallback: a replayed compile must make exactly the recorded choices.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections import defaultdict, deque
from pathlib import Path

from ..errors import UserError
from .llm_proposer import Backend, Completion


class ReplayMiss(RuntimeError):
    """A prompt with no (or no more) recorded answers."""


def prompt_key(messages: list[dict]) -> str:
    """sha256 of the canonical JSON of ``messages`` (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _sha(text: str | None) -> str | None:
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if text is not None else None


class RecordingBackend:
    """Wraps a backend and appends every request and its answer to a JSONL file.

    Parameters
    ----------
    inner : the backend that really answers.
    path : the JSONL file (appended to; created with its parent directory).
    """

    def __init__(self, inner: Backend, path: Path | str):
        self.inner = inner
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.name = inner.name
        self.supports_grammar = inner.supports_grammar
        self._lock = threading.Lock()

    def complete(self, messages, *, grammar, temperature, max_tokens, seed) -> Completion:
        done = self.inner.complete(messages, grammar=grammar, temperature=temperature,
                                   max_tokens=max_tokens, seed=seed)
        record = {
            "key": prompt_key(messages),
            "messages": messages,
            "answer": done.text,
            "model": done.model or self.inner.name,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "seed": seed,
            "grammar_sha256": _sha(grammar),
            "usage": {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                      "seconds": round(done.seconds, 3), "finish_reason": done.finish_reason},
        }
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        return done


class ReplayBackend:
    """Answers from a recording (see the module docstring).

    Parameters
    ----------
    path : a JSONL file written by :class:`RecordingBackend`.

    Raises
    ------
    fecc.errors.UserError
        When the file is missing or a line is not a valid record.
    """

    supports_grammar = True  # the answers were recorded under whatever grammar was used

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.name = f"replay:{self.path.name}"
        if not self.path.is_file():
            raise UserError(f"replay file {self.path} does not exist")
        self._answers: dict[str, deque] = defaultdict(deque)
        self.records = 0
        with self.path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    key, answer = rec["key"], rec["answer"]
                    if "messages" in rec and prompt_key(rec["messages"]) != key:
                        raise ValueError("key is not the sha256 of its messages")
                except (ValueError, KeyError, TypeError) as exc:
                    raise UserError(f"{self.path}:{lineno}: not a replay record ({exc})") from None
                self._answers[key].append((answer, rec.get("usage", {}), rec.get("model", "")))
                self.records += 1

    def complete(self, messages, *, grammar=None, temperature=0.0, max_tokens=0, seed=0) -> Completion:
        key = prompt_key(messages)
        queue = self._answers.get(key)
        if not queue:
            first = next((m["content"] for m in messages if m.get("role") == "user"), "")[:80]
            state = "no more answers" if queue is not None else "no answer"
            raise ReplayMiss(f"{self.path}: {state} recorded for prompt sha256 {key[:16]}… "
                             f"({first!r}…); the prompt changed since recording — record again with --record")
        answer, usage, model = queue.popleft()
        return Completion(text=answer, prompt_tokens=int(usage.get("prompt_tokens", 0)),
                          completion_tokens=int(usage.get("completion_tokens", 0)), seconds=0.0,
                          finish_reason=usage.get("finish_reason", ""), model=model)


def replay_records(path: Path | str) -> list[dict]:
    """All records of a recording, in order (for tests and inspection)."""
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
