"""Lower a whole bundle (legacy trees, experts, aggregator, link) to one ONNX graph: ``model.onnx``.

The graph onnxruntime alone scores (``fecc compile --emit onnx``)::

    X [N, F] float32 ──┬─ legacy TreeEnsemble ─ Cast ─ m ───────────────┬──────────┐
                       └─ Cast double ─ x64 ─┬─ expert_1: region, correction ─ f_1 ─┤
                                             ├─ ...                                  │
                                             └─ expert_K ───────────────────── f_K ─┤
        x64 ⊕ [m, f_k, f_k − m, div(f_k, m)] ─ Cast float ─ aggregator TreeEnsemble ─ t
        (with a base map, m = shift + scale · the legacy margin before the experts)
        margin = m + offset + t           offset = Σ_k (f_k − m) over active experts
        prediction = link(margin)

Inputs and outputs: ``X`` ``[N, F]`` float32 in manifest order (NaN = missing; category
codes for categorical features); ``prediction`` ``[N]`` float64 (``[N, C]`` for a
multi-class legacy-only bundle) and ``margin`` (the same before the link).

The trees reuse :func:`fecc.lower.onnx_trees.tree_nodes` (the ``--trees onnx`` lowering,
checked against XGBoost and LightGBM there).  The experts are lowered from their IR by
:class:`OnnxBackend`, a visitor (``lower_<node>``, an unknown node raises
:class:`LoweringError`) that turns each node into ONNX nodes in float64, reusing a value
already computed for an equal subexpression.  Every operator follows the IR's op table
(:mod:`fecc.ir.ops`) as the numpy reference computes it; where ONNX has no operator with
exactly those semantics, the graph spells the definition out (:data:`NO_EXACT_TWIN`, also
written into the manifest entry).

Exactness: ``+ − × ÷``, ``sqrt``, comparisons, ``where``, ``min``/``max``, ``div``,
``sign`` and the float32 casts are IEEE operations, bit for bit numpy's; ``exp`` and
``tanh`` are onnxruntime's, ``log`` is built from its ``Log``, all within a few units in
the last place of numpy's.  The tree sums are float32 in model order as XGBoost adds them
when the session runs on one intra-op thread (the runtime does that and splits batches
over its own threads); with more threads onnxruntime may re-associate them (≈1e-7).

The ``.onnx`` bytes depend only on the inputs and fecc's version (no timestamps, random
ids or paths).
"""
from __future__ import annotations

import hashlib
import math
import struct
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import __version__
from ..errors import UserError
from ..forest import Forest
from ..ir import Expr, features_of, to_postfix
from ..ir.ops import DIV_EPS, EXP_CLIP
from fecc_runtime.format import input_layout

from .expert_source import ExpertSource, TransformSource, source_hash
from .onnx_trees import IR_VERSION, ONNX_ML_OPSET, ONNX_OPSET, tree_nodes

__all__ = ["lower_onnx_graph", "build_model", "NO_EXACT_TWIN", "check_available", "LoweringError"]

#: IR operators without an ONNX operator of exactly the IR's semantics, and how the graph computes them.
NO_EXACT_TWIN: dict[str, str] = {
    "log": "ONNX has no log1p: log(1 + |x|) is Log(w) * (u / (w - 1)) with u = |x|, w = 1 + u (u itself "
           "where w - 1 == 0, inf where u is inf), the compensated form that keeps log1p's relative "
           "precision for small |x|; within a few ulps of numpy's log1p",
    "exp": "the clip at 50 is Where(x > 50, 50, x) (Clip and Min differ on NaN), then Exp; onnxruntime's "
           "Exp may differ from numpy's in the last bit",
    "sigmoid": "1 / (1 + Exp(-x)) spelled out (ONNX Sigmoid's kernels use other formulas)",
    "tanh": "ONNX Tanh; onnxruntime's may differ from numpy's in the last bit",
    "sign": "Where chain (ONNX Sign gives 0 for NaN): 1 if x > 0, -1 if x < 0, 0 if x == 0 (-0 too), else x (NaN)",
    "min": "Where(a < b or isnan(a), a, b), numpy's np.minimum (ONNX Min's NaN and signed-zero results vary)",
    "max": "Where(a > b or isnan(a), a, b), numpy's np.maximum",
    "div": "a / Where(b >= 0, b + 1e-9, b - 1e-9), -0.0 counted >= 0 as in the IR",
    "ne": "Not(Equal(a, b)): true when either side is NaN, as in the IR",
    "square": "Mul(x, x)",
    "cube": "Mul(Mul(x, x), x)",
    "offset": "the experts' offset is a chain of Add in expert order from 0.0 (ReduceSum's order is unspecified)",
    "isfinite": "a correction's non-finite values are Or(IsNaN(g), IsInf(g)) -> 0",
}

