"""Lowering: turn what the compiler chose into code the runtime loads."""
from fecc.lower.trees import lower_trees

__all__ = ["lower_trees"]
