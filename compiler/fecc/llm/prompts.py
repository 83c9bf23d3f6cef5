"""Prompts for expert proposals, after seed 004 (NSR-Boost, Appendix A.4).

The prompt carries: one in-context example (an incremental edit of another task's
function, varied per call; it comes *first* because Qwen-0.5B copied a trailing one
verbatim — it still copies its structure, so it can be switched off), then the task and
what the function's value means, the region rule, the current function with its metric
and frozen parameters, the rules of the answer (features, functions and their *total*
semantics), IV/PSI statistics of the region, N annotated error instances,
positive/negative constraints and error feedback.

Templates live in ``templates/prompts/*.j2``; this module only computes the values they
place (numbers formatted, tables cut to size).  Rendering is a pure function of the
:class:`~fecc.llm.base.ProposalContext`, so recorded answers replay by prompt hash.
"""
from __future__ import annotations

import hashlib
import math

import jinja2

from ..templating import environment
from .base import ProposalContext
from .python_print import function_source

#: Number of in-context examples in ``templates/prompts/examples.j2``.
N_EXAMPLES = 5
#: Features shown as columns of the instance table (the rest are in the statistics).
MAX_INSTANCE_COLUMNS = 6
#: Instances shown (seed 004 uses N = 20).
MAX_INSTANCES = 20
#: Rows of the feature statistics table: the highest-IV features.  On wide tables the full
#: table overflowed the local model's 4,096-token context (Caravan's 85 features: 4,327
#: prompt tokens, every call refused); the others stay usable by name.
MAX_STAT_ROWS = 24

_FUNCTION_HELP = ("log(v) = log(1 + |v|), sqrt(v) = sqrt(|v|), exp(v) (argument capped at 50), abs(v), "
                  "tanh(v), sigmoid(v), sign(v), square(v), cube(v), min(a, b), max(a, b), isnan(v)")


def _template(name: str) -> jinja2.Template:
    """``templates/prompts/<name>`` from the one environment (:func:`fecc.templating.environment`)."""
    return environment().get_template(f"prompts/{name}")


def fmt(value, digits: int = 4) -> str:
    """A number for prose: ``digits`` significant digits, ``nan`` for missing."""
    if value is None:
        return "nan"  # the search writes missing values as None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, float)):
        v = float(value)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v == int(v) and abs(v) < 1e9:
            return str(int(v))
        if 10 ** digits <= abs(v) < 1e9:
            return str(int(round(v)))  # 1234.5 -> 1234, never 1.23e+03
        return format(v, f".{digits}g")
    return str(value)


def example_index(ctx: ProposalContext, attempt: int = 0) -> int:
    """Which in-context example this call shows: a hash of seed and iteration, so reruns agree."""
    key = f"{ctx.seed}:{ctx.iteration}:{attempt}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big") % N_EXAMPLES


def render_example(index: int) -> str:
    """The ``index``-th in-context example answer."""
    module = _template("examples.j2").make_module()
    return str(module.example(index % N_EXAMPLES)).strip()


def render_example_current(index: int) -> str:
    """The body of the current function the ``index``-th example edits."""
    module = _template("examples.j2").make_module()
    return "    " + str(module.current(index % N_EXAMPLES)).strip()


def _role(ctx: ProposalContext) -> str:
    role = ctx.extra.get("role") if isinstance(ctx.extra, dict) else None
    return role or "a data scientist who knows the domain of this task"


def _stat_rows(ctx: ProposalContext) -> list:
    """The statistics rows shown: all of them in their order when they fit, else the
    :data:`MAX_STAT_ROWS` of highest IV (ties in their order)."""
    stats = list(ctx.feature_stats)
    if len(stats) <= MAX_STAT_ROWS:
        return stats
    keep = set(sorted(range(len(stats)), key=lambda i: (-stats[i].iv, i))[:MAX_STAT_ROWS])
    return [s for i, s in enumerate(stats) if i in keep]


def _instance_table(ctx: ProposalContext) -> tuple[list[str], list[list[str]]]:
    rows = list(ctx.instances[:MAX_INSTANCES])
    if not rows:
        return [], []
    ranked = [s.name for s in sorted(ctx.feature_stats, key=lambda s: -s.iv)] or list(ctx.features)
    shown = [f for f in ranked if f in ctx.features][:MAX_INSTANCE_COLUMNS]
    extra = [k for k in rows[0] if k not in ctx.features and k != "error_type"]
    columns = ["error_type", *extra, *shown]
    return columns, [[fmt(r.get(c), 3) for c in columns] for r in rows]


def render_messages(ctx: ProposalContext, *, attempt: int = 0, example: bool = True) -> list[dict]:
    """The chat messages (system + user) asking for a new expert structure.

    ``example=False`` leaves out the in-context example (the grammar already fixes the format).
    """
    columns, table = _instance_table(ctx)
    stats = _stat_rows(ctx)
    binary = "logistic" in ctx.objective or "binary" in ctx.objective
    values = dict(
        role=_role(ctx),
        task=ctx.task.strip(),
        objective=ctx.objective,
        target="log-odds (margin)" if binary else "prediction",
        metric_name=ctx.metric_name,
        higher_is_better=ctx.metric_name.lower() not in ("rmse", "mse", "mae", "logloss", "loss"),
        region_rule=ctx.region_rule,
        current_metric=fmt(ctx.current_metric),
        current_code=function_source(ctx.current, intent="current expert"),
        frozen=", ".join(f"{k} = {fmt(v, 6)}" for k, v in ctx.current_params.items()),
        feature_names=", ".join(ctx.features),
        functions=_FUNCTION_HELP,
        stats=[dict(name=s.name, iv=fmt(s.iv, 3), psi=fmt(s.psi, 3), mean=fmt(s.mean), std=fmt(s.std),
                    min=fmt(s.min), max=fmt(s.max), missing=fmt(s.missing, 2)) for s in stats],
        stats_omitted=len(ctx.feature_stats) - len(stats),
        instances=table,
        columns=columns,
        positive=list(ctx.positive),
        negative=list(ctx.negative),
        feedback=ctx.feedback,
        example=render_example(example_index(ctx, attempt)) if example else "",
        example_current=render_example_current(example_index(ctx, attempt)),
    )
    return [
        {"role": "system", "content": _template("system.j2").render(**values).strip()},
        {"role": "user", "content": _squeeze(_template("propose.j2").render(**values))},
    ]


def render_correction(ctx: ProposalContext, reason: str) -> dict:
    """The user message that feeds a rejected answer's reason back to the model."""
    text = _template("correction.j2").render(reason=reason, feature_names=", ".join(ctx.features))
    return {"role": "user", "content": text.strip()}


def _squeeze(text: str) -> str:
    """Collapse the blank lines that optional template sections leave behind."""
    out: list[str] = []
    for line in text.strip().split("\n"):
        if line.strip() == "" and out and out[-1].strip() == "":
            continue
        out.append(line.rstrip())
    return "\n".join(out)
