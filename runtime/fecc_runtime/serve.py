"""Serve a bundle over HTTP: the Open Inference Protocol v2 REST API (KServe V2, Triton).

``fecc serve BUNDLE`` / ``fecc-serve BUNDLE`` load and verify the bundle once, bind a
socket and answer, until SIGTERM or SIGINT, with a plain ASGI application run by
uvicorn (uvloop + httptools when installed; the ``serve`` extra installs them):

=======  ====================================  =========================================
GET      ``/v2/health/live``                   ``{"live": true}``
GET      ``/v2/health/ready``                  ``{"ready": true}``
GET      ``/v2``                               server metadata
GET      ``/v2/models/{name}``                 model metadata (inputs, outputs, features)
GET      ``/v2/models/{name}/ready``           ``{"name": ..., "ready": true}``
POST     ``/v2/models/{name}/infer``           OIP inference request -> ``prediction``
POST     ``/v2/models/{name}/score``           JSON rows by feature name -> predictions
GET      ``/metrics``                          Prometheus text (requests, errors, latency)
=======  ====================================  =========================================

``/v2/models/{name}/versions/{version}/...`` answers too when ``version`` is the
model's version: the first 12 hex digits of the sha256 of its ``manifest.json``.

An inference request holds either one tensor ``X`` of shape ``[N, n_features]`` with
the features in manifest order (numeric; categorical features as their codes), or one
tensor per feature, by name, of shape ``[N]`` or ``[N, 1]`` (``BYTES`` for category
values).  ``null`` is a missing value.  Every prediction goes through
:meth:`fecc_runtime.Bundle.predict`, the same batch path as ``fecc score`` and the
Spark/Dask/Ray scorers, so all of them agree bit for bit.  A malformed request is
answered 400 with ``{"error": "..."}`` naming the field at fault; another model's name
is 404.

The protocol (:class:`ModelService`), the metrics (:class:`Metrics`) and the ASGI
application (:class:`App`) need only numpy and orjson; :func:`serve` needs uvicorn.
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import logging
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .batch import manifest_digest, n_outputs
from .bundle import Bundle, load
from .errors import BundleError

try:
    import orjson
except ImportError:  # the serve extra installs it; serve() says so if it is missing
    orjson = None

__all__ = ["App", "Metrics", "ModelService", "RequestError", "ServeError", "create_app", "main", "serve"]

log = logging.getLogger("fecc_runtime.serve")

# Numeric datatypes of the protocol and the numpy type their JSON data is read as.
# FP32 data is rounded to float32 (that is what the client holds); integers and
# booleans are read as float64, which holds every value a feature can take.
_NUMERIC = {"FP16": np.float32, "FP32": np.float32, "FP64": np.float64, "BOOL": np.float64,
            **{f"INT{b}": np.float64 for b in (8, 16, 32, 64)},
            **{f"UINT{b}": np.float64 for b in (8, 16, 32, 64)}}
_OUTPUTS = ("prediction", "margin")
# requests with a body larger than this are decoded and scored on a worker thread,
# so that small requests keep being answered meanwhile (the tree library releases the GIL)
_OFFLOAD_BYTES = 64 * 1024


class ServeError(Exception):
    """The server cannot start: a missing extra, a port in use, a bad option."""


class RequestError(Exception):
    """A request the server answers with an error status and ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: tuple = ()):
        super().__init__(message)
        self.status = status
        self.headers = headers


def manifest_version(bundle: Bundle) -> str:
    """The model version the server reports: sha256 of ``manifest.json``, 12 hex digits.

    The manifest holds the sha256 of every other file, so this names the bundle's
    whole content: two servers report the same version exactly when they serve the
    same bytes.
    """
    return manifest_digest(bundle.path)[:12]


