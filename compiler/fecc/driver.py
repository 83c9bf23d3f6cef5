"""The compiler driver: frontend → search → lower → bundle, in one place.

:func:`compile_bundle` (``fecc.compile``) is the library entry point behind
``fecc compile``.  Each stage is a function that returns a typed result:

* :func:`read_inputs` — the legacy model, the table, its features and target
  (:class:`Inputs`); the search's folds are checked here, before any expensive step;
* the legacy trees, lowered by the chosen :class:`~fecc.options.TreeTarget` (a manifest
  entry, from the lowering);
* :func:`run_transform_stage` — with ``--transforms teaming``, the transformation search
  (seed 000) on all compile rows: the chosen transforms and the rows with their columns
  appended (:class:`TransformStage`);
* :func:`run_search_stage` — the NSR search (seed 004) over those rows, the experts'
  numba module and the aggregator's trees (:class:`SearchStage`);
* :func:`lower_ensemble_stage` — the C ensemble library and/or ``model.onnx``
  (:class:`Lowered`);
* the parity vectors;

and :func:`build_manifest`, the one function that assembles ``manifest.json`` from
them.  Options are one :class:`~fecc.options.CompileOptions`, validated when built.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from fecc_runtime.format import base_map as read_base_map

from . import __version__
from .errors import CompileError, UserError
from .frontend import Dataset, load_forest, load_legacy_model, prepare, read_table, reference_margin
from .frontend.table import check_search_target
from .options import CompileOptions

__all__ = ["compile_bundle", "CompileOptions", "Inputs", "TransformStage", "SearchStage", "Lowered", "build_manifest",
           "read_inputs", "run_transform_stage", "run_search_stage", "lower_ensemble_stage", "workdir_for"]

Progress = Callable[[str], None]

#: Rows of the compile data stored as parity vectors (plus the edge rows below).
PARITY_ROWS = 48
#: Absolute tolerance of the parity replay, in output space.
PARITY_ATOL = 1e-6
#: A finite feature value whose square overflows float32 (parity rows of a bundle with transforms).
HUGE = 1e38


def workdir_for(out: Path) -> Path:
    """Where the search keeps its experience archive and the aggregator: beside the bundle, never inside it."""
    out = Path(out)
    return out.with_name(out.name + ".work")


# --------------------------------------------------------------------------- frontend


@dataclass(frozen=True)
class Inputs:
    """What the frontend read: the legacy model, the table, and the rows the later stages see.

    Attributes
    ----------
    model_path, data_path : the input files.
    model : the legacy model (:func:`fecc.frontend.load_legacy_model`).
    forest : its trees as the forest IR (:func:`fecc.frontend.load_forest`, from the bytes ``model``
        read: the model file is read once), what every tree lowering takes.
    table : the data table as read.
    ds : the model's features and the target, from the table.
    X : ``ds.X`` rounded through float32, as the compiled trees see it.
    """

    model_path: Path
    data_path: Path
    model: Any
    forest: Any
    table: pd.DataFrame
    ds: Dataset
    X: pd.DataFrame


def read_inputs(model_path: str | Path, data_path: str | Path, options: CompileOptions, say: Progress) -> Inputs:
    """Read and check the model and the table; refuse, before any expensive step, what the search cannot use."""
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
    if options.search == "nsr":
        if model.task not in ("binary", "regression"):
            raise UserError(
                f"the NSR search supports binary and regression models, not {model.task} ({model.objective}); "
                "use --search none to compile the legacy model alone"
            )
        sopts = options.search_options
        try:
            check_search_target(ds.y, model.task, ds.target, folds=sopts.n_folds)
        except UserError as exc:
            raise UserError(f"{exc}; use --search none to compile the legacy model alone") from None
        from .search.crossfit import gate_folds

        gate_folds(ds.y, task=model.task, k=sopts.gate_folds, inner_k=sopts.n_folds, seed=options.seed)
    return Inputs(model_path=Path(model_path), data_path=Path(data_path), model=model, forest=load_forest(model),
                  table=df, ds=ds, X=_float32_view(ds.X))


def _legacy_margin(legacy, X: pd.DataFrame) -> np.ndarray:
    """The compiled legacy engine's margin on ``X`` (what the searches repair)."""
    return np.asarray(legacy.predict(np.ascontiguousarray(X.to_numpy(), dtype=np.float32), margin=True),
                      dtype=np.float64)


