"""The llama.cpp GBNF grammar for the Python subset that :mod:`fecc.llm.answer` accepts.

Grammar-constrained decoding is what makes small local models usable (DESIGN.md,
"LLMs": 0/10 valid answers with a plain prompt, 6–10/10 with a grammar).  The grammar
is generated, never written by hand, from two sources of truth:

* the IR operator table :data:`fecc.ir.ops.OPS` — every operator gets its Python
  spelling (a function ``log(v)``, an infix ``+``, a comparison ``<=``, ``a if c else b``);
  an operator the generator cannot spell is an error, so a new IR operator cannot be
  forgotten here;
* the allowed feature names — ``x["..."]`` can only spell a known feature.

Depth and length are capped *by construction*: expressions are layered (level ``k``
may only nest level ``k - 1`` inside parentheses and calls), chains and statement lists
use bounded repetition ``{m,n}``, and ``if`` blocks nest a fixed number of levels,
each with its own indentation rule.

The grammar is kept as data (:class:`Grammar`) so that the same object prints as GBNF
and generates random strings for the tests (every such string must parse into IR).

The answer it describes::

    def f(x, params):
        # intent: <one line>
        <statements: assignments and if/elif/else blocks>
        return <expression>
    {"name": {"low": <number>, "high": <number>}, ...}
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Collection, Mapping, Sequence

from ..ir import OPS, Op

# --------------------------------------------------------------------------- grammar as data


@dataclass(frozen=True)
class Lit:
    """A literal string."""

    text: str


@dataclass(frozen=True)
class Ref:
    """A reference to another rule."""

    name: str


@dataclass(frozen=True)
class Chars:
    """One character from a class: ``gbnf`` is its GBNF spelling, ``alphabet`` what the sampler draws."""

    gbnf: str
    alphabet: str


@dataclass(frozen=True)
class Rep:
    """``item`` repeated ``low`` to ``high`` times."""

    item: "Lit | Ref | Chars"
    low: int
    high: int


Element = Lit | Ref | Chars | Rep
Alternative = tuple[Element, ...]


def _gbnf_literal(text: str) -> str:
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


class Grammar:
    """A context-free grammar: ordered rules, each a tuple of alternatives; ``root`` is the start."""

    def __init__(self, rules: Mapping[str, Sequence[Alternative]]):
        self.rules: dict[str, tuple[Alternative, ...]] = {k: tuple(tuple(a) for a in v) for k, v in rules.items()}
        missing = {e.name for alts in self.rules.values() for alt in alts for e in self._refs(alt)} - set(self.rules)
        if missing:
            raise ValueError(f"grammar refers to undefined rule(s): {sorted(missing)}")
        if "root" not in self.rules:
            raise ValueError("grammar has no root rule")
        self._min = self._min_lengths()

    @staticmethod
    def _refs(alt: Alternative):
        for e in alt:
            item = e.item if isinstance(e, Rep) else e
            if isinstance(item, Ref):
                yield item

    def to_gbnf(self) -> str:
        """The grammar in llama.cpp's GBNF syntax."""

        def elem(e: Element) -> str:
            if isinstance(e, Lit):
                return _gbnf_literal(e.text)
            if isinstance(e, Ref):
                return e.name
            if isinstance(e, Chars):
                return e.gbnf
            inner = elem(e.item)
            if (e.low, e.high) == (0, 1):
                return inner + "?"
            return f"{inner}{{{e.low},{e.high}}}"

        lines = []
        for name, alts in self.rules.items():
            body = " | ".join(" ".join(elem(e) for e in alt) if alt else '""' for alt in alts)
            lines.append(f"{name} ::= {body}")
        return "\n".join(lines) + "\n"

    def _min_lengths(self) -> dict[str, int]:
        """Shortest expansion (in elements) of each rule: the sampler's way out when its budget is spent."""
        inf = 10 ** 9
        best = {name: inf for name in self.rules}

        def cost(e: Element) -> int:
            if isinstance(e, Rep):
                return 0 if e.low == 0 else e.low * cost(e.item)
            if isinstance(e, Ref):
                return best[e.name]
            return 1

        changed = True
        while changed:
            changed = False
            for name, alts in self.rules.items():
                c = min(min(sum(cost(e) for e in alt), inf) for alt in alts)
                if c < best[name]:
                    best[name], changed = c, True
        unreachable = [n for n, c in best.items() if c >= inf]
        if unreachable:
            raise ValueError(f"rule(s) that never terminate: {unreachable}")
        return best

    def accepts(self, text: str) -> bool:
        """Whether ``text`` is a string of the language (a memoized recognizer, for tests and checks)."""
        import functools

        def char_ok(e: Chars, ch: str) -> bool:
            if e.gbnf.startswith("[^"):
                return ch not in e.gbnf[2:-1].replace("\\n", "\n")
            return ch in e.alphabet

        @functools.lru_cache(maxsize=None)
        def rule_ends(name: str, pos: int) -> frozenset[int]:
            ends: set[int] = set()
            for alt in self.rules[name]:
                ends |= seq_ends(alt, 0, pos)
            return frozenset(ends)

        def elem_ends(e: Element, pos: int) -> set[int]:
            if isinstance(e, Lit):
                return {pos + len(e.text)} if text.startswith(e.text, pos) else set()
            if isinstance(e, Chars):
                return {pos + 1} if pos < len(text) and char_ok(e, text[pos]) else set()
            if isinstance(e, Ref):
                return set(rule_ends(e.name, pos))
            current, out = {pos}, set()
            for i in range(e.high + 1):
                if i >= e.low:
                    out |= current
                if i == e.high or not current:
                    break
                current = {q for p in current for q in elem_ends(e.item, p)}
            return out

        def seq_ends(alt: Alternative, i: int, pos: int) -> set[int]:
            if i == len(alt):
                return {pos}
            return {q for p in elem_ends(alt[i], pos) for q in seq_ends(alt, i + 1, p)}

        return len(text) in rule_ends("root", 0)

    def sample(self, rng: random.Random, *, budget: int = 200) -> str:
        """A random string of the language (for tests); ``budget`` caps recursive choices."""
        out: list[str] = []
        fuel = [budget]

        def alt_cost(alt: Alternative) -> int:
            return sum(0 if isinstance(e, Rep) and e.low == 0 else
                       (self._min[e.name] if isinstance(e, Ref) else 1) for e in alt)

        def emit(e: Element) -> None:
            if isinstance(e, Lit):
                out.append(e.text)
            elif isinstance(e, Chars):
                out.append(rng.choice(e.alphabet))
            elif isinstance(e, Ref):
                alts = self.rules[e.name]
                fuel[0] -= 1
                if fuel[0] > 0:
                    alt = rng.choice(alts)
                else:
                    alt = min(alts, key=alt_cost)
                for x in alt:
                    emit(x)
            else:
                n = rng.randint(e.low, e.high) if fuel[0] > 0 else e.low
                for _ in range(n):
                    emit(e.item)

        emit(Ref("root"))
        return "".join(out)


