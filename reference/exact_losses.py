"""The exact oracle of the loss family (reference/losses.py): every value and vjp in mpmath, rounded once.

The same method as exact.py, whose row quantities (exact_row: p and log p of each entry, accurate however
close p is to 1) and Ziv loop (ziv) are reused:

* 1 - p_t is -expm1(log p_t), accurate to the working precision when p_t is close to 1;
* sums of terms of one sign (focal, MSE and hinge losses, entropy, H(p, q)) and products need no
  second pass; outputs that can cancel (KL's terms of both signs, the full MSE gradient, the entropy
  and KL gradients log p + 1) are recomputed at a higher precision until correct (Ziv);
* the hinge is evaluated exactly: margin - (z_t - m) by exact mpf additions, its gradient is made of
  -1, 1/k and 0, scaled by the reduction.

Semantics and conventions (0 log 0 = 0, NaN rows, the hinge's minimum-norm subgradient, the distribution
ops' vjp with respect to p) are the reference's, and arguments are validated by the same checks.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
from mpmath import mp, mpf

from .exact_rows import GUARD_BITS, NAN, exact_row, format_or, round_mpf, ziv
from .losses import MSE_FORMS, alpha_at_target, check_distributions, IndexLossProblem
from . import validation


class _Problem:
    """An index-target loss: the reference's validation, and the reduction's exact scale."""

    def __init__(self, logits, target, reduction, dtype):
        self.ref = IndexLossProblem(logits, target, reduction)
        self.fmt = format_or(dtype, self.ref.dtype)
        self.prec = self.fmt.precision + GUARD_BITS
        self.n = self.ref.logits.shape[0]

    def target_parts(self, i: int, prec: int):
        """(probabilities, p_t, 1 - p_t, -log p_t) of example i at `prec`; None for a NaN/inf row."""
        row = exact_row(self.ref.logits[i], 1.0, prec)
        if row.special:
            return None
        t = int(self.ref.target[i])
        p, y = row.probabilities(), row.log_probabilities()
        return p, p[t], -mpmath.expm1(y[t]), -y[t]

    def value(self, losses: list) -> np.ndarray:
        """Round per example ("none") or reduce the exact losses and round once."""
        with mp.workprec(self.prec):
            if self.ref.reduction == "none":
                return np.array([round_mpf(v, self.fmt) for v in losses], dtype=np.float64).reshape(
                    self.ref.batch_shape).astype(self.fmt.dtype)
            total = mpmath.fsum(losses) if losses else mpf(0)
            if self.ref.reduction == "mean":
                total = total / self.n if self.n else NAN
            return np.asarray(round_mpf(total, self.fmt)).astype(self.fmt.dtype)

    def scales(self, cotangent) -> list:
        """r_i: the cotangent times d(reduced loss)/d l_i, exact."""
        v = self.ref.row_scale(cotangent)  # validates; its float64 v / N is replaced by the exact one
        raw = validation.as_float_array(cotangent, "cotangent").astype(np.float64).reshape(-1)
        if not self.n:
            return []
        with mp.workprec(self.prec):
            if self.ref.reduction == "none":
                return [mpf(float(r)) for r in raw]
            return [mpf(float(raw[0])) / (self.n if self.ref.reduction == "mean" else 1)] * v.shape[0]

    def gradient(self, per_row) -> np.ndarray:
        """per_row(i) -> the row's rounded gradient (list of floats), assembled in the logits' shape."""
        rows = [per_row(i) for i in range(self.n)]
        out = np.array(rows, dtype=np.float64) if rows else np.zeros((0, self.ref.n_classes))
        return out.reshape(self.ref.shape).astype(self.fmt.dtype)


def _product_row(values: list, fmt) -> list:
    return [round_mpf(v, fmt) for v in values]


# --------------------------------------------------------------------------------------------
# Focal loss.

def focal_loss(logits, target, gamma=2.0, alpha=None, reduction="mean", dtype=None) -> np.ndarray:
    problem = _Problem(logits, target, reduction, dtype)
    gamma = validation.check_non_negative(gamma, "gamma")
    alpha_t = alpha_at_target(problem.ref, alpha)
    losses = []
    with mp.workprec(problem.prec):
        for i in range(problem.n):
            parts = problem.target_parts(i, problem.prec)
            if alpha_t[i] == 0:
                losses.append(mpf(0))
            elif parts is None:
                losses.append(NAN)
            else:
                _, _, rest, nll = parts
                losses.append(mpf(float(alpha_t[i])) * rest ** mpf(gamma) * nll)
    return problem.value(losses)


def focal_loss_vjp(x, cotangent, target=None, gamma=2.0, alpha=None, reduction="mean", dtype=None):
    if target is None:
        raise TypeError("target: vjp('focal_loss', ...) needs the target= keyword")
    problem = _Problem(x, target, reduction, dtype)
    gamma = validation.check_non_negative(gamma, "gamma")
    alpha_t = alpha_at_target(problem.ref, alpha)
    scales = problem.scales(cotangent)

    def per_row(i):
        with mp.workprec(problem.prec):
            C, t = problem.ref.n_classes, int(problem.ref.target[i])
            parts = problem.target_parts(i, problem.prec)
            if alpha_t[i] == 0:
                return [0.0] * C
            if parts is None:
                return [math.nan] * C
            p, q, rest, nll = parts
            ratio = nll / rest if rest != 0 else mpf(1)
            factor = rest ** mpf(gamma) * (1 + mpf(gamma) * (q * ratio if q != 0 else 0))
            coef = scales[i] * mpf(float(alpha_t[i])) * factor
            return _product_row([coef * (-rest if c == t else p[c]) for c in range(C)], problem.fmt)

    return problem.gradient(per_row)


# --------------------------------------------------------------------------------------------
# MSE on probabilities.

def mse_loss(logits, target, form="full", reduction="mean", dtype=None) -> np.ndarray:
    problem = _Problem(logits, target, reduction, dtype)
    form = validation.check_choice(form, "form", MSE_FORMS)
    losses = []
    with mp.workprec(problem.prec):
        for i in range(problem.n):
            parts = problem.target_parts(i, problem.prec)
            if parts is None:
                losses.append(NAN)
                continue
            p, _, rest, _ = parts
            t = int(problem.ref.target[i])
            others = [pc ** 2 for c, pc in enumerate(p) if c != t] if form == "full" else []
            losses.append(mpmath.fsum(others + [rest ** 2]))
    return problem.value(losses)


def mse_loss_vjp(x, cotangent, target=None, form="full", reduction="mean", dtype=None):
    if target is None:
        raise TypeError("target: vjp('mse_loss', ...) needs the target= keyword")
    problem = _Problem(x, target, reduction, dtype)
    form = validation.check_choice(form, "form", MSE_FORMS)
    scales = problem.scales(cotangent)

    def per_row(i):
        C, t = problem.ref.n_classes, int(problem.ref.target[i])

        def compute(prec):
            parts = problem.target_parts(i, prec)
            if parts is None:
                return [NAN] * C, [None] * C
            p, q, rest, _ = parts
            d = [-rest if c == t else p[c] for c in range(C)]  # p - onehot
            r = scales[i]
            if form == "target":
                return [r * 2 * rest * q * dc for dc in d], [None] * C
            mean = mpmath.fsum(pc * dc for pc, dc in zip(p, d))
            spread = mpmath.fsum(pc * abs(dc) for pc, dc in zip(p, d))
            return ([r * 2 * pc * (dc - mean) for pc, dc in zip(p, d)],
                    [abs(r) * 2 * pc * (abs(dc) + spread) for pc, dc in zip(p, d)])

        return ziv(compute, problem.fmt, C)

    return problem.gradient(per_row)


# --------------------------------------------------------------------------------------------
# Multiclass hinge, exactly.

def _slack(problem: _Problem, i: int, margin: float):
    """(margin - (z_t - m) as an exact mpf, or IEEE float where an operand is not finite; the tied set)."""
    z = problem.ref.logits[i]
    t = int(problem.ref.target[i])
    others = z.copy()
    others[t] = -np.inf
    m = others.max()
    zt = z[t]
    if np.isfinite(zt) and np.isfinite(m):
        inner = mpmath.fsub(mpf(zt), mpf(m), exact=True)
        slack = mpmath.fsub(mpf(margin), inner, exact=True)
    else:
        with np.errstate(invalid="ignore"):
            slack = mpf(float(margin - (zt - m)))
    return slack, others == m


def multiclass_hinge_loss(logits, target, margin=1.0, reduction="mean", dtype=None) -> np.ndarray:
    problem = _Problem(logits, target, reduction, dtype)
    margin = validation.check_non_negative(margin, "margin")
    losses = []
    for i in range(problem.n):
        slack, _ = _slack(problem, i, margin)
        losses.append(slack if mpmath.isnan(slack) else max(slack, mpf(0)))
    return problem.value(losses)


def multiclass_hinge_loss_vjp(x, cotangent, target=None, margin=1.0, reduction="mean", dtype=None):
    if target is None:
        raise TypeError("target: vjp('multiclass_hinge_loss', ...) needs the target= keyword")
    problem = _Problem(x, target, reduction, dtype)
    margin = validation.check_non_negative(margin, "margin")
    scales = problem.scales(cotangent)

    def per_row(i):
        C, t = problem.ref.n_classes, int(problem.ref.target[i])
        slack, tied = _slack(problem, i, margin)
        if mpmath.isnan(slack):
            return [math.nan] * C
        if not slack > 0:
            return [0.0] * C
        k = int(tied.sum())
        with mp.workprec(problem.prec):
            return _product_row([scales[i] * (-1 if c == t else (mpf(1) / k if tied[c] else 0)) for c in range(C)],
                                problem.fmt)

    return problem.gradient(per_row)


# --------------------------------------------------------------------------------------------
# Distributions.

def _distribution_rows(p, q, needs_q, op, dtype):
    p, q, in_dtype = check_distributions(p, q, needs_q, op)
    fmt = format_or(dtype, in_dtype)
    n = p.shape[-1]
    return p.reshape(-1, n), None if q is None else q.reshape(-1, n), p.shape, fmt


def _xlogy(x: mpf, y: mpf) -> mpf:
    """x log y with 0 log y = 0 (y = 0 included)."""
    return mpf(0) if x == 0 else x * mpmath.log(y)


def _row_values(p, q, needs_q, op, dtype, terms) -> np.ndarray:
    """One value per row: the sum of terms(p_row, q_row, prec) -> (values, scales), through ziv."""
    rows_p, rows_q, shape, fmt = _distribution_rows(p, q, needs_q, op, dtype)

    def per_row(i):
        def compute(prec):
            ps = [mpf(v) for v in rows_p[i].tolist()]
            qs = None if rows_q is None else [mpf(v) for v in rows_q[i].tolist()]
            values, scale = terms(ps, qs)
            return [mpmath.fsum(values) if values else mpf(0)], [scale]
        return ziv(compute, fmt, rows_p.shape[1])[0]

    out = [per_row(i) for i in range(rows_p.shape[0])]
    return np.array(out, dtype=np.float64).reshape(shape[:-1]).astype(fmt.dtype)


def entropy(p, dtype=None) -> np.ndarray:
    return _row_values(p, None, False, "entropy", dtype, lambda ps, qs: ([-_xlogy(v, v) for v in ps], None))


def kl_divergence(p, q, dtype=None) -> np.ndarray:
    def terms(ps, qs):
        values = [_xlogy(a, a / b) if b != 0 else (mpf("inf") if a != 0 else mpf(0)) for a, b in zip(ps, qs)]
        return values, mpmath.fsum(abs(v) for v in values)

    return _row_values(p, q, True, "kl_divergence", dtype, terms)


def distribution_cross_entropy(p, q, dtype=None) -> np.ndarray:
    return _row_values(p, q, True, "distribution_cross_entropy", dtype,
                       lambda ps, qs: ([-_xlogy(a, b) for a, b in zip(ps, qs)], None))


def _row_vjp(x, cotangent, q, needs_q, op, dtype, terms) -> np.ndarray:
    """v_row * d_i for each entry: terms(p_i, q_i) -> (derivative, its largest term's size or None)."""
    rows_p, rows_q, shape, fmt = _distribution_rows(x, q, needs_q, op, dtype)
    v = validation.check_shape(cotangent, "cotangent", shape[:-1], "the op's output").astype(np.float64).reshape(-1)

    def per_row(i):
        def compute(prec):
            vi = mpf(v[i])
            if vi == 0:  # the vjp is linear in v: 0, also where the slope is infinite
                return [mpf(0)] * rows_p.shape[1], [None] * rows_p.shape[1]
            pairs = [terms(mpf(a), None if rows_q is None else mpf(b))
                     for a, b in zip(rows_p[i].tolist(), (rows_q[i] if rows_q is not None else rows_p[i]).tolist())]
            return [vi * d for d, _ in pairs], [None if s is None else abs(vi) * s for _, s in pairs]
        return ziv(compute, fmt, rows_p.shape[1])

    out = np.array([per_row(i) for i in range(rows_p.shape[0])], dtype=np.float64)
    return out.reshape(shape).astype(fmt.dtype)


def _log(x: mpf) -> mpf:
    return -mpf("inf") if x == 0 else mpmath.log(x)


def entropy_vjp(x, cotangent, dtype=None):
    def terms(a, _):  # -(log p + 1)
        return -(_log(a) + 1), abs(_log(a)) + 1
    return _row_vjp(x, cotangent, None, False, "vjp('entropy', ...)", dtype, terms)


def kl_divergence_vjp(x, cotangent, q=None, dtype=None):
    def terms(a, b):  # log(p / q) + 1, +inf where q = 0
        if b == 0:
            return mpf("inf"), None
        log_ratio = _log(a / b)
        return log_ratio + 1, abs(log_ratio) + 1
    return _row_vjp(x, cotangent, q, True, "vjp('kl_divergence', ...)", dtype, terms)


def distribution_cross_entropy_vjp(x, cotangent, q=None, dtype=None):
    return _row_vjp(x, cotangent, q, True, "vjp('distribution_cross_entropy', ...)", dtype,
                    lambda a, b: (-_log(b), None))


__all__ = ["distribution_cross_entropy", "distribution_cross_entropy_vjp", "entropy", "entropy_vjp", "focal_loss",
           "focal_loss_vjp", "kl_divergence", "kl_divergence_vjp", "mse_loss", "mse_loss_vjp", "multiclass_hinge_loss",
           "multiclass_hinge_loss_vjp"]
