"""Subnormal flushing is found by asking the backend, not by its declaration."""
import numpy as np
import pytest

from xentcheck.backends import load_backend
from xentcheck.backends.contract import flushes_subnormals
from xentcheck.backends.numpy_backend import NumpyBackend
from xentcheck.reference import FORMATS, round_to_dtype

DTYPES = ("float16", "bfloat16", "float32", "float64")


class Flushing(NumpyBackend):
    """The reference with every subnormal result flushed to 0, and no declaration of it."""
    name = "flushing"

    def evaluate(self, op, x, **kwargs):
        out = super().evaluate(op, x, **kwargs)
        wide = np.asarray(out).astype(np.float64)
        return round_to_dtype(np.where(np.abs(wide) < FORMATS[np.asarray(x).dtype.name].smallest_normal, 0.0, wide),
                              np.asarray(x).dtype.name)


class DeclaresButCannotAnswer(NumpyBackend):
    name = "declares"
    flushes_subnormals = True

    def evaluate(self, op, x, **kwargs):
        raise NotImplementedError("nothing")


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_probe_tells_flushing_from_gradual_underflow(dtype):
    assert not flushes_subnormals(NumpyBackend(), dtype)
    assert flushes_subnormals(Flushing(), dtype)
    assert flushes_subnormals(DeclaresButCannotAnswer(), dtype)  # no answer: its declaration stands


def test_jax_on_cpu_is_found_to_flush_and_torch_not():
    jax, torch = (load_backend(name) for name in ("jax", "torch"))
    assert flushes_subnormals(jax, "float32") and not flushes_subnormals(torch, "float32")
