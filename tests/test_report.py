"""The audit report: written into every bundle (report.html, report.md, report/), hashed,
byte-for-byte reproducible, re-rendered by ``fecc audit`` from the bundle alone, and
rendered by a real browser (headless Chromium) without console errors and with every plot.

The browser test keeps its screenshot at ``tests/artifacts/report.png``.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import fecc_runtime
from fecc.cli import main
from fecc.driver import CompileOptions, compile_bundle
from fecc.report import PLOTS, audit, render
from fecc.report.render import expert_sources

from _models import make_table, train_xgb

ARTIFACTS = Path(__file__).parent / "artifacts"
SEARCH = {"n_regions": 2, "max_proposals": 4, "iterations": 2, "optuna_trials": 8}
REPORT_FILES = ("report.html", "report.md", "report/data.json")


def make_planted(n: int, seed: int, *, with_region: bool = True):
    """U(0,1) features; inside x3 > 0.7 & x5 < 0.2 the label follows a rule the legacy model never saw."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n * 2, 6))
    inside = (X[:, 3] > 0.7) & (X[:, 5] < 0.2)
    if not with_region:
        X = X[~inside]
    X = X[:n]
    inside = (X[:, 3] > 0.7) & (X[:, 5] < 0.2)
    logit = 3.0 * (X[:, 0] - 0.5) + 2.0 * (X[:, 1] - 0.5) - 1.5 * (X[:, 2] - 0.5)
    p = 1.0 / (1.0 + np.exp(-logit))
    p[inside] = np.where(X[inside, 1] < 0.5, 0.95, 0.05)
    y = (rng.uniform(size=n) < p).astype(np.float64)
    X[rng.uniform(size=n) < 0.05, 4] = np.nan
    return pd.DataFrame(X, columns=[f"x{i}" for i in range(6)]), y


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    import xgboost as xgb

    d = tmp_path_factory.mktemp("report")
    Xl, yl = make_planted(2000, 101, with_region=False)
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.1, "seed": 0, "nthread": 1}
    xgb.train(params, xgb.DMatrix(Xl.to_numpy(), label=yl, missing=np.nan), 60).save_model(d / "model.json")
    X, y = make_planted(2400, 1)
    X.assign(y=y).to_parquet(d / "data.parquet")
    return d


def _compile(d: Path, out: Path, **kw) -> dict:
    return compile_bundle(d / "model.json", d / "data.parquet", out,
                          CompileOptions(seed=7, llm="none", search_options=SEARCH, **kw))


@pytest.fixture(scope="module")
def nsr_bundle(planted):
    out = planted / "bundle"
    summary = _compile(planted, out)
    return out, summary


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _data(path: Path) -> dict:
    return json.loads((path / "report" / "data.json").read_text())


def expected_plots(path: Path) -> set[str]:
    """The plots the report must hold, from what the bundle's data and manifest say there is to draw."""
    m, data = _manifest(path), _data(path)
    gate = m.get("gate") or {}
    entries = list(m.get("experts") or []) + list(gate.get("candidates") or [])
    want = {"importances_legacy"}
    if data.get("curves", {}).get("roc"):
        want.add("roc")
    if data.get("curves", {}).get("reliability"):
        want.add("reliability")
    if any(r.get("n") for r in data.get("regions") or []):
        want.add("residual_by_region")
    if any(h.get("oof_score", h.get("valid_score")) is not None for e in entries for h in e.get("history") or []):
        want.add("chain_metric")
    if any(isinstance(f, dict) and f.get("gain") is not None for f in gate.get("folds") or []):
        want.add("fold_gains")
    if (data.get("importances") or {}).get("aggregator"):
        want.add("importances_aggregator")
    return want


# --------------------------------------------------------------------------- the bundle's own report

def test_report_files_are_hashed_bundle_files(nsr_bundle):
    out, summary = nsr_bundle
    m = _manifest(out)
    svgs = sorted(p.relative_to(out).as_posix() for p in (out / "report").glob("*.svg"))
    assert svgs, "no plots were written"
    for rel in (*REPORT_FILES, *svgs):
        assert rel in m["files"], rel
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == m["files"][rel]
    fecc_runtime.load(out)  # the runtime verifies them like every other file
    # stage wall times: in the compile summary, never in the bundle
    assert set(summary["stage_seconds"]) >= {"frontend", "lower_legacy", "search", "report", "verify_publish"}
    assert "stage_seconds" not in (out / "manifest.json").read_text()
    for rel in REPORT_FILES:
        assert "seconds" not in (out / rel).read_text().replace("stage_seconds", "")


