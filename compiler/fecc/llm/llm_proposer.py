"""A :class:`~fecc.llm.base.Proposer` backed by a language model.

One call of :meth:`LLMProposer.propose`:

1. render the seed-004 prompt from the context (:mod:`fecc.llm.prompts`);
2. ask the backend for a completion, constrained by the GBNF grammar of the answer
   language when the backend supports grammars (:mod:`fecc.llm.grammar_gbnf`);
3. parse the answer with the AST whitelist into IR and validate it
   (:mod:`fecc.llm.answer`), and check that it actually changes the current function
   on the region's rows;
4. on failure, feed the reason back as a new user turn, at most ``max_corrections`` times;
5. return a :class:`~fecc.llm.base.Proposal`, or raise
   :class:`~fecc.llm.base.ProposalError` with the last reason.

Backends only turn chat messages into text (:class:`Backend`); everything else lives here,
so a local model, an HTTP endpoint and a replay file behave the same way.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ..ir import Expr, Limits, bind, evaluate, features_of, simplify
from .base import BudgetExhausted, ParamRange, Proposal, ProposalContext, ProposalError
from .grammar_gbnf import GrammarLimits, make_gbnf
from .prompts import render_correction, render_messages
from .answer import AnswerError, RangeInference, parse_answer


@dataclass(frozen=True)
class Completion:
    """What a backend returns for one request."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    finish_reason: str = ""
    model: str = ""


class BackendError(RuntimeError):
    """A backend failed to answer (network, timeout, model error); the proposer reports it."""


@runtime_checkable
class Backend(Protocol):
    """Turns chat messages into a completion.  ``supports_grammar``: honours a GBNF ``grammar``."""

    name: str
    supports_grammar: bool

    def complete(self, messages: list[dict], *, grammar: str | None, temperature: float,
                 max_tokens: int, seed: int) -> Completion:
        ...


@dataclass(frozen=True)
class Budget:
    """Caps on what one proposer may spend over its lifetime (``None``: no cap)."""

    max_calls: int | None = None
    max_tokens: int | None = None
    max_seconds: float | None = None


@dataclass
class Usage:
    """Accumulated usage, for the compile report."""

    proposals: int = 0           # propose() calls
    accepted: int = 0            # proposals returned
    calls: int = 0               # backend requests (first answers + corrections)
    corrections: int = 0         # correction rounds asked for
    valid_first_try: int = 0     # answers accepted without correction
    rejected_answers: int = 0    # answers that failed parsing/validation/the change check
    backend_errors: int = 0
    backend_error: str = ""      # the last backend failure, for the compile's warning
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    reasons: dict = field(default_factory=dict)  # first words of each rejection reason -> count

    def as_dict(self) -> dict:
        return asdict(self)


def _reason_key(reason: str) -> str:
    """"line 3, col 5: unknown feature 'x'; did you..." -> "unknown feature" (keeps the report's table short)."""
    text = reason.split(": ", 1)[1] if reason.startswith("line ") and ": " in reason else reason
    for stop in ("'", '"', "`", ";", ":", "["):
        text = text.split(stop)[0]
    return " ".join(text.split()[:4]) or "other"


