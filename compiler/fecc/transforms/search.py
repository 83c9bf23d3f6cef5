"""The teaming transformation search (seed 000), end to end.

>>> result = search_transforms(X, y, legacy_margin, "binary", folds, TransformOptions())
>>> [(t.name, t.postfix, t.metrics["gain"]) for t in result.transforms]
[('tf_1', '$x1 $x2 mul', 0.061)]

1. **Vocabulary and automaton** over the columns most related to the legacy residual.
2. **Golden examples** from the teacher (grammar or the configured proposer), each
   program scored for real by cross-fitting (:mod:`.evaluate`) and archived.
3. **ML pipeline**: encoder–evaluator–decoder trained on ``L_rec + α·L_est``.
4. **Student** (decoders ``student``/``teaming``): LoRA fine-tune of the packaged model on
   the same examples; only the adapter is saved, its sha256 archived.
5. **Rounds**: gradient-steered search from the best embeddings → decoding (ML alone,
   student alone, or product of experts with λ) → parse, simplify, de-duplicate →
   ranking by the evaluator and the student (only the top ones and a small audit sample
   are evaluated for real) → archive → retrain the networks.
6. **Greedy choice**: up to ``max_transforms`` programs, each adding at least
   ``min_gain`` over legacy plus those chosen before it, with a paired z of at least
   ``min_z`` on the out-of-fold losses and a positive gain on ``min_folds_positive``
   folds.  Decisions use out-of-fold predictions only.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..ir import Expr, evaluate, features_of, simplify, to_postfix
from ..ir.named import NamedExpression
from ..ir.postfix import IRSyntaxError
from ..search import metrics
from .archive import TransformArchive
from .automaton import Automaton, Limits
from .evaluate import Evaluation, GainEvaluator, stratified_folds
from .model import TeamingModel, torch_device
from .options import TransformOptions
from .poe import PoECombiner
from .ranking import RankingLog, combined_rank, select
from .teacher import GrammarTeacher, ProposerTeacher, relevance
from .vocab import END, Vocab


@dataclass
class Transform(NamedExpression):
    """One chosen transform: a named numeric feature written in the IR."""

    name: str
    expr: Expr
    metrics: dict[str, Any]

    @property
    def features(self) -> list[str]:
        return list(features_of(self.expr))

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry: ``{"name", "postfix", "math", "features", "metrics"}``."""
        return {"name": self.name, "postfix": self.postfix, "math": self.math, "features": self.features,
                "metrics": dict(self.metrics)}


@dataclass
class TransformResult:
    transforms: list[Transform]
    stats: dict[str, Any]
    archive_path: Path | None = None
    adapter: dict[str, Any] | None = None
    options: TransformOptions = field(default_factory=TransformOptions)

    def values(self, X: pd.DataFrame) -> pd.DataFrame:
        """The transforms' columns on ``X`` (the IR's reference evaluator: what the runtime must match)."""
        cols = {c: X[c].to_numpy(np.float64) for c in X.columns if pd.api.types.is_numeric_dtype(X[c])}
        return pd.DataFrame({t.name: evaluate(t.expr, cols) for t in self.transforms}, index=X.index)

    def augment(self, X: pd.DataFrame) -> pd.DataFrame:
        """``X`` with the transforms' columns appended."""
        return pd.concat([X, self.values(X)], axis=1) if self.transforms else X.copy()

    def manifest(self) -> dict[str, Any]:
        """``{"transforms": [...], "search": {"transforms": stats}}`` for the bundle's manifest."""
        return {"transforms": [t.to_dict() for t in self.transforms], "search": {"transforms": self.stats}}


def _numeric_columns(X: pd.DataFrame) -> list[str]:
    out = []
    for c in X.columns:
        col = X[c]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            v = col.to_numpy(np.float64)
            fin = v[np.isfinite(v)]
            if fin.size >= 2 and np.ptp(fin) > 0:
                out.append(str(c))
    return out


