"""Error bounds, derived: how far a correct implementation may be from the exact value.

Every bound is a first-order rounding-error analysis (Higham, "Accuracy and Stability of Numerical
Algorithms", ch. 2-4) of the usual algorithms, for a (storage format, compute format) pair, the
`Arithmetic`: inputs and outputs are in the storage format s (the dtype, unit roundoff u_s); inside a
primitive (a framework's fused kernel: the row's max, exp, the sums, log, a division) arithmetic is
done in the compute format c (u_c), by default float32 for float16 and bfloat16 (torch, XLA, cuDNN and
Triton kernels compute half precision in float32) and the dtype itself otherwise; every result a
framework materialises between primitives is rounded into s (u_s). exp and log are trusted to
FN_ULPS[c] ulps of c (measured), and a sum of n terms of one sign in c errs by at most
`Arithmetic.sum_error(n)` (any order).

The intermediates a bound lets a correct implementation round into the storage format are those the
frameworks' standard algorithms materialise, each named where it is admitted: z = x - max x (XLA; and
the division by a temperature written by a user), the row's log-sum L (torch's CPU log-softmax kernel
for float16 and bfloat16), torch.logsumexp's exp, sum and log (it composes them), the saved forward
output autograd differentiates through, and each elementwise step of a composite loss. A backend that
computes in higher precision and rounds once is inside every bound.

Notation, per row along the op's axis: m = max x, z_j = (x_j - m)/tau, s = sum exp z, L = log s,
p = softmax, y = z - L (log-softmax), n the row length. Each function returns an absolute tolerance
shaped like the op's output (values) or its input (vjps). Nothing here is tuned: every constant is
named and explained, and the tests hold each bound against the exact oracle (no false alarm on
correctly rounded or framework results) and against planted errors just outside it.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .reference import validation
from .reference.dtypes import DEFAULT_COMPUTE, Format, format_of
from .reference.losses import alpha_at_target, check_distributions, hinge_parts, IndexLossProblem
from .reference.ops import QUIET, CrossEntropyProblem, RowSoftmax

# exp and log error in ulps of the exact result, per compute format: the largest error of every shipped
# backend's exp and log (NumPy, torch, JAX) measured against the oracle by tests/test_bounds.py on dense
# sweeps of each format's range, plus the half ulp between the oracle's rounded value and the exact one.
# float32: NumPy's SIMD log (3 ulp; torch's SLEEF and XLA's are within 1); the others within 1 ulp.
FN_ULPS = {"float16": 1.5, "bfloat16": 1.0, "float32": 3.5, "float64": 1.5}
U64 = 2.0 ** -53  # our own float64 arithmetic in the properties (sums of the backend's outputs)


@dataclass(frozen=True)
class Arithmetic:
    """How a result in `storage` is computed: inside primitives in `compute`; `floor` is the absolute
    error of a result rounded into the storage format's subnormal range (the smallest normal where
    subnormals are flushed to zero)."""
    storage: Format
    compute: Format
    floor: float

    @property
    def us(self) -> float:
        return self.storage.unit_roundoff

    @property
    def uc(self) -> float:
        return self.compute.unit_roundoff

    @property
    def fn(self) -> float:
        """The relative error of exp and log in the compute format."""
        return FN_ULPS[self.compute.name] * self.compute.eps

    @property
    def flushes(self) -> bool:
        return self.floor > self.storage.smallest_subnormal

    @property
    def compute_floor(self) -> float:
        """The absolute error of a compute-format result rounded into its subnormal range (or flushed)."""
        return self.compute.smallest_normal if self.flushes else self.compute.smallest_subnormal

    def sum_error(self, n):
        """Relative error bound of a sum of n terms of one sign, in whichever of two admitted ways it is done:

        * in any order with accumulators of float32 or wider: (n - 1) u_acc, u_acc = min(u_c, 2**-24)
          (Higham, Thm 4.1), then one rounding into c where c is narrower than float32;
        * pairwise in c itself: ceil(log2 n) u_c (Higham, eq. 4.6).
        A sequential sum in float16 or bfloat16 is neither: past 2**p terms of one size it stops growing,
        and the bound, which would otherwise be (n - 1) u >= 1 and say nothing, rejects it.
        """
        n = np.maximum(np.asarray(n, dtype=np.float64), 1)
        u_acc = min(self.uc, 2.0 ** -24)
        narrow = self.uc > u_acc
        return np.maximum((n - 1) * u_acc + narrow * self.uc, np.ceil(np.log2(n)) * self.uc)

    def describe(self) -> str:
        return self.storage.name if self.storage == self.compute else f"{self.storage.name} in {self.compute.name}"


def arithmetic(dtype, compute=None, floor=None) -> Arithmetic:
    """The Arithmetic of `dtype` computed in `compute` (default DEFAULT_COMPUTE) with the given floor."""
    storage = format_of(dtype)
    comp = format_of(compute or DEFAULT_COMPUTE[storage.name])
    return Arithmetic(storage, comp, storage.smallest_subnormal if floor is None else float(floor))


def _ar(x, dtype, compute, floor) -> Arithmetic:
    return arithmetic(dtype or np.asarray(x).dtype, compute, floor)


class RowErrors:
    """Float64 row quantities and the first-order error of each intermediate under Arithmetic `ar` (each
    derived quantity computed when first asked for: a bound needs only some of them)."""

    def __init__(self, x, axis: int, tau: float, ar: Arithmetic):
        rows = np.moveaxis(np.asarray(x).astype(np.float64), axis, -1)
        self.axis, self.tau, self.ar = axis, tau, ar
        self.n = rows.shape[-1]
        with np.errstate(**QUIET):
            self.m = m = rows.max(axis=-1, keepdims=True)
            self.z = z = (rows - m) / tau
            soft = RowSoftmax(z)
            self.L, self.p = soft.log_s, soft.p
            self.y = z - self.L
            # Masked entries (-inf) are exact, probability 0 and log-probability -inf: no error term.
            self.finite = finite = np.isfinite(z)
            self.abs_z = np.where(finite, np.abs(z), 0.0)
            self.abs_x = np.where(finite, np.abs(rows), 0.0) if tau != 1.0 else None
            self.abs_m = np.abs(m)
        # A result element sees at most two roundings into the subnormal range: an exp's in compute
        # and its own into storage.
        self.floor = ar.floor + ar.compute_floor

    @functools.cached_property
    def dz(self):
        """|error of z_j|: x - m rounded into storage (us|z|; XLA does); for tau != 1 the division in compute
        (uc|z|), or a user's x/tau and m/tau each rounded into storage (us(|x| + |m|)/tau)."""
        us, uc = self.ar.us, self.ar.uc
        return us * self.abs_z if self.tau == 1.0 else us * self.abs_z + uc * self.abs_z + self.dz_form

    @functools.cached_property
    def dz_form(self):
        """The z-dependent part two evaluations of the same row need not share (the divide-first form); none
        at the max itself, where x_j/tau and m/tau are the same number, rounded the same way (z_j = 0 exactly)."""
        return 0.0 if self.tau == 1.0 else np.where(self.z == 0, 0.0, self.ar.us * (self.abs_x + self.abs_m) / self.tau)

    @functools.cached_property
    def de(self):
        """Relative error of e_j = exp(z_j): dz_j's (exp(z + d) = exp(z) e^d) and exp's own fn, except exp(0) = 1
        exactly."""
        return exp_relative(self.dz + self.ar.fn * (self.finite & (self.z != 0)))

    @functools.cached_property
    def rel_s(self):
        """Relative error of s = sum_j e_j in compute; exps below the compute format's normal range err by its
        floor (s >= 1)."""
        ar = self.ar
        with np.errstate(**QUIET):
            s = np.exp(self.L)
            tiny = np.sum(self.finite & (self.p * s < ar.compute.smallest_normal), axis=-1, keepdims=True)
            return (self.p * self.de).sum(axis=-1, keepdims=True) + ar.sum_error(self.n) + tiny * ar.compute_floor / s

    @functools.cached_property
    def tol_L(self):
        """|error of L = log s|: s's (|log(1 + e)| <= -log(1 - |e|)) and log's own."""
        return -np.log1p(-np.minimum(self.rel_s, 1 - U64)) + self.ar.fn * self.L

    @functools.cached_property
    def abs_y(self):
        return np.where(self.finite, np.abs(self.y), 0.0)

    @functools.cached_property
    def lse_rounding(self):
        """x - (m + L) with m + L in compute (uc(|m|/tau + L)); torch's CPU log-softmax kernel for float16 and
        bfloat16 rounds s and then L = log s into storage (us (1 + L): it equals z - fl(log fl(s)) bit for bit)."""
        return self.ar.uc * (self.abs_m / self.tau + self.L) + self.ar.us * (1 + self.L)

    @functools.cached_property
    def tol_y_c(self):
        """|error of y_j = z_j - L| in compute: z's, L's, the subtraction (uc|y|) or the form x - (m + L)."""
        return self.dz + self.tol_L + self.ar.uc * (self.abs_y + self.abs_m / self.tau + self.L)

    @functools.cached_property
    def tol_y(self):
        """|error of a stored y_j|: z's, L's, the subtraction, L's rounding (lse_rounding), and the result's
        rounding into storage (us|y|)."""
        return self.dz + self.tol_L + self.ar.uc * self.abs_y + self.lse_rounding + self.ar.us * self.abs_y

    @functools.cached_property
    def rel_p(self):
        """Relative error of p_j in compute: e_j / s ((1 + de_j)/(1 - rel_s) - 1 + uc) or exp(z_j - L) (the
        exponent within tol_y_c, then exp's fn)."""
        with np.errstate(**QUIET):
            quotient = (1 + self.de) / (1 - np.minimum(self.rel_s, 1 - U64)) - 1
            return np.maximum(quotient + self.ar.uc, exp_relative(self.tol_y_c) + self.ar.fn)

    # p as a backward pass sees it: softmax's saved output (rel_p, rounded into storage), or exp of the saved
    # log-softmax (autograd of log_softmax and cross-entropy: the exponent within tol_y, exp's fn, in compute),
    # and a p a user materialises either way (focal's exp(logp), MSE's softmax).
    @functools.cached_property
    def rel_p_saved_softmax(self):
        return self.rel_p + self.ar.us

    @functools.cached_property
    def rel_p_from_log(self):
        return np.maximum(self.rel_p, exp_relative(self.tol_y) + self.ar.fn)

    @functools.cached_property
    def rel_p_stored(self):
        return np.maximum(self.rel_p_saved_softmax, self.rel_p_from_log + self.ar.us)

    def out(self, rows_tol):
        """rows_tol in x's layout. NaN in a row with a finite max comes from 0 * inf: a p that underflows float64
        (z_j < -745) times an infinite relative error (a huge dz, e.g. x/tau rounded into bfloat16 for a tiny tau):
        no bound there (VACUOUS), never 0. (A row whose max is not finite has NaN answers, compared exactly.)"""
        with np.errstate(**QUIET):
            rows_tol = np.where(np.isnan(rows_tol) & np.isfinite(self.m), np.inf, rows_tol)
        return np.moveaxis(_finite(rows_tol), -1, self.axis)


