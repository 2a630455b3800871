"""A toy op added the way issue 12 promises: one record plus its math, nothing else edited.

sigmoid(x) = 1 / (1 + exp(-x)) is the first probability of the 2-class softmax of (x, 0), elementwise. Its
reference, oracle and bounds are the softmax's on that stacked pair: the oracle's softmax is correctly
rounded, so its first column is the correctly rounded sigmoid; its vjp v s (1 - s) is the softmax vjp's
first column at the cotangent (v, 0). d^3 s/dx^3 = s (1 - s)(1 - 6 s + 6 s^2) is at most 1/8 in size.

Loaded through XENTCHECK_OPS=tests/toy_ops.py (every process of a run reads it), it shows up in `check`,
`compare` and `bench` (tests/test_toy_op.py).
"""
import numpy as np

from xentcheck import bounds
from xentcheck.records import register, row_op
from xentcheck.reference import exact, softmax, softmax_vjp, validation


def _pair(x):
    x = validation.as_float_array(x, "x")
    return np.stack([x, np.zeros_like(x)], axis=-1)


def _first(fn):
    """fn of the (x, 0) pairs, first column: (x, **kwargs) -> fn(pairs)[..., 0], axis ignored (elementwise)."""
    return lambda x, axis=-1, **kwargs: fn(_pair(x), **kwargs)[..., 0]


def _first_vjp(fn):
    return lambda x, cotangent, axis=-1, **kwargs: fn(_pair(x), _pair(np.asarray(cotangent)), **kwargs)[..., 0]


def sigmoid_third(x, v, d, kwargs) -> float:
    return float((np.abs(np.asarray(v, dtype=np.float64)) * np.abs(np.asarray(d, dtype=np.float64)) ** 3).sum() / 8)


SIGMOID = register(row_op(
    "sigmoid", reference_fn=_first(softmax), reference_vjp=_first_vjp(softmax_vjp), oracle=_first(exact.softmax),
    oracle_vjp=_first_vjp(exact.softmax_vjp), value_bound=_first(bounds.softmax),
    vjp_bound=_first_vjp(bounds.softmax_vjp), third_derivative=sigmoid_third, temperature=False, row_sum=None))
