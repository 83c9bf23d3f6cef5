"""fecc serve: a real server on a free loopback port, every endpoint of the Open Inference
Protocol v2 plus /score and /metrics, the 400/404/405/413 answers, and shutdown.

Predictions must equal ``Bundle.predict`` row for row (exactly: the server scores through
the same batch path).  Servers are started as subprocesses (``python -m fecc.cli serve``
and the runtime's own ``fecc_runtime.serve``) with ``--port 0``; the start line names
the port.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("orjson")

import fecc_runtime  # noqa: E402
from fecc.driver import CompileOptions, compile_bundle  # noqa: E402
from fecc.frontend import load_legacy_model  # noqa: E402
from _models import make_table, train_xgb  # noqa: E402

MODELS = Path(__file__).parent / "data" / "models"
CAT_MODEL = MODELS / "xgboost-3.2.0" / "binary_pandas_categories.json"
FEATURES = [f"x{i}" for i in range(6)]


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """A numeric bundle made by ``fecc compile --search none`` and one with a categorical feature."""
    d = tmp_path_factory.mktemp("serve")
    df = make_table(n=300, seed=3)
    train_xgb(df, d / "model.json", rounds=15)
    df.to_csv(d / "data.csv", index=False)
    proc = subprocess.run([sys.executable, "-m", "fecc.cli", "compile", str(d / "model.json"), str(d / "data.csv"),
                           "-o", str(d / "credit"), "--search", "none", "-q"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # the categorical fixture: its table holds the category values (strings), not codes
    data = np.load(CAT_MODEL.with_suffix(".npz"), allow_pickle=False)
    model = load_legacy_model(CAT_MODEL)
    cat_df = pd.DataFrame(data["X"], columns=list(model.feature_names))
    for i, cats in enumerate(model.categories):
        if cats is not None:
            name = model.feature_names[i]
            cat_df[name] = [cats[int(c)] if not math.isnan(c) else None for c in cat_df[name]]
    cat_df.to_parquet(d / "cats.parquet")
    compile_bundle(CAT_MODEL, d / "cats.parquet", d / "cats", CompileOptions(search="none"))
    return {"dir": d, "credit": d / "credit", "cats": d / "cats", "cat_df": cat_df,
            "cat_feature": next(model.feature_names[i] for i, c in enumerate(model.categories) if c is not None)}


class Server:
    """A server subprocess; ``start`` waits for its start line and reads the port from it."""

    def __init__(self, args: list[str]):
        self.proc = subprocess.Popen([sys.executable, *args, "--port", "0"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 60
        self.port = None
        while self.port is None:
            found = [re.search(r"http://127\.0\.0\.1:(\d+)", line) for line in self.lines]
            found = [m for m in found if m]
            if found:
                self.port = int(found[0].group(1))
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server did not start: {self.lines}")
            else:
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_ready(self.url)

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def stop(self, sig=signal.SIGTERM, timeout=30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if call("GET", url + "/v2/health/ready")[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} never became ready")
        time.sleep(0.1)


def call(method: str, url: str, body=None, raw: bytes | None = None):
    """(status, parsed JSON or text, headers) of one request."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, payload, headers = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        status, payload, headers = exc.code, exc.read(), exc.headers
    text = payload.decode()
    kind = headers.get("content-type", "")
    return status, (json.loads(text) if kind.startswith("application/json") else text), headers


@pytest.fixture(scope="module")
def server(bundles):
    s = Server(["-m", "fecc.cli", "serve", str(bundles["credit"])])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def cat_server(bundles):
    s = Server(["-m", "fecc_runtime.serve", str(bundles["cats"]), "--name", "shop", "--max-body-mb", "0.01"])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def rows():
    """Fresh rows with missing values, values of every sign and a huge one."""
    df = make_table(n=40, seed=11, nan_frac=0.15).drop(columns=["y"])
    df.iloc[3, 2] = 1e30
    return df


@pytest.fixture(scope="module")
def credit(bundles):
    return fecc_runtime.load(bundles["credit"])


def _flat(df: pd.DataFrame) -> list:
    values = df[FEATURES].to_numpy().ravel()
    return [None if math.isnan(v) else float(v) for v in values]


def _infer(url, name, body):
    return call("POST", f"{url}/v2/models/{name}/infer", body)


# ------------------------------------------------------------------ protocol

