"""Fuzzing the parsers and readers that take input fecc does not control.

Targets: the postfix parser, the LLM-code parser, the model readers (XGBoost JSON and
UBJSON, LightGBM text: real small model files, truncated, byte-flipped, keys dropped,
values of the wrong type), the runtime's manifest reader (``fecc_runtime.load`` and
``fecc audit`` on a corrupted ``manifest.json``) and the runtime's row decoding
(``Bundle.predict_one`` / ``predict`` with odd rows).

The property everywhere: the call returns, or raises the project's own error for that
input (``IRSyntaxError``, ``AnswerError``, ``UserError``, ``BundleError``) — never
another exception, never a hang (hypothesis' deadline per example, pytest-timeout per
target).  Each target runs a fixed, derandomized set of examples (``FECC_FUZZ_EXAMPLES``,
default 200), so CI time is bounded and failures reproduce.  The counts per target are
written to ``tests/artifacts/fuzz_counts.json``.
"""
from __future__ import annotations

import copy
import datetime
import decimal
import json
import math
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fecc_runtime
from fecc.errors import UserError
from fecc.frontend import load_legacy_model
from fecc.ir import OPS, IRSyntaxError, parse_postfix, to_postfix
from fecc.llm.answer import AnswerError, parse_answer, parse_function

from _models import make_table, train_xgb

EXAMPLES = int(os.environ.get("FECC_FUZZ_EXAMPLES", "200"))
MODELS = Path(__file__).parent / "data" / "models"
ARTIFACTS = Path(__file__).parent / "artifacts"

FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=datetime.timedelta(seconds=3),   # a hang shows up as one slow example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
)

pytestmark = pytest.mark.timeout(120)   # per target: a hang fails instead of stalling CI

RUNS: Counter = Counter()
OUTCOMES: dict[str, Counter] = {}


def _count(target: str, outcome: str) -> None:
    RUNS[target] += 1
    OUTCOMES.setdefault(target, Counter())[outcome] += 1


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    ARTIFACTS.mkdir(exist_ok=True)
    counts = {t: {"examples": RUNS[t], **dict(OUTCOMES.get(t, {}))} for t in sorted(RUNS)}
    (ARTIFACTS / "fuzz_counts.json").write_text(json.dumps(counts, indent=2, sort_keys=True) + "\n")
    print("\nfuzz examples per target:", json.dumps(counts, sort_keys=True))


def expect(target: str, allowed: tuple[type[BaseException], ...], fn, *args, **kwargs):
    """Call ``fn``; only ``allowed`` may escape (anything else fails the example)."""
    try:
        out = fn(*args, **kwargs)
    except allowed as exc:
        _count(target, type(exc).__name__)
        return exc
    _count(target, "ok")
    return out


# =========================================================================== mutations

def mutate_bytes(data: st.DataObject, raw: bytes) -> bytes:
    """One to three byte-level mutations: truncate, flip, delete, insert, overwrite."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3), label="n_mutations")):
        op = data.draw(st.sampled_from(["truncate", "flip", "delete", "insert", "overwrite"]), label="op")
        n = len(out)
        i = data.draw(st.integers(0, max(0, n - 1)), label="at")
        if op == "truncate":
            del out[i:]
        elif op == "flip" and n:
            out[i] ^= data.draw(st.integers(1, 255), label="xor")
        elif op == "delete":
            del out[i:i + data.draw(st.integers(1, 64), label="len")]
        elif op == "insert":
            out[i:i] = data.draw(st.one_of(st.binary(min_size=1, max_size=16),
                                           st.sampled_from([b"[", b"{", b"}", b"\x00", b"nan", b"-", b"1e999",
                                                            b"\"", b"\n", b"="])), label="ins")
        elif op == "overwrite":
            chunk = data.draw(st.binary(min_size=1, max_size=8), label="chunk")
            out[i:i + len(chunk)] = chunk
    return bytes(out)


ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**63, 2**63), st.sampled_from([0, -1, 2**31, 10**30, -10**30]),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e308, -1e308, 5e-324, 0.5]),
    st.text(max_size=12), st.sampled_from(["", "nan", "inf", "1e999", "binary:logistic", "[1,2]", "{}", "0x10"]),
    st.lists(st.integers(-3, 3), max_size=3), st.just([]), st.just({}), st.just([[]]),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _paths(doc, prefix=()):
    """Every (path, value) in a JSON document, depth first."""
    yield prefix, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:12]):   # long arrays (tree nodes): the first few stand for the rest
            yield from _paths(v, prefix + (i,))


def mutate_doc(data: st.DataObject, doc, paths: list[tuple]) -> object:
    """One to three structural mutations: drop a key / item, or put a value of the wrong type there."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="n_mutations")):
        path = data.draw(st.sampled_from(paths), label="path")
        if not path:
            continue
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue   # an earlier mutation removed it
        if data.draw(st.booleans(), label="drop"):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(ODD_VALUES, label="value")
    return doc


