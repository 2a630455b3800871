"""optax: the cross-entropy JAX users call, as they call it (optax.losses, jax.nn for the row ops).

Cross-entropy is optax.losses.softmax_cross_entropy_with_integer_labels per example (class indices) or
optax.losses.softmax_cross_entropy (probabilities; label smoothing through optax.smooth_labels on the one-hot
targets), then reduced the way a JAX user writes it: ignored examples masked with where() and the mean
divided by the count of the rest, class weights taken at the target. Weights together with label smoothing
are declined (torch's weighted smoothing has no optax spelling). The hinge is
optax.losses.multiclass_hinge_loss (margin 1 only), KL optax.losses.kl_divergence(log q, p); focal loss,
MSE, entropy and H(p, q) have no optax form and are declined. The row ops and everything about XLA are the
jax backend's (unpadded: the caller's own shapes), and so are its departures; vjp by jax.vjp, jvp by jax.jvp.

What `xentcheck check --backend optax` finds (optax 0.2.8, JAX 0.10.2, CPU; every dtype unless said):
  * softmax_cross_entropy is NaN for a probability target with a -inf logit at a class whose target is 0
    (labels * log_softmax: 0 * -inf), where the reference takes 0 log 0 = 0; torch answers the same, and
    the adapter declares that departure by name (`departures`): a semantic difference, held to its answer;
  * kl_divergence is NaN where p_i = q_i = 0 (0 * (0 - log 0)), its gradient NaN where p_i = 0 (declared
    likewise: torch's F.kl_div answers the same);
  * multiclass_hinge_loss returns float64 for float16, bfloat16 and float32 scores once jax_enable_x64 is on
    (its one-hot is built in the default float type); the hinge's exact-zero properties fail along with it.
The row ops and cross-entropy with class indices pass, value, vjp and jvp.
"""
from __future__ import annotations

import functools

import numpy as np

from ..reference import validation
from .jax_backend import JaxBackend, jvp_of, vjp_of


class OptaxBackend(JaxBackend):
    name = "optax"
    # besides JAX's own (framework "jax", inherited): what optax's formulas give where a zero meets a -inf log
    departures = ("zero-coefficient-minus-inf-logit", "kl-div-zero-zero-nan", "kl-div-gradient-at-p-zero")

    def __init__(self):
        super().__init__(buckets=False)
        import optax

        self.name = "optax"
        self.note = f"optax {optax.__version__} losses on jax.jit, XLA on the caller's shapes"
        self._by_family.update(cross_entropy=self._optax_ce, index_loss=self._optax_loss,
                               distribution=self._optax_distribution)

    def _optax_ce(self, op, logits, cotangent, target, reduction="mean", weight=None, ignore_index=-100,
                  label_smoothing=0.0, tangent=None, forward=None):
        logits, target = np.asarray(logits), np.asarray(target)
        probabilities = target.dtype.kind not in "iu"
        if tangent is not None or (weight is not None and (label_smoothing or probabilities)):
            raise NotImplementedError(f"{self.name}: no {'hvp' if tangent is not None else 'weighted smoothing'} "
                                      "in optax")
        reduction = validation.check_reduction(reduction)
        w = np.ones(logits.shape[-1], logits.dtype) if weight is None else np.asarray(weight)
        static = {"reduction": reduction, "probabilities": probabilities, "smoothed": bool(label_smoothing)}
        args = (logits, target, w, np.asarray(label_smoothing, np.float64), np.asarray(ignore_index, target.dtype))
        if forward is not None:
            return self._call_fn(_ce_jvp, args + (np.asarray(forward),), static)
        if cotangent is None:
            return self._call_fn(_ce, args, static)
        return self._call_fn(_ce_vjp, args + (np.asarray(cotangent),), static)

    def _optax_loss(self, op, logits, cotangent, target, reduction="mean", margin=1.0, **options):
        if op != "multiclass_hinge_loss" or margin != 1.0:
            raise NotImplementedError(f"{self.name}: optax has no {op} with these options")
        args = (np.asarray(logits), np.asarray(target))
        static = {"reduction": validation.check_reduction(reduction)}
        if cotangent is None:
            return self._call_fn(_hinge, args, static)
        return self._call_fn(_hinge_vjp, args + (np.asarray(cotangent),), static)

    def _optax_distribution(self, op, p, cotangent, q=None):
        if op != "kl_divergence":
            raise NotImplementedError(f"{self.name}: optax has no {op}")
        args = (np.asarray(p), np.asarray(q).astype(np.asarray(p).dtype))
        return self._call_fn(_kl, args, {}) if cotangent is None else self._call_fn(
            _kl_vjp, args + (np.asarray(cotangent),), {})

    def _call_fn(self, fn, args, static):
        with self.jax.default_device(self.device):
            return np.asarray(_jitted(fn, tuple(static))(*args, **static))


@functools.lru_cache(maxsize=None)
def _jitted(fn, static_names):
    import jax

    return jax.jit(fn, static_argnames=static_names)


def _reduce(losses, reduction, count=None):
    if reduction == "none":
        return losses
    total = losses.sum()
    return total if reduction == "sum" else total / (losses.size if count is None else count)


def _ce(logits, target, weight, smoothing, ignore_index, reduction, probabilities, smoothed):
    import jax
    import jax.numpy as jnp
    import optax

    if probabilities or smoothed:
        labels = target if probabilities else jax.nn.one_hot(target, logits.shape[-1], dtype=logits.dtype)
        labels = optax.smooth_labels(labels.astype(logits.dtype), smoothing.astype(logits.dtype))
        losses = optax.losses.softmax_cross_entropy(logits, labels)
        if probabilities:
            return _reduce(losses, reduction)
    else:
        losses = None
    valid = target != ignore_index
    safe = jnp.where(valid, target, 0)
    if losses is None:
        losses = optax.losses.softmax_cross_entropy_with_integer_labels(logits, safe)
    w = jnp.where(valid, weight.astype(logits.dtype)[safe], 0)
    return _reduce(jnp.where(valid, w * losses, 0), reduction, w.sum())


def _hinge(logits, target, reduction):
    import optax

    return _reduce(optax.losses.multiclass_hinge_loss(logits, target), reduction)


def _kl(p, q):
    import jax.numpy as jnp
    import optax

    return optax.losses.kl_divergence(jnp.log(q), p)


_ce_vjp, _hinge_vjp, _kl_vjp, _ce_jvp = vjp_of(_ce), vjp_of(_hinge), vjp_of(_kl), jvp_of(_ce)