def _loads(body: bytes) -> Any:
    """Parse a request body; orjson first, then the standard library, which also reads
    the ``NaN`` and ``Infinity`` tokens that Python's ``json`` module writes."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise RequestError(400, f"request body is not valid JSON: {exc}") from None


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


class ModelService:
    """One loaded bundle behind the protocol: decodes requests, scores, encodes answers.

    Parameters
    ----------
    bundle : a verified bundle (:func:`fecc_runtime.load`).
    name : the model name in the URLs; the bundle directory's name by default.
    """

    def __init__(self, bundle: Bundle, name: str | None = None):
        self.bundle = bundle
        self.name = name or bundle.path.resolve().name
        self.version = manifest_version(bundle)
        self.features = bundle.feature_names
        self.categorical = frozenset(f["name"] for f in bundle.manifest["features"]
                                     if f.get("categories") is not None)
        self._feature_set = frozenset(self.features)
        n_out = n_outputs(bundle)  # one value per class for multi-class models (argmax: the class index)
        self._out_shape = [-1] if n_out == 1 else [-1, n_out]

    # ------------------------------------------------------------ metadata
    def metadata(self) -> dict:
        """The protocol's model metadata: inputs, outputs, and the features by name."""
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "fecc",
            "inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, len(self.features)]}],
            "outputs": [{"name": o, "datatype": "FP64", "shape": list(self._out_shape)} for o in _OUTPUTS],
            "parameters": {
                "task": self.bundle.task.get("kind"),
                "link": self.bundle.link,
                "uses_experts": self.bundle.uses_experts,
                # the per-feature form of a request: one tensor per feature, by name
                "features": [{"name": n, "datatype": "BYTES" if n in self.categorical else "FP64"}
                             for n in self.features],
            },
        }

    # ----------------------------------------------------------- inference
    def infer(self, body: bytes) -> tuple[bytes, int]:
        """Answer an inference request (``POST .../infer``): the JSON answer and the rows scored.

        Raises :class:`RequestError` (400) for a request that does not fit the model.
        """
        req = _loads(body)
        if not isinstance(req, dict):
            raise RequestError(400, "inference request must be a JSON object with an 'inputs' list")
        inputs = req.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise RequestError(400, "'inputs' must be a non-empty list of tensors")
        outputs = self._requested_outputs(req.get("outputs"))
        X = self._decode_inputs(inputs)
        answer: dict[str, Any] = {"model_name": self.name, "model_version": self.version}
        if "id" in req:
            answer["id"] = req["id"]
        answer["outputs"] = [self._tensor(o, self._predict(X, o)) for o in outputs]
        return _dumps(answer), _n_rows(X)

    def _requested_outputs(self, spec) -> list[str]:
        if spec is None:
            return ["prediction"]
        if not isinstance(spec, list) or not all(isinstance(o, dict) for o in spec):
            raise RequestError(400, "'outputs' must be a list of objects with a 'name'")
        names = [o.get("name") for o in spec]
        for n in names:
            if n not in _OUTPUTS:
                raise RequestError(400, f"unknown output {n!r}; this model has outputs 'prediction' and 'margin'")
        return names or ["prediction"]

    def _decode_inputs(self, inputs: list) -> np.ndarray | dict:
        """The rows of a request: a float matrix in manifest order, or columns by feature name."""
        tensors = [self._decode_tensor(i, t) for i, t in enumerate(inputs)]
        if len(tensors) == 1 and tensors[0][0] == "X" and self._is_matrix(tensors[0][1]):
            name, shape, arr = tensors[0]
            if len(shape) != 2 or shape[1] != len(self.features):
                raise RequestError(400, f"input 'X' must have shape [N, {len(self.features)}] (rows × the features "
                                        f"in manifest order: {_shown(self.features)}), got {shape}")
            if arr.dtype == object:
                raise RequestError(400, "input 'X' must be numeric (FP32 or FP64); send category values as "
                                        "one BYTES tensor per feature")
            return np.ascontiguousarray(arr)
        columns: dict[str, np.ndarray] = {}
        n_rows = None
        for name, shape, arr in tensors:
            if name not in self._feature_set:
                raise RequestError(400, f"unknown input {name!r}: send one tensor 'X' [N, {len(self.features)}] "
                                        f"or one tensor per feature ({_shown(self.features)})")
            if name in columns:
                raise RequestError(400, f"input {name!r} is given twice")
            if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
                raise RequestError(400, f"input {name!r} must have shape [N] or [N, 1], got {shape}")
            if n_rows is not None and shape[0] != n_rows:
                raise RequestError(400, f"input {name!r} has {shape[0]} rows, the inputs before it {n_rows}")
            n_rows = shape[0]
            if arr.dtype == object and name not in self.categorical:
                raise RequestError(400, f"input {name!r} is BYTES but feature {name!r} is numeric")
            columns[name] = arr.reshape(-1)
        missing = [n for n in self.features if n not in columns]
        if missing:
            raise RequestError(400, f"missing input for feature {missing[0]!r}"
                                    + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        return columns

    def _is_matrix(self, shape: list[int]) -> bool:
        # a single input named X is the [N, n_features] matrix, unless the model has a
        # feature named X and the tensor has that feature's shape ([N] or [N, 1])
        if "X" not in self._feature_set:
            return True
        return len(shape) == 2 and shape[1] == len(self.features) and len(self.features) > 1

    @staticmethod
    def _decode_tensor(i: int, t) -> tuple[str, list[int], np.ndarray]:
        """Check one request tensor and read its data into an array of its shape."""
        if not isinstance(t, dict):
            raise RequestError(400, f"inputs[{i}] must be an object with 'name', 'shape', 'datatype' and 'data'")
        name = t.get("name")
        if not isinstance(name, str):
            raise RequestError(400, f"inputs[{i}]: 'name' must be a string")
        for key in ("shape", "datatype", "data"):
            if key not in t:
                raise RequestError(400, f"input {name!r}: missing '{key}'")
        shape, dtype, data = t["shape"], t["datatype"], t["data"]
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise RequestError(400, f"input {name!r}: 'shape' must be a list of non-negative integers, got {shape!r}")
        if dtype != "BYTES" and dtype not in _NUMERIC:
            raise RequestError(400, f"input {name!r}: unsupported datatype {dtype!r} "
                                    "(FP16/FP32/FP64, INT*/UINT*, BOOL or BYTES)")
        if not isinstance(data, list):
            raise RequestError(400, f"input {name!r}: 'data' must be a list")
        try:
            if dtype == "BYTES":
                arr = np.array(data, dtype=object)
            else:
                arr = np.array(data, dtype=_NUMERIC[dtype])
        except (TypeError, ValueError):
            raise RequestError(400, f"input {name!r}: 'data' must hold numbers (null for a missing value) for "
                                    f"datatype {dtype}, flat or as nested lists of equal length") from None
        size = math.prod(shape)
        if arr.size != size:
            raise RequestError(400, f"input {name!r}: shape {shape} holds {size} values but 'data' has {arr.size}")
        if arr.ndim > 1 and list(arr.shape) != shape:
            raise RequestError(400, f"input {name!r}: nested 'data' has shape {list(arr.shape)}, not {shape}")
        if dtype == "BYTES" and any(isinstance(v, (list, dict)) for v in arr.flat):
            raise RequestError(400, f"input {name!r}: nested 'data' does not match shape {shape}")
        return name, shape, arr.reshape(shape)

    def _predict(self, X, output: str) -> np.ndarray:
        try:
            return self.bundle.predict(X, output=output)
        except BundleError as exc:
            raise RequestError(400, str(exc)) from None

    def _tensor(self, name: str, values: np.ndarray) -> dict:
        return {"name": name, "shape": list(values.shape), "datatype": "FP64", "data": values.reshape(-1)}

    # --------------------------------------------------------------- rows
    def score(self, body: bytes) -> tuple[bytes, int]:
        """Answer ``POST .../score``: ``{"rows": [{feature: value, ...}, ...]}`` or one such object.

        Returns the JSON answer (``predictions``, or ``prediction`` for one object) and
        the rows scored; raises :class:`RequestError` (400) naming the row and feature at fault.
        """
        req = _loads(body)
        if isinstance(req, dict) and isinstance(req.get("rows"), list):
            rows, single = req["rows"], False
        elif isinstance(req, dict):
            rows, single = [req], True
        else:
            raise RequestError(400, "score request must be a JSON object: {\"rows\": [{feature: value, ...}]} "
                                    "or one row {feature: value, ...}")
        X = np.empty((len(rows), len(self.features)), dtype=np.float64)
        for i, row in enumerate(rows):
            where = "row" if single else f"rows[{i}]"
            if not isinstance(row, dict):
                raise RequestError(400, f"{where} must be an object of feature values by name")
            try:
                X[i] = self.bundle.row(row)
            except BundleError as exc:
                raise RequestError(400, f"{where}: {exc}") from None
        pred = self._predict(X, "prediction")
        answer: dict[str, Any] = {"model_name": self.name, "model_version": self.version}
        if single:
            answer["prediction"] = pred[0]
        else:
            answer["predictions"] = pred
        return _dumps(answer), len(rows)


def _n_rows(X) -> int:
    return len(X) if isinstance(X, np.ndarray) else len(next(iter(X.values())))


def _shown(names, limit: int = 8) -> str:
    head = ", ".join(names[:limit])
    return head + (f", … ({len(names)} in all)" if len(names) > limit else "")


# ---------------------------------------------------------------------------- metrics

# the endpoint label of each route (``other``: no such path, or another model's)
ROUTES = ("live", "ready", "server_metadata", "model_metadata", "model_ready", "infer", "score", "metrics", "other")
STATUSES = (200, 400, 404, 405, 413, 500, 503)  # every status App answers
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    """Request counters and a latency histogram, rendered as Prometheus text.

    The numbers live in one float64 array: in memory for one process, or, with
    ``directory``, in a file of that directory that this worker maps; :meth:`render`
    then sums every worker's file, so a scrape sees the whole server whichever worker
    answers it.
    """

    _R, _S, _B = len(ROUTES), len(STATUSES), len(BUCKETS) + 1
    SIZE = _R * _S + _R * _B + _R + 1

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory) if directory else None
        if self.directory is None:
            self.values = np.zeros(self.SIZE)
        else:
            path = self.directory / f"worker-{os.getpid()}.f64"
            self.values = np.memmap(path, dtype=np.float64, mode="w+", shape=(self.SIZE,))
        R, S, B = self._R, self._S, self._B
        self._counts = self.values[: R * S].reshape(R, S)
        self._buckets = self.values[R * S: R * S + R * B].reshape(R, B)
        self._sums = self.values[R * S + R * B: R * S + R * B + R]
        self._route = {r: i for i, r in enumerate(ROUTES)}
        self._status = {s: i for i, s in enumerate(STATUSES)}
        self.rows_index = self.SIZE - 1

    def observe(self, route: str, status: int, seconds: float, rows: int = 0) -> None:
        """Count one answered request."""
        r = self._route[route]
        self._counts[r, self._status[status]] += 1
        self._buckets[r, bisect.bisect_left(BUCKETS, seconds)] += 1
        self._sums[r] += seconds
        if rows:
            self.values[self.rows_index] += rows

    def _totals(self) -> np.ndarray:
        if self.directory is None:
            return np.array(self.values)
        total = np.zeros(self.SIZE)
        for f in self.directory.glob("worker-*.f64"):
            arr = np.fromfile(f, dtype=np.float64)
            if arr.shape == (self.SIZE,):
                total += arr
        return total

    def render(self, info: dict[str, str]) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of every counter so far."""
        v = self._totals()
        R, S, B = self._R, self._S, self._B
        counts = v[: R * S].reshape(R, S)
        buckets = v[R * S: R * S + R * B].reshape(R, B)
        sums = v[R * S + R * B: R * S + R * B + R]
        labels = ",".join(f'{k}="{_escape(val)}"' for k, val in info.items())
        out = ["# HELP fecc_model_info The model this server serves.", "# TYPE fecc_model_info gauge",
               f"fecc_model_info{{{labels}}} 1",
               "# HELP fecc_requests_total HTTP requests answered, by endpoint and status.",
               "# TYPE fecc_requests_total counter"]
        for r, route in enumerate(ROUTES):
            for s, status in enumerate(STATUSES):
                if counts[r, s]:
                    out.append(f'fecc_requests_total{{endpoint="{route}",status="{status}"}} {int(counts[r, s])}')
        out += ["# HELP fecc_request_errors_total HTTP requests answered with a 4xx or 5xx status, by endpoint.",
                "# TYPE fecc_request_errors_total counter"]
        err = [s for s, status in enumerate(STATUSES) if status >= 400]
        for r, route in enumerate(ROUTES):
            n = int(counts[r, err].sum())
            if counts[r].any():
                out.append(f'fecc_request_errors_total{{endpoint="{route}"}} {n}')
        out += ["# HELP fecc_request_duration_seconds Time from request headers to the last byte of the answer.",
                "# TYPE fecc_request_duration_seconds histogram"]
        for r, route in enumerate(ROUTES):
            if not counts[r].any():
                continue
            cum = np.cumsum(buckets[r])
            for b, le in enumerate(BUCKETS):
                out.append(f'fecc_request_duration_seconds_bucket{{endpoint="{route}",le="{le}"}} {int(cum[b])}')
            out.append(f'fecc_request_duration_seconds_bucket{{endpoint="{route}",le="+Inf"}} {int(cum[-1])}')
            out.append(f'fecc_request_duration_seconds_sum{{endpoint="{route}"}} {float(sums[r])!r}')
            out.append(f'fecc_request_duration_seconds_count{{endpoint="{route}"}} {int(cum[-1])}')
        out += ["# HELP fecc_rows_scored_total Rows scored by the infer and score endpoints.",
                "# TYPE fecc_rows_scored_total counter", f"fecc_rows_scored_total {int(v[self.rows_index])}"]
        return ("\n".join(out) + "\n").encode()


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


# ------------------------------------------------------------------------ ASGI app

_JSON = [(b"content-type", b"application/json")]
_PROM = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]


class App:
    """The ASGI application: routes, reads bodies, answers, counts.

    Parameters
    ----------
    service : the model behind the endpoints.
    metrics : where answered requests are counted (a fresh in-memory one by default).
    max_body_bytes : larger request bodies are answered 413.
    """

    def __init__(self, service: ModelService, metrics: Metrics | None = None, *, max_body_bytes: int = 64 << 20):
        self.service = service
        self.metrics = metrics or Metrics()
        self.max_body_bytes = max_body_bytes
        self._executor: ThreadPoolExecutor | None = None
        self._ready = True
        base = f"/v2/models/{service.name}"
        # (route label, method, handler) by exact path; the versioned paths answer the same
        self._routes: dict[str, tuple[str, str, Callable]] = {
            "/v2/health/live": ("live", "GET", self._live),
            "/v2/health/ready": ("ready", "GET", self._health_ready),
            "/v2": ("server_metadata", "GET", self._server_metadata),
            "/metrics": ("metrics", "GET", self._metrics),
        }
        for prefix in (base, f"{base}/versions/{service.version}"):
            self._routes[prefix] = ("model_metadata", "GET", self._model_metadata)
            self._routes[prefix + "/ready"] = ("model_ready", "GET", self._model_ready)
            self._routes[prefix + "/infer"] = ("infer", "POST", service.infer)
            self._routes[prefix + "/score"] = ("score", "POST", service.score)
        self._info = {"model": service.name, "version": service.version,
                      "experts": str(service.bundle.uses_experts).lower()}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._ready = False
                if self._executor is not None:
                    self._executor.shutdown(wait=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope, receive, send) -> None:
        t0 = time.perf_counter()
        path = scope["path"]
        route = self._routes.get(path)
        label = route[0] if route else "other"
        headers, rows = _JSON, 0
        try:
            if route is None:
                raise self._no_route(path)
            _, method, handler = route
            if scope["method"] != method:
                raise RequestError(405, f"{scope['method']} is not allowed on {path}; use {method}",
                                   ((b"allow", method.encode()),))
            if method == "POST":
                body = await self._body(scope, receive)
                if body is None:  # the client went away
                    return
                if len(body) > _OFFLOAD_BYTES:
                    payload, rows = await asyncio.get_running_loop().run_in_executor(self._pool(), handler, body)
                else:
                    payload, rows = handler(body)
            else:
                payload = handler()
            if label == "metrics":
                headers = _PROM
            status = 200
        except RequestError as exc:
            status, payload = exc.status, _dumps({"error": str(exc)})
            headers = _JSON + list(exc.headers)
        except Exception as exc:  # a bug, not the client's fault: say so, keep serving
            log.exception("error answering %s %s", scope["method"], path)
            status, payload = 500, _dumps({"error": f"internal error: {type(exc).__name__}: {exc}"})
        await send({"type": "http.response.start", "status": status,
                    "headers": headers + [(b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
        self.metrics.observe(label, status, time.perf_counter() - t0, rows)

    def _no_route(self, path: str) -> RequestError:
        parts = path.strip("/").split("/")
        if len(parts) >= 3 and parts[:2] == ["v2", "models"]:
            if parts[2] != self.service.name:
                return RequestError(404, f"unknown model {parts[2]!r}; this server serves {self.service.name!r}")
            if len(parts) >= 5 and parts[3] == "versions" and parts[4] != self.service.version:
                return RequestError(404, f"model {self.service.name!r} has no version {parts[4]!r}; "
                                         f"it serves version {self.service.version!r}")
        return RequestError(404, f"no endpoint {path}; see /v2/models/{self.service.name}")

    async def _body(self, scope, receive) -> bytes | None:
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                raise RequestError(413, f"request body of {int(value)} bytes is over the limit of "
                                        f"{self.max_body_bytes} bytes")
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body = message.get("body", b"")
        if not message.get("more_body"):
            return body
        chunks, size = [body], len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise RequestError(413, f"request body is over the limit of {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    def _pool(self) -> ThreadPoolExecutor:
        # one thread: large requests queue there in order while the loop answers small ones
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fecc-serve")
        return self._executor

    # ------------------------------------------------------------ GET handlers
    def _live(self) -> bytes:
        return b'{"live":true}'

    def _health_ready(self) -> bytes:
        if not self._ready:
            raise RequestError(503, "shutting down")
        return b'{"ready":true}'

    def _model_ready(self) -> bytes:
        return _dumps({"name": self.service.name, "ready": self._ready})

    def _server_metadata(self) -> bytes:
        from . import __version__

        return _dumps({"name": "fecc-serve", "version": __version__, "extensions": []})

    def _model_metadata(self) -> bytes:
        return _dumps(self.service.metadata())

    def _metrics(self) -> bytes:
        return self.metrics.render(self._info)


def create_app(bundle: str | Path | Bundle, *, name: str | None = None, metrics_dir: str | Path | None = None,
               max_body_bytes: int = 64 << 20, trusted_keys=None) -> App:
    """The ASGI application for a bundle (a path is loaded and verified here, with its
    signature when ``trusted_keys`` are given).

    Any ASGI server can run it; :func:`serve` runs it with uvicorn.
    """
    if orjson is None:
        raise ServeError("the server needs orjson: pip install 'fecc-runtime[serve]'")
    b = bundle if isinstance(bundle, Bundle) else load(bundle, trusted_keys=trusted_keys)
    return App(ModelService(b, name), Metrics(metrics_dir), max_body_bytes=max_body_bytes)


_ENV = "FECC_SERVE_"


def _app_from_env() -> App:
    """The app of one worker process (``--workers`` > 1): settings come from the parent's environment."""
    keys = os.environ.get(_ENV + "TRUSTED_KEYS")
    return create_app(os.environ[_ENV + "BUNDLE"], name=os.environ.get(_ENV + "NAME") or None,
                      metrics_dir=os.environ[_ENV + "METRICS_DIR"],
                      max_body_bytes=int(os.environ[_ENV + "MAX_BODY_BYTES"]),
                      trusted_keys=keys.split(os.pathsep) if keys else None)