# =========================================================================== 1. postfix parser

NUMBER_TOKENS = st.one_of(st.floats().map(repr), st.integers(-10**20, 10**20).map(str),
                          st.sampled_from(["nan", "inf", "-inf", "+inf", "1e999", "-0.0", ".5", "5.", "+3", "1e",
                                           "1.2.3", "--1", "0x1f", "1_000", "٣"]))
NAME_TOKENS = st.one_of(
    st.text(max_size=6).map(lambda s: "$" + s), st.text(max_size=6).map(lambda s: "@" + s),
    st.binary(min_size=1, max_size=4).map(lambda b: "$" + "".join(f"%{x:02x}" for x in b)),   # any bytes, escaped
    st.sampled_from(["$x", "$", "$%", "$%ff", "$%e2%82", "$%41b", "$a%20b", "$%00", "@", "@p", "@1", "@_", "@a.b",
                     "@λ", "@if", "$$", "@@p"]),
)
TOKENS = st.one_of(st.sampled_from(sorted(OPS)), NUMBER_TOKENS, NAME_TOKENS, st.text(min_size=1, max_size=5))
POSTFIX = st.one_of(
    st.text(max_size=200),
    st.lists(TOKENS, max_size=40).map(" ".join),
    st.lists(st.one_of(NAME_TOKENS, NUMBER_TOKENS), min_size=1, max_size=3).map(" ".join),
    st.tuples(st.integers(1, 3000), st.sampled_from(["neg", "abs", "log", "not", "isnan"])).map(
        lambda t: "$x " + " ".join([t[1]] * t[0])),                                  # deep chains
    st.integers(1, 3000).map(lambda n: " ".join(["$x"] * (n + 1) + ["add"] * n)),   # deep right-leaning trees
)


@FUZZ
@given(text=POSTFIX)
def test_fuzz_postfix_parser(text):
    out = expect("postfix", (IRSyntaxError,), parse_postfix, text)
    if not isinstance(out, BaseException):
        text = to_postfix(out)   # what parses prints back to the same expression (compared as text:
        assert to_postfix(parse_postfix(text)) == text   # == on 3000-deep trees would recurse)


# =========================================================================== 2. LLM-code parser

FEATURES = ["age", "income", "debt ratio"]
SEED_ANSWERS = [
    'def f(x, params):\n    # intent: damp large incomes\n    return params["a"] * np.log(x["income"]) + params["b"]\n'
    '{"a": {"low": -1, "high": 1}, "b": {"low": -2, "high": 2, "init": 0}}\n',
    '```python\ndef f(x, params):\n    t = x["age"] - params["c"]\n    if t > 0:\n        return params["w"] * t\n'
    '    return 0.0\n```\n```json\n{"c": [20, 60], "w": {"low": -0.5, "high": 0.5}}\n```\n',
    'def f(x, params):\n    r = x["debt ratio"]\n    return params["w"] * (r if not math.isnan(r) else 0.0) ** 2\n'
    '{"w": {"low": 0.001, "high": 10, "log": true}}',
]
SNIPPETS = st.sampled_from([
    "(", ")", ":", "\n", "    ", "\t", "#", "'", '"', "\\", "[", "]", "{", "}", ",", "=", "**", "@", "\x00", "λ",
    'x["age"]', "x['nope']", 'params["a"]', "params['zz']", "import os\n", "__class__", "lambda v: v", "yield 1",
    "while True:\n        pass\n", "for i in range(9):\n", "if x['age'] > 1:\n", "else:\n", "return ", "return\n",
    "global g\n", "nonlocal q\n", "async ", "await ", "del t\n", "t = ", "1e308", "1e999", "nan", "-", "not ",
    " if True else ", "np.exp(", "math.log(", "abs(", "sigmoid(", "open('x')", "eval('1')", "__import__('os')",
    '{"a": [1, 0]}', '{"a": {"low": "x"}}', '{"a": {"low": 1, "high": 2, "log": 3}}', "```", "```python\n",
    "def g(x, params):\n    return 1\n", "def f(x, params, q):\n", "@staticmethod\n",
])


