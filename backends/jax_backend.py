"""The JAX backend: forward in jax.nn / jax.numpy, vjp by jax.vjp, everything jitted, float64 enabled.

JAX has no cross-entropy of its own; the adapter writes DESIGN.md's semantics in jax.numpy, the way a
JAX user would (log_softmax, a gather of the target, where() for 0 log 0). What JAX decides passes
through unchanged, and departs from the reference here:
  * an out-of-range target is not an error: take_along_axis fills NaN, a negative one wraps around;
  * the gradient of a mean over zero weight is 0 (where()'s gradient through the branch not taken);
  * XLA on CPU flushes subnormal results to zero (flushes_subnormals = True).
Loading this backend turns on jax_enable_x64 for the whole process (float64 is checked too).

The loss family, as a JAX user writes it: focal as -alpha_t (1 - exp(logp_t))**gamma logp_t, MSE on
jax.nn.softmax, the hinge as optax writes its multiclass hinge, max_j(z_j + margin (1 - onehot_j)) - z_t,
and entropy, KL and H(p, q) by jax.scipy.special's entr, rel_entr and xlogy. Where autograd departs
(xentcheck.semantics): (1 - p_t)**gamma is NaN at a -inf target logit and, for gamma < 1 (0 included),
where 1 - p_t rounds to 0; the hinge's max splits the gradient at the kink; rel_entr's gradient is 0 at
p_i = 0; subnormal probabilities are flushed to 0 (log p = -inf).

Compilation is reused: every op runs on a 2-D (rows, n) array with the op's axis last, padded to a
few bucketed shapes (rows with zeros, the axis with -inf, which changes no softmax, log-sum-exp or
cross-entropy result; padded examples are ignored and padded classes weigh 0), the jitted
functions are shared by every instance, one program serves every reduction of a loss (it returns the
per-example losses, their sum and their mean; its vjp takes the reduction's part, a broadcast and for
the mean a division, in the cotangent, as JAX differentiates sum() / W), and compiled programs are
kept on disk between runs (~/.cache/xentcheck/jax; XENTCHECK_JAX_CACHE=0 turns that off). Targets
outside [0, C) skip the padding so that JAX's own out-of-range behaviour is what is seen.
"""
from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np

from ..records import OPS
from ..reference import validation
from ..reference.dtypes import FORMATS
from .contract import Backend


def bucket(n: int) -> int:
    """The padded length of the op's axis: 1024 for every shorter row (one program serves them all,
    at microseconds of extra work), then powers of two and 1.5 times them (at most 1/3 wasted)."""
    if n <= 1024:
        return 1024
    power = 2 ** math.ceil(math.log2(n))
    return 3 * power // 4 if n <= 3 * power // 4 else power


def row_bucket(rows: int, n_bucket: int) -> int:
    """The padded number of rows: 128 at least for rows of up to 1024 entries, 8 at least beyond."""
    floor = 128 if n_bucket <= 1024 else 8
    return max(floor, 2 ** math.ceil(math.log2(max(rows, 1))))


