"""Error bounds, derived: how far a correct implementation may be from the exact value.

Every bound is a first-order rounding-error analysis (Higham, "Accuracy and Stability of Numerical
Algorithms", ch. 2-4) of the usual algorithms, computed natively in the format being checked:
u = 2**-p is the unit roundoff (eps = 2u), exp and log are trusted to FN_ULPS ulps, and a sum of n
terms of one sign has relative error at most sum_error(n) (see there: either any order with float32 or
wider accumulators, or pairwise in the dtype). Where implementations differ in
the order of operations (dividing by tau first, or log-softmax as x - (max + log s)) the bound admits
each of them. A backend that computes in higher precision and rounds once is inside every bound.

Notation, per row along the op's axis: m = max x, z_j = (x_j - m)/tau, s = sum exp z, L = log s,
p = softmax, y = z - L (log-softmax), n the row length. Each function returns an absolute tolerance
shaped like the op's output (values) or its input (vjps). Nothing here is tuned: every constant is
named and explained, and the tests hold each bound against the exact oracle and against planted
bugs just outside it.
"""
from __future__ import annotations

import numpy as np

from .reference import _checks
from .reference.dtypes import Format, format_of
from .reference.ops import _QUIET, _CrossEntropy, _RowSoftmax

# exp and log error in ulps. glibc documents <= 1 ulp for exp/log in float and double, SLEEF's u10
# kernels (PyTorch on CPU) <= 1.0 ulp, NumPy's SIMD float32 kernels <= 4 ulp; XLA's are measured
# against the oracle by tests/test_bounds.py, which holds every shipped backend to this number.
FN_ULPS = 4


def sum_error(n, fmt: Format):
    """Relative error bound of a sum of n terms of one sign, in whichever of two admitted ways it is done.

    * in any order with accumulators of float32 or wider (torch and XLA accumulate float16 and bfloat16
      sums in float32): (n - 1) u_acc with u_acc = min(u, 2**-24) (Higham, Thm 4.1), then one rounding
      into the dtype, counted by the caller;
    * pairwise in the dtype itself (NumPy): ceil(log2 n) u (Higham, eq. 4.6).
    A sequential sum in float16 or bfloat16 is neither: past 2**p terms of one size it stops growing,
    and the bound, which would otherwise be (n - 1) u >= 1 and say nothing, rejects it.
    """
    n = np.maximum(np.asarray(n, dtype=np.float64), 1)
    return np.maximum((n - 1) * min(fmt.unit_roundoff, 2.0 ** -24), np.ceil(np.log2(n)) * fmt.unit_roundoff)


class _RowErrors:
    """Float64 row quantities and the first-order error of each intermediate, in format `fmt`."""

    def __init__(self, x, axis: int, tau: float, fmt: Format, floor: float | None):
        rows = np.moveaxis(np.asarray(x).astype(np.float64), axis, -1)
        self.axis, self.tau, self.fmt = axis, tau, fmt
        self.n = n = rows.shape[-1]
        u, eps = fmt.unit_roundoff, fmt.eps
        with np.errstate(**_QUIET):
            self.m = m = rows.max(axis=-1, keepdims=True)
            self.z = z = (rows - m) / tau
            soft = _RowSoftmax(z)
            self.L = L = soft.log_s
            self.p = p = soft.p
            self.y = z - L
            # |error of z_j|: (x - m) then /tau round once each, relative u: 2u|z|; an implementation
            # that divides first, x/tau - m/tau, errs by u(|x| + |m|)/tau instead.
            # Masked entries (-inf) are exact, probability 0 and log-probability -inf: no error term.
            finite = np.isfinite(z)
            abs_z, abs_x = np.where(finite, np.abs(z), 0.0), np.where(finite, np.abs(rows), 0.0)
            dz = u * (2 * abs_z + (tau != 1.0) * (abs_x + np.abs(m)) / tau)
            # Underflow: a result below the smallest normal is rounded into the subnormal range (or, where
            # subnormals are flushed, to 0) with an absolute error of at most `unit`.
            unit = fmt.smallest_subnormal if floor is None else floor
            s = np.exp(L)
            tiny_terms = np.sum(finite & (p * s < fmt.smallest_normal), axis=-1, keepdims=True)
            # relative error of s = sum exp(z_j): each term errs by dz_j + FN_ULPS eps, the sum by
            # sum_error(n) and its final rounding u, and each underflowed term by `unit` (s >= 1)
            self.rel_s = ((p * dz).sum(axis=-1, keepdims=True) + FN_ULPS * eps + sum_error(n, fmt) + u
                          + tiny_terms * unit / s)
            # |error of y_j = z_j - L|: z_j's, log's (rel_s + FN_ULPS eps |L|), and the final rounding
            # u|y|; the form x - (m + L) adds u(|m|/tau + L) from rounding m + L.
            abs_y = np.where(finite, np.abs(self.y), 0.0)
            self.tol_y = dz + self.rel_s + FN_ULPS * eps * L + u * (abs_y + np.abs(m) / tau + L)
            # relative error of p_j, by division e_j/s (dz_j + FN_ULPS eps + rel_s + u) or as exp(y_j)
            # (tol_y_j + FN_ULPS eps); gradients may use either, so take the larger.
            by_division = dz + FN_ULPS * eps + self.rel_s + u
            self.rel_p = np.maximum(by_division, self.tol_y + FN_ULPS * eps)
        # An output element sees at most two roundings into the subnormal range: its exp and its own.
        self.floor = 2 * (fmt.smallest_subnormal if floor is None else floor)

    def out(self, rows_tol):
        return np.moveaxis(_finite(rows_tol), -1, self.axis)


