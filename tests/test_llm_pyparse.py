"""The AST whitelist: LLM answers → IR, and hostile answers → precise rejections."""
from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from hypothesis import given

from fecc.ir import OPS, Const, Feature, Param, Unary, Where, evaluate, make, simplify
from fecc.llm.base import ParamRange
from fecc.llm.grammar_gbnf import spell
from fecc.llm.answer import AnswerError, parse_answer, parse_function, parse_space, split_answer
from fecc.llm.python_print import function_source

from ir_strategies import num_exprs

FEATURES = ["age", "income", "debt ratio"]


def fn(body: str) -> str:
    return "def f(x, params):\n" + "".join(f"    {line}\n" for line in body.strip().split("\n"))


def parse(body: str, features=FEATURES):
    return parse_function(fn(body), features=features)


# --------------------------------------------------------------------------- accepted subset


def test_feature_param_and_arithmetic():
    e = parse('return (x["age"] + 1.5) * params["w"] - x[\'income\'] / 2')
    assert e == make("sub", make("mul", make("add", Feature("age"), Const(1.5)), Param("w")),
                     make("div", Feature("income"), Const(2.0)))


def test_feature_names_need_not_be_identifiers():
    assert parse('return x["debt ratio"]') == Feature("debt ratio")


@pytest.mark.parametrize("src, op", [
    ("log", "log"), ("np.log", "log"), ("math.log", "log"), ("numpy.log1p", "log"), ("sqrt", "sqrt"),
    ("np.sqrt", "sqrt"), ("math.exp", "exp"), ("abs", "abs"), ("np.abs", "abs"), ("math.fabs", "abs"),
    ("np.absolute", "abs"), ("np.tanh", "tanh"), ("sigmoid", "sigmoid"), ("expit", "sigmoid"), ("np.sign", "sign"),
    ("np.square", "square"), ("cube", "cube"), ("np.isnan", "isnan"), ("math.isnan", "isnan"),
])
def test_unary_function_aliases(src, op):
    e = parse(f'return {src}(x["age"])' if op != "isnan" else f'return 1 if {src}(x["age"]) else 0')
    node = e if op != "isnan" else e.cond
    assert isinstance(node, Unary) and node.op == op and node.x == Feature("age")


def test_log_bases_keep_their_scale():
    e = parse('return np.log10(x["age"])')
    v = evaluate(e, {"age": np.array([99.0])})
    assert v[0] == pytest.approx(math.log1p(99.0) / math.log(10))  # = log10(100) = 2
    assert evaluate(parse('return math.log2(x["age"])'), {"age": np.array([3.0])})[0] == pytest.approx(2.0)


def test_min_max_clip_where_pow():
    assert parse('return min(x["age"], 3, params["c"])') == make("min", make("min", Feature("age"), Const(3.0)),
                                                                  Param("c"))
    assert parse('return np.maximum(x["age"], 0)') == make("max", Feature("age"), Const(0.0))
    assert parse('return np.clip(x["age"], 1, 2)') == make("min", make("max", Feature("age"), Const(1.0)), Const(2.0))
    assert parse('return np.where(x["age"] > 3, 1, 0)') == Where(make("gt", Feature("age"), Const(3.0)),
                                                                 Const(1.0), Const(0.0))
    assert parse('return x["age"] ** 2') == Unary("square", Feature("age"))
    assert parse('return pow(x["age"], 3)') == Unary("cube", Feature("age"))
    assert parse('return x["age"] ** 0.5') == Unary("sqrt", Feature("age"))
    assert parse('return x["age"] ** -1') == make("div", Const(1.0), Feature("age"))
    assert parse('return float(x["age"]) * np.pi') == make("mul", Feature("age"), Const(math.pi))
    assert parse('return float(x["age"] > 1)') == Where(make("gt", Feature("age"), Const(1.0)), Const(1.0), Const(0.0))


def test_comparisons_chain_and_logic():
    e = parse('return 1 if 18 < x["age"] <= 65 and not x["income"] == 0 or isnan(x["income"]) else 0')
    want = make("or", make("and", make("and", make("lt", Const(18.0), Feature("age")),
                                       make("le", Feature("age"), Const(65.0))),
                           make("not", make("eq", Feature("income"), Const(0.0)))),
                make("isnan", Feature("income")))
    assert e == Where(want, Const(1.0), Const(0.0))


