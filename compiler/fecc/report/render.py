"""Render the audit report (HTML, Markdown, plain text) from a manifest and the report data.

Rendering reads only what the bundle holds — ``manifest.json``, ``report/data.json`` and
the emitted ``experts/experts.py`` — so the report written at compile time and the one
``fecc audit`` renders later are the same bytes.  Values from the manifest are read
defensively (``.get``): a slot another stage adds later shows up in a generic table
instead of breaking the report.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import plots

#: The plots the report can hold, in page order: id -> caption.
PLOTS = {
    "roc": "ROC curve, legacy vs bundle",
    "reliability": "Reliability curve (calibration), legacy vs bundle",
    "fold_gains": "Out-of-fold gain per fold (the gate's paired test)",
    "residual_by_region": "Mean |residual| inside each expert's region",
    "chain_metric": "Validation metric per chain iteration",
    "importances_aggregator": "Aggregator feature importances (gain)",
    "importances_legacy": "Legacy model feature importances (gain)",
}

_GATE_KNOWN = {"decision", "reason", "metric", "tolerance", "alpha", "split", "holdout", "regions", "candidates",
               "dropped", "test", "loss_test", "folds", "oof", "out_of_fold", "protocol"}
#: What the report says about how the legacy trees were compiled (the manifest entry has more).
_ENGINE_KEYS = ("engine", "library", "onnx", "file", "row_engine", "batch_engine", "num_tree", "num_node",
                "threshold_type", "leaf_type")
_METRIC_ORDER = ("auc", "logloss", "accuracy", "rmse", "mae", "n")


@dataclass(frozen=True)
class Report:
    """A rendered report."""

    html: str
    markdown: str
    text: str
    #: plot id -> SVG element, for the plots that had something to draw
    svgs: dict[str, str]


# --------------------------------------------------------------------------- small formatters

def fmt(v: Any, digits: int = 6) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt(x, digits) for x in v) + "]"
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)[:300]
    return str(v)


def _signed(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):+.6f}"


def _d(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def _l(x: Any) -> list:
    return x if isinstance(x, list) else []


def _pairs(d: Any, skip: tuple = ()) -> list[tuple[str, str]]:
    return [(str(k), fmt(v)) for k, v in sorted(_d(d).items()) if k not in skip]


def _metric_rows(columns: list[tuple[str, dict]]) -> list[list[str]]:
    names = []
    for _, m in columns:
        for k in _d(m):
            if k not in names:
                names.append(k)
    names.sort(key=lambda k: (_METRIC_ORDER.index(k) if k in _METRIC_ORDER else 99, k))
    return [[k] + [fmt(_d(m).get(k)) for _, m in columns] for k in names]


# --------------------------------------------------------------------------- expert source

_SECTION = re.compile(r"^# -{20,} (\S+)\s*$", re.M)


def expert_sources(bundle_dir: Path | None, manifest: dict) -> dict[str, str]:
    """Each shipped expert's section of the emitted ``experts/experts.py`` (name -> source)."""
    rel = manifest.get("experts_module")
    if not bundle_dir or not isinstance(rel, str):
        return {}
    try:
        text = (Path(bundle_dir) / rel).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    marks = list(_SECTION.finditer(text))
    out = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[m.end():end]
        tail = body.find("\ndef predict_experts")
        if tail != -1:   # the module's last function is not this expert's
            cut = body.rfind("\n@njit", 0, tail + 1)
            body = body[:cut if cut != -1 else tail]
        out[m.group(1)] = body.strip("\n") + "\n"
    return out


def _python_form(entry: dict) -> str | None:
    from ..ir import IRSyntaxError, IRTypeError, parse_postfix
    from ..llm.python_print import function_source

    post = _d(entry.get("correction")).get("postfix")
    if not isinstance(post, str):
        return None
    try:
        return function_source(parse_postfix(post))
    except (IRSyntaxError, IRTypeError, ValueError, KeyError):
        return None