# ------------------------------------------------------------------------ running

def _require_uvicorn():
    missing = [m for m in ("uvicorn", "orjson") if _importable(m) is None]
    if missing:
        raise ServeError(f"serving needs {' and '.join(missing)}: pip install 'fecc-runtime[serve]'")
    import uvicorn

    return uvicorn


def _importable(module: str):
    import importlib.util

    return importlib.util.find_spec(module)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(bundle: str | Path, *, host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
          name: str | None = None, max_body_mb: float = 64, shutdown_timeout: float = 30.0,
          access_log: bool = False, trusted_keys: list[str] | None = None,
          say: Callable[[str], None] | None = None) -> str | None:
    """Verify ``bundle``, listen on ``host:port`` and serve until SIGTERM or SIGINT.

    The bundle is loaded and verified here, before the socket is bound: a bundle that
    fails verification raises :class:`~fecc_runtime.BundleError` and nothing listens.
    On SIGTERM/SIGINT the server stops accepting connections, finishes the requests in
    flight (at most ``shutdown_timeout`` seconds) and returns the signal's name.

    Parameters
    ----------
    port : 0 picks a free port; the line ``say`` prints names it.
    trusted_keys : Ed25519 public key files; the bundle must be signed by one of them.
    workers : processes sharing the socket; each loads and verifies the bundle, and
        ``/metrics`` sums the counters of all of them.
    say : where the one start line and the stop line go (stderr by default).
    """
    say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if workers < 1:
        raise ServeError(f"--workers must be at least 1, got {workers}")
    if not 0 <= port <= 65535:
        raise ServeError(f"--port must be 0..65535, got {port}")
    uvicorn = _require_uvicorn()
    bundle_obj = load(bundle, trusted_keys=list(trusted_keys) if trusted_keys else None)
    service = ModelService(bundle_obj, name)
    max_body = int(max_body_mb * (1 << 20))
    loop = "uvloop" if _importable("uvloop") else "asyncio"
    http = "httptools" if _importable("httptools") else "h11"
    sock = _listen(host, port)
    bound = sock.getsockname()[1]
    common = dict(loop=loop, http=http, ws="none", lifespan="on", interface="asgi3", access_log=access_log,
                  log_level="info" if access_log else "warning", server_header=False,
                  timeout_graceful_shutdown=shutdown_timeout)
    kind = "legacy + experts" if bundle_obj.uses_experts else "legacy only"
    shown_host = f"[{host}]" if ":" in host else host
    say(f"fecc-serve: model {service.name!r} version {service.version} ({kind}, {len(service.features)} features) "
        f"on http://{shown_host}:{bound} — {workers} worker{'s' if workers > 1 else ''}, {loop} + {http}")
    stopped: list[str] = []
    try:
        if workers == 1:
            config = uvicorn.Config(App(service, Metrics(), max_body_bytes=max_body), **common)
            server = uvicorn.Server(config)

            def on_signal(sig, frame):
                # uvicorn handles the signals while it runs and raises them again once it
                # has shut down; this handler takes that second delivery (and any signal
                # that comes before uvicorn is listening) so that the process exits 0
                stopped.append(signal.Signals(sig).name)
                server.should_exit = True

            previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
            try:
                server.run(sockets=[sock])
            finally:
                for s, h in previous.items():
                    signal.signal(s, h)
        else:
            from uvicorn.supervisors import Multiprocess

            metrics_dir = tempfile.mkdtemp(prefix="fecc-serve-metrics-")
            os.environ.update({_ENV + "BUNDLE": str(Path(bundle).resolve()), _ENV + "NAME": service.name,
                               _ENV + "METRICS_DIR": metrics_dir, _ENV + "MAX_BODY_BYTES": str(max_body),
                               _ENV + "TRUSTED_KEYS": os.pathsep.join(str(Path(k).resolve())
                                                                      for k in trusted_keys or ())})
            try:
                config = uvicorn.Config("fecc_runtime.serve:_app_from_env", factory=True, workers=workers, **common)

                class Supervisor(Multiprocess):
                    """uvicorn's worker supervisor, noting which signal stopped it."""

                    def handle_term(self):
                        stopped.append("SIGTERM")
                        super().handle_term()

                    def handle_int(self):
                        stopped.append("SIGINT")
                        super().handle_int()

                Supervisor(config, sockets=[sock]).run()
                if not stopped:  # uvicorn's supervisor returns by itself only when a worker could not start
                    raise ServeError("a worker process failed to start (its error is logged above)")
            finally:
                shutil.rmtree(metrics_dir, ignore_errors=True)
    finally:
        sock.close()
    reason = stopped[0] if stopped else None
    say(f"fecc-serve: stopped{f' ({reason})' if reason else ''}")
    return reason


