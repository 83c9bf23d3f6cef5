"""The NSR stage of the driver: search experts, lower what the gate lets through.

Chains :func:`fecc.search.run_search` (seed 004) with the backends: experts into one
numba module (``experts/experts.py``), the aggregator booster into C like the legacy
trees.  Returns the manifest slots and a reference predictor (IR numpy evaluator +
xgboost) for the bundle's parity vectors.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .errors import UserError


@dataclass
class StageResult:
    manifest_slots: dict
    #: run facts for the compile summary, not the manifest (wall times would break determinism)
    summary: dict
    reference_margin: Callable[[pd.DataFrame], np.ndarray] | None
    #: what the gate judged: the searches' held-out ensemble margin on every compile row (None: nothing kept)
    oof_margin: np.ndarray | None = None


def workdir_for(out: Path) -> Path:
    """Where the search keeps its experience archive: beside the bundle, never inside it."""
    out = Path(out)
    return out.with_name(out.name + ".work")


def run_nsr(*, model, ds, X: pd.DataFrame, legacy, bw, out: Path, options, progress) -> StageResult:
    from .llm.registry import make_proposer
    from .lower import tree_lowering
    from .lower.numba_backend import write_module
    from .search import SearchOptions, run_search
    from .search.crossfit import gate_folds

    say = progress
    try:
        sopts = SearchOptions.from_dict({"seed": options.seed, **options.search_options})
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad search option: {exc}") from None
    folds = gate_folds(ds.y, task=model.task, k=sopts.gate_folds, inner_k=sopts.n_folds, seed=options.seed)
    margin = np.asarray(legacy.predict(np.ascontiguousarray(X.to_numpy(), dtype=np.float32), margin=True),
                        dtype=np.float64)
    from .llm.llm_proposer import Budget

    budget = Budget(max_calls=options.llm_max_calls, max_tokens=options.llm_max_tokens,
                    max_seconds=options.llm_max_seconds)
    proposer = make_proposer(options.llm, record=options.record, seed=options.seed, budget=budget,
                             temperature=options.llm_temperature)
    say(f"proposer: {getattr(proposer, 'name', type(proposer).__name__)}")
    workdir = workdir_for(out)
    workdir.mkdir(parents=True, exist_ok=True)
    result = run_search(X=X, y=ds.y, legacy_margin=margin, task=model.task, folds=folds, proposer=proposer,
                        options=sopts, workdir=workdir, progress=say)
    slots = result.to_manifest()
    if result.shipped:
        say(f"gate: ensemble ships ({len(result.experts)} expert(s)); lowering experts to numba")
        module_dir = bw.path("experts/experts.py").parent
        module = write_module(result.experts, list(ds.feature_names), module_dir)
        slots["experts_module"] = "experts/" + module["path"]
        agg_json = result.save_aggregator(workdir / "aggregator.json")
        if agg_json is not None:
            say(f"lowering the aggregator trees to {'C' if options.trees == 'c' else 'ONNX'}")
            lower = tree_lowering(options.trees)
            slots["aggregator"]["trees"] = lower(agg_json, bw.root, name="aggregator", model_format="xgboost_json")
    else:
        say(f"gate: legacy only — {result.gate.reason}")
    summary = {"experts": len(result.experts) if result.shipped else 0,
               "oof": slots["gate"].get("oof"), "test": slots["gate"].get("test"),
               "archive": str(result.archive_path)}
    usage = getattr(proposer, "usage", None)
    # who proposed the experts, for auditors; counts only (wall times would break determinism)
    slots["search"]["proposer"] = {"name": getattr(proposer, "name", type(proposer).__name__)}
    if usage is not None and hasattr(usage, "as_dict"):
        summary["llm"] = usage.as_dict()
        u = summary["llm"]
        slots["search"]["proposer"]["usage"] = {k: v for k, v in u.items() if k != "seconds"}
        say(f"LLM usage: {u['calls']} calls, {u['prompt_tokens']}+{u['completion_tokens']} tokens, "
            f"{u['seconds']:.1f} s, {u['accepted']}/{u['proposals']} proposals usable")
    if result.archive_path is not None:
        say(f"experience archive: {result.archive_path}")
    reference = (lambda P: result.predict_margin(P, _legacy_reference(model, P))) if result.shipped else None
    return StageResult(manifest_slots=slots, summary=summary, reference_margin=reference,
                       oof_margin=result.oof_margin)


def _legacy_reference(model, P: pd.DataFrame) -> np.ndarray:
    from .frontend import reference_margin

    return reference_margin(model, P)