# --------------------------------------------------------------------------- the view

def _gate_view(gate: dict, data: dict, task: str) -> dict:
    metric = gate.get("metric") or ("auc" if task == "binary" else "rmse")
    tests = []
    for key, title in (("test", "test"), ("loss_test", "loss test")):
        t = _d(gate.get(key))
        if t:
            label = f"{title} ({t['name']})" if isinstance(t.get("name"), str) else title
            tests.append((label, [(k, fmt(v)) for k, v in sorted(t.items()) if k != "name"]))
    folds = _l(gate.get("folds"))
    gains = []
    for f in folds:
        if isinstance(f, (int, float)) and not isinstance(f, bool):
            gains.append(float(f))
        elif isinstance(f, dict) and isinstance(f.get("gain"), (int, float)):
            gains.append(float(f["gain"]))
    oof = _d(gate.get("out_of_fold") or gate.get("oof"))
    columns = []
    if oof:
        columns += [("out-of-fold, legacy", _d(oof.get("legacy"))),
                    ("out-of-fold, ensemble", _d(oof.get("ensemble") or oof.get("bundle")))]
    hold = _d(gate.get("holdout"))
    if hold:
        columns += [("holdout, legacy", _d(hold.get("legacy"))), ("holdout, ensemble", _d(hold.get("ensemble")))]
    if data.get("metrics"):
        source = _d(data.get("rows")).get("bundle")
        columns += [("compile rows, legacy", _d(data["metrics"].get("legacy"))),
                    (f"compile rows, bundle{' (' + source + ')' if source in ('out-of-fold', 'in-sample') else ''}",
                     _d(data["metrics"].get("bundle")))]
    other = [(k, fmt(v)) for k, v in sorted(gate.items()) if k not in _GATE_KNOWN]
    fold_rows = []
    for i, f in enumerate(folds, 1):
        fold_rows.append([str(i)] + ([fmt(f)] if not isinstance(f, dict) else
                                     [", ".join(f"{k} {fmt(v)}" for k, v in sorted(f.items()))]))
    return {
        "decision": gate.get("decision", "?"), "ships": gate.get("decision") == "ensemble",
        "reason": gate.get("reason", ""), "metric": metric,
        "threshold": (f"alpha {fmt(gate['alpha'])}" if gate.get("alpha") is not None else
                      f"tolerance {fmt(gate.get('tolerance'))}" if gate.get("tolerance") is not None else ""),
        "split": gate.get("split") or "compile rows",
        "tests": tests, "protocol": _pairs(gate.get("protocol")),
        "folds": fold_rows, "fold_gains": gains,
        "metric_columns": [c for c, _ in columns], "metric_rows": _metric_rows(columns),
        "regions": [{"name": r.get("name"), "n": fmt(r.get("n")), "legacy": fmt(_d(r.get("legacy")).get(metric)),
                     "bundle": fmt(_d(r.get("ensemble")).get(metric))} for r in _l(gate.get("regions"))
                    if isinstance(r, dict)],
        "other": other,
    }