def test_report_is_self_contained(nsr_bundle):
    html = (nsr_bundle[0] / "report.html").read_text()
    assert "<style>" in html
    assert not re.search(r"<(script|link|iframe)\b", html)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#|data:)""", html)   # no external file, no network
    assert "/tmp/" not in html and "staging" not in html                    # no paths of the compile machine


def test_report_says_what_the_bundle_does(nsr_bundle):
    out, _ = nsr_bundle
    m, data = _manifest(out), _data(out)
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    # the legacy model
    assert "model.json" in html and m["inputs"]["model"]["sha256"] in html
    assert f"<dd>{m['inputs']['model']['num_trees']}</dd>" in html
    for f in m["features"]:
        assert f"<code>{f['name']}</code>" in html
    # the gate: decision, reason and its paired test
    gate = m["gate"]
    assert gate["decision"] in html and _esc(gate["reason"]) in html
    if gate.get("test"):
        assert gate["test"]["name"] in html and "p_value" in html
    # every expert (shipped or refused), with its region, math form and parameters
    entries = [("shipped", e) for e in m["experts"]] + [("candidate", e) for e in gate.get("candidates") or []]
    assert entries, "the planted region should give at least one expert or candidate"
    sources = expert_sources(out, m)
    for status, e in entries:
        assert f'id="expert-{e["name"]}"' in html
        assert _esc(e["region"]["rule"]) in html and _esc(e["correction"]["math"]) in html
        for p in e["params"]:
            assert f"<code>{p}</code>" in html
        if status == "shipped":   # the emitted functions, verbatim
            assert f"def {e['region_function']}(x):" in sources[e["name"]]
            assert f"def {e['correction_function']}(x):" in sources[e["name"]]
            assert _esc(sources[e["name"]]) in html
        else:
            assert "Python form of the candidate" in html
    # regions: rule, coverage and residual before/after
    for r in data["regions"]:
        assert r["n"] is not None and 0 < r["coverage"] <= 1
        assert f"{r['residual_before']:.5g}" in html and f"{r['residual_after']:.5g}" in html
    # proposer, compile stages, and the markdown twin with its plot files
    assert m["search"]["proposer"]["name"] in html
    assert "stage_seconds" in html
    for pid in expected_plots(out):
        assert f"](report/{pid}.svg)" in md, pid
        assert (out / "report" / f"{pid}.svg").is_file()


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;").replace("'", "&#39;")