class JaxBackend(Backend):
    name = "jax"
    framework = "jax"  # xentcheck.semantics: JAX's own departures are semantic differences
    flushes_subnormals = True
    # XLA on CPU rounds each operation's result of a float16 or bfloat16 computation into that format (its
    # bfloat16 softmax equals per-operation rounding in 99.4% of entries, and its float16 softmax exceeds the
    # float32-compute bound): both are computed natively there.
    compute_formats = {"float16": "float16", "bfloat16": "bfloat16"}

    def __init__(self, platform: str = "cpu", buckets: bool = True):
        """`buckets`: pad inputs to the bucketed shapes (compile reuse); False runs XLA on the caller's own
        shapes (one compilation per shape)."""
        import jax

        jax.config.update("jax_enable_x64", True)
        persistent_compile_cache(jax)
        try:
            self.device = jax.devices(platform)[0]
        except RuntimeError as error:
            from .contract import BackendUnavailable

            raise BackendUnavailable(f"jax-{platform}: no {platform} device ({error})") from None
        if platform != "cpu":
            self.name, self.flushes_subnormals, self.compute_formats = f"jax-{platform}", False, {}
        if not buckets:
            self.name += "-unpadded"
        self.jax, self.buckets = jax, buckets
        self._programs, self._captured = {**_programs(), **_head_programs()}, None
        self.note = f"XLA on {self.device.device_kind}, x64 enabled, jitted; " + (
            "inputs padded to shape buckets (compiled programs reused)" if buckets
            else "the caller's own shapes (one compilation per shape)")
        self._by_family = {"rows": self._rows, "cross_entropy": self._cross_entropy, "index_loss": self._loss,
                           "distribution": self._distribution, "linear": self._linear}

    # -- the contract: by the op record's family ---------------------------------------------------
    def evaluate(self, op, x, **kwargs):
        return self._family(op)(op, x, None, **kwargs)

    def vjp(self, op, x, cotangent, **kwargs):
        return self._family(op)(op, x, cotangent, **kwargs)

    def hvp(self, op, x, cotangent, tangent, **kwargs):
        """d/dx <vjp(op, x, cotangent), tangent> by forward-over-reverse (jax.jvp of jax.vjp)."""
        if OPS[op].hvp is None:
            raise NotImplementedError(f"{self.name}: no hvp of {op}")
        return self._family(op)(op, x, cotangent, tangent=tangent, **kwargs)

    def jvp(self, op, x, tangent, **kwargs):
        """J t by forward mode (jax.jvp of the op's program)."""
        if OPS[op].jvp is None or OPS[op].family not in ("rows", "cross_entropy"):
            raise NotImplementedError(f"{self.name}: no jvp of {op}")
        return self._family(op)(op, x, None, forward=tangent, **kwargs)

    def prepare(self, op, kind, x, cotangent=None, **kwargs):
        """The op's one jitted program on its (padded) inputs, placed on the device once; compiled here."""
        self._captured = []
        try:
            self.evaluate(op, x, **kwargs) if kind == "value" else self.vjp(op, x, cotangent, **kwargs)
            [(program, args, static)] = self._captured
        finally:
            self._captured = None
        run = functools.partial(self._programs[program], **static)
        args = [self.jax.device_put(a, self.device) for a in args]
        return lambda: self.jax.block_until_ready(run(*args))

    def _family(self, op):
        family = OPS[op].family if op in OPS else None
        if family not in self._by_family:
            raise NotImplementedError(f"{self.name}: no {op} in JAX")
        return self._by_family[family]

    def _shape(self, rows: int, n: int) -> tuple:
        """The padded (rows, n) of a call: its bucket, or the caller's own with buckets off."""
        return (row_bucket(rows, bucket(n)), bucket(n)) if self.buckets else (max(rows, 1), n)

    # -- row ops: (..., n, ...) -> (rows, n) padded -----------------------------------------------
    def _rows(self, op, x, cotangent, axis=-1, temperature=1.0, tangent=None, forward=None):
        x = validation.as_float_array(x, "x")  # integer logits in float64 (padding them with -inf made them 0)
        tau = validation.check_temperature(temperature)
        axis = validation.check_axis(axis, x.ndim)
        moved = np.moveaxis(x, axis, -1)
        batch, n = moved.shape[:-1], moved.shape[-1]
        rows = math.prod(batch)
        shape = self._shape(rows, n)
        padded = _pad_logits(moved.reshape(rows, n), shape)
        scaled = tau != 1.0
        if forward is not None:
            t = _pad(np.moveaxis(np.asarray(forward), axis, -1).reshape(rows, n), shape, 0)
            out = self._call("rows_jvp", padded, tau, t, op=op, scaled=scaled)
        elif cotangent is None:
            out = self._call("rows_value", padded, tau, op=op, scaled=scaled)
        else:
            v = np.asarray(cotangent)
            reduced = v.shape != x.shape  # log-sum-exp's cotangent: one per row
            v = v.reshape(rows, 1) if reduced else np.moveaxis(v, axis, -1).reshape(rows, n)
            v = _pad(v, (shape[0], 1) if reduced else shape, 0)
            if tangent is None:
                out = self._call("rows_vjp", padded, tau, v, op=op, scaled=scaled)
            else:
                t = _pad(np.moveaxis(np.asarray(tangent), axis, -1).reshape(rows, n), shape, 0)
                out = self._call("rows_hvp", padded, tau, v, t, op=op, scaled=scaled)
        if OPS[op].output_shape(x, {"axis": axis}) != x.shape and cotangent is None:  # the axis reduced
            return out[:rows].reshape(batch)
        return np.moveaxis(out[:rows, :n].reshape(moved.shape), -1, axis)

    # -- cross-entropy: (..., C) -> (N, C) padded ------------------------------------------------
    def _cross_entropy(self, op, logits, cotangent, target, reduction="mean", weight=None, ignore_index=-100,
                       label_smoothing=0.0, z_loss=0.0, softcap=None, tangent=None, forward=None):
        logits, target = validation.as_float_array(logits, "logits"), np.asarray(target)
        reduction = validation.check_reduction(reduction)
        batch, n_classes = logits.shape[:-1], logits.shape[-1]
        n = math.prod(batch)
        probabilities = target.dtype.name in FORMATS  # bfloat16's NumPy kind is "V", not "f"
        in_range = probabilities or np.all((target == ignore_index) | ((target >= 0) & (target < n_classes)))
        shape = self._shape(n, n_classes) if in_range else (n, n_classes)
        x = _pad_logits(logits.reshape(n, n_classes), shape)
        if probabilities:
            t = _pad(target.reshape(n, n_classes), shape, 0)
        else:
            t = _pad(target.reshape(n), (shape[0],), ignore_index)
        w = np.ones(n_classes, logits.dtype) if weight is None else np.asarray(weight)
        options = (_pad(w, (shape[1],), 0), np.asarray(label_smoothing), np.asarray(ignore_index),
                   np.asarray(n_classes), np.asarray(n))
        if z_loss or softcap is not None:
            return self._head_cross_entropy(x, t, options, z_loss, softcap, reduction, batch, cotangent, tangent,
                                            forward, logits.shape)
        if forward is not None:
            tangent_x = _pad(np.asarray(forward).reshape(n, n_classes), shape, 0)
            return _reduced(self._call("ce_jvp_forward", x, t, options, tangent_x), reduction, batch)
        if cotangent is None:
            return _reduced(self._call("ce_value", x, t, options), reduction, batch)
        v, mean = _per_example(cotangent, reduction, batch, shape[0])
        if tangent is None:
            out = self._call("ce_vjp", x, t, options, v, mean)
        else:
            tt = _pad(np.asarray(tangent).reshape(n, n_classes), shape, 0)
            out = self._call("ce_hvp", x, t, options, v, mean, tt)
        return out[:n, :n_classes].reshape(logits.shape)

    def _head_cross_entropy(self, x, t, options, z_loss, softcap, reduction, batch, cotangent, tangent, forward,
                            shape):
        """Cross-entropy with z-loss or a soft-cap (the programs of _head_programs) on the padded x and t."""
        if tangent is not None:
            raise NotImplementedError(f"{self.name}: no hvp of cross_entropy with z_loss or softcap")
        w, label_smoothing, ignore_index, n_classes, n = options
        args = (x, t, w, label_smoothing, np.asarray(z_loss), ignore_index,
                np.asarray(1.0 if softcap is None else softcap, np.float64), n_classes, n)
        static = {"reduction": reduction, "capped": softcap is not None}
        rows = math.prod(batch)
        if cotangent is not None:
            v = np.asarray(cotangent)
            v = _pad(v.reshape(rows), (x.shape[0],), 0) if reduction == "none" else v
            return self._call("head_ce_vjp", *args, v, **static)[:rows, :shape[-1]].reshape(shape)
        if forward is not None:
            out = self._call("head_ce_jvp", *args, _pad(np.asarray(forward).reshape(rows, shape[-1]), x.shape, 0),
                             **static)
        else:
            out = self._call("head_ce_value", *args, **static)
        return out[:rows].reshape(batch) if reduction == "none" else out

    # -- the loss family: (..., C) -> (N, C) padded like cross-entropy; distributions padded with 0 ---------
    def _loss(self, op, logits, cotangent, target, reduction="mean", gamma=2.0, alpha=None, form="full",
              margin=1.0):
        logits, reduction = validation.as_float_array(logits, "logits"), validation.check_reduction(reduction)
        batch, n_classes = logits.shape[:-1], logits.shape[-1]
        n = math.prod(batch)
        shape = self._shape(n, n_classes)
        x = _pad_logits(logits.reshape(n, n_classes), shape)
        t = _pad(np.asarray(target).reshape(n), (shape[0],), 0)
        a = np.ones(n_classes) if alpha is None else np.broadcast_to(np.asarray(alpha, dtype=np.float64), (n_classes,))
        options = (np.asarray(gamma), _pad(a.astype(logits.dtype), (shape[1],), 0), np.asarray(margin), np.asarray(n))
        form = form if "form" in OPS[op].parameters else "full"
        if cotangent is None:
            return _reduced(self._call("loss_value", x, t, options, op=op, form=form), reduction, batch)
        v, mean = _per_example(cotangent, reduction, batch, shape[0])
        out = self._call("loss_vjp", x, t, options, v, mean, op=op, form=form)
        return out[:n, :n_classes].reshape(logits.shape)

    def _distribution(self, op, p, cotangent, q=None):
        p = validation.as_float_array(p, "p")
        batch, n = p.shape[:-1], p.shape[-1]
        rows = math.prod(batch)
        shape = self._shape(rows, n)
        pp = _pad(p.reshape(rows, n), shape, 0)
        qq = pp if q is None else _pad(np.asarray(q).astype(p.dtype).reshape(rows, n), shape, 0)
        if cotangent is None:
            return self._call("distribution_value", pp, qq, op=op)[:rows].reshape(batch)
        v = _pad(np.asarray(cotangent).reshape(rows), (shape[0],), 0)
        return self._call("distribution_vjp", pp, qq, v, op=op)[:rows, :n].reshape(p.shape)

    # -- the LM head: h W^T + b, the soft-cap, cross-entropy and the z-loss as a JAX user writes them, on the
    # caller's shapes; the vjp by jax.vjp with respect to (hidden, weight, bias) -----------------------------
    def _linear(self, op, x, cotangent, weight, target, bias=None, reduction="mean", class_weight=None,
                ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None, tangent=None, forward=None):
        if tangent is not None or forward is not None:
            raise NotImplementedError(f"{self.name}: no {'hvp' if tangent is not None else 'jvp'} of {op}")
        x, weight = np.asarray(x), np.asarray(weight)
        reduction = validation.check_reduction(reduction)
        cw = np.ones(weight.shape[0], x.dtype) if class_weight is None else np.asarray(class_weight)
        args = (x, weight, np.zeros(weight.shape[0], x.dtype) if bias is None else np.asarray(bias),
                np.asarray(target).reshape(-1), cw, np.asarray(label_smoothing), np.asarray(z_loss),
                np.asarray(ignore_index), np.asarray(1.0 if softcap is None else softcap, np.float64))
        static = {"reduction": reduction, "capped": softcap is not None}
        if cotangent is None:
            return self._call("linear_value", *args, **static)
        d_h, d_w, d_b = self._call("linear_vjp", *args, np.asarray(cotangent), **static)
        return d_h, d_w, None if bias is None else d_b

    def _call(self, program, *args, **static):
        if self._captured is not None:
            self._captured.append((program, args, static))
        with self.jax.default_device(self.device):
            out = self._programs[program](*args, **static)
        return tuple(map(np.asarray, out)) if isinstance(out, tuple) else np.asarray(out)


