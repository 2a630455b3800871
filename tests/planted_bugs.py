"""Backends with one planted bug each: `xentcheck check` must exit 1 on every one of them.

Each is a small subclass of a correct NumPy backend (PlantedBase: the reference, with the ops written
out so that one line can go wrong). Loaded by tests/test_check.py as `tests/planted_bugs.py:NAME` and
checked on the ops it `breaks` (`--ops`), and where it sets `properties`, on those alone (`-k`): the other
properties never call the broken code, so they could not catch it, and leaving them out keeps the test fast.
The bugs do not depend on the dtype, so each runs in float32 and float64 unless it names its `dtypes`.
(A wrong `breaks` or `properties` can only hide the bug from the check, which then fails the test.)
"""
import numpy as np

from xentcheck import reference
from xentcheck.backends.numpy_backend import NumpyBackend
from xentcheck.records import OPS
from xentcheck.reference import FORMATS, linear, round_to_dtype

_QUIET = dict(over="ignore", under="ignore", invalid="ignore", divide="ignore")


class PlantedBase(NumpyBackend):
    """The reference's semantics, computed step by step in float64 so a subclass can change one step."""
    name = "planted"

    def _rows(self, x, axis):
        x = np.asarray(x)
        return np.moveaxis(x.astype(np.float64), axis, -1), x.dtype

    def _out(self, rows, axis, dtype):
        return round_to_dtype(np.moveaxis(rows, -1, axis), dtype)

    def shift(self, z):
        return z - z.max(axis=-1, keepdims=True)

    def scale(self, z, tau):
        return z / tau

    def exp(self, z):
        return np.exp(z)

    def probabilities(self, x, tau):
        with np.errstate(**_QUIET):
            e = self.exp(self.scale(self.shift(x), tau))
            return e / e.sum(axis=-1, keepdims=True)

    def log_probabilities(self, x, tau):
        with np.errstate(**_QUIET):
            z = self.scale(self.shift(x), tau)
            return z - np.log(self.exp(z).sum(axis=-1, keepdims=True))

    def softmax(self, x, axis=-1, temperature=1.0):
        rows, dtype = self._rows(x, axis)
        return self._out(self.probabilities(rows, temperature), axis, dtype)

    def log_softmax(self, x, axis=-1, temperature=1.0):
        rows, dtype = self._rows(x, axis)
        return self._out(self.log_probabilities(rows, temperature), axis, dtype)


# -- the fifteen of the issue ----------------------------------------------------------------------

class NoMaxShift(PlantedBase):
    breaks = ("softmax", "log_softmax")

    def shift(self, z):
        return z


class Float64ComputedInFloat32(NumpyBackend):
    breaks = ("softmax", "log_softmax", "cross_entropy")

    def _via32(self, fn, x, *a, **k):
        x = np.asarray(x)
        out = fn(x.astype(np.float32) if x.dtype == np.float64 else x, *a, **k)
        return np.asarray(out).astype(x.dtype)

    def softmax(self, x, axis=-1, temperature=1.0):
        return self._via32(super().softmax, x, axis, temperature)

    def log_softmax(self, x, axis=-1, temperature=1.0):
        return self._via32(super().log_softmax, x, axis, temperature)

    def cross_entropy(self, logits, target, **kw):
        return self._via32(super().cross_entropy, logits, target, **kw)


class LogOfSoftmax(PlantedBase):
    breaks = ("log_softmax",)

    def log_probabilities(self, x, tau):
        with np.errstate(**_QUIET):
            return np.log(self.probabilities(x, tau))


class MeanForgetsToDivide(NumpyBackend):
    breaks = ("cross_entropy",)

    def cross_entropy(self, logits, target, reduction="mean", **kw):
        return super().cross_entropy(logits, target, reduction="sum" if reduction == "mean" else reduction, **kw)


class SmoothingOverKMinus1(NumpyBackend):
    """Label smoothing spreads eps over the K - 1 other classes instead of eps / K over all."""
    breaks = ("cross_entropy",)

    def cross_entropy(self, logits, target, reduction="mean", weight=None, ignore_index=-100, label_smoothing=0.0):
        t = np.asarray(target)
        if label_smoothing == 0 or t.dtype.kind not in "iu":
            return super().cross_entropy(logits, target, reduction, weight, ignore_index, label_smoothing)
        x = np.asarray(logits)
        n_classes = x.shape[-1]
        valid = t != ignore_index
        q = np.full(x.shape, label_smoothing / max(n_classes - 1, 1))
        np.put_along_axis(q, np.where(valid, t, 0)[..., None], 1 - label_smoothing, axis=-1)
        q = q * valid[..., None]
        losses = reference.cross_entropy(x, round_to_dtype(q, x.dtype), reduction="none", weight=weight)
        return _reduce(losses, reduction, valid.sum(), x.dtype)


