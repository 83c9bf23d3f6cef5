"""Parse an LLM answer — ``def f(x, params): ...`` plus a JSON search space — into the IR.

Nothing the LLM writes is executed: the function is read with :mod:`ast` and every
node is checked against a whitelist, then translated node by node into
:mod:`fecc.ir`.  What is not on the whitelist is rejected with a reason that names the
line and column, written so that it can be fed back to the LLM as error feedback.

The accepted subset
-------------------
* one top-level ``def f(x, params):`` (any two parameter names; no defaults,
  decorators or ``*args``); a docstring and ``# intent: ...`` comment are allowed;
* statements: ``name = expr``, ``name += expr`` (also ``-= *= /=``), ``if/elif/else``,
  ``return expr``, ``pass``.  Local variables are *inlined* (the IR has no variables);
  an ``if`` whose branches return becomes a ``where`` over the rest of the function;
* expressions: numbers, ``x["feature"]`` (names checked against the allowed
  features), ``params["p"]`` (a :class:`~fecc.ir.Param`), ``+ - * /`` (``/`` is the IR's
  safe division), unary ``-``, ``**`` with a few constant exponents, comparisons
  (chains become ``and``), ``and/or/not``, ``a if c else b``, and the functions below.

Functions and how they map onto the IR's *total* operators
----------------------------------------------------------
The IR has one logarithm, one square root and one exponential, each defined for every
input (see :mod:`fecc.ir.ops`).  The LLM is told these semantics in the prompt and the
grammar writes the bare IR names; for answers written against numpy/math we map:

===============================================  ======================================
Python (bare, ``np.``, ``numpy.`` or ``math.``)  IR
===============================================  ======================================
``log(v)``, ``log1p(v)``                         ``log(v)`` = log(1 + |v|).  Equal to
                                                 ``log1p`` for v >= 0; for ``log`` the
                                                 shift by one keeps it finite at 0 and
                                                 the tuned parameters absorb the rest.
``log2(v)``, ``log10(v)``                        ``log(v) / ln 2`` and ``log(v) / ln 10``
``sqrt(v)``                                      ``sqrt(v)`` = sqrt(|v|)
``exp(v)``; ``expm1(v)``                         ``exp(v)`` (argument clipped at 50);
                                                 ``exp(v) - 1``
``abs, fabs, absolute``                          ``abs``
``tanh``, ``sigmoid``/``expit``, ``sign``        same name
``square(v)``, ``cube(v)``                       ``square``, ``cube``
``min/max`` (2+ args), ``minimum/maximum``,      nested ``min``/``max`` (NaN propagates,
``fmin/fmax``                                    also for ``fmin``/``fmax``)
``clip(v, lo, hi)``                              ``min(max(v, lo), hi)``
``where(c, a, b)``                               ``where``
``isnan(v)``                                     ``isnan``
``float(v)``                                     ``v``
``pow(a, k)``, ``power(a, k)``, ``a ** k``       k = 2, 3, 4 → square/cube; k = 0.5 →
                                                 sqrt; k = -1, -2, -0.5 → 1 / ...;
                                                 other exponents are rejected
``pi``, ``e``, ``nan``, ``inf``                  constants
===============================================  ======================================

A number used as a condition means ``!= 0`` (Python's truthiness; NaN is true in both).
"""
from __future__ import annotations

import ast
import difflib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Collection, Mapping

from ..ir import Binary, Const, Expr, Feature, Limits, Param, Unary, Where, validate
from ..ir.nodes import IRTypeError
from ..ir.validate import IRValidationError
from .base import ParamRange

#: Longest answer we hand to :func:`ast.parse` (a cheap guard against pathological input).
MAX_SOURCE_CHARS = 20_000
#: Cap on the tree size while inlining locals (``b = a + a; c = b + b; ...`` doubles each line).
MAX_INLINED_NODES = 2_000
#: Cap on the number of return paths an ``if`` ladder may create.
MAX_PATHS = 64


class AnswerError(ValueError):
    """An answer we cannot accept; the message locates the problem for the LLM.

    Attributes
    ----------
    reason : the problem in words.
    line, col : 1-based position in the answer text, when known.
    """

    def __init__(self, reason: str, *, line: int | None = None, col: int | None = None):
        self.reason = reason
        self.line = line
        self.col = col
        where = f"line {line}, col {col}: " if line is not None and col is not None else (
            f"line {line}: " if line is not None else "")
        super().__init__(where + reason)


@dataclass(frozen=True)
class ParsedAnswer:
    """A parsed answer: the expression, its search space and what the LLM said it does."""

    expr: Expr
    space: dict[str, ParamRange]
    intent: str = ""
    code: str = ""
    space_text: str = ""
    notes: tuple[str, ...] = field(default=())  # harmless things we dropped (unused ranges)


# --------------------------------------------------------------------------- answer layout