def test_number_as_condition_means_nonzero():
    e = parse('return 2 if x["age"] else 3')
    assert e.cond == make("ne", Feature("age"), Const(0.0))


def test_locals_are_inlined_and_augmented_assignments():
    e = parse('a = x["age"] * params["s"]\nb = a + 1\nb *= 2\nreturn b - a')
    a = make("mul", Feature("age"), Param("s"))
    assert e == make("sub", make("mul", make("add", a, Const(1.0)), Const(2.0)), a)


def test_if_statements_become_where_with_the_same_values():
    code = '''
    base = params["w"] * x["age"]
    if x["income"] > params["t"]:
        extra = 1.0
    elif isnan(x["income"]):
        extra = -1.0
    else:
        extra = 0.5
        base = base / 2
    if x["age"] > 60:
        return base + extra * 3
    return base - extra
    '''
    e = parse_function("def f(x, params):\n" + textwrap.indent(textwrap.dedent(code).strip("\n"), "    "),
                       features=FEATURES)

    def reference(age, income, w, t):
        base = w * age
        if income > t:
            extra = 1.0
        elif math.isnan(income):
            extra = -1.0
        else:
            extra = 0.5
            base = base / 2
        if age > 60:
            return base + extra * 3
        return base - extra

    rng = np.random.default_rng(0)
    ages = rng.uniform(20, 90, 200)
    incomes = np.where(rng.random(200) < 0.2, np.nan, rng.uniform(0, 100, 200))
    got = evaluate(e, {"age": ages, "income": incomes}, {"w": 0.3, "t": 50.0})
    want = [reference(a, i, 0.3, 50.0) for a, i in zip(ages, incomes)]
    np.testing.assert_allclose(got, want)


def test_docstring_pass_and_intent():
    text = fn('"""Doc."""\n# intent: older people\npass\nreturn x["age"]') + '{}'
    parsed = parse_answer(text, features=FEATURES)
    assert parsed.expr == Feature("age") and parsed.intent == "older people" and parsed.space == {}


# --------------------------------------------------------------------------- answer layout and the JSON space


def test_markdown_fences_and_prose_are_tolerated():
    text = ("Here is my improved function:\n```python\n" + fn('return params["w"] * x["age"]') +
            "```\n\nAnd the search space:\n```json\n{\"w\": {\"low\": -1, \"high\": 1}}\n```\n")
    parsed = parse_answer(text, features=FEATURES)
    assert parsed.space == {"w": ParamRange(-1.0, 1.0)}


def test_one_fence_around_function_and_json():
    text = "```python\n" + fn('return params["w"] * x["age"]') + '{"w": [0, 1]}\n```\n'
    parsed = parse_answer(text, features=FEATURES)
    assert parsed.space == {"w": ParamRange(0.0, 1.0)}
    with pytest.raises(AnswerError) as info:
        parse_answer("```python\n" + fn('return x["agee"]') + '{}\n```', features=FEATURES)
    assert info.value.line == 3


def test_space_forms_and_checks():
    space, _ = parse_space('{"a": [0, 1], "b": {"low": 0.01, "high": 10, "log": true, "init": 1}}')
    assert space == {"a": ParamRange(0.0, 1.0), "b": ParamRange(0.01, 10.0, True, 1.0)}
    assert parse_space('{"params": {"a": [0, 1]}}')[0] == {"a": ParamRange(0.0, 1.0)}
    for bad, words in [('{"a": [1, 0]}', "empty"), ('{"a": {"low": 0}}', "needs both"),
                       ('{"a": {"low": 0, "high": 1, "step": 2}}', "unknown key"),
                       ('{"a": {"low": 0, "high": 1, "init": 5}}', "outside"),
                       ('{"a": {"low": 0, "high": 1, "log": true}}', "log-scaled"),
                       ('{"a": [0, 1], "a": [0, 2]}', "twice"), ('{"a": ["0", 1]}', "must be a number"),
                       ('{"a": [0, 1]} trailing', "unexpected text"), ('{"a": [0, 1}', "not valid JSON")]:
        with pytest.raises(AnswerError, match=words):
            parse_space(bad)


