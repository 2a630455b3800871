"""The NumPy backend: the reference itself, its vjp from the analytic formulas."""
from __future__ import annotations

from .. import reference
from ..reference import cross_entropy, log_softmax, logsumexp, softmax, vjp


class NumpyBackend:
    name = "numpy"

    def softmax(self, x, axis=-1, temperature=1.0):
        return softmax(x, axis=axis, temperature=temperature)

    def log_softmax(self, x, axis=-1, temperature=1.0):
        return log_softmax(x, axis=axis, temperature=temperature)

    def logsumexp(self, x, axis=-1):
        return logsumexp(x, axis=axis)

    def cross_entropy(self, logits, target, reduction="mean", weight=None, ignore_index=-100,
                      label_smoothing=0.0):
        return cross_entropy(logits, target, reduction=reduction, weight=weight,
                             ignore_index=ignore_index, label_smoothing=label_smoothing)

    def vjp(self, op, x, cotangent, **kwargs):
        return vjp(op, x, cotangent, **kwargs)

    # -- the loss family (optional members of the contract) ---------------------------------------
    def focal_loss(self, logits, target, gamma=2.0, alpha=None, reduction="mean"):
        return reference.focal_loss(logits, target, gamma=gamma, alpha=alpha, reduction=reduction)

    def mse_loss(self, logits, target, form="full", reduction="mean"):
        return reference.mse_loss(logits, target, form=form, reduction=reduction)

    def multiclass_hinge_loss(self, logits, target, margin=1.0, reduction="mean"):
        return reference.multiclass_hinge_loss(logits, target, margin=margin, reduction=reduction)

    def entropy(self, p):
        return reference.entropy(p)

    def kl_divergence(self, p, q):
        return reference.kl_divergence(p, q)

    def distribution_cross_entropy(self, p, q):
        return reference.distribution_cross_entropy(p, q)