def exp_relative(delta):
    """The relative error of exp(a) for an exponent a known to within delta: e^delta - 1, which is at most
    delta (1 + delta) for delta <= 1 (e^d - 1 - d <= (e - 2) d^2 there): computed so where that suffices."""
    delta = np.asarray(delta, dtype=np.float64)
    if not delta.size or not (delta > 1).any():  # NaN entries (a NaN row) compare False
        return delta * (1 + delta)
    return np.expm1(np.minimum(delta, 700.0))


VACUOUS = 1e300  # a bound that says nothing (it overflowed): any finite answer, and finite in sums and products


def _finite(tol):
    """A NaN tolerance comes from a NaN row, whose value is compared exactly (the tolerance is unused); an
    infinite one is a bound that says nothing there (VACUOUS), never 0, which would fail honest code."""
    return np.where(np.isnan(tol), 0.0, np.minimum(tol, VACUOUS))


def _rows(x, axis, temperature, dtype, compute, floor):
    x = np.asarray(x)
    return RowErrors(x, validation.check_axis(axis, x.ndim), float(temperature), _ar(x, dtype, compute, floor))


# --------------------------------------------------------------------------------------------
# Values.

def softmax(x, axis=-1, temperature=1.0, *, dtype=None, compute=None, floor=None):
    """|p~_j - p_j| <= p_j (rel_p_j + u_s) + floor."""
    r = _rows(x, axis, temperature, dtype, compute, floor)
    return r.out(r.p * (r.rel_p + r.ar.us) + r.floor)


def log_softmax(x, axis=-1, temperature=1.0, *, dtype=None, compute=None, floor=None):
    """|y~_j - y_j| <= tol_y_j + floor."""
    r = _rows(x, axis, temperature, dtype, compute, floor)
    return r.out(r.tol_y + r.floor)


def _lse_tolerance(r: RowErrors):
    """|lse~ - lse| before its final rounding, for m + L in compute, or torch.logsumexp's composition
    (exp(z) rounded into storage: us per term but the exact max's; the sum rounded: us; L rounded: us L)."""
    us, uc = r.ar.us, r.ar.uc
    materialised = us * ((1 - r.p.max(axis=-1, keepdims=True)) + 1 + r.L)
    return r.tol_L + materialised + uc * np.abs(r.m + r.L)


def logsumexp(x, axis=-1, *, dtype=None, compute=None, floor=None):
    """|lse~ - lse| <= tol_L + (the composition's roundings) + u_c|m + L| + u_s|m + L| (the result)."""
    r = _rows(x, axis, 1.0, dtype, compute, floor)
    tol = _lse_tolerance(r) + r.ar.us * np.abs(r.m + r.L) + r.floor
    return _finite(tol[..., 0])


def cross_entropy(logits, target, reduction="mean", weight=None, ignore_index=-100, label_smoothing=0.0, z_loss=0.0,
                  softcap=None, *, dtype=None, compute=None, floor=None):
    """Per example l_i = sum_c a_ic (-y_ic), y the stored log-softmax, in torch's two parts: the picked
    a_it (-y_it) of a class index (the product and the coefficient's rounding: 2 u_s), and the summed
    sum_c a_ic (-y_ic) of probability targets or label smoothing's eps/C w_c (a class sum in compute,
    sum_error(C), and the products', the coefficients', the sum's roundings: 3 u_s), then their sum (u_s |l|).
    |err| <= sum_c a_ic (tol_y_ic + (...) |y_ic|); a coefficient below the smallest normal is rounded into the
    subnormal range (or flushed) with an absolute error of up to the floor's unit, times |y_ic|. Sum: +
    sum_error(N) sum|l| + u_s|sum| (its rounding); mean: that over D, plus (sum_error(N) + u_s + u_c)|mean| for
    D's own sum, its rounding and the division."""
    head = _cross_entropy_head(logits, target, reduction, weight, ignore_index, label_smoothing, z_loss, softcap,
                               dtype, compute, floor)
    if head is not None:  # the LM head's options
        return head
    problem, r = _ce(logits, target, reduction, weight, ignore_index, label_smoothing, dtype, compute, floor)
    ar = r.ar
    a = problem.coefficients()
    picked = np.zeros_like(a)
    if problem.target_kind == "index":
        picked[np.arange(a.shape[0]), problem.index] = problem.onehot_coef
    summed = a - picked  # exact enough: each entry is one of the two parts, or their sum at the target
    with np.errstate(**QUIET):
        subnormal_a = (a > 0) & (a < ar.storage.smallest_normal)
        terms = np.where(a > 0, a * r.tol_y + (picked * 2 * ar.us + summed * (ar.sum_error(problem.n_classes)
                                                                              + 3 * ar.us)) * r.abs_y
                         + subnormal_a * ar.floor * r.abs_y, 0.0)
        losses = problem.row_losses(r.y)
        row_tol = terms.sum(axis=-1) + ar.us * np.abs(losses) + r.floor
    if problem.reduction == "none":
        return _finite(row_tol).reshape(problem.batch_shape)
    n = losses.size
    with np.errstate(**QUIET):
        total = losses.sum()
        total_tol = row_tol.sum() + ar.sum_error(n) * np.abs(losses).sum() + ar.us * np.abs(total)
        if problem.reduction == "sum":
            return np.asarray(_finite(total_tol))
        mean = total / problem.denominator
        return np.asarray(_finite(total_tol / problem.denominator
                                  + (ar.sum_error(n) + ar.us + ar.uc) * np.abs(mean)))


def cross_entropy_hvp(logits, cotangent, tangent, target=None, reduction="mean", weight=None, ignore_index=-100,
                      label_smoothing=0.0, z_loss=0.0, softcap=None, *, dtype=None, compute=None, floor=None):
    """r_i A_i (p t - p <p, t>) per row: softmax's vjp at the tangent from the p of log-softmax's backward
    (rel_p_from_log), times r A: A's sum over C classes, D's over N examples (the mean), and two products."""
    _plain_only(z_loss, softcap, "the Hessian-vector product's bound")
    problem, r = _ce(logits, target, reduction, weight, ignore_index, label_smoothing, dtype, compute, floor)
    ar = r.ar
    with np.errstate(**QUIET):
        scale = np.abs(problem.row_scale(cotangent) * problem.row_coef_sum[:, None])
        tangent = np.asarray(tangent, dtype=np.float64).reshape(problem.logits.shape)
        rel = ar.sum_error(problem.n_classes) + ar.sum_error(problem.logits.shape[0]) + 2 * ar.us
        # up to three roundings land in the subnormal range when r A is tiny: r A, its products with p t and
        # p <p, t>, and their difference (each within the floor: absolute, whatever the value's size)
        tol = scale * _softmax_vjp_rows(r, tangent, r.rel_p_from_log, stored=True) * (1 + rel) + 3 * ar.floor
    return _finite(tol).reshape(problem.shape)


def _ce(logits, target, reduction, weight, ignore_index, label_smoothing, dtype, compute, floor):
    problem = CrossEntropyProblem(logits, target, reduction, weight, ignore_index, label_smoothing)
    return problem, RowErrors(problem.logits, 1, 1.0, arithmetic(dtype or problem.dtype, compute, floor))


# --------------------------------------------------------------------------------------------
# Vector-Jacobian products: autograd through the primitives, from their saved (stored) outputs.

def _rows_v(cotangent, axis, shape_last):
    v = np.asarray(cotangent).astype(np.float64)
    return np.moveaxis(v, axis, -1) if shape_last else v[..., None]


def softmax_vjp(x, cotangent, axis=-1, temperature=1.0, *, dtype=None, compute=None, floor=None):
    """g_j = p_j (v_j - c)/tau, c = sum_k p_k v_k, from the saved output p (rel_p_saved_softmax): see
    _softmax_vjp_rows."""
    r = _rows(x, axis, temperature, dtype, compute, floor)
    return r.out(_softmax_vjp_rows(r, _rows_v(cotangent, r.axis, True), r.rel_p_saved_softmax))


