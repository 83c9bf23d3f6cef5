"""The experience archive of the teaming search (SQLite, documented format)."""
from __future__ import annotations

import sqlite3

import pytest

from fecc.transforms.archive import (CANDIDATE_COLUMNS, TransformArchive, load_examples, read_adapters,
                                     read_candidates, read_runs)


def test_records_candidates_and_adapters(tmp_path):
    path = tmp_path / "transforms.sqlite"
    with TransformArchive(path, run="r1", options={"seed": 0}, started=1.0, task="binary", metric="auc",
                          legacy=0.7, features=("a", "b")) as ar:
        ar.record(round=0, source="teacher:grammar", postfix="$a $b mul", decoded="$a $b mul", gain=0.01,
                  metric=0.71, z=3.0, fold_gains_json=[0.01, 0.02], status="evaluated", seconds=0.01)
        ar.record(round=1, source="ml", postfix="$a", status="ranked-out", pred_ml=0.001)
        ar.record(round=1, source="ml", decoded="junk", status="invalid", message="does not parse")
        ar.record_adapter(path="/x", sha256="ab" * 32, base_model="smollm2", examples=10, steps=5, seconds=1.0)
        with pytest.raises(KeyError):
            ar.record(round=0, source="x", status="evaluated", nope=1)
        with pytest.raises(ValueError):
            ar.record(round=0, source="x", status="maybe")
    rows = read_candidates(path)
    assert [r["status"] for r in rows] == ["evaluated", "ranked-out", "invalid"]
    assert rows[0]["fold_gains_json"] == "[0.01, 0.02]" and rows[1]["gain"] is None
    assert set(CANDIDATE_COLUMNS) <= set(rows[0])
    assert read_adapters(path)[0]["sha256"] == "ab" * 32
    run = read_runs(path)[0]
    assert run["task"] == "binary" and run["legacy"] == 0.7 and run["features_json"] == '["a", "b"]'


def test_load_examples_keeps_the_best_gain_of_usable_programs(tmp_path):
    path = tmp_path / "a.sqlite"
    with TransformArchive(path, run="r1", options={}, started=1.0, task="binary") as ar:
        ar.record(round=0, source="s", postfix="$a", gain=0.01, status="evaluated")
        ar.record(round=1, source="s", postfix="$a", gain=0.03, status="evaluated")
        ar.record(round=1, source="s", postfix="$c log", gain=0.05, status="evaluated")
        ar.record(round=1, source="s", postfix="$b", status="ranked-out")
    with TransformArchive(path, run="r2", options={}, started=2.0, task="regression") as ar:
        ar.record(round=0, source="s", postfix="$b", gain=0.5, status="evaluated")
    assert load_examples(path, task="binary") == {"$a": 0.03, "$c log": 0.05}
    assert load_examples(path, task="binary", features=("a", "b")) == {"$a": 0.03}
    assert load_examples(tmp_path / "missing.sqlite") == {}
    # the file is plain SQLite: any tool reads it
    db = sqlite3.connect(str(path))
    assert db.execute("SELECT COUNT(*) FROM candidates").fetchone()[0] == 5
    db.close()
