"""The NumPy backend: the reference itself, its vjp from the analytic formulas."""
from __future__ import annotations

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