def _expert_view(status: str, e: dict, sources: dict[str, str], region_stats: dict) -> dict:
    region = _d(e.get("region"))
    corr = _d(e.get("correction"))
    metrics_rows, facts = [], []
    order = ("train", "valid", "holdout", "oof", "full")
    all_metrics = _d(e.get("metrics"))
    for split in sorted(all_metrics, key=lambda k: (order.index(k) if k in order else 9, k)):
        m = _d(all_metrics[split])
        if m.get("region") is not None or m.get("region_legacy") is not None:
            metrics_rows.append((split, _d(m.get("region_legacy")), _d(m.get("region"))))
        facts += [(f"{split} {k}", fmt(v)) for k, v in sorted(m.items())
                  if k not in ("region", "region_legacy") and not isinstance(v, (dict, list))]
    facts += [(k, fmt(e[k])) for k in ("strength", "z") if k in e and not isinstance(e[k], (dict, list))]
    metric_names = []
    for _, a, b in metrics_rows:
        for k in list(a) + list(b):
            if k not in metric_names:
                metric_names.append(k)
    metric_names.sort(key=lambda k: (_METRIC_ORDER.index(k) if k in _METRIC_ORDER else 99, k))
    history = []
    for h in _l(e.get("history")):
        if isinstance(h, dict):
            history.append({"proposal": fmt(h.get("proposal")), "status": fmt(h.get("status")),
                            "intent": fmt(h.get("intent")), "postfix": fmt(h.get("postfix")),
                            "score": fmt(_history_score(h)[1])})
    stats = region_stats.get(e.get("name"), {})
    return {
        "name": e.get("name", "?"), "status": status, "rule": region.get("rule", "?"),
        "cart_region": fmt(region.get("cart_region")), "math": corr.get("math", "?"),
        "postfix": corr.get("postfix", ""), "structure": corr.get("structure", ""),
        "params": _pairs(e.get("params")), "features": ", ".join(str(f) for f in _l(e.get("features"))),
        "iterations": fmt(e.get("iterations")), "proposals": fmt(e.get("proposals")),
        "facts": facts, "semantics": e.get("semantics", ""),
        "score_name": _history_score_name(_l(e.get("history"))),
        "metric_header": metric_names,
        "metrics": [{"split": s, "legacy": [fmt(a.get(k)) for k in metric_names],
                     "expert": [fmt(b.get(k)) for k in metric_names]} for s, a, b in metrics_rows],
        "history": history,
        "source": sources.get(e.get("name")),
        "python": None if sources.get(e.get("name")) else _python_form(e),
        "coverage": fmt(stats.get("coverage")), "n_rows": fmt(stats.get("n")),
    }


#: Score keys a chain's history may hold, newest protocol first: the out-of-fold gain over the
#: legacy loss (cross-fitting), or the validation metric (train/valid splits).
HISTORY_SCORES = ("oof_score", "valid_score", "score")


def _history_score(h: dict) -> tuple[str | None, Any]:
    for k in HISTORY_SCORES:
        if isinstance(h.get(k), (int, float)) and not isinstance(h.get(k), bool):
            return k, h[k]
    return None, None


def _history_score_name(history: list) -> str:
    keys = {_history_score(h)[0] for h in history if isinstance(h, dict)} - {None}
    return {"oof_score": "out-of-fold gain", "valid_score": "valid score"}.get(next(iter(sorted(keys)), ""), "score")


def _region_rows(data: dict) -> list[dict]:
    out = []
    for r in _l(data.get("regions")):
        if not isinstance(r, dict):
            continue
        out.append({"name": fmt(r.get("name")), "status": fmt(r.get("status")), "rule": fmt(r.get("rule")),
                    "n": fmt(r.get("n")), "coverage": fmt(r.get("coverage"), 4),
                    "before": fmt(r.get("residual_before"), 5), "expert": fmt(r.get("residual_expert"), 5),
                    "after": fmt(r.get("residual_after"), 5), "note": r.get("note", "")})
    return out


