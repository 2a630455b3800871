"""The loss family: focal loss, MSE on probabilities, multiclass hinge, entropy, KL divergence and the
cross-entropy between two distributions, each with its analytic vjp.

As in ops.py, every function validates its arguments (reference/validation.py), computes in float64 and
rounds once to the input's dtype. Everything acts row-wise along the last axis.

Losses on logits (..., C) with integer class indices `target` (...), each in [0, C) (there is no
ignore_index and there are no probability targets). `reduction` is "mean" (sum / N over the N examples,
NaN for an empty batch; unlike cross_entropy's weighted mean it never divides by a sum of weights),
"sum" or "none" (one loss per example). p = softmax(logits), t the target:

    focal_loss(logits, target, gamma=2.0, alpha=None, reduction="mean")
        l = -alpha_t (1 - p_t)^gamma log p_t.  gamma is finite and >= 0 (0 gives cross-entropy); alpha is
        None (no weighting), a scalar (every class) or a (C,) vector of per-class weights, finite and >= 0.
    mse_loss(logits, target, form="full", reduction="mean")
        form="full": l = sum_c (p_c - y_c)^2 against the one-hot y (the Brier score);
        form="target": l = (p_t - 1)^2, the seed text's form (the target's term of the full one).
    multiclass_hinge_loss(logits, target, margin=1.0, reduction="mean")
        l = max(0, margin - (z_t - max_{j != t} z_j)) on the logits z themselves (Crammer-Singer); margin
        is finite and >= 0. A single class has no j != t: the max is -inf and l = 0.

Distributions p, q (..., n), every entry in [0, 1] (rows need not sum to 1: the formulas are applied as
written), one value per row (the last axis is removed), in p's dtype:

    entropy(p) = -sum_i p_i log p_i
    kl_divergence(p, q) = sum_i p_i log(p_i / q_i)
    distribution_cross_entropy(p, q) = -sum_i p_i log q_i        (= entropy(p) + kl_divergence(p, q))

with 0 log 0 = 0: an entry with p_i = 0 contributes 0 whatever q_i is (q_i = 0 included); p_i > 0 with
q_i = 0 makes KL and the cross-entropy +inf.

`vjp(op, x, cotangent, **kwargs)` is ops.vjp extended to these ops. For the distribution ops the vjp is
with respect to the first argument p (x), q being the keyword q=; the gradient with respect to q is
-v p / q for both KL and the cross-entropy (not offered as a vjp). Each private *_vjp below documents
its formula and its convention where the function is not differentiable.
"""
from __future__ import annotations

import numpy as np

from . import validation
from .dtypes import round_to_dtype
from .ops import QUIET, RowSoftmax, shifted_rows, softmax_vjp

MSE_FORMS = ("full", "target")


# --------------------------------------------------------------------------------------------
# Losses on logits with class-index targets.

class IndexLossProblem:
    """A validated loss problem: logits flattened to (N, C) float64, targets (N,), the reduction."""

    def __init__(self, logits, target, reduction):
        array = validation.logits_array(logits)
        self.dtype, self.shape, self.batch_shape = array.dtype, array.shape, array.shape[:-1]
        self.n_classes = array.shape[-1]
        self.reduction = validation.check_reduction(reduction)
        self.target = validation.check_class_index(target, array.shape).reshape(-1)
        self.logits = array.astype(np.float64).reshape(-1, self.n_classes)
        self.rows = np.arange(self.logits.shape[0])

    def at_target(self):
        """(softmax rows, p_t, 1 - p_t, -log p_t), each accurate: 1 - p_t is t/s when the target is the
        row's max (no cancellation however close p_t is to 1), -log p_t = log s - z_t."""
        z = shifted_rows(self.logits, 1.0)
        soft = RowSoftmax(z)
        q = soft.p[self.rows, self.target]
        nll = soft.log_s[:, 0] - z[self.rows, self.target]
        rest = np.where(self.target == soft.top[:, 0], soft.rest[:, 0], 1.0 - q)
        return soft, q, rest, nll

    def reduce(self, losses: np.ndarray) -> np.ndarray:
        if self.reduction == "none":
            return round_to_dtype(losses.reshape(self.batch_shape), self.dtype)
        total = losses.sum()
        if self.reduction == "mean":
            total = total / losses.size if losses.size else np.nan
        return round_to_dtype(np.asarray(total), self.dtype)

    def row_scale(self, cotangent) -> np.ndarray:
        """d(reduced loss)/d l_i times the cotangent, shaped (N, 1)."""
        v = validation.loss_cotangent(cotangent, self.batch_shape, self.reduction).reshape(-1, 1)
        n = self.logits.shape[0]
        if self.reduction == "none":
            return v
        return np.broadcast_to(v / n if self.reduction == "mean" else v, (n, 1)) if n else np.zeros((0, 1))

    def minus_onehot(self, p: np.ndarray, rest: np.ndarray) -> np.ndarray:
        """p - onehot(target), its target entry computed as -(1 - p_t)."""
        g = p.copy()
        g[self.rows, self.target] = -rest
        return g

    def gradient(self, g: np.ndarray) -> np.ndarray:
        return round_to_dtype(g.reshape(self.shape), self.dtype)


