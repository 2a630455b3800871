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
from .reference.losses import _alpha_at_target, _distributions, _hinge_parts, _IndexLoss
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
    (products, coefficient rounding, the C-term sum); a coefficient below the smallest normal is rounded
    into the subnormal range (or flushed) with an absolute error of up to the floor's unit, times |y_ic|.
    Sum: + sum_error(N) sum|l|; mean: that over D, plus (sum_error(N) + 2u)|mean| for D's own sum and the
    division."""
    problem, r = _ce(logits, target, reduction, weight, ignore_index, label_smoothing, dtype, floor)
    u = r.fmt.unit_roundoff
    a = problem.coefficients()
    with np.errstate(**_QUIET):
        subnormal_a = (a > 0) & (a < r.fmt.smallest_normal)
        terms = np.where(a > 0, a * (r.tol_y + (sum_error(problem.n_classes, r.fmt) + 4 * u) * np.abs(r.y))
                         + subnormal_a * r.floor / 2 * np.abs(r.y), 0.0)
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
        subnormal_a = (a > 0) & (a < r.fmt.smallest_normal)  # a coefficient rounded into the subnormal range
        tol = scale * (big_a * (r.p * (r.rel_p + sum_error(C, r.fmt) + 2 * u) + r.floor) + 2 * u * a + u * np.abs(diff)
                       + subnormal_a * r.floor) \
            + scale * np.abs(diff) * rel_r + r.floor  # r.floor * |r| A: an underflowed p_c times r A
    return _finite(tol).reshape(problem.shape)


# --------------------------------------------------------------------------------------------
# The loss family (reference/losses.py). Losses on logits with class-index targets are computed the way
# a framework composes them: y_t = log_softmax at the target (error tol_y), p = softmax or exp(y) (relative
# error rel_p), r = 1 - p_t rounded (err_r below), then the loss's own few operations, each rounded (u);
# their gradients by autograd through those same operations. Per example, then reduced by _reduce_bound.

def _loss_problem(logits, target, reduction, dtype, floor):
    problem = _IndexLoss(logits, target, reduction)
    r = _RowErrors(problem.logits, 1, 1.0, _fmt(dtype or problem.dtype), floor)
    return problem, r


def _at_target(problem, r):
    """(p_t, 1 - p_t, -log p_t) exact enough (float64), and err_r, the error of a native 1 - p_t:
    p_t's own (p_t rel_p_t) and the subtraction's rounding (u r)."""
    with np.errstate(**_QUIET):
        _, q, rest, nll = problem.at_target()
        rel_q = r.rel_p[problem.rows, problem.target]
        return q, rest, nll, q * rel_q + r.fmt.unit_roundoff * rest


def _pow_error(base, err, k, fmt):
    """|fl(b~^k) - b^k| for a base b known to within err, k >= -1 (k = 0: pow returns exactly 1):
    the mean value theorem, k xi^(k-1) err with xi in [b - err, b + err], where err <= b/2 for k < 1
    (xi >= b/2); past that, err^k for 0 < k < 1 (|a^k - b^k| <= |a - b|^k) and unbounded (inf) for k < 0.
    Plus pow's own evaluation, as exp(k log b): (FN_ULPS eps + |k log b| (FN_ULPS eps + u)) b^k."""
    if k == 0:
        return np.zeros_like(base)
    eps, u = fmt.eps, fmt.unit_roundoff
    with np.errstate(**_QUIET):
        if k >= 1:
            spread = k * (base + err) ** (k - 1) * err
        else:
            near = k * np.abs((base / 2) ** (k - 1)) * err
            spread = np.where(err <= base / 2, np.abs(near), err ** k if k > 0 else np.inf)
        log_b = np.where(base > 0, np.abs(np.log(base)), 0.0)
        return spread + (FN_ULPS * eps + abs(k) * log_b * (FN_ULPS * eps + u)) * base ** k


