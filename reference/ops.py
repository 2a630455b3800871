"""The NumPy reference: softmax, log-softmax, log-sum-exp, cross-entropy and their analytic vjps.

Every op validates its arguments, computes in float64 whatever the input dtype, and rounds once to
the input's dtype at the end, so that for float16, bfloat16 and float32 the result is within about
half an ulp of the exact value. The semantics are DESIGN.md's; in short:

* the ops act on x/tau, computed as (x - max x)/tau so that a small tau cannot overflow;
* a row that is all -inf gives NaN (softmax, log-softmax) and -inf (log-sum-exp); a row with +inf
  gives NaN and +inf; a NaN anywhere in a row makes that row NaN;
* cross-entropy acts along the last axis, l_i = -sum_c w_c q_ic log p_ic with 0 log 0 = 0, and a mean
  whose denominator is 0 is NaN (its gradient too).
"""
from __future__ import annotations

import inspect

import numpy as np

from . import _checks
from .dtypes import round_to_dtype

_QUIET = dict(over="ignore", under="ignore", invalid="ignore", divide="ignore")
OPS = ("softmax", "log_softmax", "logsumexp", "cross_entropy")


# --------------------------------------------------------------------------------------------
# Row statistics: everything below is computed along the last axis of a float64 array.

def _shifted(x: np.ndarray, temperature: float) -> np.ndarray:
    """z = (x - max x)/tau along the last axis; an all -inf row becomes NaN (-inf - -inf)."""
    z = x - x.max(axis=-1, keepdims=True)
    if temperature != 1.0:
        z /= temperature
    return z


class _RowSoftmax:
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
    return _RowSoftmax(z).p


def _log_softmax_rows(z: np.ndarray) -> np.ndarray:
    return z - _RowSoftmax(z).log_s


def _logsumexp_rows(x: np.ndarray) -> np.ndarray:
    """log sum exp x = m + log1p(t) with m = max x; +-inf rows give m itself, NaN rows NaN."""
    m = x.max(axis=-1)
    with np.errstate(**_QUIET):
        lse = m + _RowSoftmax(_shifted(x, 1.0)).log_s[..., 0]
    return np.where(np.isinf(m), m, lse)


# --------------------------------------------------------------------------------------------
# Input handling shared by the public functions.

def _rows_input(x, axis, name="x"):
    """Validate x and axis; return (float64 array with the axis moved last, axis, dtype)."""
    array = _checks.as_float_array(x, name)
    _checks.check_has_axis(array, name)
    axis = _checks.check_axis(axis, array.ndim)
    _checks.check_nonempty_axis(array, axis, name)
    return np.moveaxis(array.astype(np.float64), axis, -1), axis, array.dtype


def _rows_output(rows: np.ndarray, axis: int, dtype) -> np.ndarray:
    return round_to_dtype(np.moveaxis(rows, -1, axis), dtype)


def softmax(x, axis=-1, temperature=1.0) -> np.ndarray:
    """Softmax of x/temperature along `axis`: p_i = exp(z_i) / sum_j exp(z_j), z = (x - max x)/tau.

    In an LLM the output layer produces one logit per vocabulary entry; softmax turns them into the
    next-token distribution that is sampled from (with a temperature) and scored by cross-entropy.
    """
    rows, axis, dtype = _rows_input(x, axis)
    tau = _checks.check_temperature(temperature)
    with np.errstate(**_QUIET):
        p = _softmax_rows(_shifted(rows, tau))
    return _rows_output(p, axis, dtype)


def log_softmax(x, axis=-1, temperature=1.0) -> np.ndarray:
    """log softmax(x/temperature) = z - log sum exp z, finite for finite x however wide the spread."""
    rows, axis, dtype = _rows_input(x, axis)
    tau = _checks.check_temperature(temperature)
    with np.errstate(**_QUIET):
        y = _log_softmax_rows(_shifted(rows, tau))
    return _rows_output(y, axis, dtype)


def logsumexp(x, axis=-1) -> np.ndarray:
    """log sum_i exp x_i along `axis` (that axis is removed), computed as m + log sum exp(x - m)."""
    rows, axis, dtype = _rows_input(x, axis)
    return round_to_dtype(_logsumexp_rows(rows), dtype)


# --------------------------------------------------------------------------------------------
# Cross-entropy. Its loss and gradient are written in terms of per-example coefficients
# a_ic = w_c q_ic (q the smoothed target) and their row sums A_i:
#     l_i = sum_c a_ic (-log p_ic),        dl_i/dx_i = A_i p_i - a_i.

