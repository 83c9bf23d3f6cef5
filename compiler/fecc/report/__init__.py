"""The audit report: what a bundle does, for the people who must sign it off.

Written into every bundle at compile time (``report.html``, self-contained with inline
CSS and SVG plots; ``report.md`` with the plots as ``report/*.svg``; the numbers behind
the plots in ``report/data.json``), all hashed into the manifest like every other file,
and re-rendered from the bundle alone by ``fecc audit BUNDLE [-o report.html]``
(:func:`audit`).

Determinism: the report is a function of the manifest, ``report/data.json`` and the
emitted expert module, and the plots are written with a fixed SVG salt and no date, so
the same compile gives the same report bytes and ``fecc audit`` reproduces the bundle's
own ``report.html`` byte for byte.  Wall times per stage would break that: they are
kept out of the bundle and printed in ``fecc compile``'s summary (``stage_seconds``).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .data import DATA_FILE, collect, dumps
from .render import PLOTS, Report, render

__all__ = ["audit", "AuditResult", "write_report", "collect", "render", "Report", "PLOTS", "DATA_FILE",
           "REPORT_HTML", "REPORT_MD"]

REPORT_HTML = "report.html"
REPORT_MD = "report.md"


@dataclass(frozen=True)
class AuditResult:
    """What :func:`audit` produced."""

    text: str            # the plain-text summary (``fecc audit`` prints it)
    report: Report       # html, markdown, svgs
    written: Path | None  # where the report was written, if anywhere
    verified: bool       # whether every file's sha256 matched the manifest


def write_report(bw, manifest: dict, data: dict) -> Report:
    """Render the report into a staged bundle (``bw``: :class:`fecc.bundle.BundleWriter`).

    ``manifest`` is the manifest as it will be published (without its file list); it is
    passed through canonical JSON first so the compile-time report and a later
    ``fecc audit`` render from identical values.
    """
    from ..bundle.writer import dumps_manifest

    canonical = json.loads(dumps_manifest(manifest))
    data = json.loads(dumps(data))
    bw.write_text(DATA_FILE, dumps(data))
    report = render(canonical, data, bw.root)
    for pid, svg in sorted(report.svgs.items()):
        bw.write_text(f"report/{pid}.svg", '<?xml version="1.0" encoding="utf-8" standalone="no"?>\n' + svg)
    bw.write_text(REPORT_HTML, report.html)
    bw.write_text(REPORT_MD, report.markdown)
    return report


def _read_bundle(path: Path, verify: bool) -> tuple[dict, bool]:
    from fecc_runtime import BundleError
    from fecc_runtime import bundle as rt

    try:
        manifest = rt._read_manifest(path)
        if verify:
            rt.verify_files(path, manifest)
    except BundleError as exc:
        raise UserError(str(exc)) from None
    return manifest, verify


def audit(bundle: str | Path, out: str | Path | None = None, *, verify: bool = True) -> AuditResult:
    """Render the audit report of ``bundle`` from the bundle alone (no data, no code is run).

    Parameters
    ----------
    bundle : bundle directory.
    out : write the report here: ``.md`` for Markdown, anything else gets the HTML page.
        Written atomically; the parent directory must exist.
    verify : check every file's sha256 against the manifest first (refuse a tampered bundle).

    Raises
    ------
    UserError
        The bundle is missing, not a bundle, tampered with, or ``out`` cannot be written.
    """
    path = Path(bundle)
    manifest, verified = _read_bundle(path, verify)
    data_path = path / DATA_FILE
    data: dict = {}
    if data_path.is_file():
        try:
            data = json.loads(data_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{data_path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise UserError(f"{data_path} is not a report data object")
    report = render(manifest, data, path)
    written = None
    if out is not None:
        written = _write_atomic(Path(out), report.markdown if str(out).lower().endswith(".md") else report.html)
    return AuditResult(text=report.text, report=report, written=written, verified=verified)


def _write_atomic(out: Path, text: str) -> Path:
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise UserError(f"report path is a directory: {out}")
    if not parent.is_dir():
        raise UserError(f"directory of the report does not exist: {parent}")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