@st.composite
def llm_answers(draw):
    kind = draw(st.sampled_from(["text", "mutated", "deep", "wide", "seed"]))
    if kind == "text":
        return draw(st.text(max_size=400))
    if kind == "deep":
        n = draw(st.integers(1, 400))
        form = draw(st.sampled_from(["parens", "neg", "call", "ifexpr"]))
        inner = {"parens": "(" * n + 'x["age"]' + ")" * n, "neg": "-" * n + 'x["age"]',
                 "call": "abs(" * n + 'x["age"]' + ")" * n,
                 "ifexpr": ('x["age"] if x["income"] > 1 else ' * n) + "0.0"}[form]
        return f"def f(x, params):\n    return {inner}\n{{}}\n"
    if kind == "wide":
        n = draw(st.integers(1, 3000))
        op = draw(st.sampled_from([" + ", " * ", " and ", " < "]))
        return "def f(x, params):\n    return " + op.join(['x["age"]'] * n) + "\n{}\n"
    text = draw(st.sampled_from(SEED_ANSWERS))
    if kind == "seed":
        return text
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "delete", "dup_line", "swap_lines"]))
        i = draw(st.integers(0, len(text)))
        if op == "insert":
            text = text[:i] + draw(SNIPPETS) + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 30)):]
        else:
            lines = text.split("\n")
            j = draw(st.integers(0, len(lines) - 1))
            if op == "dup_line":
                lines.insert(j, lines[j])
            else:
                k = draw(st.integers(0, len(lines) - 1))
                lines[j], lines[k] = lines[k], lines[j]
            text = "\n".join(lines)
    return text


@FUZZ
@given(answer=llm_answers(), restrict=st.booleans())
def test_fuzz_llm_code_parser(answer, restrict):
    features = FEATURES if restrict else None
    expect("llm_answer", (AnswerError,), parse_answer, answer, features=features)
    code = answer.split("\n{")[0]
    expect("llm_function", (AnswerError,), parse_function, code, features=features)


# =========================================================================== 3. model readers

MODEL_FILES = {
    "xgboost_json": MODELS / "xgboost-3.2.0" / "binary_logistic.json",
    "xgboost_json_categorical": MODELS / "xgboost-3.2.0" / "binary_pandas_categories.json",
    "xgboost_json_1.7": MODELS / "xgboost-1.7.6" / "multi_softprob.json",
    "xgboost_ubjson": MODELS / "xgboost-3.2.0" / "binary_logistic.ubj",
    "lightgbm": MODELS / "lightgbm-4.7.0" / "binary_categorical.txt",
    "lightgbm_2.3": MODELS / "lightgbm-2.3.1" / "regression.txt",
}
_MODEL_BYTES = {k: p.read_bytes() for k, p in MODEL_FILES.items()}
_MODEL_DOCS = {k: json.loads(v) for k, v in _MODEL_BYTES.items() if k.startswith("xgboost_json")}
_MODEL_PATHS = {k: list(_paths(d)) for k, d in _MODEL_DOCS.items()}