# --------------------------------------------------------------------------- Python spellings of IR ops


@dataclass(frozen=True)
class Spelling:
    """How an IR operator is written in the answer's Python."""

    kind: str      # "function", "bool_function", "infix", "compare", "logic", "not", "neg", "where"
    text: str      # function name or operator symbol


def spell(op: Op) -> Spelling:
    """The Python spelling of ``op``, derived from its signature and printed form.

    Raises
    ------
    ValueError
        For an operator nobody decided how to spell yet (a new entry in the op table).
    """
    num, boolean = "num", "bool"
    if op.name == "neg":
        return Spelling("neg", "-")
    if op.name == "not":
        return Spelling("not", "not")
    if op.name == "where":
        return Spelling("where", "if")
    if op.arity == 1 and op.args == (num,) and op.prec == 100:
        return Spelling("function" if op.result == num else "bool_function", op.name)
    if op.arity == 1 and op.args == (num,) and op.name in ("square", "cube"):
        return Spelling("function", op.name)  # printed as ^2/^3; Python spells them as calls
    if op.arity == 2 and op.args == (num, num) and op.result == num:
        if op.prec == 100:
            return Spelling("function", op.name)
        symbol = op.math.replace("{0}", "").replace("{1}", "").strip()
        if symbol in ("+", "-", "*", "/"):
            return Spelling("infix", symbol)
    if op.arity == 2 and op.args == (num, num) and op.result == boolean:
        symbol = op.math.replace("{0}", "").replace("{1}", "").strip()
        if symbol in ("<", "<=", ">", ">=", "==", "!="):
            return Spelling("compare", symbol)
    if op.arity == 2 and op.args == (boolean, boolean) and op.name in ("and", "or"):
        return Spelling("logic", op.name)
    raise ValueError(f"IR operator {op.name!r} has no Python spelling in the grammar; "
                     "add one to fecc.llm.grammar_gbnf.spell and fecc.llm.python_subset")


