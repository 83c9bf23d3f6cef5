"""The safety gate: a paired test on out-of-fold predictions decides what ships.

The ensemble ships only when a paired test on the out-of-fold (OOF) predictions of all
compile rows says it beats the frozen legacy model at the stated confidence:

* binary: DeLong's test of ``AUC(ensemble) − AUC(legacy)``, one-sided
  ``p ≤ gate_alpha``; and its OOF log loss must not be worse than legacy's;
* regression: the paired z test of the per-row squared-error reduction (the RMSE gain),
  one-sided ``p ≤ gate_alpha``.

Otherwise the bundle is legacy-only and ``reason`` says why.  The manifest records the
test (name, statistic, p-value, interval), the OOF metrics of both and the gain in each
fold.  A gate without experts is legacy-only by definition.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import metrics
from .crossfit import Folds
from .significance import PairedTest, delong, paired_loss


@dataclass
class GateResult:
    """The gate's decision and the numbers behind it."""

    decision: str                  # "ensemble" | "legacy-only"
    reason: str
    metric: str                    # "auc" | "rmse"
    alpha: float
    legacy: dict = field(default_factory=dict)
    ensemble: dict = field(default_factory=dict)
    test: PairedTest | None = None
    loss_test: PairedTest | None = None
    folds: list[dict] = field(default_factory=list)
    regions: list[dict] = field(default_factory=list)
    protocol: dict = field(default_factory=dict)

    @property
    def gain(self) -> float:
        return float(self.test.gain) if self.test is not None else 0.0

    def to_manifest(self) -> dict:
        return {"decision": self.decision, "reason": self.reason, "metric": self.metric,
                "alpha": self.alpha, "split": "out-of-fold", "protocol": dict(self.protocol),
                "oof": {"legacy": self.legacy, "ensemble": self.ensemble},
                "test": self.test.to_manifest() if self.test is not None else None,
                "loss_test": self.loss_test.to_manifest() if self.loss_test is not None else None,
                "folds": list(self.folds), "regions": list(self.regions)}


def fold_gains(task: str, y: np.ndarray, legacy: np.ndarray, ensemble: np.ndarray, folds: Folds) -> list[dict]:
    """The metric gain of the ensemble in each fold of the first cut (its test rows)."""
    out = []
    for j in range(folds.k):
        m = folds.test_mask(j)
        a, b = metrics.score(task, y[m], legacy[m]), metrics.score(task, y[m], ensemble[m])
        out.append({"fold": j, "n": int(m.sum()), "gain": round(float(b - a), 6) if np.isfinite(b - a) else None})
    return out


def paired_tests(task: str, y: np.ndarray, reference: np.ndarray, new: np.ndarray,
                 confidence: float = 0.95) -> tuple[PairedTest, PairedTest | None]:
    """The gate's paired tests of margins ``new`` against ``reference`` on the same rows:
    binary — DeLong on AUC and the paired z on log loss; regression — the paired z on
    squared error (RMSE), and no loss test."""
    if task == "binary":
        return (delong(y, reference, new, confidence),
                paired_loss(metrics.logloss_rows(y, reference), metrics.logloss_rows(y, new),
                            metric="logloss", confidence=confidence))
    return (paired_loss(metrics.squared_rows(y, reference), metrics.squared_rows(y, new),
                        metric="rmse", confidence=confidence), None)


def decide(*, task: str, y: np.ndarray, legacy_margin: np.ndarray, ensemble_margin: np.ndarray | None,
           folds: Folds, region_masks: dict[str, np.ndarray], alpha: float, confidence: float = 0.95,
           no_experts_reason: str | None = None) -> GateResult:
    """Compare the OOF ensemble margin with the legacy margin on all compile rows."""
    name = metrics.metric_name(task)
    legacy = metrics.report(task, y, legacy_margin)
    protocol = {**folds.to_manifest(), "test": "delong" if task == "binary" else "paired-z", "alpha": alpha}
    if ensemble_margin is None:
        return GateResult("legacy-only", no_experts_reason or "no expert earned its place", name, alpha,
                          legacy, dict(legacy), protocol=protocol)
    ensemble = metrics.report(task, y, ensemble_margin)
    regions = [{"name": rname, "n": int(mask.sum()),
                "legacy": metrics.report(task, y[mask], legacy_margin[mask]),
                "ensemble": metrics.report(task, y[mask], ensemble_margin[mask])}
               for rname, mask in region_masks.items()]
    per_fold = fold_gains(task, y, legacy_margin, ensemble_margin, folds)
    test, loss_test = paired_tests(task, y, legacy_margin, ensemble_margin, confidence)
    result = GateResult("legacy-only", "", name, alpha, legacy, ensemble, test, loss_test, per_fold, regions,
                        protocol)
    if not np.isfinite(test.gain):
        result.reason = f"out-of-fold {name} is undefined (one class only?)"
        return result
    said = (f"out-of-fold {name} {test.new:.6f} vs legacy {test.legacy:.6f} (gain {test.gain:+.6f}, "
            f"{test.name} z = {test.statistic:.2f}, one-sided p = {test.p_value:.4f})")
    if test.p_value > alpha:
        result.reason = f"not significant at alpha = {alpha}: {said}"
    elif loss_test is not None and loss_test.gain < 0:
        result.reason = (f"{said}, but the out-of-fold log loss is worse "
                         f"({loss_test.new:.6f} vs {loss_test.legacy:.6f})")
    else:
        result.decision = "ensemble"
        result.reason = said
    return result
