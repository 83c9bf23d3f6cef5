"""What the report needs from the compile data, computed once at compile time.

The manifest says what the bundle *is*; the report also shows how it *behaves* on
labelled rows (ROC, reliability, residual per region), which needs the compile data.
:func:`collect` computes those small summaries while the driver still holds the data
and both margins, and the bundle keeps them in ``report/data.json`` so that
``fecc audit BUNDLE`` re-renders the same report without the data.

Everything here is a deterministic function of the inputs and the seed (no wall
times, no paths): the report files are hashed into the manifest like every other
bundle file, and the same compile gives the same bytes.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

#: Where the report's data lives inside a bundle.
DATA_FILE = "report/data.json"
#: Bumped when the layout of ``report/data.json`` changes.
DATA_VERSION = 1
#: Points of each stored ROC curve (false-positive rates 0, 0.01, ..., 1).
ROC_POINTS = 101
#: Bins of the reliability (calibration) curve.
RELIABILITY_BINS = 10
#: Most features listed per importance table.
TOP_FEATURES = 20


def sig(value: Any, digits: int = 6) -> float | None:
    """``value`` rounded to ``digits`` significant digits; ``None`` when missing or not finite."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v):
        return None
    return float(f"{v:.{digits}g}")


def _sigmoid(m: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-m))


def output_space(task: str, margin: np.ndarray, link: str = "identity") -> np.ndarray:
    """Predictions the residuals are measured in: probability (binary) or the predicted value
    (regression: the model's link applied to the margin, e.g. exp for poisson/gamma/tweedie)."""
    m = np.asarray(margin, dtype=np.float64)
    if task == "binary":
        return _sigmoid(m)
    from fecc_runtime import apply_link

    return apply_link(m, link) if link in ("identity", "exp", "logistic") else m


# --------------------------------------------------------------------------- curves

def roc_curve(y: np.ndarray, score: np.ndarray, points: int = ROC_POINTS) -> list[float | None]:
    """The true-positive rate at each false-positive rate of ``linspace(0, 1, points)``.

    Each value is the highest TPR of a threshold whose FPR does not exceed the grid
    point (the ROC curve read as a step function); ``[]`` with one class only.
    """
    y = np.asarray(y) > 0.5
    s = np.asarray(score, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return []
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    tps = np.cumsum(y)
    fps = np.cumsum(~y)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]   # the last row of each tie group
    tpr = np.r_[0.0, tps[last] / n_pos]
    fpr = np.r_[0.0, fps[last] / n_neg]
    grid = np.linspace(0.0, 1.0, points)
    at = np.searchsorted(fpr, grid, side="right") - 1
    return [sig(v, 5) for v in tpr[at]]


def reliability(task: str, y: np.ndarray, pred: np.ndarray, bins: int = RELIABILITY_BINS) -> dict:
    """Mean prediction vs observed outcome per bin.

    Binary: equal-width bins of the predicted probability, observed = share of 1s.
    Regression: equal-count bins of the prediction, observed = mean target.
    Empty bins are left out.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if task == "binary":
        edges = np.linspace(0.0, 1.0, bins + 1)
    else:
        edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, bins + 1)))
    if len(edges) < 2:
        edges = np.array([p.min(), p.max()]) if p.size else np.array([0.0, 1.0])
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    out = {"mean_pred": [], "observed": [], "count": []}
    for b in range(len(edges) - 1):
        rows = which == b
        if rows.any():
            out["mean_pred"].append(sig(p[rows].mean()))
            out["observed"].append(sig(y[rows].mean()))
            out["count"].append(int(rows.sum()))
    if task == "binary":
        n = max(1, y.size)
        out["ece"] = sig(sum(c * abs(a - b) for a, b, c in zip(out["mean_pred"], out["observed"], out["count"])) / n)
    return out


def _metric_report(task: str, y: np.ndarray, margin: np.ndarray, link: str = "identity") -> dict:
    """``metrics.report`` (binary: from margins; regression: on the predicted values)."""
    from ..search import metrics

    return metrics.report(task, y, margin if task == "binary" else output_space(task, margin, link))


# --------------------------------------------------------------------------- regions

def _region_entries(manifest: dict) -> list[tuple[str, dict]]:
    """(status, entry) for every expert the report can evaluate: shipped, or refused by the gate."""
    gate = manifest.get("gate") or {}
    out = [("shipped", e) for e in manifest.get("experts") or [] if isinstance(e, dict)]
    out += [("candidate", e) for e in gate.get("candidates") or [] if isinstance(e, dict)]
    return out


def _parse(postfix: Any):
    from ..ir import IRSyntaxError, IRTypeError, parse_postfix

    if not isinstance(postfix, str):
        return None
    try:
        return parse_postfix(postfix)
    except (IRSyntaxError, IRTypeError):
        return None


def region_stats(task: str, manifest: dict, frame: pd.DataFrame, y: np.ndarray, legacy_margin: np.ndarray,
                 bundle_margin: np.ndarray, link: str = "identity") -> list[dict]:
    """Coverage and mean |residual| (legacy, bundle, the expert alone) inside each expert's region."""
    from ..ir import evaluate

    cols = {str(c): frame[c].to_numpy(np.float64) for c in frame.columns}
    p_legacy = output_space(task, legacy_margin, link)
    p_bundle = output_space(task, bundle_margin, link)
    out = []
    for status, e in _region_entries(manifest):
        region = (e.get("region") or {})
        entry = {"name": e.get("name"), "status": status, "rule": region.get("rule"),
                 "cart_region": region.get("cart_region"), "rows": int(len(y))}
        pred = _parse(region.get("postfix"))
        if pred is None:
            entry["note"] = "region predicate missing or unreadable"
            out.append(entry)
            continue
        try:
            mask = np.asarray(evaluate(pred, cols), dtype=bool)
        except (KeyError, ValueError, TypeError) as exc:
            entry["note"] = f"region cannot be evaluated: {exc}"
            out.append(entry)
            continue
        n = int(mask.sum())
        entry.update(n=n, coverage=sig(n / max(1, len(y))))
        if n:
            entry["residual_before"] = sig(np.mean(np.abs(y[mask] - p_legacy[mask])))
            entry["residual_after"] = sig(np.mean(np.abs(y[mask] - p_bundle[mask])))
            entry["metrics_before"] = _metric_report(task, y[mask], legacy_margin[mask], link)
            entry["metrics_after"] = _metric_report(task, y[mask], bundle_margin[mask], link)
            corr = _parse((e.get("correction") or {}).get("postfix"))
            if corr is not None:
                try:
                    g = np.asarray(evaluate(corr, {k: v[mask] for k, v in cols.items()}), dtype=np.float64)
                    g = np.where(np.isfinite(g), g, 0.0)
                    alone = legacy_margin[mask] + g
                    entry["residual_expert"] = sig(np.mean(np.abs(y[mask] - output_space(task, alone, link))))
                    entry["metrics_expert"] = _metric_report(task, y[mask], alone, link)
                except (KeyError, ValueError, TypeError):
                    pass
        out.append(entry)
    return out


