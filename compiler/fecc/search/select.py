"""Do derived features (the transforms of seed 000) earn their place against the search without them?

The gate (:mod:`fecc.search.gate`) judges a pipeline against the frozen *legacy* model.
With ``--transforms teaming`` there are two pipelines that could ship: the NSR search
on the rows with the transforms' columns (the gate rerunning the transform search in
each outer fold) and the NSR search on the model's features alone.  Both are judged
out of fold on the same outer folds, so their out-of-fold ensemble margins
(:attr:`~fecc.search.SearchResult.oof_margin`) are paired row by row, and
:func:`prefer` compares them with the gate's own tests:

* binary: DeLong's test of ``AUC(with transforms) − AUC(alone)``, one-sided
  ``p ≤ alpha`` (the gate's ``gate_alpha``), and the out-of-fold log loss not worse;
* regression: the paired z test of the per-row squared-error reduction, one-sided
  ``p ≤ alpha``.

The transforms ship only when the search with them passed its own gate *and* wins
this test; otherwise what ships is exactly what the search alone would have shipped.
A side whose search kept no expert (or whose outer folds kept none) is its legacy
margin: that is what it would serve.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import metrics
from .gate import paired_tests
from .significance import PairedTest

#: The two outcomes of :func:`prefer`.
DECISIONS = ("transforms", "nsr-alone")


@dataclass(frozen=True)
class Selection:
    """Which pipeline ships, and the paired test behind it (``None`` when nothing was tested)."""

    decision: str                    # "transforms" | "nsr-alone"
    reason: str
    alpha: float
    test: PairedTest | None = None
    loss_test: PairedTest | None = None
    oof: dict | None = None          # out-of-fold metrics of both sides

    @property
    def transforms(self) -> bool:
        return self.decision == "transforms"

    def to_manifest(self) -> dict:
        """``search.transforms.selection``: the test, its statistic, p-value, gain and interval, the decision."""
        t = self.test.to_manifest() if self.test is not None else {}
        return {"test": t.get("name"), "metric": t.get("metric"), "statistic": t.get("statistic"),
                "p_value": t.get("p_value"), "gain": t.get("gain"), "interval": t.get("interval"),
                "alpha": self.alpha, "decision": self.decision, "reason": self.reason,
                "loss_test": self.loss_test.to_manifest() if self.loss_test is not None else None,
                "oof": dict(self.oof) if self.oof is not None else None}


def served_oof(result, legacy_margin: np.ndarray) -> np.ndarray:
    """The out-of-fold margin of what ``result``'s pipeline serves: its ensemble's, or legacy when it kept nothing."""
    m = np.asarray(legacy_margin, dtype=np.float64).reshape(-1)
    if result is None or result.oof_margin is None or not result.experts:
        return m.copy()
    return np.asarray(result.oof_margin, dtype=np.float64).reshape(-1)


def prefer(*, task: str, y: np.ndarray, legacy_margin: np.ndarray, alone, derived, alpha: float,
           confidence: float = 0.95) -> Selection:
    """Choose between the search alone and the search with derived features (transforms).

    Parameters
    ----------
    task : ``"binary"`` or ``"regression"``.
    y, legacy_margin : the compile rows' labels and the legacy margin (what both searches were given).
    alone : the :class:`~fecc.search.SearchResult` of the search on the model's features alone
        (``None`` when it was not run: there were no derived features).
    derived : the search on the rows with the derived features, the gate refitting them in each
        outer fold, on the same outer folds and seed (``None``: no feature was derived).
    alpha : one-sided level of the paired test (the gate's ``gate_alpha``).

    Returns
    -------
    Selection
        ``"transforms"`` only when ``derived`` passed its gate and beats ``alone`` out of
        fold at ``alpha`` (binary: and its out-of-fold log loss is not worse).
    """
    metrics.check_task(task)
    if derived is None:
        return Selection("nsr-alone", "the transform search chose no transform on the compile rows", alpha)
    if alone is None:
        raise ValueError("prefer needs the search alone to judge the search with derived features")
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    a, b = served_oof(alone, legacy_margin), served_oof(derived, legacy_margin)
    if a.shape != y.shape or b.shape != y.shape:
        raise ValueError(f"out-of-fold margins of {a.shape[0]} and {b.shape[0]} rows for {y.shape[0]} labels")
    oof = {"nsr_alone": metrics.report(task, y, a), "with_transforms": metrics.report(task, y, b)}
    test, loss_test = paired_tests(task, y, a, b, confidence)
    name = metrics.metric_name(task)
    said = (f"out-of-fold {name} with transforms {test.new:.6f} vs NSR alone {test.legacy:.6f} "
            f"(gain {test.gain:+.6f}, {test.name} z = {test.statistic:.2f}, one-sided p = {test.p_value:.4f})")
    if not derived.shipped:
        return Selection("nsr-alone", f"the gate kept legacy with the transforms; {said}", alpha, test, loss_test, oof)
    if not np.isfinite(test.gain):
        return Selection("nsr-alone", f"out-of-fold {name} is undefined (one class only?)", alpha, test, loss_test,
                         oof)
    if test.p_value > alpha:
        return Selection("nsr-alone", f"the transforms are not better at alpha = {alpha}: {said}", alpha, test,
                         loss_test, oof)
    if loss_test is not None and loss_test.gain < 0:
        return Selection("nsr-alone", f"{said}, but the out-of-fold log loss is worse ({loss_test.new:.6f} vs "
                                      f"{loss_test.legacy:.6f})", alpha, test, loss_test, oof)
    return Selection("transforms", said, alpha, test, loss_test, oof)