class IgnoredCountedInMean(NumpyBackend):
    breaks = ("cross_entropy",)

    def cross_entropy(self, logits, target, reduction="mean", weight=None, ignore_index=-100, label_smoothing=0.0):
        t = np.asarray(target)
        if reduction != "mean" or t.dtype.kind not in "iu":
            return super().cross_entropy(logits, target, reduction, weight, ignore_index, label_smoothing)
        losses = super().cross_entropy(logits, target, "none", weight, ignore_index, label_smoothing)
        w = np.ones(np.shape(logits)[-1]) if weight is None else np.asarray(weight, np.float64)
        counted = np.where(t != ignore_index, w[np.where(t != ignore_index, t, 0)], 1.0).sum()
        return _reduce(losses, "mean", counted, np.asarray(logits).dtype)


class WeightedMeanDividedByN(NumpyBackend):
    breaks = ("cross_entropy",)

    def cross_entropy(self, logits, target, reduction="mean", weight=None, ignore_index=-100, label_smoothing=0.0):
        t = np.asarray(target)
        if reduction != "mean" or t.dtype.kind not in "iu":
            return super().cross_entropy(logits, target, reduction, weight, ignore_index, label_smoothing)
        losses = super().cross_entropy(logits, target, "none", weight, ignore_index, label_smoothing)
        return _reduce(losses, "mean", (t != ignore_index).sum(), np.asarray(logits).dtype)


class AxisIgnored(PlantedBase):
    breaks = ("softmax", "log_softmax")

    def softmax(self, x, axis=-1, temperature=1.0):
        return super().softmax(x, -1, temperature)

    def log_softmax(self, x, axis=-1, temperature=1.0):
        return super().log_softmax(x, -1, temperature)


class TemperatureMultiplied(PlantedBase):
    breaks = ("softmax", "log_softmax")

    def scale(self, z, tau):
        return z * tau


class MeanGradientNotDivided(NumpyBackend):
    breaks = ("cross_entropy",)

    def vjp(self, op, x, cotangent, **kwargs):
        if op == "cross_entropy" and kwargs.get("reduction", "mean") == "mean":
            return super().vjp(op, x, cotangent, **dict(kwargs, reduction="sum"))
        return super().vjp(op, x, cotangent, **kwargs)


class DiagonalJacobian(NumpyBackend):
    """softmax vjp as p (1 - p) v: the Jacobian's diagonal only."""
    breaks = ("softmax",)

    def vjp(self, op, x, cotangent, axis=-1, temperature=1.0, **kwargs):
        if op != "softmax":
            return super().vjp(op, x, cotangent, axis=axis, temperature=temperature, **kwargs) \
                if op in ("log_softmax",) else super().vjp(op, x, cotangent, **kwargs) if op == "cross_entropy" \
                else super().vjp(op, x, cotangent, axis=axis)
        p = reference.softmax(x, axis=axis, temperature=temperature).astype(np.float64)
        g = p * (1 - p) * np.asarray(cotangent, np.float64) / temperature
        return round_to_dtype(g, np.asarray(x).dtype)


class GradientForgetsTau(NumpyBackend):
    breaks = ("softmax", "log_softmax")

    def vjp(self, op, x, cotangent, **kwargs):
        g = super().vjp(op, x, cotangent, **kwargs)
        tau = kwargs.get("temperature", 1.0)
        return round_to_dtype(g.astype(np.float64) * tau, g.dtype) if op in ("softmax", "log_softmax") else g


class JvpIgnoresTheRowComponent(NumpyBackend):
    """Forward mode that forgets the normalisation's part: softmax's J t as p t/tau (no - p <p, t>/tau),
    log-softmax's as t/tau (no - <p, t>/tau)."""
    breaks = ("softmax", "log_softmax")
    properties = "jvp"

    def jvp(self, op, x, tangent, axis=-1, temperature=1.0):
        t = np.asarray(tangent, np.float64) / temperature
        p = reference.softmax(np.asarray(x).astype(np.float64), axis=axis, temperature=temperature)
        return round_to_dtype(p * t if op == "softmax" else t, np.asarray(x).dtype)


