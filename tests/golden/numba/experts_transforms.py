"""Symbolic experts of a fecc bundle.  Generated code: do not edit, regenerate.

Source hash (features, expert names, postfix IR): sha256:92981dbfe0744620eb99b65f30c0c86d0bf5e6a3b2a13e73a392fe9d88057d06

Every expert corrects the frozen legacy model in its own region, in margin space:

    expert_k(x, base) = base + correction_k(x)   if region_k(x)
                        NaN                      otherwise
    (margin space: f(x) = base_margin(x) + correction(x) if region(x) else NaN; a correction that is NaN or +-inf on a row counts as 0)

x is one row of float64 features in model order, NaN for a missing value; base is
the base margin for that row: the legacy model's margin, or shift + scale * it when
the manifest's aggregator has a base_map.  The operators follow fecc's IR op table
exactly (fecc.ir.ops); the safe ones are the helper functions below.

Features (model order):
    x[0]  age
    x[1]  income ($)  (local name income)
    x[2]  class  (local name f_class)
    x[3]  x3
    x[4]  tf_1  (transform: age * x['income ($)'])
    x[5]  tf_2  (transform: log(1 + |x3|) - class / 2)

Transforms: x[4] onwards are computed, not given.  transforms_batch(X, out)
fills them from the model's 4 features; the runtime rounds each value through
float32 (tf(x) = float32(expr(float32(x))), float64 arithmetic in between, +-inf -> NaN (missing); the experts and the aggregator read concat([x, tf_1(x), ...])) before the experts read it.
    tf_1 = age * x['income ($)']
      postfix: $age $income%20%28%24%29 mul
    tf_2 = log(1 + |x3|) - class / 2
      postfix: $x3 log $class 2.0 div sub

Expressions (postfix IR):
    expert_1
      region:
        $tf_1 1500.0 gt $class isnan or
      correction:
        0.1 $tf_2 mul $tf_1 1e-05 mul add
"""
import math

# The runtime sets FECC_PURE_PYTHON = True before executing this file to run the very
# same functions as plain Python; without numba installed they run that way anyway.
if globals().get("FECC_PURE_PYTHON") is not True:
    try:
        from numba import njit
        FECC_PURE_PYTHON = False
    except ImportError:
        FECC_PURE_PYTHON = True
if FECC_PURE_PYTHON:
    def njit(*args, **kwargs):
        """Stand-in for numba.njit: leave the function as plain Python."""
        return lambda fn: fn

N_FEATURES = 6
FEATURE_NAMES = ('age', 'income ($)', 'class', 'x3', 'tf_1', 'tf_2')
EXPERTS = ('expert_1',)
N_BASE_FEATURES = 4
TRANSFORMS = ('tf_1', 'tf_2')


@njit(cache=True)
def _log(x):
    """log(1 + |x|): total, 0 at 0, symmetric in sign"""
    return math.log1p(abs(x))


@njit(cache=True)
def _div(a, b):
    """a / (b + 1e-9) if b >= 0 else a / (b - 1e-9) (-0.0 counts as >= 0)"""
    if b >= 0.0:
        return a / (b + 1e-09)
    return a / (b - 1e-09)


# ---------------------------------------------------------------------------- tf_1

@njit(cache=True)
def transform_tf_1(x):
    """Transform tf_1 (x: the model's 4 features, float32-rounded):

    age * x['income ($)']
    """
    age = x[0]
    income = x[1]
    return age * income


# ---------------------------------------------------------------------------- tf_2

@njit(cache=True)
def transform_tf_2(x):
    """Transform tf_2 (x: the model's 4 features, float32-rounded):

    log(1 + |x3|) - class / 2.0
    """
    f_class = x[2]
    x3 = x[3]
    return _log(x3) - _div(f_class, 2.0)


@njit(cache=True)
def transforms_batch(X, out):
    """Every transform of every row: out[i, t] = transform t of X[i]; X is (n, 4), out (n, 2)."""
    for i in range(X.shape[0]):
        out[i, 0] = transform_tf_1(X[i])
        out[i, 1] = transform_tf_2(X[i])


# ---------------------------------------------------------------------------- expert_1

@njit(cache=True)
def expert_1_region(x):
    """Region of expert_1:

    tf_1 > 1500 or isnan(class)
    """
    f_class = x[2]
    tf_1 = x[4]
    return tf_1 > 1500.0 or math.isnan(f_class)


@njit(cache=True)
def expert_1_correction(x):
    """Correction of expert_1, in margin units:

    0.1 * tf_2 + tf_1 * 1e-05

    Parameters (tuned by TPE on the train split):
    none
    Won: valid auc 0.81 (legacy 0.8); loss reduction on the region's valid rows: z = 2.6
    Accepted structure changes: 1.
    """
    tf_1 = x[4]
    tf_2 = x[5]
    return 0.1 * tf_2 + tf_1 * 1e-05


@njit(cache=True)
def expert_1(x, base):
    """expert_1 in margin space: base + correction inside the region, NaN outside."""
    if not expert_1_region(x):
        return math.nan
    g = expert_1_correction(x)
    if not math.isfinite(g):
        g = 0.0  # a non-finite correction leaves the legacy margin unchanged
    return base + g


@njit(cache=True)
def expert_1_batch(X, base, out):
    """expert_1 for every row: out[i] = expert_1(X[i], base[i]); X is (n, 6) float64."""
    for i in range(X.shape[0]):
        out[i] = expert_1(X[i], base[i])


@njit(cache=True)
def predict_experts(X, base, out):
    """All experts at once: out[i, k] = expert_(k+1)(X[i], base[i]); out is (n, 1) float64."""
    for i in range(X.shape[0]):
        out[i, 0] = expert_1(X[i], base[i])