# --------------------------------------------------------------------------- transforms


#: Keys of the transform search's statistics that are wall times: the compile summary
#: gets them, the manifest does not (the same inputs and seed must give the same bytes).
_TRANSFORM_TIMES = ("seconds", "timings")


@dataclass(frozen=True)
class TransformStage:
    """What the transformation search (seed 000) chose on all compile rows.

    Attributes
    ----------
    result : the search's :class:`~fecc.transforms.TransformResult`.
    X : the compile rows as the expert search sees them: the features, then the chosen
        transforms' served columns (:func:`fecc.transforms.stage.augment`).
    refit : the same search as the gate reruns it in each outer fold
        (:class:`~fecc.transforms.stage.TransformRefit`).
    """

    result: Any
    X: pd.DataFrame
    refit: Any

    @property
    def transforms(self) -> tuple:
        return tuple(self.result.transforms)

    def stats(self) -> dict:
        """``search.transforms`` of the manifest: counts, the decoder mix λ, the choice; no wall times."""
        from fecc_runtime.format import TRANSFORM_SEMANTICS

        stats = {k: v for k, v in self.result.stats.items() if k not in _TRANSFORM_TIMES}
        return {**stats, "semantics": TRANSFORM_SEMANTICS, "chosen_postfix": [t.postfix for t in self.transforms],
                "options": self.result.options.to_dict()}

    def summary(self) -> dict:
        """Run facts for the compile summary: the counts and the wall times."""
        st = self.result.stats
        return {"chosen": len(self.transforms), "generated": st["generated"], "evaluated": st["evaluated"],
                "ranked_out": st["ranked_out"], "seconds": st["seconds"], "timings": dict(st["timings"])}


def run_transform_stage(inputs: Inputs, legacy, out: Path, options: CompileOptions, say: Progress) -> TransformStage:
    """Search postfix transforms (seed 000) on all compile rows against the compiled legacy margin."""
    from .transforms import search_transforms
    from .transforms.stage import TransformRefit, augment

    topts = options.transform_options
    workdir = workdir_for(out)
    workdir.mkdir(parents=True, exist_ok=True)
    say(f"transforms: teaming search ({topts.decoder} decoder, λ = {topts.effective_lambda:g}) on "
        f"{len(inputs.X)} rows")
    result = search_transforms(inputs.X, inputs.ds.y, _legacy_margin(legacy, inputs.X), inputs.model.task, None,
                               topts, workdir=workdir, progress=say)
    st = result.stats
    chosen = ", ".join(f"{t.name} = {t.math}" for t in result.transforms) or "none"
    say(f"transforms: {st['generated']} generated, {st['invalid']} invalid, {st['evaluated']} evaluated, "
        f"{st['ranked_out']} ranked out, {st['seconds']:.1f} s; chosen: {chosen}")
    return TransformStage(result=result, X=augment(result.transforms, inputs.X), refit=TransformRefit(topts))


# --------------------------------------------------------------------------- search


