"""The JAX backend: forward in jax.nn / jax.numpy, vjp by jax.vjp, everything jitted, float64 enabled.

JAX has no cross-entropy of its own; the adapter writes DESIGN.md's semantics in jax.numpy, the way a
JAX user would (log_softmax, a gather of the target, where() for 0 log 0). What JAX itself decides
passes through unchanged, and departs from the reference here:
  * an out-of-range target is not an error: take_along_axis fills NaN, a negative one wraps around;
  * XLA on CPU flushes subnormal results to zero (flushes_subnormals = True).
Loading this backend turns on jax_enable_x64 for the whole process (float64 is checked too).
"""
from __future__ import annotations

import numpy as np

from ..reference import _checks


class JaxBackend:
    name = "jax"
    flushes_subnormals = True

    def __init__(self, platform: str = "cpu"):
        import jax

        jax.config.update("jax_enable_x64", True)
        try:
            self.device = jax.devices(platform)[0]
        except RuntimeError as error:
            from .contract import BackendUnavailable

            raise BackendUnavailable(f"jax-{platform}: no {platform} device ({error})") from None
        if platform != "cpu":
            self.name, self.flushes_subnormals = f"jax-{platform}", False
        self.jax = jax
        self._ops = _jax_ops(jax)
        self._forward = jax.jit(self._apply, static_argnames=("op", "static"))
        self._vjp = jax.jit(self._apply_vjp, static_argnames=("op", "static"))
        self._hvp = jax.jit(self._apply_hvp, static_argnames=("op", "static"))

    # Options that change the program (axis, reduction, ...) are static; arrays and numbers are traced.
    def _split(self, op, kwargs):
        if op in ("softmax", "log_softmax"):
            tau = _checks.check_temperature(kwargs.pop("temperature", 1.0))
            kwargs["scaled"] = tau != 1.0
            return tuple(sorted(kwargs.items())), {"temperature": tau}
        if op == "cross_entropy":
            arrays = {"target": kwargs.pop("target"), "weight": kwargs.pop("weight", None),
                      "label_smoothing": kwargs.pop("label_smoothing", 0.0)}
            return tuple(sorted(kwargs.items())), arrays
        return tuple(sorted(kwargs.items())), {}

    def _apply(self, x, traced, op, static):
        return self._ops[op](x, **traced, **dict(static))

    def _apply_vjp(self, x, cotangent, traced, op, static):
        out, pullback = self.jax.vjp(lambda t: self._apply(t, traced, op, static), x)
        return pullback(cotangent.astype(out.dtype))[0]

    def _apply_hvp(self, x, cotangent, tangent, traced, op, static):
        grad = lambda t: self._apply_vjp(t, cotangent, traced, op, static)  # noqa: E731
        return self.jax.jvp(grad, (x,), (tangent.astype(x.dtype),))[1]

    def _run(self, fn, op, x, *arrays, **kwargs):
        static, traced = self._split(op, dict(kwargs))
        with self.jax.default_device(self.device):
            return np.asarray(fn(np.asarray(x), *map(np.asarray, arrays), traced, op=op, static=static))

    # -- the contract ----------------------------------------------------------------------------
    def softmax(self, x, axis=-1, temperature=1.0):
        return self._run(self._forward, "softmax", x, axis=axis, temperature=temperature)

    def log_softmax(self, x, axis=-1, temperature=1.0):
        return self._run(self._forward, "log_softmax", x, axis=axis, temperature=temperature)

    def logsumexp(self, x, axis=-1):
        return self._run(self._forward, "logsumexp", x, axis=axis)

    def cross_entropy(self, logits, target, reduction="mean", weight=None, ignore_index=-100,
                      label_smoothing=0.0):
        return self._run(self._forward, "cross_entropy", logits, target=target, reduction=reduction,
                         weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing)

    def vjp(self, op, x, cotangent, **kwargs):
        return self._run(self._vjp, op, x, cotangent, **kwargs)

    def hvp(self, op, x, cotangent, tangent, **kwargs):
        """d/dx <vjp(op, x, cotangent), tangent> by forward-over-reverse (jax.jvp of jax.vjp)."""
        return self._run(self._hvp, op, x, cotangent, tangent, **kwargs)


def _jax_ops(jax):
    jnp, lax = jax.numpy, jax.lax

    def scaled_input(x, axis, temperature, scaled):
        """(x - max x)/tau with the max held constant under differentiation (softmax ignores it)."""
        if not scaled:
            return x
        return (x - lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))) / temperature.astype(x.dtype)

    def softmax(x, axis=-1, temperature=1.0, scaled=False):
        return jax.nn.softmax(scaled_input(x, axis, temperature, scaled), axis=axis)

    def log_softmax(x, axis=-1, temperature=1.0, scaled=False):
        return jax.nn.log_softmax(scaled_input(x, axis, temperature, scaled), axis=axis)

    def logsumexp(x, axis=-1):
        return jax.nn.logsumexp(x, axis=axis)

    def cross_entropy(logits, target, weight=None, label_smoothing=0.0, reduction="mean", ignore_index=-100):
        n_classes = logits.shape[-1]
        logp = jax.nn.log_softmax(logits, axis=-1)
        w = jnp.ones(n_classes, logits.dtype) if weight is None else weight.astype(logits.dtype)
        eps = jnp.asarray(label_smoothing, logits.dtype)
        if jnp.issubdtype(target.dtype, jnp.integer):
            valid = target != ignore_index
            safe = jnp.where(valid, target, 0)
            w_target = jnp.where(valid, w[safe], 0)
            picked = -jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
            spread = -jnp.where(w > 0, w * logp, 0).sum(-1)
            losses = jnp.where(w_target > 0, (1 - eps) * w_target * picked, 0) + jnp.where(
                valid, eps / n_classes * spread, 0)
            denominator = w_target.sum()
        else:
            coef = w * ((1 - eps) * target.astype(logits.dtype) + eps / n_classes)
            losses = -jnp.where(coef > 0, coef * logp, 0).sum(-1)
            denominator = jnp.asarray(losses.size, logits.dtype)
        if reduction == "none":
            return losses
        if reduction == "sum":
            return losses.sum()
        return jnp.where(denominator > 0, losses.sum() / denominator, jnp.nan)

    return {"softmax": softmax, "log_softmax": log_softmax, "logsumexp": logsumexp,
            "cross_entropy": cross_entropy}
