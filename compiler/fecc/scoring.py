"""``fecc score``: a table through a bundle's runtime, streamed, written atomically.

The library entry point is :func:`score` (also :func:`fecc.score`); the CLI only parses
arguments and calls it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .errors import UserError
from .options import CATEGORY_MODES, one_of

Progress = Callable[[str], None]

#: Rows per batch when ``fecc score`` streams a table (10 MB of float64 for 10 features).
SCORE_BATCH_ROWS = 1 << 17


def _scores_kind(out: Path) -> str:
    suffix = out.suffix.lower()
    if suffix in (".csv", ".txt"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise UserError(f"output file must end in .parquet or .csv, got {out.name}")


class _CategoryTally:
    """Per categorical feature, over the whole table: values present, values matched (or valid codes), a sample
    of the unmatched ones — decided once every batch is scored (see :func:`fecc.frontend.table.check_matches`)."""

    def __init__(self, bundle, mode: str):
        self.mode = mode
        self.n_categories = {f["name"]: len(f["categories"]) for f in bundle.manifest["features"]
                             if f.get("categories") is not None}
        self.index = {name: bundle.feature_names.index(name) for name in self.n_categories}
        self.present = dict.fromkeys(self.n_categories, 0)
        self.matched = dict.fromkeys(self.n_categories, 0)
        self.sample: dict[str, list] = {name: [] for name in self.n_categories}

    def check_dtypes(self, frame: pd.DataFrame) -> None:
        if self.mode != "codes":
            return
        for name in self.n_categories:
            col = frame[name]
            if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
                raise UserError(f"categorical feature {name!r} holds {col.dtype} values, but --categories codes "
                                "reads integer category codes; drop --categories codes to read category values")

    def add(self, frame: pd.DataFrame, X: np.ndarray) -> None:
        for name, n in self.n_categories.items():
            code = X[:, self.index[name]]
            if self.mode == "codes":
                present = ~np.isnan(code)
                v = code[present]
                self.present[name] += int(present.sum())
                self.matched[name] += int(((v >= 0) & (v < n) & (v == np.floor(v))).sum())
                continue
            present = frame[name].notna().to_numpy()
            unmatched = present & np.isnan(code)
            self.present[name] += int(present.sum())
            self.matched[name] += int(present.sum() - unmatched.sum())
            if unmatched.any() and len(self.sample[name]) < 1000:
                self.sample[name].extend(frame[name].to_numpy(dtype=object)[unmatched][:1000].tolist())

    def check(self, notes: list[str]) -> None:
        from .frontend.table import check_codes_counts, check_matches

        for name, n in self.n_categories.items():
            if self.mode == "codes":
                check_codes_counts(name, self.matched[name], self.present[name], n, notes)
            else:
                check_matches(name, self.matched[name], self.present[name], n, self.sample[name], notes)


def score(bundle_path: str | Path, data_path: str | Path, out: str | Path, *, keep: tuple[str, ...] = (),
          output: str = "prediction", categories: str = "values", trusted_keys=None,
          batch_rows: int = SCORE_BATCH_ROWS, progress: Progress | None = None) -> int:
    """Score a table with a bundle through the runtime; write parquet or CSV (by extension). Returns rows scored.

    The table is streamed: parquet row group by row group, CSV in chunks, ``batch_rows``
    rows at a time, so memory stays bounded whatever the table's size; the scores go to
    a temporary file beside ``out`` (a ``ParquetWriter`` appends each batch) that is
    renamed onto ``out`` only once every row is scored.  A failure at any point leaves
    whatever was at ``out`` untouched.  Rows keep the table's order; ``keep`` columns
    come first (from parquet with their types, from a CSV as the text written there),
    then the scores.  ``categories`` says how categorical columns are read (``values``
    or ``codes``); ``trusted_keys`` (public key PEM paths) makes the bundle's signature
    mandatory.  Every problem is a :class:`~fecc.errors.UserError` line.
    """
    import fecc_runtime

    from .frontend.table import TableStream
    from .outputs import AtomicFile, check_output_parent

    say = progress or (lambda msg: None)
    out = Path(out)
    kind = _scores_kind(out)
    if categories not in CATEGORY_MODES:
        raise UserError(f"--categories must be {one_of(CATEGORY_MODES)}, got {categories!r}")
    if out.is_dir():
        raise UserError(f"cannot write the scores to {out}: it is a directory; name a .parquet or .csv file")
    check_output_parent(out, "the scores")
    try:
        bundle = fecc_runtime.load(bundle_path, trusted_keys=list(trusted_keys) if trusted_keys else None)
    except fecc_runtime.BundleError as exc:
        raise UserError(str(exc)) from None
    table = TableStream(data_path)
    if out.exists() and out.resolve() == table.path.resolve():
        raise UserError(f"the output {out} is the input data file; write the scores to another file")
    keep = list(dict.fromkeys(keep))
    missing_keep = [k for k in keep if k not in table.columns]
    if missing_keep:
        raise UserError(f"--keep column(s) not in the table: {', '.join(missing_keep)}")
    features = list(bundle.feature_names)
    missing = [n for n in features if n not in table.columns]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:8])
        raise UserError(f"input lacks {len(missing)} feature column(s): {shown}")
    text = [k for k in keep if k not in set(features)]
    tally = _CategoryTally(bundle, categories)
    rows_bar = getattr(progress, "rows", None)
    done = 0
    t0 = time.perf_counter()
    with AtomicFile(out, "the scores") as target:
        sink = _ScoresSink(target.path, kind, out)
        try:
            for batch in table.batches(features + text, batch_rows=batch_rows, text_columns=text):
                frame = batch.frame(features)
                tally.check_dtypes(frame)
                try:
                    X = bundle.matrix(frame, categories=categories)
                    pred = bundle.predict(X, output=output)
                except fecc_runtime.BundleError as exc:
                    raise UserError(str(exc)) from None
                tally.add(frame, X)
                names = [output] if pred.ndim == 1 else [f"{output}_{k}" for k in range(pred.shape[1])]
                clash = [n for n in names if n in keep]
                if clash:
                    raise UserError(f"--keep column {clash[0]!r} has the name of a score column; rename it first")
                sink.write(batch.arrow(keep), names, pred)
                done += batch.num_rows
                if rows_bar is not None:
                    rows_bar(done, table.num_rows, seconds=time.perf_counter() - t0)
            if done == 0:
                raise UserError(f"data file has no rows: {table.path}")
            notes: list[str] = []
            tally.check(notes)  # refuses before the scores are published
            sink.close()
        finally:
            sink.close()
        target.commit()
    elapsed = time.perf_counter() - t0
    for note in notes:
        say(f"note: {note}")
    say(f"scored {done} rows in {elapsed:.3f} s ({'legacy + experts' if bundle.uses_experts else 'legacy only'}) -> {out}")
    return done


class _ScoresSink:
    """Appends scored batches to ``path``: a ``ParquetWriter`` (one schema, fixed by the first batch) or CSV text."""

    def __init__(self, path: Path, kind: str, final: Path):
        self.path, self.kind, self.final = path, kind, final
        self._writer = None
        self._fh = None
        self._schema = None

    def write(self, keep_table, names: list[str], pred: np.ndarray) -> None:
        import pyarrow as pa

        cols = [pred] if pred.ndim == 1 else [pred[:, k] for k in range(pred.shape[1])]
        table = pa.Table.from_arrays(
            list(keep_table.columns) + [pa.array(np.ascontiguousarray(c, dtype=np.float64)) for c in cols],
            names=list(keep_table.column_names) + list(names))
        try:
            if self.kind == "parquet":
                import pyarrow.parquet as pq

                if self._writer is None:
                    self._schema = table.schema
                    self._writer = pq.ParquetWriter(str(self.path), self._schema)
                elif not table.schema.equals(self._schema):
                    table = table.cast(self._schema)
                self._writer.write_table(table)
            else:
                first = self._fh is None
                if first:
                    self._fh = open(self.path, "w", encoding="utf-8", newline="")
                table.to_pandas().to_csv(self._fh, header=first, index=False)
        except OSError as exc:
            raise UserError(f"cannot write the scores to {self.final}: {exc.strerror or exc}") from None

    def close(self) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
            if self._fh is not None:
                self._fh.close()
        except OSError as exc:
            raise UserError(f"cannot write the scores to {self.final}: {exc.strerror or exc}") from None
        finally:
            self._writer = self._fh = None
