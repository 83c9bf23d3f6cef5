"""``run_search``: the one short driver that chains the search's stages.

Splits: region finding and parameter fitting use ``train``; structure choice, the
experts' significance test and the aggregator use ``valid``; ``holdout`` is read once,
by the gate, at the very end.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from fecc_runtime.experts import interaction_features

from ..ir import to_math, to_postfix
from ..llm.base import Proposer
from . import metrics
from .aggregate import Aggregator, fit_aggregator
from .archive import Archive
from .experts import Chain, ChainOutcome, Expert, _Split
from .gate import GateResult, decide
from .options import SearchOptions
from .regions import Region, find_regions

#: What an expert means, written into the manifest next to each expert.
EXPERT_SEMANTICS = ("margin space: f(x) = base_margin(x) + correction(x) if region(x) else NaN; "
                    "a correction that is NaN or +-inf on a row counts as 0")


def function_names(expert_name: str) -> dict[str, str]:
    """Names of the emitted module's functions for one expert (the manifest lists them)."""
    return {"function": expert_name, "batch_function": f"{expert_name}_batch",
            "region_function": f"{expert_name}_region", "correction_function": f"{expert_name}_correction"}


@dataclass
class SearchResult:
    """Everything the search decided.

    Attributes
    ----------
    task : ``"binary"`` or ``"regression"``.
    feature_names : model features, in model order (the experts' ``x[j]`` indices).
    experts : kept experts, ``expert_1`` … in region order.
    aggregator : the fitted aggregator (``kind`` ``"xgboost"`` with a booster, or ``"sum"``), or
        ``None`` when no expert was kept.
    gate : the safety gate's decision on the holdout.
    regions : every hard region found.
    dropped : chains whose expert did not earn its place, with the reason.
    options : the options used.
    archive_path : the SQLite experience archive.
    chains : one entry per chain: region, proposals asked, structure changes accepted, kept.
    """

    task: str
    feature_names: list[str]
    experts: list[Expert]
    aggregator: Aggregator | None
    gate: GateResult
    regions: list[Region] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    options: SearchOptions = field(default_factory=SearchOptions)
    archive_path: Path | None = None
    chains: list[dict] = field(default_factory=list)

    @property
    def acceptance(self) -> tuple[int, int]:
        """(accepted, proposed) structure changes over every chain (the seed bias not counted)."""
        return (sum(c["accepted"] for c in self.chains), sum(c["proposals"] for c in self.chains))

    @property
    def shipped(self) -> bool:
        """Whether the gate lets the experts and aggregator into the bundle."""
        return self.gate.decision == "ensemble"

    @property
    def booster(self):
        """The aggregator's ``xgboost.Booster``, or ``None``."""
        return self.aggregator.booster if self.aggregator is not None else None

    @property
    def aggregator_feature_names(self) -> list[str]:
        return list(self.aggregator.feature_names) if self.aggregator is not None else []

    def save_aggregator(self, path: Path) -> Path | None:
        """Write the aggregator booster as XGBoost JSON; ``None`` when there is no booster."""
        return self.aggregator.save_json(path) if self.aggregator is not None else None

    def predict_margin(self, X: pd.DataFrame, legacy_margin: np.ndarray) -> np.ndarray:
        """Final margin of what ships, computed with the IR's numpy evaluator (for parity vectors).

        ``legacy_margin`` when the gate said legacy-only; else the aggregator's margin over
        ``x ⊕ [ŷ_base, φ]`` exactly as the bundle's runtime computes it.
        """
        m = np.asarray(legacy_margin, dtype=np.float64).reshape(-1)
        if not self.shipped or self.aggregator is None:
            return m.copy()
        X = X.astype(np.float32).astype(np.float64)  # what the runtime feeds the experts
        X.columns = [str(c) for c in X.columns]
        values = np.column_stack([e.values(X, m) for e in self.experts])
        return self.aggregator.margin(X[self.feature_names].to_numpy(np.float64), interaction_features(m, values))

    def expert_entries(self) -> list[dict]:
        out = []
        for e in self.experts:
            out.append({
                "name": e.name,
                **function_names(e.name),
                "semantics": EXPERT_SEMANTICS,
                "region": {"rule": e.region_rule, "postfix": to_postfix(e.region), "cart_region": e.region_index},
                "correction": {"math": to_math(e.correction), "postfix": to_postfix(e.correction),
                               "structure": to_postfix(e.structure)},
                "params": dict(e.params),
                "features": sorted({*_features(e.region), *_features(e.correction)},
                                   key=self.feature_names.index),
                "metrics": e.metrics,
                "iterations": e.iterations,
                "proposals": e.proposals,
                "history": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in h.items()}
                            for h in e.history],
            })
        return out

    def to_manifest(self) -> dict:
        """JSON-serialisable ``experts``, ``aggregator`` and ``gate`` slots (plus ``search``).

        When the gate says legacy-only, ``experts`` is empty and ``aggregator`` is ``None``;
        the candidates that were refused stay visible under ``gate["candidates"]``.
        """
        return _jsonable(self._manifest())

    def _manifest(self) -> dict:
        gate = self.gate.to_manifest()
        gate["dropped"] = list(self.dropped)
        entries = self.expert_entries()
        if not self.shipped:
            gate["candidates"] = entries
            return {"experts": [], "aggregator": None, "gate": gate, "search": self._search_slot()}
        return {"experts": entries, "aggregator": self.aggregator.to_manifest() if self.aggregator else None,
                "gate": gate, "search": self._search_slot()}

    def _search_slot(self) -> dict:
        return {"options": self.options.to_dict(), "chains": list(self.chains),
                "regions": [{"index": r.index, "rule": r.rule(), "score": r.score, "n_train": r.n_train,
                             "mean_abs_residual": r.mean_abs_residual} for r in self.regions]}


