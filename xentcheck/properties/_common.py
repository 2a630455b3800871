"""Tolerances and row selections shared by the properties.

A backend computing natively in the dtype is within `native(...)` of the exact value (xentcheck.bounds);
the reference is within `reference_bound(...)`. Two results that are both within their bounds of the
same exact value differ by at most the sum: that is every comparison's tolerance below.
"""
from __future__ import annotations

import numpy as np

from .. import bounds
from ..reference import FORMATS


def native(h, op, x, kwargs, dtype):
    return bounds.value_bound(op, x, dtype=dtype, floor=h.floor, **kwargs)


def native_vjp(h, op, x, v, kwargs, dtype):
    return bounds.vjp_bound(op, x, v, dtype=dtype, floor=h.floor, **kwargs)


def reference_bound(op, x, kwargs):
    return bounds.reference_value_bound(op, x, **kwargs)


def reference_vjp_bound(op, x, v, kwargs):
    return bounds.reference_vjp_bound(op, x, v, **kwargs)


def unit(dtype) -> float:
    return FORMATS[dtype].unit_roundoff


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