def _softmax_vjp_rows(r: RowErrors, v, rel, stored=False):
    """p_j (v_j - c)/tau in compute from a p with relative error `rel`:
    err(c) <= sum_k p_k |v_k| (rel_k + sum_error(n));  err(v_j - c) <= err(c) + u_c(|v_j| + |c|);
    |err g_j| <= p_j (|v_j - c| (rel_j + 2u_c) + err(v_j - c)) / tau + u_s|g_j| (twice for tau != 1) + floors.
    `stored`: every intermediate (p v, c, v - c, the product) is a tensor of the storage format, as in a
    double backward built from elementwise ops: u_c becomes u_c + u_s, and c's own rounding u_s|c| is added."""
    ar, tau = r.ar, r.tau
    uc = ar.uc + ar.us * stored
    with np.errstate(**QUIET):
        c = (r.p * v).sum(axis=-1, keepdims=True)
        err_c = (r.p * np.abs(v) * (rel + ar.sum_error(r.n) + ar.us * stored)).sum(axis=-1, keepdims=True) \
            + ar.us * stored * np.abs(c)
        err_diff = err_c + uc * (np.abs(v) + np.abs(c))
        g = r.p * (v - c) / tau
        # an underflowed p_j (absolute error <= floor) is multiplied by (v_j - c)/tau, and moves c by
        # at most floor * sum|v|; the product p_j (v_j - c) may itself round into the subnormal range before
        # the division by tau (floor / tau)
        underflow = r.floor * (np.abs(v - c) + r.p * np.abs(v).sum(axis=-1, keepdims=True) + 1) / tau
        # for tau != 1 autograd materialises the gradient with respect to x/tau before dividing it (u_s|g|)
        rounding = ar.us * np.abs(g) * (1 + (tau != 1.0))
        return r.p * (np.abs(v - c) * (rel + 2 * uc) + err_diff) / tau + rounding + underflow + r.floor


def log_softmax_vjp(x, cotangent, axis=-1, temperature=1.0, *, dtype=None, compute=None, floor=None):
    """g_j = (v_j - p_j S)/tau with p = exp(saved y) (rel_p_from_log), S = sum v in compute:
    err(S) <= sum_error(n) sum|v|;  |err g_j| <= (u_c|v_j| + p_j |S| (rel_p_from_log_j + u_c) + p_j err(S)
    + u_c|v_j - p_j S|)/tau + (u_c + u_s)|g_j| (the division by tau, the final rounding; u_s|g_j| more for
    tau != 1) + floors."""
    r = _rows(x, axis, temperature, dtype, compute, floor)
    ar, tau = r.ar, r.tau
    uc, v = ar.uc, _rows_v(cotangent, r.axis, True)
    with np.errstate(**QUIET):
        total = v.sum(axis=-1, keepdims=True)
        err_total = ar.sum_error(r.n) * np.abs(v).sum(axis=-1, keepdims=True)
        g = v - r.p * total
        # (u_c + u_s)|g|/tau: the division by tau and the result's rounding; for tau != 1 autograd materialises
        # the gradient with respect to x/tau before dividing it (u_s|g|/tau more); the product p_j S may round
        # into the subnormal range before the division (floor / tau)
        tol = (uc * np.abs(v) + r.p * np.abs(total) * (r.rel_p_from_log + uc) + r.p * err_total + uc * np.abs(g)
               + r.floor * (np.abs(total) + 1)) / tau + (uc + ar.us * (1 + (tau != 1.0))) * np.abs(g) / tau + r.floor
    return r.out(tol)


def _rel_p_lse(r: RowErrors):
    """p as autograd of log-sum-exp sees it: e_j/s in compute (rel_p), or torch's exp(x_j - lse~) from the
    saved lse, each step materialised (the exponent within tol_lse + u_s|m + L| + u_s|y_j|, exp's fn, u_s)."""
    tol_lse = _lse_tolerance(r) + r.ar.us * np.abs(r.m + r.L)
    return np.maximum(r.rel_p, exp_relative(tol_lse + r.ar.us * r.abs_y) + r.ar.fn + r.ar.us)


def logsumexp_vjp(x, cotangent, axis=-1, *, dtype=None, compute=None, floor=None):
    """g_j = v p_j (p: _rel_p_lse): |err g_j| <= |v| p_j (rel + u_c + u_s) + floor."""
    r = _rows(x, axis, 1.0, dtype, compute, floor)
    ar, v = r.ar, _rows_v(cotangent, r.axis, False)
    with np.errstate(**QUIET):
        tol = np.abs(v) * (r.p * (_rel_p_lse(r) + ar.uc + ar.us) + r.floor) + r.floor  # an underflowed p_j times v
    return r.out(tol)


def logsumexp_hvp(x, cotangent, tangent, axis=-1, *, dtype=None, compute=None, floor=None):
    """d/dx <v grad lse, t> = v (p t - p <p, t>): v times softmax's vjp at the tangent, from log-sum-exp's p
    (_rel_p_lse), the product by v (u_s) and its rounding into the subnormal range."""
    r = _rows(x, axis, 1.0, dtype, compute, floor)
    scale = np.abs(_rows_v(cotangent, r.axis, False))
    tol = scale * (_softmax_vjp_rows(r, _rows_v(tangent, r.axis, True), _rel_p_lse(r), stored=True)
           * (1 + r.ar.us)) + 3 * r.ar.floor  # as cross_entropy_hvp: v's products and their difference
    return r.out(tol)


def cross_entropy_vjp(logits, cotangent, target=None, reduction="mean", weight=None, ignore_index=-100,
                      label_smoothing=0.0, z_loss=0.0, softcap=None, *, dtype=None, compute=None, floor=None):
    """g_ic = r_i (A_i p_ic - a_ic), autograd of log_softmax from the saved y (p = exp(y): rel_p_from_log)
    with the upstream gradient -r a materialised (u_s per coefficient, twice under label smoothing: torch's
    nll and smoothing terms) and A its sum in compute:
    |err g_ic| <= |r_i| (A_i p_ic (rel_p_from_log_ic + sum_error(C) + 2u_c) + a_ic (2u_s + u_c) + u_c|A_i p_ic
    - a_ic|) + |g_ic| (rel_r + u_s) + floor, with rel_r = sum_error(N) + u_s + u_c for the mean (D's sum, its
    rounding and the division), 0 otherwise."""
    head = _cross_entropy_head(logits, target, reduction, weight, ignore_index, label_smoothing, z_loss, softcap,
                               dtype, compute, floor, cotangent)
    if head is not None:  # the LM head's options
        return head
    problem, r = _ce(logits, target, reduction, weight, ignore_index, label_smoothing, dtype, compute, floor)
    ar, C = r.ar, problem.n_classes
    us, uc = ar.us, ar.uc
    with np.errstate(**QUIET):
        scale = np.abs(problem.row_scale(cotangent))
        a = problem.coefficients()
        big_a = problem.row_coef_sum[:, None]
        diff = big_a * r.p - a
        rel_r = ar.sum_error(r.p.shape[0]) + us + uc if problem.reduction == "mean" else 0.0
        subnormal_a = (a > 0) & (a < ar.storage.smallest_normal)  # a coefficient rounded into the subnormal range
        tol = scale * (big_a * (r.p * (r.rel_p_from_log + ar.sum_error(C) + 2 * uc) + r.floor) + a * (2 * us + uc)
                       + uc * np.abs(diff) + subnormal_a * r.floor) \
            + scale * np.abs(diff) * (rel_r + us) + r.floor  # r.floor * |r| A: an underflowed p_c times r A
    return _finite(tol).reshape(problem.shape)

# --------------------------------------------------------------------------------------------
# Jacobian-vector products: forward mode through the primitives. The tangent of x/tau is formed first,
# t' = t/tau rounded into storage (|dt'_j| <= u_s|t'_j|, for tau != 1), and carried by the linear map J
# of tau = 1: |J dt'|_j <= p_j (dt'_j + sum_k p_k dt'_k) for softmax, dt'_j + sum_k p_k dt'_k for log-softmax.

def _tangent_error(r: RowErrors, tangent):
    """(|t'|, the error t' carries into p-weighted sums: sum_k p_k dt'_k per row, and dt' itself)."""
    t = np.abs(_rows_v(tangent, r.axis, True)) / r.tau
    dt = r.ar.us * t if r.tau != 1.0 else np.zeros_like(t)
    with np.errstate(**QUIET):
        return t, np.where(r.p > 0, r.p * dt, 0.0).sum(axis=-1, keepdims=True), dt


def softmax_jvp(x, tangent, axis=-1, temperature=1.0, *, dtype=None, compute=None, floor=None):
    """J t = p (t' - <p, t'>): softmax's Jacobian is symmetric, and forward mode (torch's and JAX's rule,
    p (t' - sum p t')) is its vjp's formula at v = t from the forward's stored p (_softmax_vjp_rows, whose
    tau != 1 terms over-cover the division done first here), every intermediate a tensor of the storage format
    (forward-mode rules are composite elementwise ops: `stored`), plus what t' carries and the products p_k t'_k
    rounded into the subnormal range."""
    r = _rows(x, axis, temperature, dtype, compute, floor)
    _, carried, dt = _tangent_error(r, tangent)
    products = r.n * r.floor  # each p_k t'_k of the sum rounded into the subnormal range
    tol = _softmax_vjp_rows(r, _rows_v(tangent, r.axis, True), r.rel_p_saved_softmax, stored=True) \
        + r.p * (dt + carried + products)
    return r.out(tol)


def _c_error(r: RowErrors, t):
    """c = <p, t'> per row as forward mode forms it: sum_k p_k t'_k from the stored p or exp(stored y), or
    (sum_k e_k t'_k)/s from materialised e (all within rel_p_stored), summed in compute, plus one rounding:
    err(c) <= sum_k p_k |t'_k| (rel_p_stored_k + sum_error(n) + u_c) + u_s|c| + floor (sum|t'| + n): an
    underflowed p_k times t'_k, and each product rounded into the subnormal range."""
    ar = r.ar
    with np.errstate(**QUIET):
        c = np.where(r.p > 0, r.p * t, 0.0).sum(axis=-1, keepdims=True)
        rel = np.maximum(r.rel_p_stored, _rel_p_lse(r)) + ar.sum_error(r.n) + ar.uc
        err = np.where(r.p > 0, r.p * np.abs(t) * rel, 0.0).sum(axis=-1, keepdims=True) + ar.us * np.abs(c) \
            + r.floor * (np.abs(t).sum(axis=-1, keepdims=True) + r.n)
    return c, err