def _reduce_bound(problem, row_tol, losses, fmt):
    """none: per example; sum: + sum_error(N) sum|l|; mean: that / N plus 2u |mean| (N, or 1/N, and the
    division)."""
    u = fmt.unit_roundoff
    if problem.reduction == "none":
        return _finite(row_tol).reshape(problem.batch_shape)
    n = max(losses.size, 1)
    with np.errstate(**_QUIET):
        total = row_tol.sum() + sum_error(n, fmt) * np.abs(losses).sum()
        if problem.reduction == "sum":
            return np.asarray(_finite(total))
        return np.asarray(_finite(total / n + 2 * u * np.abs(losses.sum() / n)))


def _unbounded(tol):
    """NaN (a NaN or inf reference value, compared exactly) becomes 0; +inf stays: no finite tolerance
    admits the algorithm there (documented where it is returned)."""
    return np.where(np.isnan(tol), 0.0, tol)


def focal_loss(logits, target, gamma=2.0, alpha=None, reduction="mean", *, dtype=None, floor=None):
    """l = alpha_t R L with R = r^gamma, r = 1 - p_t, L = -y_t:
    |err l| <= alpha_t (err(R) (L + tol_y_t) + R tol_y_t + 2u R L) + floor, err(R) = _pow_error(r, err_r, gamma)."""
    problem, r = _loss_problem(logits, target, reduction, dtype, floor)
    u = r.fmt.unit_roundoff
    alpha_t = _alpha_at_target(problem, alpha)
    tol_y = r.tol_y[problem.rows, problem.target]
    with np.errstate(**_QUIET):
        q, rest, nll, err_r = _at_target(problem, r)
        power = rest ** gamma
        losses = np.where(alpha_t > 0, alpha_t * power * nll, 0.0)
        row_tol = alpha_t * (_pow_error(rest, err_r, gamma, r.fmt) * (nll + tol_y) + power * tol_y
                             + 2 * u * power * nll) + r.floor
    return _reduce_bound(problem, row_tol, losses, r.fmt)


def focal_loss_vjp(logits, cotangent, target=None, gamma=2.0, alpha=None, reduction="mean", *, dtype=None,
                   floor=None):
    """Autograd: c = r_i alpha_t F with F = r^gamma + gamma p_t L r^(gamma-1) (dl/dy_t), then log_softmax's
    vjp with cotangent c onehot: |err g| <= log_softmax_vjp(x, c onehot) + err(c) |p - onehot|, where
    err(F) <= err(r^gamma) + gamma (p_t rel_p_t L P + p_t tol_y_t P + p_t L err(P)) + 4u F, P = r^(gamma-1),
    err(c) <= |r_i| alpha_t (err(F) + 2u F) (the products and the mean's 1/N). gamma = 0: F = 1 exactly.
    Unbounded (inf) where 0 < gamma < 1 and err_r > r/2: r^(gamma-1) of a 1 - p_t with no correct bit."""
    problem, r = _loss_problem(logits, target, reduction, dtype, floor)
    u, t = r.fmt.unit_roundoff, problem.target
    alpha_t = _alpha_at_target(problem, alpha)
    scale = np.abs(problem.row_scale(cotangent))[:, 0]
    with np.errstate(**_QUIET):
        q, rest, nll, err_r = _at_target(problem, r)
        qL = np.where(q > 0, q * nll, 0.0)  # 0 log 0: the term is 0 at p_t = 0
        if gamma == 0:
            factor, err_factor = np.ones_like(rest), np.zeros_like(rest)
        else:
            pw = np.where(rest > 0, rest ** (gamma - 1), np.inf if gamma < 1 else float(gamma == 1))
            factor = rest ** gamma + gamma * np.where(qL > 0, qL * pw, 0.0)
            err_factor = (_pow_error(rest, err_r, gamma, r.fmt) + 4 * u * factor + gamma * np.where(
                q > 0, (qL * r.rel_p[problem.rows, t] + q * r.tol_y[problem.rows, t]) * pw
                + qL * _pow_error(rest, err_r, gamma - 1, r.fmt), 0.0))
        c = scale * alpha_t * factor
        err_c = scale * alpha_t * (err_factor + 2 * u * factor)
        onehot = np.zeros_like(r.p)
        onehot[problem.rows, t] = 1.0
        tol = log_softmax_vjp(problem.logits, c[:, None] * onehot, dtype=r.fmt.name, floor=floor) \
            + err_c[:, None] * np.abs(r.p - onehot) + r.floor
    return _unbounded(np.where((alpha_t > 0)[:, None], tol, r.floor)).reshape(problem.shape)


