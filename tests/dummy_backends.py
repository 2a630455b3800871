"""Tiny backends for tests/test_loader.py, loaded by spec as "dummy_backends:<attr>".

They delegate to the NumPy reference backend; only how they are offered (a class, a factory, an
instance) and how they break differs.
"""
import os
import time

import numpy as np

from xentcheck.backends.numpy_backend import NumpyBackend


class GoodBackend(NumpyBackend):
    """A class: the loader instantiates it with no arguments."""
    name = "dummy-good"


def make_backend():
    """A factory: the loader calls it with no arguments."""
    backend = GoodBackend()
    backend.name = "dummy-factory"
    return backend


INSTANCE = GoodBackend()  # an instance: the loader takes it as it is
INSTANCE.name = "dummy-instance"


class CallableBackend(NumpyBackend):
    """An instance that is callable and meets the contract is still an instance: never called."""
    name = "dummy-callable"

    def __call__(self):
        raise AssertionError("the loader called a backend instance")


CALLABLE_INSTANCE = CallableBackend()


class Incomplete:
    """Lacks logsumexp and vjp, and its cross_entropy is not callable."""
    name = "dummy-incomplete"
    cross_entropy = "not a function"

    def softmax(self, x, axis=-1, temperature=1.0):
        return NumpyBackend().softmax(x, axis=axis, temperature=temperature)

    def log_softmax(self, x, axis=-1, temperature=1.0):
        return NumpyBackend().log_softmax(x, axis=axis, temperature=temperature)


class NamelessName(NumpyBackend):
    name = 42  # must be a str


class RaisingBackend(NumpyBackend):
    """A constructor that fails, with a message over several lines."""

    def __init__(self):
        raise RuntimeError("no accelerator found\nsecond line of the traceback-like detail")


def raising_factory():
    raise ValueError("bad configuration")


def factory_of_nothing():
    return None


class HostileName(NumpyBackend):
    """A correct backend whose name is markup: every report must escape it."""
    name = "<script>alert('xentcheck')</script>&amp;"


class Misbehaving(NumpyBackend):
    """Each op breaks a different way; `compare` must record each and go on."""
    name = "dummy-misbehaving"

    def softmax(self, x, axis=-1, temperature=1.0):
        raise RuntimeError("softmax kernel not compiled for this device")

    def log_softmax(self, x, axis=-1, temperature=1.0):
        return super().log_softmax(x, axis=axis, temperature=temperature)[..., :1]  # wrong shape

    def logsumexp(self, x, axis=-1):
        import numpy as np
        return super().logsumexp(x, axis=axis).astype(np.float64)  # wrong dtype

    def cross_entropy(self, logits, target, **kwargs):
        if kwargs.get("reduction") == "none" and logits.shape[-1] == 7 and logits.dtype.name == "float32":
            import time
            time.sleep(3600)  # hangs
        return super().cross_entropy(logits, target, **kwargs)

    def vjp(self, op, x, cotangent, **kwargs):
        import os
        if op == "softmax" and x.shape[-1] == 2 and x.dtype.name == "float32":
            os._exit(7)  # the process dies
        return super().vjp(op, x, cotangent, **kwargs)


class OnlyGeneratedExamplesFindMe(NumpyBackend):
    """Softmax 1% off on short rows holding a logit whose fractional part |x| mod 1 is in (0.32, 0.36): no
    explicit edge has one (their ordinary values are on a grid of 1/16), so the failure comes from a generated
    example, the kind Hypothesis saves in its database; some 4% of generated logits have one."""
    name = "dummy-subtle"

    def softmax(self, x, axis=-1, temperature=1.0):
        import numpy as np
        p = super().softmax(x, axis=axis, temperature=temperature)
        a = np.abs(np.asarray(x, dtype=np.float64))
        fraction = np.mod(a, 1.0)
        if x.shape[axis] < 1000 and ((fraction > 0.32) & (fraction < 0.36)).any():
            return (p * 1.01).astype(p.dtype)
        return p


class ItsOwnSoftmax(NumpyBackend):
    """A different function, differentiated exactly: softmax(16 x), whose vjp is 16 times softmax's vjp at
    16 x. Its values are wrong (the value properties fail it); its gradient is the true derivative of its own
    forward, which finite differences must not call wrong."""
    name = "its-own-softmax"

    def evaluate(self, op, x, **kwargs):
        import numpy as np

        return super().evaluate(op, (np.asarray(x) * 16.0).astype(np.asarray(x).dtype), **kwargs)

    def vjp(self, op, x, cotangent, **kwargs):
        import numpy as np

        g = super().vjp(op, (np.asarray(x) * 16.0).astype(np.asarray(x).dtype), cotangent, **kwargs)
        return (g * 16.0).astype(g.dtype)


