"""The oracle's shared mpmath machinery: correct rounding into a format, ULPs, and each row's exact
quantities (cached, computed to the precision a result needs: Ziv's strategy). exact.py (the row ops and
cross-entropy) and exact_losses.py (the loss family) both build on it; see exact.py for the method.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import mpmath
import numpy as np
from mpmath import mp, mpf

from . import validation
from .dtypes import Format, format_of

GUARD_BITS = 64
NAN = mpf("nan")
ZERO = mpf(0)._mpf_
INF = mpf("inf")
LN2 = math.log(2.0)


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

class ExactRow:
    """Exact softmax quantities of one row of floats at working precision `prec`."""

    def __init__(self, xs: np.ndarray, tau: float, prec: int):
        self.n, self.prec = xs.size, prec
        self.special = None
        if np.isnan(xs).any():
            self.special, self.lse = "nan", NAN
        elif xs.max() == np.inf:
            self.special, self.lse = "+inf", INF
        elif xs.max() == -np.inf:
            self.special, self.lse = "-inf", -INF
        if self.special:
            return
        with mp.workprec(prec):
            m = xs.max()
            values, self.inverse, counts = np.unique(xs, return_inverse=True, return_counts=True)
            self.inverse = self.inverse.reshape(-1)
            limit = -(prec + 1100) * LN2
            mm = mpf(m)
            z, e = [], []
            for u in values.tolist():
                if u == -math.inf:
                    z.append(-INF)
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
            return [NAN] * self.n
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


ROW_CACHE: OrderedDict = OrderedDict()
ROW_CACHE_SIZE = 4096


def exact_row(xs: np.ndarray, tau: float, prec: int) -> ExactRow:
    """The row's exact quantities at `prec` bits or more (a row cached at a higher precision serves)."""
    key = (xs.tobytes(), tau)
    row = ROW_CACHE.get(key)
    if row is None or row.prec < prec:
        row = ExactRow(xs, tau, prec)
        ROW_CACHE[key] = row
        if len(ROW_CACHE) > ROW_CACHE_SIZE:
            ROW_CACHE.popitem(last=False)
    else:
        ROW_CACHE.move_to_end(key)
    return row


def working_prec(fmt: Format, n: int) -> int:
    """fmt's precision + GUARD_BITS + 2 log2(n): in a long row some vjp element is likely to cancel by
    about log2(n) bits, and starting above that spares recomputing the whole row (see ziv)."""
    return fmt.precision + GUARD_BITS + 2 * math.ceil(math.log2(max(n, 2)))


def ziv(compute, fmt: Format, n: int) -> list:
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
            elif sv == ZERO:
                lost = math.inf
        if prec - lost >= want or prec - widest - math.log2(max(n, 2)) - 8 > 1100 + 64:
            return [round_mpf(v, fmt) for v in values]
        prec = int(min(prec + lost + 32, prec * 2)) if math.isfinite(lost) else prec * 2


class ExactLogits:
    """One row of logits u (mpf) through an optional soft-cap, l = cap tanh(u / cap), at the current working
    precision (ExactRow's method): d_c = l_c - m exactly, t = sum of exp(d_c) but one max, lse = m + log1p(t)
    (lse_scale = |m| + log1p(t), the magnitude its two terms may cancel from), p_c = exp(d_c)/(1 + t), gap_c =
    lse - l_c = log1p(t) - d_c >= 0, and sech2_c = dl_c/du_c (1 without a softcap)."""

    def __init__(self, u: list, cap):
        if cap is None:
            l, self.sech2 = u, [mpf(1)] * len(u)
        else:
            cap = mpf(cap)
            l = [cap * mpmath.tanh(uc / cap) for uc in u]
            self.sech2 = [mpmath.sech(uc / cap) ** 2 for uc in u]
        top = max(range(len(l)), key=lambda c: l[c])
        d = [mpmath.fsub(lc, l[top], exact=True) for lc in l]
        e = [mpmath.exp(dc) for dc in d]
        t = mpmath.fsum(ec for c, ec in enumerate(e) if c != top)
        log_s = mpmath.log1p(t)
        self.lse = l[top] + log_s
        self.lse_scale = abs(l[top]) + log_s
        self.p = [ec / (1 + t) for ec in e]
        self.gap = [log_s - dc for dc in d]



# --------------------------------------------------------------------------------------------
# Public ops: the same signatures as the reference; results in x's dtype unless `dtype` is given.

def rows_of(x, axis, name="x"):
    array, axis = validation.row_array(x, axis, name)
    rows = np.moveaxis(array.astype(np.float64), axis, -1)
    return rows, axis, array.dtype


def format_or(dtype, default) -> Format:
    return format_of(default if dtype is None else dtype)


def map_rows(rows: np.ndarray, per_row, out_last: int | None) -> np.ndarray:
    """Apply per_row(row_index, row) -> list of floats to each row; shape (..., out_last) or (...)."""
    flat = rows.reshape(-1, rows.shape[-1])
    out = [per_row(i, r) for i, r in enumerate(flat)]
    shape = rows.shape[:-1] + ((out_last,) if out_last else ())
    return np.array(out, dtype=np.float64).reshape(shape)


