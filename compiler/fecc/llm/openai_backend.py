"""Any OpenAI-compatible chat endpoint, over plain :mod:`urllib` (no client library).

``--llm openai:URL#model``, e.g. ``openai:http://localhost:8080/v1#qwen2.5-coder``.  The
API key comes from an environment variable (``FECC_OPENAI_API_KEY``, else
``OPENAI_API_KEY``) and is only ever sent in the ``Authorization`` header, never logged
or recorded.  Each request has a timeout; connection errors, timeouts, HTTP 429 and 5xx
are retried a bounded number of times with exponential backoff; other HTTP errors fail
at once.

Grammars: the OpenAI API has none, but llama.cpp's server accepts a GBNF ``grammar`` field
and vLLM a ``guided_grammar`` field; pass ``grammar_field`` to use them.
"""
from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request

from .llm_proposer import BackendError, Completion

KEY_VARS = ("FECC_OPENAI_API_KEY", "OPENAI_API_KEY")
_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


def chat_url(url: str) -> str:
    """``http://host/v1`` → ``http://host/v1/chat/completions`` (a full URL is kept)."""
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


class OpenAIBackend:
    """Chat completions from an OpenAI-compatible HTTP endpoint.

    Parameters
    ----------
    url : base URL (``.../v1``) or the full ``.../chat/completions`` URL.
    model : the model name the server expects.
    api_key : overrides the environment variables.
    timeout : seconds per request.
    max_retries : retries after the first attempt (so ``max_retries + 1`` requests at most).
    backoff : first wait in seconds; doubled after each retry, capped at ``max_backoff``.
    grammar_field : request field that carries the GBNF grammar, or ``None`` (no grammar).
    """

    def __init__(self, url: str, model: str, *, api_key: str | None = None, timeout: float = 60.0,
                 max_retries: int = 3, backoff: float = 1.0, max_backoff: float = 20.0,
                 grammar_field: str | None = None):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = chat_url(url)
        self.model = model
        self.name = f"openai:{model}"
        self._key = api_key if api_key is not None else next((os.environ[v] for v in KEY_VARS if os.environ.get(v)), None)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.grammar_field = grammar_field
        self.supports_grammar = grammar_field is not None
        self.sleep = time.sleep  # replaced in tests

    def __repr__(self):  # never show the key
        return f"OpenAIBackend({self.url!r}, {self.model!r})"

    def _request(self, body: dict) -> dict:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        # no proxies from the environment: the endpoint is what the user named
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=self.timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))

    def complete(self, messages, *, grammar=None, temperature=0.1, max_tokens=400, seed=0) -> Completion:
        body = {"model": self.model, "messages": messages, "temperature": temperature,
                "max_tokens": max_tokens, "seed": seed}
        if grammar and self.grammar_field:
            body[self.grammar_field] = grammar
        start = time.perf_counter()
        wait = self.backoff
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                out = self._request(body)
                break
            except urllib.error.HTTPError as exc:
                detail = exc.read(500).decode("utf-8", "replace") if exc.fp else ""
                last = f"HTTP {exc.code} from {self.url}: {detail.strip()[:200]}"
                if exc.code not in _RETRY_STATUS:
                    raise BackendError(last) from None
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"{self.url} unreachable: {reason}"
            except json.JSONDecodeError:
                last = f"{self.url} answered with something that is not JSON"
            if attempt == self.max_retries:
                raise BackendError(f"{last} (after {attempt + 1} attempts)")
            self.sleep(min(wait, self.max_backoff))
            wait *= 2
        try:
            choice = out["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"{self.url}: unexpected response shape: {str(out)[:200]}") from None
        usage = out.get("usage") or {}
        return Completion(text=text, prompt_tokens=int(usage.get("prompt_tokens", 0)),
                          completion_tokens=int(usage.get("completion_tokens", 0)),
                          seconds=time.perf_counter() - start, finish_reason=choice.get("finish_reason") or "",
                          model=out.get("model", self.model))
