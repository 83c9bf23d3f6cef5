"""The token vocabulary of the teaming search (seed 000): what a postfix program is made of.

A *sequence* is one or more postfix programs separated by ``SEP`` and closed by ``END``::

    $age $hours mul  SEP  $capital_gain log  END

Each program is one candidate feature.  Tokens are, in id order:

=======  =====================================================================
ids      tokens
=======  =====================================================================
0..3     ``<pad>``, ``<bos>``, ``SEP``, ``END`` (specials)
4..      one per feature (the IR's ``$name`` postfix token)
...      a few constants (``0.5``, ``1.0``, ``2.0`` by default)
...      the IR's unary operators with signature num → num
...      the IR's binary operators with signature num × num → num
=======  =====================================================================

Operators come from :data:`fecc.ir.ops.OPS`, the one operator table, filtered to numeric
signatures: a transform is a numeric feature, so comparisons, logic and ``where`` (which
need booleans) are left out; the stack automaton (:mod:`.automaton`) is exact for one
value type.  Every token's text is exactly its IR postfix token, so a program's text is
parsed by :func:`fecc.ir.parse_postfix` with no translation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..ir import NUM, OPS, Const, Expr, Feature, format_number, parse_postfix, to_postfix

PAD, BOS, SEP, END = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "SEP", "END")

#: Token kinds.
K_SPECIAL, K_FEATURE, K_CONST, K_UNARY, K_BINARY = 0, 1, 2, 3, 4

DEFAULT_CONSTANTS = (0.5, 1.0, 2.0)


def numeric_ops(arity: int) -> tuple[str, ...]:
    """Names of the IR operators of ``arity`` operands with signature num^arity → num, table order."""
    return tuple(name for name, op in OPS.items()
                 if op.arity == arity and op.result == NUM and all(a == NUM for a in op.args))


@dataclass(frozen=True)
class Vocab:
    """Tokens of one search (features of one table).  Build with :meth:`build`."""

    tokens: tuple[str, ...]        # postfix text of each token (specials: their names)
    kinds: tuple[int, ...]
    features: tuple[str, ...]
    constants: tuple[float, ...]
    unary: tuple[str, ...]
    binary: tuple[str, ...]

    @classmethod
    def build(cls, features: Sequence[str], *, constants: Iterable[float] = DEFAULT_CONSTANTS,
              unary: Iterable[str] | None = None, binary: Iterable[str] | None = None) -> "Vocab":
        """Vocabulary over ``features``; operators default to every numeric one of the IR."""
        features = tuple(dict.fromkeys(str(f) for f in features))
        if not features:
            raise ValueError("the vocabulary needs at least one feature")
        un = numeric_ops(1) if unary is None else tuple(unary)
        bi = numeric_ops(2) if binary is None else tuple(binary)
        for name, arity in [(u, 1) for u in un] + [(b, 2) for b in bi]:
            op = OPS.get(name)
            if op is None or op.arity != arity or op.result != NUM or any(a != NUM for a in op.args):
                raise ValueError(f"{name!r} is not a numeric {arity}-operand IR operator "
                                 f"(allowed: {', '.join(numeric_ops(arity))})")
        consts = tuple(float(c) for c in constants)
        tokens = list(SPECIALS)
        kinds = [K_SPECIAL] * len(SPECIALS)
        for f in features:
            tokens.append(to_postfix(Feature(f)))
            kinds.append(K_FEATURE)
        for c in consts:
            tokens.append(format_number(c))
            kinds.append(K_CONST)
        tokens += un
        kinds += [K_UNARY] * len(un)
        tokens += bi
        kinds += [K_BINARY] * len(bi)
        if len(set(tokens)) != len(tokens):
            raise ValueError("duplicate tokens in the vocabulary")
        return cls(tuple(tokens), tuple(kinds), features, consts, un, bi)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    def kind_array(self) -> np.ndarray:
        return np.asarray(self.kinds, dtype=np.int8)

    # --- sequences <-> programs ------------------------------------------------------
    def split(self, ids: Sequence[int]) -> list[list[int]]:
        """Token ids of a sequence → the programs' ids (``BOS``/``PAD`` dropped, stops at ``END``)."""
        programs, cur = [], []
        for t in ids:
            t = int(t)
            if t in (PAD, BOS):
                continue
            if t == END:
                break
            if t == SEP:
                programs.append(cur)
                cur = []
            else:
                cur.append(t)
        programs.append(cur)
        return [p for p in programs if p]

    def text(self, program: Sequence[int]) -> str:
        """Postfix text of one program's ids."""
        return " ".join(self.tokens[int(t)] for t in program)

    def programs(self, ids: Sequence[int]) -> list[str]:
        """Postfix texts of every program of a sequence."""
        return [self.text(p) for p in self.split(ids)]

    def parse(self, ids: Sequence[int]) -> list[Expr]:
        """Every program of a sequence parsed into the IR (raises :class:`fecc.ir.IRSyntaxError`)."""
        return [parse_postfix(t) for t in self.programs(ids)]

    def encode_program(self, postfix: str) -> list[int]:
        """Ids of a postfix text; ``KeyError`` names a token outside the vocabulary."""
        index = self.index
        out = []
        for tok in postfix.split():
            if tok not in index:
                raise KeyError(f"token {tok!r} is not in the vocabulary")
            out.append(index[tok])
        return out

    def encode(self, postfixes: Sequence[str]) -> list[int]:
        """A sequence (``programs SEP ... END``) from postfix texts."""
        out: list[int] = []
        for i, p in enumerate(postfixes):
            if i:
                out.append(SEP)
            out += self.encode_program(p)
        out.append(END)
        return out

    def expressible(self, expr: Expr) -> bool:
        """Whether ``expr`` is written with this vocabulary's tokens only."""
        index = self.index
        for node in expr.walk():
            if isinstance(node, Feature) or isinstance(node, Const):
                if to_postfix(node) not in index:
                    return False
            elif getattr(node, "op", None) not in index:
                return False
        return True