def mse_loss(logits, target, form="full", reduction="mean", *, dtype=None, floor=None):
    """(p_c - y_c)^2: |err| <= 2|d| err(d) + err(d)^2 + u d^2 with err(d) = p_c rel_p_c (c != t) or err_r;
    the C-term sum of the full form adds (sum_error(C) + u) l."""
    problem, r = _loss_problem(logits, target, reduction, dtype, floor)
    u = r.fmt.unit_roundoff
    with np.errstate(**_QUIET):
        _, rest, _, err_r = _at_target(problem, r)
        d, err_d = r.p.copy(), r.p * r.rel_p
        d[problem.rows, problem.target], err_d[problem.rows, problem.target] = rest, err_r
        terms = d ** 2
        term_tol = 2 * d * err_d + err_d ** 2 + u * terms
        if form == "target":
            losses = terms[problem.rows, problem.target]
            row_tol = term_tol[problem.rows, problem.target]
        else:
            losses = terms.sum(axis=-1)
            row_tol = term_tol.sum(axis=-1) + (sum_error(problem.n_classes, r.fmt) + u) * losses
    return _reduce_bound(problem, row_tol + r.floor, losses, r.fmt)


def mse_loss_vjp(logits, cotangent, target=None, form="full", reduction="mean", *, dtype=None, floor=None):
    """Autograd: w = r_i 2 (p - y) (only its target entry for form="target"), then softmax's vjp:
    |err g_j| <= softmax_vjp(x, w)_j + p_j (err(w_j) + sum_c p_c err(w_c)) with
    err(w_c) = |r_i| 2 err(d_c) + 2u |w_c| (d_c = p_c - y_c as in mse_loss)."""
    problem, r = _loss_problem(logits, target, reduction, dtype, floor)
    u = r.fmt.unit_roundoff
    scale = np.abs(problem.row_scale(cotangent))
    with np.errstate(**_QUIET):
        _, rest, _, err_r = _at_target(problem, r)
        d, err_d = r.p.copy(), r.p * r.rel_p
        d[problem.rows, problem.target], err_d[problem.rows, problem.target] = -rest, err_r
        if form == "target":
            keep = np.zeros_like(d)
            keep[problem.rows, problem.target] = 1.0
            d, err_d = d * keep, err_d * keep
        w = 2 * scale * d
        err_w = 2 * scale * err_d + 2 * u * np.abs(w)
        tol = softmax_vjp(problem.logits, w, dtype=r.fmt.name, floor=floor) \
            + r.p * (err_w + (r.p * err_w).sum(axis=-1, keepdims=True))
    return _finite(tol).reshape(problem.shape)


def _hinge_slack_error(problem, r, margin):
    """Per example the slack s = margin - (z_t - m), |err s| <= u (2|margin| + |z_t - m| + |m| + |s|) (either
    margin - (z_t - m) or (m + margin) - z_t, with margin rounded into the dtype), and the active side's
    gradient without its scale: 1 at the target, 1/k at the k classes tied for m. The form that adds the
    margin first rounds z_j + margin, which merges the classes within 2u (|m| + |margin|) of m into the tie:
    those (`near`) may share the gradient in any way."""
    u = r.fmt.unit_roundoff
    with np.errstate(**_QUIET):
        slack, others, m = _hinge_parts(problem, margin)
        err = u * (2 * abs(margin) + np.abs(margin - slack) + np.abs(m) + np.abs(slack))
        tied = others == m[:, None]
        near = (m[:, None] - others <= 2 * u * (np.abs(m) + abs(margin))[:, None]) & (others > -np.inf)
        active = np.where(near & ~tied, 1.0, tied / tied.sum(axis=-1, keepdims=True))
        active[problem.rows, problem.target] = 1.0
    return slack, np.where(np.isfinite(err), err, 0.0), active, near & ~tied


