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
validated by the same checks. The loss family's oracle is exact_losses.py, beside this module.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import mpmath
import numpy as np
from mpmath import mp, mpf

from . import _checks
from .dtypes import FORMATS, Format, format_of

GUARD_BITS = 64
_NAN = mpf("nan")
_ZERO = mpf(0)._mpf_
_INF = mpf("inf")
_LN2 = math.log(2.0)


# --------------------------------------------------------------------------------------------
# Rounding and ULPs.

def round_mpf(value: mpf, fmt: Format) -> float:
    """Round an mpf once, to nearest-even, into `fmt` (subnormals and overflow included)."""
    if not mpmath.isfinite(value):
        return float(value)
    sign, man, exp, bc = value._mpf_
    if not man:
        return 0.0
    top = exp + bc - 1  # floor(log2 |value|)
    ulp_exp = max(top, fmt.emin) - fmt.precision + 1
    shift = ulp_exp - exp
    if shift <= 0:
        q = man << -shift
    else:
        q, r = divmod(man, 1 << shift)
        half = 1 << (shift - 1)
        if r > half or (r == half and q & 1):
            q += 1
    if q and (q.bit_length() + ulp_exp > fmt.emax + 1 or math.ldexp(q, ulp_exp) > fmt.max):
        return -math.inf if sign else math.inf
    result = math.ldexp(q, ulp_exp)
    return -result if sign else result


def ulp(values, dtype) -> np.ndarray:
    """ulp(x) = 2**(max(floor(log2|x|), emin) - p + 1): the spacing of `dtype` at x.

    At 0 (and below the normal range) it is the smallest subnormal; at +-inf it is that of the
    largest finite value.
    """
    fmt = format_of(dtype)
    a = np.abs(np.asarray(values, dtype=np.float64))
    a = np.where(np.isfinite(a), a, fmt.max)
    _, exponent = np.frexp(a)  # a = mantissa * 2**exponent, mantissa in [0.5, 1); frexp(0) = (0, 0)
    exponent = np.where(a == 0, fmt.emin + 1, exponent)
    return np.ldexp(1.0, np.maximum(exponent - 1, fmt.emin) - fmt.precision + 1)


def ulp_error(got, exact, dtype, floor=None) -> np.ndarray:
    """|got - exact| / ulp(exact) in `dtype`, elementwise, as float64.

    `exact` is the correctly rounded exact value. The ulp is floored at the smallest subnormal, or
    at `floor` (e.g. the smallest normal for a backend that flushes subnormals to zero). Infinities
    and NaN are handled explicitly: equal infinities, and NaN where NaN is expected, are 0 ulp; any
    other mismatch involving inf or NaN is inf. Signed zeros compare equal.
    """
    g = np.asarray(got).astype(np.float64)
    e = np.asarray(exact).astype(np.float64)
    g, e = np.broadcast_arrays(g, e)
    spacing = ulp(e, dtype)
    if floor is not None:
        spacing = np.maximum(spacing, floor)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(g - e) / spacing
    both_nan = np.isnan(g) & np.isnan(e)
    special = ~(np.isfinite(g) & np.isfinite(e))
    same = (g == e) | both_nan
    return np.where(special, np.where(same, 0.0, np.inf), err)


# --------------------------------------------------------------------------------------------
# Exact quantities of one row.

class _Row:
    """Exact softmax quantities of one row of floats at working precision `prec`."""

    def __init__(self, xs: np.ndarray, tau: float, prec: int):
        self.n, self.prec = xs.size, prec
        self.special = None
        if np.isnan(xs).any():
            self.special, self.lse = "nan", _NAN
        elif xs.max() == np.inf:
            self.special, self.lse = "+inf", _INF
        elif xs.max() == -np.inf:
            self.special, self.lse = "-inf", -_INF
        if self.special:
            return
        with mp.workprec(prec):
            m = xs.max()
            values, self.inverse, counts = np.unique(xs, return_inverse=True, return_counts=True)
            self.inverse = self.inverse.reshape(-1)
            limit = -(prec + 1100) * _LN2
            mm = mpf(m)
            z, e = [], []
            for u in values.tolist():
                if u == -math.inf:
                    z.append(-_INF)
                    e.append(mpf(0))
                    continue
                d = mpmath.fsub(mpf(u), mm, exact=True)
                zu = d if tau == 1.0 else d / tau
                z.append(zu)
                e.append(mpmath.exp(zu) if zu > limit else mpf(0))
            # t = s - 1: every entry but one of those equal to the max (each contributes exp(0) = 1).
            t = mpmath.fsum([c * eu for c, eu, u in zip(counts.tolist(), e, values.tolist()) if u != m]
                            + [mpf(int(counts[-1]) - 1)])
            self.log_s = mpmath.log1p(t)
            s = 1 + t
            self.m = mm
            self.z = z
            self.p = [eu / s for eu in e]
            self.y = [zu - self.log_s for zu in z]

    def elementwise(self, per_value: list) -> list:
        """Expand a list over the row's distinct values to the row's elements."""
        if self.special:
            return [_NAN] * self.n
        return [per_value[i] for i in self.inverse.tolist()]

    def rounded(self, quantity: str, fmt: Format) -> list:
        """Round "p" or "y" (one value per distinct entry) once each into `fmt`, expanded to the elements."""
        if self.special:
            return [math.nan] * self.n
        return np.array([round_mpf(v, fmt) for v in getattr(self, quantity)])[self.inverse].tolist()

    def probabilities(self) -> list:
        return self.elementwise(self.p if not self.special else None)

    def log_probabilities(self) -> list:
        return self.elementwise(self.y if not self.special else None)