def alpha_at_target(problem: IndexLossProblem, alpha) -> np.ndarray:
    a = validation.check_alpha(alpha, problem.n_classes)
    return np.ones(problem.target.shape) if a is None else a[problem.target]


def focal_loss(logits, target, gamma=2.0, alpha=None, reduction="mean") -> np.ndarray:
    """Focal loss -alpha_t (1 - p_t)^gamma log p_t (Lin et al. 2017): cross-entropy with the well
    classified examples (p_t near 1) down-weighted. An example whose alpha_t is 0 contributes 0, even
    where its target logit is -inf (0 log 0 = 0, as in cross_entropy)."""
    problem = IndexLossProblem(logits, target, reduction)
    gamma = validation.check_non_negative(gamma, "gamma")
    alpha_t = alpha_at_target(problem, alpha)
    with np.errstate(**QUIET):
        _, _, rest, nll = problem.at_target()
        losses = np.where(alpha_t > 0, alpha_t * rest ** gamma * nll, 0.0)
    return problem.reduce(losses)


def focal_loss_vjp(x, cotangent, target=None, gamma=2.0, alpha=None, reduction="mean"):
    """g_i = r_i alpha_t F_i (p_i - onehot_i), with r_i from the reduction and the cotangent and
        F = (1 - p_t)^gamma + gamma p_t (-log p_t) (1 - p_t)^(gamma - 1)
          = (1 - p_t)^gamma (1 + gamma p_t (-log p_t) / (1 - p_t)),
    the second form finite everywhere: -log(1 - r)/r -> 1 as r = 1 - p_t -> 0, and p_t (-log p_t) -> 0 as
    p_t -> 0 (a target at a -inf logit gets F = 1: the cross-entropy gradient). gamma = 0 gives F = 1."""
    if target is None:
        raise TypeError("target: vjp('focal_loss', ...) needs the target= keyword")
    problem = IndexLossProblem(x, target, reduction)
    gamma = validation.check_non_negative(gamma, "gamma")
    alpha_t = alpha_at_target(problem, alpha)
    scale = problem.row_scale(cotangent)
    with np.errstate(**QUIET):
        soft, q, rest, nll = problem.at_target()
        ratio = np.where(rest > 0, nll / rest, 1.0)
        factor = rest ** gamma * (1.0 + gamma * np.where(q > 0, q * ratio, 0.0))
        g = (alpha_t * factor)[:, None] * scale * problem.minus_onehot(soft.p, rest)
        g = np.where((alpha_t > 0)[:, None], g, 0.0)
    return problem.gradient(g)


def mse_loss(logits, target, form="full", reduction="mean") -> np.ndarray:
    """Squared error between p = softmax(logits) and the one-hot target: form="full" sums over every
    class, sum_c (p_c - y_c)^2 (the Brier score, in [0, 2]); form="target" keeps the target's term,
    (p_t - 1)^2 (in [0, 1]). Its gradient vanishes as p_t -> 0: the seed's point against it."""
    problem = IndexLossProblem(logits, target, reduction)
    form = validation.check_choice(form, "form", MSE_FORMS)
    with np.errstate(**QUIET):
        soft, _, rest, _ = problem.at_target()
        if form == "target":
            losses = rest ** 2
        else:
            squares = soft.p ** 2
            squares[problem.rows, problem.target] = rest ** 2
            losses = squares.sum(axis=-1)
    return problem.reduce(losses)