# --------------------------------------------------------------------------- importances

def _ranked(names: list[str], gain: dict[str, float], total: dict[str, float], splits: dict[str, float]) -> list[dict]:
    rows = [{"feature": n, "gain": sig(gain.get(n, 0.0)), "total_gain": sig(total.get(n, 0.0)),
             "splits": int(splits.get(n, 0))} for n in names if n in total]
    rows.sort(key=lambda r: (-(r["total_gain"] or 0.0), r["feature"]))
    return rows[:TOP_FEATURES]


def xgboost_importances(model_bytes: bytes, names: list[str]) -> list[dict]:
    """Gain importances of an XGBoost model (JSON or UBJSON bytes), features named by ``names``."""
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(model_bytes))
    stored = booster.feature_names

    def renamed(scores: dict) -> dict[str, float]:
        out = {}
        for key, value in scores.items():
            name = key
            if stored is None and key.startswith("f") and key[1:].isdigit() and int(key[1:]) < len(names):
                name = names[int(key[1:])]
            out[name] = float(value)
        return out

    gain = renamed(booster.get_score(importance_type="gain"))
    total = renamed(booster.get_score(importance_type="total_gain"))
    splits = renamed(booster.get_score(importance_type="weight"))
    order = list(names) + [k for k in total if k not in names]
    return _ranked(order, gain, total, splits)


def lightgbm_importances(model_text: str, names: list[str]) -> list[dict]:
    import lightgbm as lgb

    booster = lgb.Booster(model_str=model_text)
    total = booster.feature_importance(importance_type="gain")
    splits = booster.feature_importance(importance_type="split")
    own = booster.feature_name()
    mapped = names if len(names) == len(own) else own
    t = {n: float(v) for n, v in zip(mapped, total) if v > 0}
    s = {n: float(v) for n, v in zip(mapped, splits)}
    g = {n: t[n] / s[n] for n in t if s.get(n)}
    return _ranked(list(mapped), g, t, s)


def legacy_importances(model_source: bytes, model_format: str, names: list[str]) -> tuple[list[dict], str | None]:
    """The legacy model's gain importances from the bytes the frontend read, or ``([], why not)``."""
    try:
        if model_format == "lightgbm":
            return lightgbm_importances(model_source.decode("utf-8"), names), None
        return xgboost_importances(model_source, names), None
    except Exception as exc:  # noqa: BLE001 - importances are a courtesy; the report says why they are missing
        return [], f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"


# --------------------------------------------------------------------------- the whole data file