class JvpForgetsTau(NumpyBackend):
    """Forward mode without the temperature's 1/tau."""
    breaks = ("softmax", "log_softmax")
    properties = "jvp"

    def jvp(self, op, x, tangent, **kwargs):
        out = super().jvp(op, x, tangent, **kwargs)
        return round_to_dtype(out.astype(np.float64) * kwargs.get("temperature", 1.0), out.dtype)


class ShiftByMean(PlantedBase):
    breaks = ("softmax", "log_softmax")

    def shift(self, z):
        with np.errstate(**_QUIET):
            return z - z.mean(axis=-1, keepdims=True)


class LogsumexpWithoutShift(NumpyBackend):
    breaks = ("logsumexp",)

    def logsumexp(self, x, axis=-1):
        x = np.asarray(x)
        with np.errstate(**_QUIET):
            return round_to_dtype(np.log(np.exp(x.astype(np.float64)).sum(axis=axis)), x.dtype)


class IgnoredStillGetGradient(NumpyBackend):
    """Ignored examples get the gradient of class 0 as if it were their target."""
    breaks = ("cross_entropy",)

    def vjp(self, op, x, cotangent, **kwargs):
        if op != "cross_entropy" or np.asarray(kwargs["target"]).dtype.kind not in "iu":
            return super().vjp(op, x, cotangent, **kwargs)
        t = np.asarray(kwargs["target"])
        ignore = kwargs.get("ignore_index", -100)
        replaced = np.where(t == ignore, 0 if ignore != 0 else 1, t)
        return super().vjp(op, x, cotangent, **dict(kwargs, target=replaced, ignore_index=-(10 ** 9)))


# -- more: bugs that hide in blocked code, index types, low precision, "stability" hacks --------------

class ChunkedNormalisation(PlantedBase):
    """Rows longer than 4096 are normalised per 4096-entry chunk (a blocked kernel that forgot to combine)."""
    breaks = ("softmax",)

    def probabilities(self, x, tau):
        if x.shape[-1] <= 4096:
            return super().probabilities(x, tau)
        chunks = [super(ChunkedNormalisation, self).probabilities(x[..., i:i + 4096], tau)
                  for i in range(0, x.shape[-1], 4096)]
        return np.concatenate(chunks, axis=-1) / len(chunks)


class Int16TargetIndex(NumpyBackend):
    """Class indices stored as int16: targets past 32767 wrap around (only a large vocabulary shows it)."""
    breaks = ("cross_entropy",)

    def _narrow(self, kwargs, n_classes):
        t = np.asarray(kwargs["target"])
        if t.dtype.kind in "iu":
            wrapped = t.astype(np.int16).astype(np.int64)  # 40000 -> -25536
            t = np.where((t >= 0) & (wrapped < 0), wrapped % n_classes, t)  # then read from the row's end
            kwargs = dict(kwargs, target=t)
        return kwargs

    def cross_entropy(self, logits, target, **kw):
        return super().cross_entropy(logits, **self._narrow(dict(kw, target=target), np.shape(logits)[-1]))

    def vjp(self, op, x, cotangent, **kwargs):
        if op == "cross_entropy":
            kwargs = self._narrow(kwargs, np.shape(x)[-1])
        return super().vjp(op, x, cotangent, **kwargs)


class SlightlyWrongExp(PlantedBase):
    """exp with a relative error of 1e-3 that grows with |z|: renormalisation hides it from sum-to-one."""
    breaks = ("softmax", "log_softmax")

    def exp(self, z):
        return np.exp(z) * (1 + 1e-3 * np.tanh(z))


class EpsilonInTheDenominator(PlantedBase):
    """A 'stability' hack: (e + 1e-12) / (s + n 1e-12). Masked entries are no longer exactly 0."""
    breaks = ("softmax",)

    def probabilities(self, x, tau):
        with np.errstate(**_QUIET):
            e = self.exp(self.scale(self.shift(x), tau)) + 1e-12
            return e / e.sum(axis=-1, keepdims=True)


class Float16Accumulation(NumpyBackend):
    """float16 softmax with its sum kept in float16: overflows for rows past 65504 entries."""
    dtypes = "float16"
    breaks = ("softmax",)

    def softmax(self, x, axis=-1, temperature=1.0):
        x = np.asarray(x)
        if x.dtype != np.float16:
            return super().softmax(x, axis, temperature)
        with np.errstate(**_QUIET):
            z = (x - x.max(axis=axis, keepdims=True)) / np.float16(temperature)
            e = np.exp(z)
            s = np.add.reduce(e, axis=axis, keepdims=True, dtype=np.float16)
            return (e / s).astype(np.float16)


