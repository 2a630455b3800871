"""The exact oracle: every op and vjp in arbitrary precision (mpmath), rounded once to the dtype.

Each result is the input's exact value (every float is a dyadic rational) pushed through the op in
mpmath and rounded once, to nearest-even, into the requested format, subnormals included. How:

* Working precision is the format's precision plus GUARD_BITS (64) plus 2 log2(n) for rows of n
  entries (see working_prec). Each row is reduced to the
  exact differences d_j = x_j - max x (exact mpf subtraction), z_j = d_j / tau, e_j = exp(z_j), and
  t = sum_{j != argmax} e_j, so that s = 1 + t and log s = log1p(t) are accurate even when t is tiny.
  log-softmax is z_j - log1p(t): both terms are <= 0 and >= 0 respectively, so nothing cancels.
* Outputs that can cancel (log-sum-exp m + log1p(t), the softmax and log-softmax vjps, the
  cross-entropy gradient) carry the magnitude of their largest term; when more than
  precision + GUARD_BITS bits were lost the row is recomputed at a higher precision (Ziv's strategy).
  A result that keeps cancelling is exactly 0 to within far less than the smallest subnormal, and
  the precision is capped where that is proven (see _ziv).
* exp(z) for z < -(prec + 1100) ln 2 is taken as 0: it is below 2**-1100 (a fraction of the
  smallest float64 subnormal) and below 2**-prec of s >= 1.
* exps are computed once per distinct value of a row, and a small cache keeps the last rows' exact
  quantities so that an op's value and its vjp on the same input share them.

Semantics (NaN, inf, ignore_index, 0 log 0, D = 0) are exactly the reference's; the arguments are
validated by the same checks. The shared machinery is exact_rows.py; the loss family's oracle is
exact_losses.py, re-exported here: this module answers every op.
"""
from __future__ import annotations

import mpmath
import numpy as np
from mpmath import mp, mpf

from . import validation
from .dtypes import FORMATS
from .exact_losses import (distribution_cross_entropy, distribution_cross_entropy_vjp, entropy, entropy_vjp,
                           focal_loss, focal_loss_vjp, kl_divergence, kl_divergence_vjp, mse_loss, mse_loss_vjp,
                           multiclass_hinge_loss, multiclass_hinge_loss_vjp)
from .exact_rows import (GUARD_BITS, NAN, ExactLogits, exact_row, format_or, map_rows, round_mpf, rows_of, ulp,  # noqa: F401
                         ulp_error, working_prec, ziv)  # round_mpf, ulp, ulp_error: re-exported


def softmax(x, axis=-1, temperature=1.0, dtype=None) -> np.ndarray:
    rows, axis, in_dtype = rows_of(x, axis)
    tau, fmt = validation.check_temperature(temperature), format_or(dtype, in_dtype)
    prec = working_prec(fmt, rows.shape[-1])
    out = map_rows(rows, lambda i, r: exact_row(r, tau, prec).rounded("p", fmt), rows.shape[-1])
    return np.moveaxis(out, -1, axis).astype(fmt.dtype)


def log_softmax(x, axis=-1, temperature=1.0, dtype=None) -> np.ndarray:
    rows, axis, in_dtype = rows_of(x, axis)
    tau, fmt = validation.check_temperature(temperature), format_or(dtype, in_dtype)
    prec = working_prec(fmt, rows.shape[-1])
    out = map_rows(rows, lambda i, r: exact_row(r, tau, prec).rounded("y", fmt), rows.shape[-1])
    return np.moveaxis(out, -1, axis).astype(fmt.dtype)


def logsumexp(x, axis=-1, dtype=None) -> np.ndarray:
    rows, axis, in_dtype = rows_of(x, axis)
    fmt = format_or(dtype, in_dtype)

    def per_row(i, r):
        def compute(prec):
            row = exact_row(r, 1.0, prec)
            if row.special:
                return [row.lse], [None]
            return [row.m + row.log_s], [max(abs(row.m), row.log_s)]
        return ziv(compute, fmt, r.size)[0]

    return map_rows(rows, per_row, None).astype(fmt.dtype)


