"""Where frameworks depart from the reference's semantics, on purpose: the documented list, by name.

DESIGN.md: on these edges a difference is a semantic difference, not a failure (`check --strict` makes
it one). Each Departure has a unique name (`key`) and says which op and kind (value or vjp) it concerns,
which output elements it affects for a given input, and what is returned there (`answer`, checked by
`expected`): a departure is an expected answer, not a hole. A backend has the departures it declares
(`departures = ("name", ...)`) and those of its `framework` ("torch", "jax": the sets below), and is held
to each one's answer; a departure nobody declared is a failure, whoever has it. Everything else is still
held to the error bound.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import verdict
from .records import OPS
from .reference.dtypes import FORMATS
from .reference.losses import IndexLossProblem, alpha_at_target, hinge_parts
from .reference.linear import linear_logits
from .reference.ops import QUIET, CrossEntropyProblem, loss_part


@dataclass(frozen=True)
class Departure:
    key: str
    frameworks: tuple[str, ...]  # the frameworks that have it: `framework = "torch"` declares torch's set
    op: str
    kind: str  # "value" or "vjp"
    description: str
    affected: Callable  # (x, kwargs, kind) -> boolean mask broadcastable to the output
    answer: str  # what the framework returns on the affected elements, in words
    expected: Callable  # (got, x, kwargs, cotangent) -> boolean mask: got is that answer, elementwise
    # (x, kwargs, kind, cotangent) -> mask, for a departure that shows only at some cotangents; where the
    # cotangent is not known, every cotangent is assumed
    by_cotangent: Callable | None = None

    def applies_to(self, declared: frozenset, op: str, kind: str) -> bool:
        return self.key in declared and op == self.op and kind == self.kind


def _is(value):
    """The answer `value` exactly (NaN for NaN)."""
    if isinstance(value, float) and np.isnan(value):
        return lambda got, x, kwargs, cotangent: np.isnan(_f64(got))
    return lambda got, x, kwargs, cotangent: _f64(got) == value


def _not_finite(got, x, kwargs, cotangent):
    return ~np.isfinite(_f64(got))


def _f64(a):
    return np.asarray(a).astype(np.float64)


def _ce_problem(x, kwargs) -> CrossEntropyProblem:
    """cross_entropy's problem as its cross-entropy part sees it (soft-capped logits, no z-loss)."""
    x, options = loss_part(x, kwargs)
    return CrossEntropyProblem(x, **options)


def _all_ignored_mean(x, kwargs, kind):
    problem = _ce_problem(x, kwargs)
    return np.asarray(problem.reduction == "mean" and problem.denominator == 0)


def _linear_all_ignored_mean(x, kwargs, kind):
    """linear_cross_entropy: a mean whose denominator (the valid targets' class weights) is 0."""
    target = np.asarray(kwargs["target"]).reshape(-1)
    valid = target != kwargs.get("ignore_index", -100)
    weight = kwargs.get("class_weight")
    total = valid.sum() if weight is None else np.asarray(weight, dtype=np.float64)[target[valid]].sum()
    return np.asarray(kwargs.get("reduction", "mean") == "mean" and total == 0)


def _on_the_logits(affected):
    """A cross_entropy predicate for linear_cross_entropy: applied to its logits h W^T + b (soft-capped), in the
    hidden states' dtype, with its cross-entropy options."""
    def on_logits(x, kwargs, kind):
        x = np.asarray(x)
        logits = linear_logits(x, kwargs["weight"], kwargs.get("bias"), kwargs.get("softcap"))
        logits = logits.reshape(-1, logits.shape[-1]).astype(x.dtype)
        ce = {"target": np.asarray(kwargs["target"]).reshape(-1), "reduction": kwargs.get("reduction", "mean"),
              "weight": kwargs.get("class_weight"), "ignore_index": kwargs.get("ignore_index", -100),
              "label_smoothing": kwargs.get("label_smoothing", 0.0)}
        hit = np.asarray(affected(logits, ce, kind))
        return hit.reshape(x.shape[:-1]) if hit.ndim else hit
    return on_logits