_ROW_CACHE: OrderedDict = OrderedDict()
_ROW_CACHE_SIZE = 4096


def _row(xs: np.ndarray, tau: float, prec: int) -> _Row:
    """The row's exact quantities at `prec` bits or more (a row cached at a higher precision serves)."""
    key = (xs.tobytes(), tau)
    row = _ROW_CACHE.get(key)
    if row is None or row.prec < prec:
        row = _Row(xs, tau, prec)
        _ROW_CACHE[key] = row
        if len(_ROW_CACHE) > _ROW_CACHE_SIZE:
            _ROW_CACHE.popitem(last=False)
    else:
        _ROW_CACHE.move_to_end(key)
    return row


def working_prec(fmt: Format, n: int) -> int:
    """fmt's precision + GUARD_BITS + 2 log2(n): in a long row some vjp element is likely to cancel by
    about log2(n) bits, and starting above that spares recomputing the whole row (see _ziv)."""
    return fmt.precision + GUARD_BITS + 2 * math.ceil(math.log2(max(n, 2)))


def _ziv(compute, fmt: Format, n: int) -> list:
    """Evaluate compute(prec) -> (values, scales) until no value lost too many bits, then round.

    `scales[i]` is the magnitude of the largest term that went into values[i] (None where nothing can
    cancel). A value that lost k bits to cancellation carries about prec - k - log2(n) - 8 correct
    bits; we want fmt.precision + 32 of them. Where the bits keep vanishing, the exact value is
    smaller than scale * 2**(8 + log2 n - prec); once that is below 2**-1100, a fraction of the
    smallest float64 subnormal, the correctly rounded result is 0 and we stop.
    """
    prec = working_prec(fmt, n)
    want = fmt.precision + 32 + math.log2(max(n, 2)) + 8
    while True:
        with mp.workprec(prec):
            values, scales = compute(prec)
        lost, widest = 0.0, 0.0
        for v, s in zip(values, scales):
            # raw (sign, man, exp, bc): man == 0 is zero, or inf/NaN (which have no bits to lose)
            if s is None or not s._mpf_[1]:
                continue
            sv, ss = v._mpf_, s._mpf_
            top_s = ss[2] + ss[3]  # floor(log2 s) + 1
            widest = max(widest, top_s)
            if sv[1]:
                lost = max(lost, top_s - (sv[2] + sv[3]) + 1)
            elif sv == _ZERO:
                lost = math.inf
        if prec - lost >= want or prec - widest - math.log2(max(n, 2)) - 8 > 1100 + 64:
            return [round_mpf(v, fmt) for v in values]
        prec = int(min(prec + lost + 32, prec * 2)) if math.isfinite(lost) else prec * 2


# --------------------------------------------------------------------------------------------
# Public ops: the same signatures as the reference; results in x's dtype unless `dtype` is given.

def _rows_of(x, axis, name="x"):
    array = _checks.as_float_array(x, name)
    _checks.check_has_axis(array, name)
    axis = _checks.check_axis(axis, array.ndim)
    _checks.check_nonempty_axis(array, axis, name)
    rows = np.moveaxis(array.astype(np.float64), axis, -1)
    return rows, axis, array.dtype


def _fmt(dtype, default) -> Format:
    return format_of(default if dtype is None else dtype)


def _map_rows(rows: np.ndarray, per_row, out_last: int | None) -> np.ndarray:
    """Apply per_row(row_index, row) -> list of floats to each row; shape (..., out_last) or (...)."""
    flat = rows.reshape(-1, rows.shape[-1])
    out = [per_row(i, r) for i, r in enumerate(flat)]
    shape = rows.shape[:-1] + ((out_last,) if out_last else ())
    return np.array(out, dtype=np.float64).reshape(shape)