def mse_loss_vjp(x, cotangent, target=None, form="full", reduction="mean"):
    """form="target": g = r_i 2 (1 - p_t) p_t (p - onehot);
    form="full": g = r_i softmax_vjp(x, 2 (p - onehot)), i.e. 2 p_j ((p_j - y_j) - <p, p - y>)."""
    if target is None:
        raise TypeError("target: vjp('mse_loss', ...) needs the target= keyword")
    problem = IndexLossProblem(x, target, reduction)
    form = validation.check_choice(form, "form", MSE_FORMS)
    scale = problem.row_scale(cotangent)
    with np.errstate(**QUIET):
        soft, q, rest, _ = problem.at_target()
        diff = problem.minus_onehot(soft.p, rest)
        if form == "target":
            g = (2 * rest * q)[:, None] * diff
        else:
            g = softmax_vjp(problem.logits, 2 * diff)
    return problem.gradient(scale * g)


def hinge_parts(problem: IndexLossProblem, margin: float):
    """(margin - (z_t - m), the logits with the target's set to -inf, m = max_{j != t} z_j)."""
    others = problem.logits.copy()
    others[problem.rows, problem.target] = -np.inf
    m = others.max(axis=-1)
    return margin - (problem.logits[problem.rows, problem.target] - m), others, m


def multiclass_hinge_loss(logits, target, margin=1.0, reduction="mean") -> np.ndarray:
    """max(0, margin - (z_t - max_{j != t} z_j)): 0 once the target's logit leads every other by the
    margin. It acts on the logits, not on probabilities; a NaN in a row makes its loss NaN."""
    problem = IndexLossProblem(logits, target, reduction)
    margin = validation.check_non_negative(margin, "margin")
    with np.errstate(**QUIET):
        slack, _, _ = hinge_parts(problem, margin)
        losses = np.where(np.isnan(slack), np.nan, np.maximum(slack, 0.0))
    return problem.reduce(losses)


def multiclass_hinge_loss_vjp(x, cotangent, target=None, margin=1.0, reduction="mean"):
    """The minimum-norm subgradient, r_i times:
      * -1 at the target and +1/k at each of the k classes j != t tied for the max, where the slack
        margin - (z_t - m) is > 0 (ties split evenly: tied logits get exactly equal gradients);
      * 0 where the slack is <= 0, the kink (slack exactly 0, the margin exactly met) included: there the
        subgradients are the segment between 0 and the one above, and 0 is its shortest element;
      * NaN for a row whose slack is NaN.
    The torch and JAX adapters' autograd picks other subgradients at the kink (xentcheck.semantics)."""
    if target is None:
        raise TypeError("target: vjp('multiclass_hinge_loss', ...) needs the target= keyword")
    problem = IndexLossProblem(x, target, reduction)
    margin = validation.check_non_negative(margin, "margin")
    scale = problem.row_scale(cotangent)
    with np.errstate(**QUIET):
        slack, others, m = hinge_parts(problem, margin)
        tied = others == m[:, None]
        g = tied / tied.sum(axis=-1, keepdims=True)
        g[problem.rows, problem.target] = -1.0
        g = np.where((slack > 0)[:, None], g, 0.0)
        g = np.where(np.isnan(slack)[:, None], np.nan, g) * scale
    return problem.gradient(g)


# --------------------------------------------------------------------------------------------
# Distributions: entropy, KL divergence, cross-entropy between p and q.

def check_distributions(p, q=None, needs_q=False, op=""):
    if needs_q and q is None:
        raise TypeError(f"q: {op} needs the second distribution q")
    p_array = validation.check_probabilities(p, "p")
    q_array = None if q is None else validation.check_probabilities(q, "q", p_array.shape)
    return p_array.astype(np.float64), None if q is None else q_array.astype(np.float64), p_array.dtype


def _log_ratio(p, q):
    """log(p / q), from the quotient (one rounding) unless it overflows (q near the float64 underflow)."""
    ratio = p / q
    return np.where(np.isinf(ratio) & (q > 0), np.log(p) - np.log(q), np.log(ratio))


def entropy(p) -> np.ndarray:
    """H(p) = -sum_i p_i log p_i along the last axis, with 0 log 0 = 0 (every term is >= 0)."""
    p, _, dtype = check_distributions(p)
    with np.errstate(**QUIET):
        return round_to_dtype(np.where(p > 0, -p * np.log(p), 0.0).sum(axis=-1), dtype)


