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
from .notebook import (batch_cross_entropy_loss, cross_entropy_loss, softmax_cross_entropy_grad,
                       softmax_naive, softmax_stable)
from .losses import (LOSS_OPS, distribution_cross_entropy, entropy, focal_loss, kl_divergence, mse_loss,
                     multiclass_hinge_loss, vjp)
from .ops import OPS, cross_entropy, cross_entropy_value_and_grad, log_softmax, logsumexp, softmax

__all__ = [
    "DTYPE_NAMES", "FORMATS", "LOSS_OPS", "OPS", "bfloat16", "batch_cross_entropy_loss", "cross_entropy",
    "cross_entropy_loss", "cross_entropy_value_and_grad", "distribution_cross_entropy", "entropy", "focal_loss",
    "format_of", "kl_divergence", "log_softmax", "logsumexp", "mse_loss", "multiclass_hinge_loss",
    "round_to_dtype", "softmax", "softmax_cross_entropy_grad", "softmax_naive", "softmax_stable", "vjp",
]