_FENCE = re.compile(r"^```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def split_answer(text: str) -> tuple[str, int, str, int]:
    """Cut an answer into ``(code, code_line, space_json, space_line)``.

    ``code_line``/``space_line`` are the 0-based line offsets of each part in ``text``,
    so errors can point at the line the LLM wrote.  Markdown fences are tolerated; the
    grammar-constrained form is the function followed by the JSON object on its own line.
    """
    if not isinstance(text, str):
        raise AnswerError(f"the answer must be text, got {type(text).__name__}")
    if len(text) > MAX_SOURCE_CHARS:
        raise AnswerError(f"the answer is {len(text)} characters long; the limit is {MAX_SOURCE_CHARS}")
    blocks = [(m.group(1).lower(), m.group(2), text.count("\n", 0, m.start(2))) for m in _FENCE.finditer(text)]
    code = next((b for b in blocks if re.search(r"^\s*def\s", b[1], re.M)), None)
    if code is not None and re.search(r"^\{", code[1], re.M):
        # one fenced block holding both the function and the JSON: split inside it
        inner_code, inner_line, inner_space, space_line = _split_plain(code[1])
        return inner_code, code[2] + inner_line, inner_space, code[2] + space_line
    if code is not None:
        rest = [b for b in blocks if b is not code and b[1].lstrip().startswith("{")]
        if rest:
            return code[1], code[2], rest[0][1], rest[0][2]
        # the JSON may follow the code block unfenced
        tail_start = text.find("```", text.find(code[1]) + len(code[1]))
        tail = text[tail_start + 3:] if tail_start >= 0 else ""
        brace = tail.find("{")
        if brace < 0:
            raise AnswerError("no JSON search space found after the function")
        pos = tail_start + 3 + brace
        return code[1], code[2], text[pos:], text.count("\n", 0, pos)
    return _split_plain(text)


def _split_plain(text: str) -> tuple[str, int, str, int]:
    """:func:`split_answer` for text without fences: the function, then the JSON."""
    m = re.search(r"^[ \t]*def[ \t]", text, re.M)
    if m is None:
        raise AnswerError("no function found: the answer must start with `def f(x, params):`")
    start = m.start()
    # prose before the function is tolerated, Python statements are not: an import the
    # model put above `def` would otherwise slip past the whitelist unseen
    for i, line in enumerate(text[:start].split("\n")):
        if re.match(r"^\s*(import\s|from\s+\S+\s+import\s|@)", line):
            raise AnswerError(_NOT_ALLOWED[ast.Import] if not line.lstrip().startswith("@")
                              else "decorators are not allowed", line=i + 1, col=1)
    # the function ends at the first non-blank line that starts in column 0 after the def line
    lines = text[start:].split("\n")
    end_line = len(lines)
    for i, line in enumerate(lines[1:], 1):
        if line.strip() and not line[0].isspace() and not line.startswith("#"):
            end_line = i
            break
    code = "\n".join(lines[:end_line])
    code_line = text.count("\n", 0, start)
    rest = "\n".join(lines[end_line:])
    brace = rest.find("{")
    if brace < 0:
        raise AnswerError("no JSON search space found after the function", line=code_line + end_line + 1)
    pos = start + len(code) + 1 + brace
    # prose between the function and the JSON is tolerated; more Python is not (it
    # would otherwise be silently ignored)
    for i, line in enumerate(rest[:brace].split("\n")):
        if re.match(r"^\s*(def|class|import|from|return|if|for|while|with|try|@)\b", line):
            raise AnswerError("define exactly one function, `f`, and nothing else before the JSON search space",
                              line=code_line + end_line + i + 1, col=1)
    return code, code_line, text[pos:], text.count("\n", 0, pos)


# --------------------------------------------------------------------------- search space

_KNOWN_KEYS = {"low", "high", "log", "init"}


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnswerError(f"{what} must be a number, got {json.dumps(value)}")
    if not math.isfinite(value):
        raise AnswerError(f"{what} must be finite, got {value}")
    return float(value)


def parse_space(text: str, *, line_offset: int = 0) -> tuple[dict[str, ParamRange], str]:
    """Parse the JSON search space; returns the ranges and the JSON text that was read.

    Accepted per parameter: ``{"low": a, "high": b}`` with optional ``"log": bool`` and
    ``"init": v`` (a warm start inside the range), or the short form ``[a, b]``.  The
    object may be wrapped as ``{"params": {...}}`` or ``{"space": {...}}``.
    """

    def no_duplicates(pairs):
        seen = {}
        for key, value in pairs:
            if key in seen:
                raise AnswerError(f"parameter {key!r} appears twice in the JSON search space")
            seen[key] = value
        return seen

    stripped = text.lstrip()
    skipped = text[: len(text) - len(stripped)].count("\n")
    try:
        obj, end = json.JSONDecoder(object_pairs_hook=no_duplicates).raw_decode(stripped)
    except json.JSONDecodeError as exc:
        raise AnswerError(f"the search space is not valid JSON: {exc.msg}",
                          line=line_offset + skipped + exc.lineno, col=exc.colno) from None
    trailing = stripped[end:].strip().strip("`").strip()
    if trailing:
        raise AnswerError(f"unexpected text after the JSON search space: {trailing[:40]!r}")
    if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in ("params", "space", "search_space"):
        obj = next(iter(obj.values()))
    if not isinstance(obj, dict):
        raise AnswerError("the search space must be a JSON object {\"name\": {\"low\": ..., \"high\": ...}}")
    space: dict[str, ParamRange] = {}
    for name, spec in obj.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise AnswerError(f"parameter name {name!r} is not an identifier")
        if isinstance(spec, list):
            if len(spec) != 2:
                raise AnswerError(f"range of {name!r} must be [low, high], got {len(spec)} numbers")
            spec = {"low": spec[0], "high": spec[1]}
        if not isinstance(spec, dict):
            raise AnswerError(f"range of {name!r} must be an object {{\"low\": ..., \"high\": ...}}")
        unknown = set(spec) - _KNOWN_KEYS
        if unknown:
            raise AnswerError(f"range of {name!r} has unknown key(s) {sorted(unknown)}; use low, high, log, init")
        if "low" not in spec or "high" not in spec:
            raise AnswerError(f"range of {name!r} needs both \"low\" and \"high\"")
        low = _number(spec["low"], f"{name}.low")
        high = _number(spec["high"], f"{name}.high")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise AnswerError(f"{name}.log must be true or false")
        init = _number(spec["init"], f"{name}.init") if spec.get("init") is not None else None
        if not low < high:
            raise AnswerError(f"range of {name!r} is empty: low {low} must be below high {high}")
        if log and low <= 0:
            raise AnswerError(f"range of {name!r} is log-scaled, so low must be > 0 (got {low})")
        if init is not None and not low <= init <= high:
            raise AnswerError(f"{name}.init {init} is outside [{low}, {high}]")
        space[name] = ParamRange(low, high, log, init)
    return space, stripped[:end]


# --------------------------------------------------------------------------- function body

_PREFIXES = ("", "np.", "numpy.", "math.")
_LN2, _LN10 = math.log(2.0), math.log(10.0)


def _unary(op):
    return lambda p, node, a: p.mk(op, a)


def _scaled_log(factor):
    return lambda p, node, a: p.mk("mul", p.mk("log", a), p.const(factor))


def _nested(op):
    def build(p, node, *args):
        out = args[0]
        for arg in args[1:]:
            out = p.mk(op, out, arg)
        return out
    return build


def _clip(p, node, v, lo, hi):
    return p.mk("min", p.mk("max", v, lo), hi)


def _expm1(p, node, v):
    return p.mk("sub", p.mk("exp", v), p.const(1.0))


# name -> (arity: int or (min, None) for variadic, builder(parser, node, *args))
_FUNCTIONS = {
    "log": (1, _unary("log")), "log1p": (1, _unary("log")),
    "log2": (1, _scaled_log(1.0 / _LN2)), "log10": (1, _scaled_log(1.0 / _LN10)),
    "sqrt": (1, _unary("sqrt")), "exp": (1, _unary("exp")), "expm1": (1, _expm1),
    "abs": (1, _unary("abs")), "fabs": (1, _unary("abs")), "absolute": (1, _unary("abs")),
    "tanh": (1, _unary("tanh")), "sigmoid": (1, _unary("sigmoid")), "expit": (1, _unary("sigmoid")),
    "sign": (1, _unary("sign")), "square": (1, _unary("square")), "cube": (1, _unary("cube")),
    "isnan": (1, _unary("isnan")),
    "min": ((2, None), _nested("min")), "max": ((2, None), _nested("max")),
    "minimum": (2, _nested("min")), "maximum": (2, _nested("max")),
    "fmin": (2, _nested("min")), "fmax": (2, _nested("max")),
    "clip": (3, _clip),
    "where": (3, lambda p, node, c, a, b: p.where(node, c, a, b)),
    # float(condition) is 1.0 or 0.0, as in Python
    "float": (1, lambda p, node, a: a if a.type == "num" else p.mk("where", a, p.const(1.0), p.const(0.0))),
    "pow": (2, lambda p, node, a, k: p.power(node, a, k)),
    "power": (2, lambda p, node, a, k: p.power(node, a, k)),
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "nan": math.nan, "inf": math.inf, "tau": math.tau}
_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div"}
_AUGOPS = _BINOPS
_CMPOPS = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.Eq: "eq", ast.NotEq: "ne"}
_NOT_ALLOWED = {
    ast.Import: "imports are not allowed (the functions need no import)",
    ast.ImportFrom: "imports are not allowed (the functions need no import)",
    ast.For: "loops are not allowed; write one closed-form expression",
    ast.While: "loops are not allowed; write one closed-form expression",
    ast.AsyncFor: "loops are not allowed",
    ast.With: "`with` is not allowed", ast.AsyncWith: "`with` is not allowed",
    ast.Try: "`try` is not allowed: the operators are total and never raise",
    ast.Raise: "`raise` is not allowed", ast.Assert: "`assert` is not allowed",
    ast.Delete: "`del` is not allowed", ast.Global: "`global` is not allowed",
    ast.Nonlocal: "`nonlocal` is not allowed",
    ast.FunctionDef: "nested functions are not allowed", ast.AsyncFunctionDef: "nested functions are not allowed",
    ast.ClassDef: "classes are not allowed",
    ast.Lambda: "lambdas are not allowed", ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed", ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "generator expressions are not allowed", ast.Await: "`await` is not allowed",
    ast.Yield: "`yield` is not allowed", ast.YieldFrom: "`yield` is not allowed",
    ast.List: "lists are not allowed", ast.Tuple: "tuples are not allowed", ast.Set: "sets are not allowed",
    ast.Dict: "dicts are not allowed", ast.JoinedStr: "strings are not allowed",
    ast.NamedExpr: "`:=` is not allowed", ast.Starred: "`*` unpacking is not allowed",
    ast.Slice: "slices are not allowed",
}