class SmoothingIgnoresWeights(NumpyBackend):
    """The eps / K part of label smoothing is taken unweighted."""
    breaks = ("cross_entropy",)

    def cross_entropy(self, logits, target, reduction="mean", weight=None, ignore_index=-100, label_smoothing=0.0):
        t = np.asarray(target)
        if weight is None or label_smoothing == 0 or t.dtype.kind not in "iu":
            return super().cross_entropy(logits, target, reduction, weight, ignore_index, label_smoothing)
        x = np.asarray(logits)
        nll = super().cross_entropy(x, t, "none", weight, ignore_index, 0.0).astype(np.float64)
        uniform = super().cross_entropy(x, t, "none", None, ignore_index, 1.0).astype(np.float64)
        losses = (1 - label_smoothing) * nll + label_smoothing * uniform
        w = np.asarray(weight, np.float64)
        valid = t != ignore_index
        return _reduce(round_to_dtype(losses, x.dtype), reduction, np.where(valid, w[np.where(valid, t, 0)], 0).sum(),
                       x.dtype)


class RoundsTowardZeroIntoBfloat16(PlantedBase):
    """softmax right in float32, then into bfloat16 by dropping the low 16 bits (truncation, as a hand-written
    `bits >> 16` does) instead of rounding to nearest even: at most 1 ulp off, so within the sum of the backend's
    and the rounded reference's half ulps, but not within the backend's own bound of the unrounded reference."""
    dtypes = "bfloat16"
    breaks = ("softmax",)
    properties = "value_equals_reference"

    def _out(self, rows, axis, dtype):
        if np.dtype(dtype).name != "bfloat16":
            return super()._out(rows, axis, dtype)
        bits = np.moveaxis(rows, -1, axis).astype(np.float32).view(np.uint32) & np.uint32(0xFFFF0000)
        return bits.view(np.float32).astype(dtype)


class ZeroTimesMinusInf(NumpyBackend):
    """Probability-target cross-entropy as -sum q log p: 0 * -inf = NaN for a masked class."""
    breaks = ("cross_entropy",)

    def cross_entropy(self, logits, target, reduction="mean", weight=None, ignore_index=-100, label_smoothing=0.0):
        t = np.asarray(target)
        if t.dtype.kind in "iu":
            return super().cross_entropy(logits, target, reduction, weight, ignore_index, label_smoothing)
        x = np.asarray(logits)
        w = np.ones(x.shape[-1]) if weight is None else np.asarray(weight, np.float64)
        q = (1 - label_smoothing) * t.astype(np.float64) + label_smoothing / x.shape[-1]
        with np.errstate(**_QUIET):
            losses = -(w * q * reference.log_softmax(x).astype(np.float64)).sum(axis=-1)
        return _reduce(round_to_dtype(losses, x.dtype), reduction, losses.size, x.dtype)


class GradientMissesSmoothing(NumpyBackend):
    """The cross-entropy gradient is p - onehot whatever the label smoothing."""
    breaks = ("cross_entropy",)

    def vjp(self, op, x, cotangent, **kwargs):
        if op == "cross_entropy":
            kwargs = dict(kwargs, label_smoothing=0.0)
        return super().vjp(op, x, cotangent, **kwargs)


class LogsumexpForgetsTheMax(NumpyBackend):
    """log sum exp(x - m), the m never added back."""
    breaks = ("logsumexp",)

    def logsumexp(self, x, axis=-1):
        x = np.asarray(x)
        m = np.max(x.astype(np.float64), axis=axis, keepdims=True)
        with np.errstate(**_QUIET):
            return round_to_dtype(np.log(np.exp(x.astype(np.float64) - m).sum(axis=axis)), x.dtype)


class WrongHessian(NumpyBackend):
    """Offers hvp, but with diag(p) only: the - p p^T term forgotten."""
    breaks = ("logsumexp", "cross_entropy")
    properties = "hessian"  # only the Hessian-vector product property calls hvp

    def hvp(self, op, x, cotangent, tangent, **kwargs):
        if op == "logsumexp":
            axis = kwargs.get("axis", -1)
            p = reference.softmax(x, axis=axis).astype(np.float64)
            return round_to_dtype(np.expand_dims(np.asarray(cotangent, np.float64), axis) * p
                                  * np.asarray(tangent, np.float64), np.asarray(x).dtype)
        problem = reference.ops.CrossEntropyProblem(x, **kwargs)
        p = reference.softmax(problem.logits).astype(np.float64)
        scale = problem.row_scale(cotangent) * problem.row_coef_sum[:, None]
        g = scale * p * np.asarray(tangent, np.float64).reshape(p.shape)
        return round_to_dtype(g.reshape(problem.shape), problem.dtype)


