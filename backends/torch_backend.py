"""The PyTorch backend: forward by torch, vjp by torch.autograd.

torch's behaviour passes through unchanged, including where it departs from the reference:
  * all targets ignored under "mean": the loss is NaN (as in the reference) but the gradient is 0,
    not NaN;
  * probability targets with a -inf logit: NaN (0 * -inf), where the reference takes 0 log 0 = 0;
  * an out-of-range or negative target raises IndexError, not ValueError.
torch has no temperature argument: for tau != 1 the adapter computes softmax((x - max x)/tau) with the
max detached, the stable form DESIGN.md asks for, written in torch.
"""
from __future__ import annotations

import numpy as np

from ..reference import _checks
from ..reference.dtypes import bfloat16


class TorchBackend:
    name = "torch"
    framework = "torch"  # xentcheck.semantics: torch's own departures are semantic differences

    def __init__(self, device: str = "cpu"):
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            from .contract import BackendUnavailable

            raise BackendUnavailable("torch-cuda: torch sees no CUDA device here")
        self.torch, self.device = torch, device
        if device != "cpu":
            self.name = f"torch-{device}"
        F = torch.nn.functional
        self._ops = {
            "softmax": lambda t, axis=-1, temperature=1.0: torch.softmax(self._scaled(t, axis, temperature), axis),
            "log_softmax": lambda t, axis=-1, temperature=1.0: torch.log_softmax(
                self._scaled(t, axis, temperature), axis),
            "logsumexp": lambda t, axis=-1: torch.logsumexp(t, axis),
            "cross_entropy": lambda t, target, reduction="mean", weight=None, ignore_index=-100,
            label_smoothing=0.0: F.cross_entropy(
                self._classes_second(t), self._target(target, t), weight=self._weight(weight, t),
                ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing),
        }

    # -- conversions ---------------------------------------------------------------------------
    def _in(self, array):
        a = np.asarray(array)
        if a.dtype == bfloat16:
            return self.torch.from_numpy(a.view(np.uint16).copy()).view(self.torch.bfloat16).to(self.device)
        return self.torch.from_numpy(np.array(a, copy=True)).to(self.device)

    def _out(self, tensor) -> np.ndarray:
        t = tensor.detach().cpu()
        if t.dtype == self.torch.bfloat16:
            return t.view(self.torch.uint16).numpy().view(bfloat16)
        return t.numpy()

    def _scaled(self, t, axis, temperature):
        tau = _checks.check_temperature(temperature)
        if tau == 1.0:
            return t
        return (t - t.amax(dim=axis, keepdim=True).detach()) / tau

    def _classes_second(self, t):
        return t.movedim(-1, 1) if t.ndim >= 2 else t

    def _target(self, target, logits):
        target = self._in(target)
        if target.is_floating_point():
            return self._classes_second(target.to(logits.dtype))
        return target.long()

    def _weight(self, weight, logits):
        return None if weight is None else self._in(weight).to(logits.dtype)

    # -- the contract ----------------------------------------------------------------------------
    def softmax(self, x, axis=-1, temperature=1.0):
        return self._out(self._ops["softmax"](self._in(x), axis, temperature))

    def log_softmax(self, x, axis=-1, temperature=1.0):
        return self._out(self._ops["log_softmax"](self._in(x), axis, temperature))

    def logsumexp(self, x, axis=-1):
        return self._out(self._ops["logsumexp"](self._in(x), axis))

    def cross_entropy(self, logits, target, reduction="mean", weight=None, ignore_index=-100,
                      label_smoothing=0.0):
        return self._out(self._ops["cross_entropy"](self._in(logits), target, reduction, weight,
                                                    ignore_index, label_smoothing))

    def vjp(self, op, x, cotangent, **kwargs):
        t = self._in(x).requires_grad_(True)
        out = self._ops[op](t, **kwargs)
        (grad,) = self.torch.autograd.grad(out, t, self._in(cotangent).to(out.dtype), allow_unused=True)
        return self._out(self.torch.zeros_like(t) if grad is None else grad)

    def hvp(self, op, x, cotangent, tangent, **kwargs):
        """d/dx <vjp(op, x, cotangent), tangent>: a Hessian-vector product by double backward."""
        t = self._in(x).requires_grad_(True)
        out = self._ops[op](t, **kwargs)
        (grad,) = self.torch.autograd.grad(out, t, self._in(cotangent).to(out.dtype), create_graph=True)
        (second,) = self.torch.autograd.grad(grad, t, self._in(tangent).to(t.dtype))
        return self._out(second)
