"""The compiler driver: frontend → search → lower → bundle, in one place.

``compile_bundle`` is the library entry point behind ``fecc compile``; ``score`` is
behind ``fecc score``.  The CLI only parses arguments and calls these.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import __version__
from .errors import CompileError, UserError
from .frontend import Dataset, load_legacy_model, prepare, read_table, reference_margin
from .frontend.table import CV_FOLDS, check_search_target

Progress = Callable[[str], None]

#: Rows of the compile data stored as parity vectors (plus the edge rows below).
PARITY_ROWS = 48
#: Absolute tolerance of the parity replay, in output space.
PARITY_ATOL = 1e-6


@dataclass(frozen=True)
class CompileOptions:
    """Options of ``fecc compile`` (the CLI and the API share this dataclass).

    Attributes
    ----------
    target : target column; ``None`` picks one by the rule in :func:`fecc.frontend.table.choose_target`.
    feature_names : table columns for the model's features, in model order (for models saved without names).
    search : ``"nsr"`` (NSR-Boost experts, seed 004) or ``"none"`` (compile the legacy model only).
    llm : proposer spec for the search: ``auto`` (the embedded local LLM when its weights are installed,
        else the grammar proposer), ``none`` (built-in grammar proposer), ``local[:KEY]``,
        ``openai:URL#model``, ``vllm:MODEL``, ``replay:FILE`` (see :mod:`fecc.llm.registry`).
    record : file to record every LLM prompt/answer pair to (JSONL), for replay.
    seed : seed for splits, search and sampling; same inputs + seed (+ replayed LLM) ⇒ same bundle.
    force : replace an existing bundle at the output path.
    search_options : options for :class:`fecc.search.SearchOptions`, by name (unknown names are rejected).
    llm_max_calls, llm_max_tokens, llm_max_seconds : the LLM's budget for the whole compile (``None``: no
        cap): backend requests, prompt + answer tokens, seconds spent answering.  Once spent, the chains
        stop asking and the search finishes with what it has.
    llm_temperature : sampling temperature of the LLM's first answer (seed 004: 0.1).
    trees : how tree ensembles (legacy, aggregator) are lowered: ``"c"`` (treelite + tl2cgen C and fecc's
        array engine, compiled with gcc) or ``"onnx"`` (one ai.onnx.ml TreeEnsemble graph served by
        onnxruntime; see :mod:`fecc.lower.onnx_trees`).
    categories : how the table's categorical feature columns are read when the model stored category
        values: ``"values"`` (the category values; refused when most match no stored category) or
        ``"codes"`` (the integer codes the model was trained on).
    sign_key : Ed25519 private key (PEM file) that signs the bundle's manifest (``manifest.sig``).
    emit : what the runtime scores: ``"native"`` (compiled C: trees, and experts with their aggregator in
        one library, :mod:`fecc.lower.ensemble`) or ``"onnx"`` (also ``model.onnx``, the whole ensemble
        and its link as one graph that onnxruntime alone scores, :mod:`fecc.lower.onnx_graph`; the
        runtime then scores with it).
    """

    target: str | None = None
    feature_names: tuple[str, ...] | None = None
    search: str = "nsr"
    llm: str = "none"
    record: str | None = None
    seed: int = 0
    force: bool = False
    search_options: dict = field(default_factory=dict)
    llm_max_calls: int | None = None
    llm_max_tokens: int | None = None
    llm_max_seconds: float | None = None
    llm_temperature: float = 0.1
    trees: str = "c"
    categories: str = "values"
    sign_key: str | None = None
    emit: str = "native"

    def __post_init__(self):
        if self.search not in ("nsr", "none"):
            raise UserError(f"--search must be 'nsr' or 'none', got {self.search!r}")
        for flag, value in (("--llm-max-calls", self.llm_max_calls), ("--llm-max-tokens", self.llm_max_tokens),
                            ("--llm-max-seconds", self.llm_max_seconds)):
            if value is not None and not value > 0:
                raise UserError(f"{flag} must be positive, got {value!r}")
        if not 0.0 <= self.llm_temperature <= 2.0:
            raise UserError(f"--llm-temperature must be between 0 and 2, got {self.llm_temperature!r}")
        if self.trees not in ("c", "onnx"):
            raise UserError(f"--trees must be 'c' or 'onnx', got {self.trees!r}")
        if self.categories not in ("values", "codes"):
            raise UserError(f"--categories must be 'values' or 'codes', got {self.categories!r}")
        if self.emit not in ("native", "onnx"):
            raise UserError(f"--emit must be 'native' or 'onnx', got {self.emit!r}")


def _float32_view(X: pd.DataFrame) -> pd.DataFrame:
    """Round numeric features through float32, as the compiled trees see them.

    Experts and regions are fitted on exactly the values the runtime will feed them,
    so a threshold never falls between a float64 value and its float32 rounding.
    """
    out = X.copy()
    for c in out.columns:
        out[c] = out[c].astype(np.float32).astype(np.float64)
    return out


def _parity_inputs(X: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed + 7919)
    idx = np.sort(rng.choice(len(X), size=min(PARITY_ROWS, len(X)), replace=False))
    rows = X.iloc[idx].reset_index(drop=True)
    edge = pd.DataFrame([rows.iloc[0]] * 2).reset_index(drop=True)
    edge.loc[0, :] = np.nan   # every feature missing
    edge.loc[1, :] = 0.0
    return pd.concat([rows, edge], ignore_index=True)


def _categorical_features(model, explicit_names) -> dict[str, tuple | None]:
    """Table column -> stored category values, for the features the model splits on categorically."""
    types = model.feature_types or ()
    if "c" not in types:
        return {}
    names = explicit_names or model.feature_names or [f"f{i}" for i in range(model.num_feature)]
    stored = model.categories or (None,) * model.num_feature
    return {names[i]: stored[i] for i, t in enumerate(types) if t == "c"}


def _manifest_features(ds: Dataset) -> list[dict]:
    out = []
    for name in ds.feature_names:
        if name in ds.categorical:
            entry = {"name": name, "dtype": "categorical"}
            if ds.categorical[name] is not None:
                entry["categories"] = [_jsonable(c) for c in ds.categorical[name]]
            out.append(entry)
        else:
            out.append({"name": name, "dtype": "float"})
    return out


def _jsonable(v):
    return v.item() if hasattr(v, "item") else v


def _render(template: str, **ctx) -> str:
    from .templating import render

    return render(template, **ctx)


def compile_bundle(model_path: str | Path, data_path: str | Path, out: str | Path,
                   options: CompileOptions = CompileOptions(), progress: Progress | None = None) -> dict:
    """Compile ``model_path`` + ``data_path`` into a verified bundle at ``out``.

    Returns a summary of the run (gate decision, holdout metrics, LLM usage, archive
    path, seconds).  The manifest holds the gate and its metrics but no wall times, so
    that the same inputs and seed give the same bundle bytes.
    Raises :class:`~fecc.errors.UserError` for problems with the inputs and
    :class:`~fecc.errors.CompileError` when the compiled code fails its parity check.
    """
    from .bundle import BundleWriter
    from .lower import tree_lowering
    from fecc_runtime.bundle import tree_engine

    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    clock = _StageClock()
    # the output path and the signing key are checked before any work
    BundleWriter.check_target(out, options.force)
    sign_key = None
    if options.sign_key is not None:
        from .bundle.signing import load_signing_key

        sign_key = load_signing_key(options.sign_key)
    if options.emit == "onnx":
        from .lower.onnx_graph import check_available

        check_available()  # before any work
    model = load_legacy_model(model_path)
    say(f"model: {model.format} {model.objective}, {model.num_trees} trees, {model.num_feature} features")
    df = read_table(data_path)
    categorical = _categorical_features(model, options.feature_names)
    ds = prepare(
        df, model_feature_names=model.feature_names, num_feature=model.num_feature, task=model.task,
        target=options.target, feature_names=options.feature_names, categorical=categorical,
        need_target=options.search != "none", categories=options.categories,
    )
    for note in ds.notes:
        say(f"note: {note}")
    say(f"data: {len(ds.X)} rows, target {ds.target!r}" if ds.target else f"data: {len(ds.X)} rows")
    if options.search == "nsr" and model.task not in ("binary", "regression"):
        raise UserError(
            f"the NSR search supports binary and regression models, not {model.task} ({model.objective}); "
            "use --search none to compile the legacy model alone"
        )
    if options.search == "nsr":
        try:
            check_search_target(ds.y, model.task, ds.target, folds=int(options.search_options.get("n_folds", CV_FOLDS)))
        except UserError as exc:
            raise UserError(f"{exc}; use --search none to compile the legacy model alone") from None
        # the search's options and the gate's folds are checked before any expensive step
        from .search import SearchOptions
        from .search.crossfit import gate_folds

        try:
            sopts = SearchOptions.from_dict({"seed": options.seed, **options.search_options})
        except (TypeError, ValueError) as exc:
            raise UserError(f"bad search option: {exc}") from None
        gate_folds(ds.y, task=model.task, k=sopts.gate_folds, inner_k=sopts.n_folds, seed=options.seed)
    X = _float32_view(ds.X)
    clock.done("frontend")

    with BundleWriter(out, force=options.force, sign_key=sign_key) as bw:
        lower_trees = tree_lowering(options.trees)
        say("lowering legacy trees to C (treelite + tl2cgen) and compiling with gcc" if options.trees == "c"
            else "lowering legacy trees to ONNX (ai.onnx.ml TreeEnsemble)")
        legacy_entry = lower_trees(Path(model_path), bw.root, name="legacy", model_format=model.format)
        legacy = tree_engine(bw.root, legacy_entry)
        clock.done("lower_legacy")

        manifest: dict = {
            "compiler": {"name": "fecc", "version": __version__},
            "inputs": {
                "model": {"file": Path(model_path).name, "sha256": model.sha256, "format": model.format,
                          "library_version": model.library_version, "num_trees": model.num_trees},
                "data": {"file": Path(data_path).name, "rows": int(len(ds.X)), "target": ds.target},
                "seed": options.seed,
            },
            "task": {"kind": model.task, "objective": model.objective, "link": model.link, "num_class": model.num_class},
            "features": _manifest_features(ds),
            "legacy": legacy_entry,
            "transforms": [],
            "experts": [],
            "experts_module": None,
            "experts_engine": None,
            "ensemble": None,
            "emit": options.emit,
            "onnx_model": None,
            "aggregator": None,
            "gate": {"decision": "legacy-only", "reason": "no search requested (--search none)"},
            "platform": {"system": platform.system(), "machine": platform.machine()},
        }
        metrics: dict = {}
        pipeline_reference = None  # callable X -> margin, reference implementation
        bundle_oof = None
        if options.search == "nsr":
            from .search_stage import run_nsr

            stage = run_nsr(model=model, ds=ds, X=X, legacy=legacy, bw=bw, out=Path(out), options=options,
                            progress=say)
            manifest.update(stage.manifest_slots)
            metrics.update(stage.summary)
            pipeline_reference = stage.reference_margin
            bundle_oof = getattr(stage, "oof_margin", None)  # the ensemble's out-of-fold margin, for the report
            clock.done("search")
            if manifest["experts"]:
                _lower_ensemble(bw, manifest, model=model, model_path=Path(model_path), ds=ds, out=Path(out),
                                options=options, say=say)
                clock.done("lower_ensemble")
        if options.emit == "onnx":
            _lower_onnx_graph(bw, manifest, model=model, model_path=Path(model_path), ds=ds, out=Path(out), say=say)
            clock.done("lower_onnx")

        # parity vectors: reference outputs from xgboost (+ IR evaluator and xgboost for experts)
        P = _parity_inputs(X, options.seed)
        margin_ref = reference_margin(model, P) if pipeline_reference is None else pipeline_reference(P)
        from fecc_runtime import apply_link

        expected = apply_link(margin_ref, model.link)
        inputs = P.to_numpy(dtype=np.float64)
        manifest["parity"] = {
            "inputs": bw.save_array("parity/inputs.npy", inputs),
            "expected": bw.save_array("parity/expected.npy", expected),
            "output": "prediction", "atol": PARITY_ATOL, "rows": int(len(inputs)),
        }
        clock.done("parity")
        _write_report(bw, manifest, model=model, model_path=Path(model_path), ds=ds, X=X, legacy=legacy,
                      reference=pipeline_reference, bundle_oof=bundle_oof, out=Path(out), table=df)
        say("report: report.html, report.md")
        clock.done("report")
        metrics["compile_seconds"] = round(time.perf_counter() - t0, 1)
        kind = "C" if options.trees == "c" else "ONNX"
        experts_kind = ("C, one library with the trees; numba reference" if manifest["experts_engine"] == "c"
                        else "numba")
        contents = f"legacy trees ({kind})" + (f", experts ({experts_kind}), aggregator ({kind})"
                                               if manifest["experts"] else "")
        if options.emit == "onnx":
            contents += "; model.onnx (the whole ensemble as one ONNX graph, what the runtime scores)"
        bw.write_text("README.md", _render(
            "bundle/README.md.j2", compiler_version=__version__, model_name=Path(model_path).name,
            model_sha256=model.sha256, task_kind=model.task, objective=model.objective,
            n_features=len(ds.feature_names), output_desc=_output_desc(model.link), contents=contents,
            gate_line=_gate_line(manifest["gate"]), has_experts=bool(manifest["experts"]),
            example_row=_example_row(ds), platform=f"{platform.system()} {platform.machine()}",
        ))
        # the staged bundle must load through the runtime exactly as a server would
        # (hashes + parity replay against the reference) before it is published
        bw.publish(manifest, verify=lambda staged: _verify_staged(staged, sign_key, both=options.emit == "onnx"))
        clock.done("verify_publish")
    metrics["stage_seconds"] = clock.seconds  # wall times: the summary only, never the bundle
    summary = dict(metrics, path=str(out), gate=manifest["gate"]["decision"])
    say(f"bundle written to {out} ({summary['gate']}, {metrics['compile_seconds']} s)")
    return summary


class _StageClock:
    """Wall seconds per compile stage, for the summary (never the bundle: they are not reproducible)."""

    def __init__(self):
        self._t = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._t, 3)
        self._t = now


def _write_report(bw, manifest: dict, *, model, model_path: Path, ds: Dataset, X: pd.DataFrame, legacy,
                  reference, bundle_oof, out: Path, table: pd.DataFrame) -> None:
    """report.html, report.md and report/ (plots, the curves' data) into the staged bundle."""
    from .report import collect, write_report
    from .report.data import report_labels
    from .search_stage import workdir_for

    def legacy_margin(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(legacy.predict(np.ascontiguousarray(frame.to_numpy(), dtype=np.float32), margin=True),
                          dtype=np.float64)

    agg = manifest.get("aggregator") or {}
    agg_json = workdir_for(out) / "aggregator.json" if agg.get("trees") else None
    y = report_labels(table, ds.target, ds.y, model.task, len(X))
    data = collect(task=model.task, manifest=manifest, frame=X, y=y, legacy_margin=legacy_margin,
                   bundle_margin=reference, bundle_oof=bundle_oof, model_path=model_path,
                   model_format=model.format, aggregator_json=agg_json)
    write_report(bw, manifest, data)


def _lower_ensemble(bw, manifest: dict, *, model, model_path: Path, ds: Dataset, out: Path, options, say) -> None:
    """The experts, the aggregator and the legacy trees into one C library (``ensemble/``), when the
    trees are C (the library walks their node arrays) and the model has one output; else the
    numba module scores the experts (``experts_engine: "numba"``)."""
    from .lower.ensemble import lower_ensemble
    from .lower.expert_source import ExpertSource
    from .search_stage import workdir_for

    manifest["experts_engine"] = "numba"
    if options.trees != "c" or model.num_class != 1:
        say("experts stay in the numba module (the C ensemble library needs C trees with one output)")
        return
    agg = manifest["aggregator"] or {}
    say("lowering experts, aggregator and legacy trees to one C library (ensemble/ensemble.so)")
    manifest["ensemble"] = lower_ensemble(
        bw.root, legacy_model=model_path, legacy_format=model.format,
        experts=[ExpertSource.from_manifest(e) for e in manifest["experts"]],
        feature_names=list(ds.feature_names), base_margin=agg.get("base_margin", "legacy+experts"),
        aggregator_model=workdir_for(out) / "aggregator.json" if agg.get("trees") else None)
    manifest["experts_engine"] = "c"


def _lower_onnx_graph(bw, manifest: dict, *, model, model_path: Path, ds: Dataset, out: Path, say) -> None:
    """``model.onnx``: legacy trees, experts, aggregator and link as one graph."""
    from .lower.expert_source import ExpertSource
    from .lower.onnx_graph import lower_onnx_graph
    from .search_stage import workdir_for

    agg = manifest["aggregator"] or {}
    say("lowering the whole ensemble to one ONNX graph (model.onnx)")
    manifest["onnx_model"] = lower_onnx_graph(
        bw.root, legacy_model=model_path, legacy_format=model.format,
        experts=[ExpertSource.from_manifest(e) for e in manifest["experts"]],
        feature_names=list(ds.feature_names), link=model.link,
        base_margin=agg.get("base_margin", "legacy+experts"),
        aggregator_model=workdir_for(out) / "aggregator.json" if agg.get("trees") else None)


def _verify_staged(path: Path, sign_key=None, both: bool = False) -> None:
    """Load the staged bundle as a server would (hashes, signature, parity replay); ``both``:
    through the ONNX graph and through the native code."""
    import fecc_runtime

    try:
        # a signed bundle must verify against its own key, as a server configured with it would
        fecc_runtime.load(path, trusted_keys=None if sign_key is None else [sign_key.public_key()])
        if both:
            fecc_runtime.load(path, engine="native")
    except fecc_runtime.BundleSignatureError as exc:
        raise CompileError(f"the signed bundle does not verify: {exc}") from None
    except fecc_runtime.BundleError as exc:
        raise CompileError(f"the compiled bundle does not reproduce the reference predictions: {exc}") from None


def _output_desc(link: str) -> str:
    return {"logistic": "probability of class 1", "identity": "predicted value", "exp": "predicted value (exp link)",
            "softmax": "class probabilities"}.get(link, link)


def _gate_line(gate: dict) -> str:
    if gate["decision"] == "ensemble":
        return "experts passed: " + gate.get("reason", "")
    return "legacy only — " + gate.get("reason", "")


def _example_row(ds: Dataset) -> str:
    row = {}
    for name in ds.feature_names[:3]:
        v = ds.X[name].iloc[0]
        row[name] = None if (isinstance(v, float) and np.isnan(v)) else _jsonable(v)
    return repr(row)[:-1] + (", ...}" if len(ds.feature_names) > 3 else "}")


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
    if categories not in ("values", "codes"):
        raise UserError(f"--categories must be 'values' or 'codes', got {categories!r}")
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