# -- the loss family -----------------------------------------------------------------------------------

class FocalGradientForgetsModulation(NumpyBackend):
    """The focal loss's gradient taken as alpha_t (p - onehot), cross-entropy's: the (1 - p_t)^gamma factor
    and its derivative forgotten."""
    breaks = ("focal_loss",)

    def vjp(self, op, x, cotangent, **kwargs):
        if op == "focal_loss":
            kwargs = dict(kwargs, gamma=0.0)
        return super().vjp(op, x, cotangent, **kwargs)


class HingeMaxOverAllClasses(NumpyBackend):
    """The hinge's max taken over every class, the target's own logit included: a target that leads by
    more than the margin is still charged the margin."""
    breaks = ("multiclass_hinge_loss",)

    def multiclass_hinge_loss(self, logits, target, margin=1.0, reduction="mean"):
        x = np.asarray(logits)
        z = x.astype(np.float64)
        z_t = np.take_along_axis(z, np.asarray(target)[..., None], axis=-1)[..., 0]
        with np.errstate(**_QUIET):
            losses = np.maximum(margin - (z_t - z.max(axis=-1)), 0.0)
        return _reduce(losses, reduction, losses.size, x.dtype)


class KLWithoutZeroLogZero(NumpyBackend):
    """KL as sum p (log p - log q): 0 * -inf is NaN wherever p_i = 0."""
    breaks = ("kl_divergence",)

    def kl_divergence(self, p, q):
        p = np.asarray(p)
        a, b = p.astype(np.float64), np.asarray(q).astype(np.float64)
        with np.errstate(**_QUIET):
            return round_to_dtype((a * (np.log(a) - np.log(b))).sum(axis=-1), p.dtype)


def _reduce(losses, reduction, denominator, dtype):
    losses = np.asarray(losses, dtype=np.float64)
    if reduction == "none":
        return round_to_dtype(losses, dtype)
    total = losses.sum()
    if reduction == "sum":
        return round_to_dtype(np.asarray(total), dtype)
    with np.errstate(**_QUIET):
        return round_to_dtype(np.asarray(total / denominator if denominator else np.nan), dtype)





# -- systematic errors just outside the bounds -----------------------------------------------------------

def _ordinary_example(op):
    """The first explicit example of op's properties: ordinary rows (xentcheck.edges)."""
    from xentcheck.records import OPS

    return OPS[op].edges()[0]


def _units_beyond(op, kind, dtype, margin=3):
    """k such that an error of k units of roundoff (of dtype) is `margin` units beyond the tightest element's
    tolerance of op's agreement property (native bound + the reference's) on the ordinary example."""
    from xentcheck import verdict
    from xentcheck.records import OPS

    case = _ordinary_example(op)
    x, kwargs = case.materialize(dtype)
    kwargs = OPS[op].kwargs(kwargs)
    u = FORMATS[dtype].unit_roundoff
    if kind == "value":
        want = OPS[op].reference(x, **kwargs).astype(np.float64)
        tol = verdict.value_bound(op, x, **kwargs) + verdict.reference_value_bound(op, x, **kwargs)
    elif kind == "jvp":  # the forward-mode property's tangent (xentcheck/properties/test_gradients.py)
        t = np.resize(np.asarray(case.cotangent or (1.0,), dtype=np.float64)[::-1], x.shape).astype(x.dtype)
        want = reference.jvp(op, x, t, **kwargs).astype(np.float64)
        tol = verdict.jvp_bound(op, x, t, **kwargs) + verdict.reference_jvp_bound(op, x, t, **kwargs)
    elif OPS[op].gradients != ("x",):  # one k per gradient (hidden, weight, bias), as its own property holds it
        v = OPS[op].cotangent(case, dtype)
        wants = OPS[op].reference_vjp(x, v, **kwargs)
        natives, ours = verdict.vjp_bound(op, x, v, **kwargs), verdict.vjp_bound(op, x, v, dtype="float64", **kwargs)
        return tuple(None if w is None else _units(w.astype(np.float64), a + b + 0.5 * verdict.ulp(
            w.astype(np.float64), dtype), u, margin) for w, a, b in zip(wants, natives, ours))
    else:
        v = OPS[op].cotangent(case, dtype)
        want = reference.vjp(op, x, v, **kwargs).astype(np.float64)
        tol = verdict.vjp_bound(op, x, v, **kwargs) + verdict.reference_vjp_bound(op, x, v, **kwargs)
    return _units(want, tol, u, margin)