#: the student decodes this many sequences at a time (the time budget is checked between batches)
LLM_BATCH = 8
#: sequences the invalid-rate probe decodes with the student, at most
LLM_PROBE = 16


class _Search:
    """State of one run (kept in one place so the steps stay small)."""

    def __init__(self, X, y, legacy_margin, task, folds, opts: TransformOptions, proposer, workdir, progress,
                 student):
        self.t0 = time.perf_counter()
        self.opts = opts
        self.task = metrics.check_task(task)
        self.say = progress or (lambda msg: None)
        self.rng = np.random.default_rng(opts.seed)
        self.timings: dict[str, float] = {}
        y = np.asarray(y, dtype=np.float64)
        m = np.asarray(legacy_margin, dtype=np.float64)
        X = X.rename(columns=str).reset_index(drop=True)   # IR features are named by text
        cols = _numeric_columns(X)
        if not cols:
            raise ValueError("no numeric column with more than one value: nothing to transform")
        self.relevance = relevance(X, y, m, self.task, cols)
        cols = sorted(cols, key=lambda c: (-self.relevance[c], cols.index(c)))[: opts.max_features]
        cols = [c for c in X.columns if str(c) in set(cols)]  # table order, for a stable vocabulary
        if folds is None:
            folds = stratified_folds(y, opts.folds, seed=opts.seed, task=self.task)
        self.evaluator = GainEvaluator(X[cols], y, m, self.task, folds, ridge=opts.ridge)
        self.vocab = Vocab.build([str(c) for c in cols], constants=opts.constants, unary=opts.unary or None,
                                 binary=opts.binary or None)
        self.automaton = Automaton(self.vocab, Limits(opts.max_len, opts.max_stack, opts.max_depth,
                                                      opts.max_programs))
        self.proposer = proposer
        self.student = student
        self.device = torch_device(opts.device)
        self.archive = None
        if workdir is not None:
            self.workdir = Path(workdir)
            self.archive = TransformArchive(self.workdir / "transforms.sqlite", run=f"s{opts.seed}-{time.time():.0f}",
                                            options=opts.to_dict(), started=time.time(), task=self.task,
                                            metric=metrics.metric_name(self.task), legacy=self.evaluator.legacy,
                                            features=self.vocab.features)
        else:
            self.workdir = None
        # every sequence seen, its real score (max over its programs) and where it came from
        self.seqs: list[list[int]] = []
        self.seq_scores: list[float] = []
        self.seen_seqs: set[tuple[int, ...]] = set()
        self.programs: dict[str, tuple[Expr, Evaluation]] = {}   # canonical postfix -> (expr, evaluation)
        self.generated = 0
        self.invalid = 0
        self.degenerate = 0
        self.ranking = RankingLog()
        self.student_calls = 0
        self.budget_cuts = 0     # student decoding batches skipped for the time budget
        self.decoded = 0         # sequences the decoders wrote in the rounds
        self.duplicates = 0      # ... that were already seen (cost nothing)

    # --- helpers ---------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def _time(self, key: str, start: float) -> None:
        self.timings[key] = round(self.timings.get(key, 0.0) + time.perf_counter() - start, 3)

    def parse(self, seq) -> list[tuple[str, Expr | None]]:
        """(decoded text, simplified expression or None when it does not parse) per program."""
        out = []
        for text in self.vocab.programs(seq):
            try:
                from ..ir import parse_postfix

                expr = simplify(parse_postfix(text))
                if not features_of(expr):
                    raise IRSyntaxError("no feature left after simplification", token=0, column=0, text=text)
                out.append((text, expr))
            except (IRSyntaxError, ValueError):
                out.append((text, None))
        return out

    def score_seq(self, seq, *, source: str, round_no: int, preds: dict[str, float] | None = None) -> float:
        """Evaluate every new program of a sequence for real; the sequence's score is its best program's gain."""
        preds = preds or {}
        best = None
        for text, expr in self.parse(seq):
            self.generated += 1
            if expr is None:
                self.invalid += 1
                self._record(round=round_no, source=source, decoded=text, status="invalid",
                             message="does not parse into the IR")
                continue
            key = to_postfix(expr)
            hit = self.programs.get(key)
            if hit is None:
                ev = self.evaluator.score(expr)
                self.programs[key] = (expr, ev)
                if not ev.valid:
                    self.degenerate += 1
                self._record(round=round_no, source=source, postfix=key, decoded=text,
                             gain=ev.gain if ev.valid else None, metric=ev.metric, z=ev.z,
                             fold_gains_json=list(ev.fold_gains), status="evaluated" if ev.valid else "degenerate",
                             message=ev.message or None, pred_ml=preds.get("ml"), pred_student=preds.get("student"),
                             seconds=round(ev.seconds, 5))
            else:
                ev = hit[1]
            g = ev.gain if ev.valid else None
            if g is not None and (best is None or g > best):
                best = g
        return best if best is not None else float("nan")

    def _record(self, **row) -> None:
        if self.archive is not None:
            self.archive.record(**row)

    def add_seq(self, seq, score: float) -> None:
        self.seqs.append(list(seq))
        self.seq_scores.append(score)
        self.seen_seqs.add(tuple(seq))

    def training_scores(self) -> np.ndarray:
        """Real scores for training; a sequence with no usable program gets the lowest one seen."""
        s = np.asarray(self.seq_scores, dtype=np.float64)
        floor = np.nanmin(s) if np.isfinite(s).any() else 0.0
        return np.where(np.isfinite(s), s, floor)

    # --- the steps -------------------------------------------------------------------
    def golden(self) -> None:
        opts = self.opts
        start = time.perf_counter()
        if opts.teacher == "proposer" and self.proposer is not None:
            stats_of = {}
            for f in self.vocab.features:
                v = self.evaluator.columns[f]
                fin = v[np.isfinite(v)]
                stats_of[f] = (float(fin.mean()), float(fin.std()), float(fin.min()), float(fin.max()),
                               float(1.0 - fin.size / v.size))
            teacher = ProposerTeacher(self.proposer, self.automaton, task=self.task, relevance_of=self.relevance,
                                      stats_of=stats_of, legacy_metric=self.evaluator.legacy, seed=opts.seed)
            seqs = teacher.sequences(min(opts.teacher_calls, opts.golden), self.rng)
            source = f"teacher:{teacher.name}"
            self.invalid += teacher.stats.invalid
            for s in seqs:
                self.add_seq(s, self.score_seq(s, source=source, round_no=0))
            # an LLM answer costs seconds: the rest of the golden examples come from the grammar
            known = {tuple(q) for q in seqs}
            from_teacher = len(seqs)
            extra = GrammarTeacher(self.automaton, self.relevance).sequences(opts.golden - len(seqs), self.rng)
            seqs = [s for s in extra if tuple(s) not in known]
            source = "teacher:grammar"
            self.teacher_stats = {"name": teacher.name, "asked": teacher.stats.asked, "sequences": from_teacher,
                                  "invalid": teacher.stats.invalid, "errors": teacher.stats.errors}
        else:
            teacher = GrammarTeacher(self.automaton, self.relevance)
            seqs = teacher.sequences(opts.golden, self.rng)
            source = "teacher:grammar"
            self.teacher_stats = {"name": "grammar", "asked": len(seqs), "sequences": len(seqs), "invalid": 0,
                                  "errors": 0}
        for s in seqs:
            self.add_seq(s, self.score_seq(s, source=source, round_no=0))
        self._time("teacher", start)
        self.say(f"transforms: {len(self.seqs)} golden sequences ({self.teacher_stats['sequences']} from the "
                 f"{self.teacher_stats['name']} teacher), "
                 f"{len(self.programs)} programs scored (best gain {self.best_gain():+.4f})")

    def best_gain(self) -> float:
        gains = [ev.gain for _, ev in self.programs.values() if ev.valid]
        return max(gains) if gains else float("nan")

    def train_ml(self) -> None:
        opts = self.opts
        start = time.perf_counter()
        self.model = TeamingModel(self.automaton, emb=opts.emb, hidden=opts.hidden, latent=opts.latent,
                                  mlp=opts.mlp, seed=opts.seed, device=self.device, cpu_threads=opts.threads or 1)
        self.ml_stats = self.model.fit(self.seqs, self.training_scores(), epochs=opts.epochs, batch=opts.batch,
                                       lr=opts.lr, alpha=opts.alpha)
        self._time("train_ml", start)

    def train_student(self) -> None:
        opts = self.opts
        start = time.perf_counter()
        if self.student is None:
            from .student import Student

            self.say(f"transforms: loading the student {opts.student_model} on {self.device}")
            self.student = Student.from_gguf(opts.student_model, self.vocab, task=self.task, device=self.device,
                                             lora_r=opts.lora_r, seed=opts.seed, cpu_threads=opts.threads or 1)
            self._time("student_load", start)
            start = time.perf_counter()
        budget = max(10.0, 0.4 * (opts.time_budget_s - self.elapsed()))
        self.student_stats = self.student.finetune(self.seqs, self.training_scores(), steps=opts.student_steps,
                                                   batch=opts.student_batch, lr=opts.student_lr, max_seconds=budget)
        self.adapter = None
        if self.workdir is not None:
            path, sha = self.student.save_adapter(self.workdir / "student_adapter")
            self.adapter = {"path": str(path), "sha256": sha, "base_model": self.student.base_name,
                            "base_sha256": self.student.base_sha256}
            if self.archive is not None:
                self.archive.record_adapter(path=str(path), sha256=sha, base_model=self.student.base_name,
                                            base_sha256=self.student.base_sha256,
                                            examples=self.student_stats["examples"],
                                            steps=self.student_stats["steps"],
                                            seconds=round(self.student_stats["seconds"], 3))
        self._time("train_student", start)
        self.say(f"transforms: student LoRA {self.student_stats['steps']} steps, loss "
                 f"{self.student_stats['first_loss']:.3f} → {self.student_stats['loss']:.3f}")

    def decode(self, z, lam: float, *, constrained: bool = True, deadline: float | None = None,
               first_free: bool = True):
        """Decode embeddings with the configured mix; the student's decodes go 8 at a time until ``deadline``.

        ``first_free``: the first batch runs even past the deadline (a round always decodes something).
        """
        if lam >= 1.0 or self.student is None:
            return self.model.decode(z, sample=True, temperature=self.opts.temperature, constrained=constrained)
        out = []
        for b in range(0, int(z.shape[0]), LLM_BATCH):
            if deadline is not None and (b or not first_free) and time.perf_counter() > deadline:
                self.budget_cuts += 1
                break
            chunk = z[b: b + LLM_BATCH]
            comb = PoECombiner(self.student, lam, int(chunk.shape[0]))
            out += self.model.decode(chunk, sample=True, temperature=self.opts.temperature, constrained=constrained,
                                     combine=comb)
            self.student_calls += comb.calls
        return out

    def deadline(self, rounds_left: int) -> float:
        """When this round's student decoding must stop: an equal share of what is left of the budget."""
        reserve = 10.0 + (0.15 * self.opts.time_budget_s if self.opts.probe_invalid else 0.0)
        left = self.opts.time_budget_s - reserve - self.elapsed()
        return time.perf_counter() + max(left, 0.0) / max(rounds_left, 1)

    def one_round(self, r: int) -> None:
        opts = self.opts
        lam = opts.effective_lambda
        start = time.perf_counter()
        scores = self.training_scores()
        order = np.lexsort((np.arange(len(scores)), -scores))
        starts = [self.seqs[i] for i in order[: opts.starts]]
        z = self.model.gradient_search(starts, steps=opts.grad_steps, step_size=opts.step_size)
        if lam < 1.0 and self.student is not None and z.shape[0] > opts.llm_decodes:
            pick = np.sort(self.rng.choice(z.shape[0], size=opts.llm_decodes, replace=False))
            z = z[pick]
        decoded = self.decode(z, lam, deadline=self.deadline(opts.rounds - r + 1))
        self._time("decode", start)
        start = time.perf_counter()
        fresh, seen = [], set()
        for s in decoded:
            key = tuple(s)
            if key in self.seen_seqs or key in seen:
                continue
            seen.add(key)
            fresh.append(s)
        self.decoded += len(decoded)
        self.duplicates += len(decoded) - len(fresh)
        # sequences whose programs are all known cost nothing: score them from the cache
        new, known = [], []
        for s in fresh:
            parsed = self.parse(s)
            if all(e is not None and to_postfix(e) in self.programs for _, e in parsed):
                known.append(s)
            else:
                new.append(s)
        for s in known:
            self.add_seq(s, self.score_seq(s, source=self.source_name(), round_no=r))
        preds: dict[str, np.ndarray] = {}
        if new:
            preds["ml"] = self.model.predict(new)
            if self.student is not None and opts.student_rank:
                preds["student"] = self.student.predict(new)
            comb = combined_rank(preds, self.ranking.weights(list(preds)))
            sel = select(comb, opts.eval_top, opts.audit, self.rng)
            chosen = np.concatenate([sel.evaluate, sel.audit]).astype(int)
            real = []
            for i in chosen:
                p = {k: float(v[i]) for k, v in preds.items()}
                sc = self.score_seq(new[i], source=self.source_name(), round_no=r, preds=p)
                self.add_seq(new[i], sc)
                real.append(sc)
            self.ranking.add(preds, comb, chosen, np.asarray(real))
            self.ranking.candidates += len(new)
            self.ranking.evaluated += len(sel.evaluate)
            self.ranking.audited += len(sel.audit)
            self.ranking.skipped += len(sel.skipped)
            for i in sel.skipped:
                for text, expr in self.parse(new[i]):
                    self.generated += 1
                    self._record(round=r, source=self.source_name(), decoded=text,
                                 postfix=to_postfix(expr) if expr is not None else None, status="ranked-out",
                                 pred_ml=float(preds["ml"][i]),
                                 pred_student=float(preds["student"][i]) if "student" in preds else None)
        self._time("rank_evaluate", start)
        start = time.perf_counter()
        if opts.refit_epochs:
            self.model.fit(self.seqs, self.training_scores(), epochs=opts.refit_epochs, batch=opts.batch,
                           lr=opts.lr, alpha=opts.alpha)
        self._time("train_ml", start)
        if self.archive is not None:
            self.archive.commit()
        self.say(f"transforms: round {r}/{opts.rounds}: {len(decoded)} decoded, {len(new)} new, "
                 f"{len(known)} known; best gain {self.best_gain():+.4f}")

    def source_name(self) -> str:
        return self.opts.decoder

    def probe_invalid(self) -> dict[str, Any]:
        """How often the decoder alone (no automaton) writes something that is not a valid program."""
        n = self.opts.probe_invalid
        if n <= 0:
            return {}
        start = time.perf_counter()
        lam = self.opts.effective_lambda
        deadline = None
        if lam < 1.0 and self.student is not None:
            # without the automaton every candidate string is scored at every step: costly
            n = min(n, self.opts.llm_decodes, LLM_PROBE)
            deadline = self.t0 + self.opts.time_budget_s - 10.0
        torch = self.model.torch
        g = torch.Generator(device=self.model.device).manual_seed(self.opts.seed + 7)
        scores = self.training_scores()
        order = np.lexsort((np.arange(len(scores)), -scores))
        starts = [self.seqs[i] for i in order[: max(1, min(n, len(order)))]]
        z = self.model.embed(starts)
        z = z[torch.randint(0, z.shape[0], (n,), generator=g, device=z.device)]
        seqs = self.decode(z, lam, constrained=False, deadline=deadline, first_free=False)
        if not seqs:
            return {"decoder": self.opts.decoder, "sampled": 0, "skipped": "time budget"}
        bad = sum(0 if self._valid_unconstrained(s) else 1 for s in seqs)
        self._time("probe_invalid", start)
        return {"decoder": self.opts.decoder, "sampled": len(seqs), "invalid": bad,
                "rate": round(bad / max(len(seqs), 1), 4)}

    def _valid_unconstrained(self, seq) -> bool:
        from ..ir import parse_postfix

        if seq[-1] != END:
            return False
        progs = self.vocab.programs(seq)
        if not progs or len(progs) != len(self.vocab.split(seq)):
            return False
        try:
            return all(parse_postfix(p).type == "num" for p in progs)
        except (IRSyntaxError, ValueError):
            return False

    def choose(self) -> list[Transform]:
        """Greedy forward choice on out-of-fold gains (see the module docstring)."""
        opts = self.opts
        start = time.perf_counter()
        ev0 = self.evaluator
        thr = opts.min_gain if self.task == "binary" else opts.min_gain * abs(ev0.legacy)
        cands = [(k, e, ev) for k, (e, ev) in self.programs.items() if ev.valid and ev.gain >= thr
                 and ev.z >= opts.min_z and ev.folds_positive >= opts.min_folds_positive]
        cands.sort(key=lambda t: (-t[2].gain, t[0]))
        # near-duplicates (|corr| > 0.99 with a better candidate) add nothing: keep the better one
        pool: list[tuple[str, Expr, Evaluation]] = []
        kept_vals: list[np.ndarray] = []
        for k, e, ev in cands:
            v = ev0.values(e)
            v = np.where(np.isfinite(v), v, 0.0)
            if any(abs(_corr(v, u)) > 0.99 for u in kept_vals):
                continue
            pool.append((k, e, ev))
            kept_vals.append(v)
            if len(pool) >= opts.pool:
                break
        chosen: list[tuple[Expr, Evaluation, Evaluation]] = []
        base: Evaluation | None = None
        base_gain = 0.0
        self.selection_evaluations = 0
        while len(chosen) < opts.max_transforms and pool:
            best = None
            for k, e, single in pool:
                ev = ev0.score_set([c[0] for c in chosen] + [e], baseline=base, keep_loss=True)
                self.selection_evaluations += 1
                inc = ev.gain - base_gain
                folds_inc = sum(1 for g, b in zip(ev.fold_gains, base.fold_gains if base else [0.0] * len(ev.fold_gains))
                                if g - b > 0)
                if not ev.valid or inc < thr or ev.z < opts.min_z or folds_inc < opts.min_folds_positive:
                    continue
                if best is None or inc > best[3]:
                    best = (k, e, ev, inc, single)
            if best is None:
                break
            k, e, ev, inc, single = best
            chosen.append((e, ev, single))
            pool = [p for p in pool if p[0] != k]
            base, base_gain = ev, ev.gain
        out = []
        taken = set(map(str, self.evaluator.columns))
        name_no = 0
        for i, (e, ev, single) in enumerate(chosen):
            prev_gain = chosen[i - 1][1].gain if i else 0.0
            name_no += 1
            name = f"tf_{name_no}"
            while name in taken:
                name_no += 1
                name = f"tf_{name_no}"
            taken.add(name)
            out.append(Transform(name, e, {
                "metric": metrics.metric_name(self.task),
                "gain": round(ev.gain - prev_gain, 6),           # over legacy + the transforms before it
                "gain_alone": round(single.gain, 6),
                "oof": round(ev.metric, 6), "legacy": round(ev.legacy, 6),
                "z": round(ev.z, 3), "folds_positive": single.folds_positive,
                "folds": len(ev.fold_gains)}))
        self._time("choose", start)
        return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = a.std(), b.std()
    if sa == 0 or sb == 0:
        return 0.0
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