def report_labels(table: pd.DataFrame | None, target: str | None, y: np.ndarray | None, task: str,
                  n: int) -> np.ndarray | None:
    """The labels the curves use: the checked target, else (compile-only mode) the target
    column read leniently (non-numeric values become missing; a binary target that is not 0/1
    gives none)."""
    if y is not None:
        return np.asarray(y, dtype=np.float64)
    if table is None or target is None or target not in table.columns or len(table) != n:
        return None
    col = table[target]
    if isinstance(col, pd.DataFrame):   # duplicate column names
        return None
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    finite = values[np.isfinite(values)]
    if finite.size == 0 or (task == "binary" and not np.isin(finite, (0.0, 1.0)).all()):
        return None
    return values


def collect(*, task: str, manifest: dict, frame: pd.DataFrame, y: np.ndarray | None,
            legacy_margin: Callable[[pd.DataFrame], np.ndarray],
            bundle_margin: Callable[[pd.DataFrame], np.ndarray] | None,
            model_source: bytes, model_format: str, bundle_oof: np.ndarray | None = None,
            aggregator_json: Path | None = None) -> dict:
    """The content of ``report/data.json`` (see the module docstring).

    Parameters
    ----------
    task : the legacy model's task (curves for ``binary`` and ``regression`` only).
    manifest : the bundle's manifest as it will be written (regions and experts are read from it).
    frame : the compile rows as the bundle sees them (float32-rounded features, model order).
    y : the target, or ``None`` (compile-only mode without one).
    legacy_margin, bundle_margin : margins of the legacy model and of what ships, for rows of ``frame``
        (``bundle_margin`` ``None``: the bundle is the legacy model).
    model_source, model_format : the legacy model's bytes as the frontend read them (the file is
        read once per compile), for its gain importances.
    bundle_oof : the bundle's out-of-fold margin on every row of ``frame`` (each row scored by pieces
        fitted without it), when the search provides one: the curves then use it rather than the
        shipped pieces' in-sample margin.
    aggregator_json : the aggregator booster (XGBoost JSON), for its gain importances.
    """
    names = [str(c) for c in frame.columns]
    data: dict[str, Any] = {"version": DATA_VERSION}
    imp, why = legacy_importances(model_source, model_format, names)
    data["importances"] = {"legacy": imp}
    if why:
        data["importances"]["legacy_note"] = why
    agg = manifest.get("aggregator") or {}
    if aggregator_json is not None and Path(aggregator_json).is_file():
        agg_names = list(agg.get("feature_names") or [])
        try:
            data["importances"]["aggregator"] = xgboost_importances(Path(aggregator_json).read_bytes(), agg_names)
        except Exception as exc:  # noqa: BLE001
            data["importances"]["aggregator_note"] = f"{type(exc).__name__}: {exc}"[:200]

    if y is None:
        data["rows"] = {"n": 0, "bundle": "none", "note": "no target column: no labelled rows"}
        return data
    yy_all = np.asarray(y, dtype=np.float64).reshape(-1)
    rows = np.flatnonzero(np.isfinite(yy_all))
    oof = None
    if bundle_margin is not None and bundle_oof is not None:
        oof = np.asarray(bundle_oof, dtype=np.float64).reshape(-1)
        if oof.shape != yy_all.shape:
            oof = None
    source = "legacy" if bundle_margin is None else ("out-of-fold" if oof is not None else "in-sample")
    data["rows"] = {"n": int(len(rows)), "bundle": source}
    if task not in ("binary", "regression"):
        data["rows"]["note"] = f"curves are drawn for binary and regression models, not {task}"
        return data
    if len(rows) < 2:
        data["rows"]["note"] = "too few labelled rows for curves"
        return data
    sub = frame.iloc[rows].reset_index(drop=True)
    yy = yy_all[rows]
    lm = np.asarray(legacy_margin(sub), dtype=np.float64).reshape(-1)
    if bundle_margin is None:
        bm = lm.copy()
    elif oof is not None:
        bm = oof[rows]
    else:
        bm = np.asarray(bundle_margin(sub), dtype=np.float64).reshape(-1)
    link = str((manifest.get("task") or {}).get("link") or "identity")
    data["metrics"] = {"legacy": _metric_report(task, yy, lm, link), "bundle": _metric_report(task, yy, bm, link)}
    pl, pb = output_space(task, lm, link), output_space(task, bm, link)
    curves: dict[str, Any] = {"reliability": {"legacy": reliability(task, yy, pl), "bundle": reliability(task, yy, pb)}}
    if task == "binary":
        curves["roc"] = {"fpr": [sig(v, 5) for v in np.linspace(0.0, 1.0, ROC_POINTS)],
                         "legacy": roc_curve(yy, lm), "bundle": roc_curve(yy, bm),
                         "auc": {"legacy": data["metrics"]["legacy"].get("auc"),
                                 "bundle": data["metrics"]["bundle"].get("auc")}}
    data["curves"] = curves
    data["residual"] = {"legacy": sig(np.mean(np.abs(yy - pl))), "bundle": sig(np.mean(np.abs(yy - pb)))}
    data["regions"] = region_stats(task, manifest, sub, yy, lm, bm, link)
    return data


def dumps(data: dict) -> str:
    """Canonical JSON for ``report/data.json`` (sorted keys, stable bytes)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n"