def _mutate_lightgbm(data: st.DataObject, raw: bytes) -> bytes:
    lines = raw.decode("utf-8").split("\n")
    for _ in range(data.draw(st.integers(1, 3), label="n_mutations")):
        j = data.draw(st.integers(0, len(lines) - 1), label="line")
        op = data.draw(st.sampled_from(["drop", "dup", "value", "numbers", "truncate"]), label="op")
        if op == "drop":
            del lines[j]
        elif op == "dup":
            lines.insert(j, lines[j])
        elif op == "value" and "=" in lines[j]:
            key = lines[j].split("=", 1)[0]
            lines[j] = key + "=" + data.draw(st.one_of(ODD_VALUES.map(str), st.text(max_size=10)), label="value")
        elif op == "numbers" and "=" in lines[j]:
            key, vals = lines[j].split("=", 1)
            parts = vals.split(" ")
            k = data.draw(st.integers(0, len(parts) - 1), label="item")
            parts[k] = data.draw(st.sampled_from(["-1", "999999", "nan", "inf", "", "x", "1e999", "0", "-2147483649"]))
            if data.draw(st.booleans(), label="shorten"):
                parts = parts[:k + 1]
            lines[j] = key + "=" + " ".join(parts)
        elif op == "truncate":
            lines = lines[:j]
        if not lines:
            lines = [""]
    return "\n".join(lines).encode("utf-8")


FAMILIES = {"xgboost_json": [k for k in MODEL_FILES if k.startswith("xgboost_json")],
            "xgboost_ubjson": ["xgboost_ubjson"], "lightgbm": [k for k in MODEL_FILES if k.startswith("lightgbm")]}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@FUZZ
@given(data=st.data())
def test_fuzz_model_readers(tmp_path_factory, family, data):
    which = data.draw(st.sampled_from(FAMILIES[family]), label="file")
    raw = _MODEL_BYTES[which]
    how = data.draw(st.sampled_from(["bytes", "structure", "deep"]), label="how")
    if how == "structure" and which in _MODEL_DOCS:
        mutated = json.dumps(mutate_doc(data, _MODEL_DOCS[which], _MODEL_PATHS[which])).encode()
    elif how == "structure" and which.startswith("lightgbm"):
        mutated = _mutate_lightgbm(data, raw)
    elif how == "deep":   # nesting far past the recursion limit
        n = data.draw(st.integers(500, 20000), label="depth")
        if which == "xgboost_ubjson":
            mutated = b"{" + b"U\x07learner" + b"[" * n
        else:
            mutated = b'{"learner": ' + b"[" * n + b"]" * data.draw(st.integers(0, n)) + b"}"
    else:
        mutated = mutate_bytes(data, raw)
    path = tmp_path_factory.getbasetemp() / f"fuzz_model_{which}{MODEL_FILES[which].suffix}"
    path.write_bytes(mutated)
    expect(f"model:{family}", (UserError,), load_legacy_model, path)


def test_fuzz_ubjson_huge_counts(tmp_path):
    """Containers claiming far more elements than the file holds end in a clear error, at once."""
    for body in (b"[$Z#L" + (2**62).to_bytes(8, "big"), b"[$T#l" + (2**31 - 1).to_bytes(4, "big"),
                 b"[#L" + (2**62).to_bytes(8, "big") + b"Z", b"{$Z#L" + (2**62).to_bytes(8, "big") + b"U\x01a"):
        p = tmp_path / "m.ubj"
        p.write_bytes(b"{U\x07learner" + body + b"}")
        with pytest.raises(UserError):
            load_legacy_model(p)


# =========================================================================== bundles for 4 and 5

def _table_for(model_path: Path, npz: Path) -> pd.DataFrame:
    data = np.load(npz, allow_pickle=False)
    model = load_legacy_model(model_path)
    names = list(model.feature_names or [f"f{i}" for i in range(model.num_feature)])
    df = pd.DataFrame(data["X"], columns=names)
    for i, cats in enumerate(model.categories or ()):
        if cats is not None:
            codes = df.iloc[:, i]
            df[names[i]] = [cats[int(c)] if not math.isnan(c) and 0 <= c < len(cats) and c == int(c) else None
                            for c in codes]
    return df


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    from fecc.driver import CompileOptions, compile_bundle

    d = tmp_path_factory.mktemp("fuzz_bundles")
    df = make_table(n=200, n_features=4, seed=3)
    train_xgb(df, d / "model.json", rounds=8)
    df.to_parquet(d / "data.parquet")
    compile_bundle(d / "model.json", d / "data.parquet", d / "plain", CompileOptions(search="none"))
    cat_model = MODELS / "xgboost-3.2.0" / "binary_pandas_categories.json"
    _table_for(cat_model, cat_model.with_suffix(".npz")).to_parquet(d / "cat.parquet")
    compile_bundle(cat_model, d / "cat.parquet", d / "categorical", CompileOptions(search="none"))
    return {"plain": d / "plain", "categorical": d / "categorical"}


