"""Lowering: turn what the compiler chose into code the runtime loads."""
from fecc.lower.trees import lower_trees

__all__ = ["lower_trees", "lower_onnx"]  # the --trees registry: fecc.options.TREE_TARGETS


def lower_onnx(*args, **kwargs):
    """:func:`fecc.lower.onnx_trees.lower_onnx` (imported on first use: it needs the onnx package)."""
    from fecc.lower.onnx_trees import lower_onnx as lower

    return lower(*args, **kwargs)