def multiclass_hinge_loss(logits, target, margin=1.0, reduction="mean", *, dtype=None, floor=None):
    """max(0, s) is 1-Lipschitz: |err l| <= |err s| (see _hinge_slack_error) + floor."""
    problem, r = _loss_problem(logits, target, reduction, dtype, floor)
    slack, err, _, _ = _hinge_slack_error(problem, r, margin)
    with np.errstate(**_QUIET):
        losses = np.maximum(slack, 0.0)
    return _reduce_bound(problem, err + r.floor, losses, r.fmt)


def multiclass_hinge_loss_vjp(logits, cotangent, target=None, margin=1.0, reduction="mean", *, dtype=None,
                              floor=None):
    """The gradient's entries are r_i times -1, 1/k or 0: |err| <= 2u|g| (1/k and the mean's 1/N) + floor.
    Where |s| <= err(s) a correct implementation may land on either side of the kink: there the tolerance
    is the active side's |g| (|r_i| at the target, |r_i|/k at the tied classes). Where classes are within a
    rounding of the max (see _hinge_slack_error) the tied classes and those may share |r_i| in any way."""
    problem, r = _loss_problem(logits, target, reduction, dtype, floor)
    slack, err, active, near = _hinge_slack_error(problem, r, margin)
    scale = np.abs(problem.row_scale(cotangent))
    active = active * scale
    with np.errstate(**_QUIET):
        g = np.where((slack > 0)[:, None], active, 0.0)
        shared = near.any(axis=-1, keepdims=True) & (active > 0)  # the tied and the near classes of such rows
        shared[problem.rows, problem.target] = False  # (the target's -r_i does not depend on the sharing)
        tol = np.where((np.abs(slack) <= err)[:, None], active, 2 * r.fmt.unit_roundoff * g)
        tol = np.where(shared & (slack > -err)[:, None], np.maximum(tol, scale), tol) + r.floor
    return _finite(tol).reshape(problem.shape)


def _distribution_errors(p, q, dtype, floor):
    """float64 p, q, the format, the underflow unit, and |log p|, |log q| where they are used (p > 0)."""
    p, q, in_dtype = _distributions(p, q)
    fmt = _fmt(dtype or in_dtype)
    unit = fmt.smallest_subnormal if floor is None else floor
    with np.errstate(**_QUIET):
        log_p = np.where(p > 0, np.abs(np.log(p)), 0.0)
        log_q = None if q is None else np.abs(np.log(q))
    return p, q, fmt, unit, log_p, log_q


def _row_sum_bound(terms, term_tol, fmt, unit):
    """A row sum of terms each within term_tol: + sum_error(n) sum|t| + u|sum|, and `unit` for each term
    and for the sum that may round into the subnormal range."""
    with np.errstate(**_QUIET):
        total = terms.sum(axis=-1)
        tiny = (np.abs(terms) < fmt.smallest_normal).sum(axis=-1) + 1
        tol = (term_tol.sum(axis=-1) + sum_error(terms.shape[-1], fmt) * np.abs(terms).sum(axis=-1)
               + fmt.unit_roundoff * np.abs(total) + tiny * unit)
    return _finite(tol)


def entropy(p, *, dtype=None, floor=None):
    """Terms -p log p >= 0, each within (FN_ULPS eps + u) of itself (log, product)."""
    p, _, fmt, unit, log_p, _ = _distribution_errors(p, None, dtype, floor)
    terms = p * log_p
    return _row_sum_bound(terms, (FN_ULPS * fmt.eps + fmt.unit_roundoff) * terms, fmt, unit)


def kl_divergence(p, q, *, dtype=None, floor=None):
    """Terms p log(p/q) (from the quotient) or p log p - p log q (xlogy twice): each within
    p ((FN_ULPS eps + 2u)(|log p| + |log q|) + u); 0 where p = 0."""
    p, q, fmt, unit, log_p, log_q = _distribution_errors(p, q, dtype, floor)
    u = fmt.unit_roundoff
    with np.errstate(**_QUIET):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
        term_tol = np.where(p > 0, p * ((FN_ULPS * fmt.eps + 2 * u) * (log_p + log_q) + u), 0.0)
    return _row_sum_bound(terms, term_tol, fmt, unit)