# --------------------------------------------------------------------------------------------
# Cross-entropy: l_i = sum_c a_ic (-log p_ic), a_ic = w_c q_ic, with 0 log 0 = 0;
# gradient r_i (A_i p_i - a_i) with r_i from the reduction and the cotangent.

class _CrossEntropyProblem:
    def __init__(self, logits, target, reduction, weight, ignore_index, label_smoothing):
        (array, self.kind, t, self.reduction, weight, ignore_index,
         self.smoothing) = validation.cross_entropy_arguments(logits, target, reduction, weight, ignore_index,
                                                              label_smoothing)
        self.dtype, self.shape, self.batch_shape = array.dtype, array.shape, array.shape[:-1]
        self.n_classes = array.shape[-1]
        self.weight = np.ones(self.n_classes) if weight is None else weight
        self.rows = array.astype(np.float64).reshape(-1, self.n_classes)
        if self.kind == "index":
            self.target = t.reshape(-1)
            self.valid = self.target != ignore_index
        else:
            self.target = t.reshape(-1, self.n_classes)
            self.valid = np.ones(self.rows.shape[0], dtype=bool)

    def coefficients(self, i: int) -> list:
        """a_ic = w_c q_ic for example i, exact up to the working precision."""
        C, eps = self.n_classes, mpf(self.smoothing)
        if not self.valid[i]:
            return [mpf(0)] * C
        spread = eps / C
        keep = mpmath.fsub(1, eps, exact=True)
        if self.kind == "index":
            y = int(self.target[i])
            q = [spread + (keep if c == y else 0) for c in range(C)]
        else:
            q = [keep * mpf(v) + spread for v in self.target[i].tolist()]
        return [mpf(w) * qc for w, qc in zip(self.weight.tolist(), q)]

    def denominator(self) -> mpf:
        if self.kind == "probability":
            return mpf(self.rows.shape[0])
        return mpmath.fsum(mpf(float(self.weight[y])) for y, ok in zip(self.target.tolist(), self.valid) if ok)

    def row_loss(self, i: int, prec: int) -> mpf:
        a = self.coefficients(i)
        row = exact_row(self.rows[i], 1.0, prec)
        terms = [ac * -y for ac, y in zip(a, row.log_probabilities()) if ac != 0]
        return mpmath.fsum(terms) if terms else mpf(0)


def cross_entropy(logits, target, reduction="mean", weight=None, ignore_index=-100, label_smoothing=0.0,
                  z_loss=0.0, softcap=None, dtype=None) -> np.ndarray:
    problem = _CrossEntropyProblem(logits, target, reduction, weight, ignore_index, label_smoothing)
    fmt = format_or(dtype, problem.dtype)
    head = _Head.of(problem, z_loss, softcap)
    if head is not None:
        return head.value(fmt)
    prec = working_prec(fmt, problem.n_classes)
    with mp.workprec(prec):
        losses = [problem.row_loss(i, prec) for i in range(problem.rows.shape[0])]
        if problem.reduction == "none":
            return np.array([round_mpf(v, fmt) for v in losses], dtype=np.float64).reshape(
                problem.batch_shape).astype(fmt.dtype)
        total = mpmath.fsum(losses) if losses else mpf(0)
        if problem.reduction == "mean":
            d = problem.denominator()
            total = total / d if d != 0 else NAN
    return np.asarray(round_mpf(total, fmt)).astype(fmt.dtype)