def _finite(tol):
    """Where the value itself is inf or NaN, the comparison is exact (the tolerance is unused)."""
    return np.where(np.isfinite(tol), tol, 0.0)


def _fmt(dtype) -> Format:
    return format_of(dtype)


# --------------------------------------------------------------------------------------------
# Values.

def softmax(x, axis=-1, temperature=1.0, *, dtype=None, floor=None):
    """|p~_j - p_j| <= p_j rel_p_j + floor."""
    x = np.asarray(x)
    r = _RowErrors(x, _checks.check_axis(axis, x.ndim), float(temperature), _fmt(dtype or x.dtype), floor)
    return r.out(r.p * r.rel_p + r.floor)


def log_softmax(x, axis=-1, temperature=1.0, *, dtype=None, floor=None):
    """|y~_j - y_j| <= tol_y_j + floor."""
    x = np.asarray(x)
    r = _RowErrors(x, _checks.check_axis(axis, x.ndim), float(temperature), _fmt(dtype or x.dtype), floor)
    return r.out(r.tol_y + r.floor)


def logsumexp(x, axis=-1, *, dtype=None, floor=None):
    """|lse~ - lse| <= rel_s + FN_ULPS eps L + u|m + L| (log of s, then the sum m + L)."""
    x = np.asarray(x)
    r = _RowErrors(x, _checks.check_axis(axis, x.ndim), 1.0, _fmt(dtype or x.dtype), floor)
    tol = r.rel_s + FN_ULPS * r.fmt.eps * r.L + r.fmt.unit_roundoff * np.abs(r.m + r.L) + r.floor
    return _finite(tol[..., 0])


def cross_entropy(logits, target, reduction="mean", weight=None, ignore_index=-100, label_smoothing=0.0, *,
                  dtype=None, floor=None):
    """Per example l_i = sum_c a_ic (-y_ic): |err| <= sum_c a_ic (tol_y_ic + (sum_error(C) + 4u)|y_ic|)
    (products, coefficient rounding, the C-term sum). Sum: + sum_error(N) sum|l|; mean: that over D,
    plus (sum_error(N) + 2u)|mean| for D's own sum and the division."""
    problem, r = _ce(logits, target, reduction, weight, ignore_index, label_smoothing, dtype, floor)
    u = r.fmt.unit_roundoff
    a = problem.coefficients()
    with np.errstate(**_QUIET):
        terms = np.where(a > 0, a * (r.tol_y + (sum_error(problem.n_classes, r.fmt) + 4 * u) * np.abs(r.y)), 0.0)
        row_tol = terms.sum(axis=-1) + r.floor
        losses = problem.row_losses(r.y)
    if problem.reduction == "none":
        return _finite(row_tol).reshape(problem.batch_shape)
    n = losses.size
    with np.errstate(**_QUIET):
        total_tol = row_tol.sum() + sum_error(n, r.fmt) * np.abs(losses).sum()
        if problem.reduction == "sum":
            return np.asarray(_finite(total_tol))
        mean = losses.sum() / problem.denominator
        return np.asarray(_finite(total_tol / problem.denominator + (sum_error(n, r.fmt) + 2 * u) * np.abs(mean)))


