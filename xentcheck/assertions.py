"""One assertion for every numerical comparison in xentcheck (in the spirit of SciPy's xp_assert_close).

assert_close(actual, desired, tol) checks shape and dtype, NaN where NaN is expected, infinities of
the same sign, and |actual - desired| <= tol elementwise for the finite rest. `tol` is an absolute
tolerance, usually a derived bound from xentcheck.bounds; without one, the dtype-aware default is
4 eps relative plus the smallest subnormal. The failure message names the worst element with its
error in ulps and as a multiple of the tolerance.
"""
from __future__ import annotations

import numpy as np

from .reference.dtypes import FORMATS, format_of


def close_mask(actual, desired, tol) -> np.ndarray:
    """Elementwise: equal NaN-ness, equal infinities, and |actual - desired| <= tol elsewhere."""
    a = np.asarray(actual).astype(np.float64)
    d = np.asarray(desired).astype(np.float64)
    a, d = np.broadcast_arrays(a, d)
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), a.shape)
    finite = np.isfinite(a) & np.isfinite(d)
    with np.errstate(invalid="ignore", over="ignore"):
        within = np.abs(a - d) <= tol
    same_special = (np.isnan(a) & np.isnan(d)) | (np.isinf(d) & (a == d))
    return np.where(finite, within, same_special)


def default_tolerance(desired, dtype) -> np.ndarray:
    fmt = format_of(dtype)
    return 4 * fmt.eps * np.abs(np.asarray(desired, dtype=np.float64)) + fmt.smallest_subnormal


def assert_close(actual, desired, tol=None, *, dtype=None, check_dtype=True, err_msg: str = "") -> None:
    actual_arr, desired_arr = np.asarray(actual), np.asarray(desired)
    prefix = f"{err_msg}: " if err_msg else ""
    if actual_arr.shape != desired_arr.shape:
        raise AssertionError(f"{prefix}shape {actual_arr.shape} != expected {desired_arr.shape}")
    if check_dtype and actual_arr.dtype != desired_arr.dtype:
        raise AssertionError(f"{prefix}dtype {actual_arr.dtype} != expected {desired_arr.dtype}")
    dtype = dtype or (desired_arr.dtype if desired_arr.dtype.name in FORMATS else np.float64)
    if tol is None:
        tol = default_tolerance(desired_arr, dtype)
    ok = close_mask(actual_arr, desired_arr, tol)
    if ok.all():
        return
    raise AssertionError(prefix + describe_mismatch(actual_arr, desired_arr, tol, ok, dtype))


def describe_mismatch(actual, desired, tol, ok, dtype) -> str:
    """Which elements differ and the worst one, with its numbers: a NaN or infinity where a finite value was
    expected (or the reverse) is named as such, a finite error in ulps and as a multiple of the tolerance."""
    from .reference.exact import ulp_error

    a = np.asarray(actual).astype(np.float64)
    d = np.asarray(desired).astype(np.float64)
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), d.shape)
    special = ~ok & (~np.isfinite(a) | ~np.isfinite(d))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        excess = np.where(ok | special, 0.0, np.abs(a - d) / tol)
    worst = _index(special) if special.any() else np.unravel_index(int(np.argmax(excess)) if excess.size else 0, d.shape)
    head = f"{int((~ok).sum())} of {ok.size} elements differ; worst at index {tuple(map(int, worst))}: "
    got, want = float(a[worst]), float(d[worst])
    if special.any():
        return head + f"expected {_show(want)}, got {_show(got)}"
    ulps = float(ulp_error(a[worst], d[worst], dtype))
    return head + (f"expected {want!r}, got {got!r}, |diff| = {abs(got - want):.3g} ({ulps:.3g} ulp of "
                   f"{np.dtype(dtype).name}), tolerance {float(tol[worst]):.3g} ({float(excess[worst]):.3g}x the "
                   f"tolerance)")


def _index(mask):
    return np.unravel_index(int(np.flatnonzero(mask)[0]), mask.shape)


def _show(value: float) -> str:
    return "NaN" if np.isnan(value) else repr(value)
