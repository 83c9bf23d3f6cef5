"""Lowering: turn what the compiler chose into code the runtime loads."""
from fecc.lower.trees import lower_trees

__all__ = ["lower_trees", "lower_onnx", "tree_lowering"]


def lower_onnx(*args, **kwargs):
    """:func:`fecc.lower.onnx_trees.lower_onnx` (imported on first use: it needs the onnx package)."""
    from fecc.lower.onnx_trees import lower_onnx as lower

    return lower(*args, **kwargs)


def tree_lowering(target: str):
    """The tree lowering for a ``--trees`` target: ``"c"`` -> :func:`lower_trees`, ``"onnx"`` -> :func:`lower_onnx`."""
    return {"c": lower_trees, "onnx": lower_onnx}[target]
