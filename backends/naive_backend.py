"""The naive backend: the textbook softmax exp(x) / sum exp(x), without the max shift.

Everything else is the reference. `xentcheck check --backend naive` shows what the suite catches: the
exp overflows as soon as a logit passes the dtype's exp threshold and the probabilities become NaN.
"""
from __future__ import annotations

import numpy as np

from ..reference import validation, softmax_naive
from .numpy_backend import NumpyBackend


class NaiveBackend(NumpyBackend):
    name = "naive"

    def softmax(self, x, axis=-1, temperature=1.0):
        x = validation.as_float_array(x, "x")
        tau = validation.check_temperature(temperature)
        z = np.moveaxis(x, axis, -1) / np.asarray(tau, dtype=x.dtype)
        return np.moveaxis(softmax_naive(z), -1, axis)

    def vjp(self, op, x, cotangent, **kwargs):
        if op != "softmax":
            return super().vjp(op, x, cotangent, **kwargs)
        tau = kwargs.get("temperature", 1.0)
        axis = kwargs.get("axis", -1)
        p = self.softmax(x, axis=axis, temperature=tau)
        v = np.asarray(cotangent, dtype=p.dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            return (p * (v - (p * v).sum(axis=axis, keepdims=True)) / np.asarray(tau, dtype=p.dtype)).astype(p.dtype)
