"""softmax's own properties, each exact or within a derived bound (tol = the native bound of xentcheck.bounds).

Exact: outputs lie in [0, 1]; equal logits give exactly equal probabilities; a -inf entry beside a
finite one is exactly 0. Within the bound: rows sum to 1; the order of the logits is kept; adding a
constant that keeps every logit exact changes nothing; permuting the logits permutes the result;
and for every temperature e^(-R/tau)/n <= p_i <= min(e^(-d_i/tau), e^(R/tau)/n) (d_i = max - x_i,
R = max - min), which squeezes p to the argmax one-hot as tau -> 0 and to uniform as tau -> oo.
"""
import numpy as np

from ._common import native, regular_rows, rows_last, unit
from ._harness import property_of

OP = "softmax"


def _softmax(h, case, dtype):
    x, kwargs = h.inputs(case, dtype)
    return x, kwargs, h.call(OP, x, kwargs)


@property_of(OP)
def test_probabilities_lie_in_0_1(h, dtype, case):
    x, kwargs, p = _softmax(h, case, dtype)
    p = p.astype(np.float64)
    h.holds(np.isnan(p) | ((p >= 0) & (p <= 1)), "every probability is in [0, 1] (or NaN)")


@property_of(OP)
def test_rows_sum_to_one(h, dtype, case):
    """|sum p - 1| <= sum_j tol_j + n u (the sum's own rounding, done here in float64)."""
    x, kwargs, p = _softmax(h, case, dtype)
    axis = kwargs["axis"]
    rows = regular_rows(x, axis)
    total = rows_last(p, axis).sum(axis=-1)
    tol = rows_last(native(h, OP, x, kwargs, dtype), axis).sum(axis=-1) + x.shape[axis] * 2.0 ** -53
    h.holds(~rows | (np.abs(total - 1) <= tol), f"rows sum to 1 within the bound: sums {total[rows][:4]}",
            op=OP, x=x, kwargs=kwargs, layout="rows")


@property_of(OP)
def test_order_is_kept_and_ties_are_exact(h, dtype, case):
    """Sorted by logit, neighbours keep their order (within both bounds) and equal logits are equal exactly."""
    x, kwargs, p = _softmax(h, case, dtype)
    axis = kwargs["axis"]
    xr, pr = rows_last(x, axis), rows_last(p, axis)
    tol = rows_last(native(h, OP, x, kwargs, dtype), axis)
    order = np.argsort(xr, axis=-1, kind="stable")
    xs, ps, ts = (np.take_along_axis(a, order, axis=-1) for a in (xr, pr, tol))
    rows = regular_rows(x, axis)[..., None]
    less = (xs[..., :-1] < xs[..., 1:]) & rows
    h.holds(~less | (ps[..., :-1] <= ps[..., 1:] + ts[..., :-1] + ts[..., 1:]),
            "x_i < x_j implies p_i <= p_j (within the two bounds)")
    equal = (xs[..., :-1] == xs[..., 1:]) & rows
    h.holds(~equal | (ps[..., :-1] == ps[..., 1:]), "equal logits give exactly equal probabilities")


@property_of(OP)
def test_masked_entries_are_exactly_zero(h, dtype, case):
    x, kwargs, p = _softmax(h, case, dtype)
    axis = kwargs["axis"]
    masked = (rows_last(x, axis) == -np.inf) & regular_rows(x, axis)[..., None]
    h.holds(~masked | (rows_last(p, axis) == 0), "a -inf logit beside a finite one has probability exactly 0")


def _shifted(x, axis, shift):
    """x + shift where every sum is exact (shift a power of two no finer than x's ulps), else None."""
    with np.errstate(invalid="ignore", over="ignore"):
        y = (x.astype(np.float64) + shift).astype(x.dtype)
        exact = np.where(np.isfinite(x.astype(np.float64)), y.astype(np.float64) - shift == x.astype(np.float64),
                         True)
    return y if exact.all() and np.isfinite(y.astype(np.float64)[np.isfinite(x.astype(np.float64))]).all() \
        else None


@property_of(OP)
def test_adding_a_constant_changes_nothing(h, dtype, case):
    x, kwargs, p = _softmax(h, case, dtype)
    for shift in (1.0, -4.0, 64.0):
        y = _shifted(x, kwargs["axis"], shift)
        if y is None:
            continue
        q = h.call(OP, y, kwargs)
        h.close(q, p, native(h, OP, y, kwargs, dtype) + native(h, OP, x, kwargs, dtype),
                f"softmax(x + {shift}) == softmax(x)")


@property_of(OP)
def test_permuting_the_logits_permutes_the_result(h, dtype, case):
    x, kwargs, p = _softmax(h, case, dtype)
    axis = kwargs["axis"]
    order = np.random.default_rng(x.shape[axis]).permutation(x.shape[axis])[::-1]
    y = np.take(x, order, axis=axis)
    q = h.call(OP, y, kwargs)
    h.close(q, np.take(p, order, axis=axis),
            native(h, OP, y, kwargs, dtype) + np.take(native(h, OP, x, kwargs, dtype), order, axis=axis),
            "softmax(permuted x) == permuted softmax(x)")


@property_of(OP)
def test_temperature_limits(h, dtype, case):
    """e^(-R/tau)/n <= p_i <= min(e^(-d_i/tau), e^(R/tau)/n), within the bound (exact inequalities)."""
    x, kwargs, p = _softmax(h, case, dtype)
    axis, tau = kwargs["axis"], kwargs["temperature"]
    xr, pr = rows_last(x, axis), rows_last(p, axis)
    rows = regular_rows(x, axis) & np.isfinite(xr).all(axis=-1)
    tol = rows_last(native(h, OP, x, kwargs, dtype), axis)
    n = xr.shape[-1]
    with np.errstate(invalid="ignore", over="ignore"):
        d = (xr.max(axis=-1, keepdims=True) - xr) / tau
        spread = (xr.max(axis=-1, keepdims=True) - xr.min(axis=-1, keepdims=True)) / tau
        upper = np.minimum(np.exp(-d), np.exp(spread) / n) * (1 + 4 * unit("float64"))
        lower = np.exp(-spread) / n * (1 - 4 * unit("float64"))
    ok = (pr <= upper + tol) & (pr >= lower - tol)
    h.holds(~rows[..., None] | ok, f"temperature {tau}: p within [e^(-R/tau)/n, min(e^(-d/tau), e^(R/tau)/n)]",
            op=OP, x=x, kwargs=kwargs, layout="rows_last")
