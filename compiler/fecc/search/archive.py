"""The experience archive: every candidate the chains evaluate, in one SQLite file.

Seeds 002/003 learn rankers from such an archive; fecc writes it from day one so that
nothing evaluated is ever lost.  One row per candidate (accepted, rejected, invalid or
failed), with its expression as canonical postfix, its parameters, its region, its
metrics, how long it took, which proposer wrote it and the proposer's raw answer.
Timing columns make the file differ between runs; the bundle never includes it.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS candidates (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run           TEXT NOT NULL,      -- run id (seed + start time)
    chain         TEXT NOT NULL,      -- region_1, region_2, ...
    region_rule   TEXT NOT NULL,
    region_postfix TEXT NOT NULL,
    iteration     INTEGER NOT NULL,   -- accepted changes so far in this chain
    proposal      INTEGER NOT NULL,   -- proposals so far in this chain
    proposer      TEXT NOT NULL,
    intent        TEXT,
    expr_postfix  TEXT,               -- candidate correction, free parameters as @names
    params_json   TEXT,               -- tuned values of every parameter (incl. frozen ones)
    space_json    TEXT,               -- search ranges the proposer gave
    train_loss    REAL,
    valid_score   REAL,               -- AUC (binary) or -RMSE (regression) on the valid split
    previous_score REAL,
    tau           REAL,
    status        TEXT NOT NULL,      -- accepted | rejected | invalid | no-change | proposer-error | failed
    message       TEXT,
    seconds       REAL,
    raw           TEXT,
    usage_json    TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    run           TEXT PRIMARY KEY,
    options_json  TEXT NOT NULL,
    started       REAL NOT NULL
);
"""

COLUMNS = ("run", "chain", "region_rule", "region_postfix", "iteration", "proposal", "proposer",
           "intent", "expr_postfix", "params_json", "space_json", "train_loss", "valid_score",
           "previous_score", "tau", "status", "message", "seconds", "raw", "usage_json")


class Archive:
    """Append-only candidate log.  Use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path, *, run: str, options: dict[str, Any], started: float):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.run = run
        self._db = sqlite3.connect(str(self.path))
        self._db.executescript(SCHEMA)
        self._db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?)",
                         (run, json.dumps(options, sort_keys=True), started))
        self._db.commit()

    def record(self, **row: Any) -> None:
        """Write one candidate; keys are :data:`COLUMNS` (``run`` is filled in)."""
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise KeyError(f"unknown archive column(s): {sorted(unknown)}")
        row["run"] = self.run
        for key in ("params_json", "space_json", "usage_json"):
            if key in row and not isinstance(row[key], (str, type(None))):
                row[key] = json.dumps(row[key], sort_keys=True, default=str)
        names = [c for c in COLUMNS if c in row]
        self._db.execute(f"INSERT INTO candidates ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                         [row[c] for c in names])
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_candidates(path: Path) -> list[dict[str, Any]]:
    """Every candidate row of an archive, oldest first (for reports and tests)."""
    db = sqlite3.connect(str(path))
    try:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM candidates ORDER BY id")]
    finally:
        db.close()