def cross_entropy_vjp(x, cotangent, target=None, reduction="mean", weight=None, ignore_index=-100,
                       label_smoothing=0.0, z_loss=0.0, softcap=None, dtype=None):
    if target is None:
        raise TypeError("target: vjp('cross_entropy', ...) needs the target= keyword")
    problem = _CrossEntropyProblem(x, target, reduction, weight, ignore_index, label_smoothing)
    fmt = format_or(dtype, problem.dtype)
    v = validation.loss_cotangent(cotangent, problem.batch_shape, problem.reduction)
    head = _Head.of(problem, z_loss, softcap)
    if head is not None:
        return head.vjp(v, fmt)
    n_rows = problem.rows.shape[0]
    with mp.workprec(fmt.precision + GUARD_BITS):
        d = problem.denominator() if problem.reduction == "mean" else None

    def scale(i) -> mpf:
        if problem.reduction == "none":
            return mpf(v[i])
        if problem.reduction == "sum":
            return mpf(v[0])
        return mpf(v[0]) / d if d != 0 else NAN

    def per_row(i, r):
        def compute(prec):
            a = problem.coefficients(i)
            big_a = mpmath.fsum(a)
            if big_a == 0:
                return [scale(i) * 0 if problem.reduction == "mean" and d == 0 else mpf(0)] * len(a), \
                    [None] * len(a)
            ri = scale(i)
            p = exact_row(r, 1.0, prec).probabilities()
            values = [ri * (big_a * pc - ac) for pc, ac in zip(p, a)]
            scales = [abs(ri) * (big_a * pc + ac) for pc, ac in zip(p, a)]
            return values, scales
        return ziv(compute, fmt, r.size)

    out = map_rows(problem.rows, per_row, problem.n_classes) if n_rows else np.zeros((0, problem.n_classes))
    return out.reshape(problem.shape).astype(fmt.dtype)


# --------------------------------------------------------------------------------------------
# Cross-entropy's LM-head options (reference.ops.HeadOptions): l = cap tanh(x / cap), z_loss lse(l)^2 per valid
# example; the gradient per logit g_c = (r (A p_c - a_c) + r_z 2 z_loss lse p_c) sech^2(x_c / cap).