def _ignored_irregular_rows(x, kwargs, kind):
    """Ignored examples whose logits are all -inf, or hold +inf or NaN: their log-softmax is NaN."""
    problem = _ce_problem(x, kwargs)
    if problem.target_kind != "index":
        return np.asarray(False)
    with np.errstate(**QUIET):
        m = problem.logits.max(axis=-1)
        irregular = ~np.isfinite(m) | np.isnan(problem.logits).any(axis=-1)
    hit = ~problem.valid & irregular
    return np.broadcast_to(hit[:, None], problem.logits.shape).reshape(problem.shape)


def _plus_inf_rows(x, kwargs, kind):
    axis = kwargs.get("axis", -1)
    rows = np.asarray(x, dtype=np.float64)
    with np.errstate(**QUIET):
        bad = np.any(rows == np.inf, axis=axis, keepdims=True) & ~np.any(np.isnan(rows), axis=axis, keepdims=True)
    return np.broadcast_to(bad, rows.shape)


def _zero_times_minus_inf(x, kwargs, kind):
    """Rows where torch multiplies a zero coefficient by a -inf log-probability (0 * -inf = NaN).

    torch computes (1 - eps) * nll(w_y) + (eps / C) * sum_c w_c (-log p_c) for class indices, and
    sum_c w_c q'_c (-log p_c) for probabilities: a zero in any of those factors at a -inf logit is NaN,
    where the reference takes 0 log 0 = 0 for the combined coefficient.
    """
    problem = _ce_problem(x, kwargs)
    minus_inf = problem.logits == -np.inf
    if problem.target_kind == "probability":
        hit = np.any((problem.coefficients() == 0) & minus_inf, axis=-1)
    else:
        rows = np.arange(problem.logits.shape[0])
        nll_coef = (1 - problem.smoothing) * problem.w_target
        at_target = minus_inf[rows, problem.index] & (nll_coef == 0)
        spread = (problem.smoothing > 0) & np.any((problem.w == 0) & minus_inf, axis=-1)
        hit = problem.valid & (at_target | spread)
    if problem.reduction != "none":
        return np.asarray(hit.any())
    return hit.reshape(problem.batch_shape)


def _float16_sum_overflows(op):
    """Rows of float16 input whose sum of exp(x - max) exceeds 65504, the largest float16, shaped like op's
    output (a value; its record's shape rule) or its input (a vjp, an hvp)."""
    record = OPS[op]

    def affected(x, kwargs, kind):
        x, kwargs = loss_part(np.asarray(x), kwargs)  # cross-entropy's soft-capped logits
        if x.dtype != np.float16:
            return np.asarray(False)
        axis = kwargs.get("axis", -1)  # the ops without an axis act along the last
        rows = np.moveaxis(x.astype(np.float64), axis, -1)
        with np.errstate(**QUIET):
            hit = np.exp(rows - rows.max(axis=-1, keepdims=True)).sum(axis=-1) > 65504.0
        out_shape = x.shape if kind in ("vjp", "hvp") else record.output_shape(x, kwargs)
        if out_shape == x.shape:
            return np.moveaxis(np.broadcast_to(hit[..., None], rows.shape), -1, axis)
        return hit if out_shape == hit.shape else np.asarray(hit.any())
    return affected