@dataclass(frozen=True)
class SearchStage:
    """What the NSR stage decided and lowered.

    Attributes
    ----------
    result : the search's :class:`~fecc.search.SearchResult`.
    slots : its record as JSON (:meth:`~fecc.search.SearchResult.to_manifest`): ``experts``,
        ``aggregator``, ``gate``, ``search``.
    proposer : who proposed the experts, for auditors: ``name`` and, for an LLM, its usage
        counts (wall times would break determinism).
    experts_module : bundle path of the experts' numba module (``None``: nothing shipped).
    aggregator_trees : manifest entry of the aggregator's lowered trees (``None``: no trees).
    summary : run facts for the compile summary, not the manifest.
    aggregator_forest : the aggregator booster as the forest IR (``None``: no trees).
    transforms : the transforms the experts and the aggregator read (empty: the features alone);
        they ship with the experts, or not at all.
    selection : with ``--transforms teaming``, the :class:`~fecc.search.select.Selection` between the
        search with the transforms and the search alone (``None`` without the transform stage).
    """

    result: Any
    slots: dict
    proposer: dict
    experts_module: str | None
    aggregator_trees: dict | None
    summary: dict
    aggregator_forest: Any = None
    transforms: tuple = ()
    selection: Any = None

    @property
    def shipped(self) -> bool:
        return self.result.shipped

    @property
    def oof_margin(self) -> np.ndarray | None:
        """What the gate judged: the searches' held-out ensemble margin on every compile row."""
        return self.result.oof_margin

    def reference_margin(self, inputs: Inputs) -> Callable[[pd.DataFrame], np.ndarray] | None:
        """The shipped ensemble's margin by the reference implementations (IR numpy evaluator +
        xgboost), for the parity vectors; ``None`` when the gate kept the legacy model."""
        if not self.shipped:
            return None
        if self.transforms:
            from .transforms.stage import augment

            # the transforms' served columns by the IR's numpy evaluator, then the experts and aggregator
            return lambda P: self.result.predict_margin(augment(self.transforms, P), reference_margin(inputs.model, P))
        return lambda P: self.result.predict_margin(P, reference_margin(inputs.model, P))

    @property
    def shipped_transforms(self) -> tuple:
        """The transforms in the bundle: those the search read, when the gate lets the ensemble through."""
        return self.transforms if self.shipped else ()


