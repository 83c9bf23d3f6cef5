"""The whitelisted Python subset of an LLM answer's function, parsed into the IR.

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
import math
import re
from typing import Collection

from ..ir import Binary, Const, Expr, Feature, Param, Unary, Where
from ..ir.nodes import IRTypeError
from .answer_text import IMPORT_NOT_ALLOWED, MAX_SOURCE_CHARS, AnswerError

#: Cap on the tree size while inlining locals (``b = a + a; c = b + b; ...`` doubles each line).
MAX_INLINED_NODES = 2_000
#: Cap on the number of return paths an ``if`` ladder may create.
MAX_PATHS = 64


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
    ast.Import: IMPORT_NOT_ALLOWED,
    ast.ImportFrom: IMPORT_NOT_ALLOWED,
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
    return parse_function_notes(code, features=features, line_offset=line_offset)[0]


def parse_function_notes(code: str, *, features: Collection[str] | None,
                          line_offset: int) -> tuple[Expr, list[str]]:
    """:func:`parse_function`, plus the repairs it made (notes for :class:`~fecc.llm.answer.ParsedAnswer`)."""
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


def intent_of(code: str) -> str:
    """What the answer says its function does: the ``# intent:`` comment, else the
    docstring's first line, else the first comment (decoration only, never parsed)."""
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
