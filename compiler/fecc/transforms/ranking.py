"""Learned ranking before real evaluation (seeds 002/003).

Candidates decoded in a round are ranked by the predictions of the ML evaluator and (when
there is one) the student's predicted score, combined as the weighted mean of their
normalised ranks (each ranker weighted by its Kendall τ in the rounds before, floored
at 0, so a ranker that has not ordered real scores stops voting); only the top ones are evaluated for real, plus a small random *audit*
sample of the rest so that the rankers' quality is measured on candidates they did not
favour.  The round reports how many real evaluations ranking saved and Kendall's τ
between each ranker's predictions (made before evaluation) and the real scores.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import kendalltau


def kendall_tau(predicted, real) -> float:
    """Kendall's τ-b between two score lists (NaN with fewer than 3 pairs or no variation)."""
    p = np.asarray(predicted, dtype=np.float64)
    r = np.asarray(real, dtype=np.float64)
    ok = np.isfinite(p) & np.isfinite(r)
    p, r = p[ok], r[ok]
    if p.size < 3 or np.ptp(p) == 0 or np.ptp(r) == 0:
        return float("nan")
    return float(kendalltau(p, r).statistic)


def normalised_ranks(x) -> np.ndarray:
    """Ranks scaled to [0, 1] (ties share their mean rank; one value → 0.5)."""
    from scipy.stats import rankdata

    x = np.asarray(x, dtype=np.float64)
    if x.size <= 1:
        return np.full(x.size, 0.5)
    fin = np.isfinite(x)
    if not fin.all():  # unknown predictions rank last
        x = np.where(fin, x, x[fin].min() if fin.any() else 0.0)
    return (rankdata(x) - 1.0) / (x.size - 1.0)


def combined_rank(predictions: dict[str, np.ndarray], weights: dict[str, float] | None = None) -> np.ndarray:
    """Weighted mean of the normalised ranks of each ranker's predictions (higher = better)."""
    if not predictions:
        raise ValueError("no ranker predictions")
    weights = weights or {}
    total, acc = 0.0, None
    for name, pred in predictions.items():
        w = float(weights.get(name, 1.0))
        if w <= 0:
            continue
        r = normalised_ranks(pred) * w
        acc = r if acc is None else acc + r
        total += w
    if acc is None:
        raise ValueError("every ranker has weight 0")
    return acc / total


@dataclass
class Selection:
    evaluate: np.ndarray      # indices chosen by rank
    audit: np.ndarray         # random indices among the rest, evaluated to measure τ
    skipped: np.ndarray       # never evaluated: the evaluations saved


def select(score: np.ndarray, top: int, audit: int, rng: np.random.Generator) -> Selection:
    """Top ``top`` by ``score`` (ties by index), plus ``audit`` drawn uniformly from the rest."""
    score = np.asarray(score, dtype=np.float64)
    order = np.lexsort((np.arange(score.size), -score))
    chosen = order[: max(0, top)]
    rest = order[max(0, top):]
    k = min(max(0, audit), rest.size)
    aud = np.sort(rng.choice(rest, size=k, replace=False)) if k else np.zeros(0, dtype=int)
    skipped = np.setdiff1d(rest, aud)
    return Selection(np.asarray(chosen, dtype=int), np.asarray(aud, dtype=int), np.asarray(skipped, dtype=int))


@dataclass
class RankingLog:
    """Predictions (made before evaluation) and real scores of every evaluated candidate, per round.

    τ is computed within each round (a round's predictions come from one model) and
    reported as the mean over rounds weighted by the number of candidates evaluated.
    """

    rounds: list[dict[str, list[float]]] = field(default_factory=list)
    candidates: int = 0
    evaluated: int = 0
    audited: int = 0
    skipped: int = 0

    def add(self, preds: dict[str, np.ndarray], combined: np.ndarray, idx: np.ndarray, real: np.ndarray) -> None:
        row = {name: np.asarray(p, dtype=np.float64)[idx].tolist() for name, p in preds.items()}
        row["combined"] = np.asarray(combined, dtype=np.float64)[idx].tolist()
        row["real"] = np.asarray(real, dtype=np.float64).tolist()
        self.rounds.append(row)

    def tau(self, name: str) -> float:
        num = den = 0.0
        for row in self.rounds:
            if name not in row:
                continue
            t = kendall_tau(row[name], row["real"])
            if np.isfinite(t):
                w = float(np.isfinite(row["real"]).sum())
                num += t * w
                den += w
        return num / den if den else float("nan")

    def weights(self, names) -> dict[str, float]:
        """Each ranker's weight for the next round: its τ so far, floored at 0 (1 before any round).

        A ranker whose predictions did not order the real scores (τ ≤ 0) stops voting; if
        none has earned a vote, all vote equally.
        """
        w = {}
        for name in names:
            t = self.tau(name)
            w[name] = 1.0 if not np.isfinite(t) else max(t, 0.0)
        if not any(v > 0 for v in w.values()):
            w = {name: 1.0 for name in names}
        return w

    def report(self) -> dict:
        out = {"candidates": self.candidates, "evaluated": self.evaluated, "audited": self.audited,
               "ranked_out": self.skipped,
               "saved_fraction": round(self.skipped / self.candidates, 4) if self.candidates else 0.0,
               "tau": {}}
        names = sorted({k for row in self.rounds for k in row if k != "real"})
        for name in names:
            out["tau"][name] = _round(self.tau(name))
        return out


def _round(x: float):
    return None if not np.isfinite(x) else round(float(x), 4)
