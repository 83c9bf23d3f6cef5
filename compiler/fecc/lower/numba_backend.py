"""Lower symbolic experts (IR) into one readable Python module of numba functions.

The module is a product an auditor reads: one scalar function per expert and per
region, each with a docstring that states the region rule, the correction in math
form, its parameters and the metric it won; a header with the source hash and every
expression's postfix IR; helpers for the safe operators that copy the IR's op table
(``fecc.ir.ops``) exactly.  Every function is ``@njit(cache=True)``; without numba the
same functions run as plain Python with the same results.

How the code is produced (STYLE.md): :class:`NumbaBackend` is a visitor — a
``lower_<node>`` method per IR node class, found by name; an unknown node raises
:class:`LoweringError` naming it.  It turns an expression into a Python expression
string with the fewest parentheses that keep the IR's evaluation order (a right operand
of equal precedence is always parenthesised: float addition is not associative).  The
jinja2 template (``templates/python/experts.py.j2``) only places the names, literals and
code strings computed here; it never sees IR.

Float semantics: the emitted code evaluates in float64 like the numpy reference
(:func:`fecc.ir.evaluate`); comparisons, ``where`` and the arithmetic operators agree
bit for bit, transcendental functions (``log1p``, ``exp``, ``tanh``) may differ from
numpy's vectorised versions in the last unit in the place.
"""
from __future__ import annotations

import hashlib
import json
import keyword
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..ir import Expr, OPS, features_of, format_number, to_math, to_postfix
from ..ir.ops import DIV_EPS, EXP_CLIP
from ..search.driver import EXPERT_SEMANTICS, function_names
from ..search.experts import Expert
from ..templating import render


class LoweringError(ValueError):
    """The backend cannot lower an expression (an unknown node, an unbound parameter)."""


# Python operator precedence, higher binds tighter.
_P_WHERE, _P_OR, _P_AND, _P_NOT, _P_CMP, _P_ADD, _P_MUL, _P_NEG, _P_ATOM = 0, 1, 2, 3, 4, 9, 10, 11, 100

#: exp(x) overflows float64 above this; plain Python raises there, so the helper returns inf.
EXP_OVERFLOW = 709.782712893384

#: How each IR operator is written: ("infix", symbol, prec) | ("prefix", symbol, prec) | ("call", function).
SPELLING: dict[str, tuple] = {
    "neg": ("prefix", "-", _P_NEG),
    "abs": ("call", "abs"),
    "log": ("call", "_log"),
    "sqrt": ("call", "_sqrt"),
    "exp": ("call", "_exp"),
    "sigmoid": ("call", "_sigmoid"),
    "tanh": ("call", "math.tanh"),
    "square": ("call", "_square"),
    "cube": ("call", "_cube"),
    "sign": ("call", "_sign"),
    "isnan": ("call", "math.isnan"),
    "not": ("prefix", "not ", _P_NOT),
    "add": ("infix", "+", _P_ADD),
    "sub": ("infix", "-", _P_ADD),
    "mul": ("infix", "*", _P_MUL),
    "div": ("call", "_div"),
    "min": ("call", "_min"),
    "max": ("call", "_max"),
    "lt": ("infix", "<", _P_CMP),
    "le": ("infix", "<=", _P_CMP),
    "gt": ("infix", ">", _P_CMP),
    "ge": ("infix", ">=", _P_CMP),
    "eq": ("infix", "==", _P_CMP),
    "ne": ("infix", "!=", _P_CMP),
    "and": ("infix", "and", _P_AND),
    "or": ("infix", "or", _P_OR),
}

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

_RESERVED = {"x", "X", "base", "out", "math", "np", "i", "n", "g", "njit", "abs"}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def literal(value: float) -> str:
    """Python source for a float64 constant (shortest round-trip; ``math.inf``/``math.nan``)."""
    if math.isnan(value):
        return "math.nan"
    if math.isinf(value):
        return "math.inf" if value > 0 else "-math.inf"
    return format_number(value)