def run_search_stage(inputs: Inputs, legacy, bw, out: Path, options: CompileOptions, say: Progress,
                     transforms: TransformStage | None = None) -> SearchStage:
    """Search experts (seed 004) against the compiled ``legacy`` engine; lower what the gate lets through:
    the experts (and the transforms they and the aggregator read) into one numba module
    (``experts/experts.py``), the aggregator's trees by the tree target.

    With ``transforms`` that chose at least one transform, the search runs twice on the same
    outer folds and seed: on the rows with the transforms' columns appended (the gate rerunning
    the transform search in each outer fold, :func:`fecc.search.run_search`'s ``refit_features``,
    so its out-of-fold test judges the transforms' choice too), and on the model's features alone
    (in ``<workdir>/nsr-alone``).  :func:`fecc.search.select.prefer` compares their out-of-fold
    margins; the transforms ship only when they win, else the stage is exactly what
    ``--transforms none`` computes.  Without a chosen transform the search runs once, alone."""
    from .llm.llm_proposer import Budget
    from .llm.registry import make_proposer
    from .lower.numba_backend import write_module
    from .search import run_search
    from .search.crossfit import gate_folds
    from .search.select import prefer

    model, ds = inputs.model, inputs.ds
    sopts = options.search_options
    folds = gate_folds(ds.y, task=model.task, k=sopts.gate_folds, inner_k=sopts.n_folds, seed=options.seed)
    margin = _legacy_margin(legacy, inputs.X)
    budget = Budget(max_calls=options.llm_max_calls, max_tokens=options.llm_max_tokens,
                    max_seconds=options.llm_max_seconds)
    workdir = workdir_for(out)
    workdir.mkdir(parents=True, exist_ok=True)

    def search(X: pd.DataFrame, where: Path, **features):
        # a proposer of its own per search: the search alone is the --transforms none search exactly
        proposer = make_proposer(options.llm, record=options.record, seed=options.seed, budget=budget,
                                 temperature=options.llm_temperature)
        say(f"proposer: {getattr(proposer, 'name', type(proposer).__name__)}")
        where.mkdir(parents=True, exist_ok=True)
        return run_search(X=X, y=ds.y, legacy_margin=margin, task=model.task, folds=folds, proposer=proposer,
                          options=sopts, workdir=where, progress=say, **features), proposer

    chosen, selection = (), None
    if transforms is not None and transforms.transforms:
        say(f"search: with the {len(transforms.transforms)} transform(s); the gate refits them in each outer fold")
        derived, derived_proposer = search(transforms.X, workdir, base_features=[str(c) for c in inputs.X.columns],
                                           refit_features=transforms.refit)
        say("search: NSR alone (the model's features only), to judge the transforms against")
        alone, alone_proposer = search(inputs.X, workdir / "nsr-alone")
        selection = prefer(task=model.task, y=ds.y, legacy_margin=margin, alone=alone, derived=derived,
                           alpha=sopts.gate_alpha)
        say(f"transforms: selection → {selection.decision}: {selection.reason}")
        if selection.transforms:
            result, proposer, chosen = derived, derived_proposer, transforms.transforms
        else:
            result, proposer = alone, alone_proposer
    else:
        result, proposer = search(inputs.X, workdir)
        if transforms is not None:
            selection = prefer(task=model.task, y=ds.y, legacy_margin=margin, alone=result, derived=None,
                               alpha=sopts.gate_alpha)
    proposer_name = getattr(proposer, "name", type(proposer).__name__)
    slots = result.to_manifest()
    experts_module = aggregator_trees = aggregator_forest = None
    if result.shipped:
        say(f"gate: ensemble ships ({len(result.experts)} expert(s)); lowering experts to numba")
        module_dir = bw.path("experts/experts.py").parent
        experts_module = "experts/" + write_module(result.experts, list(ds.feature_names), module_dir,
                                                   transforms=chosen)["path"]
        agg_json = result.save_aggregator(workdir / "aggregator.json")
        if agg_json is not None:
            target = options.tree_target
            say(f"lowering the aggregator trees to {target.label}")
            aggregator_forest = load_forest(agg_json)
            aggregator_trees = target.lower(aggregator_forest, bw.root, name="aggregator")
    else:
        say(f"gate: legacy only — {result.gate.reason}")
    summary = {"experts": len(result.experts) if result.shipped else 0,
               "oof": slots["gate"].get("oof"), "test": slots["gate"].get("test"),
               "archive": str(result.archive_path)}
    if selection is not None:
        summary["transform_selection"] = selection.decision
    proposer_slot: dict = {"name": proposer_name}
    usage = getattr(proposer, "usage", None)
    if usage is not None and hasattr(usage, "as_dict"):
        u = summary["llm"] = usage.as_dict()
        proposer_slot["usage"] = {k: v for k, v in u.items() if k != "seconds"}
        say(f"LLM usage: {u['calls']} calls, {u['prompt_tokens']}+{u['completion_tokens']} tokens, "
            f"{u['seconds']:.1f} s, {u['accepted']}/{u['proposals']} proposals usable")
        if u.get("backend_errors"):
            say(f"warning: the LLM backend failed on {u['backend_errors']} of {u['calls']} calls (last: "
                f"{u['backend_error']}); the search went on without those proposals")
    if result.archive_path is not None:
        say(f"experience archive: {result.archive_path}")
    return SearchStage(result=result, slots=slots, proposer=proposer_slot, experts_module=experts_module,
                       aggregator_trees=aggregator_trees, summary=summary, aggregator_forest=aggregator_forest,
                       transforms=chosen, selection=selection)


# --------------------------------------------------------------------------- lower the ensemble


@dataclass(frozen=True)
class Lowered:
    """How the shipped experts are scored, and the lowerings beyond the trees.

    Attributes
    ----------
    experts_engine : ``"c"`` (the ensemble library), ``"numba"`` or ``None`` (no experts).
    ensemble : manifest entry of the C ensemble library (``ensemble/``), or ``None``.
    onnx_model : manifest entry of ``model.onnx`` (``--emit onnx``), or ``None``.
    """

    experts_engine: str | None = None
    ensemble: dict | None = None
    onnx_model: dict | None = None


