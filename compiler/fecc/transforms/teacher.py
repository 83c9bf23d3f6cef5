"""Teachers: where the golden examples come from (seed 000 §3.2).

The paper's teacher is GPT-4o.  fecc has two, behind one method ``sequences(n, rng)``:

* :class:`GrammarTeacher` (the default, no model) — random sequences from the stack
  automaton, features drawn in proportion to their relevance to the legacy model's
  residual, short programs preferred.  Every one is valid by construction.
* :class:`ProposerTeacher` — asks the configured :class:`fecc.llm.base.Proposer` (an LLM
  or the grammar proposer of seed 004) for correction structures over the whole table and
  *projects* each answer onto the vocabulary: parameters are bound to their warm starts,
  affine constants outside the vocabulary are dropped (the evaluation refits each
  feature's scale and shift), and the largest subtrees the vocabulary and the automaton's
  caps can express become programs.  Answers that leave nothing expressible are counted
  as invalid.

Every golden example is then scored for real by the search (:mod:`.evaluate`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ir import Binary, Const, Expr, Feature, Param, Unary, bind, features_of, to_postfix, transform
from ..llm.base import BudgetExhausted, FeatureStat, ProposalContext, ProposalError
from ..search import metrics
from .automaton import Automaton
from .vocab import BOS, Vocab


def relevance(X, y, legacy_margin, task: str, columns) -> dict[str, float]:
    """How much each column says about the legacy residual (|rank correlation|, linear or U-shaped)."""
    r = metrics.residuals(task, np.asarray(y, dtype=np.float64), np.asarray(legacy_margin, dtype=np.float64))
    r = r - r.mean()
    rn = np.sqrt((r * r).sum()) or 1.0
    out = {}
    for c in columns:
        v = np.asarray(X[c], dtype=np.float64)
        finite = np.isfinite(v)
        if finite.sum() < 3:
            out[c] = 0.0
            continue
        fill = np.where(finite, v, np.median(v[finite]))
        ranks = np.argsort(np.argsort(fill, kind="stable"), kind="stable").astype(np.float64)
        best = 0.0
        for u in (ranks, (ranks - ranks.mean()) ** 2):
            u = u - u.mean()
            un = np.sqrt((u * u).sum())
            if un > 0:
                best = max(best, abs(float((u * r).sum() / (un * rn))))
        out[c] = best
    return out


@dataclass
class TeacherStats:
    asked: int = 0
    invalid: int = 0          # answers with nothing expressible in the vocabulary
    errors: int = 0           # proposer errors
    notes: list[str] = field(default_factory=list)


class GrammarTeacher:
    """Random valid sequences from the automaton, weighted by feature relevance."""

    name = "grammar"

    def __init__(self, automaton: Automaton, weights: dict[str, float] | None = None):
        self.automaton = automaton
        vocab = automaton.vocab
        tw = np.ones(len(vocab))
        if weights:
            for i, f in enumerate(vocab.features):
                tw[vocab.index[to_postfix(Feature(f))]] = 0.05 + float(weights.get(f, 0.0))
        self.token_weights = tw
        self.stats = TeacherStats()

    def sequences(self, n: int, rng: np.random.Generator, *, unique: bool = True) -> list[list[int]]:
        out, seen = [], set()
        for _ in range(max(n * 20, 100)):
            if len(out) >= n:
                break
            s = self.automaton.sample(rng, token_weights=self.token_weights)
            key = tuple(s)
            if unique and key in seen:
                continue
            seen.add(key)
            out.append(s)
        self.stats.asked += len(out)
        return out


def _drop_affine_constants(vocab: Vocab):
    known = set(vocab.tokens)

    def rw(node: Expr) -> Expr:
        if isinstance(node, Binary) and node.op in ("add", "sub", "mul", "div"):
            a, b = node.a, node.b
            a_const = isinstance(a, Const) and to_postfix(a) not in known
            b_const = isinstance(b, Const) and to_postfix(b) not in known
            if b_const and features_of(a):
                return a
            if a_const and features_of(b) and node.op in ("add", "mul"):
                return b
            if a_const and features_of(b) and node.op == "sub":
                return Unary("neg", b) if "neg" in known else b
        return node

    return rw


def project(expr: Expr, space, automaton: Automaton) -> list[str]:
    """The postfix programs the vocabulary can express from a proposed structure (largest first)."""
    values = {}
    for name, rng in (space or {}).items():
        values[name] = rng.init if rng.init is not None else (rng.low + rng.high) / 2.0
    try:
        expr = bind(expr, values, strict=False)
    except KeyError:
        pass
    expr = transform(expr, _drop_affine_constants(automaton.vocab))
    vocab = automaton.vocab
    found: list[str] = []

    def visit(node: Expr):
        if node.type == "num" and features_of(node) and not any(isinstance(n, Param) for n in node.walk()) \
                and vocab.expressible(node):
            text = to_postfix(node)
            ids = [BOS] + vocab.encode([text])
            if automaton.accepts(ids):
                if text not in found:
                    found.append(text)
                return
        for c in node.children:
            visit(c)

    visit(expr)
    return found


class ProposerTeacher:
    """Golden examples from a :class:`~fecc.llm.base.Proposer` (see the module docstring)."""

    def __init__(self, proposer, automaton: Automaton, *, task: str, relevance_of: dict[str, float],
                 stats_of: dict[str, tuple[float, float, float, float, float]], legacy_metric: float, seed: int = 0):
        self.proposer = proposer
        self.name = getattr(proposer, "name", type(proposer).__name__)
        self.automaton = automaton
        self.task = task
        self.seed = seed
        self.legacy_metric = legacy_metric
        feats = automaton.vocab.features
        order = sorted(feats, key=lambda f: -relevance_of.get(f, 0.0))
        self.feature_stats = tuple(
            FeatureStat(f, float(relevance_of.get(f, 0.0)), 0.0, *stats_of[f]) for f in order)
        self.stats = TeacherStats()

    def _context(self, i: int, negative: tuple[str, ...]) -> ProposalContext:
        return ProposalContext(
            task="find a new feature (a formula over the columns) that corrects the frozen model on all rows",
            objective="binary:logistic" if self.task == "binary" else "reg:squarederror",
            metric_name=metrics.metric_name(self.task), region_rule="all rows",
            region=Binary("eq", Const(0.0), Const(0.0)), features=self.automaton.vocab.features,
            current=Const(0.0), current_params={}, current_metric=self.legacy_metric,
            feature_stats=self.feature_stats, negative=negative, iteration=i, seed=self.seed + i,
            extra={"correction_scale": 1.0})

    def sequences(self, n: int, rng: np.random.Generator, *, unique: bool = True) -> list[list[int]]:
        vocab = self.automaton.vocab
        out, seen = [], set()
        negative: list[str] = []
        for i in range(n):
            self.stats.asked += 1
            try:
                prop = self.proposer.propose(self._context(i, tuple(negative[-8:])))
            except BudgetExhausted as exc:
                self.stats.errors += 1
                self.stats.notes.append(exc.reason[:200])
                break
            except ProposalError as exc:
                self.stats.errors += 1
                self.stats.notes.append(exc.reason[:200])
                continue
            programs = project(prop.expr, prop.space, self.automaton)
            if not programs:
                self.stats.invalid += 1
                negative.append(str(prop.intent or prop.expr)[:120])
                continue
            for text in programs[: self.automaton.limits.max_programs]:
                seq = [BOS] + vocab.encode([text])
                if unique and tuple(seq) in seen:
                    continue
                seen.add(tuple(seq))
                out.append(seq)
            negative.append(str(prop.intent or prop.expr)[:120])
        return out