def UndeclaredOptax():
    """optax with its answers but without declaring its departures (and no framework): those are failures."""
    from xentcheck.backends.optax_backend import OptaxBackend

    backend = OptaxBackend()
    backend.departures, backend.framework, backend.name = (), None, "optax-undeclared"
    return backend


class MisnamedDeparture(NumpyBackend):
    """Declares a departure that is not in the documented list."""
    name = "misnamed-departure"
    departures = ("zero-times-inf",)


class ZeroGradientOfAnEmptyMean(NumpyBackend):
    """torch's and JAX's answer where every target is ignored: a mean cross-entropy's gradient of 0 (the
    reference's is NaN), declared as the departure it is."""
    name = "zero-gradient-of-an-empty-mean"
    departures = ("all-ignored-mean-gradient",)

    def vjp(self, op, x, cotangent, **kwargs):
        import numpy as np
        grad = super().vjp(op, x, cotangent, **kwargs)
        target = np.asarray(kwargs.get("target"))
        if (op == "cross_entropy" and kwargs.get("reduction", "mean") == "mean" and target.dtype.kind in "iu"
                and np.all(target == kwargs.get("ignore_index", -100))):
            return np.zeros_like(grad)
        return grad


class WrittenBeforeTheHeadOptions:
    """A user's adapter written against the contract before cross_entropy had z_loss and softcap: explicit
    signatures, no **kwargs. It must be reported as not offering those options, not as failing."""
    name = "before-head-options"

    def __init__(self):
        self._numpy = NumpyBackend()

    def softmax(self, x, axis=-1, temperature=1.0):
        return self._numpy.softmax(x, axis=axis, temperature=temperature)

    def log_softmax(self, x, axis=-1, temperature=1.0):
        return self._numpy.log_softmax(x, axis=axis, temperature=temperature)

    def logsumexp(self, x, axis=-1):
        return self._numpy.logsumexp(x, axis=axis)

    def cross_entropy(self, logits, target, reduction="mean", weight=None, ignore_index=-100, label_smoothing=0.0):
        return self._numpy.cross_entropy(logits, target, reduction=reduction, weight=weight,
                                         ignore_index=ignore_index, label_smoothing=label_smoothing)

    def vjp(self, op, x, cotangent, target=None, reduction="mean", weight=None, ignore_index=-100,
            label_smoothing=0.0, axis=-1, temperature=1.0):
        if op == "cross_entropy":
            return self._numpy.vjp(op, x, cotangent, target=target, reduction=reduction, weight=weight,
                                   ignore_index=ignore_index, label_smoothing=label_smoothing)
        options = {"axis": axis} if op == "logsumexp" else {"axis": axis, "temperature": temperature}
        return self._numpy.vjp(op, x, cotangent, **options)


class SwallowsUnknownOptions(NumpyBackend):
    """An adapter whose cross_entropy takes **kwargs and drops what it does not know (z_loss, softcap): it claims
    the options and ignores them, a failure that `check` names."""
    name = "swallows-options"

    def evaluate(self, op, x, **kwargs):
        known = {k: v for k, v in kwargs.items() if k not in ("z_loss", "softcap")}
        return super().evaluate(op, x, **known)


class LinearGradientsAsAList(NumpyBackend):
    """linear_cross_entropy's vjp as a list [d hidden, d weight, d bias], and zeros for d bias where there is no
    bias: both within the contract (a list is the tuple; an absent input's entry is not read)."""
    name = "linear-gradients-as-a-list"

    def vjp(self, op, x, cotangent, **kwargs):
        out = super().vjp(op, x, cotangent, **kwargs)
        if op != "linear_cross_entropy":
            return out
        d_bias = np.zeros(np.shape(kwargs["weight"])[0], np.asarray(x).dtype) if out[2] is None else out[2]
        return [out[0], out[1], d_bias]


class LinearWithoutTheBiasEntry(NumpyBackend):
    """linear_cross_entropy's vjp as (d hidden, d weight), the bias's entry left out: outside the contract."""
    name = "linear-without-the-bias-entry"

    def vjp(self, op, x, cotangent, **kwargs):
        out = super().vjp(op, x, cotangent, **kwargs)
        return out[:2] if op == "linear_cross_entropy" else out



class DiesOrHangsOnNaN(NumpyBackend):
    """On an input holding a NaN: softmax never answers (a deadlock, say); log_softmax dies (os.abort, as a native
    library's failed assertion does)."""

    def evaluate(self, op, x, **kwargs):
        if np.isnan(np.asarray(x, np.float64)).any():
            while op == "softmax":
                time.sleep(0.1)
            os.abort()
        return super().evaluate(op, x, **kwargs)