def _units(want, tol, u, margin):
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(want != 0, np.broadcast_to(tol, want.shape) / (u * np.abs(want)), np.inf)
    return int(np.ceil(ratio.min())) + margin


class SystematicErrors(NumpyBackend):
    """Every value scaled by 1 - k u and every vjp and jvp by 1 + k u (u the dtype's unit roundoff), with k per op, kind
    and dtype a few units beyond the tightest tolerance of the agreement property on ordinary rows: the
    systematic errors of a slightly wrong kernel (a biased exp, a reciprocal off by a few ulps), each just
    outside what the bounds admit. `check` must fail every op's value, vjp and jvp agreement in every dtype
    (tests/test_check.py)."""
    breaks = tuple(OPS)
    margin = 3

    def __init__(self):
        self.units = {}

    def _scaled(self, out, op, kind):
        if isinstance(out, tuple):  # several gradients, each scaled by its own k
            dtype = next(o for o in out if o is not None).dtype.name
            key = (op, kind, dtype)
            if key not in self.units:
                self.units[key] = _units_beyond(op, kind, dtype, self.margin)
            return tuple(None if o is None else self._scale(o, k, kind) for o, k in zip(out, self.units[key]))
        out = np.asarray(out)
        key = (op, kind, out.dtype.name)
        if key not in self.units:
            self.units[key] = _units_beyond(op, kind, out.dtype.name, self.margin)
        return self._scale(out, self.units[key], kind)

    def _scale(self, out, units, kind):
        sign = -1 if kind == "value" else 1
        factor = 1 + sign * units * FORMATS[out.dtype.name].unit_roundoff
        with np.errstate(**_QUIET):
            return round_to_dtype(out.astype(np.float64) * factor, out.dtype)

    def vjp(self, op, x, cotangent, **kwargs):
        return self._scaled(super().vjp(op, x, cotangent, **kwargs), op, "vjp")

    def jvp(self, op, x, tangent, **kwargs):
        return self._scaled(super().jvp(op, x, tangent, **kwargs), op, "jvp")


def _systematic_value(op):
    def method(self, *args, **kwargs):
        return self._scaled(getattr(NumpyBackend, op)(self, *args, **kwargs), op, "value")
    method.__name__ = op
    return method


for _op in SystematicErrors.breaks:
    setattr(SystematicErrors, _op, _systematic_value(_op))
del _op


# -- the LM head: linear_cross_entropy ----------------------------------------------------------------

def _logit_gradient(x, v, kwargs):
    """(G = d loss / d u per token (N, V), float64 hidden (N, H), weight, the valid mask), by the reference's
    cross-entropy vjp on the materialised logits, the z-loss's 2 k r lse p, and the soft-cap's slope."""
    h = np.asarray(x, dtype=np.float64).reshape(-1, np.shape(x)[-1])
    w = np.asarray(kwargs["weight"], dtype=np.float64)
    b = None if kwargs.get("bias") is None else np.asarray(kwargs["bias"], dtype=np.float64)
    u = linear.linear_logits(h, w, b)
    cap, z_loss, reduction = kwargs.get("softcap"), kwargs.get("z_loss", 0.0), kwargs.get("reduction", "mean")
    logits = u if cap is None else cap * np.tanh(u / cap)
    target = np.asarray(kwargs["target"]).reshape(-1)
    valid = target != kwargs.get("ignore_index", -100)
    v = np.asarray(v, dtype=np.float64)
    v = v.reshape(-1) if reduction == "none" else v
    g = reference.cross_entropy_vjp(logits, v, target, reduction, kwargs.get("class_weight"),
                                    kwargs.get("ignore_index", -100), kwargs.get("label_smoothing", 0.0))
    g = np.asarray(g, dtype=np.float64)
    lse = reference.logsumexp(logits)
    r_z = np.where(valid, np.broadcast_to(v, valid.shape), 0.0) / (max(valid.sum(), 1) if reduction == "mean" else 1)
    g = g + (2 * z_loss * r_z * lse)[:, None] * reference.softmax(logits)
    if cap is not None:
        g = g / np.cosh(u / cap) ** 2
    return g, h, w, valid


