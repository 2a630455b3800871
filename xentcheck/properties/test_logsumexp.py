"""logsumexp's own properties: max x <= lse(x) <= max x + log n, and lse(x + c) = lse(x) + c.

Both hold exactly in real arithmetic; computed, each side may move by the derived bound (plus the
rounding of max + log n and of lse + c, done here in float64).
"""
import numpy as np

from ._common import native, regular_rows, rows_last
from ._harness import property_of
from .test_softmax import _shifted

OP = "logsumexp"


@property_of(OP)
def test_between_max_and_max_plus_log_n(h, dtype, case):
    x, kwargs = h.inputs(case, dtype)
    axis = kwargs["axis"]
    lse = h.call(OP, x, kwargs).astype(np.float64)
    rows = regular_rows(x, axis)
    m = rows_last(x, axis).max(axis=-1)
    n = x.shape[axis]
    tol = native(h, OP, x, kwargs, dtype) + 2.0 ** -52 * (np.abs(m) + np.log(n))
    with np.errstate(invalid="ignore"):
        ok = (lse >= m - tol) & (lse <= m + np.log(n) + tol)
    h.holds(~rows | ok, "max x <= logsumexp(x) <= max x + log n (within the bound)", op=OP, x=x, kwargs=kwargs)


@property_of(OP)
def test_adding_a_constant_adds_it(h, dtype, case):
    x, kwargs = h.inputs(case, dtype)
    lse = h.call(OP, x, kwargs)
    for shift in (1.0, -4.0, 64.0):
        y = _shifted(x, kwargs["axis"], shift)
        if y is None:
            continue
        got = h.call(OP, y, kwargs).astype(np.float64)
        want = lse.astype(np.float64) + shift
        tol = native(h, OP, y, kwargs, dtype) + native(h, OP, x, kwargs, dtype) + 2.0 ** -52 * np.abs(want)
        h.close(got, want, tol, f"logsumexp(x + {shift}) == logsumexp(x) + {shift}", check_dtype=False)