class _CrossEntropy:
    """A validated cross-entropy problem with the logits flattened to (N, C) in float64."""

    def __init__(self, logits, target, reduction="mean", weight=None, ignore_index=-100, label_smoothing=0.0):
        array = _checks.as_float_array(logits, "logits")
        _checks.check_has_axis(array, "logits")
        _checks.check_nonempty_axis(array, array.ndim - 1, "logits")
        self.dtype = array.dtype
        self.shape = array.shape
        self.batch_shape = array.shape[:-1]
        self.n_classes = n_classes = array.shape[-1]
        self.reduction = _checks.check_reduction(reduction)
        self.ignore_index = _checks.check_ignore_index(ignore_index)
        self.smoothing = _checks.check_label_smoothing(label_smoothing)
        self.weight = _checks.check_weight(weight, n_classes)
        self.target_kind, target = _checks.check_target(target, array.shape, self.ignore_index)
        self.logits = array.astype(np.float64).reshape(-1, n_classes)
        w = np.ones(n_classes) if self.weight is None else self.weight
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
        else:
            q = target.reshape(-1, n_classes)
            self.coef = w * ((1.0 - eps) * q + eps / n_classes)
            self.row_coef_sum = self.coef.sum(axis=-1)
            self.denominator = float(self.logits.shape[0])
        self.w = w

    def coefficients(self) -> np.ndarray:
        """The dense (N, C) matrix a_ic (for error bounds and tests; the ops never build it)."""
        if self.target_kind == "probability":
            return self.coef
        a = self.uniform_coef[:, None] * self.w
        a[np.arange(a.shape[0]), self.index] += self.onehot_coef
        return a

    def row_losses(self, logp: np.ndarray) -> np.ndarray:
        """l_i = sum_c a_ic (-log p_ic), with 0 * log 0 = 0 for classes whose coefficient is 0."""
        if self.target_kind == "probability":
            return np.where(self.coef > 0, self.coef * -logp, 0.0).sum(axis=-1)
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
        out_shape = self.batch_shape if self.reduction == "none" else ()
        v = _checks.as_float_array(cotangent, "cotangent")
        if v.shape != out_shape:
            raise ValueError(f"cotangent: must have the loss's shape {out_shape}; got shape {v.shape}")
        v = v.astype(np.float64)
        if self.reduction == "none":
            return v.reshape(-1, 1)
        if self.reduction == "mean":
            v = v / self.denominator if self.denominator > 0 else np.full_like(v, np.nan)
        return np.full((self.logits.shape[0], 1), v)

    def gradient(self, rows: _RowSoftmax, scale: np.ndarray) -> np.ndarray:
        """r_i (A_i p_i - a_i) for every example i; exactly 0 for examples with A_i = 0 (ignored).

        At each row's max entry A p - a = (A - a) - A (1 - p), which keeps its relative accuracy when
        p is close to 1 (a confident, correct prediction: the gradient is small and all of it matters).
        """
        big_a = self.row_coef_sum[:, None]
        a = self.coefficients()
        g = big_a * rows.p - a
        rows.set_top(g, (big_a - rows.at_top(a)) - big_a * rows.rest)
        g = np.where(big_a > 0, g, 0.0) * scale
        return round_to_dtype(g.reshape(self.shape), self.dtype)


def cross_entropy(logits, target, reduction="mean", weight=None, ignore_index=-100,
                  label_smoothing=0.0) -> np.ndarray:
    """Cross-entropy between softmax(logits) and the target along the last (class) axis.

    `target` is either integer class indices shaped like the batch (values in [0, C) or
    `ignore_index`) or probabilities shaped like the logits. With label smoothing eps the target
    becomes q = (1-eps) onehot + eps/C. `reduction` "mean" divides the summed loss by the summed
    target weights of the non-ignored examples (by the number of examples for probability targets).
    This is torch.nn.functional.cross_entropy with the class axis moved last.
    """
    problem = _CrossEntropy(logits, target, reduction, weight, ignore_index, label_smoothing)
    with np.errstate(**_QUIET):
        loss = problem.reduce(problem.row_losses(_log_softmax_rows(_shifted(problem.logits, 1.0))))
    return round_to_dtype(loss, problem.dtype)


def cross_entropy_value_and_grad(logits, target, reduction="mean", weight=None, ignore_index=-100,
                                 label_smoothing=0.0):
    """(loss, d loss / d logits) in one pass over the logits: the fused form a training step uses.

    For reduction "none" the gradient is that of the summed per-example losses.
    """
    problem = _CrossEntropy(logits, target, reduction, weight, ignore_index, label_smoothing)
    with np.errstate(**_QUIET):
        z = _shifted(problem.logits, 1.0)
        rows = _RowSoftmax(z)
        loss = problem.reduce(problem.row_losses(z - rows.log_s))
        ones = np.ones(problem.batch_shape if reduction == "none" else ())
        grad = problem.gradient(rows, problem.row_scale(ones))
    return round_to_dtype(loss, problem.dtype), grad


# --------------------------------------------------------------------------------------------
# Analytic vector-Jacobian products.

