"""The safety gate: the holdout split is read once, here, and decides what ships.

The ensemble ships only if its holdout metric (AUC for binary, RMSE for regression) is
no worse than the frozen legacy model's by more than ``gate_tolerance``; otherwise the
bundle is legacy-only and ``reason`` says why.  A gate without experts is legacy-only
by definition.  Per-region metrics (legacy vs ensemble on the holdout rows of each
expert's region) go into the manifest for the report.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import metrics


@dataclass
class GateResult:
    """The gate's decision and the numbers behind it."""

    decision: str                  # "ensemble" | "legacy-only"
    reason: str
    metric: str                    # "auc" | "rmse"
    tolerance: float
    legacy: dict = field(default_factory=dict)
    ensemble: dict = field(default_factory=dict)
    regions: list[dict] = field(default_factory=list)

    def to_manifest(self) -> dict:
        return {"decision": self.decision, "reason": self.reason, "metric": self.metric,
                "tolerance": self.tolerance, "split": "holdout",
                "holdout": {"legacy": self.legacy, "ensemble": self.ensemble}, "regions": list(self.regions)}


def decide(*, task: str, y: np.ndarray, legacy_margin: np.ndarray, ensemble_margin: np.ndarray | None,
           region_masks: dict[str, np.ndarray], tolerance: float, no_experts_reason: str | None = None) -> GateResult:
    """Compare legacy and ensemble on the holdout rows; see the module docstring."""
    name = metrics.metric_name(task)
    legacy = metrics.report(task, y, legacy_margin)
    if ensemble_margin is None:
        return GateResult("legacy-only", no_experts_reason or "no expert earned its place", name, tolerance,
                          legacy, dict(legacy), [])
    ensemble = metrics.report(task, y, ensemble_margin)
    regions = []
    for rname, mask in region_masks.items():
        regions.append({"name": rname, "n": int(mask.sum()),
                        "legacy": metrics.report(task, y[mask], legacy_margin[mask]),
                        "ensemble": metrics.report(task, y[mask], ensemble_margin[mask])})
    lv, ev = legacy.get(name), ensemble.get(name)
    if lv is None or ev is None:
        return GateResult("legacy-only", f"holdout {name} is undefined (one class only?)", name, tolerance,
                          legacy, ensemble, regions)
    gain = (ev - lv) if task == "binary" else (lv - ev)
    if gain >= -tolerance:
        verdict = "ensemble"
        reason = f"holdout {name} {ev:.6f} vs legacy {lv:.6f} (gain {gain:+.6f}, tolerance {tolerance})"
    else:
        verdict = "legacy-only"
        reason = (f"ensemble is worse than the legacy model on the holdout: {name} {ev:.6f} vs "
                  f"{lv:.6f} (gain {gain:+.6f} below -{tolerance})")
    return GateResult(verdict, reason, name, tolerance, legacy, ensemble, regions)