def softmax(x, axis=-1, temperature=1.0, dtype=None) -> np.ndarray:
    rows, axis, in_dtype = _rows_of(x, axis)
    tau, fmt = _checks.check_temperature(temperature), _fmt(dtype, in_dtype)
    prec = working_prec(fmt, rows.shape[-1])
    out = _map_rows(rows, lambda i, r: _row(r, tau, prec).rounded("p", fmt), rows.shape[-1])
    return np.moveaxis(out, -1, axis).astype(fmt.dtype)


def log_softmax(x, axis=-1, temperature=1.0, dtype=None) -> np.ndarray:
    rows, axis, in_dtype = _rows_of(x, axis)
    tau, fmt = _checks.check_temperature(temperature), _fmt(dtype, in_dtype)
    prec = working_prec(fmt, rows.shape[-1])
    out = _map_rows(rows, lambda i, r: _row(r, tau, prec).rounded("y", fmt), rows.shape[-1])
    return np.moveaxis(out, -1, axis).astype(fmt.dtype)


def logsumexp(x, axis=-1, dtype=None) -> np.ndarray:
    rows, axis, in_dtype = _rows_of(x, axis)
    fmt = _fmt(dtype, in_dtype)

    def per_row(i, r):
        def compute(prec):
            row = _row(r, 1.0, prec)
            if row.special:
                return [row.lse], [None]
            return [row.m + row.log_s], [max(abs(row.m), row.log_s)]
        return _ziv(compute, fmt, r.size)[0]

    return _map_rows(rows, per_row, None).astype(fmt.dtype)


# --------------------------------------------------------------------------------------------
# Cross-entropy: l_i = sum_c a_ic (-log p_ic), a_ic = w_c q_ic, with 0 log 0 = 0;
# gradient r_i (A_i p_i - a_i) with r_i from the reduction and the cotangent.

class _CrossEntropyProblem:
    def __init__(self, logits, target, reduction, weight, ignore_index, label_smoothing):
        array = _checks.as_float_array(logits, "logits")
        _checks.check_has_axis(array, "logits")
        _checks.check_nonempty_axis(array, array.ndim - 1, "logits")
        self.dtype = array.dtype
        self.shape = array.shape
        self.batch_shape = array.shape[:-1]
        self.n_classes = array.shape[-1]
        self.reduction = _checks.check_reduction(reduction)
        ignore_index = _checks.check_ignore_index(ignore_index)
        self.smoothing = _checks.check_label_smoothing(label_smoothing)
        weight = _checks.check_weight(weight, self.n_classes)
        self.weight = np.ones(self.n_classes) if weight is None else weight
        self.kind, t = _checks.check_target(target, array.shape, ignore_index)
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
        row = _row(self.rows[i], 1.0, prec)
        terms = [ac * -y for ac, y in zip(a, row.log_probabilities()) if ac != 0]
        return mpmath.fsum(terms) if terms else mpf(0)


def cross_entropy(logits, target, reduction="mean", weight=None, ignore_index=-100, label_smoothing=0.0,
                  dtype=None) -> np.ndarray:
    problem = _CrossEntropyProblem(logits, target, reduction, weight, ignore_index, label_smoothing)
    fmt = _fmt(dtype, problem.dtype)
    prec = working_prec(fmt, problem.n_classes)
    with mp.workprec(prec):
        losses = [problem.row_loss(i, prec) for i in range(problem.rows.shape[0])]
        if problem.reduction == "none":
            return np.array([round_mpf(v, fmt) for v in losses], dtype=np.float64).reshape(
                problem.batch_shape).astype(fmt.dtype)
        total = mpmath.fsum(losses) if losses else mpf(0)
        if problem.reduction == "mean":
            d = problem.denominator()
            total = total / d if d != 0 else _NAN
    return np.asarray(round_mpf(total, fmt)).astype(fmt.dtype)


def _cross_entropy_vjp(x, cotangent, target=None, reduction="mean", weight=None, ignore_index=-100,
                       label_smoothing=0.0, dtype=None):
    if target is None:
        raise TypeError("target: vjp('cross_entropy', ...) needs the target= keyword")
    problem = _CrossEntropyProblem(x, target, reduction, weight, ignore_index, label_smoothing)
    fmt = _fmt(dtype, problem.dtype)
    out_shape = problem.batch_shape if problem.reduction == "none" else ()
    v = _checks.as_float_array(cotangent, "cotangent")
    if v.shape != out_shape:
        raise ValueError(f"cotangent: must have the loss's shape {out_shape}; got shape {v.shape}")
    v = v.astype(np.float64).reshape(-1)
    n_rows = problem.rows.shape[0]
    with mp.workprec(fmt.precision + GUARD_BITS):
        d = problem.denominator() if problem.reduction == "mean" else None

    def scale(i) -> mpf:
        if problem.reduction == "none":
            return mpf(v[i])
        if problem.reduction == "sum":
            return mpf(v[0])
        return mpf(v[0]) / d if d != 0 else _NAN

    def per_row(i, r):
        def compute(prec):
            a = problem.coefficients(i)
            big_a = mpmath.fsum(a)
            if big_a == 0:
                return [scale(i) * 0 if problem.reduction == "mean" and d == 0 else mpf(0)] * len(a), \
                    [None] * len(a)
            ri = scale(i)
            p = _row(r, 1.0, prec).probabilities()
            values = [ri * (big_a * pc - ac) for pc, ac in zip(p, a)]
            scales = [abs(ri) * (big_a * pc + ac) for pc, ac in zip(p, a)]
            return values, scales
        return _ziv(compute, fmt, r.size)

    out = _map_rows(problem.rows, per_row, problem.n_classes) if n_rows else np.zeros((0, problem.n_classes))
    return out.reshape(problem.shape).astype(fmt.dtype)


