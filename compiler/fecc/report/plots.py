"""The report's plots: matplotlib figures as inline SVG, byte for byte the same every run.

matplotlib writes a creation date into SVG metadata and derives element ids from a
random salt unless told otherwise; here ``metadata={"Date": None}`` and a fixed
``svg.hashsalt`` per plot make the bytes a function of the data alone (and distinct
salts keep ids unique when several plots share one HTML page).  Text stays text
(``svg.fonttype = "none"``): smaller files, and the page's font draws it.

Each function takes the report's data (plain dicts and lists) and returns the SVG
element as a string, or ``None`` when there is nothing to draw.
"""
from __future__ import annotations

import io
from typing import Any

LEGACY = "#7f7f7f"
BUNDLE = "#1f77b4"
EXPERT = "#ff7f0e"
GOOD = "#2ca02c"
BAD = "#d62728"

_RC = {
    "svg.fonttype": "none",
    "font.size": 9,
    "font.family": "DejaVu Sans",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "path.simplify": False,
}


def _figure(width: float = 5.2, height: float = 3.6):
    from matplotlib.figure import Figure   # no pyplot: no global state, no GUI backend

    return Figure(figsize=(width, height), dpi=72, layout="constrained")


def to_svg(fig, name: str) -> str:
    """The figure as an ``<svg>`` element (no XML prolog), deterministic for ``name``."""
    import matplotlib

    rc = dict(_RC, **{"svg.hashsalt": f"fecc-report-{name}"})
    if "svg.id" in matplotlib.rcParams:
        rc["svg.id"] = f"svg-{name}"
    with matplotlib.rc_context(rc):
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):].strip() + "\n"


def _draw(name: str, build, width: float = 5.2, height: float = 3.6) -> str:
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = _figure(width, height)
        build(fig)
    return to_svg(fig, name)


def roc(data: dict) -> str | None:
    curves = (data.get("curves") or {}).get("roc") or {}
    fpr, leg, bun = curves.get("fpr") or [], curves.get("legacy") or [], curves.get("bundle") or []
    if not fpr or len(leg) != len(fpr) or len(bun) != len(fpr):
        return None
    auc = curves.get("auc") or {}

    def build(fig):
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color="#cccccc", lw=1, ls=":")
        ax.plot(fpr, leg, color=LEGACY, lw=2, ls="--", drawstyle="steps-post",
                label=f"legacy (AUC {_fmt(auc.get('legacy'))})")
        ax.plot(fpr, bun, color=BUNDLE, lw=1.5, drawstyle="steps-post",
                label=f"bundle (AUC {_fmt(auc.get('bundle'))})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"ROC, {_rows(data)}")
        ax.legend(loc="lower right")

    return _draw("roc", build, 4.6, 4.4)


def reliability(data: dict, task: str) -> str | None:
    rel = (data.get("curves") or {}).get("reliability") or {}
    if not rel.get("legacy") or not rel["legacy"].get("mean_pred"):
        return None

    def build(fig):
        ax = fig.add_subplot()
        lo = min(min(c.get("mean_pred") or [0]) for c in rel.values() if isinstance(c, dict))
        hi = max(max(c.get("mean_pred") or [1]) for c in rel.values() if isinstance(c, dict))
        if task == "binary":
            lo, hi = 0.0, 1.0
        ax.plot([lo, hi], [lo, hi], color="#cccccc", lw=1, ls=":", label="perfectly calibrated")
        for key, color, style, marker in (("legacy", LEGACY, "--", "s"), ("bundle", BUNDLE, "-", "o")):
            c = rel.get(key) or {}
            xs, ys, ns = c.get("mean_pred") or [], c.get("observed") or [], c.get("count") or []
            if not xs:
                continue
            label = key + (f" (ECE {_fmt(c.get('ece'), 4)})" if c.get("ece") is not None else "")
            ax.plot(xs, ys, color=color, ls=style, lw=1.5, marker=marker, ms=4, label=label)
        if task == "binary":
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("mean predicted probability (bin)")
            ax.set_ylabel("observed share of positives")
        else:
            ax.set_xlabel("mean prediction (bin of equal count)")
            ax.set_ylabel("mean target")
        ax.set_title(f"Reliability, {_rows(data)}")
        ax.legend(loc="upper left")

    return _draw("reliability", build, 4.6, 4.4)


def residual_by_region(data: dict) -> str | None:
    regions = [r for r in data.get("regions") or [] if r.get("n")]
    if not regions:
        return None

    def build(fig):
        import numpy as np

        ax = fig.add_subplot()
        x = np.arange(len(regions))
        has_expert = any(r.get("residual_expert") is not None for r in regions)
        w = 0.27 if has_expert else 0.38
        before = [r.get("residual_before") or 0.0 for r in regions]
        after = [r.get("residual_after") or 0.0 for r in regions]
        ax.bar(x - w / 2 if not has_expert else x - w, before, w, color=LEGACY, label="legacy")
        if has_expert:
            ax.bar(x, [r.get("residual_expert") or 0.0 for r in regions], w, color=EXPERT,
                   label="legacy + this expert alone")
            ax.bar(x + w, after, w, color=BUNDLE, label="bundle")
        else:
            ax.bar(x + w / 2, after, w, color=BUNDLE, label="bundle")
        ax.set_xticks(x, [f"{r.get('name')}\n({r.get('status')}, {r.get('n')} rows)" for r in regions])
        ax.set_ylabel("mean |residual|")
        ax.set_title(f"Residual by region, {_rows(data)}")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3)

    return _draw("residual_by_region", build, max(5.2, 1.6 + 1.5 * len(regions)), 4.0)


