"""The OpenAI-compatible backend against a tiny local HTTP server: answers, retries, timeouts, keys."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fecc.llm.llm_proposer import BackendError, LLMProposer
from fecc.llm.openai_backend import OpenAIBackend

from llm_contexts import credit_context

ANSWER = '''def f(x, params):
    # intent: more late payments, more risk
    return params["w0"] * log(x["debt_ratio"]) + params["k"] * x["late_payments"]
{"k": {"low": 0, "high": 1}}'''


class Stub:
    """A scripted chat-completions server: each request pops one (status, delay) from ``script``."""

    def __init__(self, script):
        self.script = list(script)
        self.requests = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                status, delay = stub.script.pop(0) if stub.script else (200, 0)
                time.sleep(delay)
                if status == 200:
                    payload = {"model": body["model"], "choices": [{"message": {"role": "assistant", "content": ANSWER},
                                                                    "finish_reason": "stop"}],
                               "usage": {"prompt_tokens": 900, "completion_tokens": 60}}
                else:
                    payload = {"error": {"message": f"status {status}"}}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def backend(url, **kw):
    b = OpenAIBackend(url, "stub-model", **kw)
    b.sleeps = []
    b.sleep = b.sleeps.append  # record backoff waits instead of sleeping
    return b


def test_answers_and_sends_the_key_from_the_environment(monkeypatch):
    monkeypatch.setenv("FECC_OPENAI_API_KEY", "sk-test-123")
    with Stub([(200, 0)]) as stub:
        b = backend(stub.url)
        done = b.complete([{"role": "user", "content": "hi"}], grammar="root ::= \"a\"", temperature=0.1,
                          max_tokens=50, seed=7)
    assert done.text == ANSWER and done.prompt_tokens == 900 and done.completion_tokens == 60
    req = stub.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test-123"
    assert req["body"]["seed"] == 7 and req["body"]["temperature"] == 0.1 and "grammar" not in req["body"]
    assert "sk-test" not in repr(b)


def test_grammar_field_is_sent_when_configured():
    with Stub([(200, 0)]) as stub:
        b = backend(stub.url, grammar_field="grammar")
        assert b.supports_grammar
        b.complete([{"role": "user", "content": "hi"}], grammar="root ::= \"a\"", temperature=0.1, max_tokens=5,
                   seed=0)
    assert stub.requests[0]["body"]["grammar"] == 'root ::= "a"'


def test_retries_server_errors_with_backoff():
    with Stub([(500, 0), (429, 0), (200, 0)]) as stub:
        b = backend(stub.url, max_retries=3, backoff=0.5)
        done = b.complete([{"role": "user", "content": "hi"}], temperature=0.1, max_tokens=5, seed=0)
    assert done.text == ANSWER and len(stub.requests) == 3 and b.sleeps == [0.5, 1.0]


def test_gives_up_after_the_retry_budget():
    with Stub([(503, 0)] * 5) as stub:
        b = backend(stub.url, max_retries=2, backoff=1.0)
        with pytest.raises(BackendError, match=r"HTTP 503 .* \(after 3 attempts\)"):
            b.complete([{"role": "user", "content": "hi"}], temperature=0.1, max_tokens=5, seed=0)
    assert len(stub.requests) == 3 and b.sleeps == [1.0, 2.0]


def test_client_errors_are_not_retried():
    with Stub([(401, 0)]) as stub:
        b = backend(stub.url, max_retries=3)
        with pytest.raises(BackendError, match="HTTP 401"):
            b.complete([{"role": "user", "content": "hi"}], temperature=0.1, max_tokens=5, seed=0)
    assert len(stub.requests) == 1 and b.sleeps == []


def test_timeouts_are_retried_then_reported():
    with Stub([(200, 1.5), (200, 1.5)]) as stub:
        b = backend(stub.url, timeout=0.3, max_retries=1)
        start = time.perf_counter()
        with pytest.raises(BackendError, match="after 2 attempts"):
            b.complete([{"role": "user", "content": "hi"}], temperature=0.1, max_tokens=5, seed=0)
        assert time.perf_counter() - start < 1.4
    assert b.sleeps == [1.0]


def test_unreachable_endpoint():
    b = backend("http://127.0.0.1:9/v1", timeout=1, max_retries=1)
    with pytest.raises(BackendError, match="unreachable"):
        b.complete([{"role": "user", "content": "hi"}], temperature=0.1, max_tokens=5, seed=0)


def test_through_the_proposer():
    with Stub([(500, 0), (200, 0)]) as stub:
        p = LLMProposer(backend(stub.url))
        prop = p.propose(credit_context())
    assert "late_payments" in str(prop.expr)
    assert stub.requests[-1]["body"]["messages"][0]["role"] == "system"
