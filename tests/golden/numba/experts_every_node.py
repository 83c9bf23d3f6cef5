"""Symbolic experts of a fecc bundle.  Generated code: do not edit, regenerate.

Source hash (features, expert names, postfix IR): sha256:9181a309af9197774f5df0241e64005797c322d8ba71a0c49417ee90ccebdeaa

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

Expressions (postfix IR):
    expert_1
      region:
        $age 50.5 gt $income%20%28%24%29 30000.0 le $income%20%28%24%29 isnan or and
      correction:
        0.25 $age 48.5 sub 0.1 mul add $income%20%28%24%29 1000.0 div log add $class sqrt
                exp sigmoid tanh sub $x3 square $x3 cube add neg abs sign mul $age $class
                min $age $class max sub add
    expert_2
      region:
        $class 1.0 eq $x3 2.0 ne or $age 30.0 lt $age 60.0 ge and not and
      correction:
        $x3 -0.0 le -1.5 $x3 1e-300 ge inf nan where where $age 18.0 lt -inf 0.0 where add
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

N_FEATURES = 4
FEATURE_NAMES = ('age', 'income ($)', 'class', 'x3')
EXPERTS = ('expert_1', 'expert_2')


@njit(cache=True)
def _expo(x):
    """exp(x), inf on overflow (plain Python would raise)."""
    if x > 709.782712893384:
        return math.inf
    return math.exp(x)


@njit(cache=True)
def _log(x):
    """log(1 + |x|): total, 0 at 0, symmetric in sign"""
    return math.log1p(abs(x))


@njit(cache=True)
def _sqrt(x):
    """sqrt(|x|)"""
    return math.sqrt(abs(x))


@njit(cache=True)
def _exp(x):
    """exp(x) with x clipped above at 50 (NaN stays NaN)"""
    if x > 50.0:
        return math.exp(50.0)
    return math.exp(x)


@njit(cache=True)
def _sigmoid(x):
    """1 / (1 + exp(-x))"""
    return 1.0 / (1.0 + _expo(-x))


@njit(cache=True)
def _square(x):
    """x * x"""
    return x * x


@njit(cache=True)
def _cube(x):
    """x * x * x"""
    return x * x * x


@njit(cache=True)
def _sign(x):
    """-1, 0 or 1; NaN stays NaN"""
    if x > 0.0:
        return 1.0
    if x < 0.0:
        return -1.0
    if x == 0.0:
        return 0.0  # -0.0 too, as numpy's np.sign
    return x  # NaN


@njit(cache=True)
def _div(a, b):
    """a / (b + 1e-9) if b >= 0 else a / (b - 1e-9) (-0.0 counts as >= 0)"""
    if b >= 0.0:
        return a / (b + 1e-09)
    return a / (b - 1e-09)


@njit(cache=True)
def _min(a, b):
    """smaller of a, b; NaN if either is NaN"""
    if a < b or a != a:
        return a
    return b


@njit(cache=True)
def _max(a, b):
    """larger of a, b; NaN if either is NaN"""
    if a > b or a != a:
        return a
    return b


# ---------------------------------------------------------------------------- expert_1

@njit(cache=True)
def expert_1_region(x):
    """Region of expert_1:

    age > 50.5 and (x['income ($)'] <= 30000 or isnan(x['income ($)']))
    """
    age = x[0]
    income = x[1]
    return age > 50.5 and (income <= 30000.0 or math.isnan(income))


@njit(cache=True)
def expert_1_correction(x):
    """Correction of expert_1, in margin units:

    (0.25 + (age - 48.5) * 0.1 + log(1 + |x['income ($)'] / 1000.0|) -
        tanh(sigmoid(exp(min(sqrt(|class|), 50))))) * sign(|-(x3^2 + x3^3)|) + min(age,
        class) - max(age, class)

    Parameters (tuned by TPE on the train split):
    c_0 = 0.25, t_1 = 50.5, t_2 = 30000.0
    Won: valid auc 0.8123 (legacy 0.8011); loss reduction on the region's valid rows: z =
    2.71
    Accepted structure changes: 3.
    """
    age = x[0]
    income = x[1]
    f_class = x[2]
    x3 = x[3]
    return (
        (0.25 + (age - 48.5) * 0.1 + _log(_div(income, 1000.0)) -
        math.tanh(_sigmoid(_exp(_sqrt(f_class))))) * _sign(abs(-(_square(x3) +
        _cube(x3)))) + (_min(age, f_class) - _max(age, f_class))
    )


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
    """expert_1 for every row: out[i] = expert_1(X[i], base[i]); X is (n, 4) float64."""
    for i in range(X.shape[0]):
        out[i] = expert_1(X[i], base[i])


# ---------------------------------------------------------------------------- expert_2

@njit(cache=True)
def expert_2_region(x):
    """Region of expert_2:

    (class == 1 or x3 != 2) and not (age < 30 and age >= 60)
    """
    age = x[0]
    f_class = x[2]
    x3 = x[3]
    return (f_class == 1.0 or x3 != 2.0) and not (age < 30.0 and age >= 60.0)


@njit(cache=True)
def expert_2_correction(x):
    """Correction of expert_2, in margin units:

    (-1.5 if x3 <= -0.0 else (inf if x3 >= 1e-300 else nan)) + (-inf if age < 18.0 else
        0.0)

    Parameters (tuned by TPE on the train split):
    none
    Won: valid auc 0.8123 (legacy 0.8011); loss reduction on the region's valid rows: z = 1.9
    Accepted structure changes: 1.
    """
    age = x[0]
    x3 = x[3]
    return (
        (-1.5 if x3 <= -0.0 else (math.inf if x3 >= 1e-300 else math.nan)) + (-math.inf
        if age < 18.0 else 0.0)
    )


@njit(cache=True)
def expert_2(x, base):
    """expert_2 in margin space: base + correction inside the region, NaN outside."""
    if not expert_2_region(x):
        return math.nan
    g = expert_2_correction(x)
    if not math.isfinite(g):
        g = 0.0  # a non-finite correction leaves the legacy margin unchanged
    return base + g


@njit(cache=True)
def expert_2_batch(X, base, out):
    """expert_2 for every row: out[i] = expert_2(X[i], base[i]); X is (n, 4) float64."""
    for i in range(X.shape[0]):
        out[i] = expert_2(X[i], base[i])


@njit(cache=True)
def predict_experts(X, base, out):
    """All experts at once: out[i, k] = expert_(k+1)(X[i], base[i]); out is (n, 2) float64."""
    for i in range(X.shape[0]):
        out[i, 0] = expert_1(X[i], base[i])
        out[i, 1] = expert_2(X[i], base[i])