def test_every_param_needs_a_range_unless_frozen_and_unused_ranges_are_dropped():
    text = fn('return params["w0"] + params["w1"] * x["age"]')
    with pytest.raises(AnswerError, match="without a range.*'w1'"):
        parse_answer(text + '{}', features=FEATURES, frozen={"w0": 0.2})
    parsed = parse_answer(text + '{"w1": [0, 1], "unused": [0, 1]}', features=FEATURES, frozen={"w0": 0.2})
    assert set(parsed.space) == {"w1"} and parsed.notes == ("range for unused parameter 'unused' dropped",)


def test_limits_are_checked():
    body = "return " + " + ".join(f'x["age"] * {i}' for i in range(40))
    with pytest.raises(AnswerError, match="nodes exceed"):
        parse_answer(fn(body) + "{}", features=FEATURES)


def test_errors_point_at_the_line_of_the_answer():
    text = "Sure!\n\n" + fn('a = x["age"]\nreturn a + x["incom"]') + "{}"
    with pytest.raises(AnswerError) as info:
        parse_answer(text, features=FEATURES)
    assert info.value.line == 5 and info.value.col == 16
    assert "unknown feature 'incom'; did you mean 'income'?" in str(info.value)
    assert str(info.value).startswith("line 5, col 16: ")


def test_json_errors_point_at_the_json_line():
    with pytest.raises(AnswerError) as info:
        parse_answer(fn("return 1") + '{"a": [0, 1}', features=FEATURES)
    assert info.value.line == 3


# --------------------------------------------------------------------------- hostile answers

HOSTILE = [
    ('import os\ndef f(x, params):\n    return 1\n{}', "imports are not allowed", 1),
    (fn('import os\nreturn 1') + '{}', "imports are not allowed", 2),
    (fn('from os import system\nreturn 1') + '{}', "imports are not allowed", 2),
    (fn('return __import__("os").system("rm -rf /")') + '{}', "not allowed", 2),
    (fn('return ().__class__.__bases__[0].__subclasses__()') + '{}', "not allowed", 2),
    (fn('return x.__class__') + '{}', "attribute access", 2),
    (fn('return np.__builtins__') + '{}', "attribute access", 2),
    (fn('return open("/etc/passwd").read()') + '{}', "not allowed", 2),
    (fn('return eval("1 + 1")') + '{}', "`eval` is not allowed", 2),
    (fn('return exec("import os")') + '{}', "`exec` is not allowed", 2),
    (fn('return getattr(x, "age")') + '{}', "`getattr` is not allowed", 2),
    (fn('return np.load("/etc/passwd")') + '{}', "`np.load` is not allowed", 2),
    (fn('return os.system("ls")') + '{}', "not allowed", 2),
    (fn('while True:\n    pass\nreturn 1') + '{}', "loops are not allowed", 2),
    (fn('for i in range(10**9):\n    pass\nreturn 1') + '{}', "loops are not allowed", 2),
    (fn('return (lambda: 1)()') + '{}', "not allowed", 2),
    (fn('return [i for i in range(3)]') + '{}', "comprehensions", 2),
    (fn('return sum(i for i in range(3))') + '{}', "not allowed", 2),
    (fn('return "a" * 10**9') + '{}', "strings are only allowed as keys", 2),
    (fn('return x["age"][0]') + '{}', "subscripted", 2),
    (fn('return params[0]') + '{}', "string literal key", 2),
    (fn('try:\n    return 1\nexcept Exception:\n    return 0') + '{}', "`try` is not allowed", 2),
    (fn('global y\nreturn 1') + '{}', "`global` is not allowed", 2),
    (fn('with open("f") as h:\n    return 1') + '{}', "`with` is not allowed", 2),
    (fn('x = 1\nreturn x') + '{}', "cannot be assigned", 2),
    (fn('return x["age"] // 2') + '{}', "operator `//`", 2),
    (fn('return x["age"] % 2') + '{}', "operator `%`", 2),
    (fn('return x["age"] ** params["k"]') + '{}', "exponent must be a constant", 2),
    (fn('return 9 ** 9 ** 9') + '{}', "exponent", 2),
    (fn('return x["age"] if x["age"] in (1, 2) else 0') + '{}', "comparison", 2),
    (fn('return (y := 3)') + '{}', ":=", 2),
    (fn('return f(x, params)') + '{}', "`f` is not allowed", 2),
    ('def f(x, params):\n    return 1\ndef g(x, params):\n    return 2\n{}', "exactly one function", 3),
    ('@decorator\ndef f(x, params):\n    return 1\n{}', "decorators", 1),
    ('def f(x, params=__import__("os")):\n    return 1\n{}', "signature", 1),
    ('def f(*args):\n    return 1\n{}', "signature", 1),
    ('class A:\n    pass\n{}', "no function", None),
    (fn('a = x["age"]\n' + "a = a + a\n" * 40 + "return a") + '{}', "grows past", None),
    (fn("if x['age'] > 1:\n    return 1\n" * 70 + "return 0") + '{}', "if/else paths", None),
    (fn("return " + "(" * 300 + "1" + ")" * 300) + '{}', "", None),
]


