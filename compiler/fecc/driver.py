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
    """

    target: str | None = None
    feature_names: tuple[str, ...] | None = None
    search: str = "nsr"
    llm: str = "auto"
    record: str | None = None
    seed: int = 0
    force: bool = False
    search_options: dict = field(default_factory=dict)
    llm_max_calls: int | None = None
    llm_max_tokens: int | None = None
    llm_max_seconds: float | None = None
    llm_temperature: float = 0.1
    trees: str = "c"

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
    model = load_legacy_model(model_path)
    say(f"model: {model.format} {model.objective}, {model.num_trees} trees, {model.num_feature} features")
    df = read_table(data_path)
    categorical = _categorical_features(model, options.feature_names)
    ds = prepare(
        df, model_feature_names=model.feature_names, num_feature=model.num_feature, task=model.task,
        target=options.target, feature_names=options.feature_names, categorical=categorical,
        need_target=options.search != "none",
    )
    for note in ds.notes:
        say(f"note: {note}")
    say(f"data: {len(ds.X)} rows, target {ds.target!r}" if ds.target else f"data: {len(ds.X)} rows")
    if options.search == "nsr" and model.task not in ("binary", "regression"):
        raise UserError(
            f"the NSR search supports binary and regression models, not {model.task} ({model.objective}); "
            "use --search none to compile the legacy model alone"
        )
    X = _float32_view(ds.X)

    with BundleWriter(out, force=options.force) as bw:
        lower_trees = tree_lowering(options.trees)
        say("lowering legacy trees to C (treelite + tl2cgen) and compiling with gcc" if options.trees == "c"
            else "lowering legacy trees to ONNX (ai.onnx.ml TreeEnsemble)")
        legacy_entry = lower_trees(Path(model_path), bw.root, name="legacy", model_format=model.format)
        legacy = tree_engine(bw.root, legacy_entry)

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
            "aggregator": None,
            "gate": {"decision": "legacy-only", "reason": "no search requested (--search none)"},
            "platform": {"system": platform.system(), "machine": platform.machine()},
        }
        metrics: dict = {}
        pipeline_reference = None  # callable X -> margin, reference implementation
        if options.search == "nsr":
            from .search_stage import run_nsr

            stage = run_nsr(model=model, ds=ds, X=X, legacy=legacy, bw=bw, out=Path(out), options=options,
                            progress=say)
            manifest.update(stage.manifest_slots)
            metrics.update(stage.summary)
            pipeline_reference = stage.reference_margin

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
        metrics["compile_seconds"] = round(time.perf_counter() - t0, 1)
        kind = "C" if options.trees == "c" else "ONNX"
        contents = f"legacy trees ({kind})" + (f", experts (numba), aggregator ({kind})" if manifest["experts"] else "")
        bw.write_text("README.md", _render(
            "bundle/README.md.j2", compiler_version=__version__, model_name=Path(model_path).name,
            model_sha256=model.sha256, task_kind=model.task, objective=model.objective,
            n_features=len(ds.feature_names), output_desc=_output_desc(model.link), contents=contents,
            gate_line=_gate_line(manifest["gate"]), has_experts=bool(manifest["experts"]),
            example_row=_example_row(ds), platform=f"{platform.system()} {platform.machine()}",
        ))
        # the staged bundle must load through the runtime exactly as a server would
        # (hashes + parity replay against the reference) before it is published
        bw.publish(manifest, verify=_verify_staged)
    summary = dict(metrics, path=str(out), gate=manifest["gate"]["decision"])
    say(f"bundle written to {out} ({summary['gate']}, {metrics['compile_seconds']} s)")
    return summary


def _verify_staged(path: Path) -> None:
    import fecc_runtime

    try:
        fecc_runtime.load(path)
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


def score(bundle_path: str | Path, data_path: str | Path, out: str | Path, *, keep: tuple[str, ...] = (),
          output: str = "prediction", progress: Progress | None = None) -> int:
    """Score a table with a bundle through the runtime; write parquet or CSV (by extension). Returns rows scored."""
    import fecc_runtime

    say = progress or (lambda msg: None)
    try:
        bundle = fecc_runtime.load(bundle_path)
    except fecc_runtime.BundleError as exc:
        raise UserError(str(exc)) from None
    df = read_table(data_path)
    missing_keep = [k for k in keep if k not in df.columns]
    if missing_keep:
        raise UserError(f"--keep column(s) not in the table: {', '.join(missing_keep)}")
    t0 = time.perf_counter()
    try:
        pred = bundle.predict(df, output=output)
    except fecc_runtime.BundleError as exc:
        raise UserError(str(exc)) from None
    elapsed = time.perf_counter() - t0
    result = df[list(keep)].reset_index(drop=True).copy() if keep else pd.DataFrame(index=range(len(df)))
    if pred.ndim == 2:
        for k in range(pred.shape[1]):
            result[f"{output}_{k}"] = pred[:, k]
    else:
        result[output] = pred
    out = Path(out)
    if out.suffix.lower() in (".csv", ".txt"):
        result.to_csv(out, index=False)
    elif out.suffix.lower() in (".parquet", ".pq"):
        result.to_parquet(out, index=False)
    else:
        raise UserError(f"output file must end in .parquet or .csv, got {out.name}")
    say(f"scored {len(df)} rows in {elapsed:.3f} s ({'legacy + experts' if bundle.uses_experts else 'legacy only'}) -> {out}")
    return len(df)
