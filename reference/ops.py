"""The NumPy reference: softmax, log-softmax, log-sum-exp, cross-entropy and their analytic vjps.

Every op validates its arguments, computes in float64 whatever the input dtype, and rounds once to
the input's dtype at the end, so that for float16, bfloat16 and float32 the result is within about
half an ulp of the exact value. The forward ops and cross-entropy's gradient do so a block of rows
at a time (chunked.py), so that LLM-sized inputs need no full-size float64 copy. The semantics are
DESIGN.md's; in short:

* the ops act on x/tau, computed as (x - max x)/tau so that a small tau cannot overflow;
* a row that is all -inf gives NaN (softmax, log-softmax) and -inf (log-sum-exp); a row with +inf
  gives NaN and +inf; a NaN anywhere in a row makes that row NaN;
* cross-entropy acts along the last axis, l_i = -sum_c w_c q_ic log p_ic with 0 log 0 = 0, and a mean
  whose denominator is 0 is NaN (its gradient too).
"""
from __future__ import annotations

import functools

import numpy as np

from . import validation
from .chunked import Rows, Scratch, for_each_block
from .dtypes import bfloat16, round_to_dtype

QUIET = dict(over="ignore", under="ignore", invalid="ignore", divide="ignore")


# --------------------------------------------------------------------------------------------
# Row statistics: everything below is computed along the last axis of a float64 array.

def shifted_rows(x: np.ndarray, temperature: float) -> np.ndarray:
    """z = (x - max x)/tau along the last axis; an all -inf row becomes NaN (-inf - -inf)."""
    z = x - x.max(axis=-1, keepdims=True)
    if temperature != 1.0:
        z /= temperature
    return z


class RowSoftmax:
    """The softmax of each row of z = (x - max x)/tau, with the by-products accurate formulas need.

    One max entry per row ("top") has z = 0 and e = 1; t is the sum of the other exps, s = 1 + t.
      p = e / s;   log s = log1p(t);   1 - p_top = t / s.
    log(1 + t) and 1 - p_top both lose t's relative accuracy when t is small, i.e. when the model is
    confident; log1p(t) and t / s keep it. Rows whose max is not finite (NaN, +-inf, all -inf) give NaN.
    """

    def __init__(self, z: np.ndarray):
        e = np.exp(z)
        self.top = np.argmax(z, axis=-1)[..., None]
        finite = np.take_along_axis(z, self.top, axis=-1) == 0
        np.put_along_axis(e, self.top, 0.0, axis=-1)
        t = e.sum(axis=-1, keepdims=True)
        np.put_along_axis(e, self.top, 1.0, axis=-1)
        s = 1.0 + t
        self.p = np.where(finite, e / s, np.nan)
        self.log_s = np.where(finite, np.log1p(t), np.nan)
        self.rest = np.where(finite, t / s, np.nan)  # 1 - p_top

    def at_top(self, values: np.ndarray) -> np.ndarray:
        return np.take_along_axis(values, self.top, axis=-1)

    def set_top(self, values: np.ndarray, top_values: np.ndarray) -> None:
        np.put_along_axis(values, self.top, top_values, axis=-1)


def _softmax_rows(z: np.ndarray) -> np.ndarray:
    return RowSoftmax(z).p


# --------------------------------------------------------------------------------------------
# The same statistics a block of rows at a time (chunked.py): x is read once into a float64 work
# array z, which then becomes exp(z) and the output in place.

def _shifted_block(rows: Rows, lo: int, hi: int, temperature: float, scratch: Scratch):
    """z = (x - max x)/tau for rows lo:hi in a float64 work array, each row's first max entry, and max x.

    argmax takes a NaN for the max, so a row is finite (z_top = 0) exactly when its max m is.
    """
    z = scratch("z", (hi - lo, rows.n_cols))
    z[...] = rows.get(lo, hi)
    top = z.argmax(axis=-1)
    m = z[np.arange(hi - lo), top]
    z -= m[:, None]
    if temperature != 1.0:
        z /= temperature
    return z, top, m


