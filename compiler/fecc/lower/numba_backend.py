"""Lower symbolic experts (IR) into one readable Python module of numba functions.

The module is a product an auditor reads: one scalar function per expert and per
region, each with a docstring that states the region rule, the correction in math
form, its parameters and the metric it won; a header with the source hash and every
expression's postfix IR; helpers for the safe operators that copy the IR's op table
(``fecc.ir.ops``) exactly.  Every function is ``@njit(cache=True)``; without numba the
same functions run as plain Python with the same results.

How the code is produced (STYLE.md): :class:`NumbaBackend` is the IR's one printer
(:class:`fecc.ir.printing.Printer`, a visitor with a ``lower_<node>`` method per IR node
class; an unknown node raises :class:`LoweringError` naming it) with Python's spelling
table, :data:`SPELLING`.  It turns an expression into a Python expression string with
the fewest parentheses that keep the IR's evaluation order (a right operand of equal
precedence is always parenthesised: float addition is not associative).  The
jinja2 template (``templates/python/experts.py.j2``) only places the names, literals and
code strings computed here; it never sees IR.

Float semantics: the emitted code evaluates in float64 like the numpy reference
(:func:`fecc.ir.evaluate`); comparisons, ``where`` and the arithmetic operators agree
bit for bit, transcendental functions (``log1p``, ``exp``, ``tanh``) may differ from
numpy's vectorised versions in the last unit in the place.
"""
from __future__ import annotations

import hashlib
import keyword
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

# the bundle format owns the emitted functions' names and what an expert means
from fecc_runtime.format import EXPERT_SEMANTICS, TRANSFORM_SEMANTICS, function_names, input_layout

from ..ir import Expr, OPS, features_of, format_number, to_math, to_postfix
from ..ir.ops import DIV_EPS, EXP_CLIP
from ..ir.printing import LocalsPrinter, Spelling, call, infix, prefix, unique_identifiers
from ..templating import render
from .expert_source import ExpertRecord, TransformSource, source_hash as _source_hash


class LoweringError(ValueError):
    """The backend cannot lower an expression (an unknown node, an unbound parameter)."""


# Python operator precedence, higher binds tighter.
_P_WHERE, _P_OR, _P_AND, _P_NOT, _P_CMP, _P_ADD, _P_MUL, _P_NEG = 0, 1, 2, 3, 4, 9, 10, 11

#: exp(x) overflows float64 above this; plain Python raises there, so the helper returns inf.
EXP_OVERFLOW = 709.782712893384

#: Helper functions of the emitted module: name → (body lines, docstring, helpers it calls).
HELPERS: dict[str, tuple[list[str], str, tuple[str, ...]]] = {
    "_expo": ([f"if x > {EXP_OVERFLOW!r}:", "    return math.inf", "return math.exp(x)"],
              "exp(x), inf on overflow (plain Python would raise).", ()),
    "_log": (["return math.log1p(abs(x))"], OPS["log"].definition, ()),
    "_sqrt": (["return math.sqrt(abs(x))"], OPS["sqrt"].definition, ()),
    "_exp": ([f"if x > {EXP_CLIP!r}:", f"    return math.exp({EXP_CLIP!r})", "return math.exp(x)"],
             OPS["exp"].definition, ()),
    "_sigmoid": (["return 1.0 / (1.0 + _expo(-x))"], OPS["sigmoid"].definition, ("_expo",)),
    "_square": (["return x * x"], OPS["square"].definition, ()),
    "_cube": (["return x * x * x"], OPS["cube"].definition, ()),
    "_sign": (["if x > 0.0:", "    return 1.0", "if x < 0.0:", "    return -1.0",
               "if x == 0.0:", "    return 0.0  # -0.0 too, as numpy's np.sign", "return x  # NaN"],
              OPS["sign"].definition, ()),
    "_div": (["if b >= 0.0:", f"    return a / (b + {DIV_EPS!r})", f"return a / (b - {DIV_EPS!r})"],
             OPS["div"].definition + " (-0.0 counts as >= 0)", ()),
    "_min": (["if a < b or a != a:", "    return a", "return b"], OPS["min"].definition, ()),
    "_max": (["if a > b or a != a:", "    return a", "return b"], OPS["max"].definition, ()),
}
_HELPER_ARGS = {"_div": "a, b", "_min": "a, b", "_max": "a, b"}


def _helper(name: str, arity: int) -> Spelling:
    """A call of one of :data:`HELPERS`, which also uses the helpers that one calls."""
    return call(name, arity, uses=(name, *HELPERS[name][2]))


