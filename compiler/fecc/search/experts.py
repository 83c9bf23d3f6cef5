"""Expert chains: seed 004's bi-level search, one chain per hard region (§4.2).

A chain keeps a *seed function* — the current correction ``g`` of the legacy margin
inside its region — and improves it in two nested loops:

* **outer loop**: the proposer (an LLM or the grammar proposer) returns an edited
  structure ``g'`` with named free parameters and their ranges.  The proposal is
  validated as IR (known features, declared parameters, size limits), checked to
  actually change the function on the region, then tuned.  With the tuned parameters
  it is scored on the *valid* split (AUC of the whole split, or −RMSE) and promoted to
  the new seed iff ``score > A_prev − τ``, where the annealing tolerance ``τ`` starts
  at ``tau0`` and decays by ``tau_decay`` after each proposal.  Every outcome becomes a
  positive or negative constraint for the next prompt, and parse/evaluation failures
  are fed back as ``ctx.feedback``.
* **inner loop**: Optuna's TPE minimises the train loss of ``legacy + g'`` over the
  train split in ``optuna_trials`` trials, warm-started at the proposer's ``init``
  values.  *Incremental freezing*: the parameters inherited from the current seed keep
  their values; only the new ones are searched.  *Boundary refinement*: the first
  inner loop of a chain (the constant seed ``g_0 = @c_0``) also searches the region's
  thresholds within ``refine_width`` train stds of their CART values; after that the
  region is frozen.

Tuned parameters are rounded to 6 significant digits *before* validation, so the
emitted code holds short literals and what was validated is what ships.

Parameters are fitted on train, structures chosen on valid, and at the end the chain's
best seed must *earn its place*: its per-row loss reduction on the valid rows of its
region must have a paired z statistic of at least ``expert_min_z``.  Experts that fail
are dropped (recorded with the reason); the holdout split is not touched here.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import optuna
import pandas as pd

from ..ir import Expr, IRValidationError, Limits, Param, bind, evaluate, params_of, simplify, to_postfix, validate
from ..llm.base import BudgetExhausted, ParamRange, Proposal, ProposalContext, ProposalError, Proposer
from . import metrics
from .archive import Archive
from .options import SearchOptions
from .regions import Region, rule_text
from .stats import feature_stats, sample_instances

optuna.logging.set_verbosity(optuna.logging.WARNING)
logging.getLogger("optuna").setLevel(logging.WARNING)

#: Keep this many recent summaries as positive / negative constraints in the prompt.
MAX_CONSTRAINTS = 8


@dataclass(frozen=True)
class ChainStep:
    """Where one chain stands, sent to a progress reporter after every proposal.

    A reporter is any ``progress`` callable that also has a ``chain_step(step)`` method
    (plain callables only get the text lines).  ``llm_seconds`` is the time the proposer
    spent answering for this chain (0 for the grammar proposer); ``outcome`` is set on
    the chain's last step (``done``).
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


def round_sig(value: float, digits: int = 6) -> float:
    """``value`` rounded to ``digits`` significant digits (finite values only)."""
    return float(f"{value:.{digits}g}") if np.isfinite(value) else float(value)


@dataclass
class Expert:
    """One symbolic expert, in margin space: ``f(x) = base(x) + correction(x)`` inside ``region``, NaN outside.

    A correction that is NaN or ±inf on a row counts as 0 there (the row keeps the
    legacy margin).

    Attributes
    ----------
    name : ``expert_1`` … (stable, in region order).
    region_index : index of the CART region the chain started from.
    region : IR predicate with thresholds bound (after boundary refinement).
    region_rule : readable rule text.
    correction : IR numeric expression with every parameter bound to a constant.
    structure : the correction with free parameters (``@name``), as searched.
    params : the value of each parameter of ``structure`` and each refined threshold.
    metrics : ``{"train": …, "valid": …}`` (``"holdout"`` added by the gate).
    iterations : accepted structure changes.
    proposals : proposals evaluated.
    history : one dict per evaluated candidate (intent, postfix, score, status).
    z : paired z statistic of the valid loss reduction in the region.
    """

    name: str
    region_index: int
    region: Expr
    region_rule: str
    correction: Expr
    structure: Expr
    params: dict[str, float]
    metrics: dict[str, dict] = field(default_factory=dict)
    iterations: int = 0
    proposals: int = 0
    history: list[dict] = field(default_factory=list)
    z: float = 0.0

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
    """What a chain returns: its best expert and whether it earned its place."""

    expert: Expert
    kept: bool
    reason: str


