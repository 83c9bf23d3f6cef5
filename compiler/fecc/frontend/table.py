"""Reading the user's table (parquet or CSV) and lining it up with the legacy model.

Every mistake a user can make with a table is caught here and reported as one
:class:`~fecc.errors.UserError` line: missing file, empty table, duplicate column
names, missing feature columns, non-numeric columns, category codes given where the
model stored category values (and the reverse), a missing or unusable target.

:func:`read_table` reads a whole table (compile); :class:`TableStream` reads one in
batches of rows with bounded memory (``fecc score``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from fecc_runtime.format import category_code, category_lookup
from fecc_runtime.errors import BundleError

from ..errors import UserError

#: Column names tried, in order, when no ``--target`` is given.
TARGET_CANDIDATES = ("target", "label", "y", "class", "outcome")


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise UserError(f"data file not found: {path}")
    if path.is_dir():
        raise UserError(f"data path is a directory, expected a parquet or CSV file: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"data file is empty: {path}")
    return path


def _table_kind(path: Path) -> str:
    """``parquet`` (by magic bytes or name), ``tsv``, ``txt`` (delimiter sniffed) or ``csv``."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    name = path.name.lower()
    if magic == b"PAR1" or name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".tsv", ".tsv.gz")):
        return "tsv"
    return "txt" if name.endswith(".txt") else "csv"


def _csv_options(kind: str) -> dict:
    return {"tsv": {"sep": "\t"}, "txt": {"sep": None, "engine": "python"}}.get(kind, {})


def _read_error(path: Path, kind: str, exc: Exception) -> UserError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(f"cannot read {path} as {'parquet' if kind == 'parquet' else 'CSV'}: {first}")


def header_names(path: Path, kind: str) -> list[str]:
    """The column names exactly as the file states them (pandas would rename a duplicate ``a`` to ``a.1``).

    Parquet: the schema's field names; CSV: the first row, read as text.
    """
    if kind == "parquet":
        import pyarrow.parquet as pq

        return [str(n) for n in pq.read_schema(path).names]
    head = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False, **_csv_options(kind))
    return ["" if v is None else str(v) for v in head.iloc[0].tolist()] if len(head) else []


