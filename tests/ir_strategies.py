"""Hypothesis strategies for well-typed IR expressions and adversarial rows."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from fecc.ir import OPS, Binary, Const, Feature, Param, Unary, Where

FEATURES = ("a", "b", "weird name-%", "c")
PARAMS = ("p0", "p1")

EDGE_FLOATS = [0.0, -0.0, 1.0, -1.0, 1e-9, -1e-9, 1e300, -1e300, 1e38, np.inf, -np.inf, np.nan, 50.0, 50.000001]

floats = st.one_of(st.sampled_from(EDGE_FLOATS), st.floats(allow_nan=True, allow_infinity=True, width=64))

NUM_UNARY = sorted(n for n, o in OPS.items() if o.arity == 1 and o.args == ("num",) and o.result == "num")
NUM_BINARY = sorted(n for n, o in OPS.items() if o.arity == 2 and o.result == "num")
CMP = sorted(n for n, o in OPS.items() if o.arity == 2 and o.args == ("num", "num") and o.result == "bool")


def num_exprs(max_leaves: int = 12, with_params: bool = True):
    leaves = [st.sampled_from(FEATURES).map(Feature), floats.map(Const)]
    if with_params:
        leaves.append(st.sampled_from(PARAMS).map(Param))
    leaf = st.one_of(*leaves)

    def extend(children):
        bools = st.one_of(
            st.builds(Binary, st.sampled_from(CMP), children, children),
            st.builds(lambda x: Unary("isnan", x), children),
        )
        bools = st.one_of(bools, st.builds(Binary, st.sampled_from(["and", "or"]), bools, bools),
                          st.builds(lambda c: Unary("not", c), bools))
        return st.one_of(
            st.builds(Unary, st.sampled_from(NUM_UNARY), children),
            st.builds(Binary, st.sampled_from(NUM_BINARY), children, children),
            st.builds(Where, bools, children, children),
        )

    return st.recursive(leaf, extend, max_leaves=max_leaves)


def columns(n: int = 6):
    """A dict of feature columns with edge values mixed in."""
    col = st.lists(floats, min_size=n, max_size=n).map(lambda v: np.array(v, dtype=np.float64))
    return st.fixed_dictionaries({f: col for f in FEATURES})