def _float16_loss_sums_overflow(x, kwargs, kind):
    """float16 cross-entropy whose torch intermediates (sum over classes of w_c (-log p_c) for label
    smoothing; sum over examples of the nll or smoothing parts for a mean or sum) exceed 65504."""
    x = np.asarray(x)
    if x.dtype != np.float16:
        return np.asarray(False)
    problem = _ce_problem(x, kwargs)
    with np.errstate(**QUIET):
        rows = problem.logits - problem.logits.max(axis=-1, keepdims=True)
        logp = rows - np.log(np.exp(rows).sum(axis=-1, keepdims=True))
        if problem.target_kind == "probability":
            parts = [np.where(problem.coefficients() > 0, problem.coefficients() * -logp, 0).sum(axis=-1)]
        else:
            picked = -logp[np.arange(logp.shape[0]), problem.index]
            nll = np.where(problem.valid & (problem.w_target > 0), problem.w_target * picked, 0)
            spread = np.where(problem.valid & (problem.smoothing > 0),
                              np.where(problem.w > 0, problem.w * -logp, 0).sum(axis=-1), 0)
            parts = [nll, spread]
    limit = 65504.0
    if problem.reduction == "none":
        return (parts[-1] > limit).reshape(problem.batch_shape) if len(parts) > 1 else np.zeros(problem.batch_shape, bool)
    return np.asarray(any(p.sum() > limit for p in parts) or (len(parts) > 1 and bool((parts[1] > limit).any())))


# -- the loss family ----------------------------------------------------------------------------------

def _index_loss(x, kwargs):
    return IndexLossProblem(x, kwargs["target"], kwargs.get("reduction", "mean"))


def _per_example(problem, hit, kind):
    """A per-example mask as the op's output (a reduced loss: any example) or as its input (a vjp)."""
    if kind in ("vjp", "hvp"):
        return np.broadcast_to(hit[:, None], problem.logits.shape).reshape(problem.shape)
    if problem.reduction != "none":
        return np.asarray(hit.any())
    return hit.reshape(problem.batch_shape)


def _focal_masked_target(gammas):
    """Examples whose target logit is -inf (in a row with a finite max), for gamma in `gammas`."""
    def affected(x, kwargs, kind):
        problem = _index_loss(x, kwargs)
        with np.errstate(**QUIET):
            hit = (problem.logits[problem.rows, problem.target] == -np.inf) & np.isfinite(problem.logits.max(axis=-1))
        return _per_example(problem, hit & gammas(kwargs.get("gamma", 2.0)), kind)
    return affected


def _irregular(problem):
    """Examples whose logits are all -inf, or hold +inf or NaN: a NaN softmax."""
    with np.errstate(**QUIET):
        return ~np.isfinite(problem.logits.max(axis=-1)) | np.isnan(problem.logits).any(axis=-1)


def _focal_zero_alpha(x, kwargs, kind):
    """Examples with alpha_t = 0 at a -inf target logit (values only) or in an irregular row."""
    problem = _index_loss(x, kwargs)
    alpha_t = alpha_at_target(problem, kwargs.get("alpha"))
    with np.errstate(**QUIET):
        masked = (problem.logits[problem.rows, problem.target] == -np.inf) & (kind == "value")
    return _per_example(problem, (alpha_t == 0) & (masked | _irregular(problem)), kind)


def _focal_near_one(gammas):
    """Examples whose 1 - p_t is below 2 eps of the dtype (1 - p_t may round to 0 there), for gamma in `gammas`."""
    def affected(x, kwargs, kind):
        problem = _index_loss(x, kwargs)
        eps = FORMATS[np.asarray(x).dtype.name].eps if np.asarray(x).dtype.name in FORMATS else FORMATS["float64"].eps
        with np.errstate(**QUIET):
            _, _, rest, _ = problem.at_target()
        return _per_example(problem, (rest < 2 * eps) & gammas(kwargs.get("gamma", 2.0)), kind)
    return affected


def _hinge_kink(x, kwargs, kind):
    """Examples whose slack margin - (z_t - max_{j != t} z_j) is exactly 0."""
    problem = _index_loss(x, kwargs)
    with np.errstate(**QUIET):
        slack, _, _ = hinge_parts(problem, kwargs.get("margin", 1.0))
    return _per_example(problem, slack == 0, kind)


def _nan_rows(x, kwargs, kind):
    problem = _index_loss(x, kwargs)
    return _per_example(problem, np.isnan(problem.logits).any(axis=-1), kind)


def _nan_slack(x, kwargs, kind):
    """Examples whose slack margin - (z_t - max_{j != t} z_j) is NaN (a NaN logit, or inf - inf)."""
    problem = _index_loss(x, kwargs)
    with np.errstate(**QUIET):
        slack, _, _ = hinge_parts(problem, kwargs.get("margin", 1.0))
    return _per_example(problem, np.isnan(slack), kind)


