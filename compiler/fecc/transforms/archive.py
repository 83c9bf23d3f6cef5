"""The experience archive of the teaming search (seeds 002/003): every evaluated program.

One SQLite file (``transforms.sqlite`` in the stage's work directory), append-only, with
three tables.  The format is part of fecc's interface: later runs warm-start from it
(:func:`load_examples`) and rankers can be trained on it.

``runs``
    ``run`` TEXT PRIMARY KEY, ``options_json`` TEXT, ``started`` REAL (unix time),
    ``task`` TEXT, ``metric`` TEXT (``auc`` | ``rmse``), ``legacy`` REAL (the legacy metric
    on the OOF rows), ``features_json`` TEXT (the vocabulary's features).

``candidates`` — one row per program that was scored for real, or refused before
    ``id`` INTEGER PRIMARY KEY, ``run`` TEXT, ``round`` INTEGER (0 = golden examples),
    ``source`` TEXT (``teacher:grammar``, ``teacher:<proposer>``, ``ml``, ``student``,
    ``teaming``), ``postfix`` TEXT (canonical IR postfix of the simplified program),
    ``decoded`` TEXT (the program as decoded, before simplification), ``gain`` REAL
    (OOF metric − legacy, higher is better; NULL when not evaluated), ``metric`` REAL,
    ``z`` REAL (paired z of the OOF loss reduction), ``fold_gains_json`` TEXT,
    ``status`` TEXT (``evaluated`` | ``degenerate`` | ``invalid`` | ``ranked-out``),
    ``message`` TEXT, ``pred_ml`` REAL and ``pred_student`` REAL (the rankers' predictions
    made *before* the real evaluation, NULL when absent), ``seconds`` REAL.

``adapters`` — each LoRA student adapter saved by the run
    ``run`` TEXT, ``path`` TEXT (directory of ``adapter_model.safetensors`` and
    ``adapter_config.json``), ``sha256`` TEXT (of the safetensors file), ``base_model``
    TEXT (key or GGUF file name), ``base_sha256`` TEXT, ``examples`` INTEGER, ``steps``
    INTEGER, ``seconds`` REAL.

Timing columns make the file differ between runs; a bundle never includes it.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run TEXT PRIMARY KEY, options_json TEXT NOT NULL, started REAL NOT NULL,
    task TEXT, metric TEXT, legacy REAL, features_json TEXT
);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, round INTEGER NOT NULL,
    source TEXT NOT NULL, postfix TEXT, decoded TEXT, gain REAL, metric REAL, z REAL,
    fold_gains_json TEXT, status TEXT NOT NULL, message TEXT, pred_ml REAL, pred_student REAL,
    seconds REAL
);
CREATE INDEX IF NOT EXISTS candidates_postfix ON candidates (postfix);
CREATE TABLE IF NOT EXISTS adapters (
    run TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, base_model TEXT, base_sha256 TEXT,
    examples INTEGER, steps INTEGER, seconds REAL
);
"""

CANDIDATE_COLUMNS = ("run", "round", "source", "postfix", "decoded", "gain", "metric", "z", "fold_gains_json",
                     "status", "message", "pred_ml", "pred_student", "seconds")
ADAPTER_COLUMNS = ("run", "path", "sha256", "base_model", "base_sha256", "examples", "steps", "seconds")
STATUSES = ("evaluated", "degenerate", "invalid", "ranked-out")


class TransformArchive:
    """Append-only log of one run's candidates.  A context manager."""

    def __init__(self, path: Path, *, run: str, options: dict[str, Any], started: float, task: str = "",
                 metric: str = "", legacy: float | None = None, features: tuple[str, ...] = ()):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.run = run
        self._db = sqlite3.connect(str(self.path))
        self._db.executescript(SCHEMA)
        self._db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (run, json.dumps(options, sort_keys=True, default=str), started, task, metric, legacy,
                          json.dumps(list(features))))
        self._db.commit()
        self.rows = 0

    def record(self, **row: Any) -> None:
        """One candidate; keys are :data:`CANDIDATE_COLUMNS` (``run`` is filled in)."""
        unknown = set(row) - set(CANDIDATE_COLUMNS)
        if unknown:
            raise KeyError(f"unknown archive column(s): {sorted(unknown)}")
        if row.get("status") not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {row.get('status')!r}")
        row["run"] = self.run
        if "fold_gains_json" in row and not isinstance(row["fold_gains_json"], (str, type(None))):
            row["fold_gains_json"] = json.dumps([round(float(g), 8) for g in row["fold_gains_json"]])
        names = [c for c in CANDIDATE_COLUMNS if c in row]
        self._db.execute(f"INSERT INTO candidates ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                         [row[c] for c in names])
        self.rows += 1

    def record_adapter(self, **row: Any) -> None:
        """One saved LoRA adapter; keys are :data:`ADAPTER_COLUMNS`."""
        unknown = set(row) - set(ADAPTER_COLUMNS)
        if unknown:
            raise KeyError(f"unknown adapter column(s): {sorted(unknown)}")
        row["run"] = self.run
        names = [c for c in ADAPTER_COLUMNS if c in row]
        self._db.execute(f"INSERT INTO adapters ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                         [row[c] for c in names])
        self._db.commit()

    def commit(self) -> None:
        self._db.commit()

    def close(self) -> None:
        self._db.commit()
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _read(path: Path, sql: str, args=()) -> list[dict[str, Any]]:
    db = sqlite3.connect(str(path))
    try:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(sql, args)]
    finally:
        db.close()


def read_candidates(path: Path, run: str | None = None) -> list[dict[str, Any]]:
    """Candidate rows, oldest first (of one run when ``run`` is given)."""
    if run is None:
        return _read(path, "SELECT * FROM candidates ORDER BY id")
    return _read(path, "SELECT * FROM candidates WHERE run = ? ORDER BY id", (run,))


def read_adapters(path: Path) -> list[dict[str, Any]]:
    return _read(path, "SELECT * FROM adapters ORDER BY rowid")


def read_runs(path: Path) -> list[dict[str, Any]]:
    return _read(path, "SELECT * FROM runs ORDER BY started")


def load_examples(path: Path, *, features: tuple[str, ...] | None = None, task: str | None = None) -> dict[str, float]:
    """Evaluated programs of earlier runs as ``{postfix: gain}`` (best gain per program).

    Only runs on the same task and, when ``features`` is given, only programs whose
    features all exist now.  Gains are comparable only across runs on the same rows:
    the caller decides whether to trust them (the search re-scores what it reuses).
    """
    path = Path(path)
    if not path.is_file():
        return {}
    sql = ("SELECT c.postfix, MAX(c.gain) AS gain FROM candidates c JOIN runs r ON r.run = c.run "
           "WHERE c.status = 'evaluated' AND c.postfix IS NOT NULL")
    args: tuple = ()
    if task:
        sql += " AND r.task = ?"
        args = (task,)
    sql += " GROUP BY c.postfix"
    out = {}
    allowed = set(features) if features is not None else None
    for row in _read(path, sql, args):
        if allowed is not None:
            from ..ir import features_of, parse_postfix

            try:
                if not set(features_of(parse_postfix(row["postfix"]))) <= allowed:
                    continue
            except ValueError:
                continue
        out[row["postfix"]] = float(row["gain"])
    return out
