"""softmax's own properties, each exact or within its own derived bound (xentcheck.bounds).

Exact: outputs lie in [0, 1]; equal logits give exactly equal probabilities; a -inf entry beside a
finite one is exactly 0. Within the rounding each property sees: rows sum to 1 (the normalisation's
rounding); the order of the logits is kept (exp is only faithful, then one storage ulp); adding a
constant that keeps every logit exact, or permuting the logits, changes only what two evaluations of
the same z need not share (the sum's order, the final roundings); and for every temperature
e^(-R/tau)/n <= p_i <= min(e^(-d_i/tau), e^(R/tau)/n) (d_i = max - x_i, R = max - min) within the value
bound, which squeezes p to the argmax one-hot as tau -> 0 and to uniform as tau -> oo.
"""
import numpy as np
from hypothesis import assume

from .. import bounds
from ._common import U64, native, regular_rows, rows_last
from ._harness import property_of

OP = "softmax"
SHIFTS = (1.0, -4.0, 64.0)  # powers of two (and 1): exact wherever they are no finer than x's ulps


def _softmax(h, case, dtype):
    x, kwargs = h.inputs(case, dtype)
    return x, kwargs, h.call(OP, x, kwargs)


@property_of(OP)
def test_probabilities_lie_in_0_1(h, dtype, case):
    x, kwargs, p = _softmax(h, case, dtype)
    p = p.astype(np.float64)
    h.holds(np.isnan(p) | ((p >= 0) & (p <= 1)), f"every probability is in [0, 1] (or NaN): got "
            f"{p[~(np.isnan(p) | ((p >= 0) & (p <= 1)))][:4]}")


@property_of(OP, large_edges=True)
def test_rows_sum_to_one(h, dtype, case):
    """|sum p - 1| <= bounds.softmax_sum: the normalisation's rounding, not the elementwise tolerances."""
    x, kwargs, p = _softmax(h, case, dtype)
    axis = kwargs["axis"]
    rows = regular_rows(x, axis)
    total = rows_last(p, axis).sum(axis=-1)
    tol = bounds.softmax_sum(x, **kwargs, **h.precision())
    bad = rows & ~(np.abs(total - 1) <= tol)
    h.holds(~bad, f"rows sum to 1 within {tol[bad][:1]}: sums {total[bad][:4]}",
            op=OP, x=x, kwargs=kwargs, layout="rows")


@property_of(OP)
def test_order_is_kept_and_ties_are_exact(h, dtype, case):
    """Sorted by logit, neighbours keep their order (within bounds.softmax_order) and equal logits are equal
    exactly."""
    x, kwargs, p = _softmax(h, case, dtype)
    axis = kwargs["axis"]
    xr, pr = rows_last(x, axis), rows_last(p, axis)
    tol = rows_last(bounds.softmax_order(x, **kwargs, **h.precision()), axis)
    order = np.argsort(xr, axis=-1, kind="stable")
    xs, ps, ts = (np.take_along_axis(a, order, axis=-1) for a in (xr, pr, tol))
    rows = regular_rows(x, axis)[..., None]
    less = (xs[..., :-1] < xs[..., 1:]) & rows
    inverted = less & ~(ps[..., :-1] <= ps[..., 1:] + ts[..., 1:])
    h.holds(~inverted, f"x_i < x_j implies p_i <= p_j (within one storage ulp and exp's error): p_i "
            f"{ps[..., :-1][inverted][:2]}, p_j {ps[..., 1:][inverted][:2]}")
    equal = (xs[..., :-1] == xs[..., 1:]) & rows
    h.holds(~equal | (ps[..., :-1] == ps[..., 1:]), "equal logits give exactly equal probabilities (p_j - p_i shown)",
            got=ps[..., 1:] - ps[..., :-1])


@property_of(OP)
def test_masked_entries_are_exactly_zero(h, dtype, case):
    x, kwargs, p = _softmax(h, case, dtype)
    axis = kwargs["axis"]
    masked = (rows_last(x, axis) == -np.inf) & regular_rows(x, axis)[..., None]
    h.holds(~masked | (rows_last(p, axis) == 0), f"a -inf logit beside a finite one has probability exactly 0: got "
            f"{rows_last(p, axis)[masked & (rows_last(p, axis) != 0)][:4]}")


def shifted(x, shift):
    """x + shift where every sum is exact (shift a power of two no finer than x's ulps), else None."""
    with np.errstate(invalid="ignore", over="ignore"):
        y = (x.astype(np.float64) + shift).astype(x.dtype)
        exact = np.where(np.isfinite(x.astype(np.float64)), y.astype(np.float64) - shift == x.astype(np.float64),
                         True)
    return y if exact.all() and np.isfinite(y.astype(np.float64)[np.isfinite(x.astype(np.float64))]).all() \
        else None


def exact_shifts(x):
    """The SHIFTS that keep every logit of x exact (at least one, or the example is rejected)."""
    found = [(s, y) for s in SHIFTS if (y := shifted(x, s)) is not None]
    assume(found)
    return found


@property_of(OP)
def test_adding_a_constant_changes_nothing(h, dtype, case):
    x, kwargs, p = _softmax(h, case, dtype)
    for shift, y in exact_shifts(x):
        q = h.call(OP, y, kwargs)
        h.close(q, p, bounds.softmax_shift(x, y, **kwargs, **h.precision()), f"softmax(x + {shift}) == softmax(x)")


@property_of(OP)
def test_permuting_the_logits_permutes_the_result(h, dtype, case):
    x, kwargs, p = _softmax(h, case, dtype)
    axis = kwargs["axis"]
    order = np.random.default_rng(x.shape[axis]).permutation(x.shape[axis])[::-1]
    y = np.take(x, order, axis=axis)
    q = h.call(OP, y, kwargs)
    h.close(q, np.take(p, order, axis=axis),
            np.take(bounds.softmax_permutation(x, **kwargs, **h.precision()), order, axis=axis),
            "softmax(permuted x) == permuted softmax(x)")


@property_of(OP)
def test_temperature_limits(h, dtype, case):
    """e^(-R/tau)/n <= p_i <= min(e^(-d_i/tau), e^(R/tau)/n), within the value bound (exact inequalities; the
    limits computed here in float64, 4 U64 for the exp and the division)."""
    x, kwargs, p = _softmax(h, case, dtype)
    axis, tau = kwargs["axis"], kwargs["temperature"]
    xr, pr = rows_last(x, axis), rows_last(p, axis)
    rows = regular_rows(x, axis) & np.isfinite(xr).all(axis=-1)
    tol = rows_last(native(h, OP, x, kwargs), axis)
    n = xr.shape[-1]
    with np.errstate(invalid="ignore", over="ignore"):
        d = (xr.max(axis=-1, keepdims=True) - xr) / tau
        spread = (xr.max(axis=-1, keepdims=True) - xr.min(axis=-1, keepdims=True)) / tau
        upper = np.minimum(np.exp(-d), np.exp(spread) / n) * (1 + 4 * U64)
        lower = np.exp(-spread) / n * (1 - 4 * U64)
    ok = (pr <= upper + tol) & (pr >= lower - tol)
    h.holds(~rows[..., None] | ok, f"temperature {tau}: p within [e^(-R/tau)/n, min(e^(-d/tau), e^(R/tau)/n)]: "
            f"p {pr[~(~rows[..., None] | ok)][:3]}", op=OP, x=x, kwargs=kwargs, layout="rows_last")
