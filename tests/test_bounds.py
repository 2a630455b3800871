"""The error bounds' one assumption, and their size.

xentcheck.bounds trusts exp and log to FN_ULPS ulps. Here every shipped framework's exp and log is
measured against the oracle on a dense sweep of each dtype's useful range; a framework that breaks
the assumption would make every bound built on it unsound. The other tests show each bound holds;
the ones below show it stays small on ordinary inputs, so that it is not loosened unnoticed.
"""
import mpmath
import numpy as np
import pytest

from _cases import DTYPES, cast
from xentcheck import bounds
from xentcheck.reference import FORMATS
from xentcheck.reference.exact import round_mpf, ulp_error


def _sweep(dtype, lo, hi, n=4000):
    return np.unique(cast(np.linspace(lo, hi, n), dtype))


def _exact(fn, values, dtype):
    fmt = FORMATS[dtype]
    with mpmath.workprec(fmt.precision + 64):
        return np.array([round_mpf(fn(mpmath.mpf(v)), fmt) for v in values.astype(np.float64).tolist()])


def _frameworks():
    import jax
    import torch

    from xentcheck.backends import load_backend

    load_backend("jax")  # float64 enabled
    to_torch = lambda a: torch.from_numpy(a.view(np.uint16).copy()).view(torch.bfloat16) \
        if a.dtype.name == "bfloat16" else torch.from_numpy(a.copy())  # noqa: E731
    from_torch = lambda t: t.view(torch.uint16).numpy().view(FORMATS["bfloat16"].dtype) \
        if t.dtype == torch.bfloat16 else t.numpy()  # noqa: E731
    return {
        "numpy": (np.exp, np.log),
        "torch": (lambda a: from_torch(torch.exp(to_torch(a))), lambda a: from_torch(torch.log(to_torch(a)))),
        "jax": (lambda a: np.asarray(jax.numpy.exp(a)), lambda a: np.asarray(jax.numpy.log(a))),
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", ["numpy", "torch", "jax"])
def test_exp_and_log_are_within_fn_ulps(framework, dtype):
    pytest.importorskip(framework)
    exp, log = _frameworks()[framework]
    if framework == "numpy" and dtype == "bfloat16":
        pytest.skip("NumPy has no bfloat16 arithmetic of its own; the reference computes in float64")
    fmt = FORMATS[dtype]
    # exp where the result is a normal number (subnormal results are covered by the absolute floor)
    x = _sweep(dtype, np.log(fmt.smallest_normal) + 1, np.log(fmt.max) - 1)
    err = ulp_error(exp(x), _exact(mpmath.exp, x, dtype), dtype)
    assert err.max() <= bounds.FN_ULPS, f"{framework} exp in {dtype}: {err.max()} ulp"
    y = _sweep(dtype, fmt.smallest_normal, min(fmt.max, 1e30) / 2)
    y = np.concatenate([y, _sweep(dtype, 0.5, 4.0)])  # log near 1, where it cancels
    err = ulp_error(log(y), _exact(mpmath.log, y, dtype), dtype)
    assert err.max() <= bounds.FN_ULPS, f"{framework} log in {dtype}: {err.max()} ulp"


@pytest.mark.parametrize("dtype", DTYPES)
def test_bounds_stay_small_on_ordinary_inputs(dtype):
    """Rows of 16 standard-normal logits, tau = 1: each value bound is a few tens of ulps of p at most.

    softmax: dz <= 2u|z| with |z| < 10, so rel_p <= (4|z| + 8 FN + (n+1) ...) u: well under 64 eps.
    """
    fmt = FORMATS[dtype]
    x = cast(np.random.default_rng(0).standard_normal((8, 16)), dtype)
    p = x.astype(np.float64)
    p = np.exp(p - p.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    rel = (bounds.softmax(x) - 18 * fmt.smallest_subnormal) / p
    assert rel.max() < 64 * fmt.eps
    assert bounds.log_softmax(x).max() < 96 * fmt.eps * max(1.0, np.abs(np.log(p)).max())
    assert bounds.logsumexp(x).max() < 64 * fmt.eps * 4