def test_health_and_metadata(server, bundles, credit):
    assert call("GET", server.url + "/v2/health/live")[:2] == (200, {"live": True})
    assert call("GET", server.url + "/v2/health/ready")[:2] == (200, {"ready": True})
    assert call("GET", server.url + "/v2/models/credit/ready")[:2] == (200, {"name": "credit", "ready": True})
    status, meta, _ = call("GET", server.url + "/v2")
    assert status == 200 and meta["name"] == "fecc-serve" and meta["version"] == fecc_runtime.__version__
    status, meta, _ = call("GET", server.url + "/v2/models/credit")
    version = hashlib.sha256((bundles["credit"] / "manifest.json").read_bytes()).hexdigest()[:12]
    assert status == 200 and meta["name"] == "credit" and meta["versions"] == [version]
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 6]}]
    assert [o["name"] for o in meta["outputs"]] == ["prediction", "margin"]
    assert [f["name"] for f in meta["parameters"]["features"]] == FEATURES
    # the versioned paths answer the same
    assert call("GET", f"{server.url}/v2/models/credit/versions/{version}")[1] == meta
    assert call("GET", f"{server.url}/v2/models/credit/versions/{version}/ready")[0] == 200


def test_infer_matrix_equals_bundle_predict(server, credit, rows):
    expected = credit.predict(rows)
    body = {"id": "req-7", "inputs": [{"name": "X", "shape": [len(rows), 6], "datatype": "FP32", "data": _flat(rows)}]}
    status, out, _ = _infer(server.url, "credit", body)
    assert status == 200, out
    assert out["model_name"] == "credit" and out["id"] == "req-7" and len(out["model_version"]) == 12
    (pred,) = out["outputs"]
    assert pred["name"] == "prediction" and pred["datatype"] == "FP64" and pred["shape"] == [len(rows)]
    assert np.array_equal(np.array(pred["data"]), expected)
    # FP64 as nested lists, and the margin output beside the prediction
    nested = [[None if math.isnan(v) else float(v) for v in r] for r in rows[FEATURES].to_numpy()]
    body = {"inputs": [{"name": "X", "shape": [len(rows), 6], "datatype": "FP64", "data": nested}],
            "outputs": [{"name": "margin"}, {"name": "prediction"}]}
    status, out, _ = _infer(server.url, "credit", body)
    assert status == 200, out
    assert "id" not in out
    margin, pred = out["outputs"]
    assert margin["name"] == "margin" and np.array_equal(margin["data"], credit.predict(rows, output="margin"))
    assert np.array_equal(pred["data"], expected)


def test_infer_single_row_and_per_feature_tensors(server, credit, rows):
    one = rows.iloc[[5]]
    body = {"inputs": [{"name": "X", "shape": [1, 6], "datatype": "FP32", "data": _flat(one)}]}
    status, out, _ = _infer(server.url, "credit", body)
    assert status == 200 and out["outputs"][0]["data"] == [credit.predict(one)[0]]
    # one tensor per feature, shapes [N] and [N, 1], in any order
    tensors = []
    for i, name in enumerate(reversed(FEATURES)):
        col = [None if math.isnan(v) else v for v in rows[name]]
        shape = [len(rows)] if i % 2 else [len(rows), 1]
        data = col if i % 2 else [[v] for v in col]
        tensors.append({"name": name, "shape": shape, "datatype": "FP64", "data": data})
    status, out, _ = _infer(server.url, "credit", {"inputs": tensors})
    assert status == 200, out
    assert np.array_equal(out["outputs"][0]["data"], credit.predict(rows))


def test_score_rows_by_feature_name(server, credit, rows):
    records = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
               for r in rows.to_dict("records")]
    for r in records[:5]:
        r["customer_id"] = "c-1"  # extra fields are ignored
    status, out, _ = call("POST", server.url + "/v2/models/credit/score", {"rows": records})
    assert status == 200, out
    assert np.array_equal(out["predictions"], credit.predict(rows))
    status, out, _ = call("POST", server.url + "/v2/models/credit/score", records[2])
    assert status == 200 and out["prediction"] == credit.predict(rows.iloc[[2]])[0]
    status, out, _ = call("POST", server.url + "/v2/models/credit/score", {"rows": []})
    assert status == 200 and out["predictions"] == []
    # Python's json writes NaN for a missing value; the server reads it too
    raw = json.dumps({"rows": [dict(records[0], x0=float("nan"))]}).encode()
    assert b"NaN" in raw
    status, out, _ = call("POST", server.url + "/v2/models/credit/score", raw=raw)
    assert status == 200 and out["predictions"] == [credit.predict(rows.iloc[[0]].assign(x0=np.nan))[0]]


X6 = {"name": "X", "shape": [2, 6], "datatype": "FP32", "data": [0.5] * 12}


