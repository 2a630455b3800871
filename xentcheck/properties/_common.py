"""Tolerances and row selections shared by the properties.

A backend is within `native(...)` of the exact value (xentcheck.bounds, for its dtype's compute format);
the reference's rounded answer is within `reference_bound(...)`, its float64 answer before that rounding
within the float64 bound (verdict.reference_answer, what the agreement properties compare with). Two
results that are both within their bounds of the same exact value differ by at most the sum: that is the
tolerance of a comparison between two different computations. A property of one computation (rows sum to
one, shift invariance, ...) has its own bound in xentcheck.bounds, for the rounding that property actually
sees.
"""
from __future__ import annotations

import numpy as np

from .. import bounds, verdict

U64 = bounds.U64  # our own float64 arithmetic on the backend's outputs


def native(h, op, x, kwargs, dtype=None):
    return h.bound(op, x, kwargs)


def native_vjp(h, op, x, v, kwargs, dtype=None):
    return h.vjp_bound(op, x, v, kwargs)


def reference_bound(op, x, kwargs):
    return verdict.reference_value_bound(op, x, **kwargs)


def reference_vjp_bound(op, x, v, kwargs):
    return verdict.reference_vjp_bound(op, x, v, **kwargs)


def rows_last(a, axis):
    return np.moveaxis(np.asarray(a).astype(np.float64), axis, -1)


def regular_rows(x, axis):
    """Rows with a finite max and no NaN: where the ordinary mathematical properties apply."""
    r = rows_last(x, axis)
    with np.errstate(invalid="ignore"):
        return np.isfinite(r.max(axis=-1)) & ~np.isnan(r).any(axis=-1)


def finite_rows(x, axis):
    """Rows whose entries are all finite."""
    return np.isfinite(rows_last(x, axis)).all(axis=-1)