class PlantedLinear(NumpyBackend):
    """The reference's linear_cross_entropy, for one bug each below (float32: the bugs do not depend on it)."""
    breaks = ("linear_cross_entropy",)
    dtypes = "float32"
    properties = "vjp_equals"


class LinearBiasGradientOverIgnoredTokens(PlantedLinear):
    """The bias gradient sums over every token: an ignored token adds its r p (softmax, no target)."""

    def vjp(self, op, x, cotangent, **kwargs):
        d_h, d_w, d_b = super().vjp(op, x, cotangent, **kwargs)
        if d_b is None:
            return d_h, d_w, d_b
        w, b = np.asarray(kwargs["weight"], np.float64), np.asarray(kwargs["bias"], np.float64)
        logits = linear.linear_logits(np.asarray(x, np.float64), w, b).reshape(-1, w.shape[0])
        target = np.asarray(kwargs["target"]).reshape(-1)
        ignored = target == kwargs.get("ignore_index", -100)
        extra = reference.softmax(logits[ignored]).sum(axis=0) * np.mean(np.abs(np.asarray(cotangent, np.float64)))
        return d_h, d_w, round_to_dtype(d_b.astype(np.float64) + extra, d_b.dtype)


class LinearDropsTheLastPartialChunk(PlantedLinear):
    """Chunks of 2 tokens; a last chunk of 1 token is never computed (its loss and gradients are missing)."""
    properties = "value_equals"

    def _dropped(self, kwargs):
        target = np.array(kwargs["target"])
        flat = target.reshape(-1)
        if flat.size % 2:
            flat[-1] = kwargs.get("ignore_index", -100)
        return dict(kwargs, target=target)

    def evaluate(self, op, x, **kwargs):
        return super().evaluate(op, x, **self._dropped(kwargs))

    def vjp(self, op, x, cotangent, **kwargs):
        return super().vjp(op, x, cotangent, **self._dropped(kwargs))


class LinearZLossGradientWithoutTheFactor2(PlantedLinear):
    """d(k lse^2)/dl taken as k lse p: the value right, the gradient's z-loss part half what it should be."""

    def vjp(self, op, x, cotangent, **kwargs):
        return super().vjp(op, x, cotangent, **dict(kwargs, z_loss=kwargs.get("z_loss", 0.0) / 2))


class LinearSoftcapAfterTheSoftmax(PlantedLinear):
    """The cap applied to the log-probabilities, cap tanh(log p / cap), instead of to the logits."""
    properties = "value"

    def evaluate(self, op, x, **kwargs):
        cap = kwargs.get("softcap")
        if cap is None:
            return super().evaluate(op, x, **kwargs)
        w = np.asarray(kwargs["weight"], np.float64)
        b = None if kwargs.get("bias") is None else np.asarray(kwargs["bias"], np.float64)
        logp = reference.log_softmax(linear.linear_logits(np.asarray(x, np.float64), w, b))
        losses = reference.cross_entropy(cap * np.tanh(logp / cap), np.asarray(kwargs["target"]),
                                         kwargs.get("reduction", "mean"), kwargs.get("class_weight"),
                                         kwargs.get("ignore_index", -100), kwargs.get("label_smoothing", 0.0))
        return round_to_dtype(losses, np.asarray(x).dtype)


class LinearHiddenGradientOfShiftedLabels(PlantedLinear):
    """d hidden taken with the targets shifted by one token (next-token labels shifted in the backward but not in
    the forward), the weight and bias gradients right: caught by finite differences of the backend's own forward."""
    dtypes = "float64"
    properties = "finite_differences"

    def vjp(self, op, x, cotangent, **kwargs):
        _, d_w, d_b = super().vjp(op, x, cotangent, **kwargs)
        shifted = np.roll(np.asarray(kwargs["target"]), 1)
        return super().vjp(op, x, cotangent, **dict(kwargs, target=shifted))[0], d_w, d_b


class LinearWeightGradientInBfloat16(PlantedLinear):
    """d weight = sum_i G_i^T h_i accumulated token by token in a bfloat16 accumulator."""

    def vjp(self, op, x, cotangent, **kwargs):
        d_h, d_w, d_b = super().vjp(op, x, cotangent, **kwargs)
        g, h, _, _ = _logit_gradient(x, cotangent, kwargs)
        acc = np.zeros(d_w.shape)
        for i in range(h.shape[0]):
            acc = round_to_dtype(acc + np.outer(g[i], h[i]), "bfloat16").astype(np.float64)
        return d_h, round_to_dtype(acc, d_w.dtype), d_b