def _ce(logits, target, reduction, weight, ignore_index, label_smoothing, dtype, floor):
    problem = _CrossEntropy(logits, target, reduction, weight, ignore_index, label_smoothing)
    r = _RowErrors(problem.logits, 1, 1.0, _fmt(dtype or problem.dtype), floor)
    return problem, r


# --------------------------------------------------------------------------------------------
# Vector-Jacobian products.

def _rows_v(cotangent, axis, shape_last):
    v = np.asarray(cotangent).astype(np.float64)
    return np.moveaxis(v, axis, -1) if shape_last else v[..., None]


def softmax_vjp(x, cotangent, axis=-1, temperature=1.0, *, dtype=None, floor=None):
    """g_j = p_j (v_j - c)/tau, c = sum_k p_k v_k.
    err(c) <= sum_k p_k |v_k| (rel_p_k + sum_error(n) + u);  err(v_j - c) <= err(c) + u(|v_j| + |c|);
    |err g_j| <= p_j (|v_j - c| (rel_p_j + 2u) + err(v_j - c)) / tau + floor."""
    x = np.asarray(x)
    axis = _checks.check_axis(axis, x.ndim)
    tau = float(temperature)
    r = _RowErrors(x, axis, tau, _fmt(dtype or x.dtype), floor)
    u, v = r.fmt.unit_roundoff, _rows_v(cotangent, axis, True)
    with np.errstate(**_QUIET):
        c = (r.p * v).sum(axis=-1, keepdims=True)
        err_c = (r.p * np.abs(v) * (r.rel_p + sum_error(r.n, r.fmt) + u)).sum(axis=-1, keepdims=True)
        err_diff = err_c + u * (np.abs(v) + np.abs(c))
        # an underflowed p_j (absolute error <= floor) is multiplied by (v_j - c)/tau, and moves c by
        # at most floor * sum|v|
        underflow = r.floor * (np.abs(v - c) + r.p * np.abs(v).sum(axis=-1, keepdims=True)) / tau
        tol = r.p * (np.abs(v - c) * (r.rel_p + 2 * u) + err_diff) / tau + underflow + r.floor
    return r.out(tol)


def log_softmax_vjp(x, cotangent, axis=-1, temperature=1.0, *, dtype=None, floor=None):
    """g_j = (v_j - p_j S)/tau, S = sum v.  err(S) <= sum_error(n) sum|v|;
    |err g_j| <= (u|v_j| + p_j |S| (rel_p_j + u) + p_j err(S) + u|v_j - p_j S|)/tau + u|g_j| + floor."""
    x = np.asarray(x)
    axis = _checks.check_axis(axis, x.ndim)
    tau = float(temperature)
    r = _RowErrors(x, axis, tau, _fmt(dtype or x.dtype), floor)
    u, v = r.fmt.unit_roundoff, _rows_v(cotangent, axis, True)
    with np.errstate(**_QUIET):
        total = v.sum(axis=-1, keepdims=True)
        err_total = sum_error(r.n, r.fmt) * np.abs(v).sum(axis=-1, keepdims=True)
        g = v - r.p * total
        tol = (u * np.abs(v) + r.p * np.abs(total) * (r.rel_p + u) + r.p * err_total + u * np.abs(g)
               + r.floor * np.abs(total)) / tau + u * np.abs(g) / tau + r.floor  # underflowed p times S
    return r.out(tol)