def test_same_inputs_same_report_bytes(planted, nsr_bundle, tmp_path):
    """A second compile, in a fresh process through the CLI, writes the same report bytes."""
    out, _ = nsr_bundle
    again = tmp_path / "again"
    cmd = [sys.executable, "-m", "fecc.cli", "compile", str(planted / "model.json"), str(planted / "data.parquet"),
           "-o", str(again), "--seed", "7", "--llm", "none", "-q"]
    cmd += [a for k, v in SEARCH.items() for a in ("--set", f"{k}={v}")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted(p.relative_to(out).as_posix() for p in (out / "report").glob("*")) + ["report.html", "report.md"]
    for rel in files:
        assert (again / rel).read_bytes() == (out / rel).read_bytes(), rel
    assert _manifest(again)["files"] == _manifest(out)["files"]


# --------------------------------------------------------------------------- fecc audit

def test_audit_rerenders_the_bundle_report_byte_for_byte(nsr_bundle, tmp_path):
    out, _ = nsr_bundle
    result = audit(out, tmp_path / "r.html")
    assert result.verified and result.written == tmp_path / "r.html"
    assert (tmp_path / "r.html").read_bytes() == (out / "report.html").read_bytes()
    audit(out, tmp_path / "r.md")
    assert (tmp_path / "r.md").read_bytes() == (out / "report.md").read_bytes()
    gate = _manifest(out)["gate"]
    assert f"gate:     {gate['decision']}" in result.text


def test_cli_audit(nsr_bundle, tmp_path):
    out, _ = nsr_bundle
    r = CliRunner().invoke(main, ["audit", str(out)])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("fecc audit: model.json") and "verdict:" in r.stdout and "plots:" in r.stdout
    r = CliRunner().invoke(main, ["audit", str(out), "-o", str(tmp_path / "a.html")])
    assert r.exit_code == 0 and f"report written to {tmp_path / 'a.html'}" in r.stdout
    for args, fragment in ((["audit", str(tmp_path / "nope")], "bundle not found"),
                           (["audit", str(out), "-o", str(tmp_path / "no" / "a.html")], "does not exist")):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and r.stderr.strip().splitlines()[-1].startswith("fecc: error: ")
        assert fragment in r.stderr and "Traceback" not in r.stderr


def test_audit_refuses_a_tampered_report(nsr_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(nsr_bundle[0], copy)
    (copy / "report.html").write_text("<p>all good, trust me</p>")
    r = CliRunner().invoke(main, ["audit", str(copy)])
    assert r.exit_code == 2 and "report.html was modified" in r.stderr
    assert audit(copy, verify=False).text.startswith("fecc audit")


# --------------------------------------------------------------------------- other bundles

def test_legacy_only_bundle_without_search(tmp_path):
    df = make_table(n=300, seed=4)
    train_xgb(df, tmp_path / "model.json")
    df.to_parquet(tmp_path / "data.parquet")
    compile_bundle(tmp_path / "model.json", tmp_path / "data.parquet", tmp_path / "b", CompileOptions(search="none"))
    html = (tmp_path / "b" / "report.html").read_text()
    assert "legacy model only" in html and "no search requested" in html
    assert 'id="plot-roc"' in html and 'id="plot-reliability"' in html
    assert "No proposer was used" in html
    data = _data(tmp_path / "b")
    assert data["rows"] == {"n": 300, "bundle": "legacy"}
    assert data["curves"]["roc"]["legacy"] == data["curves"]["roc"]["bundle"]
    assert len(data["curves"]["roc"]["fpr"]) == 101


def test_regression_and_unlabelled_bundles(tmp_path):
    df = make_table(n=300, seed=5, task="regression")
    train_xgb(df, tmp_path / "model.json", objective="reg:squarederror")
    df.to_parquet(tmp_path / "data.parquet")
    compile_bundle(tmp_path / "model.json", tmp_path / "data.parquet", tmp_path / "b", CompileOptions(search="none"))
    html = (tmp_path / "b" / "report.html").read_text()
    assert 'id="plot-reliability"' in html and 'id="plot-roc"' not in html
    assert "rmse" in html
    # compile-only mode without a target column: the report renders and says why there are no curves
    df.drop(columns=["y"]).to_parquet(tmp_path / "x.parquet")
    compile_bundle(tmp_path / "model.json", tmp_path / "x.parquet", tmp_path / "c", CompileOptions(search="none"))
    assert _data(tmp_path / "c")["rows"]["n"] == 0
    assert "no target column" in (tmp_path / "c" / "report.html").read_text()


def test_exp_link_metrics_are_on_predicted_values(tmp_path):
    """reg:gamma: residuals and RMSE are measured on exp(margin), what the model predicts."""
    import xgboost as xgb

    df = make_table(n=300, seed=6, task="regression", nan_frac=0.0)
    df["y"] = np.exp(df["y"] / 3.0)
    train_xgb(df, tmp_path / "model.json", objective="reg:gamma")
    df.to_parquet(tmp_path / "data.parquet")
    compile_bundle(tmp_path / "model.json", tmp_path / "data.parquet", tmp_path / "b", CompileOptions(search="none"))
    pred = xgb.Booster(model_file=str(tmp_path / "model.json")).predict(xgb.DMatrix(df.drop(columns=["y"])))
    rmse = float(np.sqrt(np.mean((df["y"].to_numpy() - pred) ** 2)))
    assert _data(tmp_path / "b")["metrics"]["legacy"]["rmse"] == pytest.approx(rmse, rel=1e-4)


def test_gain_importances_name_the_features():
    import xgboost as xgb

    from fecc.report.data import xgboost_importances

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = (X[:, 1] + 0.1 * rng.normal(size=400) > 0).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1}, xgb.DMatrix(X, label=y), 5)
    rows = xgboost_importances(bytes(booster.save_raw("json")), ["a", "b", "c"])
    assert rows[0]["feature"] == "b" and rows[0]["total_gain"] > 0 and rows[0]["splits"] >= 5
    assert {r["feature"] for r in rows} <= {"a", "b", "c"}