def log_softmax_jvp(x, tangent, axis=-1, temperature=1.0, *, dtype=None, compute=None, floor=None):
    """J t = t' - <p, t'>: err(c) (_c_error), what t' carries, the subtraction in compute (u_c(|t'_j| + |c|))
    and the result's rounding (u_s|J t|)."""
    r = _rows(x, axis, temperature, dtype, compute, floor)
    ar = r.ar
    t_abs, carried, dt = _tangent_error(r, tangent)
    t_signed = _rows_v(tangent, r.axis, True) / r.tau
    c, err_c = _c_error(r, t_signed)
    with np.errstate(**QUIET):
        tol = err_c + carried + dt + ar.uc * (t_abs + np.abs(c)) + ar.us * np.abs(t_signed - c) + r.floor
    return r.out(tol)


def logsumexp_jvp(x, tangent, axis=-1, *, dtype=None, compute=None, floor=None):
    """J t = <p, t> per row: _c_error (the result's rounding included)."""
    r = _rows(x, axis, 1.0, dtype, compute, floor)
    _, err_c = _c_error(r, _rows_v(tangent, r.axis, True))
    return _finite(err_c[..., 0] + r.floor)


def cross_entropy_jvp(logits, tangent, target=None, reduction="mean", weight=None, ignore_index=-100,
                      label_smoothing=0.0, z_loss=0.0, softcap=None, *, dtype=None, compute=None, floor=None):
    """J t = sum_c g_ic t_ic per example, g = r (A p - a) the gradient at a unit cotangent, summed over the
    examples for "sum" and "mean". Two evaluation orders are admitted: the gradient (within cross_entropy_vjp's
    bound) dotted with t, and forward mode's r (A <p, t> - <a, t>) through the stored log-softmax's tangent
    t_c - <p, t> (a_c-weighted, so its class sum adds sum_error(C) |r| (sum_c a_c|t_c| + A sum_c p_c|t_c|)):
    |err J_i| <= sum_c |t_ic| tol_g_ic + sum_error(C) (sum_c |g_ic t_ic| + that) + u_s |J_i|, and for a
    reduction sum_error(N) sum_i |J_i| + u_s |J| more."""
    if _head_options_set(z_loss, softcap):
        return _cross_entropy_head_jvp(logits, tangent, target, reduction, weight, ignore_index, label_smoothing,
                                       z_loss, softcap, dtype, compute, floor)
    problem, r = _ce(logits, target, reduction, weight, ignore_index, label_smoothing, dtype, compute, floor)
    ar, C = r.ar, problem.n_classes
    kwargs = dict(target=target, reduction=reduction, weight=weight, ignore_index=ignore_index,
                  label_smoothing=label_smoothing, dtype=dtype, compute=compute, floor=floor)
    unit = np.ones(problem.batch_shape if problem.reduction == "none" else ())
    tol_g = cross_entropy_vjp(logits, unit, **kwargs).reshape(-1, C)
    with np.errstate(**QUIET):
        t = np.abs(np.asarray(tangent, dtype=np.float64).reshape(-1, C))
        scale = np.abs(problem.row_scale(unit))
        a, big_a = problem.coefficients(), problem.row_coef_sum[:, None]
        g = np.abs(big_a * r.p - a) * scale
        forward = scale * (a * t + big_a * (np.where(r.p > 0, r.p * t, 0.0) + r.floor))  # p_c t_c subnormal
        per_example = (t * tol_g).sum(axis=-1) + ar.sum_error(C) * (g * t + forward).sum(axis=-1)
        j = (g * t).sum(axis=-1)  # >= |J_i|
        if problem.reduction == "none":
            return _finite(per_example + ar.us * j + r.floor).reshape(problem.batch_shape)
        n = problem.logits.shape[0]
        return _finite(per_example.sum() + (ar.sum_error(n) + ar.us) * j.sum() + r.floor)


# --------------------------------------------------------------------------------------------
# The loss family (reference/losses.py). Losses on logits with class-index targets are computed the way
# a framework user composes them: y_t = log_softmax at the target (error tol_y), p = softmax or exp(y)
# (relative error rel_p_stored), r = 1 - p_t (err_r below), then the loss's own few elementwise operations,
# each materialised in storage (u_s; an elementwise exp, log or pow computed in compute: fn + u_s); their
# gradients by autograd through those same operations. Per example, then reduced by _reduce_bound.

def _loss_problem(logits, target, reduction, dtype, compute, floor):
    problem = IndexLossProblem(logits, target, reduction)
    return problem, RowErrors(problem.logits, 1, 1.0, arithmetic(dtype or problem.dtype, compute, floor))


def _at_target(problem, r):
    """(p_t, 1 - p_t, -log p_t) exact enough (float64), and err_r, the error of a materialised 1 - p_t:
    p_t's own (p_t rel_p_stored_t) and the subtraction's rounding (u_s r)."""
    with np.errstate(**QUIET):
        _, q, rest, nll = problem.at_target()
        rel_q = r.rel_p_stored[problem.rows, problem.target]
        return q, rest, nll, q * rel_q + r.ar.us * rest


def _pow_error(base, err, k, ar: Arithmetic):
    """|fl(b~^k) - b^k| for a base b known to within err, k >= -1 (k = 0: pow returns exactly 1):
    the mean value theorem, k xi^(k-1) err with xi in [b - err, b + err], where err <= b/2 for k < 1
    (xi >= b/2); past that, err^k for 0 < k < 1 (|a^k - b^k| <= |a - b|^k) and unbounded (inf) for k < 0.
    Plus pow's own evaluation in compute, as exp(k log b), rounded into storage:
    (fn + |k log b| (fn + u_c) + u_s) b^k."""
    if k == 0:
        return np.zeros_like(base)
    with np.errstate(**QUIET):
        if k >= 1:
            spread = k * (base + err) ** (k - 1) * err
        else:
            near = k * np.abs((base / 2) ** (k - 1)) * err
            spread = np.where(err <= base / 2, np.abs(near), err ** k if k > 0 else np.inf)
        log_b = np.where(base > 0, np.abs(np.log(base)), 0.0)
        return spread + (ar.fn + abs(k) * log_b * (ar.fn + ar.uc) + ar.us) * base ** k


def _reduce_bound(problem, row_tol, losses, ar: Arithmetic):
    """none: per example; sum: + sum_error(N) sum|l| + u_s|sum|; mean: that / N plus 2u_s |mean| (1/N, or
    N, and the division)."""
    if problem.reduction == "none":
        return _finite(row_tol).reshape(problem.batch_shape)
    n = max(losses.size, 1)
    with np.errstate(**QUIET):
        total = row_tol.sum() + ar.sum_error(n) * np.abs(losses).sum() + ar.us * np.abs(losses.sum())
        if problem.reduction == "sum":
            return np.asarray(_finite(total))
        return np.asarray(_finite(total / n + 2 * ar.us * np.abs(losses.sum() / n)))


def _unbounded(tol):
    """NaN (a NaN or inf reference value, compared exactly) becomes 0; +inf stays: no finite tolerance
    admits the algorithm there (documented where it is returned)."""
    return np.where(np.isnan(tol), 0.0, tol)


def focal_loss(logits, target, gamma=2.0, alpha=None, reduction="mean", *, dtype=None, compute=None, floor=None):
    """l = alpha_t R L with R = r^gamma, r = 1 - p_t, L = -y_t:
    |err l| <= alpha_t (err(R) (L + tol_y_t) + R tol_y_t + 2u_s R L) + floor, err(R) = _pow_error(r, err_r, gamma)."""
    problem, r = _loss_problem(logits, target, reduction, dtype, compute, floor)
    us = r.ar.us
    alpha_t = alpha_at_target(problem, alpha)
    tol_y = r.tol_y[problem.rows, problem.target]
    with np.errstate(**QUIET):
        q, rest, nll, err_r = _at_target(problem, r)
        power = rest ** gamma
        losses = np.where(alpha_t > 0, alpha_t * power * nll, 0.0)
        row_tol = alpha_t * (_pow_error(rest, err_r, gamma, r.ar) * (nll + tol_y) + power * tol_y
                             + 2 * us * power * nll) + r.floor
    return _reduce_bound(problem, row_tol, losses, r.ar)


def focal_loss_vjp(logits, cotangent, target=None, gamma=2.0, alpha=None, reduction="mean", *, dtype=None,
                   compute=None, floor=None):
    """Autograd: c = r_i alpha_t F with F = r^gamma + gamma p_t L r^(gamma-1) (dl/dy_t), then log_softmax's
    vjp with cotangent c onehot: |err g| <= log_softmax_vjp(x, c onehot) + err(c) |p - onehot|, where
    err(F) <= err(r^gamma) + gamma (p_t rel_p_t L P + p_t tol_y_t P + p_t L err(P)) + 4u_s F, P = r^(gamma-1),
    err(c) <= |r_i| alpha_t (err(F) + 2u_s F) (the products and the mean's 1/N). gamma = 0: F = 1 exactly.
    Unbounded (inf) where 0 < gamma < 1 and err_r > r/2: r^(gamma-1) of a 1 - p_t with no correct bit."""
    problem, r = _loss_problem(logits, target, reduction, dtype, compute, floor)
    us, t = r.ar.us, problem.target
    alpha_t = alpha_at_target(problem, alpha)
    scale = np.abs(problem.row_scale(cotangent))[:, 0]
    with np.errstate(**QUIET):
        q, rest, nll, err_r = _at_target(problem, r)
        qL = np.where(q > 0, q * nll, 0.0)  # 0 log 0: the term is 0 at p_t = 0
        if gamma == 0:
            factor, err_factor = np.ones_like(rest), np.zeros_like(rest)
        else:
            pw = np.where(rest > 0, rest ** (gamma - 1), np.inf if gamma < 1 else float(gamma == 1))
            factor = rest ** gamma + gamma * np.where(qL > 0, qL * pw, 0.0)
            err_factor = (_pow_error(rest, err_r, gamma, r.ar) + 4 * us * factor + gamma * np.where(
                q > 0, (qL * r.rel_p_stored[problem.rows, t] + q * r.tol_y[problem.rows, t]) * pw
                + qL * _pow_error(rest, err_r, gamma - 1, r.ar), 0.0))
        c = scale * alpha_t * factor
        err_c = scale * alpha_t * (err_factor + 2 * us * factor)
        onehot = np.zeros_like(r.p)
        onehot[problem.rows, t] = 1.0
        distance = np.abs(r.p - onehot)
        distance[problem.rows, t] = rest  # |p_t - 1|, accurate where p_t rounds to 1 (inf err_c times 0 was NaN)
        tol = log_softmax_vjp(problem.logits, c[:, None] * onehot, dtype=r.ar.storage.name,
                              compute=r.ar.compute.name, floor=r.ar.floor) + err_c[:, None] * distance + r.floor
    return _unbounded(np.where((alpha_t > 0)[:, None], tol, r.floor)).reshape(problem.shape)