@pytest.mark.parametrize("path, body, fragment", [
    ("infer", b"{not json", "request body is not valid JSON"),
    ("infer", [1, 2], "inference request must be a JSON object"),
    ("infer", {"inputs": []}, "'inputs' must be a non-empty list"),
    ("infer", {"inputs": [dict(X6, shape=[2, 5], data=[0.5] * 10)]}, "input 'X' must have shape [N, 6]"),
    ("infer", {"inputs": [dict(X6, data=[0.5] * 11)]}, "shape [2, 6] holds 12 values but 'data' has 11"),
    ("infer", {"inputs": [dict(X6, datatype="FP8")]}, "input 'X': unsupported datatype 'FP8'"),
    ("infer", {"inputs": [dict(X6, data=["a"] * 12)]}, "input 'X': 'data' must hold numbers"),
    ("infer", {"inputs": [dict(X6, datatype="BYTES", data=["a"] * 12)]}, "input 'X' must be numeric"),
    ("infer", {"inputs": [{k: v for k, v in X6.items() if k != "datatype"}]}, "input 'X': missing 'datatype'"),
    ("infer", {"inputs": [dict(X6, shape=[2, "6"])]}, "input 'X': 'shape' must be a list of non-negative integers"),
    ("infer", {"inputs": [dict(X6, data=[[0.5] * 4] * 3)]}, "input 'X': nested 'data' has shape [3, 4], not [2, 6]"),
    ("infer", {"inputs": [X6], "outputs": [{"name": "proba"}]}, "unknown output 'proba'"),
    ("infer", {"inputs": [{"name": n, "shape": [2], "datatype": "FP32", "data": [1, 2]} for n in FEATURES[:5]]},
     "missing input for feature 'x5'"),
    ("infer", {"inputs": [{"name": "age", "shape": [1], "datatype": "FP32", "data": [1]}]}, "unknown input 'age'"),
    ("infer", {"inputs": [{"name": n, "shape": [2 if n != "x3" else 3], "datatype": "FP32",
                           "data": [1] * (2 if n != "x3" else 3)} for n in FEATURES]}, "input 'x3' has 3 rows"),
    ("infer", {"inputs": [{"name": "x0", "shape": [1], "datatype": "BYTES", "data": ["a"]}]},
     "input 'x0' is BYTES but feature 'x0' is numeric"),
    ("infer", {"inputs": [{"name": "x0", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]},
     "input 'x0' must have shape [N] or [N, 1]"),
    ("score", {"rows": [{n: 1 for n in FEATURES}, {"x0": 1}]}, "rows[1]: input row lacks feature 'x1'"),
    ("score", {"rows": [dict({n: 1 for n in FEATURES}, x2="abc")]}, "rows[0]: feature 'x2' must be numeric, got 'abc'"),
    ("score", {"rows": [[1, 2, 3, 4, 5, 6]]}, "rows[0] must be an object of feature values by name"),
    ("score", [{"x0": 1}], "score request must be a JSON object"),
    ("score", {"x0": 1}, "row: input row lacks feature 'x1'"),
])
def test_schema_errors_are_400_naming_the_field(server, path, body, fragment):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, out, headers = call("POST", f"{server.url}/v2/models/credit/{path}", raw=raw)
    assert status == 400, out
    assert headers["content-type"] == "application/json" and set(out) == {"error"}
    assert fragment in out["error"], out["error"]


def test_unknown_model_version_path_and_method(server):
    status, out, _ = _infer(server.url, "fraud", {"inputs": [X6]})
    assert status == 404 and out["error"] == "unknown model 'fraud'; this server serves 'credit'"
    assert call("GET", server.url + "/v2/models/fraud")[0] == 404
    assert call("GET", server.url + "/v2/models/fraud/ready")[0] == 404
    status, out, _ = call("GET", server.url + "/v2/models/credit/versions/000000000000")
    assert status == 404 and "has no version '000000000000'" in out["error"]
    assert call("GET", server.url + "/nowhere")[0] == 404
    status, out, headers = call("GET", server.url + "/v2/models/credit/infer")
    assert status == 405 and headers["allow"] == "POST" and "use POST" in out["error"]
    assert call("POST", server.url + "/v2/health/live", {})[0] == 405


def _metrics(url) -> dict[str, float]:
    status, text, headers = call("GET", url + "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.fullmatch(r"# (HELP|TYPE) fecc_\w+ .+", line), line
            continue
        m = re.fullmatch(r'(fecc_\w+(?:\{[^}]*\})?) (\S+)', line)
        assert m, line
        out[m.group(1)] = float(m.group(2))
    return out


def test_metrics_count_requests_errors_latency_and_rows(server):
    infer = 'endpoint="infer"'
    before = _metrics(server.url)
    for _ in range(3):
        assert _infer(server.url, "credit", {"inputs": [X6]})[0] == 200
    assert _infer(server.url, "credit", {"inputs": []})[0] == 400
    after = _metrics(server.url)

    def delta(key):
        return after.get(key, 0) - before.get(key, 0)

    assert delta(f"fecc_requests_total{{{infer},status=\"200\"}}") == 3
    assert delta(f"fecc_requests_total{{{infer},status=\"400\"}}") == 1
    assert delta(f"fecc_request_errors_total{{{infer}}}") == 1
    assert delta(f"fecc_request_duration_seconds_count{{{infer}}}") == 4
    assert delta(f'fecc_request_duration_seconds_bucket{{{infer},le="+Inf"}}') == 4
    assert 0 < delta(f"fecc_request_duration_seconds_sum{{{infer}}}") < 4 * 5.0
    assert delta("fecc_rows_scored_total") == 6
    # the histogram is cumulative and ends at the count
    buckets = [v for k, v in after.items() if k.startswith("fecc_request_duration_seconds_bucket{" + infer)]
    assert buckets == sorted(buckets) and buckets[-1] == after[f"fecc_request_duration_seconds_count{{{infer}}}"]
    assert after['fecc_model_info{model="credit",version="%s",experts="false"}' % _version(server)] == 1


def _version(server) -> str:
    return call("GET", server.url + "/v2/models/credit")[1]["versions"][0]


# ------------------------------------------------------------- categorical, limits

def test_bytes_tensors_carry_category_values(cat_server, bundles):
    b = fecc_runtime.load(bundles["cats"])
    df = bundles["cat_df"].head(30).copy()
    cat = bundles["cat_feature"]
    df.loc[df.index[0], cat] = "mars"   # never seen in training: the missing branch
    df.loc[df.index[1], cat] = None
    tensors = []
    for name in b.feature_names:
        if name == cat:
            tensors.append({"name": name, "shape": [len(df)], "datatype": "BYTES", "data": list(df[name])})
        else:
            col = [None if math.isnan(v) else float(v) for v in df[name]]
            tensors.append({"name": name, "shape": [len(df), 1], "datatype": "FP64", "data": [[v] for v in col]})
    status, out, _ = call("POST", f"{cat_server.url}/v2/models/shop/infer", {"inputs": tensors})
    assert status == 200, out
    assert np.array_equal(out["outputs"][0]["data"], b.predict(df))
    meta = call("GET", f"{cat_server.url}/v2/models/shop")[1]
    assert {"name": cat, "datatype": "BYTES"} in meta["parameters"]["features"]
    # the bundle directory's name is not the model's name here
    assert call("GET", f"{cat_server.url}/v2/models/cats")[0] == 404


def test_body_over_the_limit_is_413(cat_server):
    status, out, _ = call("POST", f"{cat_server.url}/v2/models/shop/infer", raw=b" " * 20000)
    assert status == 413 and "over the limit of 10485 bytes" in out["error"]


# ------------------------------------------------------------------- lifecycle

def test_sigterm_finishes_the_request_in_flight_then_exits_0(bundles, credit, rows):
    s = Server(["-m", "fecc.cli", "serve", str(bundles["credit"])])
    body = json.dumps({"inputs": [{"name": "X", "shape": [len(rows), 6], "datatype": "FP64",
                                   "data": _flat(rows)}]}).encode()
    conn = socket.create_connection(("127.0.0.1", s.port))
    conn.sendall(b"POST /v2/models/credit/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:100])
    time.sleep(0.3)
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert s.proc.poll() is None, "the server quit with a request in flight"
    with pytest.raises(OSError):  # no new connections once shutting down
        socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
    conn.sendall(body[100:])
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _content_length(answer):
        chunk = conn.recv(65536)
        if not chunk:
            break
        answer += chunk
    conn.close()
    head, payload = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert np.array_equal(json.loads(payload)["outputs"][0]["data"], credit.predict(rows))
    assert s.stop() == 0
    assert s.lines[-1] == "fecc-serve: stopped (SIGTERM)"
    assert not any("Traceback" in line for line in s.lines), s.lines


def _content_length(answer: bytes) -> int:
    m = re.search(rb"content-length: (\d+)", answer, re.I)
    return int(m.group(1)) if m else 1 << 30


def test_workers_share_the_port_and_the_metrics(bundles):
    s = Server(["-m", "fecc_runtime.serve", str(bundles["credit"]), "--workers", "2"])
    try:
        assert "2 workers" in s.lines[0]
        for _ in range(20):  # a new connection each: the two workers take them as they come
            assert _infer(s.url, "credit", {"inputs": [X6]})[0] == 200
        key = 'fecc_requests_total{endpoint="infer",status="200"}'
        for _ in range(4):  # whichever worker answers the scrape, it counts both
            assert _metrics(s.url)[key] == 20
    finally:
        code = s.stop(signal.SIGINT)
    assert code == 0 and s.lines[-1] == "fecc-serve: stopped (SIGINT)"


def test_bundle_that_fails_verification_exits_2_with_one_line(bundles, tmp_path):
    bad = tmp_path / "credit"
    shutil.copytree(bundles["credit"], bad)
    lib = bad / "trees" / "legacy.npz"
    lib.write_bytes(lib.read_bytes() + b"\0")
    for cmd in (["-m", "fecc.cli", "serve"], ["-m", "fecc_runtime.serve"]):
        proc = subprocess.run([sys.executable, *cmd, str(bad), "--port", "0"], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 2
        (line,) = proc.stderr.strip().splitlines()
        prefix = "fecc: error: " if "fecc.cli" in cmd else "fecc-serve: error: "
        assert line.startswith(prefix) and "bundle file trees/legacy.npz was modified" in line, line


def test_port_in_use_exits_2_with_one_line(bundles):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "fecc.cli", "serve", str(bundles["credit"]), "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"fecc: error: cannot listen on 127.0.0.1:{port}: "), line


def test_missing_serve_extra_is_a_clear_error(monkeypatch, bundles):
    from fecc_runtime import serve

    monkeypatch.setattr(serve, "_importable", lambda m: None if m == "uvicorn" else object())
    with pytest.raises(serve.ServeError, match=r"serving needs uvicorn: pip install 'fecc-runtime\[serve\]'"):
        serve.serve(bundles["credit"], port=0)
    with pytest.raises(serve.ServeError, match="--workers must be at least 1"):
        serve.serve(bundles["credit"], workers=0)


def test_trusted_keys_serve_only_a_bundle_they_signed(bundles, tmp_path):
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    pub = tmp_path / "k.pub.pem"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    d = bundles["dir"]
    compile_bundle(d / "model.json", d / "data.csv", tmp_path / "signed", CompileOptions(search="none",
                                                                                       sign_key=str(tmp_path / "k.pem")))
    # the unsigned bundle is refused with one line
    proc = subprocess.run([sys.executable, "-m", "fecc_runtime.serve", str(bundles["credit"]), "--port", "0",
                           "--trusted-key", str(pub)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("fecc-serve: error: ") and "sign" in line, line
    # the signed one is served, by every worker (each checks the signature again)
    s = Server(["-m", "fecc.cli", "serve", str(tmp_path / "signed"), "--trusted-key", str(pub), "--workers", "2"])
    try:
        assert _infer(s.url, "signed", {"inputs": [X6]})[0] == 200
    finally:
        assert s.stop() == 0


def test_multiclass_answers_one_value_per_class(bundles, tmp_path):
    """The protocol layer alone (no server): a 3-class model answers [N, 3]."""
    import orjson
    import xgboost as xgb

    from fecc_runtime.serve import ModelService

    df = make_table(n=300, seed=4)
    df["y"] = pd.cut(df["x0"].fillna(0), [-np.inf, -0.5, 0.5, np.inf], labels=False)
    xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 2, "nthread": 1},
              xgb.DMatrix(df[FEATURES], label=df["y"]), num_boost_round=4).save_model(tmp_path / "m.json")
    df.to_parquet(tmp_path / "m.parquet")
    compile_bundle(tmp_path / "m.json", tmp_path / "m.parquet", tmp_path / "multi", CompileOptions(search="none"))
    b = fecc_runtime.load(tmp_path / "multi")
    service = ModelService(b)
    assert service.metadata()["outputs"][0]["shape"] == [-1, 3]
    rows = df[FEATURES].head(7)
    payload, n = service.infer(orjson.dumps({"inputs": [{"name": "X", "shape": [7, 6], "datatype": "FP64",
                                                         "data": _flat(rows)}]}))
    (out,) = orjson.loads(payload)["outputs"]
    assert n == 7 and out["shape"] == [7, 3]
    assert np.array_equal(np.array(out["data"]).reshape(7, 3), b.predict(rows))
    payload, n = service.score(orjson.dumps(_none_for_nan(rows.iloc[0].to_dict())))
    assert n == 1 and orjson.loads(payload)["prediction"] == b.predict(rows.iloc[[0]])[0].tolist()


def _none_for_nan(row: dict) -> dict:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
