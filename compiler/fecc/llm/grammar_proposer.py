"""The built-in grammar proposer: no model, deterministic, the baseline and the fallback.

It plays the LLM's role in seed 004's outer loop with a small grammar of *incremental
edits* of the current correction ``g``: each proposal is ``g + term`` where ``term`` is
one of

==============  =====================================================  ==================
move            term                                                   new parameters
==============  =====================================================  ==================
linear          ``@a * (x - mean)``                                      a
step            ``where(x > @t, @a, 0)``                                 t, a
hinge           ``@a * max(x - @t, 0)``                                  t, a
interaction     ``@a * (x - mean) * (z - mean)``                         a
bump            ``@a * exp(-((x - @c) / std)^2)``                        c, a
tanh            ``@a * tanh((x - @c) / std)``                            c, a
missing         ``where(isnan(x), @a, 0)`` (features with missing values) a
==============  =====================================================  ==================

Features are drawn among the region's most informative ones (``ctx.feature_stats``,
highest IV first, weight ∝ IV), ranges come from the feature statistics (thresholds and
centres within mean ± 1.5 std, clipped to the observed range; coefficients sized so a
term moves the margin by at most ``ctx.extra["correction_scale"]`` per std), and every
new parameter is warm-started at a neutral value (``a = 0``).  Edits already listed
in ``ctx.negative``/``ctx.positive`` are not proposed again when another is available.
The same context (``ctx.seed`` included) gives the same proposal.
"""
from __future__ import annotations

import numpy as np

from ..ir import Binary, Const, Expr, Feature, Param, Unary, Where, params_of, size
from .base import FeatureStat, ParamRange, Proposal, ProposalContext, ProposalError

#: Move name → relative weight.
MOVES = {"step": 3.0, "linear": 3.0, "hinge": 2.0, "interaction": 1.5, "bump": 1.0, "tanh": 1.0, "missing": 1.0}
#: Features the proposer draws from (the top of the IV ranking).
TOP_FEATURES = 6
#: Largest correction (nodes) the proposer grows; the IR's default limit is 64.
MAX_SIZE = 56
MAX_PARAMS = 12


def _num(v: float) -> Const:
    # 6 significant digits: centres and scales are readable and exact enough for a shape
    return Const(float(f"{v:.6g}"))


