"""Lower symbolic experts (IR) to C: one readable source file, ``experts.c``.

The file is the experts' half of the bundle's ensemble library (see
:mod:`fecc.lower.ensemble`, which compiles it with the trees' array engines and the
glue that scores a row end to end).  Like the numba module it is written for an
auditor: a header with the source hash, the semantics and every expression's postfix
IR; per expert a comment quoting its region rule and its correction in math form, then
one function for the region and one for the correction; helpers for the safe
operators copied from the IR's op table (:mod:`fecc.ir.ops`), each only when used.

How the code is produced (STYLE.md): :class:`CBackend` is the IR's one printer
(:class:`fecc.ir.printing.Printer`, a visitor with a ``lower_<node>`` method per IR node
class; an unknown node raises :class:`LoweringError` naming it) with C's spelling table,
:data:`SPELLING`; it returns C expression text with the fewest
parentheses that keep the IR's evaluation order (a right operand of equal precedence
is always parenthesised: float addition is not associative).  The jinja2 template
(``templates/c/experts.c.j2``) only places the names, literals and code computed here.

Float semantics: everything is IEEE double, as in the numpy reference
(:func:`fecc.ir.evaluate`).  The library is compiled without ``-ffast-math`` and with
``-ffp-contract=off`` (:data:`fecc.lower.ensemble.CFLAGS`), so gcc neither reassociates
nor fuses a multiply and an add into ``fma``; comparisons with NaN are false except
``!=``, as in numpy.  ``+ - * /``, ``sqrt``, comparisons, ``where``, ``min``/``max``
and the safe ``div`` therefore agree with numpy bit for bit (signed zeros included);
``log1p``, ``exp`` and ``tanh`` come from the C library, which may differ from numpy's
vectorised versions (SVML on AVX-512 machines) in the last unit in the place.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

from ..ir import Expr, features_of, format_number, to_math, to_postfix
from ..ir.ops import DIV_EPS, EXP_CLIP, OPS
from ..ir.printing import LocalsPrinter, Spelling, call, infix, prefix, unique_identifiers
from ..templating import render
from fecc_runtime.format import input_layout
from .expert_source import ExpertSource, TransformSource, source_hash


class LoweringError(ValueError):
    """The backend cannot lower an expression (an unknown node, an unbound parameter)."""


# C operator precedence, higher binds tighter.
_P_TERN, _P_OR, _P_AND, _P_EQ, _P_REL, _P_ADD, _P_MUL, _P_UNARY = 1, 2, 3, 4, 5, 6, 7, 8

#: Helper functions of the emitted file: name → (parameters, C body, comment).  The
#: comment is the op table's definition; the body is that definition, operation for
#: operation as the numpy reference computes it.
HELPERS: dict[str, tuple[str, str, str]] = {
    "fecc_log": ("double x", "return log1p(fabs(x));", OPS["log"].definition),
    "fecc_sqrt": ("double x", "return sqrt(fabs(x));", OPS["sqrt"].definition),
    "fecc_exp": ("double x", f"return exp(x > {EXP_CLIP!r} ? {EXP_CLIP!r} : x);", OPS["exp"].definition),
    "fecc_sigmoid": ("double x", "return 1.0 / (1.0 + exp(-x));",
                     OPS["sigmoid"].definition + "; exp overflows to inf and the result to 0, as numpy's"),
    "fecc_square": ("double x", "return x * x;", OPS["square"].definition),
    "fecc_cube": ("double x", "return x * x * x;", OPS["cube"].definition),
    "fecc_sign": ("double x", "return x > 0.0 ? 1.0 : x < 0.0 ? -1.0 : x == 0.0 ? 0.0 : x;",
                  OPS["sign"].definition + " (numpy's np.sign: -0.0 gives 0.0)"),
    "fecc_div": ("double a, double b", f"return b >= 0.0 ? a / (b + {DIV_EPS!r}) : a / (b - {DIV_EPS!r});",
                 OPS["div"].definition + " (-0.0 counts as >= 0)"),
    "fecc_min": ("double a, double b", "return (a < b || isnan(a)) ? a : b;",
                 OPS["min"].definition + " (numpy's np.minimum: b when a == b)"),
    "fecc_max": ("double a, double b", "return (a > b || isnan(a)) ? a : b;",
                 OPS["max"].definition + " (numpy's np.maximum: b when a == b)"),
}


def _helper(name: str, arity: int) -> Spelling:
    """A call of one of :data:`HELPERS`."""
    return call(name, arity, uses=(name,))


#: How each IR operator is written (the walk and the parentheses: :class:`fecc.ir.printing.Printer`).
#: Equality and relational operators never chain; a negative operand of arithmetic or a
#: comparison is parenthesised for the reader (``a - (-b)``, ``(-a) * b``); ``a && b || c``
#: is legal C but gcc warns, so every logical operand that is not a comparison, a call or
#: a negation gets parentheses.  Both branches of ``?:`` are pure, so evaluating only the
#: chosen one gives numpy's value.
SPELLING: dict[str, Spelling] = {
    "neg": prefix("-", _P_UNARY),
    "abs": call("fabs", 1),
    **{op: _helper("fecc_" + op, 1) for op in ("log", "sqrt", "exp", "sigmoid", "square", "cube", "sign")},
    "tanh": call("tanh", 1),
    "isnan": call("isnan", 1),
    "not": prefix("!", _P_UNARY),
    "add": infix("+", _P_ADD, minus=(False, True)),
    "sub": infix("-", _P_ADD, minus=(False, True)),
    "mul": infix("*", _P_MUL, minus=(True, True)),
    **{op: _helper("fecc_" + op, 2) for op in ("div", "min", "max")},
    **{op: infix(sym, _P_REL, left=_P_REL + 1, minus=(False, True))
       for op, sym in (("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">="))},
    **{op: infix(sym, _P_EQ, left=_P_EQ + 1, minus=(False, True)) for op, sym in (("eq", "=="), ("ne", "!="))},
    "and": infix("&&", _P_AND, left=_P_EQ, right=_P_EQ),
    "or": infix("||", _P_OR, left=_P_EQ, right=_P_EQ),
    "where": Spelling("{0} ? {1} : {2}", _P_TERN, (_P_EQ, _P_TERN + 1, _P_TERN + 1)),
}


#: Names a feature's local variable must not take: C keywords, what the emitted code and
#: <math.h>/<stdint.h> define (functions and macros), the names of the glue.
_C_KEYWORDS = frozenset("""auto break case char const continue default do double else enum extern float for goto
if inline int long register restrict return short signed sizeof static struct switch typedef union unsigned
void volatile while _Bool _Complex _Imaginary bool true false""".split())
_MATH_NAMES = frozenset("""acos acosh asin asinh atan atan2 atanh cbrt ceil copysign cos cosh erf erfc exp exp2
expm1 fabs fdim floor fma fmax fmin fmod frexp hypot ilogb ldexp lgamma llrint llround log log10 log1p log2 logb
lrint lround modf nan nearbyint nextafter nexttoward pow remainder remquo rint round scalbln scalbn sin sinh sqrt
tan tanh tgamma trunc j0 j1 jn y0 y1 yn gamma isnan isinf isfinite isnormal signbit fpclassify isgreater
isgreaterequal isless islessequal islessgreater isunordered errno""".split())
_RESERVED = frozenset({"x", "phi", "base", "out", "offset", "g", "f", "d", "i", "j", "k", "n", "r"}) \
    | _C_KEYWORDS | _MATH_NAMES


def literal(value: float) -> str:
    """C source for a float64 constant: shortest round-trip digits (gcc reads decimal
    literals correctly rounded), ``INFINITY`` / ``NAN`` from <math.h>."""
    if math.isnan(value):
        return "NAN"
    if math.isinf(value):
        return "INFINITY" if value > 0 else "-INFINITY"
    text = format_number(value)
    return text if any(c in text for c in ".en") else text + ".0"


def identifiers(names: Sequence[str]) -> dict[str, str]:
    """A valid, unique C local name for each feature name (stable for a given list)."""

    def make(name: str) -> str:
        ident = re.sub(r"\W+", "_", name.encode("ascii", "replace").decode()).strip("_")
        if (not ident or ident[0].isdigit() or ident in _RESERVED or ident.isupper()
                or ident.startswith(("expert_", "fecc_", "FECC_", "FP_", "M_", "INT", "UINT"))):
            ident = "f_" + ident
        return ident

    return unique_identifiers(names, make)


class CBackend(LocalsPrinter):
    """IR → C expression text.

    Parameters
    ----------
    locals_ : feature name → local variable name holding ``x[j]``.
    """

    spellings = SPELLING
    negative_prec = _P_UNARY
    language = "the C backend"
    error = LoweringError

    def literal(self, value: float) -> str:
        return literal(value)


def _wrap(text: str, width: int = 92, indent: str = "") -> list[str]:
    """Split long text at spaces (never inside a token)."""
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


def _comment(text: str) -> str:
    """Text that cannot end a C comment early."""
    return text.replace("*/", "* /").replace("/*", "/ *")


def _params_line(params) -> str:
    if not params:
        return "none (every parameter is bound into the expressions)"
    return ", ".join(f"{k} = {format_number(float(v))}" for k, v in params.items())


@dataclass(frozen=True)
class LoweredC:
    """The emitted ``experts.c`` text and what the manifest records about it."""

    text: str
    source_hash: str
    helpers: tuple[str, ...]
    experts: tuple[str, ...]


#: Name of the function in ``experts.c`` that computes one row's aggregator inputs.
PHI_FUNCTION = "fecc_experts_phi"


#: Name of the function in ``experts.c`` that computes one row's transform columns (float32-rounded).
TRANSFORMS_FUNCTION = "fecc_transforms"


def emit_experts_c(experts: Sequence[Any], feature_names: Sequence[str], transforms: Sequence[Any] = ()) -> LoweredC:
    """The C text for ``experts`` (``ExpertSource`` or the search's ``Expert``) over ``feature_names``.

    Exported functions: ``expert_<n>_region(const double* x)`` (``int32_t``),
    ``expert_<n>_correction(const double* x)`` (``double``), :data:`PHI_FUNCTION`
    (``double (const double* x, double base, double* phi)``: the ``3K`` aggregator
    inputs of one row, returning the experts' offset) and ``fecc_experts_batch``.

    With ``transforms`` (:class:`~fecc.lower.expert_source.TransformSource` or the search's
    ``Transform``) the experts read the format's input row (the features, then the
    transforms: :func:`fecc_runtime.format.input_layout`) and the file also exports
    ``fecc_transform_<name>(const double* x)`` per transform and :data:`TRANSFORMS_FUNCTION`
    (``void (const double* x, double* out)``: every transform of one row, rounded through
    float32, from its float32-rounded features).
    """
    experts = [ExpertSource.of(e) for e in experts]
    base = [str(f) for f in feature_names]
    transforms = [TransformSource.of(t) for t in transforms]
    feature_names = input_layout(base, [{"name": t.name} for t in transforms])
    index = {n: j for j, n in enumerate(feature_names)}
    locals_ = identifiers(feature_names)
    backend = CBackend(locals_)
    backend.helpers.add("fecc_div")  # the ratio column of every expert
    base_index = {n: j for j, n in enumerate(base)}
    titems = []
    for t in transforms:
        missing = [f for f in features_of(t.expr) if f not in base_index]
        if missing or t.expr.type != "num":
            raise LoweringError(f"transform {t.name} must be numeric over model features (reads {missing})")
        names = sorted(features_of(t.expr), key=base_index.get)
        titems.append({"name": t.name, "function": f"fecc_transform_{locals_[t.name]}",
                       "math": _wrap(_comment(to_math(t.expr)), width=80, indent="  "),
                       "postfix": _wrap(_comment(to_postfix(t.expr)), width=80, indent="  "),
                       "loads": [{"local": locals_[f], "index": base_index[f], "name": _comment(f)} for f in names],
                       "code": _wrap(backend.code(t.expr), indent="    ")})
    defined = {t.name: to_math(t.expr, digits=6) for t in transforms}
    seen: set[str] = set()
    items = []
    for e in experts:
        if e.name in seen or not re.match(r"^expert_\d+$", e.name):
            raise LoweringError(f"expert names must be unique expert_<n>, got {e.name!r}")
        seen.add(e.name)
        if e.region.type != "bool" or e.correction.type != "num":
            raise LoweringError(f"{e.name}: region must be bool and correction num")

        def loads(expr: Expr, e=e) -> list[dict]:
            names = sorted(features_of(expr), key=lambda f: index.get(f, -1))
            for f in names:
                if f not in index:
                    raise LoweringError(f"{e.name} reads {f!r}, which is not a model feature")
            return [{"local": locals_[f], "index": index[f], "name": _comment(f)} for f in names]

        items.append({
            "name": e.name,
            "region_code": _wrap(backend.code(e.region), indent="    "),
            "region_loads": loads(e.region),
            "region_rule": _wrap(_comment(e.region_rule or to_math(e.region)), width=80, indent="  "),
            "region_postfix": _wrap(_comment(to_postfix(e.region)), width=80, indent="  "),
            "correction_code": _wrap(backend.code(e.correction), indent="    "),
            "correction_loads": loads(e.correction),
            "correction_math": _wrap(_comment(to_math(e.correction)), width=80, indent="  "),
            "correction_postfix": _wrap(_comment(to_postfix(e.correction)), width=80, indent="  "),
            "params": _wrap(_comment(_params_line(e.params)), width=80, indent="  "),
        })
    helpers = [{"name": name, "args": args, "body": body, "doc": _comment(doc)}
               for name, (args, body, doc) in HELPERS.items() if name in backend.helpers]
    digest = source_hash(experts, base if transforms else feature_names, transforms)
    text = render("c/experts.c.j2", experts=items, helpers=helpers, source_hash=digest,
                  features=[{"index": j, "name": _comment(n), "local": locals_[n],
                             "transform": _comment(defined[n]) if n in defined else None}
                            for j, n in enumerate(feature_names)],
                  n_features=len(feature_names), phi_function=PHI_FUNCTION,
                  div_eps=repr(DIV_EPS), transforms=titems, n_base=len(base),
                  transforms_function=TRANSFORMS_FUNCTION)
    return LoweredC(text=text, source_hash=digest, helpers=tuple(h["name"] for h in helpers),
                    experts=tuple(e.name for e in experts))
