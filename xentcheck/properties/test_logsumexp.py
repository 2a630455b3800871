"""logsumexp's own properties: max x <= lse(x) <= max x + log n, and lse(x + c) = lse(x) + c.

Both hold exactly in real arithmetic. Computed, the lower side stays exact (s >= 1, so log s >= 0), the
upper moves by the value bound, and a shift by what two evaluations need not share (bounds.logsumexp_range,
bounds.logsumexp_shift; our own float64 arithmetic included).
"""
import numpy as np

from .. import bounds
from ._common import regular_rows, rows_last
from ._harness import property_of
from .test_softmax import exact_shifts

OP = "logsumexp"


@property_of(OP, large_edges=True)
def test_between_max_and_max_plus_log_n(h, dtype, case):
    x, kwargs = h.inputs(case, dtype)
    axis = kwargs["axis"]
    lse = h.call(OP, x, kwargs).astype(np.float64)
    rows = regular_rows(x, axis)
    m = rows_last(x, axis).max(axis=-1)
    n = x.shape[axis]
    below, above = bounds.logsumexp_range(x, **kwargs, **h.precision())
    with np.errstate(invalid="ignore"):
        ok = (lse >= m - below) & (lse <= m + np.log(n) + above)
    h.holds(~rows | ok, f"max x <= logsumexp(x) <= max x + log n (the upper side within the bound): lse "
            f"{lse[rows & ~ok][:3]}, max {m[rows & ~ok][:3]}", op=OP, x=x, kwargs=kwargs)


@property_of(OP)
def test_adding_a_constant_adds_it(h, dtype, case):
    x, kwargs = h.inputs(case, dtype)
    lse = h.call(OP, x, kwargs)
    for shift, y in exact_shifts(x):
        got = h.call(OP, y, kwargs).astype(np.float64)
        want = lse.astype(np.float64) + shift
        h.close(got, want, bounds.logsumexp_shift(x, y, **kwargs, **h.precision()),
                f"logsumexp(x + {shift}) == logsumexp(x) + {shift}", check_dtype=False)