def _vjp_rows_input(x, cotangent, axis, out_keeps_axis=True):
    rows, axis, dtype = _rows_input(x, axis)
    v = _checks.as_float_array(cotangent, "cotangent")
    expected = np.moveaxis(rows, -1, axis).shape if out_keeps_axis else rows.shape[:-1]
    if v.shape != expected:
        raise ValueError(f"cotangent: must have the op's output shape {expected}; got shape {v.shape}")
    v = v.astype(np.float64)
    return rows, (np.moveaxis(v, axis, -1) if out_keeps_axis else v), axis, dtype


def _softmax_vjp(x, cotangent, axis=-1, temperature=1.0):
    """d<v, softmax(x/tau)>/dx = p * (v - <p, v>) / tau.

    With w = v - v_top, v - <p, v> = w - <p, w> (sum p = 1): at the max entry this is -<p, w>, a sum
    of the small terms alone, where v_top - <p, v> would cancel when p_top is close to 1.
    """
    rows, v, axis, dtype = _vjp_rows_input(x, cotangent, axis)
    tau = _checks.check_temperature(temperature)
    with np.errstate(**_QUIET):
        soft = _RowSoftmax(_shifted(rows, tau))
        w = v - soft.at_top(v)
        g = soft.p * (w - (soft.p * w).sum(axis=-1, keepdims=True)) / tau
    return _rows_output(g, axis, dtype)


def _log_softmax_vjp(x, cotangent, axis=-1, temperature=1.0):
    """d<v, log_softmax(x/tau)>/dx = (v - p * sum v) / tau.

    At the max entry v_top - p_top S = -(S - v_top) + (1 - p_top) S, with S - v_top the sum of the
    other entries and 1 - p_top = t/s, so that nothing cancels when p_top is close to 1.
    """
    rows, v, axis, dtype = _vjp_rows_input(x, cotangent, axis)
    tau = _checks.check_temperature(temperature)
    with np.errstate(**_QUIET):
        soft = _RowSoftmax(_shifted(rows, tau))
        total = v.sum(axis=-1, keepdims=True)
        g = v - soft.p * total
        soft.set_top(g, -_sum_without_top(v, soft) + soft.rest * total)
        g /= tau
    return _rows_output(g, axis, dtype)


def _sum_without_top(v: np.ndarray, soft: _RowSoftmax) -> np.ndarray:
    w = v.copy()
    soft.set_top(w, 0.0)
    return w.sum(axis=-1, keepdims=True)


def _logsumexp_vjp(x, cotangent, axis=-1):
    """d(v * logsumexp x)/dx = v * softmax(x)."""
    rows, v, axis, dtype = _vjp_rows_input(x, cotangent, axis, out_keeps_axis=False)
    with np.errstate(**_QUIET):
        g = v[..., None] * _softmax_rows(_shifted(rows, 1.0))
    return _rows_output(g, axis, dtype)


def _cross_entropy_vjp(x, cotangent, target=None, reduction="mean", weight=None, ignore_index=-100,
                       label_smoothing=0.0):
    """d(<v, CE>)/dx_i = r_i (A_i p_i - a_i), r_i = v_i, v or v/D for none, sum, mean."""
    if target is None:
        raise TypeError("target: vjp('cross_entropy', ...) needs the target= keyword")
    problem = _CrossEntropy(x, target, reduction, weight, ignore_index, label_smoothing)
    with np.errstate(**_QUIET):
        return problem.gradient(_RowSoftmax(_shifted(problem.logits, 1.0)), problem.row_scale(cotangent))


_VJPS = {
    "softmax": _softmax_vjp,
    "log_softmax": _log_softmax_vjp,
    "logsumexp": _logsumexp_vjp,
    "cross_entropy": _cross_entropy_vjp,
}


def vjp(op, x, cotangent, **kwargs) -> np.ndarray:
    """The vector-Jacobian product d<cotangent, op(x, **kwargs)>/dx from the analytic formulas.

    `op` is "softmax", "log_softmax", "logsumexp" or "cross_entropy" (which takes target=...);
    the result has x's shape and dtype.
    """
    return _VJPS[check_op_kwargs(op, kwargs, _VJPS)](x, cotangent, **kwargs)


def check_op_kwargs(op, kwargs: dict, table: dict) -> str:
    """Validate an op name against `table` and its keyword arguments against the op's signature."""
    if not isinstance(op, str):
        raise TypeError(f"op: must be one of {', '.join(map(repr, table))} (a str); got {op!r}")
    if op not in table:
        raise ValueError(f"op: must be one of {', '.join(map(repr, table))}; got {op!r}")
    allowed = [name for name in inspect.signature(table[op]).parameters][2:]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"{op}: unexpected keyword argument(s) {', '.join(unknown)}; "
                        f"allowed: {', '.join(allowed)}")
    return op