def _mse_differences(problem, r):
    """d = p - onehot materialised (p_c for c != t, -(1 - p_t) at the target) and its error err(d):
    p_c rel_p_stored_c, err_r at the target (the subtraction's rounding included)."""
    _, rest, _, err_r = _at_target(problem, r)
    d, err_d = r.p.copy(), r.p * r.rel_p_stored
    d[problem.rows, problem.target], err_d[problem.rows, problem.target] = -rest, err_r
    return d, err_d


def mse_loss(logits, target, form="full", reduction="mean", *, dtype=None, compute=None, floor=None):
    """(p_c - y_c)^2: |err| <= 2|d| err(d) + err(d)^2 + u_s d^2 with err(d) as _mse_differences;
    the C-term sum of the full form adds (sum_error(C) + u_s) l."""
    problem, r = _loss_problem(logits, target, reduction, dtype, compute, floor)
    ar = r.ar
    with np.errstate(**QUIET):
        d, err_d = _mse_differences(problem, r)
        terms = d ** 2
        term_tol = 2 * np.abs(d) * err_d + err_d ** 2 + ar.us * terms
        if form == "target":
            losses = terms[problem.rows, problem.target]
            row_tol = term_tol[problem.rows, problem.target]
        else:
            losses = terms.sum(axis=-1)
            row_tol = term_tol.sum(axis=-1) + (ar.sum_error(problem.n_classes) + ar.us) * losses
    return _reduce_bound(problem, row_tol + r.floor, losses, ar)


def mse_loss_vjp(logits, cotangent, target=None, form="full", reduction="mean", *, dtype=None, compute=None,
                 floor=None):
    """Autograd: w = r_i 2 (p - y) (only its target entry for form="target"), then softmax's vjp:
    |err g_j| <= softmax_vjp(x, w)_j + p_j (err(w_j) + sum_c p_c err(w_c)) with
    err(w_c) = |r_i| 2 err(d_c) + 2u_s |w_c| (d_c = p_c - y_c as in mse_loss)."""
    problem, r = _loss_problem(logits, target, reduction, dtype, compute, floor)
    ar = r.ar
    scale = np.abs(problem.row_scale(cotangent))
    with np.errstate(**QUIET):
        d, err_d = _mse_differences(problem, r)
        if form == "target":
            keep = np.zeros_like(d)
            keep[problem.rows, problem.target] = 1.0
            d, err_d = d * keep, err_d * keep
        w = 2 * scale * d
        err_w = 2 * scale * err_d + 2 * ar.us * np.abs(w)
        tol = softmax_vjp(problem.logits, w, dtype=ar.storage.name, compute=ar.compute.name, floor=ar.floor) \
            + r.p * (err_w + (r.p * err_w).sum(axis=-1, keepdims=True))
    return _finite(tol).reshape(problem.shape)


def _hinge_slack_error(problem, r, margin):
    """Per example the slack s = margin - (z_t - m), |err s| <= u_s (2|margin| + |z_t - m| + |m| + |s|) (either
    margin - (z_t - m) or (m + margin) - z_t, each step materialised, with margin rounded into the dtype), and
    the active side's gradient without its scale: 1 at the target, 1/k at the k classes tied for m. The form
    that adds the margin first rounds z_j + margin, which merges the classes within 2u_s (|m| + |margin|) of m
    into the tie: those (`near`) may share the gradient in any way."""
    u = r.ar.us
    with np.errstate(**QUIET):
        slack, others, m = hinge_parts(problem, margin)
        err = u * (2 * abs(margin) + np.abs(margin - slack) + np.abs(m) + np.abs(slack))
        tied = others == m[:, None]
        near = (m[:, None] - others <= 2 * u * (np.abs(m) + abs(margin))[:, None]) & (others > -np.inf)
        active = np.where(near & ~tied, 1.0, tied / tied.sum(axis=-1, keepdims=True))
        active[problem.rows, problem.target] = 1.0
    return slack, np.where(np.isfinite(err), err, 0.0), active, near & ~tied


def hinge_slack(x, target, margin, *, dtype=None, compute=None, floor=None):
    """(problem, slack, |err slack|, classes tied for the max, classes within a rounding of it): what the
    hinge properties need to know where the margin holds beyond rounding."""
    problem, r = _loss_problem(x, target, "none", dtype, compute, floor)
    slack, err, _, near = _hinge_slack_error(problem, r, margin)
    with np.errstate(invalid="ignore"):
        _, others, m = hinge_parts(problem, margin)
    return problem, slack, err, others == m[:, None], near


def multiclass_hinge_loss(logits, target, margin=1.0, reduction="mean", *, dtype=None, compute=None, floor=None):
    """max(0, s) is 1-Lipschitz: |err l| <= |err s| (see _hinge_slack_error) + floor."""
    problem, r = _loss_problem(logits, target, reduction, dtype, compute, floor)
    slack, err, _, _ = _hinge_slack_error(problem, r, margin)
    with np.errstate(**QUIET):
        losses = np.maximum(slack, 0.0)
    return _reduce_bound(problem, err + r.floor, losses, r.ar)


def multiclass_hinge_loss_vjp(logits, cotangent, target=None, margin=1.0, reduction="mean", *, dtype=None,
                              compute=None, floor=None):
    """The gradient's entries are r_i times -1, 1/k or 0: |err| <= 2u_s|g| (1/k and the mean's 1/N) + floor.
    Where |s| <= err(s) a correct implementation may land on either side of the kink: there the tolerance
    is the active side's |g| (|r_i| at the target, |r_i|/k at the tied classes). Where classes are within a
    rounding of the max (see _hinge_slack_error) the tied classes and those may share |r_i| in any way."""
    problem, r = _loss_problem(logits, target, reduction, dtype, compute, floor)
    slack, err, active, near = _hinge_slack_error(problem, r, margin)
    scale = np.abs(problem.row_scale(cotangent))
    active = active * scale
    with np.errstate(**QUIET):
        g = np.where((slack > 0)[:, None], active, 0.0)
        shared = near.any(axis=-1, keepdims=True) & (active > 0)  # the tied and the near classes of such rows
        shared[problem.rows, problem.target] = False  # (the target's -r_i does not depend on the sharing)
        tol = np.where((np.abs(slack) <= err)[:, None], active, 2 * r.ar.us * g)
        tol = np.where(shared & (slack > -err)[:, None], np.maximum(tol, scale), tol) + r.floor
    return _finite(tol).reshape(problem.shape)


def _distribution_errors(p, q, dtype, compute, floor):
    """float64 p, q, the Arithmetic, and |log p|, |log q| where they are used (p > 0)."""
    p, q, in_dtype = check_distributions(p, q)
    ar = arithmetic(dtype or in_dtype, compute, floor)
    with np.errstate(**QUIET):
        log_p = np.where(p > 0, np.abs(np.log(p)), 0.0)
        log_q = None if q is None else np.abs(np.log(q))
    return p, q, ar, log_p, log_q


def _row_sum_bound(terms, term_tol, ar: Arithmetic):
    """A row sum of terms each within term_tol: + sum_error(n) sum|t| + u_s|sum|, and the floor for each
    term and for the sum that may round into the subnormal range."""
    with np.errstate(**QUIET):
        total = terms.sum(axis=-1)
        tiny = (np.abs(terms) < ar.storage.smallest_normal).sum(axis=-1) + 1
        tol = (term_tol.sum(axis=-1) + ar.sum_error(terms.shape[-1]) * np.abs(terms).sum(axis=-1)
               + ar.us * np.abs(total) + tiny * ar.floor)
    return _finite(tol)


def entropy(p, *, dtype=None, compute=None, floor=None):
    """Terms -p log p >= 0 (an elementwise kernel: log's fn, the product in compute, the term rounded),
    each within (fn + u_c + u_s) of itself."""
    p, _, ar, log_p, _ = _distribution_errors(p, None, dtype, compute, floor)
    terms = p * log_p
    return _row_sum_bound(terms, (ar.fn + ar.uc + ar.us) * terms, ar)


def kl_divergence(p, q, *, dtype=None, compute=None, floor=None):
    """Terms p log(p/q) (from the quotient) or p log p - p log q (xlogy twice, log q materialised): each
    within p ((fn + 2u_s)(|log p| + |log q|) + 2u_s); 0 where p = 0."""
    p, q, ar, log_p, log_q = _distribution_errors(p, q, dtype, compute, floor)
    us = ar.us
    with np.errstate(**QUIET):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
        term_tol = np.where(p > 0, p * ((ar.fn + 2 * us) * (log_p + log_q) + 2 * us), 0.0)
    return _row_sum_bound(terms, term_tol, ar)


def distribution_cross_entropy(p, q, *, dtype=None, compute=None, floor=None):
    """Terms -p log q >= 0 (xlogy: log q and the product in compute, the term rounded), each within
    (fn + u_c + u_s) of itself."""
    p, q, ar, _, log_q = _distribution_errors(p, q, dtype, compute, floor)
    with np.errstate(**QUIET):
        terms = np.where(p > 0, p * log_q, 0.0)
    return _row_sum_bound(terms, (ar.fn + ar.uc + ar.us) * terms, ar)