def _distribution_entries(select):
    """Entries (vjp) or rows (value) where select(p, q) holds; q is p for entropy."""
    def affected(x, kwargs, kind):
        p = np.asarray(x).astype(np.float64)
        q = np.asarray(kwargs["q"]).astype(np.float64) if "q" in kwargs else p
        hit = select(p, q, np.asarray(x).dtype.name)
        return hit if kind in ("vjp", "hvp") else hit.any(axis=-1)
    return affected


def _zero_cotangent(entries):
    """The entries of rows whose cotangent is 0, or subnormal (XLA on CPU flushes it to 0)."""
    def affected(x, kwargs, kind, cotangent):
        name = np.asarray(x).dtype.name
        tiny = FORMATS[name if name in FORMATS else "float64"].smallest_normal
        return entries(x, kwargs, kind) & (np.abs(cotangent.astype(np.float64))[..., None] < tiny)
    return affected


def _subnormal(p, q, dtype):
    """XLA on CPU flushes subnormal inputs to 0 (DAZ): float16 is computed in float32, where its
    subnormals are normal numbers; the other formats' own subnormals are flushed."""
    if dtype == "float16":
        return np.zeros(p.shape, dtype=bool)
    tiny = FORMATS[dtype].smallest_normal if dtype in FORMATS else FORMATS["float64"].smallest_normal
    return ((0 < p) & (p < tiny)) | ((0 < q) & (q < tiny))


def _flushed_answer(op):
    """got is +inf or NaN, or op's value on the inputs with their subnormal entries as 0 (within the verdict's
    tolerance of the reference there): where a subnormal p_i meets q_i = 0, the flushed term 0 log 0 is 0 and
    the divergence finite."""
    def expected(got, x, kwargs, cotangent):
        x = np.asarray(x)
        tiny = FORMATS[x.dtype.name].smallest_normal

        def flush(a):
            a = np.asarray(a)
            return np.where(np.abs(a.astype(np.float64)) < tiny, 0.0, a.astype(np.float64)).astype(a.dtype)

        x0 = flush(x)
        kw0 = dict(kwargs, q=flush(kwargs["q"])) if "q" in kwargs else kwargs
        want, tol, _ = verdict.reference_answer(op, "value", x0, kw0)
        tol = tol + verdict.value_bound(op, x0, floor=tiny, **kw0)
        return _not_finite(got, x, kwargs, cotangent) | verdict.close_mask(got, want, tol)
    return expected


def _either_zero_or_nan(got, x, kwargs, cotangent):
    return (_f64(got) == 0) | np.isnan(_f64(got))


def _the_cotangent(got, x, kwargs, cotangent):
    return _f64(got) == _f64(cotangent)


def _ce_without_p(got, x, kwargs, cotangent):
    """g = r (A p - a) with p = 0: -r a (within the rounding of that product), or NaN."""
    problem = _ce_problem(x, kwargs)
    u = FORMATS["float16"].unit_roundoff
    with np.errstate(**QUIET):
        want = (-problem.row_scale(cotangent) * problem.coefficients()).reshape(problem.shape)
        return np.isnan(_f64(got)) | (np.abs(_f64(got) - want) <= 2 * u * np.abs(want)
                                      + FORMATS["float16"].smallest_subnormal)


def _hinge_kink_answer(target_share):
    """At the kink rows: r times -target_share(k) at the target and target_share(k)/k at each of the k tied
    classes (0 elsewhere; the row sums to 0), within the rounding of those products (2 u |g|)."""
    def expected(got, x, kwargs, cotangent):
        problem = _index_loss(x, kwargs)
        with np.errstate(**QUIET):
            _, others, m = hinge_parts(problem, kwargs.get("margin", 1.0))
            tied = others == m[:, None]
            k = tied.sum(axis=-1, keepdims=True)
            share = target_share(k)
            g = np.where(tied, share / k, 0.0)
            g[problem.rows, problem.target] = -share[:, 0]
            g = g * problem.row_scale(cotangent)
            name = np.asarray(x).dtype.name
            fmt = FORMATS[name if name in FORMATS else "float64"]
            close = np.abs(_f64(got).reshape(g.shape) - g) <= 2 * fmt.unit_roundoff * np.abs(g) + fmt.smallest_normal
        return close.reshape(problem.shape)
    return expected