def vjp_of(f):
    """(x, *args, cotangent, **static) -> the vjp of f(x, *args, **static) at x along the cotangent, by jax.vjp:
    the adapters written on jax (optax, keras) differentiate their losses with it."""
    def vjp(*args, **static):
        import jax

        x, *args, cotangent = args
        out, pullback = jax.vjp(lambda y: f(y, *args, **static), x)
        return pullback(cotangent.astype(out.dtype))[0]
    return vjp


def jvp_of(f):
    """(x, *args, tangent, **static) -> J t of f(x, *args, **static) at x, by jax.jvp."""
    def jvp(*args, **static):
        import jax

        x, *args, tangent = args
        return jax.jvp(lambda y: f(y, *args, **static), (x,), (tangent.astype(x.dtype),))[1]
    return jvp


def persistent_compile_cache(jax) -> None:
    """Keep compiled programs on disk (~/.cache/xentcheck/jax) so that a second check compiles nothing: for
    this backend, and for any backend on JAX that `xentcheck check` loads (the user's own jitted kernels).

    Left alone when the user has set a cache directory; XENTCHECK_JAX_CACHE=0 turns it off."""
    if os.environ.get("XENTCHECK_JAX_CACHE", "1") == "0" or jax.config.jax_compilation_cache_dir:
        return
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xentcheck" / "jax"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _reduced(out, reduction: str, batch: tuple):
    """The answer for `reduction` from a loss program's (per-example losses, their sum, their mean)."""
    losses, total, mean = out
    return losses[:math.prod(batch)].reshape(batch) if reduction == "none" else total if reduction == "sum" else mean


