"""``run_search``: the one short driver that chains the search's stages.

Cross-fitting, on two levels (:mod:`fecc.search.crossfit`):

* **the search** (:func:`search_once`) makes every choice — structures, parameters,
  strengths, the aggregator's rounds — on out-of-fold predictions over all the rows it
  is given (*inner* folds), and refits what it keeps on all of them.  Its stages:
  the whole-space chain (an additive correction over several features), CART regions
  on the residual that remains (one chain each), the aggregator on the experts'
  out-of-fold outputs.
* **the gate** judges the *whole search* the same way: for each *outer* fold the search
  runs from scratch on the other folds and predicts the held-out rows; a paired test of
  these out-of-fold predictions against the legacy model decides whether the search
  run on all compile rows ships.  No row ever judges anything that was fitted, chosen
  or selected with its label — the selection of structures and regions included.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

# the bundle format's expert contract (names, semantics, the aggregator's input layout);
# EXPERT_SEMANTICS and function_names are re-exported for fecc.search's callers
from fecc_runtime.format import EXPERT_SEMANTICS, base_margin, function_names, interaction_features  # noqa: F401

from ..ir import to_math, to_postfix
from ..llm.base import Proposer
from . import metrics
from .aggregate import Aggregator, fit_aggregator
from .archive import Archive
from .base_map import fit_base_map
from .crossfit import Folds, make_folds
from .experts import Chain, ChainOutcome, Expert, Rows
from .gate import GateResult, decide
from .options import SearchOptions
from .regions import Region, find_regions


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
    gate : the safety gate's decision (paired test on out-of-fold predictions).
    regions : every hard region found.
    dropped : chains whose expert did not earn its place, with the reason.
    options : the options used.
    archive_path : the SQLite experience archive.
    chains : one entry per chain: region, proposals asked, structure changes accepted, kept.
    folds : the gate's (outer) cross-fitting layout.
    inner : the search's own (inner) layout over all compile rows.
    outer : one entry per outer fold: rows, experts its search kept, its held-out gain.
    inner_gain : the search's inner out-of-fold metric gain over legacy (optimistic: its
        rows also chose the structures; the gate does not read it).
    oof_margin : what the gate judged — each compile row's ensemble margin from the
        search run without its outer fold (``None`` when the search kept nothing).
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
    folds: Folds | None = None
    inner: Folds | None = None
    outer: list[dict] = field(default_factory=list)
    inner_gain: float | None = None
    oof_margin: np.ndarray | None = None

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
        return self.aggregator.ensemble_margin(X[self.feature_names], m, self.experts)

    def expert_entries(self) -> list[dict]:
        out = []
        for e in self.experts:
            out.append({
                "name": e.name,
                **function_names(e.name),
                "semantics": EXPERT_SEMANTICS,
                "region": {"rule": e.region_rule, "postfix": to_postfix(e.region), "cart_region": e.region_index,
                           "whole_space": e.region_index == 0},
                "correction": {"math": to_math(e.correction), "postfix": to_postfix(e.correction),
                               "structure": to_postfix(e.structure)},
                "params": dict(e.params),
                "strength": e.strength,
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
                "protocol": {"outer": self.folds.to_manifest() if self.folds is not None else None,
                             "inner": self.inner.to_manifest() if self.inner is not None else None},
                "outer_folds": list(self.outer),
                "inner_gain": None if self.inner_gain is None else round(float(self.inner_gain), 6),
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




def _check_inputs(X, y, legacy_margin, task):
    metrics.check_task(task)
    if not isinstance(X, pd.DataFrame):
        raise TypeError("X must be a pandas DataFrame (model feature order)")
    n = len(X)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    m = np.asarray(legacy_margin, dtype=np.float64).reshape(-1)
    if y.shape[0] != n or m.shape[0] != n:
        raise ValueError(f"X has {n} rows, y {y.shape[0]}, legacy_margin {m.shape[0]}")
    # The bundle feeds the experts the float32-rounded values the compiled trees read
    # (XGBoost compares in float32); the search sees exactly those values, so thresholds
    # and corrections are chosen on what is served.
    X = X.astype(np.float32).astype(np.float64)
    X.columns = [str(c) for c in X.columns]  # IR features are named by strings
    return X, y, m


@dataclass
class Fitted:
    """What one run of the search keeps, fitted on the rows it was given."""

    experts: list[Expert]
    aggregator: Aggregator | None
    regions: list[Region]
    chains: list[dict]
    dropped: list[dict]
    inner: Folds
    inner_oof: np.ndarray | None      # the search's own out-of-fold ensemble margin on its rows

    def margin(self, X: pd.DataFrame, legacy_margin: np.ndarray) -> np.ndarray:
        """Ensemble margin on new rows (legacy margin when nothing was kept)."""
        m = np.asarray(legacy_margin, dtype=np.float64).reshape(-1)
        if not self.experts or self.aggregator is None:
            return m.copy()
        return self.aggregator.ensemble_margin(X, m, self.experts)


def _inner_folds(y: np.ndarray, task: str, options: SearchOptions, seed: int) -> Folds:
    return make_folds(y, task=task, k=options.n_folds, repeats=options.fold_repeats or None, seed=seed)


def search_once(*, X: pd.DataFrame, y: np.ndarray, m: np.ndarray, task: str, inner: Folds, proposer: Proposer,
                options: SearchOptions, archive: Archive | None, deadline: float,
                progress: Callable[[str], None] | None = None) -> Fitted:
    """One run of the search on rows ``X`` (already float32-rounded, string columns).

    Every choice is made on ``inner`` out-of-fold predictions; what is kept is fitted on
    all of ``X``.  Nothing here is the gate: :func:`run_search` judges this whole
    function on rows it never saw.
    """
    say = progress or (lambda _m: None)
    names = [str(c) for c in X.columns]
    # from here on m is the base margin the search repairs (fecc.search.base_map)
    scale, shift = fit_base_map(task, y, m) if options.base_map == "affine" else (1.0, 0.0)
    m = base_margin(m, scale, shift)
    rows = Rows(X, y, m)
    F = inner.n_fits
    base = np.tile(m, (F + 1, 1))          # per fit (and the full fit): legacy + experts so far
    outcomes: list[ChainOutcome] = []
    regions: list[Region] = []
    n_chains = int(options.global_expert) + options.n_regions

    def run_chain(region: list[Region | None] | None, no: int, of: int) -> None:
        opts = options if region is not None else replace(options, max_proposals=options.global_proposals)
        chain = Chain(region=region, task=task, rows=rows, folds=inner, base=base, proposer=proposer,
                      options=opts, archive=archive, deadline=deadline, progress=progress, position=(no, of))
        outcome = chain.run()
        outcomes.append(outcome)
        if outcome.kept:
            base[:] += outcome.per_fit

    if options.global_expert:
        run_chain(None, 1, n_chains)  # the regions are not known yet: at most this many chains
    if options.n_regions:
        # every fit finds its own regions on its own training rows (the rows it is judged on
        # never chose where it looks); the full fit's regions are the ones that ship
        per_fit = []
        for j in range(F + 1):
            train = np.arange(rows.n) if j == F else inner.train(j)
            target = metrics.region_target(task, y[train], base[j, train], options.region_target)
            per_fit.append(find_regions(X.iloc[train], target, n_regions=options.n_regions,
                                        depth=options.cart_depth, min_leaf=options.min_leaf,
                                        refine_width=options.refine_width, seed=options.seed))
        regions = per_fit[F]
        say(f"search: {len(regions)} hard region(s) from CART on the {options.region_target} residual")
        for rank in range(len(regions)):
            slot = [r[rank] if rank < len(r) else None for r in per_fit]
            run_chain(slot, 1 + int(options.global_expert) + rank, int(options.global_expert) + len(regions))

    experts, dropped, kept = [], [], []
    chains = [{"cart_region": o.expert.region_index, "proposals": o.expert.proposals,
               "accepted": o.expert.iterations, "kept": bool(o.kept), "strength": o.expert.strength}
              for o in outcomes]
    for o in outcomes:
        if o.kept:
            experts.append(replace(o.expert, name=f"expert_{len(experts) + 1}"))
            kept.append(o)
            say(f"search: {experts[-1].name} ← {o.expert.region_rule}: {o.reason}")
        else:
            dropped.append({"cart_region": o.expert.region_index, "rule": o.expert.region_rule,
                            "correction": to_math(o.expert.correction), "reason": o.reason})
            say(f"search: {o.expert.region_rule} dropped: {o.reason}")
    aggregator = inner_oof = None
    if experts:
        # out-of-fold expert values of every cut: f_k = legacy + g_k inside the fit's region, NaN outside
        phis = []
        for r in range(inner.repeats):
            values = np.column_stack([
                np.where(inner.oof(o.masks[:F].astype(float))[r] > 0.5, m + inner.oof(o.per_fit[:F])[r], np.nan)
                for o in kept])
            phis.append(interaction_features(m, values))
        aggregator, inner_oof = fit_aggregator(task=task, X=X.to_numpy(np.float64), phi=phis, y=y, folds=inner,
                                               model_features=names, expert_names=[e.name for e in experts],
                                               options=options, base_map=(scale, shift))
        say(f"search: aggregator {aggregator.kind} ({aggregator.n_rounds} rounds; out-of-fold {aggregator.cv})")
    return Fitted(experts, aggregator, regions, chains, dropped, inner, inner_oof)


# The outer folds' searches may run in a helper process (``python -m
# fecc.search._outer_worker``): a plain subprocess, neither forked (a fork after
# XGBoost's OpenMP threads started can deadlock) nor multiprocessing-spawned (which
# re-imports the caller's main module).  The data reach it pickled, once.
_OUTER: dict = {}


def _init_outer(payload: dict) -> None:
    _OUTER.clear()
    _OUTER.update(payload)


def _outer_fit(j: int) -> tuple[int, np.ndarray, dict]:
    c = _OUTER
    folds: Folds = c["folds"]
    X, y, m, task, options = c["X"], c["y"], c["m"], c["task"], c["options"]
    train, test = folds.train(j), folds.test(j)
    Xtr = X.iloc[train].reset_index(drop=True)
    Xte = X.iloc[test].reset_index(drop=True)
    inner = _inner_folds(y[train], task, options, seed=options.seed * 7919 + 101 * (j + 1))
    workdir = Path(c["workdir"]) / "outer"
    workdir.mkdir(parents=True, exist_ok=True)
    derived = None
    if c.get("refit_features") is not None:
        # derived features (transforms) chosen on all rows saw this fold's held-out labels:
        # the fold chooses its own on its training rows alone, from the base features
        base = list(c["base_features"])
        fold = c["refit_features"](Xtr[base], y[train], m[train], task, seed=options.seed * 7919 + 101 * (j + 1),
                                   workdir=workdir / f"fold{j + 1}_features")
        Xtr, Xte = fold.augment(Xtr[base]), fold.augment(Xte[base])
        derived = fold.summary()
    with Archive(workdir / f"fold{j + 1}.sqlite", run=f"seed{options.seed}-outer{j + 1}", options=options.to_dict(),
                 started=c["started"]) as archive:
        fitted = search_once(X=Xtr, y=y[train], m=m[train], task=task, inner=inner, proposer=c["proposer"],
                             options=options, archive=archive, deadline=c["deadline"])
    margin = fitted.margin(Xte, m[test])
    gain = metrics.score(task, y[test], margin) - metrics.score(task, y[test], m[test])
    info = {"fold": j, "train_rows": int(train.size), "test_rows": int(test.size),
            "experts": len(fitted.experts), "chains": len(fitted.chains),
            "aggregator": fitted.aggregator.kind if fitted.aggregator is not None else None,
            "gain": round(float(gain), 6) if np.isfinite(gain) else None}
    if derived is not None:
        info["derived_features"] = derived
    return j, margin, info


def _fork_safe(proposer: Proposer) -> bool:
    """Proposers that can be pickled into a helper process (the LLM backends hold models)."""
    from ..llm.grammar_proposer import GrammarProposer

    return type(proposer) is GrammarProposer


def _start_helper(payload: dict, fits: list[int], workdir: Path):
    import pickle
    import subprocess
    import sys

    outer = workdir / "outer"
    outer.mkdir(parents=True, exist_ok=True)
    job = outer / "helper-job.pkl"
    result = outer / "helper-result.pkl"
    result.unlink(missing_ok=True)
    with open(job, "wb") as fh:
        pickle.dump({"payload": payload, "fits": fits, "result": str(result)}, fh, protocol=pickle.HIGHEST_PROTOCOL)
    err = open(outer / "helper-stderr.txt", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "fecc.search._outer_worker", str(job)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    return proc, result, err, outer / "helper-stderr.txt"


def _join_helper(helper) -> list[tuple[int, np.ndarray, dict]]:
    import pickle

    proc, result, err, err_path = helper
    rc = proc.wait()
    err.close()
    if rc != 0 or not result.is_file():
        tail = err_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the outer-fold helper process failed (exit {rc}): {tail}")
    with open(result, "rb") as fh:
        return pickle.load(fh)


def run_search(*, X: pd.DataFrame, y: np.ndarray, legacy_margin: np.ndarray, task: str, folds: Folds,
               proposer: Proposer, options: SearchOptions, workdir: Path,
               progress: Callable[[str], None] | None = None, base_features: list[str] | None = None,
               refit_features: Callable | None = None) -> SearchResult:
    """Search experts that repair a frozen legacy model, and judge the search on unseen rows.

    Parameters
    ----------
    X : float64 columns in model feature order; NaN is missing.  Values are rounded to
        float32 first, as the bundle's runtime does before scoring.
    y : labels (0/1 for binary).
    legacy_margin : the frozen legacy model's margin on every row of ``X``.
    task : ``"binary"`` or ``"regression"``.
    folds : the gate's (outer) cross-fitting layout over the rows of ``X``
        (:func:`fecc.search.crossfit.make_folds`).
    proposer : structure proposer (LLM backend or :class:`fecc.llm.grammar_proposer.GrammarProposer`).
    options : :class:`SearchOptions` (``n_folds``/``fold_repeats`` give the search's own
        inner folds; ``n_workers`` how many processes run the outer folds' searches).
    workdir : where the experience archives are written (``archive.sqlite`` for the search
        on all rows, ``outer/fold<k>.sqlite`` for each outer fold's).
    progress : called with one line per notable step; if it also has a ``chain_step`` method
        (e.g. :class:`fecc.progress.Reporter`), that gets a
        :class:`~fecc.search.experts.ChainStep` after every proposal of every chain of the
        search on all rows.
    base_features, refit_features : when ``X`` holds derived columns (the transforms of
        seed 000, chosen on all rows) after its ``base_features``: ``refit_features(X_base,
        y, legacy_margin, task, seed=, workdir=)`` chooses them again on each outer fold's
        training rows and returns an object with ``augment(X_base) -> X`` and ``summary()``
        (JSON, recorded as the fold's ``derived_features``); the fold's search and its
        held-out margin use those columns, so the gate also judges the choice of the
        derived features on rows it never saw.  Picklable when ``n_workers > 1``.

    Returns
    -------
    SearchResult
    """
    say = progress or (lambda _m: None)
    X, y, m = _check_inputs(X, y, legacy_margin, task)
    if folds.n != len(X):
        raise ValueError(f"folds cover {folds.n} rows, X has {len(X)}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    deadline = started + options.time_budget_s
    names = [str(c) for c in X.columns]
    inner = _inner_folds(y, task, options, seed=options.seed)
    say(f"search: {inner.k}-fold cross-fitting{f' x {inner.repeats} cuts' if inner.repeats > 1 else ''} over "
        f"{len(X)} rows; the gate reruns it in {folds.n_fits} outer folds")

    if refit_features is not None and not base_features:
        raise ValueError("refit_features needs base_features, the columns it starts from")
    payload = dict(folds=folds, X=X, y=y, m=m, task=task, options=options, proposer=proposer, workdir=str(workdir),
                   deadline=deadline, started=started, base_features=base_features, refit_features=refit_features)
    _init_outer(payload)
    outer_margin = np.zeros((folds.repeats, folds.n))
    outer: list[dict] = [{}] * folds.n_fits

    def take(done: tuple[int, np.ndarray, dict]) -> None:
        j, margin, info = done
        outer_margin[j // folds.k, folds.test(j)] = margin
        outer[j] = info
        say(f"gate: outer fold {j + 1}/{folds.n_fits}: the search on {info['train_rows']} rows kept "
            f"{info['experts']} expert(s); held-out {metrics.metric_name(task)} gain {info['gain']:+.4f}")

    helper = None
    if options.n_workers > 1 and _fork_safe(proposer) and folds.n_fits > 1:
        # a helper process takes every other outer fold while this one runs the full search
        theirs = list(range(1, folds.n_fits, 2))
        helper = _start_helper(payload, theirs, workdir)
    mine = [j for j in range(folds.n_fits) if helper is None or j % 2 == 0]
    try:
        with Archive(workdir / "archive.sqlite", run=f"seed{options.seed}-{started:.0f}", options=options.to_dict(),
                     started=started) as archive:
            full = search_once(X=X, y=y, m=m, task=task, inner=inner, proposer=proposer, options=options,
                               archive=archive, deadline=deadline, progress=progress)
        for j in mine:
            take(_outer_fit(j))
        if helper is not None:
            for done in _join_helper(helper):
                take(done)
            helper = None
    finally:
        if helper is not None:
            helper[0].kill()
            helper[0].wait()
        _OUTER.clear()

    inner_gain = None
    if full.inner_oof is not None:
        inner_gain = metrics.score(task, y, full.inner_oof) - metrics.score(task, y, m)
    masks = {e.name: e.mask(X) for e in full.experts}
    no_gain = "the search kept no expert on the compile rows" if full.chains else "no chain ran"
    # the outer searches are judged even when the search on all rows kept nothing: the test
    # is then a report (what the search would have gained), never a reason to ship
    judged = any(o.get("experts") for o in outer)
    oof_margin = outer_margin.mean(axis=0) if judged else None
    gate = decide(task=task, y=y, legacy_margin=m, ensemble_margin=oof_margin,
                  folds=folds, region_masks=masks, alpha=options.gate_alpha, no_experts_reason=no_gain)
    if not full.experts and oof_margin is not None:
        gate.decision = "legacy-only"
        gate.reason = f"{no_gain} (out of fold: {gate.reason})"
    say(f"search: gate → {gate.decision}: {gate.reason}")
    return SearchResult(task=task, feature_names=names, experts=full.experts, aggregator=full.aggregator, gate=gate,
                        regions=full.regions, dropped=full.dropped, options=options,
                        archive_path=workdir / "archive.sqlite", chains=full.chains, folds=folds, inner=inner,
                        outer=outer, inner_gain=inner_gain, oof_margin=oof_margin)