class GrammarProposer:
    """Random incremental edits from a fixed grammar (see the module docstring).

    Parameters
    ----------
    moves : move name → weight; defaults to :data:`MOVES`.
    top_features : how many of the highest-IV features to draw from.
    """

    name = "grammar"

    def __init__(self, moves: dict[str, float] | None = None, top_features: int = TOP_FEATURES):
        self.moves = dict(MOVES if moves is None else moves)
        unknown = set(self.moves) - set(MOVES)
        if unknown:
            raise ValueError(f"unknown grammar move(s): {sorted(unknown)}")
        self.top_features = top_features

    def propose(self, ctx: ProposalContext) -> Proposal:
        """A new structure ``ctx.current + term``; raises :class:`ProposalError` if none fits."""
        if size(ctx.current) > MAX_SIZE - 10 or len(params_of(ctx.current)) > MAX_PARAMS - 2:
            raise ProposalError(f"the correction is at the size limit ({size(ctx.current)} nodes); no more terms")
        stats = [s for s in ctx.feature_stats if s.name in set(ctx.features) and s.std > 0 and np.isfinite(s.std)]
        if not stats:
            stats = [FeatureStat(f, 0.0, 0.0, 0.0, 1.0, -1.0, 1.0, 0.0) for f in ctx.features]
        if not stats:
            raise ProposalError("no usable feature")
        stats = stats[: self.top_features]
        rng = np.random.default_rng(abs(int(ctx.seed)))
        scale = float(ctx.extra.get("correction_scale", 2.0))
        taken = set(params_of(ctx.current)) | set(ctx.current_params) | set(ctx.extra.get("reserved", ()))
        tried = tuple(ctx.negative) + tuple(ctx.positive)

        iv = np.array([max(s.iv, 0.0) for s in stats]) + 0.02
        weights = iv / iv.sum()
        names = [m for m in MOVES if self.moves.get(m, 0) > 0]
        mw = np.array([self.moves[m] for m in names], dtype=float)
        best = None
        for _ in range(40):
            move = names[int(rng.choice(len(names), p=mw / mw.sum()))]
            s = stats[int(rng.choice(len(stats), p=weights))]
            z = stats[int(rng.choice(len(stats), p=weights))]
            if move == "missing" and s.missing == 0:
                continue
            if move == "interaction" and z.name == s.name:
                continue
            built = self._term(move, s, z, scale, ctx.iteration, taken)
            if best is None:
                best = built
            if not any(t.startswith(built[2]) for t in tried):
                best = built
                break
        if best is None:
            raise ProposalError("no grammar move applies to these features")
        term, space, intent = best
        expr = Binary("add", ctx.current, term)
        return Proposal(expr=expr, space=space, intent=intent, raw=str(expr))

    @staticmethod
    def _names(iteration: int, taken: set[str], count: int) -> list[str]:
        out, k = [], 1
        while len(out) < count:
            name = f"p{iteration}_{k}"
            if name not in taken:
                out.append(name)
            k += 1
        return out

    def _term(self, move: str, s: FeatureStat, z: FeatureStat, scale: float, iteration: int,
              taken: set[str]) -> tuple[Expr, dict[str, ParamRange], str]:
        x = Feature(s.name)
        lo = max(s.min, s.mean - 1.5 * s.std)
        hi = min(s.max, s.mean + 1.5 * s.std)
        if not lo < hi:
            lo, hi = s.mean - s.std, s.mean + s.std
        centre = min(max(s.mean, lo), hi)
        coef = ParamRange(-scale, scale, init=0.0)
        per_std = ParamRange(-scale / s.std, scale / s.std, init=0.0)
        place = ParamRange(lo, hi, init=centre)
        if move == "linear":
            (a,) = self._names(iteration, taken, 1)
            term = Binary("mul", Param(a), Binary("sub", x, _num(s.mean)))
            return term, {a: per_std}, f"linear term in {s.name}"
        if move == "step":
            t, a = self._names(iteration, taken, 2)
            term = Where(Binary("gt", x, Param(t)), Param(a), Const(0.0))
            return term, {t: place, a: coef}, f"step on {s.name}"
        if move == "hinge":
            t, a = self._names(iteration, taken, 2)
            term = Binary("mul", Param(a), Binary("max", Binary("sub", x, Param(t)), Const(0.0)))
            return term, {t: place, a: per_std}, f"hinge on {s.name}"
        if move == "interaction":
            (a,) = self._names(iteration, taken, 1)
            prod = Binary("mul", Binary("sub", x, _num(s.mean)), Binary("sub", Feature(z.name), _num(z.mean)))
            term = Binary("mul", Param(a), prod)
            rng_ = ParamRange(-scale / (s.std * z.std), scale / (s.std * z.std), init=0.0)
            return term, {a: rng_}, f"interaction of {s.name} and {z.name}"
        if move == "bump":
            c, a = self._names(iteration, taken, 2)
            width = Binary("div", Binary("sub", x, Param(c)), _num(s.std))
            term = Binary("mul", Param(a), Unary("exp", Unary("neg", Unary("square", width))))
            return term, {c: place, a: coef}, f"bump on {s.name}"
        if move == "tanh":
            c, a = self._names(iteration, taken, 2)
            term = Binary("mul", Param(a), Unary("tanh", Binary("div", Binary("sub", x, Param(c)), _num(s.std))))
            return term, {c: place, a: coef}, f"tanh ramp on {s.name}"
        if move == "missing":
            (a,) = self._names(iteration, taken, 1)
            term = Where(Unary("isnan", x), Param(a), Const(0.0))
            return term, {a: coef}, f"missing-value offset on {s.name}"
        raise ValueError(f"unknown move {move!r}")