def changes_function(
    new: Expr,
    current: Expr,
    *,
    current_params: dict[str, float],
    space: dict[str, ParamRange],
    rows: tuple[dict, ...] = (),
    seed: int = 0,
    draws: int = 3,
) -> bool:
    """Whether ``new`` differs from ``current`` on the region, for some parameter values.

    Structurally equal expressions (after binding frozen params and simplifying) do not.
    Otherwise, when region rows are given, both are evaluated on them with the frozen
    params and a few draws of the new params (init, midpoint, random); equal outputs on
    every draw mean the change is invisible on the region, so tuning it would be wasted.
    """
    fixed_new = simplify(bind(new, current_params, strict=False))
    fixed_cur = simplify(bind(current, current_params, strict=False))
    if fixed_new == fixed_cur:
        return False
    feats = set(features_of(new)) | set(features_of(current))
    usable = [r for r in rows if all(f in r for f in feats)]
    if not usable:
        return True
    data = {f: np.array([float(r[f]) if r[f] is not None else np.nan for r in usable]) for f in feats}
    try:
        before = evaluate(fixed_cur, data)
    except KeyError:
        return True
    rng = np.random.default_rng(seed)
    for i in range(draws):
        values = {}
        for name, r in space.items():
            if i == 0 and r.init is not None:
                values[name] = r.init
            elif i <= 1:
                values[name] = float(np.sqrt(r.low * r.high)) if r.log else (r.low + r.high) / 2
            else:
                values[name] = float(np.exp(rng.uniform(np.log(r.low), np.log(r.high)))) if r.log \
                    else float(rng.uniform(r.low, r.high))
        try:
            after = evaluate(fixed_new, data, values)
        except KeyError:
            return True
        if not np.array_equal(np.asarray(before, float), np.asarray(after, float), equal_nan=True):
            return True
    return False