_NAN = _is(float("nan"))


def _within_row_scale(got, x, kwargs, cotangent):
    """0, NaN, or a gradient entry no larger than the example's |r| (within the dtype's rounding)."""
    problem = _index_loss(x, kwargs)
    g = _f64(got).reshape(problem.logits.shape)
    name = np.asarray(x).dtype.name
    u = FORMATS[name if name in FORMATS else "float64"].unit_roundoff
    with np.errstate(**QUIET):
        scale = np.abs(problem.row_scale(cotangent)) * (1 + 2 * u)
    return ((g == 0) | np.isnan(g) | (np.abs(g) <= scale)).reshape(problem.shape)
DEPARTURES = (
    Departure("all-ignored-mean-gradient", ("torch", "jax"), "cross_entropy", "vjp",
              "the gradient of a mean over zero total weight (all targets ignored) is 0, not NaN",
              _all_ignored_mean, "exactly 0", _is(0.0)),
    Departure("all-ignored-mean-gradient-linear", ("torch", "jax"), "linear_cross_entropy", "vjp",
              "linear_cross_entropy: the gradients (hidden, weight, bias) of a mean over zero total weight (every "
              "token ignored) are 0, not NaN (torch's composition and F.linear_cross_entropy's reference path; its "
              "chunked path gives NaN, as the reference does)", _linear_all_ignored_mean, "exactly 0", _is(0.0)),
    Departure("ignored-irregular-row-gradient", ("torch", "jax"), "cross_entropy", "vjp",
              "an ignored example whose logits are all -inf (or hold +inf or NaN) gets a NaN gradient: its zero "
              "cotangent meets the row's NaN log-softmax (0 * NaN), where the reference's is exactly 0",
              _ignored_irregular_rows, "NaN", _NAN),
    Departure("logsumexp-gradient-with-plus-inf", ("torch", "jax"), "logsumexp", "vjp",
              "in a row holding +inf the log-sum-exp gradient is 0 at the finite entries (NaN at +inf), "
              "where the reference's v * softmax(x) is NaN throughout",
              _plus_inf_rows, "0 at the finite and -inf entries, NaN at +inf",
              lambda got, x, kwargs, cotangent: np.where(_f64(x) == np.inf, np.isnan(_f64(got)), _f64(got) == 0)),
    Departure("zero-coefficient-minus-inf-logit", ("torch",), "cross_entropy", "value",
              "a zero factor (a probability, a weight, or 1 - eps at label smoothing 1) times a -inf "
              "log-probability gives NaN (0 * -inf), where the reference takes 0 log 0 = 0",
              _zero_times_minus_inf, "NaN", _NAN),
    *(Departure(f"float16-sum-overflow-{op}-{kind}", frameworks, op, kind,
                "a float16 defect of the framework on CPU: the row's sum of exp(x - max) is accumulated in "
                "float16 and overflows once it exceeds 65504 (rows of 65536 or more entries), so log_softmax, "
                "logsumexp and cross_entropy (and their gradients) give -inf/inf or a wrong gradient; under "
                "JAX softmax gives 0 (cf. pytorch/pytorch#158310)",
                _float16_sum_overflows(op), answer, expected)
      # what a row sum of +inf leaves: log s = inf, so p = exp(y) = 0 in every formula
      for op, kind, frameworks, answer, expected in (
          ("log_softmax", "value", ("torch", "jax"), "-inf", _is(-np.inf)),
          ("log_softmax", "vjp", ("torch", "jax"), "the cotangent itself (v - p S with p taken as 0)", _the_cotangent),
          ("logsumexp", "value", ("torch", "jax"), "+inf", _is(np.inf)),
          ("logsumexp", "vjp", ("torch", "jax"), "0 (p taken as 0)", _is(0.0)),
          ("logsumexp", "hvp", ("torch", "jax"), "0 (p taken as 0; NaN under JAX)", _either_zero_or_nan),
          ("cross_entropy", "value", ("torch", "jax"), "+inf or NaN", _not_finite),
          ("cross_entropy", "vjp", ("torch", "jax"), "-r a, the gradient with p taken as 0, or NaN", _ce_without_p),
          ("cross_entropy", "hvp", ("torch", "jax"), "0 (p taken as 0; NaN under JAX)", _either_zero_or_nan),
          ("softmax", "value", ("jax",), "0", _is(0.0)),
          ("softmax", "vjp", ("jax",), "0 (p taken as 0)", _is(0.0)))),
    Departure("float16-loss-sum-overflow", ("torch", "jax"), "cross_entropy", "value",
              "a float16 defect on CPU: cross_entropy sums in float16, so a class sum under label smoothing "
              "or the sum over examples of a mean returns inf once it exceeds 65504, though the result fits",
              _float16_loss_sums_overflow, "+inf", _is(np.inf)),
    Departure("float16-loss-sum-overflow-linear", ("torch",), "linear_cross_entropy", "value",
              "the float16 defect of torch's cross_entropy (a class sum under label smoothing, or the sum over "
              "tokens of a mean, overflows past 65504 though the result fits) in every torch LM head: the "
              "composition, and F.linear_cross_entropy's reference and chunked paths alike",
              _on_the_logits(_float16_loss_sums_overflow), "+inf", _is(np.inf)),
    Departure("focal-gradient-at-masked-target", ("torch",), "focal_loss", "vjp",
              "a target at a -inf logit: autograd through (1 - p_t)**gamma (gamma > 0) multiplies "
              "log p_t = -inf by the derivative's factor p_t = 0, and the gradient is NaN where the reference's "
              "is alpha_t (p - onehot) (0 log 0 = 0)", _focal_masked_target(lambda g: g > 0), "NaN", _NAN),
    Departure("focal-gradient-at-masked-target-any-gamma", ("jax",), "focal_loss", "vjp",
              "a target at a -inf logit: autograd through (1 - p_t)**gamma (gamma = 0 included: JAX's pow "
              "gradient gamma * x**(gamma - 1) is 0 * inf there) gives NaN where the reference's gradient is "
              "alpha_t (p - onehot) (0 log 0 = 0)", _focal_masked_target(lambda g: True), "NaN", _NAN),
    *(Departure(f"focal-zero-alpha-{kind}", ("torch", "jax"), "focal_loss", kind,
                "alpha_t = 0 at a -inf target logit, or in a row with a NaN softmax (all -inf, +inf or NaN): "
                "0 * inf or 0 * NaN = NaN, where the reference takes the example's loss and gradient as 0 (a zero "
                "coefficient contributes nothing, as in cross_entropy)", _focal_zero_alpha, "NaN", _NAN)
      for kind in ("value", "vjp")),
    Departure("focal-gradient-near-p-one", ("torch",), "focal_loss", "vjp",
              "0 < gamma < 1 and 1 - p_t below 2 eps of the dtype: autograd differentiates (1 - p_t)**gamma "
              "through (1 - p_t)**(gamma - 1), which is inf once 1 - p_t rounds to 0, and the gradient is NaN "
              "where the true one is finite and small", _focal_near_one(lambda g: 0 < g < 1), "NaN", _NAN),
    Departure("focal-gradient-near-p-one-any-gamma", ("jax",), "focal_loss", "vjp",
              "gamma < 1 (0 included) and 1 - p_t below 2 eps of the dtype: JAX's pow gradient "
              "gamma * (1 - p_t)**(gamma - 1) is inf or 0 * inf once 1 - p_t rounds to 0, and the gradient is "
              "NaN where the true one is finite and small", _focal_near_one(lambda g: g < 1), "NaN", _NAN),
    Departure("hinge-kink-subgradient-clamp", ("torch",), "multiclass_hinge_loss", "vjp",
              "at the kink (margin exactly met) clamp(min=0) passes the gradient: -1 at the target and 1/k at "
              "the k tied classes, where the reference takes the minimum-norm subgradient 0", _hinge_kink,
              "r (-1 at the target, 1/k at the k tied classes)", _hinge_kink_answer(lambda k: np.ones_like(k, float))),
    Departure("hinge-kink-subgradient-split", ("jax",), "multiclass_hinge_loss", "vjp",
              "at the kink (margin exactly met) the max over z_j + margin (1 - onehot_j) ties the target's own "
              "term with the k tied classes and splits the gradient evenly: -k/(k+1) at the target, 1/(k+1) "
              "at each tied class, where the reference takes the minimum-norm subgradient 0", _hinge_kink,
              "r (-k/(k+1) at the target, 1/(k+1) at the k tied classes)", _hinge_kink_answer(lambda k: k / (k + 1))),
    Departure("hinge-nan-row-gradient", ("torch",), "multiclass_hinge_loss", "vjp",
              "where the slack is NaN (a NaN logit, or z_t and max_{j != t} z_j both -inf or +inf) the hinge "
              "gradient is 0 at some entries, where the reference's is NaN throughout the row", _nan_slack,
              "0 or NaN at each entry", lambda got, x, kwargs, cotangent: (_f64(got) == 0) | np.isnan(_f64(got))),
    Departure("hinge-nan-row-gradient-nan-skipping-max", ("jax",), "multiclass_hinge_loss", "vjp",
              "where the slack is NaN (a NaN logit, or z_t and max_{j != t} z_j both -inf or +inf) XLA's max on "
              "CPU skips the NaN, and the hinge gradient is that of the row without it (0 or +-r/k), or NaN, where "
              "the reference's is NaN throughout the row", _nan_slack,
              "0, NaN, or at most |r| (the gradient of the row without its NaN)", _within_row_scale),
    Departure("hinge-max-ignores-nan", ("jax",), "multiclass_hinge_loss", "value",
              "XLA's max reduction on CPU skips NaN in float32 and float64: a row holding NaN gets a finite "
              "hinge loss, where the reference's is NaN",
              lambda x, kwargs, kind: _nan_rows(x, kwargs, kind) & (np.asarray(x).dtype.name in ("float32", "float64")),
              "a finite loss", lambda got, x, kwargs, cotangent: np.isfinite(_f64(got))),
    Departure("kl-div-zero-zero-nan", ("torch",), "kl_divergence", "value",
              "KL computed as xlogy(p, p) - p * log q (torch's F.kl_div(log q, p), optax's kl_divergence): where "
              "p_i = q_i = 0 that is 0 * -inf = NaN, where the reference takes 0 log 0 = 0", _distribution_entries(lambda p, q, d: (p == 0) & (q == 0)),
              "NaN", _NAN),
    Departure("kl-div-gradient-at-p-zero", ("torch",), "kl_divergence", "vjp",
              "KL's gradient with respect to p is NaN where p_i = 0 (torch's F.kl_div, optax's kl_divergence), "
              "where the reference's is -inf "
              "(q_i > 0: the slope of p log p at 0) or +inf (q_i = 0)", _distribution_entries(lambda p, q, d: p == 0),
              "NaN", _NAN),
    Departure("rel-entr-gradient-at-zeros", ("jax",), "kl_divergence", "vjp",
              "jax.scipy.special.rel_entr's gradient is 0 where p_i = 0 or q_i = 0, where the reference's is -inf "
              "(p_i = 0 < q_i: the slope of p log p at 0) or +inf (q_i = 0: the divergence is +inf for any p_i > 0)",
              _distribution_entries(lambda p, q, d: (p == 0) | (q == 0)), "exactly 0", _is(0.0)),
    Departure("xlogy-gradient-at-zero-zero", ("torch",), "distribution_cross_entropy", "vjp",
              "torch.special.xlogy's gradient with respect to p is 0 where p_i = q_i = 0, where the "
              "reference's -log q_i is +inf", _distribution_entries(lambda p, q, d: (p == 0) & (q == 0)),
              "exactly 0", _is(0.0)),
    *(Departure(f"zero-cotangent-times-infinite-slope-{op}", frameworks, op, "vjp",
                "where the derivative is infinite (p_i = 0 for entropy and KL, q_i = 0 for KL and H(p, q)) a "
                "zero cotangent (or, under JAX, a subnormal one, flushed to 0) gives 0 * inf = NaN, where the "
                "reference's vjp, linear in the cotangent, is 0 (v * inf for a nonzero v)",
                _distribution_entries(select), "NaN", _NAN, _zero_cotangent(_distribution_entries(select)))
      for op, frameworks, select in (
          ("entropy", ("torch", "jax"), lambda p, q, d: p == 0),
          ("kl_divergence", ("torch", "jax"), lambda p, q, d: (p == 0) | (q == 0)),
          ("distribution_cross_entropy", ("jax",), lambda p, q, d: q == 0))),
    *(Departure(f"subnormal-probabilities-flushed-{op}-{kind}", ("jax",), op, kind,
                "XLA on CPU flushes subnormal inputs to 0 (bfloat16, float32, float64): a subnormal p_i or "
                "q_i has log = -inf, so a log-gradient is inf, NaN or (where the gradient at 0 is taken as 0) 0, "
                "and a divergence or cross-entropy +inf, or finite where the flushed p_i meets q_i = 0",
                _distribution_entries(_subnormal), *(("inf, NaN, or the value with the subnormal entries as 0",
                                                      _flushed_answer(op)) if kind == "value" else (
                    "inf, NaN or 0 (its answer where the entry is 0)",
                    lambda got, x, kwargs, cotangent: _not_finite(got, x, kwargs, cotangent) | (_f64(got) == 0))))
      for op, record in OPS.items() if record.family == "distribution" for kind in ("value", "vjp")),
)