class ZLossGradientWithoutTheFactor2(NumpyBackend):
    """cross_entropy's z-loss differentiated as k lse p: the value right, the gradient's z-loss part halved."""
    breaks = ("cross_entropy",)
    properties = "z_loss"

    def vjp(self, op, x, cotangent, **kwargs):
        return super().vjp(op, x, cotangent, **dict(kwargs, z_loss=kwargs.get("z_loss", 0.0) / 2))


class ZLossMeanOverEveryExample(NumpyBackend):
    """cross_entropy's z-loss averaged over every example, ignored ones included, under reduction "mean"."""
    breaks = ("cross_entropy",)
    properties = "value_equals_reference"

    def evaluate(self, op, x, **kwargs):
        z_loss = kwargs.get("z_loss", 0.0)
        target = np.asarray(kwargs.get("target"))
        if op != "cross_entropy" or not z_loss or kwargs.get("reduction", "mean") != "mean" or target.dtype.kind not in "iu":
            return super().evaluate(op, x, **kwargs)
        valid = target != kwargs.get("ignore_index", -100)
        right = super().evaluate(op, x, **kwargs).astype(np.float64)
        z = z_loss * reference.logsumexp(np.asarray(x, np.float64)) ** 2 * valid
        # the right mean divides sum z by the valid examples; this one by all of them
        return round_to_dtype(right - z.sum() / max(valid.sum(), 1) + z.sum() / valid.size, np.asarray(x).dtype)


class SoftcapGradientWithoutTheSlope(NumpyBackend):
    """cross_entropy's gradient with respect to the soft-capped logits returned as the logits' own: the soft-cap's
    slope sech^2(x / cap) forgotten."""
    breaks = ("cross_entropy",)
    properties = "vjp_equals_analytic"

    def vjp(self, op, x, cotangent, **kwargs):
        cap = kwargs.get("softcap")
        if op != "cross_entropy" or cap is None:
            return super().vjp(op, x, cotangent, **kwargs)
        capped = cap * np.tanh(np.asarray(x, np.float64) / cap)
        rest = {k: v for k, v in kwargs.items() if k != "softcap"}
        return round_to_dtype(reference.cross_entropy_vjp(capped, cotangent, **rest), np.asarray(x).dtype)


class GradientWrittenIntoTheLogits(NumpyBackend):
    """cross_entropy's vjp writes its gradient into the logits it was given, as a fused kernel does in its own
    buffer to save memory (Liger's), here without the copy: the value and gradient right, the caller's logits
    overwritten."""
    breaks = ("cross_entropy",)
    properties = "vjp_equals_analytic"

    def vjp(self, op, x, cotangent, **kwargs):
        grad = super().vjp(op, x, cotangent, **kwargs)
        if op == "cross_entropy" and isinstance(x, np.ndarray) and x.flags.writeable:
            x[...] = grad
            return x
        return grad


PLANTED = [name for name, obj in list(globals().items())
           if isinstance(obj, type) and issubclass(obj, NumpyBackend) and obj not in (PlantedBase, PlantedLinear, NumpyBackend)
           and name not in ("SystematicErrors", "ManyBugs")]


class ManyBugs(NumpyBackend):
    """Several defects at once, for the size of check's output (not in PLANTED): softmax 1% high on rows of
    more than 1000 entries (the LLM-sized edges fail, with 131072-entry counterexamples), a crash on
    cross-entropy past 65536 classes and, in the same property, a loss 1% high under label smoothing (two
    distinct failures of one property: the crash must not hide the wrong value; both are explicit edges, so
    that what is found does not hang on Hypothesis's draws), and a vjp of log-softmax with the wrong sign."""
    name = "many-bugs"

    def evaluate(self, op, x, **kwargs):
        out = super().evaluate(op, x, **kwargs)
        if op == "softmax" and np.shape(x)[kwargs.get("axis", -1)] > 1000:
            return round_to_dtype(out.astype(np.float64) * 1.01, out.dtype)
        if op == "cross_entropy" and np.shape(x)[-1] > 65536:
            raise RuntimeError("more than 65536 classes: the int16 class index overflows")
        if op == "cross_entropy" and kwargs.get("label_smoothing", 0.0) > 0:
            return round_to_dtype(out.astype(np.float64) * 1.01, out.dtype)
        return out

    def vjp(self, op, x, cotangent, **kwargs):
        g = super().vjp(op, x, cotangent, **kwargs)
        return round_to_dtype(-g.astype(np.float64), g.dtype) if op == "log_softmax" else g
