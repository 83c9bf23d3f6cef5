"""Load test of ``fecc serve`` on loopback: latency and throughput of single-row requests.

Starts ``python -m fecc_runtime.serve BUNDLE --port 0`` (127.0.0.1 only) and measures,
in one run:

* **closed loop** — 1, 8 and 64 concurrent clients (keep-alive connections, each
  sending its next request as soon as the answer arrives) for ``--seconds`` each:
  throughput and p50/p99 latency;
* **open loop** — requests sent on a fixed schedule at ``--rate`` per second for
  ``--seconds`` (``--open-clients`` connections take the scheduled slots); a request's
  latency counts from its *scheduled* time, so a server that falls behind is charged
  for the queue it builds (no coordinated omission).  The target is p99 ≤ 2 ms at
  1,000 requests/s.

Every request is one row, ``POST /v2/models/NAME/infer`` with an ``X`` tensor of
shape ``[1, 30]`` (FP32), cycling through 2000 distinct rows; every answer is checked
for status 200.  The client runs on the same machine as the server, so they share
the CPUs: the load average is printed before and after each level.

Without ``--bundle``, a bundle is built in ``--workdir`` (XGBoost 100 trees, depth 6,
30 features, as in bench_latency.py) and reused on the next run.  Bounded: each level
stops after ``--seconds`` or ``--max-requests``, whichever comes first.

Run:  .venv/bin/python benchmarks/bench_serve.py [--seconds 10] [--rate 1000] [--workers 1]
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

N_FEATURE = 30
HOST = "127.0.0.1"


# ------------------------------------------------------------------ bundle, server

def build_bundle(workdir: Path) -> Path:
    """An XGBoost binary model (100 trees, depth 6, 30 features) compiled with --search none."""
    out = workdir / "serve-bench"
    if (out / "manifest.json").exists():
        return out
    import pandas as pd
    import xgboost as xgb

    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, N_FEATURE)).astype(np.float32)
    logit = X[:, 0] * X[:, 1] + np.sin(X[:, 2] * 2) + 0.5 * X[:, 3:10].sum(axis=1) - X[:, 10] ** 2
    y = (logit + rng.normal(scale=0.5, size=len(X)) > 0).astype(np.float32)
    X[rng.random(X.shape) < 0.02] = np.nan
    names = [f"f{i}" for i in range(N_FEATURE)]
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "nthread": 2, "seed": 0},
                        xgb.DMatrix(X, label=y, feature_names=names), num_boost_round=100)
    booster.save_model(workdir / "serve-model.json")
    pd.DataFrame(X, columns=names).assign(y=y).to_parquet(workdir / "serve-data.parquet")
    subprocess.run([sys.executable, "-m", "fecc.cli", "compile", str(workdir / "serve-model.json"),
                    str(workdir / "serve-data.parquet"), "-o", str(out), "--search", "none", "-q", "--force"],
                   check=True, stdout=subprocess.DEVNULL)
    return out


class ServerProcess:
    """``fecc_runtime.serve`` in a subprocess on a free loopback port."""

    def __init__(self, bundle: Path, workers: int):
        self.proc = subprocess.Popen([sys.executable, "-m", "fecc_runtime.serve", str(bundle), "--host", HOST,
                                      "--port", "0", "--workers", str(workers)],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        line = self.proc.stderr.readline()
        m = re.search(r"model '([^']+)'.*http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise SystemExit(f"server did not start: {line.strip()}")
        self.name, self.port = m.group(1), int(m.group(2))
        self.start_line = line.strip()
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # keep the pipe drained
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _ = BlockingClient(self.port).request(b"GET", "/v2/health/ready", b"")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server never became ready")
            time.sleep(0.1)

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(30)


# ------------------------------------------------------------------------ clients

def request_bytes(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def parse_head(head: bytes) -> tuple[int, int]:
    """(status, content length) of a response head."""
    status = int(head[9:12])
    m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
    return status, int(m.group(1)) if m else 0


class BlockingClient:
    """One keep-alive connection with blocking sockets (the open-loop threads use it)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def request(self, method: bytes, path: str, body: bytes) -> tuple[int, bytes]:
        if method == b"GET":
            self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        else:
            self.sock.sendall(request_bytes(path, body))
        return self.read()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        head, rest = self.buf.split(b"\r\n\r\n", 1)
        status, n = parse_head(head)
        while len(rest) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            rest += chunk
        self.buf = rest[n:]
        return status, rest[:n]

    def close(self) -> None:
        self.sock.close()