NAMES = tuple(dict.fromkeys(d.key for d in DEPARTURES))
assert len(NAMES) == len(DEPARTURES), "a departure's name is unique"


def declared(backend) -> frozenset:
    """The names of the departures `backend` has: those it declares (`departures`) and its framework's set.
    Raises ValueError for a name not in the documented list."""
    names = getattr(backend, "departures", None) or ()
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"departures: a tuple of departure names; got {names!r}")
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise ValueError(f"departures: unknown departure {', '.join(map(repr, unknown))}; the documented ones are "
                         f"{', '.join(NAMES)} (`xentcheck departures` describes each)")
    framework = getattr(backend, "framework", None)
    return frozenset(names) | {d.key for d in DEPARTURES if framework in d.frameworks}


def applicable(declared: frozenset, op: str, kind: str, x, kwargs, out_shape: tuple, cotangent=None) -> list:
    """[(departure, mask, the call's keyword arguments)] for verdict.judge; `kwargs` may be a tuple of the
    keyword arguments of the calls compared."""
    return [(d, hit, kw) for kw in (kwargs if isinstance(kwargs, tuple) else (kwargs,))
            for d, hit in departures(declared, op, kind, x, kw, out_shape, cotangent)]


def departures(declared: frozenset, op: str, kind: str, x, kwargs: dict, out_shape: tuple, cotangent=None):
    """[(departure, mask of the output elements it covers)] for the `declared` departures that apply."""
    found = []
    for d in DEPARTURES:
        if not d.applies_to(declared, op, kind):
            continue
        if d.by_cotangent is not None and cotangent is not None:
            hit = d.by_cotangent(np.asarray(x), kwargs, kind, np.asarray(cotangent))
        else:
            hit = d.affected(np.asarray(x), kwargs, kind)
        hit = np.broadcast_to(hit, out_shape)
        if hit.any():
            found.append((d, hit))
    return found