# =========================================================================== 4. manifest reader

@pytest.fixture
def quick_plots(monkeypatch):
    """Plots are built (their code reads the manifest too) but not written out: SVG output is the slow part."""
    from fecc.report import plots

    monkeypatch.setattr(plots, "to_svg", lambda fig, name: f"<svg id='{name}'></svg>")


def _weighted_paths(doc) -> list[tuple]:
    """Every path of the manifest, the shallow (structural) ones repeated so they are drawn more often."""
    out = []
    for path, _ in _paths(doc):
        if path and path[0] == "files" and len(path) > 1:
            continue   # one digest stands for all (a changed digest is simply a modified file)
        out += [path] * max(1, 4 - len(path))
    return out + [("files",)]


@settings(FUZZ, deadline=datetime.timedelta(seconds=10))
@given(data=st.data(), verify=st.booleans())
def test_fuzz_manifest_reader(bundles, tmp_path_factory, quick_plots, data, verify):
    from fecc.report import audit

    src = bundles["plain"]
    work = tmp_path_factory.getbasetemp() / "fuzz_manifest_bundle"
    if not work.exists():
        shutil.copytree(src, work)
    raw = (src / "manifest.json").read_bytes()
    if data.draw(st.integers(0, 4), label="bytes?") == 0:
        mutated = mutate_bytes(data, raw)
    else:
        doc = json.loads(raw)
        mutated = json.dumps(mutate_doc(data, doc, _weighted_paths(doc))).encode()
    (work / "manifest.json").write_bytes(mutated)
    out = expect("manifest:load", (fecc_runtime.BundleError,), fecc_runtime.load, work, verify=verify)
    if isinstance(out, fecc_runtime.Bundle):
        expect("manifest:predict", (fecc_runtime.BundleError,), out.predict, np.zeros((2, len(out.feature_names))))
        expect("manifest:predict_one", (fecc_runtime.BundleError,), out.predict_one, [0.0] * len(out.feature_names))
    if data.draw(st.integers(0, 3), label="audit?") == 0:   # rendering is slower than loading
        expect("manifest:audit", (UserError,), audit, work, verify=verify)


# =========================================================================== 5. row decoding

class _Weird:
    """An object whose ``__float__`` breaks its contract (returns a string)."""

    def __float__(self):
        return "0.5"

    def __repr__(self):
        return "<weird>"


