"""The command line: happy path, and every user mistake as one stderr line with exit status 2."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from fecc.cli import main
from _models import make_table, train_xgb


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    df = make_table(n=300, seed=1)
    train_xgb(df, d / "model.json")
    df.to_parquet(d / "data.parquet")
    df.to_csv(d / "data.csv", index=False)
    return d


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_compile_score_inspect(files, tmp_path):
    code, out, err = run("compile", files / "model.json", files / "data.csv", "-o", tmp_path / "b", "--search", "none")
    assert code == 0, err
    assert "[fecc] bundle written" in err and '"gate": "legacy-only"' in out
    df = pd.read_parquet(files / "data.parquet").assign(id=range(300))
    df.to_parquet(tmp_path / "new.parquet")
    code, _, err = run("score", tmp_path / "b", tmp_path / "new.parquet", "-o", tmp_path / "s.parquet", "--keep", "id")
    assert code == 0, err
    scores = pd.read_parquet(tmp_path / "s.parquet")
    assert list(scores.columns) == ["id", "prediction"] and len(scores) == 300
    assert scores["prediction"].between(0, 1).all()
    code, out, _ = run("inspect", tmp_path / "b")
    assert code == 0 and "legacy only" in out and "verified" in out


@pytest.mark.parametrize("make_args, fragment", [
    (lambda d, t: ["compile", d / "nope.json", d / "data.parquet", "-o", t / "o"], "not found"),
    (lambda d, t: ["compile", d / "model.json", d / "nope.parquet", "-o", t / "o"], "not found"),
    (lambda d, t: ["compile", d / "data.csv", d / "data.parquet", "-o", t / "o"], ""),
    (lambda d, t: ["compile", d / "model.json", d / "data.parquet", "-o", t / "o", "--target", "zz"], "'zz' is not in the table"),
    (lambda d, t: ["compile", d / "model.json", d / "data.parquet", "-o", t / "o", "--set", "bogus"], "NAME=VALUE"),
    (lambda d, t: ["score", t / "nobundle", d / "data.parquet", "-o", t / "s.parquet"], "bundle not found"),
])
def test_user_mistakes_exit_2_with_one_line(files, tmp_path, make_args, fragment):
    code, out, err = run(*make_args(files, tmp_path))
    assert code == 2, (out, err)
    line = err.strip().splitlines()[-1]
    assert line.startswith("fecc: error: ") and fragment in line
    assert "Traceback" not in err


def test_real_process_exit_code_and_stderr(files, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fecc.cli", "compile", str(files / "missing.json"),
                           str(files / "data.parquet"), "-o", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"fecc: error: model file not found: {files / 'missing.json'}"] or \
        proc.stderr.strip().startswith("fecc: error:")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--set", "bogus_option=3"], "unknown search option(s): bogus_option"),
    (["--search", "none", "--set", "n_folds=abc"], "search option n_folds must be a number, got 'abc'"),
    (["--llm", "nosuch:thing"], "unknown --llm spec 'nosuch:thing'"),
    (["--record", "r.jsonl"], "--record needs an LLM backend"),
])
def test_bad_options_are_refused_before_any_work(files, tmp_path, monkeypatch, args, fragment):
    """Options are one validated object: a bad one is one line before the data is read or gcc runs."""
    import fecc.driver
    import fecc.lower

    def never(*a, **k):
        raise AssertionError("an expensive step ran before the options were checked")

    monkeypatch.setattr(fecc.lower, "lower_trees", never)
    monkeypatch.setattr(fecc.driver, "read_inputs", never)
    code, out, err = run("compile", files / "model.json", files / "data.parquet", "-o", tmp_path / "o", *args)
    assert code == 2, (out, err)
    line = err.strip().splitlines()[-1]
    assert line.startswith("fecc: error: ") and fragment in line, line
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_library_entry_points_are_the_clis():
    """``fecc.compile``/``score``/``inspect``/``audit`` are what the commands call; ``import fecc`` stays light."""
    code = ("import sys, fecc; assert 'fecc.driver' not in sys.modules and 'xgboost' not in sys.modules; "
            "from fecc.driver import compile_bundle; from fecc.scoring import score; "
            "from fecc.inspection import inspect; from fecc.report import audit; "
            "assert (fecc.compile, fecc.score, fecc.inspect, fecc.audit) == (compile_bundle, score, inspect, audit)")
    subprocess.run([sys.executable, "-c", code], check=True)