# --------------------------------------------------------------------------- the answer grammar


@dataclass(frozen=True)
class GrammarLimits:
    """Caps the grammar enforces while the model writes (the parser checks :class:`fecc.ir.Limits` after)."""

    levels: int = 3            # nesting levels of parentheses / calls / conditional expressions
    terms: int = 3             # operands in one + / - chain
    factors: int = 3           # operands in one * / / chain
    statements: int = 5        # statements before the final return
    block_statements: int = 3  # statements in one if/elif/else block
    if_depth: int = 2          # nested if blocks
    elifs: int = 1
    conditions: int = 2        # comparisons joined by and/or
    params: int = 8            # entries in the JSON search space
    name_chars: int = 16       # longest local or parameter name
    digits: int = 6            # digits before and after the decimal point
    intent_chars: int = 120


_LOWER = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"
_NAME_TAIL = _LOWER + _DIGITS + "_"
_TEXT = _LOWER + _LOWER.upper() + _DIGITS + " ,.;:()+-*/<>=_'%"
#: Python keywords: the grammar cannot exclude them from names; the parser reports them.
PY_KEYWORDS = frozenset({
    "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del", "elif", "else",
    "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal", "not",
    "or", "pass", "raise", "return", "try", "while", "with", "yield",
})


def python_string(name: str) -> str:
    """A Python string literal for ``name`` (JSON's escaping is valid Python)."""
    return json.dumps(name, ensure_ascii=False)


