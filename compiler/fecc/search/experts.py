"""Expert chains: seed 004's bi-level search, one chain per region (§4.2), cross-fitted.

A chain keeps a *seed function* — the current correction ``g`` of the margin inside its
region — and improves it in two nested loops:

* **outer loop**: the proposer (an LLM or the grammar proposer) returns an edited
  structure ``g'`` with named free parameters and their ranges.  The proposal is
  validated as IR (known features, declared parameters, size limits) and checked to
  actually change the function on the region, then fitted and judged.  It is promoted
  to the new seed iff its out-of-fold score exceeds the current one minus an
  annealing tolerance ``τ`` (``tau0``, decaying by ``tau_decay`` per proposal).  Every
  outcome becomes a positive or negative constraint for the next prompt, and
  parse/evaluation failures are fed back as ``ctx.feedback``.
* **inner loop**: :class:`fecc.search.crossfit.Fitter` — new shape constants tuned by
  Optuna TPE (``optuna_trials``) on the chain's rows, inherited shape constants frozen,
  linear weights solved in closed form.  *Boundary refinement*: the seed step of a CART
  region (``g_0 = @c_0``) also tunes the region's thresholds within ``refine_width`` stds.

**Which rows fit and which rows judge** (:mod:`fecc.search.crossfit`): a candidate's
shape constants are tuned once on the chain's rows; then, in every cross-fitting fit,
its weights are solved on that fit's training rows (inside that fit's own CART region)
and judged on its held-out rows.  The chain's score is the out-of-fold loss reduction
over *all* its rows, as a fraction of the legacy model's loss
(``score = (L_legacy − L) / L_legacy``, higher is better; log loss for binary, squared
error for regression).  The full fit (all rows) is what ships.  These choices are the
search's own; whether what it ships beats the legacy model is judged one level up
(:func:`fecc.search.driver.run_search`), on rows the whole search never saw.

At the end the chain's best correction is **shrunk**: the strength ``s ∈ [0, 1]`` that
minimises the out-of-fold loss of ``base + s·g`` (a weak expert ships weakly; ``s = 0``
drops it), and the shipped correction is ``s · g_full``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from ..ir import Binary, Const, Expr, IRValidationError, Limits, Param, bind, evaluate, params_of, simplify, \
    to_postfix, validate
from ..llm.base import BudgetExhausted, ParamRange, Proposal, ProposalContext, ProposalError, Proposer
from . import metrics
from .archive import Archive
from .crossfit import Fitter, Folds, best_shrink, round_sig, solve_weights, tpe_minimize
from .options import SearchOptions
from .regions import Region, rule_text
from .stats import feature_stats, sample_instances

#: Keep this many recent summaries as positive / negative constraints in the prompt.
MAX_CONSTRAINTS = 8
#: The predicate of the whole-space expert: true on every row (``0 <= 1``).
EVERYWHERE = Binary("le", Const(0.0), Const(1.0))
EVERYWHERE_RULE = "everywhere (the whole feature space)"

__all__ = ["Chain", "ChainOutcome", "ChainStep", "Expert", "Rows", "EVERYWHERE", "round_sig"]


@dataclass(frozen=True)
class ChainStep:
    """Where one chain stands, sent to a progress reporter after every proposal.

    A reporter is any ``progress`` callable that also has a ``chain_step(step)`` method
    (plain callables only get the text lines).  ``best`` and ``legacy`` are the chain's
    out-of-fold score (fraction of the legacy loss removed) and the legacy model's (0).
    ``llm_seconds`` is the time the proposer spent answering for this chain (0 for the
    grammar proposer); ``outcome`` is set on the chain's last step (``done``).
    """

    chain: str
    chain_no: int
    n_chains: int
    proposal: int
    max_proposals: int
    accepted: int
    iterations: int
    metric_name: str
    best: float
    legacy: float
    llm_seconds: float
    seconds: float
    last: str = ""
    done: bool = False
    outcome: str = ""


@dataclass
class Expert:
    """One symbolic expert, in margin space: ``f(x) = base(x) + correction(x)`` inside ``region``, NaN outside.

    A correction that is NaN or ±inf on a row counts as 0 there (the row keeps the
    legacy margin).

    Attributes
    ----------
    name : ``expert_1`` … (stable, in chain order).
    region_index : index of the CART region the chain started from (0: the whole space).
    region : IR predicate with thresholds bound (the full fit's refined thresholds).
    region_rule : readable rule text.
    correction : IR numeric expression, every parameter bound, strength included: what ships.
    structure : the correction with free parameters (``@name``), as searched.
    params : the full fit's value of each parameter of ``structure`` and each refined threshold.
    strength : the shrinkage ``s`` the shipped correction carries (``s · g_full``).
    metrics : ``{"oof": …, "full": …}`` — out-of-fold and in-sample metrics on the region.
    iterations : accepted structure changes.
    proposals : proposals evaluated.
    history : one dict per evaluated candidate (intent, postfix, score, status).
    """

    name: str
    region_index: int
    region: Expr
    region_rule: str
    correction: Expr
    structure: Expr
    params: dict[str, float]
    strength: float = 1.0
    metrics: dict[str, dict] = field(default_factory=dict)
    iterations: int = 0
    proposals: int = 0
    history: list[dict] = field(default_factory=list)

    def mask(self, data) -> np.ndarray:
        """Rows inside the region (``data``: DataFrame or dict of columns)."""
        return evaluate(self.region, data)

    def corrections(self, data) -> np.ndarray:
        """``g(x)`` on every row, non-finite values replaced by 0."""
        g = evaluate(self.correction, data)
        return np.where(np.isfinite(g), g, 0.0)

    def values(self, data, base: np.ndarray) -> np.ndarray:
        """``f(x)`` in margin space: ``base + g`` inside the region, NaN outside (numpy reference)."""
        base = np.asarray(base, dtype=np.float64)
        return np.where(self.mask(data), base + self.corrections(data), np.nan)


@dataclass
class ChainOutcome:
    """What a chain returns: its expert, whether it ships, and its per-fit corrections.

    ``per_fit[j]`` is fit ``j``'s shrunk correction on every compile row (0 outside its
    region), ``j = folds.n_fits`` the full fit; ``masks[j]`` its region membership.
    """

    expert: Expert
    kept: bool
    reason: str
    per_fit: np.ndarray | None = None
    masks: np.ndarray | None = None


class Rows:
    """The compile rows as the evaluator wants them: columns, labels, legacy margin."""

    def __init__(self, X: pd.DataFrame, y: np.ndarray, legacy: np.ndarray):
        self.frame = X
        self.cols = {c: X[c].to_numpy(dtype=np.float64) for c in X.columns}
        self.y = np.asarray(y, dtype=np.float64)
        self.legacy = np.asarray(legacy, dtype=np.float64)
        self.n = len(X)

    def subset(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        return {c: v[idx] for c, v in self.cols.items()}


def _finite(v: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(v), v, 0.0)


def _outward(v: float, *, up: bool) -> float:
    """``v`` to 6 significant digits, rounded away from the inside of the clamp (never narrower)."""
    r = round_sig(v)
    if v == 0 or (up and r >= v) or (not up and r <= v):
        return r
    step = 10.0 ** (np.floor(np.log10(abs(v))) - 5)
    return round_sig(r + step if up else r - step)


@dataclass
class _Candidate:
    """One structure fitted in every fit: parameters, per-fit corrections, OOF score."""

    structure: Expr
    params: list[dict[str, float]]          # per fit (0 … F−1)
    per_fit: np.ndarray                     # (F, n) correction on every row, 0 outside the fit's region
    score: float
    full_params: dict[str, float] | None = None
    bounds: tuple[float, float] = (0.0, 0.0)     # the full fit's clamp (range on its rows)


@dataclass
class _Walk:
    """The outer loop's state: the current and best states, constraints, temperature, counts."""

    current: _Candidate
    best: _Candidate
    best_full: np.ndarray
    states: list[tuple[_Candidate, np.ndarray]]   # every accepted state, simplest first
    tau: float
    start_score: float
    positive: list[str] = field(default_factory=list)
    negative: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    feedback: str | None = None
    accepted: int = 0
    proposals: int = 0
    stats: object = None
    inst: object = None
    tau_decay: float = 0.7

    def cool(self) -> bool:
        """The annealing temperature decays after every proposal, whatever became of it."""
        self.tau *= self.tau_decay
        return True