def test_render_reads_the_manifest_defensively():
    """Slots another stage adds later, or that an old bundle lacks, never break the report."""
    r = render({}, {}, None)
    assert "legacy model only" in r.html and r.svgs == {}
    gate = {"decision": "legacy-only", "reason": "r", "metric": "auc", "alpha": 0.05, "split": "out-of-fold",
            "test": {"name": "delong", "statistic": 1.2, "p_value": 0.11, "interval": [-0.01, 0.02]},
            "folds": [{"fold": 0, "gain": 0.01}, {"fold": 1, "gain": -0.02}, 0.005],
            "oof": {"legacy": {"auc": 0.7}, "ensemble": {"auc": 0.71}}, "brand_new_slot": {"x": 1},
            "candidates": [{"name": "expert_1", "region": {"rule": "a > 1", "postfix": "$a 1.0 gt"},
                            "correction": {"math": "0.5", "postfix": "0.5"}, "params": {"c_0": 0.5},
                            "history": [{"proposal": 0, "oof_score": 0.001, "status": "accepted"},
                                        {"proposal": 1, "valid_score": "x"}, "junk"]}]}
    r = render({"task": {"kind": "binary"}, "gate": gate, "experts": "not a list"}, {"rows": []}, None)
    assert "brand_new_slot" in r.html and "delong" in r.html and "p_value" in r.html
    assert {"fold_gains", "chain_metric"} <= set(r.svgs)
    assert "def f(x, params):" in r.html   # the refused candidate's Python form


# --------------------------------------------------------------------------- a real browser

@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium, installed here when missing (as root), else the test is skipped."""
    import os

    exe = shutil.which("chromium")
    if exe is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
        if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
            subprocess.run(install, env=env, capture_output=True, timeout=900)
        exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("headless Chromium is not installed and cannot be installed here "
                    "(needs root and apt-get: apt-get install chromium)")
    return exe


def _browser(exe: str, page: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [exe, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--enable-logging=stderr",
           "--v=0", *args, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def console_messages(stderr: str) -> list[str]:
    """Console output of the page (Chromium logs every console message and uncaught error as CONSOLE)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


class _Plots(HTMLParser):
    """figure.plot elements of a DOM and whether each holds an <svg>; every <img> src."""

    def __init__(self):
        super().__init__()
        self.figures: dict[str, int] = {}
        self.imgs: list[str] = []
        self._open: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "figure":
            self._open.append(a.get("data-plot"))
            if a.get("data-plot"):
                self.figures.setdefault(a["data-plot"], 0)
        elif tag == "svg" and self._open and self._open[-1]:
            self.figures[self._open[-1]] += 1
        elif tag == "img":
            self.imgs.append(a.get("src") or "")

    def handle_endtag(self, tag):
        if tag == "figure" and self._open:
            self._open.pop()


def test_console_scan_catches_page_errors(chromium, tmp_path):
    """The console check below would see a broken page: an error logged, an uncaught exception."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>console.error('fecc-canary'); nope();</script></body></html>")
    msgs = console_messages(_browser(chromium, page, "--dump-dom").stderr)
    assert any("fecc-canary" in m for m in msgs) and any("Uncaught ReferenceError" in m for m in msgs), msgs


def test_report_renders_in_headless_chromium(nsr_bundle, chromium):
    out, _ = nsr_bundle
    page = out / "report.html"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    taken = _browser(chromium, page, f"--screenshot={shot}", "--window-size=1280,8000")
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 50_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = _browser(chromium, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_messages(taken.stderr) == [] and console_messages(dom.stderr) == []
    parsed = _Plots()
    parsed.feed(dom.stdout)
    want = expected_plots(out)
    assert want <= set(PLOTS)
    assert set(parsed.figures) == want, (sorted(parsed.figures), sorted(want))
    assert all(n == 1 for n in parsed.figures.values()), parsed.figures     # each plot holds its <svg>
    assert all(src.startswith("data:") for src in parsed.imgs)
    assert 'id="verdict"' in dom.stdout and "Safety gate" in dom.stdout
    print(f"\nreport screenshot: {shot}")
