"""The losses on logits of the loss family: focal, MSE on probabilities and multiclass hinge.

Focal: gamma = 0 is cross-entropy (alpha as class weights); 0 <= focal <= cross-entropy for alpha <= 1.
MSE: the full form lies between C/(C-1) and 2 times the target form (Cauchy-Schwarz on the other classes'
p_c, which sum to 1 - p_t), and in [0, 2]. Hinge: exactly 0, with a gradient exactly 0, where the margin
holds by more than the slack's rounding; at the kink (the margin exactly met) the gradient is the
minimum-norm subgradient 0 (torch and JAX pick others: semantic differences); classes tied for the max get
exactly equal gradients. Each side of each comparison is within its derived bound (xentcheck.bounds).
"""
import dataclasses

import numpy as np
from hypothesis import assume

from .. import bounds
from ..records import OPS
from ..reference import round_to_dtype
from ..reference.losses import hinge_parts, IndexLossProblem
from ._common import native
from ._harness import property_of

FOCAL, MSE, HINGE = "focal_loss", "mse_loss", "multiclass_hinge_loss"


def _loss(h, op, case, dtype, **changes):
    x, kwargs = h.inputs(dataclasses.replace(case, **changes) if changes else case, dtype, op)
    return x, kwargs, h.call(op, x, kwargs).astype(np.float64)


def _finite_rows(x):
    return np.isfinite(x.astype(np.float64)).all(axis=-1)


# -- focal ------------------------------------------------------------------------------------------

@property_of(FOCAL)
def test_gamma_zero_is_cross_entropy(h, dtype, case):
    """focal(gamma=0, alpha) == cross_entropy(weight=alpha); a mean with alpha is compared as a sum
    (cross-entropy's weighted mean divides by the summed weights, focal's by N)."""
    reduction = "sum" if case.alpha is not None and case.reduction == "mean" else case.reduction
    x, kwargs, focal = _loss(h, FOCAL, case, dtype, gamma=0.0, reduction=reduction)
    alpha = kwargs.get("alpha")
    ce_kwargs = {"target": kwargs["target"], "reduction": reduction}
    if alpha is not None:
        ce_kwargs["weight"] = np.broadcast_to(np.asarray(alpha, dtype=x.dtype), (x.shape[-1],)).copy()
    ce = h.call("cross_entropy", x, ce_kwargs).astype(np.float64)
    tol = native(h, FOCAL, x, kwargs) + native(h, "cross_entropy", x, ce_kwargs)
    h.close(focal, ce, tol, "focal loss with gamma = 0 == cross-entropy weighted by alpha", check_dtype=False,
            op=FOCAL, kind="value", x=x, kwargs=kwargs, compares_calls=True)


@property_of(FOCAL)
def test_between_zero_and_cross_entropy(h, dtype, case):
    """0 <= -alpha_t (1 - p_t)^gamma log p_t <= -log p_t per example, for alpha <= 1 (the strategy's)."""
    x, kwargs, focal = _loss(h, FOCAL, case, dtype, reduction="none")
    ce_kwargs = {"target": kwargs["target"], "reduction": "none"}
    ce = h.call("cross_entropy", x, ce_kwargs).astype(np.float64)
    tol = native(h, FOCAL, x, kwargs) + native(h, "cross_entropy", x, ce_kwargs)
    with np.errstate(invalid="ignore"):
        ok = np.isnan(focal) | np.isnan(ce) | ((focal >= 0) & (focal <= ce + tol))
    h.holds(ok, f"0 <= focal <= cross-entropy (alpha <= 1): focal {focal.ravel()[:4]}, ce {ce.ravel()[:4]}",
            op=FOCAL, x=x, kwargs=kwargs)


# -- MSE --------------------------------------------------------------------------------------------

@property_of(MSE)
def test_full_form_between_c_over_c_minus_1_and_twice_the_target_form(h, dtype, case):
    """With r = 1 - p_t: full = r^2 + sum_{c != t} p_c^2, and r^2/(C-1) <= sum_{c != t} p_c^2 <= r^2, so
    target C/(C-1) <= full <= 2 target (C >= 2), and 0 <= full <= 2."""
    x, kwargs, full = _loss(h, MSE, case, dtype, reduction="none", form="full")
    _, target_kwargs, target = _loss(h, MSE, case, dtype, reduction="none", form="target")
    tol = native(h, MSE, x, kwargs) + 2 * native(h, MSE, x, target_kwargs)
    c = x.shape[-1]
    low = target * (c / (c - 1) if c > 1 else 1.0)
    rows = _finite_rows(x)
    ok = ~rows | ((low <= full + tol) & (full <= 2 * target + tol) & (full >= 0) & (full <= 2 + tol))
    h.holds(ok, f"C/(C-1) target <= full <= 2 target and 0 <= full <= 2: full {full.ravel()[:4]}, "
                f"target {target.ravel()[:4]}", op=MSE, x=x, kwargs=kwargs)


