"""Reading the user's table (parquet or CSV) and lining it up with the legacy model.

Every mistake a user can make with a table is caught here and reported as one
:class:`~fecc.errors.UserError` line: missing file, empty table, missing feature
columns, non-numeric columns, a missing or unusable target.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from fecc_runtime.bundle import category_code, category_lookup
from fecc_runtime.errors import BundleError

from ..errors import UserError

#: Column names tried, in order, when no ``--target`` is given.
TARGET_CANDIDATES = ("target", "label", "y", "class", "outcome")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a parquet or CSV file (``.csv``, ``.csv.gz``, ``.tsv``; parquet by magic bytes)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"data file not found: {path}")
    if path.is_dir():
        raise UserError(f"data path is a directory, expected a parquet or CSV file: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"data file is empty: {path}")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    name = path.name.lower()
    try:
        if magic == b"PAR1" or name.endswith((".parquet", ".pq")):
            df = pd.read_parquet(path)
        elif name.endswith((".tsv", ".tsv.gz")):
            df = pd.read_csv(path, sep="\t")
        else:
            df = pd.read_csv(path, sep=None, engine="python") if name.endswith(".txt") else pd.read_csv(path)
    except UserError:
        raise
    except Exception as exc:  # pyarrow/pandas raise many types; the message is what matters
        kind = "parquet" if magic == b"PAR1" or name.endswith((".parquet", ".pq")) else "CSV"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read {path} as {kind}: {first}") from None
    if df.shape[0] == 0:
        raise UserError(f"data file has no rows: {path}")
    df.columns = [str(c) for c in df.columns]
    dupes = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dupes:
        raise UserError(f"duplicate column name(s) in {path}: {', '.join(dupes)}")
    return df


@dataclass
class Dataset:
    """Features in the model's order (float64, NaN = missing) and the target."""

    X: pd.DataFrame
    y: np.ndarray | None
    feature_names: tuple[str, ...]
    target: str | None
    notes: list[str] = field(default_factory=list)
    #: categorical features -> category values by code (``None``: the column holds codes)
    categorical: dict[str, list | None] = field(default_factory=dict)


def choose_target(df: pd.DataFrame, features: Sequence[str], target: str | None) -> str:
    """The target column: ``target`` if given, else a conventional name, else the one non-feature column."""
    if target is not None:
        if target not in df.columns:
            raise UserError(f"target column {target!r} is not in the table (columns: {_preview(df.columns)})")
        return target
    feats = set(features)
    for cand in TARGET_CANDIDATES:
        if cand in df.columns and cand not in feats:
            return cand
    rest = [c for c in df.columns if c not in feats]
    if len(rest) == 1:
        return rest[0]
    if not rest:
        raise UserError("no target column: every column is a model feature; pass --target NAME")
    raise UserError(f"cannot tell which column is the target among {_preview(rest)}; pass --target NAME")


def _preview(cols, n: int = 8) -> str:
    cols = list(cols)
    text = ", ".join(repr(c) for c in cols[:n])
    return text + (f", ... ({len(cols)} in all)" if len(cols) > n else "")


def _resolve_features(
    df: pd.DataFrame, model_names: Sequence[str] | None, num_feature: int,
    explicit: Sequence[str] | None, target: str | None, notes: list[str],
) -> list[str]:
    """Column names, in model order, that feed the model's features."""
    if explicit is not None:
        if len(explicit) != num_feature:
            raise UserError(f"--feature-names lists {len(explicit)} names but the model has {num_feature} features")
        names = list(explicit)
    elif model_names is not None:
        names = list(model_names)
    else:
        default = [f"f{i}" for i in range(num_feature)]
        if all(c in df.columns for c in default):
            names = default
        else:
            candidates = [c for c in df.columns if c != target]
            if len(candidates) != num_feature:
                raise UserError(
                    f"the model has no feature names and {num_feature} features, but the table has "
                    f"{len(candidates)} non-target columns; pass --feature-names a,b,c in model order"
                )
            names = candidates
            notes.append(
                "model has no feature names: mapped its features f0..f%d to the table's columns by position (%s)"
                % (num_feature - 1, _preview(names, 5))
            )
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise UserError(f"the table lacks {len(missing)} model feature column(s): {_preview(missing)}")
    if target is not None and target in names:
        raise UserError(f"target column {target!r} is also a model feature")
    extra = [c for c in df.columns if c not in set(names) and c != target]
    if extra:
        notes.append(f"ignoring {len(extra)} column(s) the model does not use: {_preview(extra, 5)}")
    return names