def _distribution_vjp_bound(cotangent, derivative, err_derivative, ar: Arithmetic):
    """g = v d: |err g| <= |v| err(d) + u_s|g| + floor."""
    v = np.asarray(cotangent).astype(np.float64)[..., None]
    with np.errstate(**QUIET):
        tol = np.abs(v) * err_derivative + ar.us * np.abs(v * derivative) + ar.floor
    return _finite(tol)


def entropy_vjp(p, cotangent, *, dtype=None, compute=None, floor=None):
    """d = -(log p + 1), each step materialised: err(d) <= (fn + u_s)|log p| + u_s|log p + 1|."""
    p, _, ar, log_p, _ = _distribution_errors(p, None, dtype, compute, floor)
    with np.errstate(**QUIET):
        d = -(np.log(p) + 1)
    return _distribution_vjp_bound(cotangent, d, (ar.fn + ar.us) * log_p + ar.us * np.abs(d), ar)


def kl_divergence_vjp(p, cotangent, q=None, *, dtype=None, compute=None, floor=None):
    """d = log(p/q) + 1 (or log p + 1 - log q): err(d) <= (fn + 2u_s)(|log p| + |log q|) + 4u_s.
    Autograd of xlogy(p, p) forms v p / p for the 1: v p may round into the subnormal range (absolute error
    `floor`), which the division by p turns into floor / p."""
    p, q, ar, log_p, log_q = _distribution_errors(p, q, dtype, compute, floor)
    us = ar.us
    with np.errstate(**QUIET):
        d = np.log(p) - np.log(q) + 1
        subnormal_product = np.where(p > 0, ar.floor / p, 0.0)
    return _distribution_vjp_bound(cotangent, d, (ar.fn + 2 * us) * (log_p + log_q) + 4 * us, ar) + subnormal_product


def distribution_cross_entropy_vjp(p, cotangent, q=None, *, dtype=None, compute=None, floor=None):
    """d = -log q: err(d) <= (fn + u_s) |log q|."""
    p, q, ar, _, log_q = _distribution_errors(p, q, dtype, compute, floor)
    return _distribution_vjp_bound(cotangent, log_q, (ar.fn + ar.us) * log_q, ar)

# --------------------------------------------------------------------------------------------
# The properties' own bounds: each is bounded by the rounding that property actually sees, not by the
# sum of the elementwise tolerances of its operands. Rows are along the op's axis; each function returns
# one tolerance per row (sums) or per element (comparisons), our own float64 arithmetic included.

def softmax_sum(x, axis=-1, temperature=1.0, *, dtype=None, compute=None, floor=None):
    """|sum_j p~_j - 1| per row. With p = e/s the numerators are the very terms of the denominator, so the
    errors of z and exp cancel: what is left is s's sum (sum_error(n)), the divisions (u_c), the final
    roundings (sum_j u_s p_j = u_s) and n floors. The form exp(z - L) does not cancel exp's error (2 fn), log's
    (fn L) nor the subtractions' (u_c sum_j p_j |y_j|). Plus our float64 sum of the n outputs (n U64)."""
    r = _rows(x, axis, temperature, dtype, compute, floor)
    ar = r.ar
    with np.errstate(**QUIET):
        entropy_like = (r.p * r.abs_y).sum(axis=-1)
        tol = (ar.sum_error(r.n) + ar.us + ar.uc * (1 + entropy_like) + ar.fn * (2 + r.L[..., 0])
               + r.n * r.floor + r.n * U64)
    return _finite(tol)


def _exp_sum_tolerance(r: RowErrors):
    """|sum_j exp(y~_j) - 1| for a stored log-softmax y~ (before our own float64 sum): y = z - L shares L
    and z with s, so only exp's error in s (sum_j p_j fn_j), s's sum, log's (fn L), L's rounding into storage
    (u_s L), the subtractions (u_c (|y_j| + |m|/tau + L)) and each y's own rounding (expm1(u_s |y_j|)) remain."""
    ar = r.ar
    with np.errstate(**QUIET):
        fn_j = r.de - r.dz
        per_term = np.where(r.p > 0, r.p * (fn_j + np.expm1(np.minimum(ar.us * r.abs_y, 700.0)) + ar.uc * r.abs_y),
                            0.0).sum(axis=-1)
        common = (ar.sum_error(r.n) + ar.fn * r.L + r.lse_rounding)[..., 0]
    return per_term + common + r.n * r.floor


def log_softmax_exp_sum(x, axis=-1, temperature=1.0, *, dtype=None, compute=None, floor=None):
    """|sum_j exp(y~_j) - 1| per row, exp and the sum done here in float64 ((n + 1) U64)."""
    r = _rows(x, axis, temperature, dtype, compute, floor)
    return _finite(_exp_sum_tolerance(r) + (r.n + 1) * U64)


def softmax_order(x, axis=-1, temperature=1.0, *, dtype=None, compute=None, floor=None):
    """x_i < x_j implies p~_i <= p~_j + tol_j: every step is monotone (x - m, the division by tau and by the
    common s, rounding) but exp, which is only faithful (two results may invert by 2 fn p); rounding a value
    that much above p_j lands at most one storage ulp (2 u_s p_j) higher."""
    r = _rows(x, axis, temperature, dtype, compute, floor)
    return r.out(r.p * (2 * r.ar.fn + 2 * r.ar.us) + r.floor)


def _softmax_varying(r: RowErrors):
    """The part of a softmax's error that two evaluations of rows with the same z need not share: the sum's
    order (sum_error(n); a parallel reduction need not be deterministic) and, for tau != 1, how z was formed
    (dz_form), which exp carries into e_j and s."""
    with np.errstate(**QUIET):
        return r.p * (r.ar.sum_error(r.n) + r.dz_form + (r.p * r.dz_form).sum(axis=-1, keepdims=True))


def softmax_shift(x, shifted, axis=-1, temperature=1.0, *, dtype=None, compute=None, floor=None):
    """|softmax(x + c) - softmax(x)| for an exact shift c: z = x - m is the same for both (the same rounding of
    the same exact difference), so only _softmax_varying of each, and the two final roundings of values that
    close (u_s (p~ + p~')) remain, with a floor each."""
    r, rc = (_rows(a, axis, temperature, dtype, compute, floor) for a in (x, shifted))
    tol = _softmax_varying(r) + _softmax_varying(rc) + r.ar.us * (r.p + rc.p) + r.floor + rc.floor
    return r.out(tol)


def softmax_permutation(x, axis=-1, temperature=1.0, *, dtype=None, compute=None, floor=None):
    """|softmax(P x) - P softmax(x)|: each element's z and exp are the same; the sum's order is not
    (2 sum_error(n)), then the two final roundings (2 u_s p) and floors."""
    r = _rows(x, axis, temperature, dtype, compute, floor)
    return r.out(r.p * (2 * r.ar.sum_error(r.n) + 2 * r.ar.us) + 2 * r.floor)


def _log_softmax_varying(r: RowErrors):
    """What two evaluations of log-softmax rows with the same z need not share: L through the sum's order
    (sum_error(n)) and L's rounding into storage (u_s L), the divide-first z (dz_form, in z and through s),
    and the x - (m + L) form's rounding of m + L (u_c (|m|/tau + L)), which a shift changes."""
    with np.errstate(**QUIET):
        return (r.ar.sum_error(r.n) + r.lse_rounding + r.dz_form + (r.p * r.dz_form).sum(axis=-1, keepdims=True))


def log_softmax_shift(x, shifted, axis=-1, temperature=1.0, *, dtype=None, compute=None, floor=None):
    """|log_softmax(x + c) - log_softmax(x)| for an exact shift c: the varying parts of each, and the two
    final roundings (u_s (|y~| + |y~'|))."""
    r, rc = (_rows(a, axis, temperature, dtype, compute, floor) for a in (x, shifted))
    tol = (_log_softmax_varying(r) + _log_softmax_varying(rc) + r.ar.us * (r.abs_y + rc.abs_y)
           + r.floor + rc.floor)
    return r.out(tol)


def logsumexp_shift(x, shifted, axis=-1, *, dtype=None, compute=None, floor=None):
    """|lse(x + c) - (lse(x) + c)| for an exact shift c: L is the same up to the sum's order (sum_error(n))
    and the composition's roundings of s and L (u_s (1 + L)); m + L is rounded anew (u_c |m + L|), and so is
    each result (u_s |lse|); plus our float64 lse + c (U64 |lse + c|)."""
    r, rc = (_rows(a, axis, 1.0, dtype, compute, floor) for a in (x, shifted))
    with np.errstate(**QUIET):
        parts = [r.ar.sum_error(r.n) + r.ar.us * (1 + q.L) + (r.ar.uc + r.ar.us) * np.abs(q.m + q.L) for q in (r, rc)]
        tol = parts[0] + parts[1] + U64 * np.abs(rc.m + rc.L) + r.floor + rc.floor
    return _finite(tol[..., 0])


def logsumexp_range(x, axis=-1, *, dtype=None, compute=None, floor=None):
    """(below, above): m - below <= lse~ <= m + log n + above. lse = m + log s with s >= 1 (the max's own
    term is exp(0) = 1 exactly, the others >= 0, and rounding is monotone), so log s >= 0 and m + log s rounds
    to at least m: below is 0 (a flushed subnormal m: the floor). Above is the value bound (every error of
    lse counts there) plus our float64 m + log n (U64 |m + log n|)."""
    x = np.asarray(x)
    ar = _ar(x, dtype, compute, floor)
    above = logsumexp(x, axis, dtype=dtype, compute=compute, floor=floor)
    with np.errstate(**QUIET):
        m = np.max(x.astype(np.float64), axis=axis)
        above = above + U64 * np.abs(m + np.log(x.shape[axis]))
    return (ar.floor if ar.flushes else 0.0), _finite(above)


