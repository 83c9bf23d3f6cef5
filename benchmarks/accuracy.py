"""Accuracy benchmark: frozen legacy XGBoost vs Res-XGBoost vs retraining vs fecc.

Protocol (DESIGN.md's safety-gate paragraph): per data set and seed, a split into
50% / 30% / 20% (stratified for binary targets).  The legacy model (XGBoost, default
parameters) is trained on the first 50% and frozen.  Corrections are fitted on the 30%
(the *compile rows*): Res-XGBoost is a second booster (default parameters, 100 rounds)
with ``base_margin = legacy margin``; fecc runs its search on all compile rows with
cross-fitting (what ``fecc compile`` runs; the gate may return legacy-only).
"Retrain" is a new default XGBoost on legacy + compile rows (80%) — what fecc's users
cannot do.  Metrics are measured on the last 20%, untouched by all.  For a data set
in time order (``datasets.TIME_ORDERED``) a *shifted* case is added: the legacy model
is trained on the first half of the rows, compile and test rows come from the second.

Binary: AUC (Δ = model − legacy).  Regression: RMSE (Δ = legacy − model, so that
positive is better everywhere).

    python benchmarks/accuracy.py                          # every data set x 10 seeds
    python benchmarks/accuracy.py --datasets breast-w --seeds 0
    python benchmarks/accuracy.py --compare local --option max_proposals=4 --csv llm.csv
    python benchmarks/accuracy.py --from-csv a.csv b.csv      # the tables of saved runs
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import DATASETS, TIME_ORDERED  # noqa: E402

from fecc.llm.grammar_proposer import GrammarProposer  # noqa: E402
from fecc.llm.registry import make_proposer  # noqa: E402
from fecc.search import SearchOptions, run_search  # noqa: E402
from fecc.search.crossfit import gate_folds  # noqa: E402
from fecc.search.select import prefer  # noqa: E402
from fecc.transforms import TransformOptions, search_transforms  # noqa: E402
from fecc.transforms.stage import TransformRefit, augment  # noqa: E402


def _metric(task, y, margin) -> float:
    if task == "binary":
        return float(roc_auc_score(y, margin))
    return float(np.sqrt(np.mean((y - margin) ** 2)))


def _gain(task, legacy: float, new: float) -> float:
    return new - legacy if task == "binary" else legacy - new


def _split(name: str, y: np.ndarray, task: str, seed: int, shifted: bool):
    idx = np.arange(len(y))
    strat = (lambda rows: y[rows]) if task == "binary" else (lambda rows: None)
    if shifted:  # legacy on the first half (in time), compile/test from the second half
        legacy_idx, rest = idx[: len(y) // 2], idx[len(y) // 2:]
    else:
        legacy_idx, rest = train_test_split(idx, train_size=0.5, stratify=strat(idx), random_state=seed)
    fit_idx, test_idx = train_test_split(rest, train_size=0.6, stratify=strat(rest), random_state=seed)
    return legacy_idx, fit_idx, test_idx


def run_one(name: str, X: pd.DataFrame, y: np.ndarray, task: str, seed: int, options: dict,
            llms: tuple[str, ...] = ("none",), shifted: bool = False, progress=None,
            transforms: tuple[str, ...] = ("none",), transform_options: dict | None = None) -> list[dict]:
    """One data set and seed: legacy, Res-XGBoost, retrain, and fecc once per proposer spec in ``llms``
    and ``--transforms`` mode in ``transforms`` (``none``: NSR alone; ``teaming``: NSR on the compile rows
    plus the transforms chosen on them, the gate rerunning the transform search in each outer fold,
    as ``fecc compile --transforms teaming`` does)."""
    legacy_idx, fit_idx, test_idx = _split(name, y, task, seed, shifted)
    Xn = X.to_numpy(np.float64)
    dm = lambda rows, **kw: xgb.DMatrix(Xn[rows], missing=np.nan, **kw)  # noqa: E731
    Model = xgb.XGBClassifier if task == "binary" else xgb.XGBRegressor
    legacy = Model(random_state=seed, n_jobs=2)
    legacy.fit(Xn[legacy_idx], y[legacy_idx])
    booster = legacy.get_booster()
    m_fit = booster.predict(dm(fit_idx), output_margin=True).astype(np.float64)
    m_test = booster.predict(dm(test_idx), output_margin=True).astype(np.float64)
    yt = y[test_idx]
    base = {"dataset": name + (" (time shift)" if shifted else ""), "task": task, "seed": seed,
            "n_compile": len(fit_idx)}
    base["legacy"] = _metric(task, yt, m_test)
    objective = "binary:logistic" if task == "binary" else "reg:squarederror"
    res = xgb.train({"objective": objective, "seed": seed, "nthread": 2},
                    dm(fit_idx, label=y[fit_idx], base_margin=m_fit), num_boost_round=100)
    base["res"] = _metric(task, yt, res.predict(dm(test_idx, base_margin=m_test), output_margin=True))
    both = np.concatenate([legacy_idx, fit_idx])
    retrain = Model(random_state=seed, n_jobs=2)
    retrain.fit(Xn[both], y[both])
    base["retrain"] = _metric(task, yt, retrain.get_booster().predict(dm(test_idx), output_margin=True))

    Xfit = X.iloc[fit_idx].reset_index(drop=True)
    Xt = X.iloc[test_idx].reset_index(drop=True)
    rows = []
    for llm in llms:
        alone = None      # the NSR search on the model's features (result, proposer, seconds), run once per proposer

        def nsr(Xs, **extra):
            proposer = GrammarProposer() if llm == "none" else make_proposer(llm, seed=seed)
            opts = SearchOptions.from_dict({"seed": seed, **options})
            folds = gate_folds(y[fit_idx], task=task, k=opts.gate_folds, inner_k=opts.n_folds, seed=seed)
            workdir = Path(tempfile.mkdtemp(prefix="fecc-bench-"))
            return run_search(X=Xs, y=y[fit_idx], legacy_margin=m_fit, task=task, folds=folds, proposer=proposer,
                              options=opts, workdir=workdir, progress=progress, **extra), proposer, opts

        def nsr_alone():
            """(result, proposer, options, seconds, reused): the first call runs it, later ones reuse it."""
            nonlocal alone
            if alone is None:  # what --transforms none computes; the teaming mode reuses it (same folds, seed)
                t = time.time()
                alone = (*nsr(Xfit), time.time() - t)
                return (*alone, False)
            return (*alone, True)

        for mode in transforms:
            rows.append(_run_mode(mode, dict(base, proposer=llm, transforms=mode), nsr, nsr_alone, Xfit, Xt,
                                  y[fit_idx], m_fit, m_test, yt, task, seed, transform_options))
    return rows


def _run_mode(mode, row, nsr, nsr_alone, Xfit, Xt, y_fit, m_fit, m_test, yt, task, seed, transform_options):
    """One fecc run as ``fecc compile --transforms <mode>`` computes it: ``none``, the NSR search alone;
    ``teaming``, the transform search on the compile rows, then (when it chose any) the NSR search with them
    (the gate refitting them in each outer fold) and alone, and :func:`fecc.search.select.prefer` between the
    two (fecc_seconds counts all of it, the search alone included even when reused from the ``none`` run)."""
    t0 = time.time()
    Xt_s = Xt
    if mode == "none":
        result, proposer, opts, _, _ = nsr_alone()
    else:
        topts = TransformOptions.from_dict({"seed": seed, **(transform_options or {})})
        workdir = Path(tempfile.mkdtemp(prefix="fecc-bench-tf-"))
        chosen = search_transforms(Xfit, y_fit, m_fit, task, None, topts, workdir=workdir).transforms
        row["transform_seconds"] = time.time() - t0
        row["n_transforms"] = len(chosen)
        row["transforms_chosen"] = " | ".join(t.postfix for t in chosen)
        derived = None
        if chosen:
            derived, derived_proposer, _ = nsr(augment(chosen, Xfit), base_features=[str(c) for c in Xfit.columns],
                                               refit_features=TransformRefit(topts))
        result, proposer, opts, alone_seconds, reused = nsr_alone()
        if reused:
            t0 -= alone_seconds
        selection = prefer(task=task, y=y_fit, legacy_margin=m_fit, alone=result, derived=derived,
                           alpha=opts.gate_alpha)
        row["selection"] = selection.decision
        row["selection_p"] = selection.test.p_value if selection.test is not None else float("nan")
        row["selection_gain"] = selection.test.gain if selection.test is not None else float("nan")
        if derived is not None:
            row["gate_with_tf"] = derived.gate.decision
            row["oof_gain_with_tf"] = derived.gate.gain
        if selection.transforms:
            result, proposer, Xt_s = derived, derived_proposer, augment(chosen, Xt)
        row["n_transforms_shipped"] = len(chosen) if selection.transforms and result.shipped else 0
    row["fecc_seconds"] = time.time() - t0
    row["chain_accepted"], row["chain_proposals"] = result.acceptance
    usage = getattr(proposer, "usage", None)
    if usage is not None:  # LLM proposers: how many answers were usable
        row["llm_calls"] = usage.calls
        row["llm_answers_valid"] = usage.calls - usage.rejected_answers - usage.backend_errors
        row["llm_valid_first_try"] = usage.valid_first_try
        row["llm_rejected"] = usage.rejected_answers
        row["llm_proposals"] = usage.proposals
        row["llm_usable"] = usage.accepted
        row["llm_seconds"] = usage.seconds
        row["llm_tokens"] = usage.prompt_tokens + usage.completion_tokens
    row["experts"] = len(result.experts)
    row["gate"] = result.gate.decision
    row["oof_gain"] = result.gate.gain
    row["fecc"] = _metric(task, yt, result.predict_margin(Xt_s, m_test))
    # the gate's p-value, and what the full search scores on the test rows had the gate let
    # it through: an alpha sweep (`alpha_table`) reads both
    row["gate_p"] = result.gate.test.p_value if result.gate.test is not None else float("nan")
    loss = result.gate.loss_test
    row["gate_loss_ok"] = bool(loss is None or not loss.gain < 0)  # binary: OOF log loss not worse
    forced = replace(result, gate=replace(result.gate, decision="ensemble"))
    row["fecc_forced"] = _metric(task, yt, forced.predict_margin(Xt_s, m_test))
    return row


def proposer_table(rows: list[dict]) -> str:
    """LLM vs grammar proposer, same seeds and budgets: validity, acceptance, test metric, time."""
    df = pd.DataFrame(rows)
    lines = ["| data set | proposer | answers valid | proposals usable (after correction) | "
             "chain acceptance | fecc (Δ vs legacy) | shipped | LLM s | compile s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (name, llm), d in df.groupby(["dataset", "proposer"], sort=False):
        m = d.mean(numeric_only=True)
        if "llm_calls" in d and d.llm_calls.notna().any():
            valid = f"{int(d.llm_answers_valid.sum())}/{int(d.llm_calls.sum())}"
            usable = f"{int(d.llm_usable.sum())}/{int(d.llm_proposals.sum())}"
            if d.llm_proposals.sum():
                usable += f" ({d.llm_usable.sum() / d.llm_proposals.sum():.0%})"
            llm_s = f"{m.llm_seconds:.0f}"
        else:
            valid, usable, llm_s = "— (by construction)", "—", "0"
        acc = f"{int(d.chain_accepted.sum())}/{int(d.chain_proposals.sum())}"
        lines.append(f"| {name} | {'grammar' if llm == 'none' else llm} | {valid} | {usable} | {acc} | "
                     f"{m.fecc:.4f} ({_gain(d.task.iloc[0], m.legacy, m.fecc):+.4f}) | "
                     f"{(d.gate == 'ensemble').sum()}/{len(d)} | {llm_s} | {m.fecc_seconds:.0f} |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    """Per data set (mean over seeds): legacy metric and each method's Δ; binary means and counts."""
    df = pd.DataFrame(rows)
    for c in ("res", "retrain", "fecc"):
        df[f"d_{c}"] = [_gain(t, a, b) for t, a, b in zip(df.task, df.legacy, df[c])]
    lines = ["| data set | task | compile rows | legacy | Res-XGB Δ | retrain Δ | fecc Δ | fecc Δ min/max over seeds "
             "| fecc shipped | fecc s (max) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, d in df.groupby("dataset", sort=False):
        m = d.mean(numeric_only=True)
        metric = "AUC" if d.task.iloc[0] == "binary" else "RMSE"
        lines.append(
            f"| {name} | {d.task.iloc[0]} | {int(m.n_compile)} | {metric} {m.legacy:.4f} | {m.d_res:+.4f} | "
            f"{m.d_retrain:+.4f} | **{m.d_fecc:+.4f}** | {d.d_fecc.min():+.4f} / {d.d_fecc.max():+.4f} | "
            f"{(d.gate == 'ensemble').sum()}/{len(d)} | {m.fecc_seconds:.0f} ({d.fecc_seconds.max():.0f}) |")
    # the means are over the i.i.d. cases; a time-shifted case is reported on its own row
    b = df[(df.task == "binary") & ~df.dataset.str.endswith("(time shift)")]
    if len(b):
        per = b.groupby("dataset", sort=False).d_fecc.mean()
        m = b.mean(numeric_only=True)
        lines.append(f"| **binary mean** ({per.size} sets, i.i.d.) | | | AUC {m.legacy:.4f} | {m.d_res:+.4f} | "
                     f"{m.d_retrain:+.4f} | **{m.d_fecc:+.4f}** | | {(b.gate == 'ensemble').sum()}/{len(b)} | "
                     f"{m.fecc_seconds:.0f} |")
        lines.append("")
        lines.append(f"binary sets: mean fecc Δ AUC {per.mean():+.4f}; lowest set mean {per.min():+.4f} "
                     f"({per.idxmin()}); sets with a gain above +0.002: {(per > 0.002).sum()} of {per.size}")
    return "\n".join(lines)


def transforms_table(rows: list[dict]) -> str:
    """NSR alone vs NSR + transforms (``--transforms teaming``, the selection against NSR alone included):
    mean Δ vs legacy per data set, how often the transform search chose any and the selection shipped them,
    and the seconds."""
    d = pd.DataFrame(rows)
    d["delta"] = [_gain(t, lg, f) for t, lg, f in zip(d.task, d.legacy, d.fecc)]
    lines = ["| data set | task | compile rows | seeds | NSR Δ | NSR + transforms Δ | difference | min difference "
             "| runs with transforms chosen | selection chose transforms | shipped NSR / +tf "
             "| transform search s (mean) | fecc s NSR / +tf (mean) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, g in d.groupby("dataset", sort=False):
        a = g[g.transforms == "none"].set_index("seed")
        b = g[g.transforms == "teaming"].set_index("seed")
        diff = (b.delta - a.delta).dropna()
        picked = int((b.selection == "transforms").sum()) if "selection" in b else 0
        lines.append(f"| {name} | {g.task.iloc[0]} | {int(g.n_compile.iloc[0])} | {len(diff)} | {a.delta.mean():+.4f} | "
                     f"{b.delta.mean():+.4f} | {diff.mean():+.4f} | {diff.min():+.4f} | "
                     f"{int((b.n_transforms > 0).sum())}/{len(b)} | {picked}/{int((b.n_transforms > 0).sum())} | "
                     f"{(a.gate == 'ensemble').sum()} / {(b.gate == 'ensemble').sum()} | "
                     f"{b.transform_seconds.mean():.0f} | {a.fecc_seconds.mean():.0f} / {b.fecc_seconds.mean():.0f} |")
    a, b = d[d.transforms == "none"], d[d.transforms == "teaming"]
    per = (b.groupby("dataset", sort=False).delta.mean() - a.groupby("dataset", sort=False).delta.mean()).dropna()
    picked = int((b.selection == "transforms").sum()) if "selection" in b else 0
    lines.append(f"| **mean** | | | | {a.delta.mean():+.4f} | {b.delta.mean():+.4f} | "
                 f"{b.delta.mean() - a.delta.mean():+.4f} | | {int((b.n_transforms > 0).sum())}/{len(b)} | "
                 f"{picked}/{int((b.n_transforms > 0).sum())} | | | |")
    if len(per):
        lines.append("")
        lines.append(f"lowest per-set difference (NSR + transforms − NSR alone): {per.min():+.4f} ({per.idxmin()}); "
                     f"sets more than 0.002 below NSR alone: {int((per < -0.002).sum())} of {per.size}")
    return "\n".join(lines)


def alpha_table(rows: list[dict], alphas=(0.01, 0.05, 0.1, 0.2, 1.0)) -> str:
    """Binary i.i.d. cases: what the mean Δ would be had the gate used another alpha (ship when
    the out-of-fold DeLong p ≤ alpha and the OOF log loss is not worse; alpha 1 ships every
    search that kept an expert)."""
    df = pd.DataFrame(rows)
    if "gate_p" not in df:
        return ""
    b = df[(df.task == "binary") & ~df.dataset.str.endswith("(time shift)")].copy()
    if b.empty:
        return ""
    b["d_forced"] = b.fecc_forced - b.legacy
    lines = ["| gate alpha | ships | mean Δ AUC | lowest set mean | sets above +0.002 |", "|---|---|---|---|---|"]
    for a in alphas:
        ship = (b.gate_p <= a) & b.gate_loss_ok.astype(bool) & (b.experts > 0)
        if a == 1.0:
            ship = b.experts > 0
        b["d"] = np.where(ship, b.d_forced, 0.0)
        per = b.groupby("dataset", sort=False).d.mean()
        lines.append(f"| {a:g}{' (default)' if a == 0.05 else ''} | {int(ship.sum())}/{len(b)} | {per.mean():+.4f} | "
                     f"{per.min():+.4f} ({per.idxmin()}) | {(per > 0.002).sum()} of {per.size} |")
    return "\n".join(lines)


def _print_saved(paths: list[str]) -> int:
    """The tables of saved per-run rows; a (data set, seed, proposer, transforms) case present in
    two files is an error rather than silently counted twice."""
    frames = []
    for path in paths:
        try:
            frames.append(pd.read_csv(path))
        except (OSError, ValueError) as exc:
            print(f"accuracy.py: cannot read {path}: {exc}", file=sys.stderr)
            return 2
    df = pd.concat(frames, ignore_index=True)
    key = ["dataset", "seed", "proposer", "transforms"]
    dup = df[df.duplicated(key, keep=False)]
    if len(dup):
        first = dup.iloc[0]
        print(f"accuracy.py: {len(dup)} rows repeat a case, e.g. {first.dataset} seed {first.seed}", file=sys.stderr)
        return 2
    order = {name: i for i, name in enumerate(dict.fromkeys(df.dataset))}
    df = df.sort_values(["dataset", "seed"], key=lambda c: c.map(order) if c.name == "dataset" else c, kind="stable")
    rows = df.to_dict("records")
    seeds = sorted(df.seed.unique())
    print(f"{len(rows)} runs, seeds {', '.join(str(s) for s in seeds)}, from {', '.join(paths)}")
    print()
    if (df.transforms == "teaming").any():
        print(transforms_table(rows))
    elif df.proposer.nunique() > 1:
        print(proposer_table(rows))
    else:
        print(table(rows))
        print()
        print(alpha_table(rows))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--seeds", nargs="*", type=int, default=list(range(10)),
                    help="seeds (default 0..9: on a few hundred test rows one seed moves a set's mean by 0.003)")
    ap.add_argument("--no-shift", action="store_true", help="skip the time-shifted cases")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="a fecc search option (repeatable)")
    ap.add_argument("--csv", help="also write the per-run rows here")
    ap.add_argument("--llm", default="none", help="proposer spec for fecc (default none = grammar proposer)")
    ap.add_argument("--compare", metavar="SPEC",
                    help="run fecc twice per data set and seed, with the grammar proposer and with SPEC "
                         "(e.g. local), and print the proposer table")
    ap.add_argument("--transforms", choices=("none", "teaming", "both"), default="none",
                    help="fecc with the teaming transforms (seed 000) before the NSR search, or both ways "
                         "(then the transforms table is printed)")
    ap.add_argument("--transform-option", action="append", default=[], metavar="KEY=VALUE",
                    help="a transform search option (repeatable)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the search's progress lines")
    ap.add_argument("--from-csv", nargs="+", metavar="CSV",
                    help="run nothing: print the tables of per-run rows saved by --csv (several files are "
                         "concatenated, e.g. two runs over different seeds)")
    args = ap.parse_args(argv)
    if args.from_csv:
        return _print_saved(args.from_csv)
    progress = (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True)) if args.verbose else None
    llms = ("none", args.compare) if args.compare else (args.llm,)
    options = dict(kv.split("=", 1) for kv in args.option)
    modes = ("none", "teaming") if args.transforms == "both" else (args.transforms,)
    topts = dict(kv.split("=", 1) for kv in args.transform_option)
    rows = []
    for name in args.datasets:
        X, y, task = DATASETS[name]()
        cases = [False] + ([True] if name in TIME_ORDERED and not args.no_shift else [])
        for shifted in cases:
            for seed in args.seeds:
                for row in run_one(name, X, y, task, seed, options, llms=llms, shifted=shifted, progress=progress,
                                   transforms=modes, transform_options=topts):
                    rows.append(row)
                    g = _gain(task, row["legacy"], row["fecc"])
                    print(f"{row['dataset']} seed {seed} [{row['proposer']}, transforms {row['transforms']}]: legacy {row['legacy']:.4f}  "
                          f"res {row['res']:.4f}  retrain {row['retrain']:.4f}  fecc {row['fecc']:.4f} "
                          f"(Δ {g:+.4f}; {row['gate']}, {row['experts']} experts, oof gain {row['oof_gain']:+.4f}, "
                          f"{row['fecc_seconds']:.0f}s)", file=sys.stderr, flush=True)
                    if args.csv:  # after every run: a long comparison keeps what it has if stopped
                        pd.DataFrame(rows).to_csv(args.csv, index=False)
    if args.transforms == "both":
        print(transforms_table(rows))
    else:
        print(proposer_table(rows) if args.compare else table(rows))
        if not args.compare:
            print()
            print(alpha_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