class Chain:
    """One expert chain (see the module docstring).  Call :meth:`run`.

    Parameters
    ----------
    region : the CART region of each fit (``F + 1`` entries, the last the full fit's;
        ``None`` where that fit's CART tree has no leaf of this rank), or ``None`` for the
        whole-space expert.  Each fit finds its regions on its own training rows, so the
        rows that judge a fit never chose where it looks.
    rows : every compile row.
    folds : the cross-fitting layout.
    base : ``(F + 1, n)`` margin each fit starts from (legacy plus the experts of earlier
        chains as that fit fitted them); row ``F`` is the full fit.
    """

    def __init__(self, *, region: list[Region | None] | None, task: str, rows: Rows, folds: Folds, base: np.ndarray,
                 proposer: Proposer, options: SearchOptions, archive: Archive | None, deadline: float,
                 progress: Callable[[str], None] | None = None, position: tuple[int, int] = (1, 1)):
        self.fit_regions = region
        self.region = region[-1] if region is not None else None
        self.task = task
        self.rows = rows
        self.folds = folds
        self.base = np.asarray(base, dtype=np.float64)
        self.proposer = proposer
        self.options = options
        self.archive = archive
        self.deadline = deadline
        self.progress = progress or (lambda _m: None)
        self._step_sink = getattr(progress, "chain_step", None)
        self.position = position
        self.name = "global" if self.region is None else f"region_{self.region.index}"
        self.features = tuple(rows.frame.columns)
        self.F = folds.n_fits
        # corrections live in margin units: logits for binary, the residual's spread for regression
        if task == "binary":
            self.scale = 3.0
        else:
            self.scale = float(2.0 * np.std(rows.y - rows.legacy)) or 1.0
        index = 0 if self.region is None else self.region.index
        self.seed = int(options.seed) * 1_000_003 + index * 10_007
        loss = metrics.loss_rows(task, rows.y, rows.legacy)
        self.legacy_loss = float(np.mean(loss))
        self.oof_base = folds.oof(self.base[: self.F])           # (R, n)
        self.base_loss = self._oof_loss(np.zeros((self.F, rows.n)))

    # -- scores -----------------------------------------------------------------------
    def _oof_loss(self, per_fit: np.ndarray) -> float:
        return float(np.mean(self._row_losses(per_fit)))

    def _row_losses(self, per_fit: np.ndarray) -> np.ndarray:
        """Each row's out-of-fold loss (averaged over the cuts)."""
        margin = self.oof_base + self.folds.oof(per_fit)
        return np.mean([metrics.loss_rows(self.task, self.rows.y, m) for m in margin], axis=0)

    def _score(self, per_fit: np.ndarray) -> float:
        """Out-of-fold loss reduction over all rows, as a fraction of the legacy loss."""
        return (self.legacy_loss - self._oof_loss(per_fit)) / self.legacy_loss if self.legacy_loss > 0 else 0.0

    # -- regions ----------------------------------------------------------------------
    def _mask(self, j: int, thresholds: dict[str, float]) -> np.ndarray:
        if self.fit_regions is None:
            return np.ones(self.rows.n, dtype=bool)
        region = self.fit_regions[j]
        if region is None:  # this fit found no region of this rank: it corrects nothing
            return np.zeros(self.rows.n, dtype=bool)
        return evaluate(region.predicate, self.rows.cols, thresholds)

    def _refine(self, region: Region, train: np.ndarray, base: np.ndarray, seed: int) -> dict[str, float]:
        """Boundary refinement: thresholds (TPE) with the region's constant bias profiled out."""
        start = dict(region.thresholds)
        if not (self.options.refine_boundaries and region.ranges):
            return start
        y, b = self.rows.y[train], base[train]
        sub = {c: v[train] for c, v in self.rows.cols.items()}
        before = metrics.loss_rows(self.task, y, b)

        def change(values: dict[str, float]) -> float:
            mask = evaluate(region.predicate, sub, values)
            if mask.sum() < min(self.options.min_leaf, region.n_train):
                return float("inf")
            w = solve_weights(self.task, y[mask], b[mask], np.ones((int(mask.sum()), 1)), self.options.ridge)
            after = metrics.loss_rows(self.task, y[mask], b[mask] + w[0])
            return float(np.sum(after - before[mask]) / y.size)

        best = tpe_minimize(lambda values: change({**start, **values}), region.ranges, start,
                            trials=self.options.optuna_trials, seed=seed)
        values = {**start, **best}
        return values if np.isfinite(change(values)) else start

    # -- fitting ----------------------------------------------------------------------
    def _correction(self, fitter: Fitter, mask: np.ndarray, params: dict[str, float],
                    train: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        """The correction on every row of ``mask`` (0 elsewhere), clamped to the range it took on ``train``.

        The clamp is the IR's ``max(min(g, hi), lo)``: an expert never moves a margin
        further than it moved one of the rows it was fitted on, however far a new row
        lies outside them.  Non-finite values then count as 0, as everywhere.
        """
        g = np.zeros(self.rows.n)
        inside = np.flatnonzero(mask)
        raw = evaluate(fitter.structure, self.rows.subset(inside), params)
        seen = raw[np.isin(inside, train)]
        seen = seen[np.isfinite(seen)]
        lo, hi = (float(seen.min()), float(seen.max())) if seen.size else (0.0, 0.0)
        g[inside] = _finite(np.maximum(np.minimum(raw, hi), lo))
        return g, (lo, hi)

    def _candidate(self, structure: Expr, space: dict[str, ParamRange], frozen: dict[str, float],
                   seed: int) -> tuple[_Candidate, np.ndarray]:
        """Fit ``structure`` on all rows (TPE for the new shape constants), then re-solve its
        weights in every cross-fitting fit on that fit's training rows; score out of fold.

        Returns the candidate and its full-fit correction on every row.
        """
        fitter = Fitter(self.task, structure, space, ridge=self.options.ridge, trials=self.options.optuna_trials)
        full_rows = np.flatnonzero(self.masks[self.F])
        if full_rows.size < 2:
            raise ValueError("fewer than 2 rows in the region")
        full = fitter.fit(self.rows.y[full_rows], self.base[self.F, full_rows], self.rows.subset(full_rows),
                          frozen, seed)
        shape = {k: v for k, v in full.items() if k in fitter.shape_params}
        params, per_fit = [], np.zeros((self.F, self.rows.n))
        for j in range(self.F):
            train = np.flatnonzero(self.masks[j] & ~self.folds.test_mask(j))
            if train.size < 2:  # an empty region in this fit: it corrects nothing
                params.append(dict(full))
                continue
            p = fitter.solve(self.rows.y[train], self.base[j, train], self.rows.subset(train), shape)
            params.append(p)
            per_fit[j], _ = self._correction(fitter, self.masks[j], p, train)
        g_full, bounds = self._correction(fitter, self.masks[self.F], full, full_rows)
        cand = _Candidate(structure, params, per_fit, self._score(per_fit), full_params=full, bounds=bounds)
        return cand, g_full

    # -- the prompt -------------------------------------------------------------------
    def _context(self, current: Expr, current_params: dict[str, float], current_score: float, region: Expr,
                 stats, instances, positive, negative, feedback, accepted: int, proposal: int) -> ProposalContext:
        objective = "binary:logistic" if self.task == "binary" else "reg:squarederror"
        where = "everywhere" if self.region is None else "inside one hard region"
        return ProposalContext(
            task=(f"{self.task} task: add a correction to the frozen legacy model's margin "
                  f"({'log-odds' if self.task == 'binary' else 'prediction'}) {where}"),
            objective=objective,
            metric_name="out-of-fold loss reduction (share of the legacy loss)",
            region_rule=self._rule(region),
            region=region,
            features=self.features,
            current=current,
            current_params=dict(current_params),
            current_metric=current_score,
            feature_stats=stats,
            instances=instances,
            positive=tuple(positive[-MAX_CONSTRAINTS:]),
            negative=tuple(negative[-MAX_CONSTRAINTS:]),
            feedback=feedback,
            iteration=accepted,
            seed=self.seed + proposal,
            extra={"correction_scale": self.scale,
                   "reserved": tuple(sorted({t for r in (self.fit_regions or []) if r is not None
                                             for t in r.thresholds})),
                   "proposal": proposal, "region_rows_train": int(self.masks[self.F].sum())},
        )

    def _rule(self, region: Expr) -> str:
        return EVERYWHERE_RULE if self.region is None else rule_text(region)

    def _prompt_data(self, g_full: np.ndarray, proposal: int):
        """Feature stats and annotated instances under the *current* hybrid (error feedback)."""
        mask = self.masks[self.F]
        margin = self.base[self.F][mask] + g_full[mask]
        resid = metrics.residuals(self.task, self.rows.y[mask], margin)
        frame = self.rows.frame.loc[mask]
        stats = feature_stats(frame, self.rows.frame, resid)
        rng = np.random.default_rng(self.seed + 7919 * proposal)
        inst = sample_instances(self.task, frame, self.rows.y[mask], margin, self.options.n_instances, rng,
                                legacy=self.rows.legacy[mask])
        return stats, inst

    def _llm_seconds(self) -> float:
        usage = getattr(self.proposer, "usage", None)
        return float(getattr(usage, "seconds", 0.0) or 0.0)

    def _step(self, *, proposal: int, accepted: int, best: float, legacy: float, llm0: float, t0: float,
              last: str = "", done: bool = False, outcome: str = "") -> None:
        if self._step_sink is None:
            return
        self._step_sink(ChainStep(
            chain=self.name, chain_no=self.position[0], n_chains=self.position[1], proposal=proposal,
            max_proposals=self.options.max_proposals, accepted=accepted, iterations=self.options.iterations,
            metric_name="oof gain", best=best, legacy=legacy,
            llm_seconds=self._llm_seconds() - llm0, seconds=time.perf_counter() - t0, last=last, done=done,
            outcome=outcome))

    def _record(self, **row):
        self._last = f"{row.get('intent') or ''}: {row.get('status', '')}".lstrip(": ")
        if self.archive is not None:
            self.archive.record(chain=self.name, proposer=getattr(self.proposer, "name", "?"), **row)

    # -- the chain ----------------------------------------------------------------------
    def run(self) -> ChainOutcome:
        """Run the chain; progress reporters get a :class:`ChainStep` per proposal and a final one."""
        self._state: dict = {}
        outcome = self._run()
        if self._state:
            self._step(**self._state, done=True, outcome=("kept: " if outcome.kept else "dropped: ") + outcome.reason)
        return outcome

    def _seed_stage(self, t0: float) -> tuple[_Candidate, np.ndarray, Expr, dict[str, float]]:
        """The seed function: a constant bias in the region, thresholds refined per fit."""
        structure: Expr = Param("c_0")
        space = {"c_0": ParamRange(-self.scale, self.scale, init=0.0)}
        # each fit keeps its own CART region; the full fit's thresholds are refined (TPE)
        thresholds = [dict(r.thresholds) if r is not None else {} for r in (self.fit_regions or [None] * (self.F + 1))]
        if self.region is not None:
            thresholds[self.F] = self._refine(self.region, np.arange(self.rows.n), self.base[self.F], self.seed + 17)
        self.thresholds = thresholds
        self.masks = np.vstack([self._mask(j, t) for j, t in enumerate(thresholds)])
        cand, g_full = self._candidate(structure, space, {}, self.seed)
        region = EVERYWHERE if self.region is None else self.region.bound(thresholds[self.F])
        refined = self.region is not None and self.options.refine_boundaries and bool(self.region.ranges)
        self._record(region_rule=self._rule(region), region_postfix=to_postfix(region), iteration=0, proposal=0,
                     intent="seed: constant bias" + (" + boundary refinement" if refined else ""),
                     expr_postfix=to_postfix(structure), params_json={**cand.full_params, **thresholds[self.F]},
                     space_json={k: vars(v) for k, v in {**space, **(self.region.ranges if refined else {})}.items()},
                     train_loss=None, valid_score=cand.score, previous_score=self._score(np.zeros_like(cand.per_fit)),
                     tau=None, status="accepted", seconds=time.perf_counter() - t0)
        return cand, g_full, region, thresholds[self.F]

    def _run(self) -> ChainOutcome:
        """The outer loop: ask, check, fit, judge — until the budget or the iterations run out."""
        t0 = time.perf_counter()
        llm0 = self._llm_seconds()
        start_score = self._score(np.zeros((self.F, self.rows.n)))
        current, g_full, region, thresholds = self._seed_stage(t0)
        self.progress(f"{self.name}: seed bias {current.full_params['c_0']:+.4g}, out-of-fold gain "
                      f"{current.score - start_score:+.5f}; rule {self._rule(region)}")
        walk = _Walk(current=current, best=current, best_full=g_full, states=[(current, g_full)],
                     tau=self.options.tau0, tau_decay=self.options.tau_decay, start_score=start_score)
        walk.history.append({"proposal": 0, "intent": "seed: constant bias", "postfix": to_postfix(current.structure),
                             "params": dict(current.full_params), "oof_score": round(current.score, 8),
                             "status": "accepted"})
        walk.stats, walk.inst = self._prompt_data(g_full, 0)
        region_cols = self.rows.subset(np.flatnonzero(self.masks[self.F]))
        while True:
            self._state = dict(proposal=walk.proposals, accepted=walk.accepted, best=walk.best.score - start_score,
                               legacy=0.0, llm0=llm0, t0=t0, last=getattr(self, "_last", ""))
            self._step(**self._state)
            if not (walk.accepted < self.options.iterations and walk.proposals < self.options.max_proposals
                    and time.time() < self.deadline):
                break
            if not self._proposal(walk, region, region_cols):
                break
        pick, pick_full = self._one_se(walk.states, walk.best)
        if pick is not walk.best:
            self.progress(f"{self.name}: one-standard-error rule keeps the simpler state "
                          f"(out-of-fold gain {pick.score - start_score:+.5f} vs best "
                          f"{walk.best.score - start_score:+.5f})")
        return self._finish(pick, pick_full, region, thresholds, start_score, walk.accepted, walk.proposals,
                            walk.history)

    def _proposal(self, walk: _Walk, region: Expr, region_cols: dict[str, np.ndarray]) -> bool:
        """One proposal: ask, check, fit and judge it.  ``False`` when the chain must stop (budget)."""
        walk.proposals += 1
        t1 = time.perf_counter()
        current = walk.current
        ctx = self._context(current.structure, current.full_params, current.score, region, walk.stats, walk.inst,
                            walk.positive, walk.negative, walk.feedback, walk.accepted, walk.proposals)
        common = dict(region_rule=self._rule(region), region_postfix=to_postfix(region), iteration=walk.accepted,
                      proposal=walk.proposals, previous_score=current.score, tau=walk.tau)
        try:
            prop: Proposal = self.proposer.propose(ctx)
        except BudgetExhausted as e:  # the whole compile's LLM budget: stop asking, keep what we have
            if not e.usage.get("calls"):
                walk.proposals -= 1  # nothing was asked
            self._record(**common, status="budget", message=e.reason, seconds=time.perf_counter() - t1)
            self.progress(f"{self.name}: {e.reason}; the chain stops here")
            return False
        except ProposalError as e:
            walk.feedback = f"the previous answer was unusable: {e.reason}"
            self._record(**common, status="proposer-error", message=e.reason, raw=e.raw, usage_json=e.usage,
                         seconds=time.perf_counter() - t1)
            return walk.cool()
        except Exception as e:  # noqa: BLE001 - a crashing backend costs a proposal, not the compile
            self._record(**common, status="proposer-error", message=f"{type(e).__name__}: {e}",
                         seconds=time.perf_counter() - t1)
            return walk.cool()
        tried = dict(common, intent=prop.intent, expr_postfix=to_postfix(prop.expr), raw=prop.raw,
                     usage_json=prop.usage)
        new_names = [p for p in params_of(prop.expr) if p not in current.full_params]
        try:
            self._check(prop, current.full_params, new_names)
        except IRValidationError as e:
            walk.feedback = f"the previous answer was rejected: {e}"
            self._record(**tried, status="invalid", space_json={k: vars(v) for k, v in prop.space.items()},
                         message=str(e), seconds=time.perf_counter() - t1)
            return walk.cool()
        space = {k: v for k, v in prop.space.items() if k in new_names}
        if not self._changes(prop.expr, current, space, region_cols, walk.proposals):
            msg = "the edit does not change the correction on the region's rows"
            walk.negative.append(f"{prop.intent}: no effect on the region")
            walk.feedback = msg
            self._record(**tried, status="no-change", message=msg, seconds=time.perf_counter() - t1)
            return walk.cool()
        walk.feedback = None
        try:
            cand, g_cand = self._candidate(prop.expr, space, current.full_params, self.seed + 101 * walk.proposals)
        except Exception as e:  # noqa: BLE001 - a candidate that cannot be evaluated is a failed candidate
            walk.feedback = f"evaluating the previous answer failed: {type(e).__name__}: {e}"
            self._record(**tried, status="failed", message=walk.feedback, seconds=time.perf_counter() - t1)
            return walk.cool()
        self._judge(walk, prop, cand, g_cand, space, tried, t1)
        return walk.cool()

    def _check(self, prop: Proposal, cur_params: dict[str, float], new_names: list[str]) -> None:
        """Raise :class:`IRValidationError` unless the proposal is valid IR that adds a free parameter."""
        reserved = {t for r in (self.fit_regions or []) if r is not None for t in r.thresholds}
        validate(prop.expr, features=self.features, params=set(cur_params) | set(prop.space),
                 expect="num", limits=Limits())
        if not new_names:
            raise IRValidationError(["the structure adds no new parameter to tune"])
        clash = sorted(set(new_names) & reserved)
        if clash:
            raise IRValidationError([f"parameter name(s) {', '.join('@' + c for c in clash)} are "
                                     "reserved for the region's thresholds"])

    def _changes(self, expr: Expr, current: _Candidate, space: dict[str, ParamRange],
                 region_cols: dict[str, np.ndarray], proposal: int) -> bool:
        """Does the structure change the function on the region at all?  (Cheap, before fitting.)"""
        probe_rng = np.random.default_rng(self.seed + 31 * proposal)
        before = evaluate(current.structure, region_cols, current.full_params)
        with np.errstate(all="ignore"):
            for _ in range(3):
                probe = {**current.full_params, **{k: float(probe_rng.uniform(r.low, r.high)) for k, r in space.items()}}
                after = evaluate(expr, region_cols, probe)
                if not np.array_equal(np.nan_to_num(after), np.nan_to_num(before)):
                    return True
        return False

    def _judge(self, walk: _Walk, prop: Proposal, cand: _Candidate, g_cand: np.ndarray,
               space: dict[str, ParamRange], tried: dict, t1: float) -> None:
        """Annealing: tolerate a small loss early on; an edit that leaves the score exactly
        where it was only adds complexity, so it is not promoted."""
        current, start_score = walk.current, walk.start_score
        ok = bool(np.isfinite(cand.score)) and cand.score > current.score - walk.tau and cand.score != current.score
        status = "accepted" if ok else "rejected"
        summary = (f"{prop.intent}: out-of-fold gain {cand.score - start_score:+.5f} vs "
                   f"{current.score - start_score:+.5f} ({status})")
        (walk.positive if ok and cand.score >= current.score else walk.negative).append(summary)
        walk.history.append({"proposal": walk.proposals, "intent": prop.intent, "postfix": to_postfix(prop.expr),
                             "params": dict(cand.full_params or {}), "oof_score": round(cand.score, 8),
                             "status": status})
        self._record(**tried, status=status, params_json=cand.full_params,
                     space_json={k: vars(v) for k, v in space.items()}, valid_score=cand.score,
                     seconds=time.perf_counter() - t1)
        if not ok:
            return
        walk.accepted += 1
        walk.current = cand
        walk.states.append((cand, g_cand))
        if cand.score > walk.best.score:
            walk.best, walk.best_full = cand, g_cand
        walk.stats, walk.inst = self._prompt_data(g_cand, walk.proposals)
        self.progress(f"{self.name}: accepted '{prop.intent}' → out-of-fold gain {cand.score - start_score:+.5f}")

    def _one_se(self, states: list[tuple[_Candidate, np.ndarray]], best: _Candidate):
        """The simplest accepted state whose out-of-fold score is within one standard error of the best.

        Breiman's one-SE rule: the best of many candidates scored on the same rows is
        optimistic; a simpler state that is statistically as good generalises better.
        The standard error is that of the paired per-row loss difference.
        """
        top = self._row_losses(best.per_fit)
        for cand, g in states:
            if cand is best:
                return cand, g
            d = self._row_losses(cand.per_fit) - top
            se = float(np.std(d, ddof=1) / np.sqrt(d.size)) / self.legacy_loss if self.legacy_loss > 0 else 0.0
            if cand.score >= best.score - se:
                return cand, g
        return states[-1]

    def _finish(self, best: _Candidate, g_full: np.ndarray, region: Expr, thresholds: dict[str, float],
                start_score: float, accepted: int, proposals: int, history: list[dict]) -> ChainOutcome:
        """Shrink the best correction out of fold, bind the full fit, and say whether it ships."""
        oof_g = self.folds.oof(best.per_fit)
        y = np.tile(self.rows.y, self.folds.repeats)
        s, _ = best_shrink(self.task, y, self.oof_base.reshape(-1), oof_g.reshape(-1))
        correction = simplify(bind(best.structure, best.full_params))
        if s != 1.0:
            correction = simplify(Binary("mul", Const(s), correction))
        lo, hi = _outward(s * best.bounds[0], up=False), _outward(s * best.bounds[1], up=True)
        correction = Binary("max", Binary("min", correction, Const(hi)), Const(lo))
        per_fit = np.vstack([s * best.per_fit, s * g_full[None, :]])
        shrunk_score = self._score(s * best.per_fit)
        mask_full = self.masks[self.F]
        oof_mask = self.folds.oof(self.masks[: self.F].astype(float))[0] > 0.5
        oof_margin = self.oof_base[0] + self.folds.oof(per_fit[: self.F])[0]
        y0 = self.rows.y

        def region_metrics(mask, margin):
            return {"region": metrics.report(self.task, y0[mask], margin[mask]),
                    "region_legacy": metrics.report(self.task, y0[mask], self.rows.legacy[mask])}

        expert = Expert(
            name=self.name, region_index=0 if self.region is None else self.region.index, region=region,
            region_rule=self._rule(region), correction=correction, structure=best.structure,
            params={**best.full_params, **thresholds}, strength=s,
            metrics={
                "oof": {**region_metrics(oof_mask, oof_margin),
                        "gain": round(float(shrunk_score - start_score), 8),
                        "gain_unshrunk": round(float(best.score - start_score), 8),
                        "strength": s},
                "full": region_metrics(mask_full, self.base[self.F] + per_fit[self.F]),
            },
            iterations=accepted, proposals=proposals, history=history,
        )
        if s == 0.0:
            return ChainOutcome(expert, False, "out-of-fold shrinkage chose strength 0: the correction does not "
                                               "reduce the loss on rows it was not fitted on")
        return ChainOutcome(expert, True, f"out-of-fold gain {shrunk_score - start_score:+.5f} of the legacy loss at "
                                          f"strength {s:g}", per_fit=per_fit, masks=self.masks.copy())
