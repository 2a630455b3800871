"""log_softmax's own properties.

Exact: every output is <= 0; finite logits give finite log-probabilities however wide the spread (this
is what log(softmax(x)) gets wrong once p underflows). Within the bound: exp(y) sums to 1; y equals
log(softmax(x)) wherever softmax(x) is a normal number; adding an exact constant changes nothing.
"""
import numpy as np

from .. import bounds, reference
from ._common import finite_rows, native, regular_rows, rows_last
from ._harness import property_of
from .test_softmax import _shifted

OP = "log_softmax"


def _log_softmax(h, case, dtype):
    x, kwargs = h.inputs(case, dtype)
    return x, kwargs, h.call(OP, x, kwargs)


@property_of(OP)
def test_log_probabilities_are_at_most_zero(h, dtype, case):
    x, kwargs, y = _log_softmax(h, case, dtype)
    y = y.astype(np.float64)
    h.holds(np.isnan(y) | (y <= 0), "every log-probability is <= 0 (or NaN)", op=OP, x=x, kwargs=kwargs)


@property_of(OP)
def test_finite_logits_give_finite_log_probabilities(h, dtype, case):
    """Wherever the exact log-probability is representable in the dtype (the reference's is finite)."""
    x, kwargs, y = _log_softmax(h, case, dtype)
    axis = kwargs["axis"]
    representable = np.isfinite(rows_last(reference.log_softmax(x, **kwargs), axis))
    wanted = finite_rows(x, axis)[..., None] & representable
    h.holds(~wanted | np.isfinite(rows_last(y, axis)),
            "finite logits give finite log-probabilities (log(softmax) underflows to -inf)",
            op=OP, x=x, kwargs=kwargs, layout="rows_last")


@property_of(OP)
def test_exp_sums_to_one(h, dtype, case):
    """|sum exp(y) - 1| <= sum_j p_j (e^tol_j - 1) + (n + 1) u_64 (exp and the sum done here in float64)."""
    x, kwargs, y = _log_softmax(h, case, dtype)
    axis = kwargs["axis"]
    rows = regular_rows(x, axis)
    yr = rows_last(y, axis)
    p = np.exp(yr)
    tol = rows_last(native(h, OP, x, kwargs, dtype), axis)
    allowed = np.where(p > 0, p * np.expm1(np.minimum(tol, 700.0)), 0.0).sum(axis=-1) + (yr.shape[-1] + 1) * 2.0 ** -53
    h.holds(~rows | (np.abs(p.sum(axis=-1) - 1) <= allowed), "exp(log_softmax) sums to 1 within the bound",
            op=OP, x=x, kwargs=kwargs, layout="rows")


@property_of(OP)
def test_equals_log_of_softmax_where_representable(h, dtype, case):
    """Where p~ = softmax(x) is normal, |y - log p~| <= tol_y + rel_p / (1 - rel_p), rel_p = tol_p / p."""
    x, kwargs, y = _log_softmax(h, case, dtype)
    p = h.call("softmax", x, kwargs).astype(np.float64)
    fmt = bounds.format_of(dtype)
    normal = p >= fmt.smallest_normal
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_p = np.where(normal, bounds.softmax(x, dtype=dtype, floor=h.floor, **kwargs) / p, 0)
        want = np.where(normal, np.log(np.where(normal, p, 1.0)), y.astype(np.float64))
        tol = native(h, OP, x, kwargs, dtype) + rel_p / np.maximum(1 - rel_p, 0.5) + 2.0 ** -52 * np.abs(want)
    h.close(y.astype(np.float64), want, np.where(normal, tol, 0), "log_softmax == log(softmax) where p is normal")


@property_of(OP)
def test_adding_a_constant_changes_nothing(h, dtype, case):
    x, kwargs, y = _log_softmax(h, case, dtype)
    for shift in (1.0, -4.0, 64.0):
        z = _shifted(x, kwargs["axis"], shift)
        if z is None:
            continue
        h.close(h.call(OP, z, kwargs), y, native(h, OP, z, kwargs, dtype) + native(h, OP, x, kwargs, dtype),
                f"log_softmax(x + {shift}) == log_softmax(x)")
