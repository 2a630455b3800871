"""An xentcheck backend for NAME: `xentcheck check --backend THIS_FILE.py` checks it.

Written by `xentcheck new-backend NAME`. As written it runs NumPy (xentcheck's reference) so that the
first check passes; replace each marked line with your library's call and check again. The contract is in
xentcheck/backends/contract.py: NumPy arrays in and out, bfloat16 as ml_dtypes.bfloat16; raise
NotImplementedError for what you do not support (reported as unsupported, never as a pass).
"""
import numpy as np

from xentcheck.backends import Backend
from xentcheck.records import OPS


def to_framework(a):
    """A NumPy array into your library. NumPy has no bfloat16 of its own (ml_dtypes supplies it), so most
    libraries take it through float32, which holds every bfloat16 exactly, and cast back inside:
    e.g. torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16) or jnp.asarray(a) (JAX takes it as is)."""
    return a  # replace


def to_numpy(t, dtype):
    """Your library's result back into NumPy, in the input's dtype: for bfloat16 cast to float32 first
    (exact), then .astype(dtype) (exact again): e.g. t.float().numpy().astype(dtype)."""
    return np.asarray(t).astype(dtype)  # replace


class NAME_CLASS(Backend):
    name = "NAME"
    # framework = "torch"           # declare torch's (or "jax"'s) documented departures, if built on it
    # departures = ("zero-coefficient-minus-inf-logit",)  # or declare by name (`xentcheck departures` lists them)
    # compute_formats = {"bfloat16": "bfloat16"}  # declare where a dtype is not computed in float32

    def evaluate(self, op, x, **kwargs):
        """op(x, **kwargs) with every keyword argument given: softmax / log_softmax (axis, temperature),
        logsumexp (axis), cross_entropy (target, reduction, weight, ignore_index, label_smoothing; and z_loss or
        softcap when set: raise NotImplementedError for an option your library lacks)."""
        if op not in ("softmax", "log_softmax", "logsumexp", "cross_entropy"):
            raise NotImplementedError(f"{self.name}: no {op}")  # the optional loss family, for one
        t = to_framework(x)
        out = OPS[op].reference(t, **kwargs)  # replace: your library's op on t, e.g. lib.softmax(t, dim=axis)
        return to_numpy(out, x.dtype)

    def vjp(self, op, x, cotangent, **kwargs):
        """d<cotangent, op(x, **kwargs)>/dx by your library's autograd, shaped and typed like x."""
        if op not in ("softmax", "log_softmax", "logsumexp", "cross_entropy"):
            raise NotImplementedError(f"{self.name}: no {op}")
        t, v = to_framework(x), to_framework(cotangent)
        grad = OPS[op].reference_vjp(t, v, **kwargs)  # replace: e.g. torch.autograd.grad or jax.vjp of the op
        return to_numpy(grad, x.dtype)
