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


def _softmax_rows(z: np.ndarray) -> np.ndarray:
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _log_sum(z: np.ndarray, e: np.ndarray) -> np.ndarray:
    """log sum_j e_j for e = exp(z) with max z = 0, as log1p(t), t = the sum without one max entry.

    log(1 + t) rounds 1 + t first and loses t's relative accuracy when t is small, i.e. exactly when
    the model is confident; log1p keeps it. Rows whose max is not finite (NaN, +-inf) give NaN.
    `e` is borrowed and restored.
    """
    top = np.argmax(z, axis=-1)[..., None]
    np.put_along_axis(e, top, 0.0, axis=-1)
    t = e.sum(axis=-1, keepdims=True)
    np.put_along_axis(e, top, 1.0, axis=-1)
    finite = np.take_along_axis(z, top, axis=-1) == 0
    return np.where(finite, np.log1p(t), np.nan)


def _log_softmax_rows(z: np.ndarray) -> np.ndarray:
    return z - _log_sum(z, np.exp(z))


def _logsumexp_rows(x: np.ndarray) -> np.ndarray:
    """log sum exp x = m + log1p(t) with m = max x; +-inf rows give m itself, NaN rows NaN."""
    m = x.max(axis=-1)
    with np.errstate(**_QUIET):
        z = _shifted(x, 1.0)
        lse = m + _log_sum(z, np.exp(z))[..., 0]
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

    def gradient(self, p: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """r_i (A_i p_i - a_i) for every example i; exactly 0 for examples with A_i = 0 (ignored)."""
        g = self.row_coef_sum[:, None] * p
        if self.target_kind == "probability":
            g -= self.coef
        else:
            g -= self.uniform_coef[:, None] * self.w
            rows = np.arange(g.shape[0])
            g[rows, self.index] -= self.onehot_coef
        g = np.where(self.row_coef_sum[:, None] > 0, g, 0.0) * scale
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
        logp = _log_softmax_rows(_shifted(problem.logits, 1.0))
        loss = problem.reduce(problem.row_losses(logp))
    return round_to_dtype(loss, problem.dtype)


def cross_entropy_value_and_grad(logits, target, reduction="mean", weight=None, ignore_index=-100,
                                 label_smoothing=0.0):
    """(loss, d loss / d logits) in one pass over the logits: the fused form a training step uses.

    For reduction "none" the gradient is that of the summed per-example losses.
    """
    problem = _CrossEntropy(logits, target, reduction, weight, ignore_index, label_smoothing)
    with np.errstate(**_QUIET):
        z = _shifted(problem.logits, 1.0)
        e = np.exp(z)
        s = e.sum(axis=-1, keepdims=True)
        loss = problem.reduce(problem.row_losses(z - _log_sum(z, e)))
        ones = np.ones(problem.batch_shape if reduction == "none" else ())
        grad = problem.gradient(e / s, problem.row_scale(ones))
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
    """d<v, softmax(x/tau)>/dx = p * (v - <p, v>) / tau."""
    rows, v, axis, dtype = _vjp_rows_input(x, cotangent, axis)
    tau = _checks.check_temperature(temperature)
    with np.errstate(**_QUIET):
        p = _softmax_rows(_shifted(rows, tau))
        g = p * (v - (p * v).sum(axis=-1, keepdims=True)) / tau
    return _rows_output(g, axis, dtype)


def _log_softmax_vjp(x, cotangent, axis=-1, temperature=1.0):
    """d<v, log_softmax(x/tau)>/dx = (v - p * sum v) / tau."""
    rows, v, axis, dtype = _vjp_rows_input(x, cotangent, axis)
    tau = _checks.check_temperature(temperature)
    with np.errstate(**_QUIET):
        p = _softmax_rows(_shifted(rows, tau))
        g = (v - p * v.sum(axis=-1, keepdims=True)) / tau
    return _rows_output(g, axis, dtype)


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
        p = _softmax_rows(_shifted(problem.logits, 1.0))
        return problem.gradient(p, problem.row_scale(cotangent))


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