def _work_rows(manifest: dict, data: dict) -> list[tuple[str, str]]:
    """What each stage did, in counts (deterministic, unlike wall times)."""
    inputs = _d(manifest.get("inputs"))
    search = _d(manifest.get("search"))
    opts = _d(search.get("options"))
    chains = [c for c in _l(search.get("chains")) if isinstance(c, dict)]
    rows = [("frontend", f"{fmt(_d(inputs.get('data')).get('rows'))} rows, {len(_l(manifest.get('features')))} "
                         f"features; model {fmt(_d(inputs.get('model')).get('num_trees'))} trees")]
    lower = f"legacy trees, engine {fmt(_d(manifest.get('legacy')).get('engine', 'c'))}"
    if search:
        rows.append(("regions", f"{len(_l(search.get('regions')))} hard region(s) from CART "
                                f"(depth {fmt(opts.get('cart_depth'))}, min leaf {fmt(opts.get('min_leaf'))})"))
        rows.append(("expert chains", f"{len(chains)} chain(s), {sum(int(c.get('proposals') or 0) for c in chains)} "
                                      f"proposal(s), {sum(int(c.get('accepted') or 0) for c in chains)} accepted, "
                                      f"{fmt(opts.get('optuna_trials'))} TPE trials per candidate"))
        agg = _d(manifest.get("aggregator"))
        rows.append(("aggregator", f"{agg.get('kind')}, {fmt(agg.get('n_rounds'))} round(s)" if agg else "none"))
        rows.append(("gate", f"{fmt(_d(manifest.get('gate')).get('decision'))} on the "
                             f"{fmt(_d(manifest.get('gate')).get('split', 'holdout'))}"))
        if manifest.get("experts_module"):
            lower += f"; experts to numba ({manifest['experts_module']})"
        if agg.get("trees"):
            lower += "; aggregator trees"
    rows.append(("lowering", lower))
    rows.append(("parity", f"{fmt(_d(manifest.get('parity')).get('rows'))} rows replayed at load "
                           f"(atol {fmt(_d(manifest.get('parity')).get('atol'))})"))
    rows.append(("report", f"curves on {fmt(_d(data.get('rows')).get('n'))} rows"))
    return rows


def _base_map_text(entry: dict) -> str:
    """The experts' base margin as one line: ``base = shift + scale × legacy margin``."""
    return (f"base = {fmt(entry.get('shift'))} + {fmt(entry.get('scale'))} × legacy margin "
            f"(fitted: {fmt(entry.get('fitted'))}; increasing, so the legacy ranking is unchanged)")


def _transform_pairs(t: dict) -> list[tuple[str, str]]:
    """One shipped transform (seed 000): its name, formula, postfix IR, inputs and what it earned."""
    mt = _d(t.get("metrics"))
    earned = ", ".join(f"{k} {fmt(mt[k])}" for k in ("gain", "gain_alone", "z", "folds_positive") if k in mt)
    return [("name", str(t.get("name"))), ("math", str(t.get("math"))), ("postfix", str(t.get("postfix"))),
            ("features", ", ".join(str(f) for f in _l(t.get("features")))),
            (f"out-of-fold {mt.get('metric', 'metric')}", earned)]


def _transform_search_pairs(manifest: dict) -> list[tuple[str, str]]:
    """The transform search's record (``search.transforms``) and what each outer fold of the gate chose."""
    st = _d(_d(manifest.get("search")).get("transforms"))
    if not st:
        return []
    pairs = [(k, fmt(st[k])) for k in ("decoder", "lambda", "generated", "invalid", "evaluated", "ranked_out",
                                       "chosen", "shipped") if k in st]
    pairs.append(("chosen programs", " | ".join(str(p) for p in _l(st.get("chosen_postfix"))) or "none"))
    folds = [f for f in _l(_d(manifest.get("search")).get("outer_folds")) if isinstance(f, dict)
             and "derived_features" in f]
    if folds:
        pairs.append(("outer folds (each chose its own)",
                      "; ".join(f"fold {f.get('fold', 0) + 1}: " + (" | ".join(_l(f["derived_features"])) or "none")
                                for f in folds)))
    sel = _d(st.get("selection"))
    if sel:
        pairs.append(("selection vs NSR alone", f"{sel.get('decision')} — {sel.get('reason', '')}"))
        if sel.get("test"):
            pairs.append(("selection test", f"{sel.get('test')}: gain {fmt(sel.get('gain'))}, "
                                            f"z {fmt(sel.get('statistic'))}, one-sided p {fmt(sel.get('p_value'))} "
                                            f"(alpha {fmt(sel.get('alpha'))}), interval "
                                            + " .. ".join(fmt(v) for v in _l(sel.get("interval")))))
    if st.get("semantics"):
        pairs.append(("semantics", str(st["semantics"])))
    return pairs