def _per_example(cotangent, reduction: str, batch: tuple, padded_rows: int):
    """A loss program's cotangent per example, padded with 0, and whether the program divides it by the
    mean's denominator: the reduction's own vjp (v_i for "none"; v broadcast for "sum" and "mean")."""
    n = math.prod(batch)
    v = np.broadcast_to(np.asarray(cotangent), batch if reduction == "none" else ()).reshape(-1)
    v = _pad(np.broadcast_to(v, (n,)) if reduction != "none" else v, (padded_rows,), 0)
    return v, np.asarray(reduction == "mean")


def _pad_logits(rows: np.ndarray, shape: tuple) -> np.ndarray:
    """Pad the axis with -inf (probability 0, nothing added to any sum) and the rows with 0."""
    return _pad(_pad(rows, (rows.shape[0], shape[1]), -np.inf), shape, 0)


def _pad(array: np.ndarray, shape: tuple, value) -> np.ndarray:
    array = np.asarray(array)
    if array.shape == shape:
        return array
    out = np.full(shape, value, dtype=array.dtype)
    out[tuple(slice(0, s) for s in array.shape)] = array
    return out


@functools.lru_cache(maxsize=None)
def _head_programs():
    """The LM head's programs, jitted (static: the reduction, whether there is a soft-cap): "linear_value" and
    "linear_vjp" (with respect to hidden, weight and bias) of the linear cross-entropy on the caller's shapes, and
    "head_ce_value", "head_ce_vjp" and "head_ce_jvp" of cross-entropy with z-loss or a soft-cap on padded ones."""
    import jax

    jnp = jax.numpy

    def head_loss(logits, target, cw, eps, z, ignore_index, cap, n_classes, n_examples, reduction, capped):
        """The soft-cap, cross-entropy and z-loss on (N, C) logits as a JAX user writes them; target (N,) class
        indices or (N, C) probabilities. Per example for "none". The logits may be padded (the first n_examples
        rows and n_classes classes are real): padded classes stay at -inf under the cap, padded rows count nowhere."""
        if capped:
            cap = cap.astype(logits.dtype)
            logits = jnp.where(jnp.arange(logits.shape[-1]) < n_classes, cap * jnp.tanh(logits / cap), -jnp.inf)
        logp = jax.nn.log_softmax(logits, axis=-1)
        eps, cw = eps.astype(logits.dtype), cw.astype(logits.dtype)
        spread = eps / n_classes.astype(logits.dtype)
        if target.ndim == 2:  # probabilities: every real example counts
            valid = jnp.arange(logits.shape[0]) < n_examples
            coef = jnp.where(valid[:, None], cw * ((1 - eps) * target.astype(logits.dtype) + spread), 0)
            ce = -jnp.where(coef > 0, coef * logp, 0).sum(-1)
            total = n_examples.astype(logits.dtype)
        else:
            valid = target != ignore_index
            safe = jnp.where(valid, target, 0)
            w_t = jnp.where(valid, cw[safe], 0)
            nll = -jnp.take_along_axis(logp, safe[:, None], axis=-1)[:, 0]
            smooth = jnp.where(valid & (eps > 0), spread * -jnp.where(cw > 0, cw * logp, 0).sum(-1), 0)
            ce = jnp.where(valid, (1 - eps) * w_t * nll, 0) + smooth
            total = w_t.sum()
        # the z-loss in float32 for float16 and bfloat16: lse^2 overflows float16 from lse = 256
        wide = jnp.promote_types(logits.dtype, jnp.float32)
        zl = jnp.where(valid, z.astype(wide) * jax.nn.logsumexp(logits.astype(wide), axis=-1) ** 2, 0)
        if reduction == "none":
            return ce + zl.astype(logits.dtype)
        if reduction == "sum":
            return ce.sum() + zl.sum().astype(logits.dtype)
        # a mean over no weight is NaN (DESIGN.md), as the cross-entropy program has it
        return (ce.sum() / jnp.where(total > 0, total, jnp.nan)
                + (zl.sum() / valid.sum().astype(wide)).astype(logits.dtype))

    def linear_loss(h, w, b, *options, reduction, capped):
        tokens = h.reshape(-1, h.shape[-1])
        out = head_loss(tokens @ w.T + b, *options, jnp.asarray(w.shape[0]), jnp.asarray(tokens.shape[0]),
                        reduction=reduction, capped=capped)
        return out.reshape(h.shape[:-1]) if reduction == "none" else out

    def linear_vjp(h, w, b, *rest, reduction, capped):
        *options, cotangent = rest
        out, pullback = jax.vjp(lambda h_, w_, b_: linear_loss(h_, w_, b_, *options, reduction=reduction,
                                                                 capped=capped), h, w, b)
        return pullback(cotangent.astype(out.dtype))

    static = ("reduction", "capped")
    return {"linear_value": jax.jit(linear_loss, static_argnames=static),
            "linear_vjp": jax.jit(linear_vjp, static_argnames=static),
            "head_ce_value": jax.jit(head_loss, static_argnames=static),
            "head_ce_vjp": jax.jit(vjp_of(head_loss), static_argnames=static),
            "head_ce_jvp": jax.jit(jvp_of(head_loss), static_argnames=static)}