def lower_ensemble_stage(inputs: Inputs, search: SearchStage | None, bw, out: Path, options: CompileOptions,
                         say: Progress, clock: "_StageClock | None" = None) -> Lowered:
    """The experts, the aggregator and the legacy trees into one C library when the trees are C (the library
    walks their node arrays) and the model has one output — else the numba module scores the experts — and,
    with ``--emit onnx``, the whole ensemble and its link as one ONNX graph (``model.onnx``)."""
    from .lower.expert_source import ExpertSource

    experts = search.slots["experts"] if search is not None else []
    aggregator = (search.slots["aggregator"] if search is not None else None) or {}
    aggregator_forest = search.aggregator_forest if search is not None else None
    transforms = search.shipped_transforms if search is not None else ()
    base_margin = aggregator.get("base_margin", "legacy+experts")
    bmap = read_base_map(aggregator.get("base_map"))   # (scale, shift); the identity when absent
    model, feature_names = inputs.model, list(inputs.ds.feature_names)
    engine = ensemble = onnx_model = None
    if experts:
        engine = "numba"
        if not options.tree_target.ensemble_library or model.num_class != 1:
            say("experts stay in the numba module (the C ensemble library needs C trees with one output)")
        else:
            from .lower.ensemble import lower_ensemble

            say("lowering experts, aggregator and legacy trees to one C library (ensemble/ensemble.so)")
            ensemble = lower_ensemble(
                bw.root, legacy=inputs.forest, experts=[ExpertSource.from_manifest(e) for e in experts],
                feature_names=feature_names, base_margin=base_margin, aggregator=aggregator_forest,
                transforms=transforms, base_map=bmap)
            engine = "c"
        if clock is not None:
            clock.done("lower_ensemble")
    if options.emit == "onnx":
        from .lower.onnx_graph import lower_onnx_graph

        say("lowering the whole ensemble to one ONNX graph (model.onnx)")
        onnx_model = lower_onnx_graph(
            bw.root, legacy=inputs.forest, experts=[ExpertSource.from_manifest(e) for e in experts],
            feature_names=feature_names, link=model.link, base_margin=base_margin, aggregator=aggregator_forest,
            transforms=transforms, base_map=bmap)
        if clock is not None:
            clock.done("lower_onnx")
    return Lowered(experts_engine=engine, ensemble=ensemble, onnx_model=onnx_model)


# --------------------------------------------------------------------------- the manifest


def build_manifest(*, inputs: Inputs, options: CompileOptions, legacy: dict, search: SearchStage | None,
                   lowered: Lowered, parity: dict, transforms: TransformStage | None = None) -> dict:
    """``manifest.json`` (without its file list, which :meth:`BundleWriter.publish` adds) from the stages' results.

    The one place that knows the manifest's layout; it holds the gate and its metrics
    but no wall times, so that the same inputs and seed give the same bundle bytes.
    """
    model, ds = inputs.model, inputs.ds
    manifest: dict = {
        "compiler": {"name": "fecc", "version": __version__},
        "inputs": {
            "model": {"file": inputs.model_path.name, "sha256": model.sha256, "format": model.format,
                      "library_version": model.library_version, "num_trees": model.num_trees},
            "data": {"file": inputs.data_path.name, "rows": int(len(ds.X)), "target": ds.target},
            "seed": options.seed,
        },
        "task": {"kind": model.task, "objective": model.objective, "link": model.link, "num_class": model.num_class},
        "features": _manifest_features(ds),
        "legacy": legacy,
        "transforms": [],
        "experts": [],
        "experts_module": None,
        "experts_engine": lowered.experts_engine,
        "ensemble": lowered.ensemble,
        "emit": options.emit,
        "onnx_model": lowered.onnx_model,
        "aggregator": None,
        "gate": {"decision": "legacy-only", "reason": "no search requested (--search none)"},
        "platform": {"system": platform.system(), "machine": platform.machine()},
        "parity": parity,
    }
    if search is not None:
        slots = search.slots
        aggregator = slots["aggregator"]
        if aggregator is not None and search.aggregator_trees is not None:
            aggregator = {**aggregator, "trees": search.aggregator_trees}
        manifest.update(experts=slots["experts"], aggregator=aggregator, gate=slots["gate"],
                        search={**slots["search"], "proposer": search.proposer})
        if search.experts_module is not None:
            manifest["experts_module"] = search.experts_module
        # the transforms ship with the experts (the legacy trees never read them)
        manifest["transforms"] = [t.to_dict() for t in search.shipped_transforms]
    if transforms is not None:
        st = {**transforms.stats(), "shipped": bool(manifest["transforms"])}
        if search is not None and search.selection is not None:
            st["selection"] = search.selection.to_manifest()
        manifest.setdefault("search", {})["transforms"] = st
    return manifest


# --------------------------------------------------------------------------- the driver


