"""The one small compile whose real LLM answers are recorded in tests/data/replay/compile/small.jsonl.

Shared by the recorder (tests/data/replay/record_compile.py) and the replay tests
(tests/test_llm_compile_replay.py): the prompts depend on the data, so both must build
exactly these inputs and options.
"""
from __future__ import annotations

from pathlib import Path

from _models import make_table, train_xgb

RECORDING = Path(__file__).parent / "data" / "replay" / "compile" / "small.jsonl"
#: search options of the recorded compile: one region, two proposals, a short Optuna loop, no
#: whole-space chain, a gate of 2 outer folds (the LLM answers in each: 3 searches)
ARGS = ("--regions", "1", "--set", "max_proposals=2", "--set", "optuna_trials=8", "--set", "global_expert=false",
        "--set", "gate_folds=2", "--seed", "0")


def inputs(d: Path) -> tuple[Path, Path]:
    """Legacy model trained on the first half of a 800-row table; compile data = the whole table."""
    df = make_table(n=800, seed=3)
    model = train_xgb(df.iloc[:400], d / "model.json")
    df.to_parquet(d / "data.parquet")
    return model, d / "data.parquet"