def build_parser(prog: str = "fecc-serve") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Serve a fecc bundle over the Open Inference Protocol v2 (REST).")
    p.add_argument("bundle", help="bundle directory (verified before serving)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to bind; 0 picks a free one (default: 8080)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    p.add_argument("--name", default=None, help="model name in the URLs (default: the bundle directory's name)")
    p.add_argument("--max-body-mb", type=float, default=64, help="largest request body, MiB (default: 64)")
    p.add_argument("--shutdown-timeout", type=float, default=30.0,
                   help="seconds to finish requests in flight after SIGTERM (default: 30)")
    p.add_argument("--trusted-key", dest="trusted_keys", action="append", default=None, metavar="PEM",
                   help="Ed25519 public key; the bundle must be signed by one (repeatable)")
    p.add_argument("--access-log", action="store_true", help="log every request (costs latency)")
    return p


def main(argv: list[str] | None = None) -> int:
    """``fecc-serve``: a user mistake or a bundle that fails verification is one line on stderr, status 2."""
    args = build_parser().parse_args(argv)
    try:
        serve(args.bundle, host=args.host, port=args.port, workers=args.workers, name=args.name,
              max_body_mb=args.max_body_mb, shutdown_timeout=args.shutdown_timeout, access_log=args.access_log,
              trusted_keys=args.trusted_keys)
    except (BundleError, ServeError) as exc:
        print(f"fecc-serve: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