def distribution_cross_entropy(p, q, *, dtype=None, floor=None):
    """Terms -p log q >= 0, each within (FN_ULPS eps + u) of itself."""
    p, q, fmt, unit, _, log_q = _distribution_errors(p, q, dtype, floor)
    with np.errstate(**_QUIET):
        terms = np.where(p > 0, p * log_q, 0.0)
    return _row_sum_bound(terms, (FN_ULPS * fmt.eps + fmt.unit_roundoff) * terms, fmt, unit)


def _distribution_vjp_bound(p, cotangent, derivative, err_derivative, fmt, unit):
    """g = v d: |err g| <= |v| err(d) + u|g| + unit."""
    v = np.asarray(cotangent).astype(np.float64)[..., None]
    with np.errstate(**_QUIET):
        tol = np.abs(v) * err_derivative + fmt.unit_roundoff * np.abs(v * derivative) + unit
    return _finite(tol)


def entropy_vjp(p, cotangent, *, dtype=None, floor=None):
    """d = -(log p + 1): err(d) <= FN_ULPS eps |log p| + u |log p + 1|."""
    p, _, fmt, unit, log_p, _ = _distribution_errors(p, None, dtype, floor)
    with np.errstate(**_QUIET):
        d = -(np.log(p) + 1)
    return _distribution_vjp_bound(p, cotangent, d, FN_ULPS * fmt.eps * log_p + fmt.unit_roundoff * np.abs(d),
                                   fmt, unit)


def kl_divergence_vjp(p, cotangent, q=None, *, dtype=None, floor=None):
    """d = log(p/q) + 1 (or log p + 1 - log q): err(d) <= (FN_ULPS eps + 2u)(|log p| + |log q|) + 4u.
    Autograd of xlogy(p, p) forms v p / p for the 1: v p may round into the subnormal range (absolute error
    `unit`), which the division by p turns into unit / p."""
    p, q, fmt, unit, log_p, log_q = _distribution_errors(p, q, dtype, floor)
    u = fmt.unit_roundoff
    with np.errstate(**_QUIET):
        d = np.log(p) - np.log(q) + 1
        subnormal_product = np.where(p > 0, unit / p, 0.0)
    return _distribution_vjp_bound(p, cotangent, d, (FN_ULPS * fmt.eps + 2 * u) * (log_p + log_q) + 4 * u,
                                   fmt, unit) + subnormal_product


def distribution_cross_entropy_vjp(p, cotangent, q=None, *, dtype=None, floor=None):
    """d = -log q: err(d) <= (FN_ULPS eps + u) |log q|."""
    p, q, fmt, unit, _, log_q = _distribution_errors(p, q, dtype, floor)
    return _distribution_vjp_bound(p, cotangent, log_q, (FN_ULPS * fmt.eps + fmt.unit_roundoff) * log_q, fmt, unit)


VALUE_BOUNDS = {"softmax": softmax, "log_softmax": log_softmax, "logsumexp": logsumexp,
                "cross_entropy": cross_entropy, "focal_loss": focal_loss, "mse_loss": mse_loss,
                "multiclass_hinge_loss": multiclass_hinge_loss, "entropy": entropy, "kl_divergence": kl_divergence,
                "distribution_cross_entropy": distribution_cross_entropy}
VJP_BOUNDS = {"softmax": softmax_vjp, "log_softmax": log_softmax_vjp, "logsumexp": logsumexp_vjp,
              "cross_entropy": cross_entropy_vjp, "focal_loss": focal_loss_vjp, "mse_loss": mse_loss_vjp,
              "multiclass_hinge_loss": multiclass_hinge_loss_vjp, "entropy": entropy_vjp,
              "kl_divergence": kl_divergence_vjp, "distribution_cross_entropy": distribution_cross_entropy_vjp}


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