def identifiers(names: Sequence[str]) -> dict[str, str]:
    """A valid, unique Python local name for each feature name (stable for a given list)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        ident = re.sub(r"\W+", "_", name).strip("_")
        if not ident or ident[0].isdigit() or ident.startswith("_") or keyword.iskeyword(ident) \
                or ident in _RESERVED or ident.startswith("expert_"):
            ident = "f_" + ident
        base, k = ident, 2
        while ident in used:
            ident, k = f"{base}_{k}", k + 1
        used.add(ident)
        out[name] = ident
    return out


class NumbaBackend:
    """IR → Python expression text, for the numba module.

    Parameters
    ----------
    locals_ : feature name → local variable name holding ``x[j]``.
    """

    def __init__(self, locals_: dict[str, str]):
        self.locals = locals_
        self.helpers: set[str] = set()

    def lower(self, node: Expr) -> tuple[str, int]:
        """(code, precedence) of ``node``."""
        method = getattr(self, "lower_" + _snake(type(node).__name__), None)
        if method is None:
            raise LoweringError(f"the numba backend cannot lower IR node {type(node).__name__}")
        return method(node)

    def code(self, node: Expr) -> str:
        return self.lower(node)[0]

    def lower_feature(self, node) -> tuple[str, int]:
        try:
            return self.locals[node.name], _P_ATOM
        except KeyError:
            raise LoweringError(f"feature {node.name!r} is not a model feature") from None

    def lower_const(self, node) -> tuple[str, int]:
        text = literal(node.value)
        return text, (_P_NEG if text.startswith("-") else _P_ATOM)

    def lower_param(self, node) -> tuple[str, int]:
        raise LoweringError(f"parameter @{node.name} is unbound: bind parameters before lowering")

    def _operand(self, node: Expr, min_prec: int) -> str:
        text, prec = self.lower(node)
        return text if prec >= min_prec else f"({text})"

    def _apply(self, op: str, children: Sequence[Expr]) -> tuple[str, int]:
        if op not in SPELLING:
            raise LoweringError(f"the numba backend has no spelling for operator {op!r}")
        spec = SPELLING[op]
        if spec[0] == "call":
            fn = spec[1]
            if fn in HELPERS:
                self.helpers.add(fn)
                self.helpers.update(HELPERS[fn][2])
            return f"{fn}({', '.join(self.code(c) for c in children)})", _P_ATOM
        if spec[0] == "prefix":
            _, sym, prec = spec
            # an operand of equal precedence is parenthesised too: "-(-x)" reads better than "--x"
            return f"{sym}{self._operand(children[0], prec + 1)}", prec
        _, sym, prec = spec
        # left operand: equal precedence keeps Python's left-to-right order; right operand:
        # always parenthesised at equal precedence (a + (b + c) is not (a + b) + c in floats);
        # comparisons never nest (their operands are numbers, their result a bool)
        left = self._operand(children[0], prec if prec != _P_CMP else prec + 1)
        right = self._operand(children[1], prec + 1)
        return f"{left} {sym} {right}", prec

    def lower_unary(self, node) -> tuple[str, int]:
        return self._apply(node.op, node.children)

    def lower_binary(self, node) -> tuple[str, int]:
        return self._apply(node.op, node.children)

    def lower_where(self, node) -> tuple[str, int]:
        cond = self._operand(node.cond, _P_OR)
        then = self._operand(node.then, _P_OR)
        other = self._operand(node.otherwise, _P_WHERE + 1)
        return f"{then} if {cond} else {other}", _P_WHERE


@dataclass(frozen=True)
class LoweredModule:
    """The emitted module text and what the manifest records about it."""

    text: str
    source_hash: str
    helpers: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def source_hash(experts: Sequence[Expert], feature_names: Sequence[str]) -> str:
    """sha256 of what the module is generated from (feature order, names, postfix IR)."""
    payload = {"features": list(feature_names),
               "experts": [{"name": e.name, "region": to_postfix(e.region), "correction": to_postfix(e.correction)}
                           for e in experts]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


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


def _metric_line(e: Expert) -> str:
    v = e.metrics.get("valid", {})
    if "score" not in v:
        return "not measured"
    name = "auc" if v["score"] >= 0 else "rmse"
    return (f"valid {name} {abs(v['score']):.6g} (legacy {abs(v['legacy_score']):.6g}); "
            f"loss reduction on the region's valid rows: z = {v.get('z')}")


def _params_line(e: Expert) -> str:
    if not e.params:
        return "none"
    return ", ".join(f"{k} = {literal(v)}" for k, v in e.params.items())


def emit_module(experts: Sequence[Expert], feature_names: Sequence[str]) -> LoweredModule:
    """The Python module text for ``experts`` (names ``expert_1`` …) over ``feature_names``."""
    feature_names = [str(f) for f in feature_names]
    index = {n: j for j, n in enumerate(feature_names)}
    locals_ = identifiers(feature_names)
    backend = NumbaBackend(locals_)
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
    digest = source_hash(experts, feature_names)
    text = render("python/experts.py.j2", experts=items, helpers=helpers, source_hash=digest,
                  features=[{"index": j, "name": n, "local": locals_[n]} for j, n in enumerate(feature_names)],
                  n_features=len(feature_names), semantics=EXPERT_SEMANTICS,
                  feature_names_literal=repr(tuple(feature_names)),
                  experts_literal=repr(tuple(e.name for e in experts)))
    return LoweredModule(text=text, source_hash=digest, helpers=tuple(h["name"] for h in helpers))


def write_module(experts: Sequence[Expert], feature_names: Sequence[str], out_dir: Path,
                 *, filename: str = "experts.py") -> dict:
    """Write the module into ``out_dir``; returns the manifest entry ``{"path", "sha256", "source_hash", ...}``."""
    mod = emit_module(experts, feature_names)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / filename).write_text(mod.text)
    return {"path": filename, "sha256": mod.sha256, "source_hash": mod.source_hash,
            "experts": [e.name for e in experts], "backend": "numba", "entry": "predict_experts"}