SCALARS = st.one_of(
    st.floats(-1e6, 1e6), st.floats(-1e6, 1e6), st.integers(-100, 100), st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**400, 10**400),
    st.sampled_from([0, 1, -1, 2**63, 10**308, 10**309, 1e308, -1e308, float("nan"), float("inf")]),
    st.booleans(), st.text(max_size=8), st.sampled_from(["1.5", " 2 ", "nan", "inf", "-inf", "1e999", "", "a", "c0"]),
    st.binary(max_size=4), st.complex_numbers(max_magnitude=1e6, allow_nan=False),
    st.decimals(allow_nan=True, allow_infinity=True), st.just(decimal.Decimal("1e999999")),
    st.lists(st.floats(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    st.tuples(st.integers()), st.sampled_from([np.float32(1.5), np.int64(7), np.float64("nan"), np.bool_(True),
                                               np.array(2.0), np.array([1.0, 2.0]), np.datetime64("2020-01-01")]),
    st.just(_Weird()), st.just(object()), st.just(datetime.date(2020, 1, 1)),
)


ARRAY_SCALARS = st.one_of(st.floats(), st.integers(-2**70, 2**70), st.none(), st.booleans(), st.text(max_size=3),
                          st.complex_numbers(max_magnitude=10, allow_nan=False))


@st.composite
def rows_for(draw, names: tuple[str, ...]):
    kind = draw(st.sampled_from(["dict", "dict", "one_odd", "list", "array"]))
    if kind == "one_odd":   # a sound row but for one value: every feature's decoding is reached
        row = {n: draw(st.floats(-1e3, 1e3)) for n in names}
        row[draw(st.sampled_from(names))] = draw(SCALARS)
        return row
    if kind == "dict":
        row = {n: draw(SCALARS) for n in names if draw(st.integers(0, 9)) > 0}   # sometimes a key is missing
        for _ in range(draw(st.integers(0, 2))):
            row[draw(st.one_of(st.text(max_size=3), st.integers(), st.none()))] = draw(SCALARS)
        return row
    if kind == "list":
        n = draw(st.sampled_from([len(names), len(names), 0, len(names) + 1, max(0, len(names) - 1)]))
        return draw(st.lists(SCALARS, min_size=n, max_size=n).map(lambda v: v if draw(st.booleans()) else tuple(v)))
    shape = draw(st.sampled_from([(len(names),), (len(names),), (len(names) + 1,), (1, len(names)), ()]))
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int64, np.bool_, object, np.complex128, "U3"]))
    try:   # (not SCALARS: int(Decimal("1e999999")) alone would take a minute)
        return np.asarray(np.reshape(np.array([draw(ARRAY_SCALARS) for _ in range(int(np.prod(shape)))], dtype=object),
                                     shape), dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        return np.zeros(shape, dtype=dtype)


@FUZZ
@given(data=st.data(), which=st.sampled_from(["plain", "categorical"]), margin=st.booleans())
def test_fuzz_row_decoding(bundles, data, which, margin):
    b = _loaded(bundles[which])
    row = data.draw(rows_for(b.feature_names), label="row")
    output = "margin" if margin else "prediction"
    out = expect(f"rows:{which}:predict_one", (fecc_runtime.BundleError,), b.predict_one, row, output=output)
    if not isinstance(out, BaseException):
        assert isinstance(out, float) or isinstance(out, np.ndarray)
        if not margin and isinstance(out, float) and b.link == "logistic":
            assert math.isnan(out) or 0.0 <= out <= 1.0
    # the batch path: a mapping of columns (some odd), or a DataFrame of such rows
    if isinstance(row, dict):
        cols = {k: [v, data.draw(SCALARS, label="second")] for k, v in row.items()}
        if data.draw(st.booleans(), label="as_frame"):
            try:
                frame = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in cols.items()
                                      if isinstance(k, str)})
            except (TypeError, ValueError):
                frame = pd.DataFrame()
            expect(f"rows:{which}:predict_frame", (fecc_runtime.BundleError,), b.predict, frame, output=output)
        else:
            expect(f"rows:{which}:predict_columns", (fecc_runtime.BundleError,), b.predict, cols, output=output)
    elif isinstance(row, np.ndarray) or data.draw(st.booleans(), label="nested"):
        batch = [row, row] if not isinstance(row, np.ndarray) else np.stack([row, row]) if row.ndim else row
        expect(f"rows:{which}:predict_matrix", (fecc_runtime.BundleError,), b.predict, batch, output=output)


_LOADED: dict[Path, fecc_runtime.Bundle] = {}


def _loaded(path: Path) -> fecc_runtime.Bundle:
    if path not in _LOADED:
        _LOADED[path] = fecc_runtime.load(path)
    return _LOADED[path]


@pytest.mark.parametrize("value", [10**400, -10**400, complex(1, 2), b"\xff", _Weird(), [1.0], {"a": 1}])
def test_rows_with_unconvertible_numbers_are_refused_clearly(bundles, value):
    b = _loaded(bundles["plain"])
    row = {n: 0.5 for n in b.feature_names}
    row[b.feature_names[0]] = value
    with pytest.raises(fecc_runtime.BundleError, match=repr(b.feature_names[0])):
        b.predict_one(row)
    with pytest.raises(fecc_runtime.BundleError):
        b.predict({k: [v] for k, v in row.items()})