def build_grammar(
    features: Collection[str],
    *,
    ops: Collection[str] | None = None,
    limits: GrammarLimits = GrammarLimits(),
    locals_: bool = True,
) -> Grammar:
    """Build the answer grammar.

    Parameters
    ----------
    features : the feature names ``x["..."]`` may spell (at least one).
    ops : IR operator names to offer (default: all of :data:`~fecc.ir.ops.OPS`).
        Arithmetic ``+ - * /``, comparisons and ``and`` are always needed by the layout.
    limits : size caps.
    locals_ : allow local variables (assignments and references).  Without them every
        string of the language parses into IR (used by the tests).
    """
    features = list(dict.fromkeys(features))
    if not features:
        raise ValueError("the grammar needs at least one feature name")
    chosen = [OPS[n] for n in (ops if ops is not None else OPS)]
    spellings = {op.name: spell(op) for op in chosen}
    by_kind: dict[str, list[str]] = {}
    for s in spellings.values():
        by_kind.setdefault(s.kind, []).append(s.text)
    L = limits
    rules: dict[str, list[Alternative]] = {}

    def alts(*options: Sequence[Element]) -> list[Alternative]:
        return [tuple(o) for o in options]

    name_chars = Rep(Chars("[a-z0-9_]", _NAME_TAIL), 0, L.name_chars - 1)
    rules["root"] = alts([Lit("def f(x, params):\n"), Ref("intent"), Ref("body"), Ref("space")])
    rules["intent"] = alts([Lit("    # intent: "), Rep(Chars('[^\\n]', _TEXT), 1, L.intent_chars), Lit("\n")])

    # -- leaves
    rules["feature"] = alts(*[[Lit(f"x[{python_string(f)}]")] for f in features])
    rules["pname"] = alts([Chars("[a-z]", _LOWER), name_chars])
    rules["param"] = alts([Lit('params["'), Ref("pname"), Lit('"]')])
    digits = Rep(Chars("[0-9]", _DIGITS), 0, L.digits - 1)
    # no leading zeros: Python rejects ``0123``
    rules["number"] = alts([Lit("0"), Rep(Ref("fraction"), 0, 1)],
                           [Chars("[1-9]", "123456789"), digits, Rep(Ref("fraction"), 0, 1)])
    rules["pow"] = alts(*[[Lit(f" ** {k}")] for k in ("2", "3", "0.5")])
    rules["fraction"] = alts([Lit("."), Chars("[0-9]", _DIGITS), digits])
    leaf = [[Ref("feature")], [Ref("param")], [Ref("number")]]
    if locals_:
        # at least two characters: keeps the model off `x` and `e` (the argument and a constant)
        rules["var"] = alts([Chars("[a-z]", _LOWER), Chars("[a-z0-9_]", _NAME_TAIL),
                             Rep(Chars("[a-z0-9_]", _NAME_TAIL), 0, L.name_chars - 2)])
        leaf.append([Ref("var")])
    rules["leaf"] = alts(*leaf)

    # -- layered expressions: e{k} may only nest e{k-1}
    add_ops = [s for s in by_kind.get("infix", []) if s in "+-"]
    mul_ops = [s for s in by_kind.get("infix", []) if s in "*/"]
    functions = sorted(n for n, s in spellings.items() if s.kind == "function")
    unary_fns = [n for n in functions if OPS[n].arity == 1]
    binary_fns = [n for n in functions if OPS[n].arity == 2]
    bool_fns = sorted(n for n, s in spellings.items() if s.kind == "bool_function")
    compares = by_kind.get("compare", [])
    logic = by_kind.get("logic", [])
    rules["addop"] = alts(*[[Lit(f" {s} ")] for s in add_ops])
    rules["mulop"] = alts(*[[Lit(f" {s} ")] for s in mul_ops])
    rules["cmpop"] = alts(*[[Lit(f" {s} ")] for s in compares])
    if unary_fns:
        rules["fn1"] = alts(*[[Lit(f"{n}(")] for n in unary_fns])
    if binary_fns:
        rules["fn2"] = alts(*[[Lit(f"{n}(")] for n in binary_fns])
    if logic:
        rules["logic"] = alts(*[[Lit(f" {s} ")] for s in logic])
    for k in range(L.levels + 1):
        atom: list[list[Element]] = [[Ref("leaf")]]
        if k > 0:
            inner = Ref(f"e{k - 1}")
            atom.append([Lit("("), inner, Lit(")")])
            if unary_fns:
                atom.append([Ref("fn1"), inner, Lit(")")])
            if binary_fns:
                atom.append([Ref("fn2"), inner, Lit(", "), inner, Lit(")")])
            if "where" in spellings:
                atom.append([Lit("("), inner, Lit(" if "), Ref(f"c{k - 1}"), Lit(" else "), inner, Lit(")")])
        rules[f"a{k}"] = alts(*atom)
        power = [Rep(Ref("pow"), 0, 1)]
        rules[f"u{k}"] = alts([Lit("-"), Ref(f"a{k}"), *power], [Ref(f"a{k}"), *power]) \
            if "neg" in spellings else alts([Ref(f"a{k}"), *power])
        rules[f"t{k}"] = alts([Ref(f"u{k}"), Rep(Ref(f"mt{k}"), 0, L.factors - 1)]) if mul_ops \
            else alts([Ref(f"u{k}")])
        if mul_ops:
            rules[f"mt{k}"] = alts([Ref("mulop"), Ref(f"u{k}")])
        rules[f"e{k}"] = alts([Ref(f"t{k}"), Rep(Ref(f"at{k}"), 0, L.terms - 1)]) if add_ops \
            else alts([Ref(f"t{k}")])
        if add_ops:
            rules[f"at{k}"] = alts([Ref("addop"), Ref(f"t{k}")])
        # conditions over level-k operands
        cmp: list[list[Element]] = []
        if compares:
            cmp.append([Ref(f"e{k}"), Ref("cmpop"), Ref(f"e{k}")])
        cmp.extend([[Lit(f"{n}("), Ref(f"e{k}"), Lit(")")] for n in bool_fns])
        if not cmp:
            raise ValueError("the grammar needs at least one comparison or predicate operator")
        if "not" in spellings:
            rules[f"cmp{k}"] = alts(*cmp, [Lit("not "), Ref(f"cmpb{k}")])
            rules[f"cmpb{k}"] = alts(*cmp)
        else:
            rules[f"cmp{k}"] = alts(*cmp)
        if logic:
            rules[f"c{k}"] = alts([Ref(f"cmp{k}"), Rep(Ref(f"lc{k}"), 0, L.conditions - 1)])
            rules[f"lc{k}"] = alts([Ref("logic"), Ref(f"cmp{k}")])
        else:
            rules[f"c{k}"] = alts([Ref(f"cmp{k}")])
    top, cond_level = f"e{L.levels}", f"c{max(L.levels - 1, 0)}"

    # -- statements, one rule set per indentation level
    def block(depth: int) -> str:
        """Rules for a statement list at indentation ``depth`` (1 = the function body)."""
        indent = "    " * depth
        stmt: list[list[Element]] = []
        if locals_:
            stmt.append([Lit(indent), Ref("var"), Lit(" = "), Ref(top), Lit("\n")])
        if depth <= L.if_depth:
            inner = block(depth + 1)
            rules[f"if{depth}"] = alts([
                Lit(f"{indent}if "), Ref(cond_level), Lit(":\n"), Ref(inner),
                Rep(Ref(f"elif{depth}"), 0, L.elifs), Rep(Ref(f"else{depth}"), 0, 1)])
            rules[f"elif{depth}"] = alts([Lit(f"{indent}elif "), Ref(cond_level), Lit(":\n"), Ref(inner)])
            rules[f"else{depth}"] = alts([Lit(f"{indent}else:\n"), Ref(inner)])
            stmt.append([Ref(f"if{depth}")])
        ret = [Lit(f"{indent}return "), Ref(top), Lit("\n")]
        rules[f"ret{depth}"] = alts(ret)
        if stmt:
            rules[f"stmt{depth}"] = alts(*stmt)
        name = f"block{depth}"
        if depth == 1:
            # the function body: statements, then the one final return
            rules[name] = alts([Rep(Ref("stmt1"), 0, L.statements), Ref("ret1")] if stmt else [Ref("ret1")])
        elif stmt:
            # an if block: a return alone, or statements optionally followed by a return
            rules[name] = alts([Ref(f"ret{depth}")],
                               [Rep(Ref(f"stmt{depth}"), 1, L.block_statements), Rep(Ref(f"ret{depth}"), 0, 1)])
        else:
            rules[name] = alts([Ref(f"ret{depth}")])
        return name

    rules["body"] = alts([Ref(block(1))])

    # -- the JSON search space
    jdigits = Rep(Chars("[0-9]", _DIGITS), 0, L.digits - 1)
    rules["jnum"] = alts([Rep(Lit("-"), 0, 1), Ref("jint"), Rep(Ref("jfrac"), 0, 1), Rep(Ref("jexp"), 0, 1)])
    rules["jint"] = alts([Lit("0")], [Chars("[1-9]", "123456789"), jdigits])
    rules["jfrac"] = alts([Lit("."), Chars("[0-9]", _DIGITS), jdigits])
    rules["jexp"] = alts([Chars("[eE]", "eE"), Rep(Chars("[-+]", "-+"), 0, 1), Chars("[0-9]", _DIGITS),
                          Rep(Chars("[0-9]", _DIGITS), 0, 1)])
    rules["range"] = alts([Lit('"'), Ref("pname"), Lit('": {"low": '), Ref("jnum"), Lit(', "high": '), Ref("jnum"),
                           Rep(Ref("init"), 0, 1), Lit("}")])
    rules["init"] = alts([Lit(', "init": '), Ref("jnum")])
    rules["more"] = alts([Lit(", "), Ref("range")])
    rules["space"] = alts([Lit("{}")], [Lit("{"), Ref("range"), Rep(Ref("more"), 0, L.params - 1), Lit("}")])
    return Grammar(rules)


def make_gbnf(features: Collection[str], *, ops: Collection[str] | None = None,
              limits: GrammarLimits = GrammarLimits()) -> str:
    """The GBNF text for answers over ``features`` (see :func:`build_grammar`)."""
    return build_grammar(features, ops=ops, limits=limits).to_gbnf()
