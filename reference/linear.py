"""Fused linear cross-entropy: the LM head's matmul and the loss in one op, without the logits.

    linear_cross_entropy(hidden, weight, target, bias=None, reduction="mean", class_weight=None,
                         ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None)

Semantics (torch's F.cross_entropy on the logits, plus Gemma 2's softcap and PaLM's z-loss):

* hidden (..., H) and weight (V, H) share one floating dtype (float16, bfloat16, float32, float64); bias
  (V,) has it too or is None; target (...) holds integer class indices in [0, V) or ignore_index (any
  integer dtype, so V past 32767 or 65535 is fine); class_weight (V,) is finite and >= 0, or None (ones).
* logits u_ic = sum_k hidden_ik weight_ck + bias_c; with softcap (a number > 0) l = cap tanh(u / cap),
  else l = u. lse_i = log sum_c exp(l_ic).
* per token with t_i != ignore_index, eps = label_smoothing, w = class_weight:
      ce_i = (1 - eps) w_{t_i} (lse_i - l_{i t_i}) + (eps / V) sum_c w_c (lse_i - l_ic)
      z_i  = z_loss lse_i**2                          (z-loss per valid token, as Liger and Cut Cross-Entropy)
  Ignored tokens contribute 0 to the loss and to every gradient; their hidden rows are never read (NaN
  or inf there changes nothing) and their d_hidden rows are 0.
* reduction "none": ce_i + z_i per token, shaped like target (0 where ignored);
  "sum": sum_i (ce_i + z_i);
  "mean": sum_i ce_i / sum_{valid i} w_{t_i}  +  sum_i z_i / (number of valid tokens)
  (torch's weighted mean for the CE part, Liger's mean over non-ignored tokens for the z-loss; without
  class weights both denominators are the number of valid tokens). When sum_{valid i} w_{t_i} = 0 the
  mean is NaN, its gradients too (every entry), as in reference.cross_entropy.
* NaN or inf in the inputs of a valid token propagate as NaN through the matmul; the exact oracle refuses
  non-finite inputs.

The reference computes in float64 and rounds each result once into the input's dtype. It never builds
the (tokens x V) logits: pass 1 runs over (vocab_block x token_block) blocks of logits, keeping per token
an online log-sum-exp (running max m and t = sum_c exp(l_c - m) without one max entry, so lse = m +
log1p(t) as in ops.RowSoftmax), the target's logit and, with smoothing, sum_c w_c (m - l_c). Pass 2
recomputes each block, forms g = d loss / d logits and accumulates d_hidden += g W_block,
d_weight[block] += g^T hidden, d_bias[block] += g summed over tokens, its outer loop over vocab blocks
so that d_weight's float64 accumulator is one (vocab_block x H) block. Extra memory: a float64 copy of
hidden and the float64 d_hidden accumulator (tokens x H), a few (token_block x vocab_block) float64
blocks, a (vocab_block x H) float64 block of weight and of d_weight, O(tokens) statistics.

The exact oracle (exact_linear_cross_entropy, exact_linear_cross_entropy_vjp; last section) takes the
logits as exact sums of exact products of the inputs, evaluates tanh, exp and log in mpmath and rounds
each result once to nearest-even (gradients to the precision Ziv's strategy needs: exact_rows.ziv).
"""
from __future__ import annotations

import math
import numbers

import mpmath
import numpy as np
from mpmath import mp, mpf

from . import validation
from .dtypes import round_to_dtype
from .exact_rows import NAN, ExactLogits, format_or, round_mpf, working_prec, ziv
from .ops import QUIET

TOKEN_BLOCK = 512   # tokens x vocab per logits block: 512 x 4096 float64 is 16 MiB
VOCAB_BLOCK = 4096  # also the rows of d_weight's float64 accumulator (4096 x H)


# --------------------------------------------------------------------------------------------
# Arguments.