def chain_metric(entries: list[tuple[str, dict]], metric: str) -> str | None:
    """The score of each proposal in each expert's chain (from the manifest's history).

    Histories hold either ``oof_score`` (out-of-fold gain over the legacy loss: 0 is the
    legacy model) or ``valid_score`` (the validation metric; the legacy value comes from
    the expert's ``metrics.valid.legacy_score``; for RMSE the chains maximise -RMSE).
    """
    from .render import HISTORY_SCORES

    series = []
    for status, e in entries:
        hist = [h for h in e.get("history") or [] if isinstance(h, dict)
                and isinstance(h.get("proposal"), (int, float)) and not isinstance(h.get("proposal"), bool)]
        for key in HISTORY_SCORES:
            pts = [(h["proposal"], h[key], h.get("status")) for h in hist
                   if isinstance(h.get(key), (int, float)) and not isinstance(h.get(key), bool)]
            if pts:
                break
        if not pts:
            continue
        if key == "oof_score":
            base, sign, what = 0.0, 1.0, "out-of-fold gain over legacy"
        else:
            valid = (e.get("metrics") or {}).get("valid") if isinstance(e.get("metrics"), dict) else None
            base = valid.get("legacy_score") if isinstance(valid, dict) else None
            sign = -1.0 if metric == "rmse" else 1.0
            what = f"valid {metric} in the region"
        series.append((f"{e.get('name')} ({status})", pts, base, sign, what))
    if not series:
        return None

    def build(fig):
        ax = fig.add_subplot()
        colors = [BUNDLE, EXPERT, GOOD, "#9467bd", "#8c564b", "#e377c2", "#17becf"]
        for i, (label, pts, base, sign, _) in enumerate(series):
            color = colors[i % len(colors)]
            acc = [(p, sign * v) for p, v, st in pts if st == "accepted"]
            rej = [(p, sign * v) for p, v, st in pts if st != "accepted"]
            if acc:
                ax.plot(*zip(*acc), color=color, marker="o", ms=4, lw=1.5, drawstyle="steps-post",
                        label=f"{label}: accepted")
            if rej:
                ax.plot(*zip(*rej), color=color, marker="x", ms=5, lw=0, label=f"{label}: rejected")
            if isinstance(base, (int, float)) and not (base == 0.0 and i):   # a zero baseline is drawn once
                ax.axhline(sign * base, color=color if base else "black", lw=1, ls=":",
                           label=f"{label}: legacy" if base else "legacy (gain 0)")
        ax.set_xlabel("proposal (0 = seed: constant bias)")
        ax.set_ylabel(series[0][4])
        ax.set_title("Metric per chain iteration")
        ax.legend(loc="best", fontsize=7)

    return _draw("chain_metric", build, 5.6, 3.8)


def importances(rows: list[dict], name: str, title: str) -> str | None:
    rows = [r for r in rows or [] if r.get("total_gain")]
    if not rows:
        return None
    rows = rows[:15][::-1]

    def build(fig):
        ax = fig.add_subplot()
        ax.barh(range(len(rows)), [r["total_gain"] for r in rows], color=BUNDLE)
        ax.set_yticks(range(len(rows)), [str(r["feature"]) for r in rows])
        ax.set_xlabel("total gain")
        ax.set_title(title)
        ax.grid(axis="y", visible=False)

    return _draw(name, build, 5.2, max(2.2, 0.9 + 0.24 * len(rows)))


def fold_gains(gains: list[float], metric: str) -> str | None:
    if not gains:
        return None

    def build(fig):
        ax = fig.add_subplot()
        ax.bar(range(1, len(gains) + 1), gains, color=[GOOD if g >= 0 else BAD for g in gains])
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xticks(range(1, len(gains) + 1))
        ax.set_xlabel("fold")
        ax.set_ylabel(f"out-of-fold {metric} gain")
        ax.set_title("Gain of the bundle over legacy, per fold")
        ax.grid(axis="x", visible=False)

    return _draw("fold_gains", build, 4.6, 3.0)


def _rows(data: dict) -> str:
    rows = data.get("rows") or {}
    how = {"out-of-fold": " (bundle out-of-fold)", "in-sample": " (bundle in-sample)"}.get(rows.get("bundle"), "")
    return f"{rows.get('n', '?')} compile rows{how}"


def _fmt(v: Any, digits: int = 4) -> str:
    return "n/a" if v is None else f"{float(v):.{digits}f}"
