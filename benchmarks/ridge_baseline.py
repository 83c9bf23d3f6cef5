"""Baseline for the accuracy benchmark: a plain cross-fitted ridge correction of the legacy margin.

Same splits as ``accuracy.py`` (legacy XGBoost on 50%, compile 30%, test 20%).  On the
compile rows, a logistic ridge correction ``margin = legacy + b + Σ w_j·basis_j`` over every
feature — ``linear`` (standardised value, median-imputed, plus a missing indicator) or
``hinge`` (also hinges at the 25/50/75% quantiles) — with the ridge chosen by inner 5-fold
CV; it ships when the same out-of-fold test as fecc's gate (DeLong one-sided p ≤ 0.05 and
OOF log loss not worse, outer 5 folds re-running the whole fit) says so.  Binary sets only.

    python benchmarks/ridge_baseline.py linear,hinge                 # every binary set x 5 seeds
    python benchmarks/ridge_baseline.py linear breast-w,HMDA
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import roc_auc_score
from accuracy import _split  # noqa: E402
from datasets import DATASETS  # noqa: E402
from fecc.search import metrics  # noqa: E402
from fecc.search.crossfit import make_folds, solve_weights  # noqa: E402
from fecc.search.significance import delong  # noqa: E402

def basis(Xc, Xo, kind):
    cols_c, cols_o = [], []
    for j in range(Xc.shape[1]):
        a, b = Xc[:, j], Xo[:, j]
        fin = np.isfinite(a)
        if fin.sum() < 10: continue
        med = np.median(a[fin]); sd = a[fin].std()
        if sd <= 0: continue
        ac = np.where(np.isfinite(a), a, med); bc = np.where(np.isfinite(b), b, med)
        cols_c.append((ac - med) / sd); cols_o.append((bc - med) / sd)
        if (~fin).any():
            cols_c.append((~fin).astype(float)); cols_o.append((~np.isfinite(b)).astype(float))
        if kind == "hinge" and np.unique(a[fin]).size > 5:
            for q in (0.25, 0.5, 0.75):
                t = np.quantile(a[fin], q)
                cols_c.append(np.maximum(ac - t, 0) / sd); cols_o.append(np.maximum(bc - t, 0) / sd)
    C = np.column_stack(cols_c); O = np.column_stack(cols_o)
    lo, hi = C.min(0), C.max(0)
    return C, np.clip(O, lo, hi)

def fit_ridge(y, m, B, lam):
    w = solve_weights("binary", y, m, np.column_stack([np.ones(len(y)), B]), lam)
    return w

def predict(w, m, B): return m + np.column_stack([np.ones(len(m)), B]) @ w

def choose(y, m, B, seed, grid=(3, 10, 30, 100, 300, 1000)):
    f = make_folds(y, task="binary", k=5, seed=seed)
    best = None
    for lam in grid:
        oof = np.zeros((f.repeats, len(y)))
        for j in range(f.n_fits):
            tr, te = f.train(j), f.test(j)
            oof[j // f.k, te] = predict(fit_ridge(y[tr], m[tr], B[tr], lam), m[te], B[te])
        loss = np.mean([metrics.logloss_rows(y, o).mean() for o in oof])
        if best is None or loss < best[0]: best = (loss, lam)
    return best[1]

def run(name, seed, kind):
    X, y, task = DATASETS[name]()
    if task != "binary": return None
    li, fi, ti = _split(name, y, task, seed, False)
    Xn = X.to_numpy(np.float64)
    leg = xgb.XGBClassifier(random_state=seed, n_jobs=2).fit(Xn[li], y[li]).get_booster()
    mf = leg.predict(xgb.DMatrix(Xn[fi], missing=np.nan), output_margin=True).astype(float)
    mt = leg.predict(xgb.DMatrix(Xn[ti], missing=np.nan), output_margin=True).astype(float)
    yf, yt = y[fi].astype(float), y[ti]
    Bf, Bt = basis(Xn[fi], Xn[ti], kind)
    # outer OOF for the gate (whole procedure incl. ridge choice inside)
    of = make_folds(yf, task="binary", k=5, seed=seed + 1)
    oof = np.zeros((of.repeats, len(yf)))
    for j in range(of.n_fits):
        tr, te = of.train(j), of.test(j)
        lam = choose(yf[tr], mf[tr], Bf[tr], seed)
        oof[j // of.k, te] = predict(fit_ridge(yf[tr], mf[tr], Bf[tr], lam), mf[te], Bf[te])
    o = oof.mean(0)
    t = delong(yf, mf, o, 0.95)
    ll = metrics.logloss_rows(yf, o).mean() - metrics.logloss_rows(yf, mf).mean()
    ship = t.p_value <= 0.05 and ll <= 0
    lam = choose(yf, mf, Bf, seed)
    pt = predict(fit_ridge(yf, mf, Bf, lam), mt, Bt)
    d_forced = roc_auc_score(yt, pt) - roc_auc_score(yt, mt)
    return dict(dataset=name, seed=seed, kind=kind, oof=t.gain, p=t.p_value, ll=ll, ship=ship,
                forced=d_forced, d=d_forced if ship else 0.0, lam=lam, q=Bf.shape[1])

if __name__ == "__main__":
    kinds = sys.argv[1].split(",")
    names = sys.argv[2].split(",") if len(sys.argv) > 2 else list(DATASETS)
    rows = []
    for name in names:
        for seed in range(5):
            for kind in kinds:
                t0 = time.time(); r = run(name, seed, kind)
                if r is None: break
                r["s"] = time.time() - t0; rows.append(r); print(r, flush=True)
    df = pd.DataFrame(rows)
    print(df.groupby(["dataset", "kind"], sort=False)[["oof", "forced", "d", "ship", "s"]].mean().round(4))
    print(df.groupby("kind")[["forced", "d", "ship"]].mean().round(4))
    if len(sys.argv) > 3:
        df.to_csv(sys.argv[3], index=False)