def logsumexp_vjp(x, cotangent, axis=-1, *, dtype=None, floor=None):
    """g_j = v p_j, p either e_j/s or exp(x_j - lse): |err g_j| <= |v| p_j (max(rel_p_j, tol_lse + u|y_j|
    + FN_ULPS eps) + u) + floor."""
    x = np.asarray(x)
    axis = _checks.check_axis(axis, x.ndim)
    r = _RowErrors(x, axis, 1.0, _fmt(dtype or x.dtype), floor)
    u, eps, v = r.fmt.unit_roundoff, r.fmt.eps, _rows_v(cotangent, axis, False)
    with np.errstate(**_QUIET):
        tol_lse = r.rel_s + FN_ULPS * eps * r.L + u * np.abs(r.m + r.L)
        rel_p = np.maximum(r.rel_p, tol_lse + u * np.abs(r.y) + FN_ULPS * eps)
        tol = np.abs(v) * (r.p * (rel_p + u) + r.floor) + r.floor  # an underflowed p_j times v
    return r.out(tol)


def cross_entropy_vjp(logits, cotangent, target=None, reduction="mean", weight=None, ignore_index=-100,
                      label_smoothing=0.0, *, dtype=None, floor=None):
    """g_ic = r_i (A_i p_ic - a_ic):
    |err g_ic| <= |r_i| (A_i p_ic (rel_p_ic + sum_error(C) + 2u) + 2u a_ic + u|A_i p_ic - a_ic|) + |g_ic| rel_r
    + floor, with rel_r = sum_error(N) + 2u for the mean (D's sum and the division), 0 otherwise."""
    problem, r = _ce(logits, target, reduction, weight, ignore_index, label_smoothing, dtype, floor)
    u, C = r.fmt.unit_roundoff, problem.n_classes
    with np.errstate(**_QUIET):
        scale = np.abs(problem.row_scale(cotangent))
        a = problem.coefficients()
        big_a = problem.row_coef_sum[:, None]
        diff = big_a * r.p - a
        rel_r = sum_error(r.p.shape[0], r.fmt) + 2 * u if problem.reduction == "mean" else 0.0
        tol = scale * (big_a * (r.p * (r.rel_p + sum_error(C, r.fmt) + 2 * u) + r.floor) + 2 * u * a + u * np.abs(diff)) \
            + scale * np.abs(diff) * rel_r + r.floor  # r.floor * |r| A: an underflowed p_c times r A
    return _finite(tol).reshape(problem.shape)


VALUE_BOUNDS = {"softmax": softmax, "log_softmax": log_softmax, "logsumexp": logsumexp,
                "cross_entropy": cross_entropy}
VJP_BOUNDS = {"softmax": softmax_vjp, "log_softmax": log_softmax_vjp, "logsumexp": logsumexp_vjp,
              "cross_entropy": cross_entropy_vjp}


def value_bound(op, x, *, dtype=None, floor=None, **kwargs):
    """Absolute tolerance for op(x, **kwargs) computed natively in `dtype` (default x's)."""
    return VALUE_BOUNDS[op](x, **kwargs, dtype=dtype, floor=floor)


def vjp_bound(op, x, cotangent, *, dtype=None, floor=None, **kwargs):
    """Absolute tolerance for vjp(op, x, cotangent, **kwargs) computed natively in `dtype`."""
    return VJP_BOUNDS[op](x, cotangent, **kwargs, dtype=dtype, floor=floor)


def reference_value_bound(op, x, *, floor=None, **kwargs):
    """How far the reference (float64 inside, one rounding to x's dtype) may be from exact:
    the float64 bound plus half an ulp of the result in x's dtype."""
    return _plus_half_ulp(value_bound(op, np.asarray(x), dtype="float64", floor=floor, **kwargs),
                          _reference_value(op, x, kwargs), np.asarray(x).dtype)


def reference_vjp_bound(op, x, cotangent, *, floor=None, **kwargs):
    from .reference import vjp

    return _plus_half_ulp(vjp_bound(op, np.asarray(x), cotangent, dtype="float64", floor=floor, **kwargs),
                          vjp(op, x, cotangent, **kwargs), np.asarray(x).dtype)


def _reference_value(op, x, kwargs):
    from . import reference

    return getattr(reference, op)(x, **kwargs)


def _plus_half_ulp(tol64, value, dtype):
    from .reference.exact import ulp

    dtype = np.dtype(dtype) if np.dtype(dtype).name in ("float16", "bfloat16", "float32", "float64") \
        else np.dtype(np.float64)
    if dtype == np.float64:
        return tol64
    return tol64 + 0.5 * ulp(np.asarray(value).astype(np.float64), dtype)
