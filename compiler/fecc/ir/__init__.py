"""The expression IR: one representation for every transformation and expert.

Postfix token sequences (seed 000) and LLM-written Python (seed 004) are both parsed
into these nodes; every backend (numba, ONNX, C) lowers them and is tested against
:func:`evaluate`, the numpy reference.
"""
from .analysis import bind, depth, features_of, params_of, rename_params, size, transform
from .evaluate import evaluate
from .nodes import Binary, Const, Expr, Feature, IRTypeError, Param, Unary, Where, make, rebuild
from .ops import BOOL, DIV_EPS, EXP_CLIP, NUM, OPS, Op, get_op
from .postfix import IRSyntaxError, format_number, parse_postfix, to_postfix
from .printing import to_math
from .simplify import simplify
from .validate import IRValidationError, Limits, validate

__all__ = [
    "Expr", "Feature", "Const", "Param", "Unary", "Binary", "Where", "make", "rebuild",
    "OPS", "Op", "get_op", "NUM", "BOOL", "DIV_EPS", "EXP_CLIP",
    "parse_postfix", "to_postfix", "format_number", "IRSyntaxError", "IRTypeError",
    "evaluate", "validate", "Limits", "IRValidationError", "simplify", "to_math",
    "bind", "depth", "features_of", "params_of", "rename_params", "size", "transform",
]