def _jsonable(value):
    """Plain JSON types only; NaN and ±inf (not valid JSON) become ``None``."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def _features(expr) -> tuple[str, ...]:
    from ..ir import features_of

    return features_of(expr)


def _check_inputs(X, y, legacy_margin, task, splits):
    metrics.check_task(task)
    if not isinstance(X, pd.DataFrame):
        raise TypeError("X must be a pandas DataFrame (model feature order)")
    n = len(X)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    m = np.asarray(legacy_margin, dtype=np.float64).reshape(-1)
    if y.shape[0] != n or m.shape[0] != n:
        raise ValueError(f"X has {n} rows, y {y.shape[0]}, legacy_margin {m.shape[0]}")
    missing = {"train", "valid", "holdout"} - set(splits)
    if missing:
        raise ValueError(f"splits lacks {sorted(missing)}")
    idx = {k: np.asarray(splits[k], dtype=np.int64) for k in ("train", "valid", "holdout")}
    # The bundle feeds the experts the float32-rounded values the compiled trees read
    # (XGBoost compares in float32); the search sees exactly those values, so thresholds
    # and corrections are chosen on what is served.
    X = X.astype(np.float32).astype(np.float64)
    X.columns = [str(c) for c in X.columns]  # IR features are named by strings
    return X, y, m, idx


def run_search(*, X: pd.DataFrame, y: np.ndarray, legacy_margin: np.ndarray, task: str,
               splits: dict[str, np.ndarray], proposer: Proposer, options: SearchOptions, workdir: Path,
               progress: Callable[[str], None] | None = None) -> SearchResult:
    """Search experts that repair a frozen legacy model, fit the aggregator, run the gate.

    Parameters
    ----------
    X : float64 columns in model feature order; NaN is missing.  Values are rounded to
        float32 first, as the bundle's runtime does before scoring.
    y : labels (0/1 for binary).
    legacy_margin : the frozen legacy model's margin on every row of ``X``.
    task : ``"binary"`` or ``"regression"``.
    splits : row indices ``"train"``, ``"valid"``, ``"holdout"``.
    proposer : structure proposer (LLM backend or :class:`fecc.llm.grammar.GrammarProposer`).
    options : :class:`SearchOptions`.
    workdir : where the experience archive (``archive.sqlite``) is written.
    progress : called with one line per notable step; if it also has a ``chain_step`` method
        (e.g. :class:`fecc.progress.Reporter`), that gets a
        :class:`~fecc.search.experts.ChainStep` after every proposal of every chain.

    Returns
    -------
    SearchResult
    """
    say = progress or (lambda _m: None)
    X, y, m, idx = _check_inputs(X, y, legacy_margin, task, splits)
    workdir = Path(workdir)
    started = time.time()
    names = [str(c) for c in X.columns]
    parts = {k: _Split(X.iloc[v].reset_index(drop=True), y[v], m[v]) for k, v in idx.items()}
    train, valid, hold = parts["train"], parts["valid"], parts["holdout"]

    target = metrics.region_target(task, train.y, train.margin, options.region_target)
    regions = find_regions(train.frame, target, n_regions=options.n_regions, depth=options.cart_depth,
                           min_leaf=options.min_leaf, refine_width=options.refine_width, seed=options.seed)
    say(f"search: {len(regions)} hard region(s) from CART on the {options.region_target} residual ({train.n} train rows)")

    archive_path = workdir / "archive.sqlite"
    outcomes: list[ChainOutcome] = []
    with Archive(archive_path, run=f"seed{options.seed}-{started:.0f}", options=options.to_dict(),
                 started=started) as archive:
        deadline = started + options.time_budget_s
        for no, region in enumerate(regions, 1):
            chain = Chain(region=region, task=task, train=train, valid=valid, proposer=proposer,
                          options=options, archive=archive, deadline=deadline, progress=progress,
                          position=(no, len(regions)))
            outcomes.append(chain.run())

    experts, dropped = [], []
    chains = [{"cart_region": o.expert.region_index, "proposals": o.expert.proposals,
               "accepted": o.expert.iterations, "kept": bool(o.kept)} for o in outcomes]
    for o in outcomes:
        if o.kept:
            experts.append(replace(o.expert, name=f"expert_{len(experts) + 1}"))
            say(f"search: {experts[-1].name} ← region {o.expert.region_index}: {o.reason}")
        else:
            dropped.append({"cart_region": o.expert.region_index, "rule": o.expert.region_rule,
                            "correction": to_math(o.expert.correction), "reason": o.reason})
            say(f"search: region {o.expert.region_index} dropped: {o.reason}")

    def phi(split: _Split) -> np.ndarray:
        values = np.column_stack([e.values(split.cols, split.margin) for e in experts]) if experts \
            else np.empty((split.n, 0))
        return interaction_features(split.margin, values)

    aggregator = None
    ensemble_hold = None
    no_gain = "no expert earned its place on the valid split" if regions else "no hard region found"
    if experts:
        aggregator = fit_aggregator(task=task, X=valid.frame.to_numpy(np.float64), phi=phi(valid), y=valid.y,
                                    model_features=names, expert_names=[e.name for e in experts], options=options)
        say(f"search: aggregator {aggregator.kind} ({aggregator.n_rounds} rounds; cv {aggregator.cv})")
        if aggregator.kind == "sum" and aggregator.base == "legacy":
            no_gain = "the aggregator found nothing to add to the legacy margin (cross-validation on valid)"
        else:
            ensemble_hold = aggregator.margin(hold.frame.to_numpy(np.float64), phi(hold))

    # the holdout is read here, once
    masks = {e.name: e.mask(hold.cols) for e in experts}
    for e in experts:
        mask = masks[e.name]
        own = hold.margin.copy()
        own[mask] = own[mask] + e.corrections(hold.subset(mask))
        e.metrics["holdout"] = {"region": metrics.report(task, hold.y[mask], own[mask]),
                                "region_legacy": metrics.report(task, hold.y[mask], hold.margin[mask])}
    gate = decide(task=task, y=hold.y, legacy_margin=hold.margin, ensemble_margin=ensemble_hold,
                  region_masks=masks, tolerance=options.gate_tolerance,
                  no_experts_reason=no_gain)
    say(f"search: gate → {gate.decision}: {gate.reason}")
    return SearchResult(task=task, feature_names=names, experts=experts, aggregator=aggregator, gate=gate,
                        regions=regions, dropped=dropped, options=options, archive_path=archive_path,
                        chains=chains)