def _check_unique(names: Sequence[str], path: Path) -> None:
    seen: dict[str, int] = {}
    for n in names:
        if n != "":  # blank CSV headers are pandas' "Unnamed: i", never a feature
            seen[n] = seen.get(n, 0) + 1
    dupes = [f"{n!r} ({k} columns)" for n, k in seen.items() if k > 1]
    if dupes:
        raise UserError(f"duplicate column name(s) in {path}: {', '.join(dupes)}; "
                        "rename them so that each name means one column")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a parquet or CSV file (``.csv``, ``.csv.gz``, ``.tsv``; parquet by magic bytes)."""
    path = _check_file(path)
    kind = _table_kind(path)
    try:
        _check_unique(header_names(path, kind), path)
        if kind == "parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, **_csv_options(kind))
    except UserError:
        raise
    except Exception as exc:  # pyarrow/pandas raise many types; the message is what matters
        raise _read_error(path, kind, exc) from None
    if df.shape[0] == 0:
        raise UserError(f"data file has no rows: {path}")
    df.columns = [str(c) for c in df.columns]
    dupes = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dupes:
        raise UserError(f"duplicate column name(s) in {path}: {', '.join(dupes)}")
    return df


class TableStream:
    """A parquet or CSV table read in batches of rows, with bounded memory.

    Parquet is read row group by row group (``ParquetFile.iter_batches``, buffered
    column reads, only the columns asked for); CSV in chunks of rows.  The checks of
    :func:`read_table` (missing or empty file, duplicate column names) run when the
    stream is opened, before any row is read.

    Attributes
    ----------
    columns : the table's column names, in file order.
    num_rows : number of rows (parquet, from its footer), ``None`` for CSV.
    """

    #: bytes of read buffer per parquet column chunk (instead of whole column chunks at once)
    PARQUET_BUFFER = 1 << 22

    def __init__(self, path: str | Path):
        self.path = _check_file(path)
        self.kind = _table_kind(self.path)
        self.num_rows: int | None = None
        try:
            names = header_names(self.path, self.kind)
            if self.kind == "parquet":
                import pyarrow.parquet as pq

                # no pre-buffering: it reads whole row groups (and the next) ahead, doubling peak memory
                self._pf = pq.ParquetFile(self.path, buffer_size=self.PARQUET_BUFFER, pre_buffer=False)
                self.num_rows = int(self._pf.metadata.num_rows)
        except Exception as exc:
            raise _read_error(self.path, self.kind, exc) from None
        _check_unique(names, self.path)
        # as pandas names them: a blank CSV header is "Unnamed: i"
        self.columns = [n if n != "" or self.kind == "parquet" else f"Unnamed: {i}" for i, n in enumerate(names)]
        if self.num_rows == 0:
            raise UserError(f"data file has no rows: {self.path}")

    def batches(self, columns: Sequence[str], *, batch_rows: int, text_columns: Sequence[str] = ()) -> Iterator["Batch"]:
        """Yield :class:`Batch` es of at most ``batch_rows`` rows holding ``columns``, in file row order.

        From a CSV, ``text_columns`` are read as text (copied exactly as written) and
        the others as pandas parses them; parquet columns keep their types.
        """
        cols = list(dict.fromkeys(columns))
        text = [c for c in cols if c in set(text_columns)]
        try:
            if self.kind == "parquet":
                import pyarrow as pa

                for batch in self._pf.iter_batches(batch_size=batch_rows, columns=cols, use_threads=True):
                    if batch.num_rows:
                        yield Batch(table=pa.Table.from_batches([batch]))
                return
            reader = pd.read_csv(self.path, usecols=cols, chunksize=batch_rows, dtype={c: str for c in text},
                                 **_csv_options(self.kind))
            with reader:
                for chunk in reader:
                    chunk.columns = [str(c) for c in chunk.columns]
                    yield Batch(frame=chunk.reset_index(drop=True), text=frozenset(text))
        except UserError:
            raise
        except Exception as exc:
            raise _read_error(self.path, self.kind, exc) from None


class Batch:
    """Rows of a :class:`TableStream`: a ``pyarrow.Table`` (parquet) or a pandas frame (CSV)."""

    def __init__(self, *, table=None, frame: pd.DataFrame | None = None, text: frozenset = frozenset()):
        self._table, self._frame, self._text = table, frame, text
        self.num_rows = table.num_rows if table is not None else len(frame)

    def frame(self, columns: Sequence[str]) -> pd.DataFrame:
        """These columns as pandas reads them (``pd.read_parquet`` / ``pd.read_csv``), index 0..n-1."""
        if self._table is not None:
            return self._table.select(list(dict.fromkeys(columns))).to_pandas()
        return self._frame[list(dict.fromkeys(columns))]

    def arrow(self, columns: Sequence[str]):
        """These columns as a ``pyarrow.Table`` with one type per column for the whole stream:
        parquet's own types; from a CSV, text for the text columns, float64 for the others."""
        import pyarrow as pa

        if self._table is not None:
            return self._table.select(list(columns))
        arrays = []
        for c in columns:
            col = self._frame[c]
            if c in self._text:
                arrays.append(pa.array(col.to_numpy(dtype=object), type=pa.string(), from_pandas=True))
            else:
                arrays.append(pa.array(pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64),
                                       type=pa.float64(), from_pandas=True))
        return pa.Table.from_arrays(arrays, names=list(columns))


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


def _category_codes(col: pd.Series, stored: tuple | None, notes: list[str],
                    mode: str = "values") -> tuple[pd.Series, list | None]:
    """Integer codes (float64, NaN = missing or unseen) for a categorical feature.

    With the category values the model stored, a value's code is its position there
    (values never seen in training become NaN: XGBoost's missing branch); when most
    values match no stored category the column is refused (it probably holds codes).
    ``mode="codes"`` reads the column as the codes themselves (``--categories codes``).
    Without stored values, numeric columns already are the codes the trees test, and a
    pandas category column keeps its own codes (its category order must be the
    training order).
    """
    name = col.name
    if stored is not None and mode == "codes":
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            raise UserError(f"categorical feature {name!r} holds {col.dtype} values, but --categories codes "
                            "reads integer category codes; drop --categories codes to read category values")
        codes = col.astype(np.float64)
        check_codes(str(name), codes.to_numpy(), len(stored), notes)
        return codes, list(stored)
    if stored is not None:
        # the runtime's rule (exact value, then its string form), so served codes match these
        lookup = category_lookup(stored)
        values = col.astype(object)
        try:
            codes = values.map(lambda v: category_code(lookup, v, str(name)) if not _isna(v) else np.nan)
        except BundleError as exc:
            raise UserError(str(exc)) from None
        present = values.map(lambda v: not _isna(v)).to_numpy(dtype=bool)
        matched = int(codes.notna().sum())
        check_matches(str(name), matched, int(present.sum()), len(stored),
                      values[present & codes.isna().to_numpy()], notes)
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


def _looks_like_codes(values, n_categories: int) -> bool:
    nums = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    return bool(len(nums)) and bool(np.all((nums >= 0) & (nums < n_categories) & (nums == np.floor(nums))))


