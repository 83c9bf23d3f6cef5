"""The GBNF grammar: generated from the op table, only known features, parses in llama.cpp,
and every string it generates parses into IR."""
from __future__ import annotations

import ast
import json
import random
import re

import pytest

from fecc.ir import OPS, Limits, Op, depth, size
from fecc.llm.grammar_gbnf import PY_KEYWORDS, GrammarLimits, build_grammar, make_gbnf, spell
from fecc.llm.prompts import N_EXAMPLES, render_example
from fecc.llm.answer import AnswerError, parse_answer, parse_function, parse_space, split_answer

FEATURES = ["age", "income", 'odd "name"\\ü']


def test_only_known_features_can_be_spelled():
    text = make_gbnf(FEATURES)
    rule = next(line for line in text.splitlines() if line.startswith("feature ::="))
    assert rule == r'feature ::= "x[\"age\"]" | "x[\"income\"]" | "x[\"odd \\\"name\\\"\\\\ü\"]"'
    g = build_grammar(FEATURES)
    assert g.accepts('def f(x, params):\n    # intent: t\n    return x["age"]\n{}')
    assert not g.accepts('def f(x, params):\n    # intent: t\n    return x["agee"]\n{}')


def test_every_ir_operator_is_offered():
    text = make_gbnf(["a"])
    for name, op in OPS.items():
        s = spell(op)
        if s.kind in ("function", "bool_function"):
            assert f'"{name}("' in text, name
        elif s.kind in ("infix", "compare", "logic"):
            assert f'" {s.text} "' in text, name
    assert '"not "' in text and '" if "' in text and '"-"' in text


def test_an_operator_without_a_spelling_is_an_error():
    odd = Op("frobnicate", ("num", "num", "num"), "num", lambda a, b, c: a, "frob({0}, {1}, {2})")
    with pytest.raises(ValueError, match="no Python spelling"):
        spell(odd)


def test_ops_can_be_restricted():
    text = make_gbnf(["a"], ops=[n for n in OPS if n not in ("cube", "tanh")])
    assert '"cube("' not in text and '"tanh("' not in text and '"log("' in text


def _samples(grammar, n, seed, budget=80):
    rng = random.Random(seed)
    return [grammar.sample(rng, budget=budget) for _ in range(n)]


def test_sampled_strings_without_locals_all_parse_into_ir():
    g = build_grammar(FEATURES, locals_=False)
    for text in _samples(g, 300, seed=1):
        assert g.accepts(text)
        code, line, space, _ = split_answer(text)
        expr = parse_function(code, features=FEATURES)
        assert expr.type == "num"
        json.loads(space)  # ranges may be empty (low > high): that is the parser's job to report


def test_sampled_strings_with_locals_are_python_and_fail_only_on_names():
    g = build_grammar(FEATURES)
    parsed = 0
    for text in _samples(g, 300, seed=2):
        code, *_ = split_answer(text)
        names = set(re.findall(r"^\s*([a-z][a-z0-9_]*) = ", code, re.M))
        if names & PY_KEYWORDS:
            continue  # the grammar cannot exclude keywords; the parser reports them as syntax errors
        ast.parse(code)
        try:
            parse_function(code, features=FEATURES)
            parsed += 1
        except AnswerError as exc:
            # random programs read locals before assigning them; nothing else may fail
            assert re.search(r"unknown name|assigned on only one branch|is a built-in function|cannot be assigned",
                             exc.reason), (exc, text)
    assert parsed > 30


def test_grammar_caps_bound_the_expression():
    limits = GrammarLimits(levels=2, terms=2, factors=2, statements=0, if_depth=0)
    g = build_grammar(["a"], limits=limits, locals_=False)
    worst = 0
    for text in _samples(g, 300, seed=3, budget=400):
        e = parse_function(split_answer(text)[0], features=["a"])
        worst = max(worst, depth(e))
        assert size(e) <= Limits().max_size * 4
    # per level at most: + (1), * (1), unary minus (1), ** (1), then a call or a conditional
    # whose condition adds and/not/compare (3 + 1); the leaf level has 5
    assert 3 <= worst <= 5 + 8 * limits.levels


def test_in_context_examples_are_in_the_language():
    feats = ["balance", "limit", "days_late", "income", "tenure", "pressure", "size", "count", "age",
             "employed_years", "duration"]
    g = build_grammar(feats)
    for i in range(N_EXAMPLES):
        example = render_example(i)
        assert g.accepts(example), example
        parse_answer(example, features=feats, frozen={"w0": 1.0, "w_util": 1.0, "w": 1.0, "a": 1.0, "c0": 1.0})


def test_space_grammar_matches_the_space_parser():
    g = build_grammar(["a"])
    head = 'def f(x, params):\n    # intent: t\n    return params["w"] * x["a"]\n'
    for space in ['{"w": {"low": -1, "high": 2.5}}', '{"w": {"low": 0.001, "high": 1e3, "init": 0.5}}']:
        assert g.accepts(head + space)
        assert parse_space(space)[0]
    assert not g.accepts(head + '{"w": [0, 1]}')  # the short form is for unconstrained models only


def test_llama_cpp_accepts_the_generated_grammar():
    lc = pytest.importorskip("llama_cpp")
    for feats, limits in [(FEATURES, GrammarLimits()), (["a"], GrammarLimits(levels=1, if_depth=0)),
                          ([f"f{i}" for i in range(200)], GrammarLimits(levels=4))]:
        grammar = lc.LlamaGrammar.from_string(make_gbnf(feats, limits=limits), verbose=False)
        assert grammar is not None