def _same_dtype(x, name: str, dtype) -> np.ndarray:
    array = validation.as_float_array(x, name)
    if array.dtype != dtype:
        raise ValueError(f"{name}: must have hidden's dtype {dtype.name}; got {array.dtype.name}")
    return array


def _check_matrices(hidden, weight, bias):
    """hidden (..., H), weight (V, H) and bias (V,) or None, all of one floating dtype."""
    hidden = validation.as_float_array(hidden, "hidden")
    validation.check_has_axis(hidden, "hidden")
    n_hidden = hidden.shape[-1]
    weight = _same_dtype(weight, "weight", hidden.dtype)
    if weight.ndim != 2 or weight.shape[1] != n_hidden or weight.shape[0] == 0:
        raise ValueError(f"weight: must have shape (V, {n_hidden}), V >= 1 classes by hidden's last axis "
                         f"H = {n_hidden}; got shape {weight.shape}")
    if bias is not None:
        bias = _same_dtype(bias, "bias", hidden.dtype)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias: must have shape ({weight.shape[0]},), one per class (weight's rows), or be "
                             f"None; got shape {bias.shape}")
    return hidden, weight, bias


def _check_block(value, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: must be None or a positive int; got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: must be None or a positive int; got {value!r}")
    return int(value)


def _check_class_weight(class_weight, n_classes: int) -> np.ndarray | None:
    if class_weight is None:
        return None
    w = validation.as_float_array(class_weight, "class_weight")
    if w.shape != (n_classes,):
        raise ValueError(f"class_weight: must have shape ({n_classes},), one weight per class (weight's rows), "
                         f"or be None; got shape {w.shape}")
    w = w.astype(np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("class_weight: every class weight must be finite and >= 0")
    return w


def _check_target(target, batch_shape: tuple, n_classes: int, ignore_index: int) -> np.ndarray:
    t = validation.integer_indices(target)
    if t.shape != batch_shape:
        raise ValueError(f"target: must have hidden's shape without its last axis, {batch_shape}; got shape {t.shape}")
    return validation.check_target(t, batch_shape + (n_classes,), ignore_index)[1]


class _Problem:
    """Validated arguments and the per-token coefficients of the loss, as float64 arrays of length N.

    With a_ic = onehot_i [c = t_i] + uniform_i w_c (torch's smoothed, weighted target),
    ce_i = sum_c a_ic (lse_i - l_ic) and A_i = sum_c a_ic = onehot_i + uniform_i W, W = sum_c w_c.
    """

    def __init__(self, hidden, weight, target, bias, reduction, class_weight, ignore_index, label_smoothing,
                 z_loss, softcap, token_block=None, vocab_block=None):
        self.hidden, self.weight, self.bias = _check_matrices(hidden, weight, bias)
        self.dtype = self.hidden.dtype
        self.batch_shape = self.hidden.shape[:-1]
        self.n_classes, self.n_hidden = self.weight.shape
        self.reduction = validation.check_reduction(reduction)
        self.ignore_index = validation.check_ignore_index(ignore_index)
        self.smoothing = validation.check_label_smoothing(label_smoothing)
        self.z_loss = validation.check_non_negative(z_loss, "z_loss")
        self.softcap = validation.check_softcap(softcap)
        self.token_block = _check_block(token_block, "token_block", TOKEN_BLOCK)
        self.vocab_block = _check_block(vocab_block, "vocab_block", VOCAB_BLOCK)
        self.class_weight = _check_class_weight(class_weight, self.n_classes)
        target = _check_target(target, self.batch_shape, self.n_classes, self.ignore_index).reshape(-1)
        self.n_tokens = target.size
        self.valid = target != self.ignore_index
        self.index = np.where(self.valid, target, 0)
        w = self.class_weight
        self.w_target = np.where(self.valid, 1.0 if w is None else w[self.index], 0.0)
        self.w_sum = float(self.n_classes) if w is None else float(w.sum())
        self.onehot = (1.0 - self.smoothing) * self.w_target
        self.uniform = np.where(self.valid, self.smoothing / self.n_classes, 0.0)
        self.ce_denominator = float(self.w_target.sum())
        self.n_valid = int(self.valid.sum())

    @property
    def mean_of_nothing(self) -> bool:
        return self.reduction == "mean" and self.ce_denominator == 0

    def cotangent(self, cotangent) -> np.ndarray:
        """The cotangent as float64, one entry per token (a scalar one repeated); None means ones."""
        if cotangent is None:
            return np.ones(self.n_tokens)
        v = validation.loss_cotangent(cotangent, self.batch_shape, self.reduction)
        return np.broadcast_to(v, (self.n_tokens,))

    def row_scales(self, v: np.ndarray):
        """(r_ce, r_z): d(cotangent . reduced loss) / d ce_i and / d z_i per token, 0 where ignored;
        all NaN for a mean over nothing."""
        if self.mean_of_nothing:
            return np.full(self.n_tokens, np.nan), np.full(self.n_tokens, np.nan)
        v = np.where(self.valid, v, 0.0)
        if self.reduction != "mean":
            return v, v
        return v / self.ce_denominator, v / self.n_valid

    def token_blocks(self):
        for lo in range(0, self.n_tokens, self.token_block):
            yield lo, min(lo + self.token_block, self.n_tokens)

    def vocab_blocks(self):
        """(v0, v1, weight rows, bias, class weights) of each vocabulary block, in float64."""
        for v0 in range(0, self.n_classes, self.vocab_block):
            v1 = min(v0 + self.vocab_block, self.n_classes)
            w = np.asarray(self.weight[v0:v1], dtype=np.float64)
            b = None if self.bias is None else np.asarray(self.bias[v0:v1], dtype=np.float64)
            cw = None if self.class_weight is None else self.class_weight[v0:v1]
            yield v0, v1, w, b, cw

    def targets_in(self, lo: int, hi: int, v0: int, v1: int):
        """(rows, columns) within the block of tokens lo:hi and classes v0:v1 of the tokens' targets there."""
        index = self.index[lo:hi]
        rows = np.flatnonzero((index >= v0) & (index < v1))
        return rows, index[rows] - v0


def _logits(h: np.ndarray, w: np.ndarray, b, cap):
    """(l, u) for a block: u = h w^T + b and l = cap tanh(u / cap) (Gemma 2's softcap), or l = u without one."""
    u = np.dot(h, w.T)
    if b is not None:
        u += b
    if cap is None:
        return u, u
    l = np.divide(u, cap)
    np.tanh(l, out=l)
    l *= cap
    return l, u


# --------------------------------------------------------------------------------------------
# The two passes.

def _statistics(p: _Problem, hf: np.ndarray):
    """Pass 1, per token: m (max logit), t (sum of exp(l_c - m) over every class but one max, so that
    lse = m + log1p(t)), the target's logit, and with smoothing spread = sum_c w_c (m - l_c).

    Online: when a block raises the max from m to m', the old max joins t and everything seen so far is
    rescaled, t' = (t + 1) exp(m - m') + (the block's exps but its max); spread moves up by (m' - m) times
    the class weight seen so far. Every term stays >= 0, so nothing cancels."""
    n = p.n_tokens
    m, t = np.full(n, -np.inf), np.zeros(n)
    l_target, spread = np.zeros(n), np.zeros(n)
    seen = 0.0
    for v0, v1, w, b, cw in p.vocab_blocks():
        for lo, hi in p.token_blocks():
            l, _ = _logits(hf[lo:hi], w, b, p.softcap)
            rows, cols = p.targets_in(lo, hi, v0, v1)
            l_target[lo + rows] = l[rows, cols]
            top = l.argmax(axis=1)
            every = np.arange(hi - lo)
            block_max = l[every, top]
            m_old = m[lo:hi]
            m_new = np.maximum(m_old, block_max)
            grown = block_max > m_old
            l -= m_new[:, None]
            if p.smoothing:
                block_spread = -(l.sum(axis=1) if cw is None else np.dot(l, cw))
                spread[lo:hi] = block_spread + ((spread[lo:hi] + (m_new - m_old) * seen) if seen else 0.0)
            np.exp(l, out=l)
            l[every[grown], top[grown]] = 0.0
            t[lo:hi] = np.where(grown, (t[lo:hi] + 1.0) * np.exp(m_old - m_new), t[lo:hi]) + l.sum(axis=1)
            m[lo:hi] = m_new
        seen += (v1 - v0) if cw is None else float(cw.sum())
    return m, t, l_target, spread


def _gradients(p: _Problem, hf, m, t, lse, gap, r_ce, r_z):
    """Pass 2: g_ic = d(cotangent . loss)/d l_ic, times dl/du, into d_hidden, d_weight, d_bias.

    g_ic = r_ce (A p_c - a_c) + r_z 2 z_loss lse p_c = B p_c - r_ce uniform w_c - r_ce onehot [c = t];
    at the target, r_ce onehot (p_t - 1) with p_t - 1 = expm1(-(lse - l_t)), accurate when p_t is near 1.
    Through the softcap, d/du [cap tanh(u/cap)] = 1 - tanh(u/cap)**2 = 1 / cosh(u/cap)**2."""
    b_rest = r_ce * p.uniform * p.w_sum + r_z * 2.0 * p.z_loss * lse
    big_b = r_ce * p.onehot + b_rest
    r_uniform, r_onehot = r_ce * p.uniform, r_ce * p.onehot
    at_target = r_onehot * np.expm1(-gap) - r_uniform * (1.0 if p.class_weight is None else
                                                         p.class_weight[p.index])
    s = 1.0 + t
    d_hidden = np.zeros((p.n_tokens, p.n_hidden))
    d_weight = np.empty(p.weight.shape, p.dtype)
    d_bias = None if p.bias is None else np.empty(p.n_classes, p.dtype)
    for v0, v1, w, b, cw in p.vocab_blocks():
        dw, db = np.zeros(w.shape), np.zeros(v1 - v0)
        for lo, hi in p.token_blocks():
            l, u = _logits(hf[lo:hi], w, b, p.softcap)
            g = l  # becomes p, then g, in place
            g -= m[lo:hi, None]
            np.exp(g, out=g)
            g /= s[lo:hi, None]
            rows, cols = p.targets_in(lo, hi, v0, v1)
            p_target = g[rows, cols]
            g *= big_b[lo:hi, None]
            if p.smoothing:
                g -= r_uniform[lo:hi, None] if cw is None else np.multiply.outer(r_uniform[lo:hi], cw)
            g[rows, cols] = at_target[lo + rows] + p_target * b_rest[lo + rows]
            ignored = ~p.valid[lo:hi]
            g[ignored] = 0.0 * r_ce[lo:hi][ignored, None]  # 0, or NaN for a mean over nothing
            if p.softcap is not None:
                u /= p.softcap
                np.cosh(u, out=u)
                np.square(u, out=u)
                g /= u
            d_hidden[lo:hi] += np.dot(g, w)
            dw += np.dot(g.T, hf[lo:hi])
            db += g.sum(axis=0)
        d_weight[v0:v1] = round_to_dtype(dw, p.dtype)
        if d_bias is not None:
            d_bias[v0:v1] = round_to_dtype(db, p.dtype)
    return round_to_dtype(d_hidden.reshape(p.hidden.shape), p.dtype), d_weight, d_bias


def _fused(p: _Problem, v: np.ndarray | None):
    """(value, d_hidden, d_weight, d_bias); the gradients are None when v (the cotangent per token) is."""
    hf = np.asarray(p.hidden.reshape(-1, p.n_hidden), dtype=np.float64)
    if not p.valid.all():  # ignored tokens' hidden never enters a sum (a NaN there would, as 0 * NaN)
        hf = np.where(p.valid[:, None], hf, 0.0)
    with np.errstate(**QUIET):
        m, t, l_target, spread = _statistics(p, hf)
        log_s = np.log1p(t)
        lse = m + log_s
        gap = (m - l_target) + log_s  # lse - l_target, both terms >= 0
        ce = np.where(p.onehot > 0, p.onehot * gap, 0.0)
        if p.smoothing:  # sum_c w_c (lse - l_c) = W log1p(t) + sum_c w_c (m - l_c)
            ce += np.where(p.uniform > 0, p.uniform * (p.w_sum * log_s + spread), 0.0)
        z = np.where(p.valid, p.z_loss * lse ** 2, 0.0) if p.z_loss else np.zeros(p.n_tokens)
        if p.reduction == "none":
            value = (ce + z).reshape(p.batch_shape)
        elif p.reduction == "sum":
            value = np.asarray(ce.sum() + z.sum())
        else:
            value = np.asarray(np.nan if p.mean_of_nothing else ce.sum() / p.ce_denominator + z.sum() / p.n_valid)
        value = round_to_dtype(value, p.dtype)
        if v is None:
            return value, None, None, None
        return (value,) + _gradients(p, hf, m, t, lse, gap, *p.row_scales(v))


# --------------------------------------------------------------------------------------------
# Public reference.

def linear_cross_entropy_value_and_grads(hidden, weight, target, bias=None, reduction="mean", class_weight=None,
                                         ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None,
                                         cotangent=None, *, token_block=None, vocab_block=None):
    """(loss, d_hidden, d_weight, d_bias) of linear_cross_entropy in one fused computation (d_bias is None
    without a bias). The gradients are those of <cotangent, loss>; cotangent None means 1 (ones for "none")."""
    p = _Problem(hidden, weight, target, bias, reduction, class_weight, ignore_index, label_smoothing, z_loss,
                 softcap, token_block, vocab_block)
    return _fused(p, p.cotangent(cotangent))


def linear_cross_entropy(hidden, weight, target, bias=None, reduction="mean", class_weight=None, ignore_index=-100,
                         label_smoothing=0.0, z_loss=0.0, softcap=None, *, token_block=None, vocab_block=None):
    """Cross-entropy (plus z-loss) of softmax(hidden weight^T + bias) (softcapped) against target, in hidden's
    dtype: a scalar, or one loss per token for reduction "none". The semantics are the module docstring's.
    The same computation as linear_cross_entropy_value_and_grads without its gradient pass."""
    p = _Problem(hidden, weight, target, bias, reduction, class_weight, ignore_index, label_smoothing, z_loss,
                 softcap, token_block, vocab_block)
    return _fused(p, None)[0]


def linear_cross_entropy_vjp(hidden, weight, target, cotangent, bias=None, reduction="mean", class_weight=None,
                             ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None, *,
                             token_block=None, vocab_block=None):
    """(d_hidden, d_weight, d_bias or None): the gradients of <cotangent, linear_cross_entropy(...)>, each in
    its input's dtype; cotangent is a scalar for "mean" and "sum", one entry per token for "none"."""
    return linear_cross_entropy_value_and_grads(
        hidden, weight, target, bias, reduction, class_weight, ignore_index, label_smoothing, z_loss, softcap,
        cotangent, token_block=token_block, vocab_block=vocab_block)[1:]


def linear_logits(hidden, weight, bias=None, softcap=None) -> np.ndarray:
    """The (..., V) logits in float64, softcapped if asked: materialised, for small inputs and tests."""
    hidden, weight, bias = _check_matrices(hidden, weight, bias)
    cap = validation.check_softcap(softcap)
    h = np.asarray(hidden.reshape(-1, hidden.shape[-1]), dtype=np.float64)
    b = None if bias is None else bias.astype(np.float64)
    return _logits(h, weight.astype(np.float64), b, cap)[0].reshape(hidden.shape[:-1] + (weight.shape[0],))


# --------------------------------------------------------------------------------------------
# The exact oracle (tiny shapes only: everything is mpmath, one token and class at a time).

def _exact_problem(args) -> _Problem:
    p = _Problem(*args)
    for name, array in (("hidden", p.hidden), ("weight", p.weight), ("bias", p.bias)):
        if array is not None and not np.all(np.isfinite(array.astype(np.float64))):
            raise ValueError(f"{name}: the exact oracle needs finite values")
    return p


def _exact_logits(p: _Problem) -> list:
    """u_ic = sum_k hidden_ik weight_ck + bias_c exactly (exact=True: no rounding at all)."""
    h = p.hidden.reshape(-1, p.n_hidden).astype(np.float64).tolist()
    w = p.weight.astype(np.float64).tolist()
    b = [0.0] * p.n_classes if p.bias is None else p.bias.astype(np.float64).tolist()
    with mp.workprec(53):  # every float converts exactly
        def dot(hr, wr, bc):
            total = mpf(bc)
            for x, y in zip(hr, wr):
                total = mpmath.fadd(total, mpmath.fmul(x, y, exact=True), exact=True)
            return total
        return [[dot(hr, wr, bc) for wr, bc in zip(w, b)] for hr in h]


def _exact_coefficients(p: _Problem, i: int):
    """(a_c for every class, A) of token i: a_c = w_c ((1 - eps) [c = t_i] + eps / V), exact up to rounding."""
    eps = mpf(p.smoothing)
    keep = mpmath.fsub(1, eps, exact=True)
    w = [mpf(1)] * p.n_classes if p.class_weight is None else [mpf(x) for x in p.class_weight.tolist()]
    y = int(p.index[i])
    a = [wc * (eps / p.n_classes + (keep if c == y else 0)) for c, wc in enumerate(w)]
    return a, mpmath.fsum(a)


def _exact_ce_denominator(p: _Problem) -> mpf:
    return mpmath.fsum(mpf(x) for x in p.w_target.tolist())


def exact_linear_cross_entropy(hidden, weight, target, bias=None, reduction="mean", class_weight=None,
                               ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None, dtype=None):
    """linear_cross_entropy's exact value, rounded once to hidden's dtype (or `dtype`). Every term is >= 0, so
    the working precision's relative error carries through: no cancellation to guard against."""
    p = _exact_problem((hidden, weight, target, bias, reduction, class_weight, ignore_index, label_smoothing,
                        z_loss, softcap))
    fmt = format_or(dtype, p.dtype)
    u = _exact_logits(p)
    with mp.workprec(working_prec(fmt, max(p.n_tokens, 1) * p.n_classes) + 32):
        ce, z = [mpf(0)] * p.n_tokens, [mpf(0)] * p.n_tokens
        for i in np.flatnonzero(p.valid).tolist():
            token = ExactLogits(u[i], p.softcap)
            a, _ = _exact_coefficients(p, i)
            ce[i] = mpmath.fsum(ac * gc for ac, gc in zip(a, token.gap))
            z[i] = mpf(p.z_loss) * token.lse ** 2
        if p.reduction == "none":
            values = np.array([round_mpf(c + zi, fmt) for c, zi in zip(ce, z)], dtype=np.float64)
            return values.reshape(p.batch_shape).astype(fmt.dtype)
        total = mpmath.fsum(ce) + mpmath.fsum(z)
        if p.reduction == "mean":
            total = NAN if p.mean_of_nothing else mpmath.fsum(ce) / _exact_ce_denominator(p) + mpmath.fsum(z) / p.n_valid
    return np.asarray(round_mpf(total, fmt)).astype(fmt.dtype)


def exact_linear_cross_entropy_vjp(hidden, weight, target, cotangent, bias=None, reduction="mean",
                                   class_weight=None, ignore_index=-100, label_smoothing=0.0, z_loss=0.0,
                                   softcap=None, dtype=None):
    """(d_hidden, d_weight, d_bias or None) exactly, each rounded once: g_ic = (r_ce (A p_c - a_c) + r_z 2 z_loss
    lse p_c) sech2_c, then g W, g^T hidden and g summed over tokens, at the precision Ziv's strategy needs
    (each sum carries the sum of its terms' magnitudes as its scale)."""
    p = _exact_problem((hidden, weight, target, bias, reduction, class_weight, ignore_index, label_smoothing,
                        z_loss, softcap))
    fmt = format_or(dtype, p.dtype)
    v = p.cotangent(cotangent)
    n, n_hidden, n_classes = p.n_tokens, p.n_hidden, p.n_classes
    shapes = [p.hidden.shape, p.weight.shape] + ([] if p.bias is None else [p.bias.shape])
    if p.mean_of_nothing:
        return tuple(np.full(shape, np.nan).astype(fmt.dtype) for shape in shapes) + ((None,) if p.bias is None else ())
    u = _exact_logits(p)
    h = p.hidden.reshape(-1, n_hidden).astype(np.float64).tolist()
    w = p.weight.astype(np.float64).tolist()

    def compute(prec):
        h_mp = [[mpf(x) for x in row] for row in h]
        w_mp = [[mpf(x) for x in row] for row in w]
        zero = [mpf(0)] * n_classes
        g, g_scale = [zero] * n, [zero] * n
        for i in np.flatnonzero(p.valid).tolist():
            if p.reduction == "mean":
                r_ce, r_z = mpf(v[i]) / _exact_ce_denominator(p), mpf(v[i]) / p.n_valid
            else:
                r_ce = r_z = mpf(v[i])
            token = ExactLogits(u[i], p.softcap)
            a, big_a = _exact_coefficients(p, i)
            zl = 2 * mpf(p.z_loss) * token.lse
            g[i] = [(r_ce * (big_a * pc - ac) + r_z * zl * pc) * sc for pc, ac, sc in zip(token.p, a, token.sech2)]
            g_scale[i] = [(abs(r_ce) * (big_a * pc + ac) + abs(r_z * zl) * pc) * sc
                          for pc, ac, sc in zip(token.p, a, token.sech2)]
        values, scales = [], []
        for i in range(n):  # d_hidden_ik = sum_c g_ic W_ck
            for k in range(n_hidden):
                values.append(mpmath.fsum(g[i][c] * w_mp[c][k] for c in range(n_classes)))
                scales.append(mpmath.fsum(g_scale[i][c] * abs(w_mp[c][k]) for c in range(n_classes)))
        for c in range(n_classes):  # d_weight_ck = sum_i g_ic h_ik
            for k in range(n_hidden):
                values.append(mpmath.fsum(g[i][c] * h_mp[i][k] for i in range(n)))
                scales.append(mpmath.fsum(g_scale[i][c] * abs(h_mp[i][k]) for i in range(n)))
        if p.bias is not None:  # d_bias_c = sum_i g_ic
            for c in range(n_classes):
                values.append(mpmath.fsum(g[i][c] for i in range(n)))
                scales.append(mpmath.fsum(g_scale[i][c] for i in range(n)))
        return values, scales

    flat = np.array(ziv(compute, fmt, max(n, 1) * n_classes * max(n_hidden, 1)), dtype=np.float64)
    out, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        out.append(flat[start:start + size].reshape(shape).astype(fmt.dtype))
        start += size
    return tuple(out) + ((None,) if p.bias is None else ())


__all__ = ["exact_linear_cross_entropy", "exact_linear_cross_entropy_vjp", "linear_cross_entropy",
           "linear_cross_entropy_value_and_grads", "linear_cross_entropy_vjp", "linear_logits"]
