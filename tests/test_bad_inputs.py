"""Bad inputs tried as a new user would (issue 19.3): each is one ``fecc: error:`` line,
exit status 2, no traceback, and nothing written — no bundle, no staging directory,
no scores file, no temporary file."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from fecc.cli import main
from _models import make_table, train_xgb


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    df = make_table(n=300, seed=3)
    train_xgb(df, d / "model.json")
    df.to_parquet(d / "data.parquet")
    df.to_csv(d / "data.csv", index=False)
    (d / "afile").write_text("a regular file\n")
    # the target problems
    df.assign(y=0).to_csv(d / "const.csv", index=False)
    rare = np.zeros(len(df), dtype=int)
    rare[:3] = 1
    df.assign(y=rare).to_csv(d / "rare.csv", index=False)
    df.assign(y=np.where(np.arange(len(df)) % 7 == 0, np.nan, df["y"])).to_csv(d / "nan_target.csv", index=False)
    df.assign(y=np.where(df["y"] == 1, "yes", "no")).to_csv(d / "str_target.csv", index=False)
    reg = make_table(n=300, seed=4, task="regression")
    train_xgb(reg, d / "reg.json", objective="reg:squarederror")
    reg.assign(y=2.5).to_csv(d / "reg_const.csv", index=False)
    # duplicate column names: pandas would silently call the CSV's second 'x1' "x1.1"
    cols = list(df.columns)
    dup = df[cols[:2] + cols[1:]].copy()
    dup.columns = cols[:2] + ["x1"] + cols[2:]
    dup.to_csv(d / "dup.csv", index=False)
    arrays = [pa.array(df[c]) for c in cols] + [pa.array(df["x0"])]
    pq.write_table(pa.Table.from_arrays(arrays, names=cols + ["x0"]), d / "dup.parquet")
    # a CSV that really has columns 'x1' and 'x1.1' is fine
    df.assign(**{"x1.1": 1.0}).to_csv(d / "dotted.csv", index=False)
    return d


@pytest.fixture(scope="module")
def bundle(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "b"
    code, _, err = run("compile", files / "model.json", files / "data.parquet", "-o", out, "--search", "none", "-q")
    assert code == 0, err
    return out


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _listing(*dirs):
    return {d: sorted(os.listdir(d)) for d in dirs}


def _refused(args, fragment, *watch):
    """Run; expect exit 2 with one 'fecc: error:' line holding ``fragment``, and no new file in ``watch``."""
    before = _listing(*watch)
    code, out, err = run(*args)
    assert code == 2, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("[fecc]")]
    assert len(lines) == 1, err
    assert lines[0].startswith("fecc: error: ") and fragment in lines[0], lines[0]
    assert _listing(*watch) == before, "something was written"
    return lines[0]


# --------------------------------------------------------------------- output paths
def test_compile_output_under_a_regular_file(files, tmp_path):
    _refused(["compile", files / "model.json", files / "data.csv", "-o", files / "afile" / "x", "--search", "none"],
             "afile is a file, not a directory", files)
    _refused(["compile", files / "model.json", files / "data.csv", "-o", files / "afile" / "sub" / "x",
              "--search", "none"], "afile is a file, not a directory", files)


def test_compile_output_in_a_missing_directory(files, tmp_path):
    line = _refused(["compile", files / "model.json", files / "data.csv", "-o", tmp_path / "missing" / "x",
                     "--search", "none"], "does not exist", tmp_path)
    assert "missing" in line
    assert not (tmp_path / "missing").exists()


def test_compile_output_checked_before_the_search(files, tmp_path):
    """The path is refused up front: no search, no .work directory beside it."""
    _refused(["compile", files / "model.json", files / "data.csv", "-o", files / "afile" / "x", "--llm", "none"],
             "is a file, not a directory", files)


@pytest.mark.parametrize("out, fragment", [
    (lambda d, t: t / "missing" / "s.parquet", "does not exist"),
    (lambda d, t: d / "afile" / "s.parquet", "afile is a file, not a directory"),
    (lambda d, t: t / "s.json", "must end in .parquet or .csv"),
    (lambda d, t: t, "must end in .parquet or .csv"),
])
def test_score_output_paths(files, bundle, tmp_path, out, fragment):
    _refused(["score", bundle, files / "data.parquet", "-o", out(files, tmp_path)], fragment, files, tmp_path)


def test_score_output_that_is_a_directory(files, bundle, tmp_path):
    (tmp_path / "s.parquet").mkdir()
    _refused(["score", bundle, files / "data.parquet", "-o", tmp_path / "s.parquet"], "it is a directory", tmp_path)


def test_score_output_over_its_own_input(files, bundle, tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes((files / "data.csv").read_bytes())
    _refused(["score", bundle, src, "-o", src], "is the input data file", tmp_path)
    assert src.read_bytes() == (files / "data.csv").read_bytes()


# --------------------------------------------------------------------- targets
def test_constant_target_is_refused_by_the_search(files, tmp_path):
    line = _refused(["compile", files / "model.json", files / "const.csv", "-o", tmp_path / "b", "--llm", "none"],
                    "target column 'y' has one class only (all 300 rows are 0)", tmp_path, files)
    assert "--search none" in line
    line = _refused(["compile", files / "reg.json", files / "reg_const.csv", "-o", tmp_path / "b", "--llm", "none"],
                    "target column 'y' is constant (all 300 rows are 2.5)", tmp_path, files)


def test_constant_target_compiles_alone_with_a_note(files, tmp_path):
    code, out, err = run("compile", files / "model.json", files / "const.csv", "-o", tmp_path / "b", "--search", "none")
    assert code == 0, err
    assert "note: target column 'y' has one class only" in err and "not needed to compile the legacy model alone" in err
    assert (tmp_path / "b" / "manifest.json").is_file()


def test_class_with_fewer_rows_than_folds(files, tmp_path):
    _refused(["compile", files / "model.json", files / "rare.csv", "-o", tmp_path / "b", "--llm", "none"],
             "target column 'y' has only 3 row(s) of class 1; the search needs at least 5 of each class", tmp_path)


@pytest.mark.parametrize("name, note", [
    ("nan_target.csv", "target column 'y' has 43 missing value(s)"),
    ("str_target.csv", "target column 'y' is not numeric"),
])
def test_unusable_target_gets_a_note_when_compiling_alone(files, tmp_path, name, note):
    code, _, err = run("compile", files / "model.json", files / name, "-o", tmp_path / "b", "--search", "none",
                       "--target", "y")
    assert code == 0, err
    assert f"note: {note}" in err and "the search would stop here" in err
    # and the search itself refuses it
    _refused(["compile", files / "model.json", files / name, "-o", tmp_path / "c", "--llm", "none"], note, tmp_path)


# --------------------------------------------------------------------- duplicate columns
@pytest.mark.parametrize("name, col", [("dup.csv", "'x1' (2 columns)"), ("dup.parquet", "'x0' (2 columns)")])
def test_duplicate_column_names(files, bundle, tmp_path, name, col):
    _refused(["compile", files / "model.json", files / name, "-o", tmp_path / "b", "--search", "none"],
             f"duplicate column name(s) in {files / name}: {col}", tmp_path)
    _refused(["score", bundle, files / name, "-o", tmp_path / "s.parquet"], f"duplicate column name(s)", tmp_path)


def test_dotted_names_that_are_really_in_the_file_are_fine(files, bundle, tmp_path):
    code, _, err = run("compile", files / "model.json", files / "dotted.csv", "-o", tmp_path / "b", "--search", "none")
    assert code == 0, err
    assert "'x1.1'" in err  # an extra column, noted


# --------------------------------------------------------------------- category codes vs values
@pytest.fixture(scope="module")
def lgb_files(tmp_path_factory):
    import lightgbm as lgb

    d = tmp_path_factory.mktemp("lgbcat")
    rng = np.random.default_rng(0)
    n = 600
    names = np.array(["black", "blue", "green", "red"])
    code = rng.integers(0, 4, size=n)
    num = rng.normal(size=n)
    df = pd.DataFrame({"num": num, "color": pd.Categorical(names[code], categories=list(names))})
    y = ((code == 1) ^ (num > 0)).astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7, "min_data_in_leaf": 5,
                         "num_threads": 1, "seed": 0},
                        lgb.Dataset(df, label=y, categorical_feature=["color"]), num_boost_round=10)
    booster.save_model(str(d / "lgb.txt"))
    df.assign(y=y).to_parquet(d / "values.parquet")
    codes = df.assign(y=y, color=code)
    codes.to_parquet(d / "codes.parquet")
    codes.to_csv(d / "codes.csv", index=False)
    # mostly known values, a few the model never saw
    few = df.assign(y=y, color=np.where(np.arange(n) < 20, "purple", names[code]))
    few.to_parquet(d / "few_unseen.parquet")
    # mostly unknown strings: not codes either
    odd = df.assign(y=y, color=np.where(np.arange(n) < 500, "purple", names[code]))
    odd.to_parquet(d / "mostly_unseen.parquet")
    ref = booster.predict(df)
    code, _, err = run("compile", d / "lgb.txt", d / "values.parquet", "-o", d / "bundle", "--search", "none", "-q")
    assert code == 0, err
    return d, ref


CODES_MSG = "categorical feature 'color': only 0 of 600 values match one of the model's 4 stored categories"


@pytest.mark.parametrize("name", ["codes.parquet", "codes.csv"])
def test_category_codes_where_values_are_expected(lgb_files, tmp_path, name):
    d, _ = lgb_files
    line = _refused(["compile", d / "lgb.txt", d / name, "-o", tmp_path / "b", "--search", "none"], CODES_MSG, tmp_path)
    assert "look like category codes" in line and "--categories codes" in line
    line = _refused(["score", d / "bundle", d / name, "-o", tmp_path / "s.parquet"], CODES_MSG, tmp_path)
    assert "--categories codes" in line


@pytest.mark.parametrize("name", ["codes.parquet", "codes.csv"])
def test_categories_codes_option_reads_codes(lgb_files, tmp_path, name):
    d, ref = lgb_files
    code, _, err = run("compile", d / "lgb.txt", d / name, "-o", tmp_path / "b", "--search", "none",
                       "--categories", "codes", "-q")
    assert code == 0, err
    for bundle in (tmp_path / "b", d / "bundle"):  # compiled from codes or from values: the same scorer
        out = tmp_path / f"s_{bundle.name}.parquet"
        code, _, err = run("score", bundle, d / name, "-o", out, "--categories", "codes")
        assert code == 0, err
        assert np.max(np.abs(pd.read_parquet(out)["prediction"].to_numpy() - ref)) <= 1e-12


def test_values_scored_as_values_match_lightgbm(lgb_files, tmp_path):
    d, ref = lgb_files
    code, _, err = run("score", d / "bundle", d / "values.parquet", "-o", tmp_path / "s.parquet")
    assert code == 0, err
    assert np.max(np.abs(pd.read_parquet(tmp_path / "s.parquet")["prediction"].to_numpy() - ref)) <= 1e-12


def test_categories_codes_given_values(lgb_files, tmp_path):
    d, _ = lgb_files
    for cmd in (["compile", d / "lgb.txt", d / "values.parquet", "-o", tmp_path / "b", "--search", "none"],
                ["score", d / "bundle", d / "values.parquet", "-o", tmp_path / "s.parquet"]):
        _refused(cmd + ["--categories", "codes"],
                 "categorical feature 'color' holds category values, but --categories codes reads integer", tmp_path)


def test_a_few_unseen_categories_are_a_note(lgb_files, tmp_path):
    d, _ = lgb_files
    code, _, err = run("score", d / "bundle", d / "few_unseen.parquet", "-o", tmp_path / "s.parquet")
    assert code == 0, err
    assert "note: categorical feature 'color': 20 value(s) not seen in training score as missing" in err


def test_mostly_unseen_strings_are_refused(lgb_files, tmp_path):
    d, _ = lgb_files
    line = _refused(["score", d / "bundle", d / "mostly_unseen.parquet", "-o", tmp_path / "s.parquet"],
                    "only 100 of 600 values match", tmp_path)
    assert "'purple'" in line
    _refused(["compile", d / "lgb.txt", d / "mostly_unseen.parquet", "-o", tmp_path / "b", "--search", "none"],
             "only 100 of 600 values match", tmp_path)


# --------------------------------------------------------------------- the old clean errors stay
@pytest.mark.parametrize("args, fragment", [
    (lambda d, t, b: ["compile", d / "nope.json", d / "data.parquet", "-o", t / "o"], "not found"),
    (lambda d, t, b: ["compile", d / "model.json", d / "data.parquet", "-o", t / "o", "--target", "zz"],
     "'zz' is not in the table"),
    (lambda d, t, b: ["score", b, d / "nope.parquet", "-o", t / "s.parquet"], "data file not found"),
    (lambda d, t, b: ["score", b, d / "data.parquet", "-o", t / "s.parquet", "--keep", "nope"],
     "--keep column(s) not in the table: nope"),
    (lambda d, t, b: ["score", b, d / "data.parquet", "-o", t / "s.parquet", "--trusted-key", d / "afile"],
     "is not a PEM public key"),
])
def test_existing_errors_stay_one_line(files, bundle, tmp_path, args, fragment):
    _refused(args(files, tmp_path, bundle), fragment, tmp_path)


def test_missing_feature_column_in_scoring(files, bundle, tmp_path):
    pd.read_parquet(files / "data.parquet").drop(columns=["x2"]).to_parquet(tmp_path / "in.parquet")
    _refused(["score", bundle, tmp_path / "in.parquet", "-o", tmp_path / "s.parquet"],
             "input lacks 1 feature column(s): 'x2'", tmp_path)