def _category_codes(col: pd.Series, stored: tuple | None, notes: list[str]) -> tuple[pd.Series, list | None]:
    """Integer codes (float64, NaN = missing or unseen) for a categorical feature.

    With the category values the model stored, a value's code is its position there
    (values never seen in training become NaN: XGBoost's missing branch).  Without
    them, numeric columns already are the codes the trees test, and a pandas category
    column keeps its own codes (its category order must be the training order).
    """
    name = col.name
    if stored is not None:
        # the runtime's rule (exact value, then its string form), so served codes match these
        lookup = category_lookup(stored)
        values = col.astype(object)
        try:
            codes = values.map(lambda v: category_code(lookup, v, str(name)) if not _isna(v) else np.nan)
        except BundleError as exc:
            raise UserError(str(exc)) from None
        unseen = int((codes.isna() & values.notna()).sum())
        if unseen:
            notes.append(f"categorical feature {name!r}: {unseen} value(s) not seen in training score as missing")
        return codes.astype(np.float64), list(stored)
    if isinstance(col.dtype, pd.CategoricalDtype):
        notes.append(f"categorical feature {name!r}: the model stored no category list; using the column's "
                     "own category order as the codes (it must be the order used in training)")
        codes = col.cat.codes.astype(np.float64)
        return codes.where(codes >= 0, np.nan), [_plain(c) for c in col.cat.categories]
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return col.astype(np.float64), None
    raise UserError(
        f"categorical feature {name!r} holds {col.dtype} values but the model stored no category list; "
        "pass integer codes or a pandas category column in the training order"
    )


def _isna(v) -> bool:
    """Scalar missing test that never raises (``pd.isna`` of a list is an array)."""
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _numeric_features(df: pd.DataFrame, names: list[str], categories: dict[str, tuple | None],
                      notes: list[str]) -> tuple[pd.DataFrame, dict[str, list | None]]:
    bad = []
    cols = {}
    used: dict[str, list | None] = {}
    for name in names:
        col = df[name]
        if name in categories:
            cols[name], used[name] = _category_codes(col, categories[name], notes)
            continue
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            cols[name] = col.astype(np.float64)
        else:
            bad.append(f"{name} ({col.dtype})")
    if bad:
        raise UserError(
            "non-numeric feature column(s): " + ", ".join(bad[:8])
            + ("" if len(bad) <= 8 else f", ... ({len(bad)} in all)")
            + "; encode them as numbers before compiling (the legacy model saw numbers)"
        )
    return pd.DataFrame(cols, index=df.index), used


def _target_values(series: pd.Series, task: str) -> np.ndarray:
    name = series.name
    n_nan = int(series.isna().sum())
    if n_nan:
        raise UserError(f"target column {name!r} has {n_nan} missing value(s); drop or fill those rows")
    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64)
    if not pd.api.types.is_numeric_dtype(series):
        raise UserError(
            f"target column {name!r} is not numeric ({series.dtype}); "
            f"use 0/1 for a binary model or numbers for regression"
        )
    y = series.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(y)):
        raise UserError(f"target column {name!r} has infinite values")
    if task == "binary":
        values = np.unique(y)
        if not set(values.tolist()) <= {0.0, 1.0}:
            shown = ", ".join(format(v, "g") for v in values[:6])
            raise UserError(f"binary model needs a 0/1 target, but {name!r} holds: {shown}")
    return y


def prepare(
    df: pd.DataFrame,
    *,
    model_feature_names: Sequence[str] | None,
    num_feature: int,
    task: str,
    target: str | None = None,
    feature_names: Sequence[str] | None = None,
    categorical: dict[str, tuple | None] | None = None,
    need_target: bool = True,
) -> Dataset:
    """Line up ``df`` with the model: feature columns in model order, target checked.

    Every feature becomes float64.  ``categorical`` maps the features the model splits
    on categorically to the category values it stored (or ``None``); their values
    become the integer codes the trees test (see :func:`_category_codes`).
    """
    notes: list[str] = []
    names_for_target = feature_names or model_feature_names or []
    tcol = None
    if need_target:
        tcol = choose_target(df, names_for_target, target)
    elif target is not None or any(c in df.columns for c in TARGET_CANDIDATES):
        # not needed (compile-only), but a recognisable label column is no "extra" column
        try:
            tcol = choose_target(df, names_for_target, target)
        except UserError:
            if target is not None:
                raise
    names = _resolve_features(df, model_feature_names, num_feature, feature_names, tcol, notes)
    X, used = _numeric_features(df, names, dict(categorical or {}), notes)
    y = _target_values(df[tcol], task) if tcol is not None and need_target else None
    inf = int(np.isinf(X.to_numpy()).sum()) if len(X.columns) else 0
    if inf:
        notes.append(f"{inf} infinite feature value(s): kept, compared like any number (XGBoost semantics)")
    return Dataset(X=X, y=y, feature_names=tuple(names), target=tcol, notes=notes, categorical=used)