def kl_divergence(p, q) -> np.ndarray:
    """KL(p || q) = sum_i p_i log(p_i / q_i) along the last axis: >= 0 for distributions, 0 only at p = q.
    p_i = 0 contributes 0 (q_i = 0 too); p_i > 0 with q_i = 0 gives +inf.

    Near p = q the terms (of size |p - q|) cancel down to a sum of size (p - q)^2 / q, so where |p_i - q_i|
    <= q_i / 4 a term is taken as g_i + (p_i - q_i), g_i = p_i log(p_i / q_i) - (p_i - q_i) >= 0 accurate
    (see _gibbs_terms) and p_i - q_i exact (Sterbenz); elsewhere as p_i log(p_i / q_i) itself, accurate to
    a few ulps, where splitting it would cancel (p_i << q_i: g_i and p_i - q_i are both about -q_i)."""
    p, q, dtype = check_distributions(p, q, True, "kl_divergence")
    with np.errstate(**QUIET):
        counted = p > 0
        near = counted & (np.abs(p - q) <= 0.25 * q)
        terms = np.where(near, _gibbs_terms(p, q), p * _log_ratio(p, q))
        total = np.where(counted, terms, 0.0).sum(axis=-1) + np.where(near, p - q, 0.0).sum(axis=-1)
        return round_to_dtype(total, dtype)


def _gibbs_terms(p, q) -> np.ndarray:
    """p log(p/q) - (p - q) = q phi(x), x = (p - q)/q, phi(x) = (1 + x) log1p(x) - x = sum_{k>=2} (-x)^k/(k(k-1)).
    For |x| <= 1/4 the series (terms shrinking 4x each, 30 of them reach 2**-60 of the first); elsewhere the
    formula, which loses at most 4 bits there (+inf where q = 0 < p)."""
    x = np.where(q > 0, (p - q) / np.where(q > 0, q, 1.0), 0.0)
    small = np.abs(x) <= 0.25
    xs = np.where(small, x, 0.0)
    series = np.zeros_like(xs)
    for k in range(31, 2, -1):  # Horner in -x from the last term down to k = 3, then the x^2/2 one
        series = (series + 1.0 / (k * (k - 1))) * -xs
    series = (series + 0.5) * xs * xs
    return np.where(q == 0, np.inf, np.where(small, q * series, p * _log_ratio(p, q) - (p - q)))


def distribution_cross_entropy(p, q) -> np.ndarray:
    """H(p, q) = -sum_i p_i log q_i along the last axis (= H(p) + KL(p || q)): the cross-entropy of
    `cross_entropy` with a probability target, taken between two distributions instead of logits."""
    p, q, dtype = check_distributions(p, q, True, "distribution_cross_entropy")
    with np.errstate(**QUIET):
        return round_to_dtype(np.where(p > 0, -p * np.log(q), 0.0).sum(axis=-1), dtype)


def _row_vjp(p, cotangent, slope) -> np.ndarray:
    """v times the elementwise slope, each row's v against its entries. The vjp is linear in v: a zero
    cotangent gives exactly 0, also where the slope is infinite."""
    v = validation.check_shape(cotangent, "cotangent", p.shape[:-1], "the op's output").astype(np.float64)[..., None]
    with np.errstate(**QUIET):
        return np.where(v == 0, 0.0, v * slope)


def entropy_vjp(x, cotangent):
    """d<v, H(p)>/dp = -v (log p + 1): +inf v at p_i = 0 (the slope of -p log p there)."""
    p, _, dtype = check_distributions(x)
    with np.errstate(**QUIET):
        return round_to_dtype(_row_vjp(p, cotangent, -(np.log(p) + 1.0)), dtype)


def kl_divergence_vjp(x, cotangent, q=None):
    """d<v, KL(p || q)>/dp = v (log(p / q) + 1): -inf v at p_i = 0 < q_i (the slope of p log p), and +inf v
    wherever q_i = 0 (for any p_i > 0 the divergence is +inf)."""
    p, q, dtype = check_distributions(x, q, True, "vjp('kl_divergence', ...)")
    with np.errstate(**QUIET):
        return round_to_dtype(_row_vjp(p, cotangent, np.where(q > 0, _log_ratio(p, q) + 1.0, np.inf)), dtype)


def distribution_cross_entropy_vjp(x, cotangent, q=None):
    """d<v, H(p, q)>/dp = -v log q: linear in p, +inf v where q_i = 0."""
    p, q, dtype = check_distributions(x, q, True, "vjp('distribution_cross_entropy', ...)")
    with np.errstate(**QUIET):
        return round_to_dtype(_row_vjp(p, cotangent, -np.log(q)), dtype)