def build_view(manifest: dict, data: dict, bundle_dir: Path | None) -> tuple[dict, dict[str, str]]:
    """The template context and the SVG of every plot that has data."""
    task = _d(manifest.get("task"))
    kind = task.get("kind", "?")
    inputs = _d(manifest.get("inputs"))
    model = _d(inputs.get("model"))
    gate = _d(manifest.get("gate"))
    search = _d(manifest.get("search"))
    gate_v = _gate_view(gate, data, kind)
    shipped = [("shipped", e) for e in _l(manifest.get("experts")) if isinstance(e, dict)]
    candidates = [("candidate", e) for e in _l(gate.get("candidates")) if isinstance(e, dict)]
    sources = expert_sources(bundle_dir, manifest)
    stats = {r.get("name"): r for r in _l(data.get("regions")) if isinstance(r, dict)}
    experts = [_expert_view(s, e, sources, stats) for s, e in shipped + candidates]
    imps = _d(data.get("importances"))
    agg = _d(manifest.get("aggregator"))
    features = []
    legacy_rank = {r.get("feature"): i + 1 for i, r in enumerate(_l(imps.get("legacy")))}
    for f in _l(manifest.get("features")):
        if isinstance(f, dict):
            cats = f.get("categories")
            features.append({"name": fmt(f.get("name")), "dtype": fmt(f.get("dtype")),
                             "categories": "" if cats is None else
                             f"{len(cats)}: " + ", ".join(fmt(c) for c in _l(cats)[:6]) + (" …" if len(_l(cats)) > 6 else ""),
                             "rank": fmt(legacy_rank.get(f.get("name"))) if f.get("name") in legacy_rank else ""})
    proposer = _d(search.get("proposer"))
    cart = []
    evaluated = {(_d(e.get("region")).get("cart_region")) for _, e in shipped + candidates}
    for r in _l(search.get("regions")):
        if isinstance(r, dict):
            cart.append({"index": fmt(r.get("index")), "rule": fmt(r.get("rule")), "n_train": fmt(r.get("n_train")),
                         "residual": fmt(r.get("mean_abs_residual"), 5), "score": fmt(r.get("score"), 5),
                         "expert": "yes" if r.get("index") in evaluated else "no"})
    dropped = [{"cart_region": fmt(d.get("cart_region")), "rule": fmt(d.get("rule")),
                "correction": fmt(d.get("correction")), "reason": fmt(d.get("reason"))}
               for d in _l(gate.get("dropped")) if isinstance(d, dict)]
    rows_info = _d(data.get("rows"))
    n_rows = fmt(rows_info.get("n"))
    if not data:
        rows_note = "this bundle has no report data (report/data.json): curves and region residuals are not shown"
    elif rows_info.get("bundle") == "out-of-fold":
        rows_note = (f"curves and region residuals on all {n_rows} labelled compile rows; the bundle's margins there "
                     "are out-of-fold (each row scored by experts and aggregator fitted without it), the legacy "
                     "model's are its own (frozen, never fitted on these rows)")
    elif rows_info.get("bundle") == "in-sample":
        rows_note = (f"curves and region residuals on all {n_rows} labelled compile rows; the bundle's margins are "
                     "in-sample (its experts and aggregator were refitted on these rows), so its curves are "
                     "optimistic: the gate's out-of-fold test is the honest comparison")
    else:
        rows_note = (f"curves on all {n_rows} labelled compile rows; the bundle is the legacy model, which was never "
                     "fitted on them")
    if rows_info.get("note"):
        rows_note += f"; {rows_info['note']}"

    svgs: dict[str, str] = {}
    for pid, svg in (
        ("roc", plots.roc(data) if kind == "binary" else None),
        ("reliability", plots.reliability(data, kind)),
        ("fold_gains", plots.fold_gains(gate_v["fold_gains"], gate_v["metric"])),
        ("residual_by_region", plots.residual_by_region(data)),
        ("chain_metric", plots.chain_metric(shipped + candidates, gate_v["metric"])),
        ("importances_aggregator", plots.importances(_l(imps.get("aggregator")), "importances_aggregator",
                                                     "Aggregator: features by total gain")),
        ("importances_legacy", plots.importances(_l(imps.get("legacy")), "importances_legacy",
                                                 "Legacy model: features by total gain")),
    ):
        if svg:
            svgs[pid] = svg

    if gate_v["ships"]:
        headline = f"{len(shipped)} expert(s) ship with the legacy model"
    elif candidates or dropped:
        headline = (f"legacy model only: experts did not ship ({len(candidates)} candidate(s) refused by the gate, "
                    f"{len(dropped)} chain(s) dropped before it)")
    else:
        headline = "legacy model only"
    usage = _d(proposer.get("usage"))
    view = {
        "title": f"fecc audit: {model.get('file', 'bundle')}",
        "headline": headline,
        "compiler_version": fmt(_d(manifest.get("compiler")).get("version")),
        "model": {"file": fmt(model.get("file")), "sha256": fmt(model.get("sha256")), "format": fmt(model.get("format")),
                  "library_version": fmt(model.get("library_version")), "num_trees": fmt(model.get("num_trees")),
                  "kind": fmt(kind), "objective": fmt(task.get("objective")), "link": fmt(task.get("link")),
                  "num_class": fmt(task.get("num_class")), "n_features": len(features),
                  "engine": _pairs({k: v for k, v in _d(manifest.get("legacy")).items() if k in _ENGINE_KEYS})},
        "data": {"file": fmt(_d(inputs.get("data")).get("file")), "rows": fmt(_d(inputs.get("data")).get("rows")),
                 "target": fmt(_d(inputs.get("data")).get("target")), "seed": fmt(inputs.get("seed"))},
        "rows_note": rows_note,
        "residual": _d(data.get("residual")),
        "features": features,
        "legacy_importances": [(fmt(r.get("feature")), fmt(r.get("total_gain")), fmt(r.get("gain")),
                                fmt(r.get("splits"))) for r in _l(imps.get("legacy"))],
        "legacy_importances_note": imps.get("legacy_note", ""),
        "gate": gate_v,
        "regions": _region_rows(data),
        "cart": cart,
        "dropped": dropped,
        "experts": experts,
        "n_shipped": len(shipped),
        "n_candidates": len(candidates),
        "transforms": [_transform_pairs(t) for t in _l(manifest.get("transforms")) if isinstance(t, dict)],
        "transform_search": _transform_search_pairs(manifest),
        "aggregator": None if not agg else {
            "pairs": [(k, fmt(agg.get(k))) for k in ("kind", "base_margin", "formula", "offset", "n_rounds",
                                                     "n_model_features") if k in agg]
                     + ([("base map", _base_map_text(agg["base_map"]))] if isinstance(agg.get("base_map"), dict) else []),
            "params": _pairs(agg.get("params")), "cv": _pairs(agg.get("cv")),
            "experts": ", ".join(str(x) for x in _l(agg.get("experts"))),
            "n_inputs": len(_l(agg.get("feature_names"))),
            "importances": [(fmt(r.get("feature")), fmt(r.get("total_gain")), fmt(r.get("gain")), fmt(r.get("splits")))
                            for r in _l(imps.get("aggregator"))],
            "importances_note": imps.get("aggregator_note", "") or ("" if imps.get("aggregator") else
                                                                    "no trees: the aggregator is a plain sum"),
        },
        "proposer": {"name": proposer.get("name"), "usage": _pairs(usage)} if proposer else None,
        "search_options": _pairs(search.get("options")),
        "work": _work_rows(manifest, data),
        "platform": _pairs(manifest.get("platform")),
        "plots": [{"id": pid, "caption": PLOTS[pid]} for pid in PLOTS if pid in svgs],
    }
    return view, svgs