# -- hinge ------------------------------------------------------------------------------------------

def _slack(h, x, kwargs):
    """Per example: the exact slack margin - (z_t - m) (float64 of the dtype's values), its rounding bound,
    the classes tied for the max among j != t, and those within a rounding of it (bounds.hinge_slack)."""
    return bounds.hinge_slack(x, kwargs["target"], kwargs["margin"], **h.precision())


@property_of(HINGE)
def test_zero_where_the_margin_holds(h, dtype, case):
    """Where z_t - max_{j != t} z_j exceeds the margin by more than the slack's rounding, the loss and its
    gradient are exactly 0."""
    x, kwargs, loss = _loss(h, HINGE, case, dtype, reduction="none")
    problem, slack, err, _, _ = _slack(h, x, kwargs)
    holds = (slack < -err).reshape(problem.batch_shape)
    h.holds(~holds | (loss == 0), "the hinge loss is exactly 0 where the margin holds", op=HINGE, x=x, kwargs=kwargs,
            got=loss)
    v = OPS[HINGE].cotangent(case, dtype) if case.reduction == "none" else np.ones(problem.batch_shape, x.dtype)
    g = h.vjp(HINGE, x, v, kwargs).astype(np.float64).reshape(problem.logits.shape)
    ok = ~holds.reshape(-1)[:, None] | (g == 0)
    h.holds(ok.reshape(x.shape), "the hinge gradient is exactly 0 where the margin holds", op=HINGE, kind="vjp",
            x=x, kwargs=kwargs, got=g.reshape(x.shape))


@property_of(HINGE)
def test_kink_takes_the_zero_subgradient(h, dtype, case):
    """The target's logit set to max_{j != t} z_j + margin wherever that is exact in the dtype: the loss is
    0 and the gradient is the minimum-norm subgradient, 0 (the reference's documented convention)."""
    x, kwargs = h.inputs(dataclasses.replace(case, reduction="none"), dtype)
    problem = IndexLossProblem(x, kwargs["target"], "none")
    with np.errstate(invalid="ignore"):
        _, _, m = hinge_parts(problem, kwargs["margin"])
        kinked = problem.logits.copy()
        kinked[problem.rows, problem.target] = round_to_dtype(m + kwargs["margin"], dtype).astype(np.float64)
    x = round_to_dtype(kinked.reshape(x.shape), dtype)
    problem = IndexLossProblem(x, kwargs["target"], "none")
    with np.errstate(invalid="ignore"):
        slack, _, _ = hinge_parts(problem, kwargs["margin"])
    at_kink = (slack == 0) & np.isfinite(problem.logits).all(axis=-1)
    assume(at_kink.any())
    loss = h.call(HINGE, x, kwargs).astype(np.float64).reshape(-1)
    h.holds((~at_kink | (loss == 0)).reshape(problem.batch_shape), "the hinge loss is exactly 0 at the kink",
            op=HINGE, x=x, kwargs=kwargs, got=loss.reshape(problem.batch_shape))
    g = h.vjp(HINGE, x, np.ones(problem.batch_shape, x.dtype), kwargs).astype(np.float64)
    ok = ~at_kink[:, None] | (g.reshape(problem.logits.shape) == 0)
    h.holds(ok.reshape(x.shape), f"at the kink the hinge gradient is the minimum-norm subgradient 0: got "
            f"{g.reshape(problem.logits.shape)[at_kink][0]}", op=HINGE, kind="vjp", x=x, kwargs=kwargs)


@property_of(HINGE)
def test_tied_maxima_get_equal_gradients(h, dtype, case):
    """Where the slack is positive beyond its rounding, the classes tied for max_{j != t} z_j share the
    gradient exactly evenly, and every other non-target class gets exactly 0 (rows with classes within a
    rounding of the max, which a form adding the margin first may merge into the tie, are left out)."""
    x, kwargs = h.inputs(dataclasses.replace(case, reduction="none"), dtype)
    problem, slack, err, tied, near = _slack(h, x, kwargs)
    active = (slack > err) & np.isfinite(problem.logits).all(axis=-1) & ~near.any(axis=-1)
    assume(active.any())
    g = h.vjp(HINGE, x, np.ones(problem.batch_shape, x.dtype), kwargs).astype(np.float64)
    g = g.reshape(problem.logits.shape)
    first = np.take_along_axis(g, np.argmax(tied, axis=-1)[:, None], axis=-1)
    others = np.ones_like(tied)
    others[problem.rows, problem.target] = False
    ok = np.where(tied, g == first, ~others | (g == 0))
    h.holds((~active[:, None] | ok).reshape(x.shape), f"tied maxima share the hinge gradient exactly: "
            f"{g[active][:2]}", op=HINGE, kind="vjp", x=x, kwargs=kwargs)
