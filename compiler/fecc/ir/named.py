"""A named IR expression's canonical texts, shared by every holder of one (the transform
search's chosen transforms, the backends' transform sources)."""
from __future__ import annotations

from .postfix import to_postfix
from .printing import to_math


class NamedExpression:
    """Mixin for a class with ``name`` and ``expr`` (an IR expression): its postfix and math text."""

    @property
    def postfix(self) -> str:
        """The canonical postfix program (seed 000's token sequence)."""
        return to_postfix(self.expr)

    @property
    def math(self) -> str:
        """Readable math, constants to 6 significant digits."""
        return to_math(self.expr, digits=6)