class _Head:
    def __init__(self, problem: _CrossEntropyProblem, z_loss: float, softcap):
        rows = problem.rows[problem.valid]
        if np.isnan(rows).any() or (softcap is None and (rows == np.inf).any()):
            raise ValueError("logits: with z_loss or softcap the exact oracle takes no NaN, and +inf only under a "
                             "soft-cap (which maps it to the cap)")
        self.problem, self.z_loss, self.softcap = problem, z_loss, softcap
        self.n_valid = max(int(problem.valid.sum()), 1)

    @classmethod
    def of(cls, problem, z_loss, softcap) -> "_Head | None":
        z_loss, softcap = validation.check_non_negative(z_loss, "z_loss"), validation.check_softcap(softcap)
        return None if z_loss == 0 and softcap is None else cls(problem, z_loss, softcap)

    def _row(self, i: int) -> ExactLogits:
        return ExactLogits([mpf(v) for v in self.problem.rows[i].tolist()], self.softcap)

    def _parts(self, i: int):
        """(ce_i, z_i, the magnitude z_i's lse may cancel from, squared and scaled) at the working precision."""
        if not self.problem.valid[i]:
            return mpf(0), mpf(0), mpf(0)
        row = self._row(i)
        ce = mpmath.fsum(ac * gc for ac, gc in zip(self.problem.coefficients(i), row.gap) if ac != 0)
        return ce, self.z_loss * row.lse ** 2, self.z_loss * row.lse_scale ** 2

    def value(self, fmt) -> np.ndarray:
        problem, n_rows = self.problem, self.problem.rows.shape[0]
        if problem.reduction == "none":
            def per_row(i):
                def compute(prec):
                    ce, z, z_scale = self._parts(i)
                    return [ce + z], [ce + z_scale]
                return ziv(compute, fmt, problem.n_classes)[0]
            out = [per_row(i) for i in range(n_rows)]
            return np.array(out, dtype=np.float64).reshape(problem.batch_shape).astype(fmt.dtype)

        def total(prec):
            parts = [self._parts(i) for i in range(n_rows)]
            ce, z, z_scale = (mpmath.fsum(p[k] for p in parts) for k in range(3))
            if problem.reduction == "sum":
                return [ce + z], [ce + z_scale]
            d = problem.denominator()
            if d == 0:
                return [NAN], [None]
            return [ce / d + z / self.n_valid], [ce / d + z_scale / self.n_valid]

        return np.asarray(ziv(total, fmt, max(n_rows, 1) * problem.n_classes)[0]).astype(fmt.dtype)

    def _scales(self, v):
        """(r_i, r_z,i) for every example from the cotangent v (flat)."""
        problem = self.problem
        if problem.reduction == "none":
            r = [mpf(x) for x in v.tolist()]
            return [(ri, ri if ok else mpf(0)) for ri, ok in zip(r, problem.valid)]
        r = mpf(v[0])
        if problem.reduction == "sum":
            return [(r, r if ok else mpf(0)) for ok in problem.valid]
        d = problem.denominator()
        r_ce = r / d if d != 0 else NAN
        return [(r_ce, r / self.n_valid if ok else mpf(0)) for ok in problem.valid]

    def _gradient_row(self, i: int, r, r_z):
        """(g_c, the magnitude of g_c's terms) for example i."""
        n = self.problem.n_classes
        if not self.problem.valid[i]:
            return [r * 0] * n, [None] * n  # 0, or NaN for a mean over nothing (as the reference's)
        if mpmath.isnan(r):
            return [NAN] * n, [None] * n
        row, a = self._row(i), self.problem.coefficients(i)
        big_a, zl = mpmath.fsum(a), 2 * self.z_loss * r_z
        values = [(r * (big_a * pc - ac) + zl * row.lse * pc) * sc for pc, ac, sc in zip(row.p, a, row.sech2)]
        scales = [(abs(r) * (big_a * pc + ac) + abs(zl) * row.lse_scale * pc) * sc
                  for pc, ac, sc in zip(row.p, a, row.sech2)]
        return values, scales

    def vjp(self, v, fmt) -> np.ndarray:
        problem = self.problem
        with mp.workprec(fmt.precision + GUARD_BITS):
            shares = self._scales(v)
        rows = [ziv(lambda prec: self._gradient_row(i, *shares[i]), fmt, problem.n_classes)
                for i in range(problem.rows.shape[0])]
        out = np.array(rows, dtype=np.float64).reshape(problem.shape) if rows else np.zeros(problem.shape)
        return out.astype(fmt.dtype)

    def jvp(self, t, fmt) -> np.ndarray:
        """sum_c g_c t_c at a unit cotangent, per example ("none") or summed."""
        problem, n_rows = self.problem, self.problem.rows.shape[0]
        with mp.workprec(fmt.precision + GUARD_BITS):
            shares = self._scales(np.ones(n_rows if problem.reduction == "none" else 1))

        def row_terms(i, prec):
            values, scales = self._gradient_row(i, *shares[i])
            tc = [mpf(x) for x in t[i].tolist()]
            return (mpmath.fsum(g * c for g, c in zip(values, tc)),
                    mpmath.fsum((s or 0) * abs(c) for s, c in zip(scales, tc)))

        return _jvp_of_rows(row_terms, problem, fmt)


# --------------------------------------------------------------------------------------------
# vjps of the row ops.

def _row_vjp(x, cotangent, axis, tau, dtype, keeps_axis, terms):
    """Shared driver: terms(row, v_row) -> (values, scales) at the current precision."""
    rows, axis, in_dtype = rows_of(x, axis)
    fmt = format_or(dtype, in_dtype)
    expected = np.moveaxis(rows, -1, axis).shape if keeps_axis else rows.shape[:-1]
    v = validation.check_shape(cotangent, "cotangent", expected, "the op's output").astype(np.float64)
    v_rows = (np.moveaxis(v, axis, -1) if keeps_axis else v[..., None]).reshape(-1, v.shape[axis] if keeps_axis else 1)

    def per_row(i, r):
        vi = [mpf(t) for t in v_rows[i].tolist()]
        return ziv(lambda prec: terms(exact_row(r, tau, prec), vi), fmt, r.size)

    out = map_rows(rows, per_row, rows.shape[-1])
    return np.moveaxis(out, -1, axis).astype(fmt.dtype)