# --------------------------------------------------------------------------- outputs

def _environment():
    from ..templating import environment

    return environment().overlay(autoescape=True)


def render(manifest: dict, data: dict, bundle_dir: Path | None) -> Report:
    """The report for a bundle's ``manifest`` and ``report/data.json`` content ``data``.

    ``bundle_dir`` is where the emitted expert module is read from (the staging
    directory at compile time, the bundle for ``fecc audit``).
    """
    from markupsafe import Markup

    view, svgs = build_view(manifest, data, bundle_dir)
    html = _environment().get_template("report/report.html.j2").render(
        v=view, svg={k: Markup(svgs[k]) if k in svgs else None for k in PLOTS})
    from ..templating import environment

    md = environment().get_template("report/report.md.j2").render(v=view)
    return Report(html=html, markdown=md, text=summary_text(view), svgs=svgs)


def summary_text(v: dict) -> str:
    """The plain-text summary ``fecc audit`` prints."""
    g = v["gate"]
    m = v["model"]
    lines = [
        v["title"],
        f"  legacy:   {m['file']} ({m['format']} {m['library_version']}), {m['kind']} {m['objective']}, "
        f"{m['num_trees']} trees, {m['n_features']} features, sha256 {m['sha256'][:16]}…",
        f"  data:     {v['data']['file']}, {v['data']['rows']} rows, target {v['data']['target']}, seed {v['data']['seed']}",
        f"  verdict:  {v['headline']}",
        f"  gate:     {g['decision']} — {g['reason']}",
    ]
    for title, pairs in g["tests"]:
        brief = [(k, val) for k, val in pairs if k in ("gain", "interval", "statistic", "p_value", "p")] or pairs
        lines.append(f"  {title}: " + ", ".join(f"{k} {val}" for k, val in brief))
    if g["metric_rows"]:
        lines.append("  metrics:  " + " | ".join(g["metric_columns"]))
        for row in g["metric_rows"]:
            if row[0] != "n":
                lines.append(f"    {row[0]:<9} " + " | ".join(row[1:]))
    for r in v["regions"]:
        lines.append(f"  region {r['name']} ({r['status']}): {r['rule']}; {r['n']} rows, coverage {r['coverage']}, "
                     f"|residual| {r['before']} -> {r['after']}")
    for e in v["experts"]:
        lines.append(f"  {e['name']} ({e['status']}): if {e['rule']}: margin += {e['math']}")
    for d in v["dropped"]:
        lines.append(f"  dropped region {d['cart_region']}: {d['reason']}")
    for t in v["transforms"]:
        t = dict(t)
        lines.append(f"  transform {t['name']} = {t['math']} (postfix {t['postfix']})")
    if v.get("transform_search"):
        ts = dict(v["transform_search"])
        lines.append("  transform search: " + ", ".join(f"{k} {ts[k]}" for k in ("decoder", "lambda", "generated",
                     "invalid", "evaluated", "ranked_out", "chosen") if k in ts))
        if "selection vs NSR alone" in ts:
            lines.append("  transform selection: " + ts["selection vs NSR alone"])
    if v["aggregator"]:
        a = dict(v["aggregator"]["pairs"])
        top = ", ".join(f[0] for f in v["aggregator"]["importances"][:5])
        lines.append(f"  aggregator: {a.get('kind')}, {a.get('n_rounds', '0')} rounds" + (f"; top: {top}" if top else ""))
        if "base map" in a:
            lines.append(f"  base map:   {a['base map']}")
    if v["proposer"]:
        usage = ", ".join(f"{k} {val}" for k, val in v["proposer"]["usage"])
        lines.append(f"  proposer: {v['proposer']['name']}" + (f" ({usage})" if usage else ""))
    lines.append(f"  plots:    {', '.join(p['id'] for p in v['plots']) or 'none'}")
    return "\n".join(lines) + "\n"
