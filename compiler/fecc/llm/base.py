"""The one protocol every proposer implements (seed 004's outer loop, seed 000's decoder).

A proposer receives a :class:`ProposalContext` (what the expert chain knows so far)
and returns a :class:`Proposal`: a new expert *structure* as an IR expression with
named free parameters, plus the search range of each parameter (the proposer acts as
the configurator of the Optuna space).  Whatever a backend does inside (an LLM, a
grammar sampler, a replay file), what crosses this boundary is IR, never code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..ir import Expr


@dataclass(frozen=True)
class ParamRange:
    """Search range of one free parameter; ``init`` is a warm start inside the range."""

    low: float
    high: float
    log: bool = False
    init: float | None = None

    def __post_init__(self):
        if not (self.low < self.high):
            raise ValueError(f"empty range [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled range needs low > 0")


@dataclass(frozen=True)
class FeatureStat:
    """Statistics of one feature shown to the proposer (seed 004: IV and PSI)."""

    name: str
    iv: float            # information value of the feature for the target, inside the region
    psi: float           # population stability: region vs whole training split
    mean: float
    std: float
    min: float
    max: float
    missing: float       # fraction of NaN


@dataclass(frozen=True)
class ProposalContext:
    """Everything the outer loop tells a proposer at one iteration."""

    task: str                                 # plain-language task description
    objective: str                            # e.g. "binary:logistic"
    metric_name: str                          # e.g. "auc" or "rmse"
    region_rule: str                          # the region as readable text
    region: Expr                              # the region as an IR predicate
    features: tuple[str, ...]                 # names the expression may read
    current: Expr                             # current expert correction (IR, may hold params)
    current_params: dict[str, float]          # values of the current expert's params (frozen)
    current_metric: float
    feature_stats: tuple[FeatureStat, ...] = ()
    instances: tuple[dict, ...] = ()          # sampled region rows, each with "error_type"
    positive: tuple[str, ...] = ()            # constraints: what helped
    negative: tuple[str, ...] = ()            # constraints: what failed and why
    feedback: str | None = None               # parse/eval error of the previous answer
    iteration: int = 0
    seed: int = 0
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Proposal:
    """A candidate structure.  ``expr`` may use the current params (frozen) and new ones."""

    expr: Expr
    space: dict[str, ParamRange]
    intent: str = ""
    raw: str = ""                             # the backend's raw answer, for the archive
    usage: dict = field(default_factory=dict) # e.g. {"seconds": 3.1, "prompt_tokens": 900, "completion_tokens": 120}


class ProposalError(Exception):
    """The backend produced nothing usable; ``reason`` is fed back as error feedback."""

    def __init__(self, reason: str, raw: str = "", usage: dict | None = None):
        self.reason = reason
        self.raw = raw
        self.usage = usage or {}
        super().__init__(reason)


class BudgetExhausted(ProposalError):
    """The proposer's call, token or time budget is spent: the search stops asking it."""


@runtime_checkable
class Proposer(Protocol):
    """Proposes expert structures.  Must be deterministic given ``ctx.seed`` (or replayed)."""

    name: str

    def propose(self, ctx: ProposalContext) -> Proposal:
        """Return a new structure, or raise :class:`ProposalError` with a reason."""
        ...
