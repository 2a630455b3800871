"""Keras 3: keras.ops and keras.losses as a Keras user calls them, on the JAX backend (KERAS_BACKEND=jax, set
here when unset), differentiated by jax.vjp and jax.jvp, each op jitted per dtype and shape.

The row ops are keras.ops.softmax, log_softmax and logsumexp (for tau != 1 on (x - max x)/tau, the max held
constant). Cross-entropy is keras.losses.sparse_categorical_crossentropy(from_logits=True, ignore_class=...)
per example for class indices, categorical_crossentropy(from_logits=True, label_smoothing=...) on the
one-hot (or probability) targets under smoothing, then reduced as a Keras user reduces a functional loss:
the mean over the examples not ignored, class weights taken at the target; weights with smoothing or with
probability targets are declined. The loss family: categorical_focal_crossentropy(alpha=1 or a scalar,
from_logits=True), categorical_hinge (margin 1) and kl_divergence; MSE, entropy and H(p, q) have no Keras
form and are declined.

What `xentcheck check --backend keras --dtypes float32` finds (Keras 3.15.1 on JAX 0.10.2, CPU):
  * sparse_categorical_crossentropy returns float64 for float32 logits once jax_enable_x64 is on (which the
    float64 checks need); categorical_crossentropy keeps float32;
  * categorical_focal_crossentropy clips p to [1e-7, 1 - 1e-7]: a confidently wrong example (p_t = e^-51)
    costs 4.03 instead of 51.25, and its gradient is 0;
  * categorical_hinge takes max((1 - y) * z) as the best other score, which is 0 at the target's own entry:
    with every other score below 0 (or one class) the loss is wrong (1, not 0, for one class) and a -inf
    target logit gives NaN;
  * kl_divergence clips p and q to [1e-7, 1]: errors of tens of ulps, and a gradient of 0 where p_i = 0.
The row ops, their vjps and jvps, and categorical cross-entropy pass.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from ..reference import validation
from .contract import Backend, BackendUnavailable
from .jax_backend import jvp_of, vjp_of

ROW_OPS = ("softmax", "log_softmax", "logsumexp")


class KerasBackend(Backend):
    name = "keras"
    framework = "jax"  # Keras on JAX: XLA's own departures (flushing, native half precision) are JAX's
    compute_formats = {"float16": "float16", "bfloat16": "bfloat16"}  # XLA on CPU, as the jax backend

    def __init__(self):
        os.environ.setdefault("KERAS_BACKEND", "jax")
        import jax
        import keras

        if keras.backend.backend() != "jax":
            raise BackendUnavailable(f"keras: runs on Keras's JAX backend; this process has {keras.backend.backend()}"
                                     " (set KERAS_BACKEND=jax before Keras is imported)")
        jax.config.update("jax_enable_x64", True)
        self.jax = jax
        self.note = f"Keras {keras.__version__} ops and losses on JAX {jax.__version__}, jitted, x64 enabled"

    def evaluate(self, op, x, **kwargs):
        return self._run(op, "value", x, None, kwargs)

    def vjp(self, op, x, cotangent, **kwargs):
        return self._run(op, "vjp", x, cotangent, kwargs)

    def jvp(self, op, x, tangent, **kwargs):
        if op not in ROW_OPS + ("cross_entropy",):
            raise NotImplementedError(f"keras: no jvp of {op}")
        return self._run(op, "jvp", x, tangent, kwargs)

    def _run(self, op, kind, x, direction, kwargs):
        """The op as a function of x and its array arguments (static: the other options), jitted per kind."""
        arrays = {k: np.asarray(v) for k, v in kwargs.items()
                  if k in ("target", "q") or (k in ("weight", "alpha") and v is not None and np.ndim(v) > 0)}
        static = tuple(sorted((k, v.item() if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()
                              if k not in arrays))
        if op == "cross_entropy" and kwargs.get("weight") is not None and (
                kwargs.get("label_smoothing") or np.asarray(kwargs["target"]).dtype.kind not in "iu"):
            raise NotImplementedError("keras: class weights with label smoothing or probability targets")
        if op == "multiclass_hinge_loss" and kwargs.get("margin", 1.0) != 1.0:
            raise NotImplementedError("keras: categorical_hinge has margin 1 only")
        if op == "focal_loss" and "alpha" in arrays:
            raise NotImplementedError("keras: categorical_focal_crossentropy takes one alpha for every class")
        if op not in _LOSSES and op not in ROW_OPS:
            raise NotImplementedError(f"keras: no {op}")
        args = [np.asarray(x)] + list(arrays.values()) + ([np.asarray(direction)] if direction is not None else [])
        return np.asarray(_program(op, kind, tuple(arrays), static)(*args))


@functools.lru_cache(maxsize=None)
def _program(op, kind, array_names, static):
    import jax

    options = dict(static)

    def f(x, *arrays):
        return (_rows if op in ROW_OPS else _LOSSES[op])(op, x, **dict(zip(array_names, arrays)), **options)

    return jax.jit({"value": f, "vjp": vjp_of(f), "jvp": jvp_of(f)}[kind])


def _rows(op, x, axis=-1, temperature=1.0):
    import jax
    from keras import ops

    tau = validation.check_temperature(temperature)
    if op == "logsumexp":
        return ops.logsumexp(x, axis=axis)
    if tau != 1.0:
        x = (x - jax.lax.stop_gradient(ops.max(x, axis=axis, keepdims=True))) / ops.cast(tau, x.dtype)
    return getattr(ops, op)(x, axis=axis)


def _reduce(losses, reduction, count=None):
    from keras import ops

    if reduction == "none":
        return losses
    total = ops.sum(losses)
    return total if reduction == "sum" else total / (ops.cast(losses.size, losses.dtype) if count is None else count)


def _cross_entropy(op, x, target, reduction="mean", weight=None, ignore_index=-100, label_smoothing=0.0):
    import keras
    from keras import ops

    if not np.issubdtype(target.dtype, np.integer):
        return _reduce(keras.losses.categorical_crossentropy(ops.cast(target, x.dtype), x, from_logits=True,
                                                             label_smoothing=label_smoothing), reduction)
    valid = target != ignore_index
    safe = ops.where(valid, target, 0)
    if label_smoothing:
        losses = keras.losses.categorical_crossentropy(ops.one_hot(safe, x.shape[-1], dtype=x.dtype), x,
                                                       from_logits=True, label_smoothing=label_smoothing)
    else:
        losses = keras.losses.sparse_categorical_crossentropy(target, x, from_logits=True, ignore_class=ignore_index)
    w = ops.ones((x.shape[-1],), x.dtype) if weight is None else ops.cast(weight, x.dtype)
    w_target = ops.where(valid, ops.take(w, safe), ops.zeros((), x.dtype))
    return _reduce(ops.where(valid, w_target * losses, ops.zeros((), x.dtype)), reduction, ops.sum(w_target))


def _focal(op, x, target, gamma=2.0, alpha=None, reduction="mean"):
    import keras
    from keras import ops

    losses = keras.losses.categorical_focal_crossentropy(
        ops.one_hot(target, x.shape[-1], dtype=x.dtype), x, alpha=1.0 if alpha is None else float(alpha),
        gamma=gamma, from_logits=True)
    return _reduce(losses, reduction)


def _hinge(op, x, target, margin=1.0, reduction="mean"):
    import keras
    from keras import ops

    return _reduce(keras.losses.categorical_hinge(ops.one_hot(target, x.shape[-1], dtype=x.dtype), x), reduction)


def _kl(op, p, q):
    import keras

    return keras.losses.kl_divergence(p, q)


_LOSSES = {"cross_entropy": _cross_entropy, "focal_loss": _focal, "multiclass_hinge_loss": _hinge,
           "kl_divergence": _kl}