# --------------------------------------------------------------------------------------------
# vjps of the row ops.

def _row_vjp(x, cotangent, axis, tau, dtype, keeps_axis, terms):
    """Shared driver: terms(row, v_row) -> (values, scales) at the current precision."""
    rows, axis, in_dtype = _rows_of(x, axis)
    fmt = _fmt(dtype, in_dtype)
    v = _checks.as_float_array(cotangent, "cotangent")
    expected = np.moveaxis(rows, -1, axis).shape if keeps_axis else rows.shape[:-1]
    if v.shape != expected:
        raise ValueError(f"cotangent: must have the op's output shape {expected}; got shape {v.shape}")
    v = v.astype(np.float64)
    v_rows = (np.moveaxis(v, axis, -1) if keeps_axis else v[..., None]).reshape(-1, v.shape[axis] if keeps_axis else 1)

    def per_row(i, r):
        vi = [mpf(t) for t in v_rows[i].tolist()]
        return _ziv(lambda prec: terms(_row(r, tau, prec), vi), fmt, r.size)

    out = _map_rows(rows, per_row, rows.shape[-1])
    return np.moveaxis(out, -1, axis).astype(fmt.dtype)


def _softmax_vjp(x, cotangent, axis=-1, temperature=1.0, dtype=None):
    tau = _checks.check_temperature(temperature)

    def terms(row, v):  # p_j (v_j - <p, v>) / tau
        p = row.probabilities()
        c = mpmath.fsum(pj * vj for pj, vj in zip(p, v))
        c_scale = mpmath.fsum(pj * abs(vj) for pj, vj in zip(p, v))
        if tau != 1.0:
            c, c_scale = c / tau, c_scale / tau
            v = [vj / tau for vj in v]
        return [pj * (vj - c) for pj, vj in zip(p, v)], [pj * (abs(vj) + c_scale) for pj, vj in zip(p, v)]

    return _row_vjp(x, cotangent, axis, tau, dtype, True, terms)


def _log_softmax_vjp(x, cotangent, axis=-1, temperature=1.0, dtype=None):
    tau = _checks.check_temperature(temperature)

    def terms(row, v):  # (v_j - p_j sum v) / tau
        p = row.probabilities()
        total = mpmath.fsum(v)
        total_scale = mpmath.fsum(abs(vj) for vj in v)
        return ([(vj - pj * total) / tau for pj, vj in zip(p, v)],
                [(abs(vj) + pj * total_scale) / tau for pj, vj in zip(p, v)])

    return _row_vjp(x, cotangent, axis, tau, dtype, True, terms)


def _logsumexp_vjp(x, cotangent, axis=-1, dtype=None):
    def terms(row, v):  # v softmax(x)
        return [v[0] * pj for pj in row.probabilities()], [None] * row.n

    return _row_vjp(x, cotangent, axis, 1.0, dtype, False, terms)


_VJPS = {
    "softmax": _softmax_vjp,
    "log_softmax": _log_softmax_vjp,
    "logsumexp": _logsumexp_vjp,
    "cross_entropy": _cross_entropy_vjp,
}


def vjp(op, x, cotangent, dtype=None, **kwargs) -> np.ndarray:
    """Exact d<cotangent, op(x, **kwargs)>/dx, rounded once to x's dtype (or `dtype`); the loss family's
    ops (reference/losses.py) are answered by exact_losses."""
    from .exact_losses import VJPS as loss_vjps
    from .ops import check_op_kwargs

    table = {**_VJPS, **loss_vjps}
    check_op_kwargs(op, kwargs, table)
    return table[op](x, cotangent, dtype=dtype, **kwargs)


__all__ = ["FORMATS", "GUARD_BITS", "cross_entropy", "log_softmax", "logsumexp", "round_mpf", "softmax",
           "ulp", "ulp_error", "vjp"]