class LLMProposer:
    """Proposes expert structures with a language model (see the module docstring).

    Parameters
    ----------
    backend : the :class:`Backend` that answers chat messages.
    max_corrections : correction rounds after a rejected answer (0: none).
    temperature : sampling temperature (seed 004 uses 0.1).
    correction_temperature : temperature of correction rounds; at 0.1 a small model
        repeats its rejected answer word for word, so corrections sample more freely.
    max_tokens : cap on each answer's length.
    use_grammar : constrain decoding with the GBNF grammar when the backend can.
    grammar_limits : caps built into the grammar.
    limits : IR size caps checked after parsing.
    budget : lifetime caps on calls, tokens and seconds.
    example : show the in-context example in the prompt.
    default_range : range given to a parameter the answer uses without declaring one
        (``None``: such an answer is rejected and corrected, as seed 004 has it).
    infer_ranges : first infer a forgotten range from the parameter's use — a location
        on a feature gets the feature's range in the region, a weight ``[-s, s]`` with
        the correction scale (:func:`fecc.llm.ranges.infer_range`).  Forgetting a range
        was the 0.5B model's most common fault in the accuracy benchmark.
    name : shown in reports (default ``"llm:<backend name>"``).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        max_corrections: int = 2,
        temperature: float = 0.1,
        correction_temperature: float = 0.5,
        max_tokens: int = 400,
        use_grammar: bool = True,
        grammar_limits: GrammarLimits = GrammarLimits(),
        limits: Limits = Limits(),
        budget: Budget = Budget(),
        default_range: ParamRange | None = None,
        infer_ranges: bool = True,
        example: bool = True,
        name: str | None = None,
    ):
        if max_corrections < 0:
            raise ValueError("max_corrections must be >= 0")
        self.backend = backend
        self.max_corrections = max_corrections
        self.temperature = temperature
        self.correction_temperature = correction_temperature
        self.max_tokens = max_tokens
        self.use_grammar = use_grammar
        self.grammar_limits = grammar_limits
        self.limits = limits
        self.budget = budget
        self.default_range = default_range
        self.infer_ranges = infer_ranges
        self.example = example
        self.name = name or f"llm:{backend.name}"
        self.usage = Usage()
        self._grammars: dict[tuple[str, ...], str] = {}

    def grammar_for(self, features: tuple[str, ...]) -> str | None:
        """The GBNF text for these features, or ``None`` when decoding is not constrained."""
        if not (self.use_grammar and getattr(self.backend, "supports_grammar", False)):
            return None
        key = tuple(features)
        if key not in self._grammars:
            self._grammars[key] = make_gbnf(key, limits=self.grammar_limits)
        return self._grammars[key]

    def _inference(self, ctx: ProposalContext) -> RangeInference | None:
        """Ranges for forgotten parameters, from the region's feature stats (``infer_ranges``)."""
        if not self.infer_ranges:
            return None
        ranges = {s.name: (float(s.min), float(s.max)) for s in ctx.feature_stats}
        scale = ctx.extra.get("correction_scale", 3.0) if isinstance(ctx.extra, dict) else 3.0
        return RangeInference(feature_ranges=ranges, scale=float(scale))

    def _check_budget(self) -> None:
        b, u = self.budget, self.usage
        if b.max_calls is not None and u.calls >= b.max_calls:
            raise BudgetExhausted(f"LLM call budget spent ({u.calls} of {b.max_calls} calls)")
        if b.max_tokens is not None and u.prompt_tokens + u.completion_tokens >= b.max_tokens:
            raise BudgetExhausted(f"LLM token budget spent ({u.prompt_tokens + u.completion_tokens} tokens)")
        if b.max_seconds is not None and u.seconds >= b.max_seconds:
            raise BudgetExhausted(f"LLM time budget spent ({u.seconds:.0f} s of {b.max_seconds:.0f} s)")

    def propose(self, ctx: ProposalContext) -> Proposal:
        """Ask for a new structure; see the module docstring for the steps."""
        self.usage.proposals += 1
        messages = render_messages(ctx, example=self.example)
        grammar = self.grammar_for(ctx.features)
        call = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0, "corrections": 0}
        reason, text = "no answer", ""
        for attempt in range(self.max_corrections + 1):
            self._check_budget()
            if attempt:
                self.usage.corrections += 1
                call["corrections"] += 1
            start = time.perf_counter()
            try:
                temperature = self.temperature if attempt == 0 else max(self.temperature, self.correction_temperature)
                done = self.backend.complete(messages, grammar=grammar, temperature=temperature,
                                             max_tokens=self.max_tokens, seed=ctx.seed + attempt)
            except BackendError as exc:
                self.usage.backend_errors += 1
                self.usage.backend_error = str(exc)[:200]
                self._account(call, None, time.perf_counter() - start)
                raise ProposalError(f"the LLM backend failed: {exc}", usage=dict(call)) from exc
            self._account(call, done, time.perf_counter() - start)
            text = done.text
            try:
                parsed = parse_answer(text, features=ctx.features, frozen=ctx.current_params, limits=self.limits,
                                      default_range=self.default_range, infer=self._inference(ctx))
                taken = (set(ctx.extra.get("reserved", ())) if isinstance(ctx.extra, dict) else set()) \
                    - set(ctx.current_params)
                clash = sorted(set(parsed.space) & taken)
                if clash:
                    raise AnswerError(f"parameter name(s) {clash} are reserved for the region; pick other names")
                if not changes_function(parsed.expr, ctx.current, current_params=ctx.current_params,
                                        space=parsed.space, rows=ctx.instances, seed=ctx.seed):
                    raise AnswerError("the function is unchanged on the region: it computes the same values as "
                                      "the current function; change or add a term")
            except AnswerError as exc:
                reason = str(exc)
                self.usage.rejected_answers += 1
                key = _reason_key(exc.reason)
                self.usage.reasons[key] = self.usage.reasons.get(key, 0) + 1
                messages = [*messages, {"role": "assistant", "content": text}, render_correction(ctx, reason)]
                continue
            self.usage.accepted += 1
            if attempt == 0:
                self.usage.valid_first_try += 1
            if parsed.notes:
                call["notes"] = list(parsed.notes)
            return Proposal(expr=parsed.expr, space=parsed.space, intent=parsed.intent, raw=text, usage=dict(call))
        raise ProposalError(reason, raw=text, usage=dict(call))

    def _account(self, call: dict, done: Completion | None, seconds: float) -> None:
        prompt = done.prompt_tokens if done else 0
        completion = done.completion_tokens if done else 0
        for target in (call, None):
            if target is None:
                self.usage.calls += 1
                self.usage.prompt_tokens += prompt
                self.usage.completion_tokens += completion
                self.usage.seconds += seconds
            else:
                target["calls"] += 1
                target["prompt_tokens"] += prompt
                target["completion_tokens"] += completion
                target["seconds"] += seconds
