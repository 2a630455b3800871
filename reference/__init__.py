"""The NumPy reference: the ground truth every backend is checked against.

Ops (float16, bfloat16, float32, float64; dtype-preserving; validated input):
softmax, log_softmax, logsumexp, cross_entropy, vjp, cross_entropy_value_and_grad; the loss family
(losses.py): focal_loss, mse_loss, multiclass_hinge_loss, entropy, kl_divergence,
distribution_cross_entropy, whose vjps `vjp` covers too.
The notebook's functions: softmax, softmax_stable, cross_entropy_loss, softmax_cross_entropy_grad,
batch_cross_entropy_loss, and softmax_naive (wrong on purpose). The exact oracle is
`xentcheck.reference.exact`. Temperature scaling, ECE and reliability diagrams are
`xentcheck.reference.calibration`.
"""
from .dtypes import DTYPE_NAMES, FORMATS, bfloat16, format_of, round_to_dtype
from . import validation
from .notebook import (batch_cross_entropy_loss, cross_entropy_loss, softmax_cross_entropy_grad,
                       softmax_naive, softmax_stable)
from .losses import (distribution_cross_entropy, distribution_cross_entropy_vjp, entropy, entropy_vjp, focal_loss,
                     focal_loss_vjp, kl_divergence, kl_divergence_vjp, mse_loss, mse_loss_vjp, multiclass_hinge_loss,
                     multiclass_hinge_loss_vjp)
from .ops import (cross_entropy, cross_entropy_jvp, cross_entropy_value_and_grad, cross_entropy_vjp, log_softmax,
                  log_softmax_jvp, log_softmax_vjp, logsumexp, logsumexp_jvp, logsumexp_vjp, softmax, softmax_jvp,
                  softmax_vjp)


def vjp(op, x, cotangent, **kwargs):
    """The vector-Jacobian product d<cotangent, op(x, **kwargs)>/dx from the analytic formulas: this package's
    `<op>_vjp` (softmax_vjp ... distribution_cross_entropy_vjp); the result has x's shape and dtype."""
    return validation.vjp_function(op, kwargs, globals())(x, cotangent, **kwargs)


def jvp(op, x, tangent, **kwargs):
    """The Jacobian-vector product J t of op at x (forward mode) from the analytic formulas: this package's
    `<op>_jvp` (softmax, log_softmax, logsumexp, cross_entropy); the result has op's output shape and x's dtype."""
    return validation.vjp_function(op, kwargs, globals(), "_jvp")(x, tangent, **kwargs)


__all__ = [
    "DTYPE_NAMES", "FORMATS", "bfloat16", "batch_cross_entropy_loss", "cross_entropy", "cross_entropy_loss",
    "cross_entropy_jvp", "cross_entropy_value_and_grad", "cross_entropy_vjp", "jvp", "log_softmax_jvp",
    "logsumexp_jvp", "softmax_jvp", "distribution_cross_entropy",
    "distribution_cross_entropy_vjp", "entropy", "entropy_vjp", "focal_loss", "focal_loss_vjp", "format_of",
    "kl_divergence", "kl_divergence_vjp", "log_softmax", "log_softmax_vjp", "logsumexp", "logsumexp_vjp",
    "mse_loss", "mse_loss_vjp", "multiclass_hinge_loss", "multiclass_hinge_loss_vjp", "round_to_dtype", "softmax",
    "softmax_cross_entropy_grad", "softmax_naive", "softmax_stable", "softmax_vjp", "validation", "vjp",
]