def softmax_vjp(x, cotangent, axis=-1, temperature=1.0, dtype=None):
    tau = validation.check_temperature(temperature)

    def terms(row, v):  # p_j (v_j - <p, v>) / tau
        p = row.probabilities()
        c = mpmath.fsum(pj * vj for pj, vj in zip(p, v))
        c_scale = mpmath.fsum(pj * abs(vj) for pj, vj in zip(p, v))
        if tau != 1.0:
            c, c_scale = c / tau, c_scale / tau
            v = [vj / tau for vj in v]
        return [pj * (vj - c) for pj, vj in zip(p, v)], [pj * (abs(vj) + c_scale) for pj, vj in zip(p, v)]

    return _row_vjp(x, cotangent, axis, tau, dtype, True, terms)


def log_softmax_vjp(x, cotangent, axis=-1, temperature=1.0, dtype=None):
    tau = validation.check_temperature(temperature)

    def terms(row, v):  # (v_j - p_j sum v) / tau
        p = row.probabilities()
        total = mpmath.fsum(v)
        total_scale = mpmath.fsum(abs(vj) for vj in v)
        return ([(vj - pj * total) / tau for pj, vj in zip(p, v)],
                [(abs(vj) + pj * total_scale) / tau for pj, vj in zip(p, v)])

    return _row_vjp(x, cotangent, axis, tau, dtype, True, terms)


def logsumexp_vjp(x, cotangent, axis=-1, dtype=None):
    def terms(row, v):  # v softmax(x)
        return [v[0] * pj for pj in row.probabilities()], [None] * row.n

    return _row_vjp(x, cotangent, axis, 1.0, dtype, False, terms)


# --------------------------------------------------------------------------------------------
# Jacobian-vector products (forward mode): J t, exact, rounded once.

def softmax_jvp(x, tangent, axis=-1, temperature=1.0, dtype=None):
    """p (t - <p, t>)/tau: softmax's Jacobian is symmetric, so J t is its vjp at t."""
    return softmax_vjp(x, tangent, axis=axis, temperature=temperature, dtype=dtype)


def log_softmax_jvp(x, tangent, axis=-1, temperature=1.0, dtype=None):
    tau = validation.check_temperature(temperature)

    def terms(row, t):  # (t_j - <p, t>)/tau
        p = row.probabilities()
        c = mpmath.fsum(pj * tj for pj, tj in zip(p, t))
        c_scale = mpmath.fsum(pj * abs(tj) for pj, tj in zip(p, t))
        return [(tj - c) / tau for tj in t], [(abs(tj) + c_scale) / tau for tj in t]

    return _row_vjp(x, tangent, axis, tau, dtype, True, terms)


def logsumexp_jvp(x, tangent, axis=-1, dtype=None):
    """<p, t> per row."""
    rows, axis, in_dtype = rows_of(x, axis)
    fmt = format_or(dtype, in_dtype)
    t = validation.check_shape(tangent, "tangent", np.moveaxis(rows, -1, axis).shape, "x's")
    t_rows = np.moveaxis(t.astype(np.float64), axis, -1).reshape(-1, rows.shape[-1])

    def per_row(i, r):
        ti = [mpf(v) for v in t_rows[i].tolist()]

        def compute(prec):
            p = exact_row(r, 1.0, prec).probabilities()
            return [mpmath.fsum(pj * tj for pj, tj in zip(p, ti))], [mpmath.fsum(pj * abs(tj) for pj, tj in zip(p, ti))]
        return ziv(compute, fmt, r.size)[0]

    return map_rows(rows, per_row, None).astype(fmt.dtype)