#: How each IR operator is written (the walk and the parentheses: :class:`fecc.ir.printing.Printer`).
#: Comparisons never chain (their operands are numbers, their result a bool).
SPELLING: dict[str, Spelling] = {
    "neg": prefix("-", _P_NEG),
    "abs": call("abs", 1),
    **{op: _helper("_" + op, 1) for op in ("log", "sqrt", "exp", "sigmoid", "square", "cube", "sign")},
    "tanh": call("math.tanh", 1),
    "isnan": call("math.isnan", 1),
    "not": prefix("not ", _P_NOT),
    "add": infix("+", _P_ADD),
    "sub": infix("-", _P_ADD),
    "mul": infix("*", _P_MUL),
    **{op: _helper("_" + op, 2) for op in ("div", "min", "max")},
    **{op: infix(sym, _P_CMP, left=_P_CMP + 1)
       for op, sym in (("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">="), ("eq", "=="), ("ne", "!="))},
    "and": infix("and", _P_AND),
    "or": infix("or", _P_OR),
    "where": Spelling("{1} if {0} else {2}", _P_WHERE, (_P_OR, _P_OR, _P_WHERE + 1)),
}

_RESERVED = {"x", "X", "base", "out", "math", "np", "i", "n", "g", "njit", "abs"}


def literal(value: float) -> str:
    """Python source for a float64 constant (shortest round-trip; ``math.inf``/``math.nan``)."""
    if math.isnan(value):
        return "math.nan"
    if math.isinf(value):
        return "math.inf" if value > 0 else "-math.inf"
    return format_number(value)


def identifiers(names: Sequence[str]) -> dict[str, str]:
    """A valid, unique Python local name for each feature name (stable for a given list)."""

    def make(name: str) -> str:
        ident = re.sub(r"\W+", "_", name).strip("_")
        if not ident or ident[0].isdigit() or ident.startswith("_") or keyword.iskeyword(ident) \
                or ident in _RESERVED or ident.startswith("expert_"):
            ident = "f_" + ident
        return ident

    return unique_identifiers(names, make)


class NumbaBackend(LocalsPrinter):
    """IR → Python expression text, for the numba module.

    Parameters
    ----------
    locals_ : feature name → local variable name holding ``x[j]``.
    """

    spellings = SPELLING
    negative_prec = _P_NEG
    language = "the numba backend"
    error = LoweringError

    def literal(self, value: float) -> str:
        return literal(value)


@dataclass(frozen=True)
class LoweredModule:
    """The emitted module text and what the manifest records about it."""

    text: str
    source_hash: str
    helpers: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def source_hash(experts: Sequence[ExpertRecord], feature_names: Sequence[str], transforms: Sequence = ()) -> str:
    """sha256 of what the module is generated from (feature order, names, postfix IR; the transforms')."""
    return _source_hash(experts, feature_names, transforms)


def _wrap(text: str, width: int = 84, indent: str = "    ") -> list[str]:
    """Split long prose/code at spaces for docstrings (never inside a token)."""
    words, lines, cur = text.split(" "), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = indent + w
        else:
            cur = f"{cur} {w}" if cur else w
    if cur:
        lines.append(cur)
    return lines


def _code_lines(code: str, width: int = 88) -> list[str]:
    """``return <code>`` as lines; a long expression is wrapped inside parentheses at spaces."""
    if len(code) + 11 <= width:
        return [code]
    out = _wrap(code, width=width - 8, indent="")
    return ["("] + ["    " + line for line in out] + [")"]


def _metric_line(e: ExpertRecord) -> str:
    v = e.metrics.get("valid", {})
    if "score" not in v:
        return "not measured"
    name = "auc" if v["score"] >= 0 else "rmse"
    return (f"valid {name} {abs(v['score']):.6g} (legacy {abs(v['legacy_score']):.6g}); "
            f"loss reduction on the region's valid rows: z = {v.get('z')}")


def _params_line(e: ExpertRecord) -> str:
    if not e.params:
        return "none"
    return ", ".join(f"{k} = {literal(v)}" for k, v in e.params.items())


def _transform_items(transforms: Sequence[TransformSource], base: Sequence[str], locals_: dict[str, str],
                     backend: NumbaBackend) -> list[dict]:
    """Template items of the transforms: one scalar function each over the model's features."""
    index = {n: j for j, n in enumerate(base)}
    items = []
    for t in transforms:
        if t.expr.type != "num":
            raise LoweringError(f"transform {t.name} must be numeric")
        missing = [f for f in features_of(t.expr) if f not in index]
        if missing:
            raise LoweringError(f"transform {t.name} reads {missing}, which are not model features")
        names = sorted(features_of(t.expr), key=index.get)
        items.append({"name": t.name, "function": f"transform_{locals_[t.name]}", "math": to_math(t.expr, digits=6),
                      "math_lines": _wrap(to_math(t.expr)), "postfix": to_postfix(t.expr),
                      "loads": [{"local": locals_[f], "index": index[f], "name": f} for f in names],
                      "code": _code_lines(backend.code(t.expr))})
    return items


def emit_module(experts: Sequence[ExpertRecord], feature_names: Sequence[str],
                transforms: Sequence = ()) -> LoweredModule:
    """The Python module text for ``experts`` (names ``expert_1`` …) over ``feature_names``.

    With ``transforms`` (:class:`~fecc.lower.expert_source.TransformSource` or the search's
    ``Transform``), the experts read the input row of the format
    (:func:`fecc_runtime.format.input_layout`: the features, then the transforms), and the
    module also holds one function per transform and ``transforms_batch``.
    """
    base = [str(f) for f in feature_names]
    transforms = [TransformSource.of(t) for t in transforms]
    feature_names = input_layout(base, [{"name": t.name} for t in transforms])
    index = {n: j for j, n in enumerate(feature_names)}
    locals_ = identifiers(feature_names)
    backend = NumbaBackend(locals_)
    transform_items = _transform_items(transforms, base, locals_, backend)
    defined = {t.name: t.math for t in transforms}
    seen = set()
    items = []
    for e in experts:
        if e.name in seen or not re.match(r"^expert_\d+$", e.name):
            raise LoweringError(f"expert names must be unique expert_<n>, got {e.name!r}")
        seen.add(e.name)
        if e.region.type != "bool" or e.correction.type != "num":
            raise LoweringError(f"{e.name}: region must be bool and correction num")

        def loads(expr: Expr) -> list[dict]:
            names = sorted(features_of(expr), key=lambda f: index.get(f, -1))
            for f in names:
                if f not in index:
                    raise LoweringError(f"{e.name} reads {f!r}, which is not a model feature")
            return [{"local": locals_[f], "index": index[f], "name": f} for f in names]

        items.append({
            "name": e.name,
            "fn": function_names(e.name),
            "region_code": _code_lines(backend.code(e.region)),
            "region_loads": loads(e.region),
            "region_rule": _wrap(e.region_rule),
            "correction_code": _code_lines(backend.code(e.correction)),
            "correction_loads": loads(e.correction),
            "correction_math": _wrap(to_math(e.correction)),
            "region_postfix": _wrap(to_postfix(e.region), indent="        "),
            "correction_postfix": _wrap(to_postfix(e.correction), indent="        "),
            "params": _wrap(_params_line(e)),
            "metric": _wrap(_metric_line(e)),
            "iterations": e.iterations,
        })
    # helpers in a fixed order (the table's), each only when used
    helpers = []
    for name, (body, doc, _) in HELPERS.items():
        if name in backend.helpers:
            helpers.append({"name": name, "args": _HELPER_ARGS.get(name, "x"), "body": body, "doc": doc})
    digest = source_hash(experts, base if transforms else feature_names, transforms)
    text = render("python/experts.py.j2", experts=items, helpers=helpers, source_hash=digest,
                  features=[{"index": j, "name": n, "local": locals_[n], "transform": defined.get(n)}
                            for j, n in enumerate(feature_names)],
                  n_features=len(feature_names), semantics=EXPERT_SEMANTICS,
                  feature_names_literal=repr(tuple(feature_names)),
                  experts_literal=repr(tuple(e.name for e in experts)),
                  transforms=transform_items, n_base=len(base), transform_semantics=TRANSFORM_SEMANTICS,
                  transforms_literal=repr(tuple(t.name for t in transforms)))
    return LoweredModule(text=text, source_hash=digest, helpers=tuple(h["name"] for h in helpers))


def write_module(experts: Sequence[ExpertRecord], feature_names: Sequence[str], out_dir: Path,
                 *, filename: str = "experts.py", transforms: Sequence = ()) -> dict:
    """Write the module into ``out_dir``; returns the manifest entry ``{"path", "sha256", "source_hash", ...}``."""
    mod = emit_module(experts, feature_names, transforms)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / filename).write_text(mod.text)
    return {"path": filename, "sha256": mod.sha256, "source_hash": mod.source_hash,
            "experts": [e.name for e in experts], "backend": "numba", "entry": "predict_experts"}