def _vjp_rows_sum(tol_rows, g_rows, r: RowErrors):
    """+ the final roundings sum_j (u_c + u_s)|g_j| and our float64 sum (n U64 sum|g|)."""
    return tol_rows + ((r.ar.uc + r.ar.us) + r.n * U64) * np.abs(g_rows).sum(axis=-1)


def softmax_vjp_row_sum(x, cotangent, axis=-1, temperature=1.0, *, dtype=None, compute=None, floor=None):
    """|sum_j g~_j| per row, g = p (v - c)/tau, c = sum p v: with the backend's own p~, sum_j p~_j (v_j - c~)
    = c~_exact - c~ sum p~, so only sum p~'s distance from 1 (softmax_sum, sigma), c's own sum (sum_error(n)
    sum p|v|), the subtractions (u_c p_j (|v_j| + |c|)) and the products, division and roundings remain."""
    r = _rows(x, axis, temperature, dtype, compute, floor)
    ar, v = r.ar, _rows_v(cotangent, r.axis, True)
    with np.errstate(**QUIET):
        sigma = softmax_sum(x, axis, temperature, dtype=dtype, compute=compute, floor=floor)[..., None]
        c = (r.p * v).sum(axis=-1, keepdims=True)
        pv = (r.p * np.abs(v)).sum(axis=-1, keepdims=True)
        g = r.p * (v - c) / r.tau
        tol = (np.abs(c) * sigma + ar.sum_error(r.n) * pv * (1 + sigma)
               + ar.uc * (pv + np.abs(c))) / r.tau + r.n * r.floor * (1 + np.abs(v).sum(axis=-1, keepdims=True))
        return _finite(_vjp_rows_sum(tol[..., 0], g, r))


def log_softmax_vjp_row_sum(x, cotangent, axis=-1, temperature=1.0, *, dtype=None, compute=None, floor=None):
    """|sum_j g~_j| per row, g = (v - p S)/tau with p = exp(stored y): sum_j g~_j = (S - S~) + S~ (1 - sum p~),
    so S's own sum (sum_error(n) sum|v|), sum p~'s distance from 1 (the stored y's exp sum, and the
    backward's exp in compute: fn + u_c per term) and the products, subtractions and roundings remain."""
    r = _rows(x, axis, temperature, dtype, compute, floor)
    ar, v = r.ar, _rows_v(cotangent, r.axis, True)
    with np.errstate(**QUIET):
        sigma = _exp_sum_tolerance(r)[..., None] + (r.p * (ar.fn + ar.uc)).sum(axis=-1, keepdims=True)
        total = v.sum(axis=-1, keepdims=True)
        g = (v - r.p * total) / r.tau
        tol = (ar.sum_error(r.n) * np.abs(v).sum(axis=-1, keepdims=True) + np.abs(total) * sigma
               + ar.uc * (np.abs(v).sum(axis=-1, keepdims=True) + np.abs(total))) / r.tau \
            + r.n * r.floor * (1 + np.abs(total))
        return _finite(_vjp_rows_sum(tol[..., 0], g, r))


def cross_entropy_vjp_row_sum(logits, cotangent, target=None, reduction="mean", weight=None, ignore_index=-100,
                              label_smoothing=0.0, z_loss=0.0, softcap=None, *, dtype=None, compute=None,
                              floor=None):
    """|sum_c g~_c| per example, g = r (A p - a): log_softmax's backward with the cotangent -r a (its errors
    are common to both terms and cancel), so |r| (A sigma + A sum_error(C) + u_c A) and the roundings remain,
    sigma being sum p~'s distance from 1 (the stored y's exp sum, and the backward's exp: fn + u_c per term)."""
    _plain_only(z_loss, softcap, "the gradient row sums' bound")
    problem, r = _ce(logits, target, reduction, weight, ignore_index, label_smoothing, dtype, compute, floor)
    ar = r.ar
    with np.errstate(**QUIET):
        scale = np.abs(problem.row_scale(cotangent))[:, 0]
        big_a = problem.row_coef_sum
        sigma = _exp_sum_tolerance(r) + (r.p * (ar.fn + ar.uc)).sum(axis=-1)
        g = problem.row_scale(cotangent) * (big_a[:, None] * r.p - problem.coefficients())
        tol = scale * big_a * (sigma + ar.sum_error(problem.n_classes) + 2 * ar.uc) \
            + problem.n_classes * r.floor * (1 + scale * big_a)
        return _finite(_vjp_rows_sum(tol, g, r)).reshape(problem.batch_shape)

def elementwise_row_sum_bound(vjp_bound_fn):
    """For an op without a row-sum bound of its own: the sum of the vjp's elementwise bounds along each row (the
    op's axis, or the class axis), our float64 sum included."""
    def bound(x, cotangent, *, dtype=None, compute=None, floor=None, **kwargs):
        tol = vjp_bound_fn(x, cotangent, **kwargs, dtype=dtype, compute=compute, floor=floor)
        rows = np.moveaxis(tol, kwargs.get("axis", -1), -1)
        return rows.sum(axis=-1) * (1 + rows.shape[-1] * U64)
    return bound


# --------------------------------------------------------------------------------------------
# The LM head's options: cross-entropy on l = softcap(u) (u the logits, or h W^T + b for linear cross-entropy),
# plus z_loss lse^2 per valid example. The logits' errors (the matmul's, the soft-cap's, their rounding into
# storage) are carried through the cross-entropy to first order, |d ce_i / d l_ic| = |A_i p_ic - a_ic| <= A_i
# p_ic + a_ic (plus the second order term A_i max dl^2 / 2), and the cross-entropy's own rounding is
# cross_entropy's bound on the logits.

class LogitsHead:
    """Float64 logits l = softcap(u) of a cross-entropy and a bound dl on each computed logit's error, from u
    and its error du (0 for logits given as they are)."""

    def __init__(self, u, du, softcap, ar: Arithmetic):
        with np.errstate(**QUIET):
            if softcap is None:
                self.logits, self.dl, self.slope = u, du, None
            else:
                v = u / softcap
                t = np.tanh(v)
                self.logits, self.slope = softcap * t, 1 - t * t  # d l / d u
                # u / cap, tanh and cap t, each rounded in compute or (a framework's separate ops) into storage:
                # t errs by dt = (fn + u_c + u_s)|t| + u_s |v| (1 - t^2), the quotient's rounding carried
                dt = (ar.fn + ar.uc + ar.us) * np.abs(t) + ar.us * np.where(np.isinf(v), 0.0, np.abs(v) * self.slope)
                # tanh' <= 1 carries du; the product's roundings
                self.dl = du + softcap * dt + (ar.uc + ar.us) * np.abs(self.logits)
                # the backward's factor 1 - t~^2: |d slope| <= 2 du / cap + 2 |t| dt + 2 u_c
                self.d_slope = 2 * du / softcap + 2 * np.abs(t) * dt + 2 * ar.uc
        self.ar, self.softcap = ar, softcap


class LinearHead(LogitsHead):
    """The logits of a linear cross-entropy input, h W^T + b, and their errors."""

    def __init__(self, hidden, weight, bias, softcap, ar: Arithmetic):
        h = np.asarray(hidden).astype(np.float64)
        self.h = h.reshape(-1, h.shape[-1])
        self.w = np.asarray(weight).astype(np.float64)
        b = np.zeros(self.w.shape[0]) if bias is None else np.asarray(bias).astype(np.float64)
        with np.errstate(**QUIET):
            u = self.h @ self.w.T + b
            magnitude = np.abs(self.h) @ np.abs(self.w).T + np.abs(b)
            # the dot product and the bias in compute, any order (Higham 3.5: products u_c, the sum's
            # sum_error), and the logits rounded into storage where a framework materialises them
            du = (ar.sum_error(self.h.shape[1] + 1) + ar.uc) * magnitude + ar.us * np.abs(u)
        super().__init__(u, du, softcap, ar)