_DOUBLE = 11  # TensorProto.DOUBLE
_FLOAT = 1    # TensorProto.FLOAT
_LINKS = ("logistic", "identity", "exp", "softmax", "argmax")


class LoweringError(ValueError):
    """The backend cannot lower an expression (an unknown node, an unbound parameter)."""


def check_available() -> None:
    """Refuse ``--emit onnx`` early when onnx or onnxruntime is missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise UserError(f"--emit onnx needs onnx and onnxruntime ({exc.name} is missing): pip install 'fecc[onnx]'") \
            from None


def _snake(name: str) -> str:
    import re

    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _bits(value: float) -> bytes:
    return b"nan" if math.isnan(value) else struct.pack("<d", value)


class _Graph:
    """Nodes and initializers being built, with unique names and shared constants."""

    def __init__(self):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.inits: list = []
        self._names: set[str] = set()
        self._consts: dict[tuple, str] = {}

    def name(self, stem: str) -> str:
        out, k = stem, 1
        while out in self._names:
            k += 1
            out = f"{stem}_{k}"
        self._names.add(out)
        return out

    def node(self, op: str, inputs: Sequence[str], stem: str, **attrs) -> str:
        out = self.name(stem)
        self.nodes.append(self.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def const(self, value: float, dtype=np.float64) -> str:
        """A scalar initializer (shared by every use of the same value and type)."""
        key = (np.dtype(dtype).str, _bits(float(value)))
        if key not in self._consts:
            text = ("nan" if math.isnan(value) else ("inf" if value > 0 else "minus_inf") if math.isinf(value)
                    else repr(float(value)).replace("-", "minus_").replace(".", "_").replace("+", ""))
            name = self.name(f"const_{text}")
            self.inits.append(self.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
            self._consts[key] = name
        return self._consts[key]

    def tensor(self, values, dtype, stem: str) -> str:
        name = self.name(stem)
        self.inits.append(self.numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name


class OnnxBackend:
    """IR → ONNX nodes (float64 values, bool predicates) over the feature columns of ``x64``.

    Parameters
    ----------
    graph : the graph being built.
    x64 : name of the ``[N, F]`` float64 input.
    index : feature name → column.
    """

    def __init__(self, graph: _Graph, x64: str, index: dict[str, int]):
        self.g = graph
        self.x64 = x64
        self.index = index
        self._columns: dict[int, str] = {}
        self._done: dict[Expr, str] = {}
        self.stem = "e"

    def lower(self, node: Expr) -> str:
        """The name of the value of ``node`` (computed once per distinct subexpression)."""
        if node in self._done:
            return self._done[node]
        method = getattr(self, "lower_" + _snake(type(node).__name__), None)
        if method is None:
            raise LoweringError(f"the ONNX backend cannot lower IR node {type(node).__name__}")
        out = method(node)
        self._done[node] = out
        return out

    def _n(self, op: str, *inputs: str, **attrs) -> str:
        return self.g.node(op, inputs, f"{self.stem}_{op.lower()}", **attrs)

    def _c(self, value: float) -> str:
        return self.g.const(value)

    def lower_feature(self, node) -> str:
        j = self.index.get(node.name)
        if j is None:
            raise LoweringError(f"feature {node.name!r} is not a model feature")
        if j not in self._columns:
            idx = self.g.tensor(j, np.int64, f"x_col_{j}_index")
            self._columns[j] = self.g.node("Gather", [self.x64, idx], f"x_col_{j}", axis=1)
        return self._columns[j]

    def lower_const(self, node) -> str:
        return self._c(node.value)

    def lower_param(self, node) -> str:
        raise LoweringError(f"parameter @{node.name} is unbound: bind parameters before lowering")

    def lower_unary(self, node) -> str:
        return self._op(node.op, [self.lower(c) for c in node.children])

    lower_binary = lower_unary

    def lower_where(self, node) -> str:
        c, a, b = (self.lower(x) for x in node.children)
        return self._n("Where", c, a, b)

    # one method per IR operator, from the op table's definitions
    def _op(self, op: str, args: list[str]) -> str:
        fn = getattr(self, "op_" + op, None)
        if fn is None:
            raise LoweringError(f"the ONNX backend has no lowering for operator {op!r}")
        return fn(*args)

    def op_neg(self, x): return self._n("Neg", x)
    def op_abs(self, x): return self._n("Abs", x)
    def op_sqrt(self, x): return self._n("Sqrt", self._n("Abs", x))
    def op_tanh(self, x): return self._n("Tanh", x)
    def op_square(self, x): return self._n("Mul", x, x)
    def op_cube(self, x): return self._n("Mul", self._n("Mul", x, x), x)
    def op_isnan(self, x): return self._n("IsNaN", x)
    def op_not(self, x): return self._n("Not", x)
    def op_add(self, a, b): return self._n("Add", a, b)
    def op_sub(self, a, b): return self._n("Sub", a, b)
    def op_mul(self, a, b): return self._n("Mul", a, b)
    def op_lt(self, a, b): return self._n("Less", a, b)
    def op_le(self, a, b): return self._n("LessOrEqual", a, b)
    def op_gt(self, a, b): return self._n("Greater", a, b)
    def op_ge(self, a, b): return self._n("GreaterOrEqual", a, b)
    def op_eq(self, a, b): return self._n("Equal", a, b)
    def op_ne(self, a, b): return self._n("Not", self._n("Equal", a, b))
    def op_and(self, a, b): return self._n("And", a, b)
    def op_or(self, a, b): return self._n("Or", a, b)

    def op_log(self, x):
        # log1p(u), u = |x|: Log(w) * (u / (w - 1)) with w = 1 + u; u where w - 1 == 0 (u tiny), u where inf
        u = self._n("Abs", x)
        w = self._n("Add", u, self._c(1.0))
        d = self._n("Sub", w, self._c(1.0))
        r = self._n("Mul", self._n("Log", w), self._n("Div", u, d))
        r = self._n("Where", self._n("Equal", d, self._c(0.0)), u, r)
        return self._n("Where", self._n("IsInf", u), u, r)

    def op_exp(self, x):
        clip = self._c(EXP_CLIP)
        return self._n("Exp", self._n("Where", self._n("Greater", x, clip), clip, x))

    def op_sigmoid(self, x):
        one = self._c(1.0)
        return self._n("Div", one, self._n("Add", one, self._n("Exp", self._n("Neg", x))))

    def op_sign(self, x):
        zero = self._c(0.0)
        inner = self._n("Where", self._n("Equal", x, zero), zero, x)
        inner = self._n("Where", self._n("Less", x, zero), self._c(-1.0), inner)
        return self._n("Where", self._n("Greater", x, zero), self._c(1.0), inner)

    def op_div(self, a, b):
        eps = self._c(DIV_EPS)
        den = self._n("Where", self._n("GreaterOrEqual", b, self._c(0.0)), self._n("Add", b, eps), self._n("Sub", b, eps))
        return self._n("Div", a, den)

    def op_min(self, a, b):
        return self._n("Where", self._n("Or", self._n("Less", a, b), self._n("IsNaN", a)), a, b)

    def op_max(self, a, b):
        return self._n("Where", self._n("Or", self._n("Greater", a, b), self._n("IsNaN", a)), a, b)


def _link(g: _Graph, margin: str, link: str, num_class: int) -> str:
    """``prediction`` from ``margin`` (float64), as ``fecc_runtime.apply_link`` computes it."""
    if link == "logistic":
        one = g.const(1.0)
        e = g.node("Exp", [g.node("Neg", [margin], "link_neg")], "link_exp")
        return g.node("Div", [one, g.node("Add", [one, e], "link_add")], "prediction")
    if link == "identity":
        return g.node("Identity", [margin], "prediction")
    if link == "exp":
        return g.node("Exp", [margin], "prediction")
    if link == "softmax":
        axes = g.tensor([-1], np.int64, "link_axes")
        z = g.node("Sub", [margin, g.node("ReduceMax", [margin, axes], "link_max", keepdims=1)], "link_shift")
        e = g.node("Exp", [z], "link_exp")
        return g.node("Div", [e, g.node("ReduceSum", [e, axes], "link_sum", keepdims=1)], "prediction")
    if link == "argmax":
        idx = g.node("ArgMax", [margin], "link_argmax", axis=-1, keepdims=0)
        return g.node("Cast", [idx], "prediction", to=_DOUBLE)
    raise UserError(f"the ONNX graph has no lowering for link {link!r} (known: {', '.join(_LINKS)})")


def _transform_columns(g: _Graph, x64: str, feature_names: Sequence[str], transforms: Sequence[TransformSource]) -> str:
    """``x64`` with the transforms' columns appended (the format's input row), each value rounded
    through float32 as the other backends round it, ``Cast(Cast(expr, float), double)``, ±inf → NaN."""
    be = OnnxBackend(g, x64, {n: j for j, n in enumerate(feature_names)})
    axes = g.tensor([1], np.int64, "transform_unsqueeze_axes")
    cols = []
    for t in transforms:
        for f in features_of(t.expr):
            if f not in be.index:
                raise LoweringError(f"transform {t.name} reads {f!r}, which is not a model feature")
        be.stem = t.name
        value = be.lower(t.expr)
        r32 = g.node("Cast", [value], f"{t.name}_float32", to=_FLOAT)
        r64 = g.node("Cast", [r32], f"{t.name}_rounded", to=_DOUBLE)
        # an overflow (±inf) is a missing value: Where(IsInf(v), NaN, v)
        r64 = g.node("Where", [g.node("IsInf", [r64], f"{t.name}_isinf"), g.const(math.nan), r64], f"{t.name}_served")
        cols.append(g.node("Unsqueeze", [r64, axes], f"{t.name}_col"))
    return g.node("Concat", [x64, *cols], "x64_with_transforms", axis=1)


def build_model(*, legacy: Forest, experts: Sequence[Any], feature_names: Sequence[str], link: str,
                base_margin: str = "legacy+experts", aggregator: Forest | None = None, doc: str = "",
                transforms: Sequence[Any] = (), base_map: tuple[float, float] = (1.0, 0.0)) -> Any:
    """The ``onnx.ModelProto`` of the whole ensemble (see the module doc); with ``transforms``, the
    experts and the aggregator read the features and then the transforms (computed in the graph)."""
    from onnx import helper

    experts = [ExpertSource.of(e) for e in experts]
    transforms = [TransformSource.of(t) for t in transforms]
    base_names = [str(f) for f in feature_names]
    feature_names = input_layout(base_names, [{"name": t.name} for t in transforms])
    index = {n: j for j, n in enumerate(feature_names)}
    n_feat = len(feature_names)
    n_base = len(base_names)
    if base_margin not in ("legacy+experts", "legacy"):
        raise UserError(f"unknown aggregator base_margin {base_margin!r}")
    g = _Graph()
    g._names.add("X")

    # legacy trees: float32 thresholds read float32 X; float64 ones (LightGBM) read it widened (exact)
    if legacy.num_feature != n_base:
        raise UserError(f"the legacy model reads {legacy.num_feature} features, the bundle lists {n_base}")
    num_class = legacy.num_class
    x64 = g.node("Cast", ["X"], "x64", to=_DOUBLE)
    if legacy.threshold_type == "float32":
        dtype, x_trees = np.dtype(np.float32), "X"
    else:
        dtype, x_trees = np.dtype(np.float64), x64
    nodes, inits = tree_nodes(legacy, dtype, x=x_trees, prefix="legacy_", out="legacy_margin")
    g.nodes += nodes
    g.inits += inits
    g._names.update(n.name for n in nodes)
    g._names.update(i.name for i in inits)
    m = g.node("Cast", ["legacy_margin"], "m", to=_DOUBLE) if dtype == np.float32 else "legacy_margin"

    margin = m
    if experts:
        if num_class != 1:
            raise UserError("experts need a single-output legacy model")
        if tuple(map(float, base_map)) != (1.0, 0.0):
            # the experts' base margin: shift + scale · m (fecc_runtime.format.base_margin)
            scale, shift = map(float, base_map)
            m = g.node("Add", [g.node("Mul", [m, g.const(scale)], "base_scaled"), g.const(shift)], "base")
        if transforms:
            x64 = _transform_columns(g, x64, base_names, transforms)
        be = OnnxBackend(g, x64, index)
        zero, nan = g.const(0.0), g.const(math.nan)
        columns = [m]
        offset = None
        for e in experts:
            for f in features_of(e.region) + features_of(e.correction):
                if f not in index:
                    raise LoweringError(f"{e.name} reads {f!r}, which is not a model feature")
            be.stem = f"{e.name}_region"
            inside = be.lower(e.region)
            be.stem = f"{e.name}_correction"
            corr = be.lower(e.correction)
            be.stem = e.name
            bad = g.node("Or", [g.node("IsNaN", [corr], f"{e.name}_g_isnan"), g.node("IsInf", [corr], f"{e.name}_g_isinf")],
                         f"{e.name}_g_nonfinite")
            gfin = g.node("Where", [bad, zero, corr], f"{e.name}_g")
            f_k = g.node("Where", [inside, g.node("Add", [m, gfin], f"{e.name}_base_plus_g"), nan], f"{e.name}_f")
            d_k = g.node("Sub", [f_k, m], f"{e.name}_delta")
            be.stem = f"{e.name}_ratio"
            r_k = be.op_div(f_k, m)
            columns += [f_k, d_k, r_k]
            term = g.node("Where", [g.node("IsNaN", [d_k], f"{e.name}_delta_isnan"), zero, d_k], f"{e.name}_offset_term")
            offset = g.node("Add", [zero if offset is None else offset, term], f"offset_after_{e.name}")
        if base_margin == "legacy+experts":
            margin = g.node("Add", [m, offset], "m_plus_offset")
        if aggregator is not None:
            axes = g.tensor([1], np.int64, "phi_unsqueeze_axes")
            cols = [g.node("Unsqueeze", [c, axes], f"phi_col_{c}") for c in columns]
            xa = g.node("Concat", [x64, *cols], "aggregator_x64", axis=1)
            xa32 = g.node("Cast", [xa], "aggregator_x", to=_FLOAT)
            if aggregator.num_feature != n_feat + 1 + 3 * len(experts) or aggregator.threshold_type != "float32":
                raise UserError(f"the aggregator reads {aggregator.num_feature} features; the graph gives it "
                                f"{n_feat + 1 + 3 * len(experts)}")
            nodes, inits = tree_nodes(aggregator, np.dtype(np.float32), x=xa32, prefix="aggregator_",
                                      out="aggregator_margin")
            g.nodes += nodes
            g.inits += inits
            g._names.update(n.name for n in nodes)
            g._names.update(i.name for i in inits)
            t64 = g.node("Cast", ["aggregator_margin"], "t", to=_DOUBLE)
            margin = g.node("Add", [margin, t64], "m_plus_offset_plus_t")
    margin_out = g.node("Identity", [margin], "margin")
    pred = _link(g, margin_out, link, num_class)
    shape = ["N"] if num_class == 1 else ["N", num_class]
    graph = helper.make_graph(
        g.nodes, "fecc_bundle", [helper.make_tensor_value_info("X", _FLOAT, ["N", n_base])],
        [helper.make_tensor_value_info(pred, _DOUBLE, shape), helper.make_tensor_value_info(margin_out, _DOUBLE, shape)],
        initializer=g.inits, doc_string=doc,
    )
    model = helper.make_model(
        graph, producer_name="fecc", producer_version=__version__, doc_string=doc,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET), helper.make_opsetid("ai.onnx.ml", ONNX_ML_OPSET)],
    )
    model.ir_version = IR_VERSION
    # readable metadata for auditors: each expert's IR, and what has no exact ONNX twin
    props = {"fecc.features": " | ".join(base_names), "fecc.link": link}
    for t in transforms:
        props[f"fecc.{t.name}.transform"] = t.postfix
    for e in experts:
        props[f"fecc.{e.name}.region"] = to_postfix(e.region)
        props[f"fecc.{e.name}.correction"] = to_postfix(e.correction)
    helper.set_model_props(model, props)
    return model


def expressions_model(exprs: dict[str, Expr], feature_names: Sequence[str]) -> Any:
    """A graph computing IR expressions alone: input ``X`` ``[N, F]`` float64, one output per
    expression (float64, or bool for a predicate), by the very lowering of :func:`build_model`.
    For the backend parity tests, and to inspect how one expression lowers."""
    from onnx import helper

    g = _Graph()
    g._names.add("X")
    be = OnnxBackend(g, "X", {str(n): j for j, n in enumerate(feature_names)})
    outputs = []
    rows = g.node("Shape", ["X"], "rows", start=0, end=1)
    for name, expr in exprs.items():
        be.stem = name
        value = be.lower(expr)
        out = g.node("Expand", [value, rows], name)  # a constant expression is a scalar: [N] like the others
        outputs.append(helper.make_tensor_value_info(out, 9 if expr.type == "bool" else _DOUBLE, ["N"]))
    graph = helper.make_graph(g.nodes, "fecc_expressions",
                              [helper.make_tensor_value_info("X", _DOUBLE, ["N", len(feature_names)])], outputs,
                              initializer=g.inits)
    model = helper.make_model(graph, producer_name="fecc", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = IR_VERSION
    return model


def lower_onnx_graph(out_dir: Path, *, legacy: Forest, experts: Sequence[Any], feature_names: Sequence[str],
                     link: str, base_margin: str = "legacy+experts", aggregator: Forest | None = None,
                     filename: str = "model.onnx", transforms: Sequence[Any] = (),
                     base_map: tuple[float, float] = (1.0, 0.0)) -> dict[str, Any]:
    """Write ``out_dir/model.onnx`` and describe it for the manifest (``onnx_model``).

    Parameters
    ----------
    out_dir : the bundle directory.
    legacy : the legacy forest (:func:`fecc.frontend.load_forest`).
    experts : :class:`~fecc.lower.expert_source.ExpertSource` (or the search's ``Expert``), in order;
        empty for a legacy-only bundle.
    feature_names : model features, in model order (the columns of ``X``).
    link : the task's link (``logistic``, ``identity``, ``exp``, ``softmax``, ``argmax``).
    base_margin : the aggregator's base (``"legacy+experts"`` or ``"legacy"``).
    aggregator : the aggregator booster's forest, ``None`` for a ``"sum"`` aggregator.
    base_map : ``(scale, shift)`` of the experts' base margin ``shift + scale · m`` (the
        aggregator's ``base_map``); the identity adds no node.

    Returns
    -------
    dict
        ``path``, ``sha256``, ``input`` (``X``), ``input_type`` (``float32``), ``outputs``
        (``prediction``, ``margin``), ``num_feature``, ``num_class``, ``link``, ``experts``,
        ``source_hash``, ``opset``, ``no_exact_twin`` (:data:`NO_EXACT_TWIN`), ``threads``
        (the intra-op threads that give bit-identical tree sums), ``compiler``.
    """
    import onnx

    check_available()
    experts = [ExpertSource.of(e) for e in experts]
    transforms = [TransformSource.of(t) for t in transforms] if experts else []
    model = build_model(legacy=legacy, experts=experts, feature_names=feature_names, link=link,
                        base_margin=base_margin, aggregator=aggregator, transforms=transforms, base_map=base_map,
                        doc=f"fecc {__version__}: legacy trees, {len(experts)} expert(s), "
                            f"{'aggregator trees, ' if aggregator is not None else ''}link {link}")
    onnx.checker.check_model(model)
    data = model.SerializeToString(deterministic=True)
    out = Path(out_dir) / filename
    out.write_bytes(data)
    shape = model.graph.output[0].type.tensor_type.shape
    num_class = 1 if len(shape.dim) == 1 else int(shape.dim[1].dim_value)
    return {
        "path": filename,
        "sha256": hashlib.sha256(data).hexdigest(),
        "input": "X",
        "input_type": "float32",
        "outputs": {"prediction": "prediction", "margin": "margin"},
        "num_feature": len(feature_names),
        "num_class": num_class,
        "link": link,
        "experts": [e.name for e in experts],
        "aggregator_trees": aggregator is not None,
        "source_hash": source_hash(experts, [str(f) for f in feature_names], transforms),
        "opset": {"ai.onnx": ONNX_OPSET, "ai.onnx.ml": ONNX_ML_OPSET},
        "no_exact_twin": dict(NO_EXACT_TWIN),
        "threads": 1,
        "compiler": {"onnx": onnx.__version__},
        **({"transforms": [t.name for t in transforms]} if transforms else {}),
    }


def graph_text(model: Any) -> str:
    """The graph as ONNX's textual syntax (``onnx.printer``), for goldens and auditors."""
    import onnx.printer

    return onnx.printer.to_text(model.graph) + "\n"