class _Split:
    """Columns, labels and legacy margins of one split, as the evaluator wants them."""

    def __init__(self, X: pd.DataFrame, y: np.ndarray, margin: np.ndarray):
        self.frame = X
        self.cols = {c: X[c].to_numpy(dtype=np.float64) for c in X.columns}
        self.y = np.asarray(y, dtype=np.float64)
        self.margin = np.asarray(margin, dtype=np.float64)
        self.n = len(X)

    def subset(self, mask: np.ndarray) -> dict[str, np.ndarray]:
        return {c: v[mask] for c, v in self.cols.items()}


class Chain:
    """One expert chain (see the module docstring).  Call :meth:`run`."""

    def __init__(self, *, region: Region, task: str, train: _Split, valid: _Split, proposer: Proposer,
                 options: SearchOptions, archive: Archive | None, deadline: float,
                 progress: Callable[[str], None] | None = None, position: tuple[int, int] = (1, 1)):
        self.region = region
        self.task = task
        self.train = train
        self.valid = valid
        self.proposer = proposer
        self.options = options
        self.archive = archive
        self.deadline = deadline
        self.progress = progress or (lambda _m: None)
        self._step_sink = getattr(progress, "chain_step", None)
        self.position = position
        self.name = f"region_{region.index}"
        self.features = tuple(train.frame.columns)
        self.legacy_loss_train = metrics.loss_rows(task, train.y, train.margin)
        # corrections live in margin units: logits for binary, the residual's spread for regression
        if task == "binary":
            self.scale = 3.0
        else:
            self.scale = float(2.0 * np.std(train.y - train.margin)) or 1.0
        self.seed = int(options.seed) * 1_000_003 + region.index * 10_007
        # the region's thresholds: CART's, then the refined ones once the seed stage moved them
        self.thresholds = dict(region.thresholds)

    # -- evaluation -----------------------------------------------------------------
    def _train_objective(self, structure: Expr, values: dict[str, float], region_values: dict[str, float] | None,
                         fixed_mask: np.ndarray | None, fixed_cols: dict | None) -> float:
        """Mean train loss change of ``legacy + g`` vs legacy (lower is better)."""
        if region_values is not None:
            mask = evaluate(self.region.predicate, self.train.cols, region_values)
            if mask.sum() < self.options.min_leaf:
                return float("inf")
            cols = self.train.subset(mask)
        else:
            mask, cols = fixed_mask, fixed_cols
        g = evaluate(structure, cols, values)
        g = np.where(np.isfinite(g), g, 0.0)
        new = metrics.loss_rows(self.task, self.train.y[mask], self.train.margin[mask] + g)
        return float(np.sum(new - self.legacy_loss_train[mask]) / self.train.n)

    def _valid_margin(self, region: Expr, correction: Expr) -> tuple[np.ndarray, np.ndarray]:
        mask = evaluate(region, self.valid.cols)
        g = evaluate(correction, self.valid.subset(mask))
        margin = self.valid.margin.copy()
        margin[mask] += np.where(np.isfinite(g), g, 0.0)
        return margin, mask

    def _score(self, region: Expr, correction: Expr) -> float:
        margin, _ = self._valid_margin(region, correction)
        return metrics.score(self.task, self.valid.y, margin)

    def _tune(self, structure: Expr, space: dict[str, ParamRange], frozen: dict[str, float], seed: int,
              refine: bool) -> tuple[dict[str, float], dict[str, float], float]:
        """TPE over ``space`` (+ thresholds when ``refine``); returns (params, thresholds, train loss)."""
        thresholds = dict(self.thresholds)
        search = dict(space)
        if refine:
            search.update(self.region.ranges)
        fixed_mask = fixed_cols = None
        if not refine:
            fixed_mask = evaluate(self.region.predicate, self.train.cols, thresholds)
            fixed_cols = self.train.subset(fixed_mask)

        def split(values):
            region_values = {k: values[k] for k in self.region.thresholds if k in values}
            return {k: v for k, v in values.items() if k not in region_values}, region_values

        def objective(trial: optuna.Trial) -> float:
            values = dict(frozen)
            for name, r in search.items():
                values[name] = trial.suggest_float(name, r.low, r.high, log=r.log)
            corr, reg = split(values)
            return self._train_objective(structure, corr, {**thresholds, **reg} if refine else None,
                                         fixed_mask, fixed_cols)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # multivariate TPE is marked experimental
            sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True,
                                                 n_startup_trials=max(1, min(8, self.options.optuna_trials // 2)))
            study = optuna.create_study(direction="minimize", sampler=sampler)
            init = {n: (r.init if r.init is not None else (r.low + r.high) / 2) for n, r in search.items()}
            study.enqueue_trial(init)
            study.optimize(objective, n_trials=self.options.optuna_trials)
        best = {k: round_sig(v) for k, v in study.best_params.items()}
        corr, reg = split({**frozen, **best})
        values = {**corr}
        final_thresholds = {**thresholds, **reg}
        loss = self._train_objective(structure, values, final_thresholds, None, None)
        return values, final_thresholds, loss

    # -- the chain ----------------------------------------------------------------------
    def _context(self, current: Expr, current_params: dict[str, float], current_score: float, region: Expr,
                 stats, instances, positive, negative, feedback, accepted: int, proposal: int) -> ProposalContext:
        objective = "binary:logistic" if self.task == "binary" else "reg:squarederror"
        return ProposalContext(
            task=(f"{self.task} task: add a correction to the frozen legacy model's margin "
                  f"({'log-odds' if self.task == 'binary' else 'prediction'}) inside one hard region"),
            objective=objective,
            metric_name=metrics.metric_name(self.task),
            region_rule=rule_text(region),
            region=region,
            features=self.features,
            current=current,
            current_params=dict(current_params),
            current_metric=current_score if self.task == "binary" else -current_score,
            feature_stats=stats,
            instances=instances,
            positive=tuple(positive[-MAX_CONSTRAINTS:]),
            negative=tuple(negative[-MAX_CONSTRAINTS:]),
            feedback=feedback,
            iteration=accepted,
            seed=self.seed + proposal,
            extra={"correction_scale": self.scale, "reserved": tuple(self.region.thresholds),
                   "proposal": proposal, "region_rows_train": int(evaluate(region, self.train.cols).sum())},
        )

    def _prompt_data(self, region: Expr, correction: Expr, proposal: int):
        """Feature stats and annotated instances under the *current* hybrid (error feedback)."""
        mask = evaluate(region, self.train.cols)
        g = evaluate(correction, self.train.subset(mask))
        margin = self.train.margin[mask] + np.where(np.isfinite(g), g, 0.0)
        resid = metrics.residuals(self.task, self.train.y[mask], margin)
        frame = self.train.frame.loc[mask]
        stats = feature_stats(frame, self.train.frame, resid)
        rng = np.random.default_rng(self.seed + 7919 * proposal)
        inst = sample_instances(self.task, frame, self.train.y[mask], margin, self.options.n_instances, rng,
                                legacy=self.train.margin[mask])
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
            metric_name=metrics.metric_name(self.task), best=abs(best), legacy=abs(legacy),
            llm_seconds=self._llm_seconds() - llm0, seconds=time.perf_counter() - t0, last=last, done=done,
            outcome=outcome))

    def _record(self, **row):
        self._last = f"{row.get('intent') or ''}: {row.get('status', '')}".lstrip(": ")
        if self.archive is not None:
            self.archive.record(chain=self.name, proposer=getattr(self.proposer, "name", "?"), **row)

    def run(self) -> ChainOutcome:
        """Run the chain; progress reporters get a :class:`ChainStep` per proposal and a final one."""
        self._state: dict = {}
        outcome = self._run()
        if self._state:
            self._step(**self._state, done=True, outcome=("kept: " if outcome.kept else "dropped: ") + outcome.reason)
        return outcome

    def _run(self) -> ChainOutcome:
        opts = self.options
        t0 = time.perf_counter()
        llm0 = self._llm_seconds()
        # seed function: a constant bias inside the region (with boundary refinement)
        structure: Expr = Param("c_0")
        space = {"c_0": ParamRange(-self.scale, self.scale, init=0.0)}
        refine = opts.refine_boundaries and bool(self.region.ranges)
        params, thresholds, loss = self._tune(structure, space, {}, self.seed, refine)
        self.thresholds = dict(thresholds)  # frozen from here on
        region = self.region.bound(thresholds)
        correction = simplify(bind(structure, params))
        score = self._score(region, correction)
        base_score = metrics.score(self.task, self.valid.y, self.valid.margin)
        history = [{"proposal": 0, "intent": "seed: constant bias", "postfix": to_postfix(structure),
                    "params": dict(params), "train_loss": loss, "valid_score": score, "status": "accepted"}]
        self._record(region_rule=rule_text(region), region_postfix=to_postfix(region), iteration=0, proposal=0,
                     intent="seed: constant bias" + (" + boundary refinement" if refine else ""),
                     expr_postfix=to_postfix(structure), params_json={**params, **thresholds},
                     space_json={k: vars(v) for k, v in {**space, **(self.region.ranges if refine else {})}.items()},
                     train_loss=loss, valid_score=score, previous_score=base_score, tau=None, status="accepted",
                     seconds=time.perf_counter() - t0)
        self.progress(f"{self.name}: seed bias {params['c_0']:+.4g}, {metrics.metric_name(self.task)} "
                      f"{abs(score):.4f} (legacy {abs(base_score):.4f}); rule {rule_text(region)}")

        current = (structure, params, correction, score)
        best = current
        positive: list[str] = []
        negative: list[str] = []
        feedback = None
        tau = opts.tau0
        accepted = proposals = 0
        stats, inst = self._prompt_data(region, correction, 0)
        region_cols_train = self.train.subset(evaluate(region, self.train.cols))
        while True:
            self._state = dict(proposal=proposals, accepted=accepted, best=best[3], legacy=base_score, llm0=llm0,
                               t0=t0, last=getattr(self, "_last", ""))
            self._step(**self._state)
            if not (accepted < opts.iterations and proposals < opts.max_proposals and time.time() < self.deadline):
                break
            proposals += 1
            t1 = time.perf_counter()
            cur_structure, cur_params, cur_correction, cur_score = current
            ctx = self._context(cur_structure, cur_params, cur_score, region, stats, inst, positive, negative,
                                feedback, accepted, proposals)
            common = dict(region_rule=rule_text(region), region_postfix=to_postfix(region), iteration=accepted,
                          proposal=proposals, previous_score=cur_score, tau=tau)
            try:
                prop: Proposal = self.proposer.propose(ctx)
            except BudgetExhausted as e:  # the whole compile's LLM budget: stop asking, keep what we have
                if not e.usage.get("calls"):
                    proposals -= 1  # nothing was asked
                self._record(**common, status="budget", message=e.reason, seconds=time.perf_counter() - t1)
                self.progress(f"{self.name}: {e.reason}; the chain stops here")
                break
            except ProposalError as e:
                feedback = f"the previous answer was unusable: {e.reason}"
                self._record(**common, status="proposer-error", message=e.reason, raw=e.raw, usage_json=e.usage,
                             seconds=time.perf_counter() - t1)
                tau *= opts.tau_decay
                continue
            except Exception as e:  # noqa: BLE001 - a crashing backend costs a proposal, not the compile
                self._record(**common, status="proposer-error", message=f"{type(e).__name__}: {e}",
                             seconds=time.perf_counter() - t1)
                tau *= opts.tau_decay
                continue
            new_names = [p for p in params_of(prop.expr) if p not in cur_params]
            try:
                validate(prop.expr, features=self.features, params=set(cur_params) | set(prop.space),
                         expect="num", limits=Limits())
                if not new_names:
                    raise IRValidationError(["the structure adds no new parameter to tune"])
                clash = sorted(set(new_names) & set(self.region.thresholds))
                if clash:
                    raise IRValidationError([f"parameter name(s) {', '.join('@' + c for c in clash)} are "
                                             "reserved for the region's thresholds"])
            except IRValidationError as e:
                feedback = f"the previous answer was rejected: {e}"
                self._record(**common, status="invalid", intent=prop.intent, expr_postfix=to_postfix(prop.expr),
                             space_json={k: vars(v) for k, v in prop.space.items()}, message=str(e), raw=prop.raw,
                             usage_json=prop.usage, seconds=time.perf_counter() - t1)
                tau *= opts.tau_decay
                continue
            space = {k: v for k, v in prop.space.items() if k in new_names}
            # does the structure change the function on the region at all?  (cheap, before Optuna)
            probe_rng = np.random.default_rng(self.seed + 31 * proposals)
            before = evaluate(cur_correction, region_cols_train)
            changed = False
            with np.errstate(all="ignore"):
                for _ in range(3):
                    probe = {**cur_params, **{k: float(probe_rng.uniform(r.low, r.high)) for k, r in space.items()}}
                    after = evaluate(prop.expr, region_cols_train, probe)
                    if not np.array_equal(np.nan_to_num(after), np.nan_to_num(before)):
                        changed = True
                        break
            if not changed:
                msg = "the edit does not change the correction on the region's rows"
                negative.append(f"{prop.intent}: no effect on the region")
                feedback = msg
                self._record(**common, status="no-change", intent=prop.intent, expr_postfix=to_postfix(prop.expr),
                             message=msg, raw=prop.raw, usage_json=prop.usage, seconds=time.perf_counter() - t1)
                tau *= opts.tau_decay
                continue
            feedback = None
            try:
                new_params, _, loss = self._tune(prop.expr, space, cur_params, self.seed + 101 * proposals, False)
                new_correction = simplify(bind(prop.expr, new_params))
                new_score = self._score(region, new_correction)
            except Exception as e:  # noqa: BLE001 - a candidate that cannot be evaluated is a failed candidate
                feedback = f"evaluating the previous answer failed: {type(e).__name__}: {e}"
                self._record(**common, status="failed", intent=prop.intent, expr_postfix=to_postfix(prop.expr),
                             message=feedback, raw=prop.raw, usage_json=prop.usage, seconds=time.perf_counter() - t1)
                tau *= opts.tau_decay
                continue
            # annealing: tolerate a small loss early on; but an edit that leaves the valid
            # score exactly where it was only adds complexity, so it is not promoted
            ok = bool(np.isfinite(new_score)) and new_score > cur_score - tau and new_score != cur_score
            status = "accepted" if ok else "rejected"
            summary = (f"{prop.intent}: {metrics.metric_name(self.task)} {abs(new_score):.4f} "
                       f"vs {abs(cur_score):.4f} ({status})")
            (positive if ok and new_score >= cur_score else negative).append(summary)
            history.append({"proposal": proposals, "intent": prop.intent, "postfix": to_postfix(prop.expr),
                            "params": dict(new_params), "train_loss": loss, "valid_score": new_score, "status": status})
            self._record(**common, status=status, intent=prop.intent, expr_postfix=to_postfix(prop.expr),
                         params_json=new_params, space_json={k: vars(v) for k, v in space.items()},
                         train_loss=loss, valid_score=new_score, raw=prop.raw, usage_json=prop.usage,
                         seconds=time.perf_counter() - t1)
            if ok:
                accepted += 1
                current = (prop.expr, new_params, new_correction, new_score)
                if new_score > best[3]:
                    best = current
                stats, inst = self._prompt_data(region, new_correction, proposals)
                self.progress(f"{self.name}: accepted '{prop.intent}' → {abs(new_score):.4f}")
            tau *= opts.tau_decay

        structure, params, correction, score = best
        # earn its place: loss reduction on the valid rows of the region, paired z statistic
        margin, mask = self._valid_margin(region, correction)
        before_l = metrics.loss_rows(self.task, self.valid.y[mask], self.valid.margin[mask])
        after_l = metrics.loss_rows(self.task, self.valid.y[mask], margin[mask])
        z = metrics.paired_z(before_l, after_l)
        train_mask = evaluate(region, self.train.cols)
        g_train = evaluate(correction, self.train.subset(train_mask))
        train_margin = self.train.margin.copy()
        train_margin[train_mask] += np.where(np.isfinite(g_train), g_train, 0.0)
        expert = Expert(
            name=self.name, region_index=self.region.index, region=region, region_rule=rule_text(region),
            correction=correction, structure=structure, params={**params, **thresholds},
            metrics={
                "train": {"region": metrics.report(self.task, self.train.y[train_mask], train_margin[train_mask]),
                          "region_legacy": metrics.report(self.task, self.train.y[train_mask],
                                                          self.train.margin[train_mask])},
                "valid": {"region": metrics.report(self.task, self.valid.y[mask], margin[mask]),
                          "region_legacy": metrics.report(self.task, self.valid.y[mask], self.valid.margin[mask]),
                          "score": round(float(score), 6), "legacy_score": round(float(base_score), 6),
                          "z": round(float(z), 4) if np.isfinite(z) else None},
            },
            iterations=accepted, proposals=proposals, history=history, z=z,
        )
        if mask.sum() < 2:
            return ChainOutcome(expert, False, "fewer than 2 valid rows in the region")
        if not z >= opts.expert_min_z:
            return ChainOutcome(expert, False, f"valid loss reduction not significant (z = {z:.2f} < "
                                               f"{opts.expert_min_z})")
        if not score > base_score:
            return ChainOutcome(expert, False, "does not improve the valid score over the legacy model")
        return ChainOutcome(expert, True, f"valid z = {z:.2f}, score {abs(score):.4f} vs legacy {abs(base_score):.4f}")
