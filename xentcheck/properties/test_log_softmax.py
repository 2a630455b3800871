"""log_softmax's own properties.

Exact: every output is <= 0; finite logits give finite log-probabilities however wide the spread (this
is what log(softmax(x)) gets wrong once p underflows). Within the rounding each property sees: exp(y)
sums to 1 (what does not cancel between y = z - L and L = log sum exp z); y equals log(softmax(x)) wherever
softmax(x) is a normal number (both ops' bounds: two computations); adding an exact constant changes only
what two evaluations of the same z need not share.
"""
import numpy as np
from hypothesis import assume

from .. import bounds, reference
from ._common import U64, finite_rows, native, regular_rows, rows_last
from ._harness import property_of
from .test_softmax import exact_shifts

OP = "log_softmax"


def _log_softmax(h, case, dtype):
    x, kwargs = h.inputs(case, dtype)
    return x, kwargs, h.call(OP, x, kwargs)


@property_of(OP)
def test_log_probabilities_are_at_most_zero(h, dtype, case):
    x, kwargs, y = _log_softmax(h, case, dtype)
    y = y.astype(np.float64)
    h.holds(np.isnan(y) | (y <= 0), f"every log-probability is <= 0 (or NaN): got {y[y > 0][:4]}",
            op=OP, x=x, kwargs=kwargs)


@property_of(OP, large_edges=True)
def test_finite_logits_give_finite_log_probabilities(h, dtype, case):
    """Wherever the exact log-probability is representable in the dtype (the reference's is finite)."""
    x, kwargs, y = _log_softmax(h, case, dtype)
    axis = kwargs["axis"]
    representable = np.isfinite(rows_last(reference.log_softmax(x, **kwargs), axis))
    wanted = finite_rows(x, axis)[..., None] & representable
    h.holds(~wanted | np.isfinite(rows_last(y, axis)),
            f"finite logits give finite log-probabilities (log(softmax) underflows to -inf): got "
            f"{rows_last(y, axis)[wanted & ~np.isfinite(rows_last(y, axis))][:4]}",
            op=OP, x=x, kwargs=kwargs, layout="rows_last")


@property_of(OP, large_edges=True)
def test_exp_sums_to_one(h, dtype, case):
    """|sum exp(y) - 1| <= bounds.log_softmax_exp_sum (exp and the sum done here in float64)."""
    x, kwargs, y = _log_softmax(h, case, dtype)
    axis = kwargs["axis"]
    rows = regular_rows(x, axis)
    total = np.exp(rows_last(y, axis)).sum(axis=-1)
    tol = bounds.log_softmax_exp_sum(x, **kwargs, **h.precision())
    bad = rows & ~(np.abs(total - 1) <= tol)
    h.holds(~bad, f"exp(log_softmax) sums to 1 within {tol[bad][:1]}: sums {total[bad][:4]}",
            op=OP, x=x, kwargs=kwargs, layout="rows")


@property_of(OP)
def test_equals_log_of_softmax_where_representable(h, dtype, case):
    """Where p~ = softmax(x) is normal, |y - log p~| <= tol_y + rel_p / (1 - rel_p), rel_p = tol_p / p (the two
    ops' bounds: they are two computations), plus our float64 log (2 U64 |log p~|)."""
    x, kwargs, y = _log_softmax(h, case, dtype)
    p = h.call("softmax", x, kwargs).astype(np.float64)
    normal = p >= bounds.format_of(dtype).smallest_normal
    assume(normal.any())
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_p = np.where(normal, h.bound("softmax", x, kwargs) / p, 0)
        want = np.where(normal, np.log(np.where(normal, p, 1.0)), y.astype(np.float64))
        tol = native(h, OP, x, kwargs) + rel_p / np.maximum(1 - rel_p, 0.5) + 2 * U64 * np.abs(want)
    h.close(y.astype(np.float64), want, np.where(normal, tol, 0), "log_softmax == log(softmax) where p is normal")


@property_of(OP)
def test_adding_a_constant_changes_nothing(h, dtype, case):
    x, kwargs, y = _log_softmax(h, case, dtype)
    for shift, z in exact_shifts(x):
        h.close(h.call(OP, z, kwargs), y, bounds.log_softmax_shift(x, z, **kwargs, **h.precision()),
                f"log_softmax(x + {shift}) == log_softmax(x)")