async def closed_loop(port: int, requests: list[bytes], clients: int, seconds: float, max_requests: int) -> dict:
    """``clients`` connections, each sending back to back until time or count runs out."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    counter = itertools.count()

    async def one_client(k: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(HOST, port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        clock = time.perf_counter
        try:
            while clock() < stop_at:
                i = next(counter)
                if i >= max_requests:
                    break
                t0 = clock()
                writer.write(requests[i % len(requests)])
                head = await reader.readuntil(b"\r\n\r\n")
                status, n = parse_head(head)
                await reader.readexactly(n)
                latencies.append(clock() - t0)
                errors += status != 200
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one_client(k) for k in range(clients)))
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1e3
    return {"clients": clients, "requests": len(lat), "errors": errors, "seconds": round(wall, 2),
            "throughput_rps": round(len(lat) / wall, 1), "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3), "max_ms": round(float(lat.max()), 3)}


def open_loop(port: int, requests: list[bytes], rate: float, seconds: float, n_clients: int) -> dict:
    """Requests on a fixed schedule: request i is due at start + i / rate."""
    total = int(rate * seconds)
    counter = itertools.count()
    from_schedule = np.full(total, np.nan)
    from_send = np.full(total, np.nan)
    statuses = np.zeros(total, dtype=np.int32)
    start = time.perf_counter() + 0.2
    conns = [BlockingClient(port) for _ in range(n_clients)]

    def worker(conn: BlockingClient) -> None:
        clock = time.perf_counter
        while True:
            i = next(counter)
            if i >= total:
                return
            due = start + i / rate
            wait = due - clock()
            if wait > 0:
                time.sleep(wait)
            sent = clock()
            conn.send_raw(requests[i % len(requests)])
            status, _ = conn.read()
            done = clock()
            from_schedule[i], from_send[i], statuses[i] = done - due, done - sent, status

    threads = [threading.Thread(target=worker, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    for c in conns:
        c.close()
    sched, sent = from_schedule * 1e3, from_send * 1e3
    return {"rate_rps": rate, "requests": total, "errors": int((statuses != 200).sum()),
            "achieved_rps": round(total / wall, 1),
            "p50_ms": round(float(np.percentile(sched, 50)), 3), "p99_ms": round(float(np.percentile(sched, 99)), 3),
            "p999_ms": round(float(np.percentile(sched, 99.9)), 3), "max_ms": round(float(sched.max()), 3),
            "over_2ms_pct": round(float((sched > 2.0).mean() * 100), 3),
            "p99_from_send_ms": round(float(np.percentile(sent, 99)), 3), "clients": n_clients}


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ----------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, default=None, help="bundle to serve (default: build one in --workdir)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "fecc-bench-serve")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per level (default 10)")
    ap.add_argument("--levels", default="1,8,64", help="closed-loop concurrencies (default 1,8,64)")
    ap.add_argument("--rate", type=float, default=1000.0, help="open-loop requests per second (default 1000)")
    ap.add_argument("--open-clients", type=int, default=8, help="connections of the open-loop client (default 8)")
    ap.add_argument("--max-requests", type=int, default=200_000, help="cap per closed-loop level")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    bundle = args.bundle or build_bundle(args.workdir)
    import fecc_runtime

    b = fecc_runtime.load(bundle)
    n_feature = len(b.feature_names)
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(2000, n_feature)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.02] = np.nan

    server = ServerProcess(bundle, args.workers)
    path = f"/v2/models/{server.name}/infer"
    requests = [request_bytes(path, json.dumps({"inputs": [{
        "name": "X", "shape": [1, n_feature], "datatype": "FP32",
        "data": [None if np.isnan(v) else float(v) for v in r]}]}).encode()) for r in rows]
    # the answers are right: a sample of rows against Bundle.predict
    probe = BlockingClient(server.port)
    for i in range(0, 2000, 97):
        status, payload = probe.request(b"POST", path, requests[i].split(b"\r\n\r\n", 1)[1])
        assert status == 200 and json.loads(payload)["outputs"][0]["data"][0] == b.predict(rows[i:i + 1])[0]
    probe.close()

    results = {"server": server.start_line, "cpus": os.cpu_count(), "closed": [], "open": None}
    print(server.start_line)
    print(f"uptime load before: {loadavg()}")
    asyncio.run(closed_loop(server.port, requests, 8, 1.0, 20_000))  # warm-up
    try:
        for clients in (int(c) for c in args.levels.split(",")):
            r = asyncio.run(closed_loop(server.port, requests, clients, args.seconds, args.max_requests))
            r["load_after"] = loadavg()
            results["closed"].append(r)
            print(f"closed loop {clients:3d} clients: {r['throughput_rps']:8.0f} req/s  p50 {r['p50_ms']:.3f} ms  "
                  f"p99 {r['p99_ms']:.3f} ms  ({r['requests']} requests, {r['errors']} errors; load {r['load_after']})")
        r = open_loop(server.port, requests, args.rate, args.seconds, args.open_clients)
        r["load_after"] = loadavg()
        results["open"] = r
        print(f"open loop {args.rate:.0f} req/s: achieved {r['achieved_rps']:.0f}  p50 {r['p50_ms']:.3f} ms  "
              f"p99 {r['p99_ms']:.3f} ms  p99.9 {r['p999_ms']:.3f} ms  max {r['max_ms']:.3f} ms  "
              f"{r['over_2ms_pct']}% over 2 ms  ({r['requests']} requests, {r['errors']} errors; load {r['load_after']})")
    finally:
        code = server.stop()
    print(f"server exit status {code}")
    print("\n| clients | throughput (req/s) | p50 (ms) | p99 (ms) |\n|---|---|---|---|")
    for r in results["closed"]:
        print(f"| {r['clients']} | {r['throughput_rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    o = results["open"]
    print(f"| open loop, {o['rate_rps']:.0f} req/s | {o['achieved_rps']:.0f} | {o['p50_ms']:.2f} | {o['p99_ms']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
