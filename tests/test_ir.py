"""The expression IR: typing, postfix round trip, evaluator semantics, simplifier, validation."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given

from fecc.ir import (
    DIV_EPS, OPS, Binary, Const, Feature, IRSyntaxError, IRTypeError, IRValidationError, Limits, Param, Unary,
    bind, evaluate, features_of, params_of, parse_postfix, simplify, to_math, to_postfix, validate,
)
from ir_strategies import columns, num_exprs

PARAMS = {"p0": 0.5, "p1": -3.0}


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values, NaN equal to NaN, -0.0 equal to 0.0."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


# ---------------------------------------------------------------- round trip
@given(num_exprs())
def test_postfix_round_trip(expr):
    text = to_postfix(expr)
    back = parse_postfix(text)
    assert back == expr
    assert to_postfix(back) == text
    assert str(expr) == text


@given(num_exprs())
def test_equal_expressions_hash_equal(expr):
    again = parse_postfix(str(expr))
    assert hash(again) == hash(expr)


def test_feature_names_with_any_characters_survive():
    for name in ["capital gain", "a%b", "x$y", "ünï", "@p", "1.5", "add"]:
        e = Binary("add", Feature(name), Const(1.0))
        assert parse_postfix(to_postfix(e)) == e


def test_const_identity_is_bitwise():
    assert Const(math.nan) == Const(math.nan)
    assert Const(0.0) != Const(-0.0)
    assert parse_postfix("-0.0") == Const(-0.0)
    assert parse_postfix("nan") == Const(math.nan)
    assert parse_postfix("-inf") == Const(-math.inf)
    assert parse_postfix(repr(0.1)) == Const(0.1)


# ---------------------------------------------------------------- parse errors
@pytest.mark.parametrize("text, token, fragment", [
    ("", 0, "empty"),
    ("$a add", 1, "needs 2 operand"),
    ("$a $b", 0, "2 values left"),
    ("$a frob", 1, "unknown token"),
    ("$a $b lt 1.0 add", 4, "must be num"),
    ("$a 1.0 2.0 where", 3, "must be bool"),
    ("@1bad", 0, "identifier"),
    ("$", 0, "empty feature"),
])
def test_parse_errors_name_the_position(text, token, fragment):
    with pytest.raises(IRSyntaxError) as info:
        parse_postfix(text)
    assert info.value.token == token
    assert fragment in str(info.value)


def test_parse_error_column_points_at_token():
    with pytest.raises(IRSyntaxError) as info:
        parse_postfix("$a   $b  frob")
    assert info.value.column == 9


def test_nodes_reject_ill_typed_trees():
    with pytest.raises(IRTypeError):
        Binary("add", Binary("lt", Feature("a"), Const(1)), Const(1))
    with pytest.raises(IRTypeError):
        Unary("nosuchop", Feature("a"))
    with pytest.raises(IRTypeError):
        Const("1.0")
    with pytest.raises(IRTypeError):
        Param("not an identifier")


# ---------------------------------------------------------------- evaluator
def test_every_operator_has_a_defined_value_on_edge_inputs():
    """Every op evaluates without raising on NaN, ±inf, 0, -0.0, huge values."""
    vals = np.array([0.0, -0.0, 1.0, -2.5, 1e300, -1e300, np.inf, -np.inf, np.nan])
    data = {"a": vals, "b": vals[::-1].copy()}
    for name, op in OPS.items():
        if op.args == ("num",) * op.arity:
            args = [Feature("a"), Feature("b")][: op.arity]
            out = evaluate(Unary(name, *args) if op.arity == 1 else Binary(name, *args), data)
            assert out.shape == vals.shape, name


def test_safe_operators_match_their_definitions():
    x = np.array([0.0, -0.0, 2.0, -2.0, 1e-12, np.nan, np.inf, -np.inf, 100.0])
    d = {"a": np.ones_like(x), "x": x}
    div = evaluate(parse_postfix("$a $x div"), d)
    expected = 1.0 / np.where(x >= 0, x + DIV_EPS, x - DIV_EPS)
    assert same(div, expected)
    assert div[0] == 1.0 / DIV_EPS and div[1] == 1.0 / DIV_EPS  # -0.0 counts as >= 0
    assert same(evaluate(parse_postfix("$x log"), d), np.log1p(np.abs(x)))
    assert same(evaluate(parse_postfix("$x sqrt"), d), np.sqrt(np.abs(x)))
    ex = evaluate(parse_postfix("$x exp"), d)
    assert ex[-1] == math.exp(50.0) and ex[6] == math.exp(50.0) and math.isnan(ex[5])
    assert np.all(np.isfinite(ex[~np.isnan(x)]))


def test_comparisons_with_nan_are_false_except_ne():
    d = {"a": np.array([np.nan, 1.0]), "b": np.array([1.0, np.nan])}
    for op in ("lt", "le", "gt", "ge", "eq"):
        assert not evaluate(Binary(op, Feature("a"), Feature("b")), d).any()
    assert evaluate(Binary("ne", Feature("a"), Feature("b")), d).all()


def test_where_and_isnan_give_explicit_missing_behaviour():
    e = parse_postfix("$a isnan -1.0 $a 2.0 mul where")
    out = evaluate(e, {"a": np.array([np.nan, 3.0])})
    assert same(out, [-1.0, 6.0])


def test_constant_expression_broadcasts_to_data_length():
    out = evaluate(Const(2.0), {"a": np.zeros(5)})
    assert out.shape == (5,) and (out == 2.0).all()


def test_missing_feature_and_param_are_clear_errors():
    with pytest.raises(KeyError, match="feature 'zz'"):
        evaluate(Feature("zz"), {"a": np.zeros(2)})
    with pytest.raises(KeyError, match="@p9"):
        evaluate(Param("p9"), {"a": np.zeros(2)})


@given(num_exprs(), columns())
def test_evaluator_is_total_and_shaped(expr, cols):
    out = evaluate(expr, cols, PARAMS)
    assert out.shape == (6,) and out.dtype == np.float64


@given(num_exprs(), columns())
def test_bind_equals_evaluating_with_params(expr, cols):
    assert same(evaluate(bind(expr, PARAMS), cols), evaluate(expr, cols, PARAMS))
    assert params_of(bind(expr, PARAMS)) == ()


# ---------------------------------------------------------------- simplifier
@given(num_exprs(), columns())
def test_simplify_preserves_values(expr, cols):
    simple = simplify(expr)
    assert same(evaluate(simple, cols, PARAMS), evaluate(expr, cols, PARAMS))


def test_simplify_rules():
    assert simplify(parse_postfix("$a 0.0 add neg neg 1.0 mul")) == Feature("a")
    assert simplify(parse_postfix("2.0 3.0 add $a mul")) == parse_postfix("5.0 $a mul")
    assert simplify(parse_postfix("$a abs log")) == parse_postfix("$a log")
    assert simplify(parse_postfix("1.0 2.0 lt $a $b where")) == Feature("a")
    # x * 0 must stay: it is NaN for x = inf
    assert simplify(parse_postfix("$a 0.0 mul")) == parse_postfix("$a 0.0 mul")


# ---------------------------------------------------------------- validation, printing
def test_validate_reports_every_problem():
    e = parse_postfix("$a $zz add @q mul")
    with pytest.raises(IRValidationError) as info:
        validate(e, features={"a"}, params=set(), limits=Limits(max_size=3))
    text = str(info.value)
    assert "'zz'" in text and "@q" in text and "nodes exceed 3" in text
    assert validate(e, features={"a", "zz"}, params={"q"}) is e
    with pytest.raises(IRValidationError, match="result must be bool"):
        validate(e, expect="bool")


def test_features_and_params_in_first_use_order():
    e = parse_postfix("$b @y mul $a @x mul add $b add")
    assert features_of(e) == ("b", "a")
    assert params_of(e) == ("y", "x")


def test_math_form_uses_minimal_parentheses():
    assert to_math(parse_postfix("$a $b sub $c sub")) == "a - b - c"
    assert to_math(parse_postfix("$a $b $c sub sub")) == "a - (b - c)"
    assert to_math(parse_postfix("$a $b add $c mul")) == "(a + b) * c"
    assert to_math(parse_postfix("$a isnan 0.0 $a where")) == "0.0 if isnan(a) else a"
    assert to_math(parse_postfix("$a isnan 0.0 $a where 1.0 add")) == "(0.0 if isnan(a) else a) + 1.0"
    assert to_math(Feature("capital gain")) == "x['capital gain']"