@functools.lru_cache(maxsize=None)
def _programs():
    """The jitted programs, built once per process and shared by every JaxBackend."""
    import jax

    jnp, lax = jax.numpy, jax.lax

    def scaled_input(x, tau, scaled):
        """(x - max x)/tau with the max held constant under differentiation (softmax ignores it); at
        tau = 1 the input goes to jax.nn as it is, the call a JAX user makes."""
        if not scaled:
            return x
        return (x - lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))) / jnp.asarray(tau, x.dtype)

    row_ops = {
        "softmax": lambda x, tau, scaled: jax.nn.softmax(scaled_input(x, tau, scaled), axis=-1),
        "log_softmax": lambda x, tau, scaled: jax.nn.log_softmax(scaled_input(x, tau, scaled), axis=-1),
        "logsumexp": lambda x, tau, scaled: jax.nn.logsumexp(x, axis=-1, keepdims=True),
    }

    def cross_entropy(logits, target, options):
        """Per example (padded examples 0), their sum and their mean: one program for every reduction."""
        losses, denominator = ce_terms(logits, target, options)
        return losses, losses.sum(), losses.sum() / denominator

    def ce_terms(logits, target, options):
        """The per-example losses and the mean's denominator, the target weights' sum W or N (NaN when
        it is 0: a mean over no weight is NaN)."""
        weight, label_smoothing, ignore_index, n_classes, n_examples = options
        logp = jax.nn.log_softmax(logits, axis=-1)
        w = weight.astype(logits.dtype)
        eps = label_smoothing.astype(logits.dtype)
        spread_coef = eps / n_classes.astype(logits.dtype)
        if jnp.issubdtype(target.dtype, jnp.integer):
            valid = target != ignore_index
            safe = jnp.where(valid, target, 0)
            w_target = jnp.where(valid, w[safe], 0)
            picked = -jnp.take_along_axis(logp, safe[:, None], axis=-1)[:, 0]
            spread = -jnp.where(w > 0, w * logp, 0).sum(-1)
            nll_coef = (1 - eps) * w_target  # 0 log 0 = 0: a zero coefficient never meets -inf
            losses = (jnp.where(nll_coef > 0, nll_coef * picked, 0)
                      + jnp.where(valid & (spread_coef > 0), spread_coef * spread, 0))
            denominator = w_target.sum()
        else:
            real = (jnp.arange(logits.shape[0]) < n_examples)[:, None]  # padded examples weigh 0
            coef = jnp.where(real, w * ((1 - eps) * target.astype(logits.dtype) + spread_coef), 0)
            losses = -jnp.where(coef > 0, coef * logp, 0).sum(-1)
            denominator = n_examples.astype(logits.dtype)
        return losses, jnp.where(denominator > 0, denominator, jnp.nan)

    def ce_vjp(x, target, options, v, mean):
        """jax.vjp of the per-example losses, the cotangent first taken through the reduction as JAX
        differentiates sum() / W: broadcast, and divided by W (NaN when W = 0) for the mean."""
        losses_of_x = lambda y: ce_terms(y, target, options)[0]  # noqa: E731
        denominator = ce_terms(x, target, options)[1]
        v = v.astype(x.dtype)
        return vjp(losses_of_x, x, jnp.where(mean, v / denominator, v))

    def focal(x, target, gamma, alpha, margin, form):
        logp = jnp.take_along_axis(jax.nn.log_softmax(x, axis=-1), target[:, None], axis=-1)[:, 0]
        return -alpha[target] * (1 - jnp.exp(logp)) ** gamma.astype(x.dtype) * logp

    def mse(x, target, gamma, alpha, margin, form):
        p = jax.nn.softmax(x, axis=-1)
        if form == "target":
            return (jnp.take_along_axis(p, target[:, None], axis=-1)[:, 0] - 1) ** 2
        return ((p - jax.nn.one_hot(target, x.shape[-1], dtype=x.dtype)) ** 2).sum(-1)

    def hinge(x, target, gamma, alpha, margin, form):  # optax.losses.multiclass_hinge_loss, with a margin
        onehot = jax.nn.one_hot(target, x.shape[-1], dtype=x.dtype)
        z_t = jnp.take_along_axis(x, target[:, None], axis=-1)[:, 0]
        return jnp.max(x + margin.astype(x.dtype) * (1 - onehot), axis=-1) - z_t

    losses_of = {"focal_loss": focal, "mse_loss": mse, "multiclass_hinge_loss": hinge}

    def loss(x, target, options, op, form):
        """Per example (padded examples 0), then the sum and the mean: one program for every reduction."""
        gamma, alpha, margin, n_examples = options
        real = jnp.arange(x.shape[0]) < n_examples
        losses = jnp.where(real, losses_of[op](x, target, gamma, alpha, margin, form), 0)
        return losses, losses.sum(), losses.sum() / n_examples.astype(x.dtype)

    def loss_vjp(x, target, options, v, mean, op, form):
        """jax.vjp of the per-example losses; the reduction's part (broadcast, and / N for the mean, as
        JAX differentiates sum() / N) is applied to the cotangent first."""
        v = jnp.where(mean, v / options[3].astype(v.dtype), v)
        return vjp(lambda y: loss(y, target, options, op, form)[0], x, v)

    def vjp(f, x, v):
        out, pullback = jax.vjp(f, x)
        return pullback(v.astype(out.dtype))[0]

    special = jax.scipy.special
    distributions = {
        "entropy": lambda p, q: special.entr(p).sum(-1),
        "kl_divergence": lambda p, q: special.rel_entr(p, q).sum(-1),
        "distribution_cross_entropy": lambda p, q: -special.xlogy(p, q).sum(-1),
    }

    def hvp(f, x, v, t):
        return jax.jvp(lambda y: vjp(f, y, v), (x,), (t.astype(x.dtype),))[1]

    static_rows, static_loss = ("op", "scaled"), ("op", "form")
    return {
        "rows_value": jax.jit(lambda x, tau, op, scaled: row_ops[op](x, tau, scaled), static_argnames=static_rows),
        "rows_vjp": jax.jit(lambda x, tau, v, op, scaled: vjp(lambda y: row_ops[op](y, tau, scaled), x, v),
                            static_argnames=static_rows),
        "rows_jvp": jax.jit(lambda x, tau, t, op, scaled: jax.jvp(lambda y: row_ops[op](y, tau, scaled), (x,),
                                                                   (t.astype(x.dtype),))[1], static_argnames=static_rows),
        "rows_hvp": jax.jit(lambda x, tau, v, t, op, scaled: hvp(lambda y: row_ops[op](y, tau, scaled), x, v, t),
                            static_argnames=static_rows),
        "ce_value": jax.jit(cross_entropy),
        "ce_vjp": jax.jit(ce_vjp),
        "ce_jvp_forward": jax.jit(lambda x, t, o, tt: jax.jvp(lambda y: cross_entropy(y, t, o), (x,),
                                                              (tt.astype(x.dtype),))[1]),
        "ce_hvp": jax.jit(lambda x, t, o, v, mean, tt: jax.jvp(lambda y: ce_vjp(y, t, o, v, mean), (x,),
                                                              (tt.astype(x.dtype),))[1]),
        "loss_value": jax.jit(loss, static_argnames=static_loss),
        "loss_vjp": jax.jit(loss_vjp, static_argnames=static_loss),
        "distribution_value": jax.jit(lambda p, q, op: distributions[op](p, q), static_argnames=("op",)),
        "distribution_vjp": jax.jit(lambda p, q, v, op: vjp(lambda y: distributions[op](y, q), p, v),
                                    static_argnames=("op",)),
    }