def check_matches(name: str, matched: int, present: int, n_categories: int, unmatched, notes: list[str]) -> None:
    """Refuse a categorical column whose values mostly match no stored category; note the few that don't.

    ``present``: non-missing values; ``matched``: those found among the ``n_categories``
    stored values; ``unmatched``: (a sample of) the values not found.
    """
    if not present or matched == present:
        return
    unseen = present - matched
    if matched * 2 < present:
        head = (f"categorical feature {name!r}: only {matched} of {present} values match one of the "
                f"model's {n_categories} stored categories")
        sample = list(unmatched)[:1000]
        if _looks_like_codes(sample, n_categories):
            raise UserError(f"{head}; the others look like category codes (integers 0..{n_categories - 1}): "
                            "pass --categories codes to read codes, or give the category values")
        shown = ", ".join(repr(_plain(v)) for v in list(dict.fromkeys(sample))[:3])
        raise UserError(f"{head} ({shown}, ... are not among them); give the values the model was trained on "
                        "(or pass --categories codes if the column holds codes)")
    notes.append(f"categorical feature {name!r}: {unseen} value(s) not seen in training score as missing")


def check_codes(name: str, codes: np.ndarray, n_categories: int, notes: list[str]) -> None:
    """With ``--categories codes``: refuse a column whose values are mostly not codes 0..n-1 of a stored category."""
    v = codes[~np.isnan(codes)]
    valid = int(((v >= 0) & (v < n_categories) & (v == np.floor(v))).sum())
    check_codes_counts(name, valid, int(v.size), n_categories, notes)


def check_codes_counts(name: str, valid: int, present: int, n_categories: int, notes: list[str]) -> None:
    """:func:`check_codes` on counts: ``valid`` of the ``present`` (non-missing) values are codes 0..n-1."""
    if present and valid * 2 < present:
        raise UserError(f"categorical feature {name!r}: --categories codes, but only {valid} of {present} values are "
                        f"codes of the model's {n_categories} stored categories (integers 0..{n_categories - 1}); "
                        "drop --categories codes to read category values")
    if valid < present:
        notes.append(f"categorical feature {name!r}: {present - valid} value(s) are not codes 0..{n_categories - 1} "
                     "of a stored category; the trees test them as they are (an unseen category)")


def _isna(v) -> bool:
    """Scalar missing test that never raises (``pd.isna`` of a list is an array)."""
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _numeric_features(df: pd.DataFrame, names: list[str], categories: dict[str, tuple | None],
                      notes: list[str], mode: str = "values") -> tuple[pd.DataFrame, dict[str, list | None]]:
    bad = []
    cols = {}
    used: dict[str, list | None] = {}
    for name in names:
        col = df[name]
        if name in categories:
            cols[name], used[name] = _category_codes(col, categories[name], notes, mode)
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


#: Cross-validation folds of the search (its ``n_folds`` option) when nothing else is said.
CV_FOLDS = 5


def check_search_target(y: np.ndarray, task: str, name: str | None, folds: int = CV_FOLDS) -> None:
    """Refuse a target the search cannot learn from: one constant value, or (binary) a class
    with fewer rows than cross-validation folds, which leaves a fold without that class."""
    y = np.asarray(y, dtype=np.float64)
    label = f"target column {name!r}" if name else "the target"
    values, counts = np.unique(y, return_counts=True)
    if len(values) == 1:
        if task == "binary":
            raise UserError(f"{label} has one class only (all {len(y)} rows are {values[0]:g}); "
                            "the search needs rows of both classes")
        raise UserError(f"{label} is constant (all {len(y)} rows are {values[0]:g}); the search has nothing to learn")
    if task == "binary":
        for v, c in zip(values, counts):
            if c < folds:
                raise UserError(f"{label} has only {c} row(s) of class {v:g}; the search needs at least {folds} "
                                f"of each class, one per cross-validation fold")


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
    categories: str = "values",
) -> Dataset:
    """Line up ``df`` with the model: feature columns in model order, target checked.

    Every feature becomes float64.  ``categorical`` maps the features the model splits
    on categorically to the category values it stored (or ``None``); their values
    become the integer codes the trees test (see :func:`_category_codes`; with
    ``categories="codes"`` the columns hold those codes already).  Without
    ``need_target`` (compile only) a target column that the search would refuse gets a
    note instead of an error.
    """
    if categories not in ("values", "codes"):
        raise UserError(f"--categories must be 'values' or 'codes', got {categories!r}")
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
    X, used = _numeric_features(df, names, dict(categorical or {}), notes, categories)
    y = _target_values(df[tcol], task) if tcol is not None and need_target else None
    if tcol is not None and not need_target:
        try:
            check_search_target(_target_values(df[tcol], task), task, tcol)
        except UserError as exc:
            notes.append(f"{exc} (not needed to compile the legacy model alone; the search would stop here)")
    inf = int(np.isinf(X.to_numpy()).sum()) if len(X.columns) else 0
    if inf:
        notes.append(f"{inf} infinite feature value(s): kept, compared like any number (XGBoost semantics)")
    return Dataset(X=X, y=y, feature_names=tuple(names), target=tcol, notes=notes, categorical=used)