def cross_entropy_jvp(x, tangent, target=None, reduction="mean", weight=None, ignore_index=-100,
                      label_smoothing=0.0, z_loss=0.0, softcap=None, dtype=None):
    """sum_c r_i (A_i p_ic - a_ic) t_ic per example ("none"), or its sum over the examples (r_i = 1/D for the
    mean: NaN where D = 0)."""
    if target is None:
        raise TypeError("target: jvp('cross_entropy', ...) needs the target= keyword")
    problem = _CrossEntropyProblem(x, target, reduction, weight, ignore_index, label_smoothing)
    fmt = format_or(dtype, problem.dtype)
    t = validation.check_shape(tangent, "tangent", problem.shape, "the logits'")
    t = t.astype(np.float64).reshape(-1, problem.n_classes)
    head = _Head.of(problem, z_loss, softcap)
    if head is not None:
        return head.jvp(t, fmt)

    def row_terms(i, prec):
        a = problem.coefficients(i)
        big_a = mpmath.fsum(a)
        if big_a == 0:
            return mpf(0), mpf(0)
        p = exact_row(problem.rows[i], 1.0, prec).probabilities()
        ti = [mpf(v) for v in t[i].tolist()]
        return (mpmath.fsum((big_a * pc - ac) * tc for pc, ac, tc in zip(p, a, ti)),
                mpmath.fsum((big_a * pc + ac) * abs(tc) for pc, ac, tc in zip(p, a, ti)))

    return _jvp_of_rows(row_terms, problem, fmt, problem.denominator if problem.reduction == "mean" else None)


def _jvp_of_rows(row_terms, problem: _CrossEntropyProblem, fmt, denominator=None) -> np.ndarray:
    """J t from row_terms(i, prec) -> (J_i, the magnitude of its terms), rounded once: per example for
    reduction "none", else their sum (divided by denominator(), where given: NaN where it is 0)."""
    n_rows = problem.rows.shape[0]
    if problem.reduction == "none":
        out = [ziv(lambda prec: tuple([v] for v in row_terms(i, prec)), fmt, problem.n_classes)[0]
               for i in range(n_rows)]
        return np.array(out, dtype=np.float64).reshape(problem.batch_shape).astype(fmt.dtype)

    def total(prec):
        terms = [row_terms(i, prec) for i in range(n_rows)]
        value, scale = mpmath.fsum(v for v, _ in terms), mpmath.fsum(s for _, s in terms)
        if denominator is not None:
            d = denominator()
            value, scale = (value / d, scale / d) if d != 0 else (NAN, None)
        return [value], [None if mpmath.isnan(value) else scale]

    return np.asarray(ziv(total, fmt, max(n_rows, 1) * problem.n_classes)[0]).astype(fmt.dtype)


def jvp(op, x, tangent, dtype=None, **kwargs) -> np.ndarray:
    """Exact J t of op at x, rounded once to x's dtype (or `dtype`): this module's `<op>_jvp`."""
    return validation.vjp_function(op, kwargs, globals(), "_jvp")(x, tangent, dtype=dtype, **kwargs)


def vjp(op, x, cotangent, dtype=None, **kwargs) -> np.ndarray:
    """Exact d<cotangent, op(x, **kwargs)>/dx, rounded once to x's dtype (or `dtype`): this module's
    `<op>_vjp` (the loss family's from exact_losses.py)."""
    return validation.vjp_function(op, kwargs, globals())(x, cotangent, dtype=dtype, **kwargs)


__all__ = ["FORMATS", "GUARD_BITS", "cross_entropy", "cross_entropy_jvp", "cross_entropy_vjp", "jvp", "log_softmax_jvp",
           "logsumexp_jvp", "softmax_jvp", "distribution_cross_entropy",
           "distribution_cross_entropy_vjp", "entropy", "entropy_vjp", "focal_loss", "focal_loss_vjp", "kl_divergence",
           "kl_divergence_vjp", "log_softmax", "log_softmax_vjp", "logsumexp", "logsumexp_vjp", "mse_loss",
           "mse_loss_vjp", "multiclass_hinge_loss", "multiclass_hinge_loss_vjp", "round_mpf", "softmax", "softmax_vjp",
           "ulp", "ulp_error", "vjp"]