class _Undefined:
    """A local assigned on only one branch of an ``if``: an error if it is read later."""

    def __init__(self, name: str, line: int):
        self.name, self.line = name, line


class _FunctionParser:
    """Translate one whitelisted function body into an expression (locals inlined)."""

    def __init__(self, features: Collection[str] | None, line_offset: int):
        self.features = None if features is None else tuple(features)
        self.allowed = None if features is None else set(features)
        self.line_offset = line_offset
        self.sizes: dict[int, int] = {}
        self.keep: list[Expr] = []       # keeps ids in ``sizes`` from being reused
        self.paths = 0
        self.x_name = "x"
        self.params_name = "params"
        self.notes: list[str] = []       # harmless repairs, reported with the answer

    # -- errors and node construction

    def fail(self, node: ast.AST | None, reason: str):
        if node is not None and hasattr(node, "lineno"):
            raise AnswerError(reason, line=node.lineno + self.line_offset, col=node.col_offset + 1)
        raise AnswerError(reason)

    def size(self, e: Expr) -> int:
        return self.sizes.get(id(e), 1)

    def track(self, e: Expr, n: int) -> Expr:
        if n > MAX_INLINED_NODES:
            raise AnswerError(f"the expression grows past {MAX_INLINED_NODES} nodes once local variables "
                              "are inlined; write a smaller function")
        self.sizes[id(e)] = n
        self.keep.append(e)
        return e

    def mk(self, op: str, *args: Expr, node: ast.AST | None = None) -> Expr:
        try:
            if op == "where":
                e = Where(*args)
            elif len(args) == 1:
                e = Unary(op, args[0])
            else:
                e = Binary(op, *args)
        except IRTypeError as exc:
            self.fail(node, f"ill-typed {op}: {exc}")
        return self.track(e, 1 + sum(self.size(a) for a in args))

    def const(self, value: float) -> Expr:
        return Const(float(value))

    def num(self, e: Expr, node: ast.AST) -> Expr:
        if e.type != "num":
            self.fail(node, "a number is needed here, but this is a condition (True/False); "
                            "use `a if cond else b` to turn a condition into a number")
        return e

    def cond(self, e: Expr) -> Expr:
        # Python truthiness of a number: nonzero is true (NaN too, as with ne)
        return e if e.type == "bool" else self.mk("ne", e, self.const(0.0))

    def where(self, node: ast.AST, c: Expr, a: Expr, b: Expr) -> Expr:
        c = self.cond(c)
        if a.type == "num" and b.type == "num":
            return self.mk("where", c, a, b, node=node)
        if a.type == "bool" and b.type == "bool":
            return self.mk("or", self.mk("and", c, a), self.mk("and", self.mk("not", c), b))
        self.fail(node, "both branches must be numbers (or both conditions)")

    def power(self, node: ast.AST, base: Expr, k: Expr) -> Expr:
        base = self.num(base, node)
        if not isinstance(k, Const):
            self.fail(node, "the exponent must be a constant (2, 3, 4, 0.5, -0.5, -1 or -2); "
                            "for a tunable power write exp(params[\"k\"] * log(v))")
        one = self.const(1.0)
        table = {
            1.0: lambda: base, 2.0: lambda: self.mk("square", base), 3.0: lambda: self.mk("cube", base),
            4.0: lambda: self.mk("square", self.mk("square", base)), 0.5: lambda: self.mk("sqrt", base),
            -1.0: lambda: self.mk("div", one, base), -2.0: lambda: self.mk("div", one, self.mk("square", base)),
            -0.5: lambda: self.mk("div", one, self.mk("sqrt", base)),
        }
        if k.value not in table:
            self.fail(node, f"exponent {k.value:g} is not supported; use 2, 3, 4, 0.5, -0.5, -1 or -2")
        return table[k.value]()

    # -- the function

    def parse(self, tree: ast.Module) -> Expr:
        body = tree.body
        for stmt in body:
            if not isinstance(stmt, ast.FunctionDef):
                reason = _NOT_ALLOWED.get(type(stmt), f"only `def f(x, params):` may appear at top level, "
                                                      f"not {type(stmt).__name__}")
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
                    continue  # a stray string (prose the model added) is harmless
                self.fail(stmt, reason)
        defs = [s for s in body if isinstance(s, ast.FunctionDef)]
        if not defs:
            raise AnswerError("no function found: the answer must contain `def f(x, params):`")
        if len(defs) > 1:
            self.fail(defs[1], "define exactly one function, `f`")
        fn = defs[0]
        if fn.name != "f":
            self.fail(fn, f"the function must be called `f`, not `{fn.name}`")
        if fn.decorator_list:
            self.fail(fn.decorator_list[0], "decorators are not allowed")
        a = fn.args
        if a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs or a.defaults or len(a.args) != 2:
            self.fail(fn, "the signature must be exactly `def f(x, params):`")
        self.x_name, self.params_name = a.args[0].arg, a.args[1].arg
        if self.x_name == self.params_name:
            self.fail(fn, "the two arguments need different names")
        stmts = list(fn.body)
        if stmts and isinstance(stmts[0], ast.Expr) and isinstance(stmts[0].value, ast.Constant) \
                and isinstance(stmts[0].value.value, str):
            stmts = stmts[1:]  # docstring
        result = self.block(stmts, {}, fn)
        return self.num(result, fn)

    def contains_return(self, stmts) -> bool:
        return any(isinstance(n, ast.Return) for s in stmts for n in ast.walk(s))

    def block(self, stmts: list[ast.stmt], env: dict, owner: ast.AST) -> Expr:
        """Symbolically run ``stmts``; the value every path returns, as one expression."""
        env = dict(env)
        for i, stmt in enumerate(stmts):
            if isinstance(stmt, ast.Return):
                if stmt.value is None:
                    self.fail(stmt, "`return` needs a value")
                return self.expr(stmt.value, env)
            if isinstance(stmt, ast.If):
                c = self.cond(self.expr(stmt.test, env))
                rest = stmts[i + 1:]
                if self.contains_return(stmt.body) or self.contains_return(stmt.orelse):
                    # a branch leaves the function: the rest of the body runs on the other
                    # paths, so each branch gets its own copy of it
                    self.paths += 1
                    if self.paths > MAX_PATHS:
                        self.fail(stmt, f"more than {MAX_PATHS} if/else paths; simplify the control flow")
                    then = self.block(list(stmt.body) + rest, env, stmt)
                    other = self.block(list(stmt.orelse) + rest, env, stmt)
                    return self.where(stmt, c, then, other)
                self.merge(stmt, c, self.assignments(stmt.body, env), self.assignments(stmt.orelse, env), env)
                continue
            self.simple(stmt, env)
        self.fail(owner if isinstance(owner, ast.FunctionDef) else (stmts[-1] if stmts else owner),
                  "the function must end with `return <expression>` on every path")

    def merge(self, stmt: ast.If, c: Expr, then_env: dict, else_env: dict, env: dict) -> None:
        """Join the locals of an if/else's two branches into ``env``: ``where(c, then, else)``,
        or undefined when only one branch assigned the name."""
        for name in dict.fromkeys([*then_env, *else_env]):
            t, o = then_env.get(name), else_env.get(name)
            if t is o:
                env[name] = t
            elif t is None or o is None or isinstance(t, _Undefined) or isinstance(o, _Undefined):
                env[name] = _Undefined(name, stmt.lineno + self.line_offset)
            else:
                env[name] = self.where(stmt, c, t, o)

    def assignments(self, stmts: list[ast.stmt], env: dict) -> dict:
        """Run a branch without returns; the locals it leaves behind."""
        env = dict(env)
        for stmt in stmts:
            if isinstance(stmt, ast.If):
                c = self.cond(self.expr(stmt.test, env))
                self.merge(stmt, c, self.assignments(stmt.body, env), self.assignments(stmt.orelse, env), env)
            else:
                self.simple(stmt, env)
        return env

    def target(self, node: ast.AST) -> str:
        if not isinstance(node, ast.Name):
            self.fail(node, "only plain local names can be assigned (no subscripts, attributes or tuples)")
        name = node.id
        if name in (self.x_name, self.params_name):
            self.fail(node, f"`{name}` is an argument and cannot be assigned")
        if name in _FUNCTIONS or name in ("np", "numpy", "math"):
            self.fail(node, f"`{name}` is a built-in function; pick another variable name")
        if name.startswith("__"):
            self.fail(node, f"`{name}`: names starting with __ are not allowed")
        return name

    def simple(self, stmt: ast.stmt, env: dict) -> None:
        if isinstance(stmt, ast.Assign):
            if len(stmt.targets) != 1:
                self.fail(stmt, "assign one name at a time")
            env[self.target(stmt.targets[0])] = self.expr(stmt.value, env)
        elif isinstance(stmt, ast.AnnAssign):
            if stmt.value is None:
                self.fail(stmt, "a declaration needs a value")
            env[self.target(stmt.target)] = self.expr(stmt.value, env)
        elif isinstance(stmt, ast.AugAssign):
            name = self.target(stmt.target)
            op = _AUGOPS.get(type(stmt.op))
            if op is None:
                self.fail(stmt, f"operator {type(stmt.op).__name__} is not allowed")
            old = self.lookup(stmt.target, name, env)
            env[name] = self.mk(op, self.num(old, stmt), self.num(self.expr(stmt.value, env), stmt.value), node=stmt)
        elif isinstance(stmt, ast.Pass):
            pass
        elif isinstance(stmt, ast.Expr):
            if isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
                return  # a string statement is a comment
            if isinstance(stmt.value, ast.Call):
                self.expr(stmt.value, env)  # reject the call with its own reason first
            self.fail(stmt, "an expression on its own line does nothing; assign it or return it")
        else:
            self.fail(stmt, _NOT_ALLOWED.get(type(stmt), f"`{type(stmt).__name__}` statements are not allowed"))

    def lookup(self, node: ast.AST, name: str, env: dict) -> Expr:
        if name in env:
            value = env[name]
            if isinstance(value, _Undefined):
                self.fail(node, f"`{name}` is assigned on only one branch of the if at line {value.line}; "
                                "assign it on both branches (or before the if)")
            return value
        if name in _CONSTANTS:
            return self.const(_CONSTANTS[name])
        if name in (self.x_name, self.params_name):
            self.fail(node, f"use `{name}[\"name\"]` to read one value; `{name}` itself is not a number")
        if name in _FUNCTIONS:
            self.fail(node, f"`{name}` is a function; call it")
        if name in ("True", "False", "None"):
            self.fail(node, f"`{name}` is not allowed; write a comparison or a number")
        if self.allowed is not None and name in self.allowed:
            # small models write a feature's bare name (``isnan(age)``); when it is a declared
            # feature and no local variable, reading it is the only meaning it can have
            note = f"bare name `{name}` read as x[\"{name}\"]"
            if note not in self.notes:
                self.notes.append(note)
            return Feature(name)
        self.fail(node, f"unknown name `{name}`: assign it first, or read x[\"...\"] / params[\"...\"]")

    # -- expressions

    def expr(self, node: ast.AST, env: dict) -> Expr:
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or v is None:
                self.fail(node, f"`{v}` is not allowed; write a comparison or a number")
            if isinstance(v, (int, float)):
                return self.const(float(v))
            if isinstance(v, str):
                self.fail(node, "strings are only allowed as keys: x[\"feature\"] or params[\"name\"]")
            self.fail(node, f"constant {v!r} is not allowed")
        if isinstance(node, ast.Name):
            return self.lookup(node, node.id, env)
        if isinstance(node, ast.Subscript):
            return self.subscript(node)
        if isinstance(node, ast.UnaryOp):
            x = self.expr(node.operand, env)
            if isinstance(node.op, ast.USub):
                x = self.num(x, node.operand)
                return self.const(-x.value) if isinstance(x, Const) else self.mk("neg", x)
            if isinstance(node.op, ast.UAdd):
                return self.num(x, node.operand)
            if isinstance(node.op, ast.Not):
                return self.mk("not", self.cond(x))
            self.fail(node, "`~` is not allowed")
        if isinstance(node, ast.BinOp):
            a = self.num(self.expr(node.left, env), node.left)
            b = self.num(self.expr(node.right, env), node.right)
            if isinstance(node.op, ast.Pow):
                return self.power(node, a, b)
            op = _BINOPS.get(type(node.op))
            if op is None:
                symbol = {ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.BitAnd: "&", ast.BitOr: "|",
                          ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>"}.get(type(node.op), "?")
                hint = " (use `and`/`or` for conditions)" if symbol in ("&", "|") else ""
                self.fail(node, f"operator `{symbol}` is not allowed{hint}; use + - * / ** and the listed functions")
            return self.mk(op, a, b, node=node)
        if isinstance(node, ast.BoolOp):
            op = "and" if isinstance(node.op, ast.And) else "or"
            values = [self.cond(self.expr(v, env)) for v in node.values]
            out = values[0]
            for v in values[1:]:
                out = self.mk(op, out, v)
            return out
        if isinstance(node, ast.Compare):
            left = self.num(self.expr(node.left, env), node.left)
            out = None
            for op_node, right_node in zip(node.ops, node.comparators):
                op = _CMPOPS.get(type(op_node))
                if op is None:
                    self.fail(node, f"comparison `{type(op_node).__name__}` is not allowed; use < <= > >= == !=")
                right = self.num(self.expr(right_node, env), right_node)
                term = self.mk(op, left, right)
                out = term if out is None else self.mk("and", out, term)
                left = right
            return out
        if isinstance(node, ast.IfExp):
            c = self.expr(node.test, env)
            return self.where(node, c, self.expr(node.body, env), self.expr(node.orelse, env))
        if isinstance(node, ast.Call):
            return self.call(node, env)
        if isinstance(node, ast.Attribute):
            name = self.dotted(node)
            if name is not None and name.split(".")[-1] in _CONSTANTS:
                return self.const(_CONSTANTS[name.split(".")[-1]])
            self.fail(node, f"attribute access `.{node.attr}` is not allowed; only the listed functions "
                            "(e.g. np.log, math.sqrt) and constants (np.pi) may be used")
        self.fail(node, _NOT_ALLOWED.get(type(node), f"`{type(node).__name__}` is not allowed in an expression"))

    def dotted(self, node: ast.AST) -> str | None:
        """``np.log`` → ``"np.log"`` when the prefix is a known module alias, else ``None``."""
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            prefix = node.value.id + "."
            if prefix in _PREFIXES:
                return prefix + node.attr
        return None

    def key(self, node: ast.Subscript, what: str) -> str:
        k = node.slice
        if not (isinstance(k, ast.Constant) and isinstance(k.value, str)):
            self.fail(node, f"{what}[...] needs a string literal key, e.g. {what}[\"name\"]")
        return k.value

    def subscript(self, node: ast.Subscript) -> Expr:
        base = node.value
        if isinstance(base, ast.Name) and base.id == self.x_name:
            name = self.key(node, self.x_name)
            if self.allowed is not None and name not in self.allowed:
                close = difflib.get_close_matches(name, self.features, n=3)
                hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                self.fail(node, f"unknown feature {name!r}{hint}")
            return Feature(name)
        if isinstance(base, ast.Name) and base.id == self.params_name:
            name = self.key(node, self.params_name)
            try:
                return Param(name)
            except IRTypeError:
                self.fail(node, f"parameter name {name!r} must be an identifier")
        self.fail(node, f"only {self.x_name}[\"feature\"] and {self.params_name}[\"name\"] may be subscripted")

    def call(self, node: ast.Call, env: dict) -> Expr:
        name = self.dotted(node.func)
        if name is None:
            if isinstance(node.func, ast.Attribute):
                self.fail(node.func, f"calling `.{node.func.attr}(...)` is not allowed; only the listed functions "
                                     "(log, sqrt, exp, abs, tanh, min, max, ...) may be called")
            self.fail(node.func, _NOT_ALLOWED.get(type(node.func), "only the listed functions may be called"))
        short = name.split(".", 1)[1] if "." in name else name
        prefix = name[: len(name) - len(short)]
        if prefix == "" and name in env:
            self.fail(node.func, f"`{name}` is a local variable, not a function")
        spec = _FUNCTIONS.get(short)
        if spec is None:
            known = "log, sqrt, exp, abs, tanh, sigmoid, sign, square, cube, min, max, clip, where, isnan"
            self.fail(node.func, f"function `{name}` is not allowed; use only: {known}")
        if node.keywords:
            self.fail(node, f"keyword arguments are not allowed in `{name}(...)`")
        arity, build = spec
        n = len(node.args)
        if isinstance(arity, tuple):
            if n < arity[0]:
                self.fail(node, f"`{name}` needs at least {arity[0]} arguments, got {n}")
        elif n != arity:
            self.fail(node, f"`{name}` takes {arity} argument(s), got {n}")
        args = [self.expr(a, env) for a in node.args]
        if short == "where":
            return build(self, node, *args)
        if short != "float":
            # every numeric function takes numbers; only where's first argument is a condition
            args = [self.num(a, src) for a, src in zip(args, node.args)]
        return build(self, node, *args)


def parse_function(code: str, *, features: Collection[str] | None = None, line_offset: int = 0) -> Expr:
    """Parse the source of ``def f(x, params): ...`` into an expression.

    A bare name that is no local variable but a declared feature reads that feature
    (:func:`parse_answer` lists the repair in its ``notes``).

    Parameters
    ----------
    code : the function's source text.
    features : feature names ``x["..."]`` may read (``None``: any).
    line_offset : lines before ``code`` in the whole answer, so errors point at the answer.

    Raises
    ------
    AnswerError
        The first construct outside the whitelist, with its line and column.
    """
    return _parse_function_notes(code, features=features, line_offset=line_offset)[0]


def _parse_function_notes(code: str, *, features: Collection[str] | None,
                          line_offset: int) -> tuple[Expr, list[str]]:
    """:func:`parse_function`, plus the repairs it made."""
    if len(code) > MAX_SOURCE_CHARS:
        raise AnswerError(f"the function is {len(code)} characters long; the limit is {MAX_SOURCE_CHARS}")
    try:
        tree = ast.parse(code, mode="exec")
    except SyntaxError as exc:
        raise AnswerError(f"Python syntax error: {exc.msg}", line=(exc.lineno or 1) + line_offset,
                          col=exc.offset or 1) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise AnswerError(f"the function cannot be parsed: {type(exc).__name__}") from None
    parser = _FunctionParser(features, line_offset)
    try:
        return parser.parse(tree), parser.notes
    except RecursionError:
        raise AnswerError("the expression is nested too deeply") from None


_INTENT = re.compile(r"#\s*intent\s*:\s*(.+)$", re.I | re.M)


def _intent(code: str) -> str:
    m = _INTENT.search(code)
    if m:
        return m.group(1).strip()
    try:
        fn = next(n for n in ast.parse(code).body if isinstance(n, ast.FunctionDef))
        doc = ast.get_docstring(fn)
    except Exception:  # noqa: BLE001 - the intent is decoration only
        doc = None
    if doc:
        return doc.strip().splitlines()[0]
    m = re.search(r"^\s*#\s*(.+)$", code, re.M)
    return m.group(1).strip() if m else ""


@dataclass(frozen=True)
class RangeInference:
    """What is known to fill a range the answer forgot (see :func:`infer_range`).

    ``feature_ranges``: feature -> (min, max) of its values in the region;
    ``scale``: half-width of a correction weight's range (margin units).
    """

    feature_ranges: Mapping[str, tuple[float, float]]
    scale: float = 3.0


_LOCATION_OPS = frozenset({"lt", "le", "gt", "ge", "eq", "ne", "sub"})


def infer_range(expr: Expr, name: str, hints: RangeInference) -> tuple[ParamRange, str] | None:
    """A range for parameter ``name`` from how ``expr`` uses it, with the reason.

    A parameter compared with a feature, or subtracted from one (``x["f"] > p``,
    ``x["f"] - p``), is a location on that feature: its range is the feature's range in
    the region.  A parameter used in no such place is a weight or an offset of the
    correction: ``[-scale, scale]`` starting at 0.  A location on a feature whose range
    is unknown (or a single value) gets no range: ``None``, and the answer is refused.
    """
    located: set[str] = set()
    for node in expr.walk():
        if isinstance(node, Binary) and node.op in _LOCATION_OPS:
            pair = {type(node.a): node.a, type(node.b): node.b}
            p, f = pair.get(Param), pair.get(Feature)
            if p is not None and f is not None and p.name == name:
                located.add(f.name)
    if located:
        lows, highs = [], []
        for f in sorted(located):
            lo, hi = hints.feature_ranges.get(f, (math.nan, math.nan))
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                return None
            lows.append(lo)
            highs.append(hi)
        low, high = min(lows), max(highs)
        return (ParamRange(low, high, init=(low + high) / 2),
                f"parameter {name!r} had no range; a location on {', '.join(sorted(located))}: "
                f"its range in the region [{low:g}, {high:g}]")
    s = float(hints.scale)
    return ParamRange(-s, s, init=0.0), f"parameter {name!r} had no range; a weight: [{-s:g}, {s:g}] from 0"


def parse_answer(
    text: str,
    *,
    features: Collection[str] | None = None,
    frozen: Mapping[str, float] | Collection[str] = (),
    limits: Limits | None = Limits(),
    default_range: ParamRange | None = None,
    infer: RangeInference | None = None,
) -> ParsedAnswer:
    """Parse a whole answer (function + JSON space) and check it is usable.

    Parameters
    ----------
    text : the LLM's answer.
    features : feature names the function may read (``None``: any).
    frozen : names of parameters that already have a value (the current expert's);
        they may be used without a range.
    limits : size caps passed to :func:`fecc.ir.validate`.
    default_range : when given, a parameter used without a range gets this one (listed
        in ``notes``) instead of rejecting the answer — small models often forget one.
    infer : when given, a parameter used without a range first gets one inferred from
        its use (:func:`infer_range`; listed in ``notes``); ``default_range`` covers the rest.

    Returns
    -------
    ParsedAnswer
        Ranges for parameters the expression does not use are dropped (listed in ``notes``).

    Raises
    ------
    AnswerError
        With a reason suitable as feedback to the LLM.
    """
    code, code_line, space_text, space_line = split_answer(text)
    expr, repairs = _parse_function_notes(code, features=features, line_offset=code_line)
    space, space_text = parse_space(space_text, line_offset=space_line)
    from ..ir import params_of

    used = params_of(expr)
    frozen_names = set(frozen)
    missing = [p for p in used if p not in space and p not in frozen_names]
    filled: tuple[str, ...] = ()
    if missing and infer is not None:
        still = []
        for p in missing:
            got = infer_range(expr, p, infer)
            if got is None:
                still.append(p)
            else:
                space = {**space, p: got[0]}
                filled += (got[1],)
        missing = still
    if missing and default_range is not None:
        space = {**space, **{p: default_range for p in missing}}
        filled += tuple(f"parameter {p!r} had no range; given the default "
                       f"[{default_range.low:g}, {default_range.high:g}]" for p in missing)
        missing = []
    if missing:
        frozen_hint = (f"; the frozen parameters you may reuse without a range are "
                       f"{', '.join(sorted(frozen_names))}" if frozen_names else "")
        raise AnswerError("parameter(s) used but without a range in the JSON search space: "
                          + ", ".join(repr(p) for p in missing) + frozen_hint)
    notes = tuple(repairs) + filled + tuple(f"range for unused parameter {p!r} dropped" for p in space
                                            if p not in used)
    space = {p: r for p, r in space.items() if p in used}
    try:
        validate(expr, features=features, params=set(space) | frozen_names, limits=limits)
    except IRValidationError as exc:
        raise AnswerError("the function is not acceptable: " + "; ".join(exc.problems)) from None
    return ParsedAnswer(expr=expr, space=space, intent=_intent(code), code=code, space_text=space_text, notes=notes)