def compile_bundle(model_path: str | Path, data_path: str | Path, out: str | Path,
                   options: CompileOptions = CompileOptions(), progress: Progress | None = None) -> dict:
    """Compile ``model_path`` + ``data_path`` into a verified bundle at ``out`` (``fecc.compile``).

    Parameters
    ----------
    model_path : the legacy model (XGBoost JSON/UBJSON or LightGBM ``model.txt``).
    data_path : labelled compile data (parquet or CSV).
    out : the bundle directory to write (published atomically, once verified).
    options : every option, validated when built.
    progress : called with one line per notable step.

    Returns
    -------
    dict
        A summary of the run (gate decision, out-of-fold metrics, LLM usage, archive path,
        seconds).  The manifest holds the gate and its metrics but no wall times, so that
        the same inputs and seed give the same bundle bytes.

    Raises
    ------
    UserError
        Problems with the inputs or the options (one line each).
    CompileError
        When the compiled code fails its parity check.
    """
    from fecc_runtime.bundle import tree_engine

    from .bundle import BundleWriter

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
    inputs = read_inputs(model_path, data_path, options, say)
    model, ds, out = inputs.model, inputs.ds, Path(out)
    clock.done("frontend")

    with BundleWriter(out, force=options.force, sign_key=sign_key) as bw:
        target = options.tree_target
        say(target.legacy_line)
        legacy_entry = target.lower(inputs.forest, bw.root, name="legacy")
        legacy = tree_engine(bw.root, legacy_entry)
        clock.done("lower_legacy")

        search = transforms = None
        metrics: dict = {}
        if options.transforms == "teaming":
            transforms = run_transform_stage(inputs, legacy, out, options, say)
            metrics["transforms"] = transforms.summary()
            clock.done("transforms")
        if options.search == "nsr":
            search = run_search_stage(inputs, legacy, bw, out, options, say, transforms=transforms)
            metrics.update(search.summary)
            clock.done("search")
        lowered = lower_ensemble_stage(inputs, search, bw, out, options, say, clock)

        # parity vectors: reference outputs from xgboost (+ IR evaluator and xgboost for experts)
        reference = search.reference_margin(inputs) if search is not None else None
        parity = _parity(bw, inputs, reference, options.seed,
                         transforms=search.shipped_transforms if search is not None else ())
        clock.done("parity")
        manifest = build_manifest(inputs=inputs, options=options, legacy=legacy_entry, search=search,
                                  lowered=lowered, parity=parity, transforms=transforms)
        _write_report(bw, manifest, inputs=inputs, legacy=legacy, reference=reference,
                      bundle_oof=search.oof_margin if search is not None else None, out=out)
        say("report: report.html, report.md")
        clock.done("report")
        metrics["compile_seconds"] = round(time.perf_counter() - t0, 1)
        bw.write_text("README.md", _readme(inputs, manifest, options))
        # the staged bundle must load through the runtime exactly as a server would
        # (hashes + parity replay against the reference) before it is published
        bw.publish(manifest, verify=lambda staged: _verify_staged(staged, sign_key, both=options.emit == "onnx"))
        clock.done("verify_publish")
    metrics["stage_seconds"] = clock.seconds  # wall times: the summary only, never the bundle
    summary = dict(metrics, path=str(out), gate=manifest["gate"]["decision"])
    say(f"bundle written to {out} ({summary['gate']}, {metrics['compile_seconds']} s)")
    return summary


def _parity(bw, inputs: Inputs, reference, seed: int, transforms: tuple = ()) -> dict:
    """Parity vectors: compile rows (and edge rows) with the reference outputs, for the runtime's replay."""
    from fecc_runtime import apply_link

    P = _parity_inputs(inputs.X, seed, infinities=bool(transforms))
    margin_ref = reference_margin(inputs.model, P) if reference is None else reference(P)
    expected = apply_link(margin_ref, inputs.model.link)
    rows = P.to_numpy(dtype=np.float64)
    return {"inputs": bw.save_array("parity/inputs.npy", rows), "expected": bw.save_array("parity/expected.npy", expected),
            "output": "prediction", "atol": PARITY_ATOL, "rows": int(len(rows))}