def search_transforms(X: pd.DataFrame, y, legacy_margin, task: str, folds=None,
                      options: TransformOptions | None = None, proposer=None, workdir: Path | None = None,
                      progress: Callable[[str], None] | None = None, *, student=None) -> TransformResult:
    """Search postfix feature transforms that improve on the frozen legacy model (seed 000).

    Parameters
    ----------
    X : the compile rows (numeric columns are the vocabulary's features).
    y : labels (0/1 for ``binary``).
    legacy_margin : the legacy model's margin on ``X`` (never changed).
    task : ``"binary"`` or ``"regression"``.
    folds : held-out index arrays (or ``(train, held_out)`` pairs) over ``X``'s rows; ``None``
        makes ``options.folds`` stratified folds.  Every decision is made on out-of-fold
        predictions of these folds.
    options : :class:`TransformOptions`.
    proposer : the configured :class:`~fecc.llm.base.Proposer` (teacher ``"proposer"``).
    workdir : where the archive (``transforms.sqlite``) and the student's adapter go
        (``None``: no files).
    progress : called with one-line messages.
    student : a ready :class:`~fecc.transforms.student.Student` (tests, or to reuse a
        loaded model); by default one is loaded when the decoder needs it.

    Returns
    -------
    TransformResult
        ``transforms`` (each with an IR expression; :meth:`Transform.to_dict` is the
        manifest entry) and ``stats`` with ``generated``, ``invalid``, ``evaluated``,
        ``ranked_out``, ``lambda`` and ``timings``.
    """
    opts = options or TransformOptions()
    torch_threads = None
    if opts.threads:
        import torch

        torch_threads = torch.get_num_threads()
        torch.set_num_threads(int(opts.threads))
    s = _Search(X, y, legacy_margin, task, folds, opts, proposer, workdir, progress, student)
    try:
        s.golden()
        s.train_ml()
        if opts.uses_student or student is not None:
            s.train_student()
        rounds_done = 0
        for r in range(1, opts.rounds + 1):
            if s.elapsed() > opts.time_budget_s:
                s.say(f"transforms: time budget {opts.time_budget_s:.0f} s reached; stopping before round {r}")
                break
            s.one_round(r)
            rounds_done += 1
        probe = s.probe_invalid() if s.elapsed() < opts.time_budget_s else {}
        chosen = s.choose()
    finally:
        if s.archive is not None:
            s.archive.close()
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)
    rank = s.ranking.report()
    stats = {
        "decoder": opts.decoder, "lambda": opts.effective_lambda, "teacher": s.teacher_stats,
        "features": list(s.vocab.features), "vocabulary": len(s.vocab), "rows": int(s.evaluator.rows.size),
        "folds": len(s.evaluator.folds), "metric": metrics.metric_name(s.task),
        "legacy": round(s.evaluator.legacy, 6),
        "generated": s.generated, "invalid": s.invalid, "degenerate": s.degenerate,
        "evaluated": len(s.programs), "ranked_out": rank["ranked_out"],
        "selection_evaluations": getattr(s, "selection_evaluations", 0),
        "sequences": len(s.seqs), "decoded": s.decoded, "duplicates": s.duplicates, "rounds": rounds_done,
        "best_gain": _r(s.best_gain()),
        "ranking": rank, "invalid_unconstrained": probe,
        "ml": {"epochs": s.model.trained_epochs, "loss_rec": _r(s.ml_stats.loss_rec),
               "loss_est": _r(s.ml_stats.loss_est)},
        "student": ({"model": s.student.base_name, "steps": s.student_stats["steps"],
                     "loss": _r(s.student_stats["loss"]), "scoring_passes": s.student_calls,
                     "adapter_sha256": (getattr(s, "adapter", None) or {}).get("sha256")}
                    if s.student is not None and hasattr(s, "student_stats") else None),
        "device": s.device, "seconds": round(s.elapsed(), 3), "timings": s.timings, "budget_cuts": s.budget_cuts,
        "chosen": len(chosen),
    }
    stats["timings"]["evaluate"] = round(s.evaluator.seconds, 3)
    return TransformResult(chosen, stats, s.archive.path if s.archive is not None else None,
                           getattr(s, "adapter", None), opts)


def _r(x):
    return None if x is None or not np.isfinite(x) else round(float(x), 6)