@pytest.mark.parametrize("text, words, line", HOSTILE, ids=[f"hostile{i}" for i in range(len(HOSTILE))])
def test_hostile_answers_are_rejected_with_a_location(text, words, line):
    with pytest.raises(AnswerError) as info:
        parse_answer(text, features=FEATURES)
    assert words in str(info.value)
    if line is not None:
        assert info.value.line == line and info.value.col is not None


def test_huge_answers_are_rejected_before_parsing():
    with pytest.raises(AnswerError, match="characters long"):
        parse_answer(fn("return 1") + " " * 30_000 + "{}")


# --------------------------------------------------------------------------- IR -> Python -> IR


def test_every_operator_of_the_ir_has_a_python_spelling_the_parser_reads_back():
    args = {"num": [Feature("age"), Param("p"), Const(2.0)], "bool": [make("lt", Feature("age"), Const(1.0)),
                                                                      make("isnan", Feature("income")),
                                                                      make("gt", Param("p"), Const(0.0))]}
    for name, op in OPS.items():
        spell(op)  # raises for an operator without a spelling
        node = make(name, *[args[t][i] for i, t in enumerate(op.args)])
        if node.type == "bool":
            node = Where(node, Const(1.0), Const(0.0))
        assert parse_function(function_source(node), features=FEATURES) == node, name


@given(num_exprs(max_leaves=10))
def test_to_python_round_trips(expr):
    back = parse_function(function_source(expr))
    # a negated constant reads back as a negative constant: equal after folding
    assert back == expr or simplify(back) == simplify(expr)


def test_split_answer_reports_missing_parts():
    with pytest.raises(AnswerError, match="no function"):
        split_answer("just prose")
    with pytest.raises(AnswerError, match="no JSON"):
        split_answer(fn("return 1"))


# --------------------------------------------------------------------------- bare feature names

def test_a_bare_feature_name_reads_the_feature_and_says_so():
    """`isnan(age)` (seen from Qwen 0.5B) can only mean the feature: read it, note the repair."""
    assert parse("return age * params['w']") == make("mul", Feature("age"), Param("w"))
    answer = fn("if isnan(age):\n    return params['w']\nreturn 0") + '{"w": {"low": -1, "high": 1}}'
    parsed = parse_answer(answer, features=FEATURES)
    assert parsed.notes == ('bare name `age` read as x["age"]',)


def test_a_local_variable_shadows_a_feature_name():
    expr = parse("age = 2\nreturn age * x['income']")
    assert expr == make("mul", Const(2.0), Feature("income"))


@pytest.mark.parametrize("body", ["return salary", "return x", "return debt_ratio"])
def test_other_bare_names_stay_errors(body):
    with pytest.raises(AnswerError, match="unknown name|itself is not a number"):
        parse(body)


def test_without_a_feature_list_bare_names_stay_errors():
    with pytest.raises(AnswerError, match="unknown name `age`"):
        parse("return age", features=None)