def _exp_sum(z: np.ndarray, top: np.ndarray, e: np.ndarray) -> np.ndarray:
    """e = exp(z) (e may be z itself); returns t, the sum of e without the top entry (there e = 1)."""
    rows = np.arange(len(top))
    np.exp(z, out=e)
    e[rows, top] = 0.0
    t = e.sum(axis=-1)
    e[rows, top] = 1.0
    return t


def _store(rows: Rows, lo: int, hi: int, values: np.ndarray, dtype) -> None:
    """Round float64 values once into dtype (NumPy's casts do so except into bfloat16) and write them."""
    rows.set(lo, hi, round_to_dtype(values, dtype) if dtype == bfloat16 else values)


def _run_blocks(n_rows: int, n_cols: int, block) -> None:
    def quiet_block(lo, hi, scratch):
        with np.errstate(**QUIET):  # errstate is per thread
            block(lo, hi, scratch)
    for_each_block(n_rows, n_cols, quiet_block)


# --------------------------------------------------------------------------------------------
# Input handling shared by the public functions.



def _checked_out(out, x: np.ndarray) -> np.ndarray:
    """The caller's `out` once checked against x, or a new array shaped and typed like x."""
    if out is None:
        return np.empty(x.shape, x.dtype)
    allowed = (f"a writeable NumPy array of shape {x.shape} and dtype {x.dtype.name} (x's), "
               "either x itself or not overlapping it")
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out: must be {allowed}; got {type(out).__name__}")
    if out.shape != x.shape or out.dtype != x.dtype:
        raise ValueError(f"out: must be {allowed}; got shape {out.shape} and dtype {out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"out: must be {allowed}; got a read-only array")
    same = out.__array_interface__["data"] == x.__array_interface__["data"] and out.strides == x.strides
    if not same and np.may_share_memory(out, x):
        raise ValueError(f"out: must be {allowed}; got another view of x's memory")
    return out


def _row_op(x, axis, temperature, out, finish):
    """Apply finish(z, top, scratch) -> float64 result to each block of z = (x - max x)/tau, into out."""
    array, axis = validation.row_array(x, axis)
    tau = validation.check_temperature(temperature)
    out = _checked_out(out, array)
    src, dst = Rows(array, axis), Rows(out, axis)

    def block(lo, hi, scratch):
        z, top, m = _shifted_block(src, lo, hi, tau, scratch)
        y = finish(z, top, scratch)
        y[~np.isfinite(m)] = np.nan
        _store(dst, lo, hi, y, out.dtype)

    _run_blocks(src.n_rows, src.n_cols, block)
    return out


def _softmax_finish(z, top, scratch):
    """p = e / s, with s = 1 + t (see RowSoftmax)."""
    s = 1.0 + _exp_sum(z, top, z)
    z /= s[:, None]
    return z


def _log_softmax_finish(z, top, scratch):
    """z - log1p(t) (see RowSoftmax)."""
    t = _exp_sum(z, top, scratch("e", z.shape))
    z -= np.log1p(t)[:, None]
    return z


def softmax(x, axis=-1, temperature=1.0, *, out=None) -> np.ndarray:
    """Softmax of x/temperature along `axis`: p_i = exp(z_i) / sum_j exp(z_j), z = (x - max x)/tau.

    In an LLM the output layer produces one logit per vocabulary entry; softmax turns them into the
    next-token distribution that is sampled from (with a temperature) and scored by cross-entropy.
    `out`, if given, receives the result: an array of x's shape and dtype (x itself works in place).
    """
    return _row_op(x, axis, temperature, out, _softmax_finish)


def log_softmax(x, axis=-1, temperature=1.0, *, out=None) -> np.ndarray:
    """log softmax(x/temperature) = z - log sum exp z, finite for finite x however wide the spread.

    `out`, if given, receives the result: an array of x's shape and dtype (x itself works in place).
    """
    return _row_op(x, axis, temperature, out, _log_softmax_finish)


def logsumexp(x, axis=-1) -> np.ndarray:
    """log sum_i exp x_i along `axis` (that axis is removed), computed as m + log1p(t), m = max x.

    +-inf rows give m itself, NaN rows NaN.
    """
    array, axis = validation.row_array(x, axis)
    src = Rows(array, axis)
    lse = np.empty(src.n_rows)

    def block(lo, hi, scratch):
        z, top, m = _shifted_block(src, lo, hi, 1.0, scratch)
        t = _exp_sum(z, top, z)
        lse[lo:hi] = np.where(np.isinf(m), m, m + np.log1p(t))

    _run_blocks(src.n_rows, src.n_cols, block)
    return round_to_dtype(lse.reshape(src.batch_shape), array.dtype)


# --------------------------------------------------------------------------------------------
# Cross-entropy. Its loss and gradient are written in terms of per-example coefficients
# a_ic = w_c q_ic (q the smoothed target) and their row sums A_i:
#     l_i = sum_c a_ic (-log p_ic),        dl_i/dx_i = A_i p_i - a_i.

class CrossEntropyProblem:
    """A validated cross-entropy problem: the logits as (N, C) rows, the coefficients per example."""

    def __init__(self, logits, target, reduction="mean", weight=None, ignore_index=-100, label_smoothing=0.0):
        (array, self.target_kind, target, self.reduction, self.weight, self.ignore_index,
         self.smoothing) = validation.cross_entropy_arguments(logits, target, reduction, weight, ignore_index,
                                                              label_smoothing)
        self.dtype, self.shape, self.batch_shape = array.dtype, array.shape, array.shape[:-1]
        self.n_classes = n_classes = array.shape[-1]
        self.logit_rows = Rows(array)
        self.w = w = np.ones(n_classes) if self.weight is None else self.weight
        eps = self.smoothing
        if self.target_kind == "index":
            t = target.reshape(-1)
            self.valid = t != self.ignore_index
            self.index = np.where(self.valid, t, 0)
            self.w_target = np.where(self.valid, w[self.index], 0.0)
            # a_i = (1-eps) w_y onehot(y) + (eps/C) w  (zero for ignored examples)
            self.onehot_coef = (1.0 - eps) * self.w_target
            self.uniform_coef = np.where(self.valid, eps / n_classes, 0.0)
            self.row_coef_sum = self.onehot_coef + self.uniform_coef * w.sum()
            self.denominator = self.w_target.sum()
            # sum_{c != k} w_c for each class k: the smoothing's share of A_i - a_i,top when k is the top
            self.w_others = (_sums_without_each(self.weight, n_classes) if eps
                             else np.zeros(n_classes))
        else:
            self.q = target.reshape(-1, n_classes)
            self.valid = np.ones(self.logit_rows.n_rows, dtype=bool)
            self.denominator = float(self.logit_rows.n_rows)

    @functools.cached_property
    def row_coef_sum(self) -> np.ndarray:
        """A_i = sum_c a_ic per example. Index targets set it in __init__; for probability targets it is
        summed here on first use (error bounds, tests), while _block forms its own from the same block of a."""
        sums = np.empty(self.logit_rows.n_rows)

        def block(lo, hi, scratch):
            sums[lo:hi] = self._coef_block(lo, hi, scratch("a", (hi - lo, self.n_classes))).sum(axis=-1)

        _run_blocks(self.logit_rows.n_rows, self.n_classes, block)
        return sums

    @functools.cached_property
    def logits(self) -> np.ndarray:
        """The (N, C) logits in float64 (for error bounds and tests; the ops never build it)."""
        return self.logit_rows.get(0, self.logit_rows.n_rows).astype(np.float64)

    def _coef_block(self, lo: int, hi: int, out: np.ndarray) -> np.ndarray:
        """a = w ((1 - eps) q + eps/C) for the probability targets of rows lo:hi."""
        np.multiply(self.q[lo:hi], 1.0 - self.smoothing, out=out)
        out += self.smoothing / self.n_classes
        out *= self.w
        return out

    def coefficients(self) -> np.ndarray:
        """The dense (N, C) matrix a_ic (for error bounds and tests; the ops never build it)."""
        if self.target_kind == "probability":
            return self._coef_block(0, self.logit_rows.n_rows, np.empty((self.logit_rows.n_rows, self.n_classes)))
        a = self.uniform_coef[:, None] * self.w
        a[np.arange(a.shape[0]), self.index] += self.onehot_coef
        return a

    def row_losses(self, logp: np.ndarray) -> np.ndarray:
        """l_i = sum_c a_ic (-log p_ic) from dense log-probabilities (for error bounds), 0 log 0 = 0."""
        if self.target_kind == "probability":
            a = self.coefficients()
            return np.where(a > 0, a * -logp, 0.0).sum(axis=-1)
        rows = np.arange(logp.shape[0])
        picked = np.where(self.onehot_coef > 0, self.onehot_coef * -logp[rows, self.index], 0.0)
        if self.smoothing == 0.0:
            return picked
        spread = np.where(self.w > 0, self.w * -logp, 0.0).sum(axis=-1)
        return picked + np.where(self.uniform_coef > 0, self.uniform_coef * spread, 0.0)

    def reduce(self, losses: np.ndarray) -> np.ndarray:
        if self.reduction == "none":
            return losses.reshape(self.batch_shape)
        total = losses.sum()
        if self.reduction == "sum":
            return np.asarray(total)
        return np.asarray(total / self.denominator if self.denominator > 0 else np.nan)

    def row_scale(self, cotangent) -> np.ndarray:
        """r_i: d(reduced loss)/d l_i times the cotangent, one per example, shaped (N, 1)."""
        v = validation.loss_cotangent(cotangent, self.batch_shape, self.reduction)
        if self.reduction == "none":
            return v.reshape(-1, 1)
        if self.reduction == "mean":
            v = v / self.denominator if self.denominator > 0 else np.full_like(v, np.nan)
        return np.full((self.logit_rows.n_rows, 1), v)

    def evaluate(self, scale: np.ndarray | None = None, grad: np.ndarray | None = None) -> np.ndarray:
        """The per-example losses l_i; given the row scales r_i (row_scale), also writes
        r_i dl_i/dx_i into `grad` (shaped and typed like the logits). One read of the logits."""
        losses = np.empty(self.logit_rows.n_rows)
        grad_rows = None if grad is None else Rows(grad)

        def block(lo, hi, scratch):
            losses[lo:hi] = self._block(lo, hi, scratch, scale, grad_rows)

        _run_blocks(self.logit_rows.n_rows, self.n_classes, block)
        return losses

    def _block(self, lo, hi, scratch, scale, grad_rows):
        """The losses of rows lo:hi, and their gradient rows when grad_rows is given.

        l_i = sum_c a_ic (log s_i - z_ic) over a_ic > 0, i.e. A_i log s_i - sum_c a_ic z_ic: every
        term is >= 0 (z <= 0), so nothing cancels. The sums of a z are taken before z becomes exp(z).
        """
        z, top, m = _shifted_block(self.logit_rows, lo, hi, 1.0, scratch)
        rows = np.arange(hi - lo)
        by_index = self.target_kind == "index"
        if by_index:
            big_a = self.row_coef_sum[lo:hi]
            index, onehot, uniform = self.index[lo:hi], self.onehot_coef[lo:hi], self.uniform_coef[lo:hi]
            z_target = z[rows, index]
            z_spread = _positive_weighted_sums(z, self.weight, scratch) if self.smoothing else None
        else:
            a = self._coef_block(lo, hi, scratch("a", z.shape))
            z_spread = _positive_weighted_sums(z, a, scratch)
            # A = a_top + sum_{c != top} a_c, the second sum being the gradient's A - a_top (below)
            a_top = a[rows, top]
            a[rows, top] = 0.0
            a_rest = a.sum(axis=-1)
            a[rows, top] = a_top
            big_a = a_rest + a_top
        t = _exp_sum(z, top, z)
        e = z
        finite = np.isfinite(m)
        log_s = np.where(finite, np.log1p(t), np.nan)
        if not by_index:
            losses = np.where(big_a > 0, big_a * log_s - z_spread, 0.0)
        else:
            losses = np.where(onehot > 0, onehot * (log_s - z_target), 0.0)
            if self.smoothing:
                w_sum = self.w.sum()
                spread = w_sum * log_s - z_spread if w_sum > 0 else np.zeros_like(log_s)
                losses = losses + np.where(uniform > 0, uniform * spread, 0.0)
        if grad_rows is None:
            return losses

        # g = r (A p - a) = (r A / s) e - r a; at the max entry r ((A - a_top) - A (1 - p_top)) with
        # 1 - p_top = t/s, which keeps its relative accuracy when p_top is close to 1. A - a_top is
        # formed as the sum of the other coefficients, sum_{c != top} a_c, never as A minus a_top (both
        # near A when the target is at the max, under small smoothing or a near one-hot q):
        #   index targets:  A - a_top = [y != top] (1-eps) w_y + (eps/C) sum_{c != top} w_c  (w_others);
        #   probabilities:  A - a_top = sum_{c != top} a_c, summed above with a_top set to 0.
        r = scale[lo:hi, 0]
        s = 1.0 + t
        if by_index:
            a_rest = np.where(index == top, 0.0, onehot) + uniform * self.w_others[top]
        e *= (r * big_a / s)[:, None]
        if not by_index:
            e -= np.multiply(a, r[:, None], out=a)
        else:
            if self.smoothing and self.weight is None:
                e -= (r * uniform)[:, None]
            elif self.smoothing:
                e -= np.multiply((r * uniform)[:, None], self.w, out=scratch("product", e.shape))
            e[rows, index] -= r * onehot
        e[rows, top] = r * (a_rest - big_a * np.where(finite, t / s, np.nan))
        e[~finite] = np.nan
        ignored = big_a == 0  # no coefficient: exactly 0, times r (NaN for a mean over nothing)
        e[ignored] = 0.0 * r[ignored, None]
        _store(grad_rows, lo, hi, e, self.dtype)
        return losses


def _sums_without_each(weight, n_classes: int) -> np.ndarray:
    """sum_{c != k} w_c for every class k, each with the relative accuracy of a sum of non-negative terms;
    weight None means all ones (exactly C - 1).

    W - w_k (W = sum w) cancels only where w_k > W/2, which at most one class can be: elsewhere
    W - w_k >= W/2, so its relative error is at most 2 rel(W) + u. That one class has its sum taken
    directly, w[:k].sum() + w[k+1:].sum()."""
    if weight is None:
        return np.full(n_classes, n_classes - 1.0)
    total = weight.sum()
    others = total - weight
    for k in np.flatnonzero(weight > total / 2):
        others[k] = weight[:k].sum() + weight[k + 1:].sum()
    return others


def _positive_weighted_sums(z: np.ndarray, weight, scratch: Scratch) -> np.ndarray:
    """sum_c w_c z_c per row over the entries with w_c > 0 (a -inf z_c with w_c = 0 adds nothing);
    weight None means all ones."""
    if weight is None:
        return z.sum(axis=-1)
    product = np.multiply(z, weight, out=scratch("product", z.shape))
    zero = weight == 0
    if zero.any():
        product[np.broadcast_to(zero, z.shape)] = 0.0
    return product.sum(axis=-1)


def cross_entropy(logits, target, reduction="mean", weight=None, ignore_index=-100,
                  label_smoothing=0.0, z_loss=0.0, softcap=None) -> np.ndarray:
    """Cross-entropy between softmax(logits) and the target along the last (class) axis.

    `target` is either integer class indices shaped like the batch (values in [0, C) or
    `ignore_index`) or probabilities shaped like the logits. With label smoothing eps the target
    becomes q = (1-eps) onehot + eps/C. `reduction` "mean" divides the summed loss by the summed
    target weights of the non-ignored examples (by the number of examples for probability targets).
    This is torch.nn.functional.cross_entropy with the class axis moved last; `z_loss` and `softcap` are
    the LM head's options (HeadOptions).
    """
    head = HeadOptions.of(logits, z_loss, softcap)
    if head is not None:
        return head.value(target, reduction, weight, ignore_index, label_smoothing)
    problem = CrossEntropyProblem(logits, target, reduction, weight, ignore_index, label_smoothing)
    with np.errstate(**QUIET):
        loss = problem.reduce(problem.evaluate())
    return round_to_dtype(loss, problem.dtype)


def loss_part(logits, kwargs: dict):
    """(logits, keyword arguments) of cross_entropy's own part under the LM head's options: the logits
    soft-capped and rounded to their dtype (as a framework computes them) where softcap is given, z_loss and
    softcap left out: what CrossEntropyProblem takes, for predicates and rules that look at the cross-entropy."""
    options = {k: v for k, v in kwargs.items() if k not in ("z_loss", "softcap")}
    cap = validation.check_softcap(kwargs.get("softcap"))
    if cap is None:
        return logits, options
    x = validation.as_float_array(logits, "logits")
    with np.errstate(**QUIET):
        return round_to_dtype(cap * np.tanh(x.astype(np.float64) / cap), x.dtype), options


class HeadOptions:
    """Cross-entropy's LM-head options, as linear.py defines them on its logits x: with `softcap` (Gemma 2) the
    loss sees l = cap tanh(x / cap), else l = x; `z_loss` (PaLM) adds z_loss lse_i(l)^2 for each valid example
    (not ignored; every example of probability targets). Reduction "none": ce_i + z_i; "sum": their sum;
    "mean": sum ce_i / D + sum z_i / (number of valid examples), D being cross-entropy's own denominator (the
    z-loss's mean is Liger's and Cut Cross-Entropy's). Computed in float64 on a float64 copy of the logits
    (for small and medium inputs; the LM-scale path is linear.py's) and rounded once."""

    def __init__(self, logits, z_loss, softcap):
        array = validation.as_float_array(logits, "logits")
        validation.check_has_axis(array, "logits")
        self.dtype, self.z_loss, self.softcap = array.dtype, z_loss, softcap
        x = array.astype(np.float64)
        with np.errstate(**QUIET):
            if softcap is None:
                self.logits, self.slope = x, None
            else:
                self.logits = softcap * np.tanh(x / softcap)
                self.slope = 1.0 / np.cosh(x / softcap) ** 2  # dl/dx = sech^2(x / cap), 0 where cosh overflows

    @classmethod
    def of(cls, logits, z_loss, softcap) -> "HeadOptions | None":
        """The options' problem, or None where neither is set (plain cross-entropy)."""
        z_loss, softcap = validation.check_non_negative(z_loss, "z_loss"), validation.check_softcap(softcap)
        return None if z_loss == 0 and softcap is None else cls(logits, z_loss, softcap)

    def _parts(self, target, reduction, weight, ignore_index, label_smoothing):
        problem = CrossEntropyProblem(self.logits, target, reduction, weight, ignore_index, label_smoothing)
        lse = logsumexp(self.logits).reshape(-1)
        z = np.where(problem.valid, self.z_loss * lse ** 2, 0.0)
        return problem, lse, z, max(int(problem.valid.sum()), 1)

    def value(self, target, reduction, weight, ignore_index, label_smoothing) -> np.ndarray:
        problem, _, z, n_valid = self._parts(target, reduction, weight, ignore_index, label_smoothing)
        with np.errstate(**QUIET):
            ce = problem.evaluate()
            if problem.reduction == "none":
                loss = (ce + z).reshape(problem.batch_shape)
            else:
                loss = problem.reduce(ce) + (z.sum() / n_valid if problem.reduction == "mean" else z.sum())
        return round_to_dtype(loss, self.dtype)

    def vjp(self, cotangent, target, reduction, weight, ignore_index, label_smoothing) -> np.ndarray:
        """(r_i (A_i p_i - a_i) + r_z,i 2 z_loss lse_i p_i) dl/dx: r_z,i = v_i, v, or v / (valid examples)."""
        problem, lse, _, n_valid = self._parts(target, reduction, weight, ignore_index, label_smoothing)
        grad = np.empty(problem.shape)
        with np.errstate(**QUIET):
            scale = problem.row_scale(cotangent)[:, 0]
            problem.evaluate(scale[:, None], grad)
            v = np.asarray(cotangent, dtype=np.float64).reshape(-1)
            r_z = np.where(problem.valid, v if problem.reduction == "none" else v[0], 0.0)
            r_z = r_z / n_valid if problem.reduction == "mean" else r_z
            rows = grad.reshape(-1, problem.n_classes)
            valid = problem.valid[:, None]  # an ignored example's gradient is 0, whatever its logits
            rows += np.where(valid, (2.0 * self.z_loss * r_z * lse)[:, None] * softmax(self.logits).reshape(rows.shape), 0.0)
            if self.slope is not None:
                rows *= np.where(valid, self.slope.reshape(rows.shape), 1.0)
        return round_to_dtype(grad, self.dtype)


def cross_entropy_value_and_grad(logits, target, reduction="mean", weight=None, ignore_index=-100,
                                 label_smoothing=0.0, z_loss=0.0, softcap=None):
    """(loss, d loss / d logits) in one pass over the logits: the fused form a training step uses.

    Rows are processed in cache-sized blocks on all cores; beyond the gradient itself it needs
    O(rows) memory and block-sized float64 work arrays. For reduction "none" the gradient is that of
    the summed per-example losses. With z_loss or softcap: HeadOptions' value and vjp.
    """
    head = HeadOptions.of(logits, z_loss, softcap)
    if head is not None:
        ones = np.ones(np.shape(logits)[:-1] if reduction == "none" else ())
        options = (target, reduction, weight, ignore_index, label_smoothing)
        return head.value(*options), head.vjp(ones, *options)
    problem = CrossEntropyProblem(logits, target, reduction, weight, ignore_index, label_smoothing)
    grad = np.empty(problem.shape, problem.dtype)
    with np.errstate(**QUIET):
        ones = np.ones(problem.batch_shape if reduction == "none" else ())
        loss = problem.reduce(problem.evaluate(problem.row_scale(ones), grad))
    return round_to_dtype(loss, problem.dtype), grad


# --------------------------------------------------------------------------------------------
# Analytic vector-Jacobian products.

def _row_vjp(x, cotangent, axis, temperature, formula, keeps_axis=True):
    """formula(rows, v, tau) -> the float64 gradient of a block of rows of x (in float64) and their
    cotangent v, a block at a time (chunked.py) into a new array of x's shape and dtype: the extra
    memory is the gradient itself plus block-sized work arrays."""
    array, axis = validation.row_array(x, axis)
    tau = validation.check_temperature(temperature)
    expected = array.shape if keeps_axis else array.shape[:axis] + array.shape[axis + 1:]
    v = validation.check_shape(cotangent, "cotangent", expected, "the op's output")
    out = np.empty(array.shape, array.dtype)
    src, dst = Rows(array, axis), Rows(out, axis)
    cot = Rows(v, axis) if keeps_axis else Rows(v.reshape(-1, 1))

    def block(lo, hi, scratch):
        g = formula(src.get(lo, hi).astype(np.float64), cot.get(lo, hi).astype(np.float64), tau)
        _store(dst, lo, hi, g, out.dtype)

    _run_blocks(src.n_rows, src.n_cols, block)
    return out


def _softmax_vjp_rows(rows, v, tau):
    """d<v, softmax(x/tau)>/dx = p * (v - <p, v>) / tau.

    With w = v - v_top, v - <p, v> = w - <p, w> (sum p = 1): at the max entry this is -<p, w>, a sum
    of the small terms alone, where v_top - <p, v> would cancel when p_top is close to 1.
    """
    soft = RowSoftmax(shifted_rows(rows, tau))
    w = v - soft.at_top(v)
    return soft.p * (w - (soft.p * w).sum(axis=-1, keepdims=True)) / tau


def _log_softmax_vjp_rows(rows, v, tau):
    """d<v, log_softmax(x/tau)>/dx = (v - p * sum v) / tau.

    At the max entry v_top - p_top S = -(S - v_top) + (1 - p_top) S, with S - v_top the sum of the
    other entries and 1 - p_top = t/s, so that nothing cancels when p_top is close to 1.
    """
    soft = RowSoftmax(shifted_rows(rows, tau))
    total = v.sum(axis=-1, keepdims=True)
    g = v - soft.p * total
    soft.set_top(g, -_sum_without_top(v, soft) + soft.rest * total)
    g /= tau
    return g


def _sum_without_top(v: np.ndarray, soft: RowSoftmax) -> np.ndarray:
    w = v.copy()
    soft.set_top(w, 0.0)
    return w.sum(axis=-1, keepdims=True)


def _logsumexp_vjp_rows(rows, v, tau):
    """d(v * logsumexp x)/dx = v * softmax(x) (v: one entry per row)."""
    return v * _softmax_rows(shifted_rows(rows, 1.0))


def softmax_vjp(x, cotangent, axis=-1, temperature=1.0):
    return _row_vjp(x, cotangent, axis, temperature, _softmax_vjp_rows)


def log_softmax_vjp(x, cotangent, axis=-1, temperature=1.0):
    return _row_vjp(x, cotangent, axis, temperature, _log_softmax_vjp_rows)


def logsumexp_vjp(x, cotangent, axis=-1):
    return _row_vjp(x, cotangent, axis, 1.0, _logsumexp_vjp_rows, keeps_axis=False)


def cross_entropy_vjp(x, cotangent, target=None, reduction="mean", weight=None, ignore_index=-100,
                       label_smoothing=0.0, z_loss=0.0, softcap=None):
    """d(<v, CE>)/dx_i = r_i (A_i p_i - a_i), r_i = v_i, v or v/D for none, sum, mean (HeadOptions.vjp with
    z_loss or softcap)."""
    if target is None:
        raise TypeError("target: vjp('cross_entropy', ...) needs the target= keyword")
    head = HeadOptions.of(x, z_loss, softcap)
    if head is not None:
        return head.vjp(cotangent, target, reduction, weight, ignore_index, label_smoothing)
    problem = CrossEntropyProblem(x, target, reduction, weight, ignore_index, label_smoothing)
    grad = np.empty(problem.shape, problem.dtype)
    with np.errstate(**QUIET):
        problem.evaluate(problem.row_scale(cotangent), grad)
    return grad


# --------------------------------------------------------------------------------------------
# Jacobian-vector products (forward mode): J t for a tangent t shaped like x, in float64, rounded once.

def softmax_jvp(x, tangent, axis=-1, temperature=1.0):
    """p (t - <p, t>)/tau: softmax's Jacobian (diag(p) - p p^T)/tau is symmetric, so J t is its vjp at t."""
    return softmax_vjp(x, tangent, axis=axis, temperature=temperature)


def _tangent_and_probabilities(x, tangent, axis, temperature):
    array = validation.as_float_array(x, "x")
    validation.check_has_axis(array, "x")
    axis = validation.check_axis(axis, array.ndim)
    t = validation.check_shape(tangent, "tangent", array.shape, "x's")
    p = softmax(array.astype(np.float64), axis=axis, temperature=temperature)
    with np.errstate(**QUIET):
        c = np.where(p > 0, p * t.astype(np.float64), 0.0).sum(axis=axis, keepdims=True)
    return array.dtype, axis, t.astype(np.float64), c


def log_softmax_jvp(x, tangent, axis=-1, temperature=1.0):
    """(t - <p, t>)/tau: J = (I - 1 p^T)/tau."""
    tau = validation.check_temperature(temperature)
    dtype, axis, t, c = _tangent_and_probabilities(x, tangent, axis, tau)
    return round_to_dtype((t - c) / tau, dtype)


def logsumexp_jvp(x, tangent, axis=-1):
    """<p, t> along the axis (removed)."""
    dtype, axis, t, c = _tangent_and_probabilities(x, tangent, axis, 1.0)
    return round_to_dtype(np.squeeze(c, axis=axis), dtype)


def cross_entropy_jvp(x, tangent, target=None, reduction="mean", weight=None, ignore_index=-100,
                      label_smoothing=0.0, z_loss=0.0, softcap=None):
    """<grad l_i, t_i> per example (reduction "none"), or <grad L, t>: the float64 gradient at a unit cotangent
    (r_i (A_i p_i - a_i), the reduction's 1/D included) dotted with t."""
    if target is None:
        raise TypeError("target: jvp('cross_entropy', ...) needs the target= keyword")
    array = validation.as_float_array(x, "logits")
    t = validation.check_shape(tangent, "tangent", array.shape, "the logits'")
    options = dict(target=target, reduction=reduction, weight=weight, ignore_index=ignore_index,
                   label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap)
    unit = np.ones(array.shape[:-1] if validation.check_reduction(reduction) == "none" else ())
    g = cross_entropy_vjp(array.astype(np.float64), unit, **options)
    with np.errstate(**QUIET):
        per_example = np.where(t != 0, g * t.astype(np.float64), 0.0).sum(axis=-1)
    return round_to_dtype(per_example if reduction == "none" else per_example.sum(), array.dtype)