def _write_report(bw, manifest: dict, *, inputs: Inputs, legacy, reference, bundle_oof, out: Path) -> None:
    """report.html, report.md and report/ (plots, the curves' data) into the staged bundle."""
    from .report import collect, write_report
    from .report.data import report_labels

    def legacy_margin(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(legacy.predict(np.ascontiguousarray(frame.to_numpy(), dtype=np.float32), margin=True),
                          dtype=np.float64)

    model, ds, X = inputs.model, inputs.ds, inputs.X
    agg = manifest.get("aggregator") or {}
    agg_json = workdir_for(out) / "aggregator.json" if agg.get("trees") else None
    y = report_labels(inputs.table, ds.target, ds.y, model.task, len(X))
    data = collect(task=model.task, manifest=manifest, frame=X, y=y, legacy_margin=legacy_margin,
                   bundle_margin=reference, bundle_oof=bundle_oof, model_source=model.source,
                   model_format=model.format, aggregator_json=agg_json)
    write_report(bw, manifest, data)


def _readme(inputs: Inputs, manifest: dict, options: CompileOptions) -> str:
    """The bundle's README.md: what it holds and how to load it."""
    from .templating import render

    model, ds = inputs.model, inputs.ds
    kind = options.tree_target.label
    experts_kind = ("C, one library with the trees; numba reference" if manifest["experts_engine"] == "c"
                    else "numba")
    contents = f"legacy trees ({kind})" + (f", experts ({experts_kind}), aggregator ({kind})"
                                           if manifest["experts"] else "")
    if options.emit == "onnx":
        contents += "; model.onnx (the whole ensemble as one ONNX graph, what the runtime scores)"
    return render(
        "bundle/README.md.j2", compiler_version=__version__, model_name=inputs.model_path.name,
        model_sha256=model.sha256, task_kind=model.task, objective=model.objective,
        n_features=len(ds.feature_names), output_desc=_output_desc(model.link), contents=contents,
        gate_line=_gate_line(manifest["gate"]), has_experts=bool(manifest["experts"]),
        example_row=_example_row(ds), platform=f"{platform.system()} {platform.machine()}",
    )


def _float32_view(X: pd.DataFrame) -> pd.DataFrame:
    """Round numeric features through float32, as the compiled trees see them.

    Experts and regions are fitted on exactly the values the runtime will feed them,
    so a threshold never falls between a float64 value and its float32 rounding.
    """
    out = X.copy()
    for c in out.columns:
        out[c] = out[c].astype(np.float32).astype(np.float64)
    return out


def _parity_inputs(X: pd.DataFrame, seed: int, infinities: bool = False) -> pd.DataFrame:
    """Parity rows: compile rows, then an all-missing and an all-zero row; with ``infinities``
    (a bundle with transforms, whose values overflow float32 and become NaN) also rows of ±1e38
    and rows with one feature each NaN, +1e38 or -1e38, so every engine's replay covers them
    (not ±inf itself: XGBoost, the legacy trees' reference, refuses infinite inputs)."""
    rng = np.random.default_rng(seed + 7919)
    idx = np.sort(rng.choice(len(X), size=min(PARITY_ROWS, len(X)), replace=False))
    rows = X.iloc[idx].reset_index(drop=True)
    edge = pd.DataFrame([rows.iloc[0]] * 2).reset_index(drop=True)
    edge.loc[0, :] = np.nan   # every feature missing
    edge.loc[1, :] = 0.0
    if infinities:
        more = pd.DataFrame([rows.iloc[i % len(rows)] for i in range(2 + 3 * X.shape[1])]).reset_index(drop=True)
        more.iloc[0, :] = HUGE
        more.iloc[1, :] = -HUGE
        for j in range(X.shape[1]):
            for k, v in enumerate((np.nan, HUGE, -HUGE)):
                more.iloc[2 + 3 * j + k, j] = v
        edge = pd.concat([edge, more], ignore_index=True)
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


class _StageClock:
    """Wall seconds per compile stage, for the summary (never the bundle: they are not reproducible)."""

    def __init__(self):
        self._t = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._t, 3)
        self._t = now




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