class HeadLoss:
    """A cross-entropy with z-loss on a LogitsHead's (N, C) logits: its coefficients, p and lse per example."""

    def __init__(self, head: LogitsHead, target, class_weight, ignore_index, label_smoothing):
        self.head, self.ar = head, head.ar
        self.ce_args = (target, class_weight, ignore_index, label_smoothing)
        self.problem = CrossEntropyProblem(head.logits, target, "none", class_weight, ignore_index, label_smoothing)
        with np.errstate(**QUIET):
            soft = RowSoftmax(head.logits - head.logits.max(axis=-1, keepdims=True))
            self.p, self.lse = soft.p, head.logits.max(axis=-1) + soft.log_s[:, 0]
            # the log-sum-exp a framework computes from the computed logits: their errors, then its own
            self.e = (self.p * head.dl).sum(-1) + logsumexp(head.logits, dtype=self.ar.storage.name,
                                                            compute=self.ar.compute.name, floor=self.ar.floor)
        self.valid = self.problem.valid
        self.n_valid = max(int(self.valid.sum()), 1)

    def _ce_bound(self, fn, *args, reduction):
        target, class_weight, ignore_index, label_smoothing = self.ce_args
        ar = self.ar
        return fn(self.head.logits, *args, target, reduction, class_weight, ignore_index, label_smoothing,
                  dtype=ar.storage.name, compute=ar.compute.name, floor=ar.floor)

    def value(self, reduction, z_loss):
        """cross_entropy's bound on the logits, the logits' errors carried through it, and the z-loss z_i = k
        lse_i^2: |dz_i| <= k (2|lse_i| e_i + e_i^2 + 2(u_c + u_s) lse_i^2), e_i = sum_c p_ic dl_ic + the
        log-sum-exp's own bound; then the reduction's sums (sum_error), its division and roundings."""
        ar, head, problem, lse, e, valid = self.ar, self.head, self.problem, self.lse, self.e, self.valid
        with np.errstate(**QUIET):
            a, big_a = problem.coefficients(), problem.row_coef_sum
            carried = ((big_a[:, None] * self.p + a) * head.dl).sum(-1) + big_a * head.dl.max(-1) ** 2 / 2
            z = np.where(valid, z_loss * lse ** 2, 0.0)
            dz = np.where(valid, z_loss * (2 * np.abs(lse) * e + e * e + 2 * (ar.uc + ar.us) * lse ** 2), 0.0)
            carried = np.where(valid, carried, 0.0)
            if reduction == "none":
                ce = self._ce_bound(cross_entropy, reduction="none").reshape(-1)
                ce_value = np.where(a > 0, a * (lse[:, None] - head.logits), 0.0).sum(-1)
                return _finite(np.where(valid, ce + carried + dz + ar.us * np.abs(ce_value + z), 0.0))
            ce = self._ce_bound(cross_entropy, reduction=reduction)
            z_total_tol = dz.sum() + ar.sum_error(len(z)) * np.abs(z).sum()
            if reduction == "sum":
                tol = ce + carried.sum() + z_total_tol + ar.us * np.abs(z.sum())
            else:
                tol = (ce + carried.sum() / problem.denominator + z_total_tol / self.n_valid
                       + (2 * ar.uc + ar.us) * np.abs(z.sum()) / self.n_valid)
            return np.asarray(_finite(tol + ar.floor))

    def gradient(self, cotangent, reduction, z_loss):
        """(G, its tolerance, the magnitude of G's terms): G = d loss / d u = (r (A p - a) + r_z 2k lse p) (1 - t^2), before its rounding
        into storage. Within cross_entropy_vjp's bound on the logits plus the logits' errors carried through it
        (|r| A p_c (dl_c + sum p dl)) and the z-loss's 2k|r_z| (p e + |lse| p (dl_c + sum p dl + e + u_s gap_c)
        and its products' roundings: p = exp(l - lse~) errs through l's errors, lse~'s (e) and the difference's
        rounding (u_s gap_c)); through the
        soft-cap G (1 - t^2), whose factor errs by head.d_slope, and its backward's two roundings."""
        ar, head, problem, p, lse, valid = self.ar, self.head, self.problem, self.p, self.lse, self.valid
        n = head.logits.shape[0]
        with np.errstate(**QUIET):
            a, big_a = problem.coefficients(), problem.row_coef_sum
            cot = np.asarray(cotangent, dtype=np.float64)
            cot = cot.reshape(-1) if reduction == "none" else cot
            target, class_weight, ignore_index, label_smoothing = self.ce_args
            r = CrossEntropyProblem(head.logits, target, reduction, class_weight, ignore_index,
                                    label_smoothing).row_scale(cot)[:, 0]
            r_z = np.where(valid, np.broadcast_to(cot, (n,)), 0.0)
            r_z = r_z / self.n_valid if reduction == "mean" else r_z
            grad = r[:, None] * (big_a[:, None] * p - a) + (2 * z_loss * r_z * lse)[:, None] * p
            spread = head.dl + (p * head.dl).sum(-1, keepdims=True)
            gap = np.where(p > 0, lse[:, None] - head.logits, 0.0)  # p = 0 (a -inf logit): its terms are exactly 0
            d_grad = (self._ce_bound(cross_entropy_vjp, cot, reduction=reduction).reshape(grad.shape)
                      + np.abs(r)[:, None] * big_a[:, None] * p * spread
                      + 2 * z_loss * np.abs(r_z)[:, None] * (
                          p * self.e[:, None] + np.abs(lse)[:, None] * p * (spread + self.e[:, None] + ar.us * gap)
                          + 3 * (ar.uc + ar.us) * np.abs(lse)[:, None] * p))
            magnitude = np.abs(r)[:, None] * (big_a[:, None] * p + a) + np.abs(2 * z_loss * r_z * lse)[:, None] * p
            if head.softcap is not None:
                d_grad = d_grad * head.slope + np.abs(grad) * (head.d_slope + 2 * (ar.uc + ar.us) * head.slope)
                grad, magnitude = grad * head.slope, magnitude * head.slope
            return tuple(np.where(valid[:, None], a, 0.0) for a in (grad, d_grad, magnitude))


def _logits_loss(logits, target, weight, ignore_index, label_smoothing, softcap, dtype, compute, floor):
    """Cross-entropy's HeadLoss on its own logits (exact: du = 0), rows (N, C)."""
    x = validation.as_float_array(logits, "logits")
    u = x.astype(np.float64).reshape(-1, x.shape[-1])
    head = LogitsHead(u, np.zeros_like(u), softcap, arithmetic(dtype or x.dtype, compute, floor))
    t = np.asarray(target)
    return HeadLoss(head, t.reshape(u.shape) if t.shape == x.shape else t.reshape(-1), weight, ignore_index,
                    label_smoothing)


def _cross_entropy_head(logits, target, reduction, weight, ignore_index, label_smoothing, z_loss, softcap, dtype,
                        compute, floor, cotangent=None):
    """With z_loss or softcap, cross_entropy's (cotangent None) or cross_entropy_vjp's bound from its HeadLoss;
    None for plain cross-entropy."""
    if not _head_options_set(z_loss, softcap):
        return None
    loss = _logits_loss(logits, target, weight, ignore_index, label_smoothing, softcap, dtype, compute, floor)
    shape = np.shape(logits)
    if cotangent is None:
        tol = loss.value(reduction, z_loss)
        return tol.reshape(shape[:-1]) if reduction == "none" else tol
    grad, d_grad, _ = loss.gradient(cotangent, reduction, z_loss)
    ar = loss.ar
    return _finite(np.where(loss.valid[:, None], d_grad + ar.us * np.abs(grad) + ar.floor, 0.0)).reshape(shape)


def _cross_entropy_head_jvp(logits, tangent, target, reduction, weight, ignore_index, label_smoothing, z_loss,
                            softcap, dtype, compute, floor):
    """J t = sum_c G_ic t_ic, G the gradient at a unit cotangent (within HeadLoss.gradient's bound, rounded), in
    any order (forward mode's too): sum_error(C) times the terms' magnitudes |t_c| M_c, twice (the tangent's own
    path through softcap, log-sum-exp and the z-loss sums as many), and u_s |J|; summed over the examples for a
    reduction, with sum_error(N)."""
    loss = _logits_loss(logits, target, weight, ignore_index, label_smoothing, softcap, dtype, compute, floor)
    ar, batch = loss.ar, np.shape(logits)[:-1]
    unit = np.ones(batch if reduction == "none" else ())
    grad, d_grad, magnitude = loss.gradient(unit, reduction, z_loss)
    with np.errstate(**QUIET):
        t = np.abs(np.asarray(tangent, dtype=np.float64).reshape(grad.shape))
        spread = (t * magnitude).sum(axis=-1)
        per_example = (t * (d_grad + ar.us * np.abs(grad) + ar.floor)).sum(axis=-1) + 2 * ar.sum_error(t.shape[-1]) * spread
        if reduction == "none":
            return _finite(per_example + ar.us * spread + ar.floor).reshape(batch)
        return _finite(per_example.sum() + (ar.sum_error(len(spread)) + ar.us) * spread.sum() + ar.floor)


def _head_options_set(z_loss, softcap) -> bool:
    """Whether cross-entropy's LM-head options are given (each checked: ValueError or TypeError naming it)."""
    return bool(validation.check_non_negative(z_loss, "z_loss")) or validation.check_softcap(softcap) is not None


def _plain_only(z_loss, softcap, what):
    if _head_options_set(z_loss, softcap):
        raise ValueError(f"z_loss, softcap: {what} is derived for plain cross-entropy only")


def _linear_loss(hidden, weight, target, bias, class_weight, ignore_index, label_smoothing, softcap, dtype, compute,
                 floor):
    ar = arithmetic(dtype or np.asarray(hidden).dtype, compute, floor)
    head = LinearHead(hidden, weight, bias, softcap, ar)
    return HeadLoss(head, np.asarray(target).reshape(-1), class_weight, ignore_index, label_smoothing)


def linear_cross_entropy(hidden, weight=None, target=None, bias=None, reduction="mean", class_weight=None,
                         ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None, *, dtype=None, compute=None,
                         floor=None):
    """HeadLoss.value on the LinearHead's logits."""
    loss = _linear_loss(hidden, weight, target, bias, class_weight, ignore_index, label_smoothing, softcap, dtype,
                        compute, floor)
    tol = loss.value(reduction, z_loss)
    return tol.reshape(np.shape(hidden)[:-1]) if reduction == "none" else tol


def linear_cross_entropy_vjp(hidden, cotangent, weight=None, target=None, bias=None, reduction="mean",
                             class_weight=None, ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None, *,
                             dtype=None, compute=None, floor=None):
    """(tolerance of d hidden, of d weight, of d bias or None): G and its tolerance (HeadLoss.gradient), rounded
    into storage (u_s|G|); then each matmul: |dG| |W| (or |dG|^T |h|, or sum |dG|) plus (sum_error(n) + u_c)
    times the same with |G|, n the summed length, and the result's rounding."""
    loss = _linear_loss(hidden, weight, target, bias, class_weight, ignore_index, label_smoothing, softcap, dtype,
                        compute, floor)
    ar, head = loss.ar, loss.head
    n, v = head.logits.shape
    grad, d_grad, _ = loss.gradient(cotangent, reduction, z_loss)
    with np.errstate(**QUIET):
        d_grad = np.where(loss.valid[:, None], d_grad + ar.us * np.abs(grad) + ar.floor, 0.0)

        def matmul_tol(d_left, left, right, length):
            exact = np.abs(left) @ np.abs(right)
            return d_left @ np.abs(right) + (ar.sum_error(length) + ar.uc) * exact + ar.us * exact + ar.floor

        tol_h = matmul_tol(d_grad, grad, head.w, v).reshape(np.shape(hidden))
        tol_w = matmul_tol(d_grad.T, grad.T, head.h, n)
        tol_b = None if bias is None else (d_grad.sum(0) + (ar.sum_error(n) + ar.us) * np.abs(grad).sum(0) + ar.floor)
    return _finite(tol_h), _finite(tol_w), None if tol_b is None else _finite(tol_b)
