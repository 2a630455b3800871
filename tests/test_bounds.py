"""The error bounds' assumptions, and their shape.

xentcheck.bounds trusts exp and log to FN_ULPS[c] ulps of the compute format c, and exp(0) to be exactly
1. Here every shipped framework's exp and log is measured against the oracle on a dense sweep of each
format's useful range; a framework that breaks the assumption would make every bound built on it unsound.
The bounds themselves are held against the oracle elsewhere (test_reference_vs_oracle, test_backends_agree)
and against planted errors just outside them (test_check: SystematicErrors).
"""
import mpmath
import numpy as np
import pytest

from _cases import DTYPES, cast
from xentcheck import bounds, verdict
from xentcheck.records import OPS, flattened
from xentcheck.reference import FORMATS
from xentcheck.reference.exact import round_mpf, ulp_error


def _sweep(dtype, lo, hi, n=4000):
    return np.unique(cast(np.linspace(lo, hi, n), dtype))


def _exact(fn, values, dtype):
    fmt = FORMATS[dtype]
    with mpmath.workprec(fmt.precision + 64):
        return np.array([round_mpf(fn(mpmath.mpf(v)), fmt) for v in values.astype(np.float64).tolist()])


def _exp_and_log(framework):
    """The framework's own exp and log on NumPy arrays (bfloat16 through ml_dtypes); imported only when asked."""
    if framework == "numpy":
        return np.exp, np.log
    if framework == "jax":
        import jax

        from xentcheck.backends import load_backend

        load_backend("jax")  # float64 enabled
        return (lambda a: np.asarray(jax.numpy.exp(a))), (lambda a: np.asarray(jax.numpy.log(a)))
    import torch

    def to_torch(a):
        return torch.from_numpy(a.view(np.uint16).copy()).view(torch.bfloat16) if a.dtype.name == "bfloat16" \
            else torch.from_numpy(a.copy())

    def from_torch(t):
        return t.view(torch.uint16).numpy().view(FORMATS["bfloat16"].dtype) if t.dtype == torch.bfloat16 \
            else t.numpy()

    return (lambda a: from_torch(torch.exp(to_torch(a)))), (lambda a: from_torch(torch.log(to_torch(a))))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", ["numpy", "torch", "jax"])
def test_exp_and_log_are_within_fn_ulps(framework, dtype):
    """FN_ULPS[dtype] is in ulps of the exact value; ulp_error measures from the oracle's rounded value, which
    is within half an ulp of it."""
    pytest.importorskip(framework)
    exp, log = _exp_and_log(framework)
    if framework == "numpy" and dtype == "bfloat16":
        pytest.skip("NumPy has no bfloat16 arithmetic of its own; the reference computes in float64")
    fmt = FORMATS[dtype]
    allowed = bounds.FN_ULPS[dtype] - 0.5
    # exp where the result is a normal number (subnormal results are covered by the absolute floor)
    x = _sweep(dtype, np.log(fmt.smallest_normal) + 1, np.log(fmt.max) - 1)
    err = ulp_error(exp(x), _exact(mpmath.exp, x, dtype), dtype)
    assert err.max() <= allowed, f"{framework} exp in {dtype}: {err.max()} ulp"
    assert exp(cast(np.zeros(3), dtype)).astype(np.float64).tolist() == [1.0] * 3  # exp(0) = 1 exactly
    y = _sweep(dtype, fmt.smallest_normal, min(fmt.max, 1e30) / 2)
    y = np.concatenate([y, _sweep(dtype, 0.5, 4.0)])  # log near 1, where it cancels
    err = ulp_error(log(y), _exact(mpmath.log, y, dtype), dtype)
    assert err.max() <= allowed, f"{framework} log in {dtype}: {err.max()} ulp"


def _ordinary(op, dtype):
    case = OPS[op].edges()[0]
    x, kwargs = case.materialize(dtype)
    return x, OPS[op].kwargs(kwargs), case.cotangent_for(OPS[op], dtype)


@pytest.mark.parametrize("dtype", ("float16", "bfloat16"))
@pytest.mark.parametrize("op", list(OPS))
def test_a_wider_compute_format_never_loosens_a_bound(op, dtype):
    """Every value and vjp bound of half precision computed in float32 is at most the native one, and at
    least a storage rounding of the result away from 0 (a correctly rounded result is admitted)."""
    x, kwargs, v = _ordinary(op, dtype)
    for bound, args in ((verdict.value_bound, (op, x)), (verdict.vjp_bound, (op, x, v))):
        wide = flattened(bound(*args, compute="float32", **kwargs))  # (several gradients: one array)
        native = flattened(bound(*args, compute=dtype, **kwargs))
        assert np.all(wide <= native), f"{op} {bound.__name__}: float32 compute looser than {dtype}"
    value = OPS[op].reference(x, **kwargs).astype(np.float64)
    assert np.all(verdict.value_bound(op, x, **kwargs) >= FORMATS[dtype].unit_roundoff * np.abs(value))


def test_the_compute_format_is_the_declared_one():
    """arithmetic(): the default pairs, a declaration, and an unknown format refused with its name."""
    assert bounds.arithmetic("bfloat16").describe() == "bfloat16 in float32"
    assert bounds.arithmetic("bfloat16", "bfloat16").describe() == "bfloat16"
    assert bounds.arithmetic("float64").describe() == "float64"
    with pytest.raises(TypeError, match="dtype: must be one of"):
        bounds.arithmetic("float32", "float8")


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_z_loss_gradient_at_a_minus_inf_logit_is_bounded_not_exact(dtype):
    """p = 0 at a -inf logit, so the z-loss adds nothing there (p times an infinite gap to the log-sum-exp was
    NaN, and a NaN tolerance is 0); the gradient -r at a masked target still rounds: the correctly rounded
    answer is within the bound (found by `check --backend torch --seed 9`)."""
    x = cast(np.array([[-np.inf, 0, 0, 0], [0, 0, 0, -np.inf], [0, 0, 0, 0]]), dtype)
    kwargs = dict(target=np.array([0, 1, 0]), reduction="mean", z_loss=1e-4)
    cotangent = cast(np.array(1.0), dtype)
    want, reference_tol, _ = verdict.reference_answer("cross_entropy", "vjp", x, kwargs, cotangent)
    tol = OPS["cross_entropy"].vjp_bound(x, cotangent, dtype=dtype, **kwargs)
    rounded = OPS["cross_entropy"].oracle_vjp(x, cotangent, **kwargs).astype(np.float64)
    assert np.all(np.abs(rounded - want) <= tol + reference_tol), (rounded, want, tol)
    assert tol[0, 0] > 0


def test_a_focal_gradient_with_gamma_below_1_at_a_confident_target_is_not_held_exact():
    """1 - p_t of about 1e-44 has no correct bit in float32, so (1 - p_t)^(gamma - 1) makes the bound infinite
    (documented); at the target it was inf * |p_t - 1| with p_t - 1 = 0 in float64, NaN, hence 0, and the
    correctly rounded answer (0 for the exact -5e-66) failed."""
    x = np.array([[0.0, -102.0, -102.0]], np.float32)
    kwargs = dict(target=np.array([0]), reduction="none", gamma=0.5, alpha=0.25)
    cotangent = np.array([2.5], np.float32)
    want, reference_tol, _ = verdict.reference_answer("focal_loss", "vjp", x, kwargs, cotangent)
    tol = OPS["focal_loss"].vjp_bound(x, cotangent, dtype="float32", **kwargs)
    rounded = OPS["focal_loss"].oracle_vjp(x, cotangent, **kwargs).astype(np.float64)
    assert want[0, 0] != 0 and tol[0, 0] > 0
    assert np.all(np.abs(rounded - want) <= tol + reference_tol)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_a_gradient_where_p_underflows_float64_next_to_a_huge_error_is_not_held_exact(op):
    """tau = 0.001 puts the entries 1 below the max at z = -1000: p = 0 in float64, while x / tau rounded into
    bfloat16 (the divide-first form) makes their relative error infinite; 0 * inf was NaN, hence a tolerance of 0,
    and the reference's own correctly rounded answers failed (log-softmax: 1504 for 1500; softmax: 0 for
    1e-214), found by `check --backend numpy --profile dev --seed 14`."""
    x = cast(np.array([88.5, 88.5, 88.5, 89.5, 89.0]), "bfloat16")  # 89.0: z = -500, p = 7e-218, rel_s huge
    cotangent = cast(np.array([1.5, 0.0, 0.0, 0.0, 1.5]), "bfloat16")
    kwargs = dict(temperature=0.001)
    want, reference_tol, _ = verdict.reference_answer(op, "vjp", x, kwargs, cotangent)
    tol = OPS[op].vjp_bound(x, cotangent, dtype="bfloat16", **kwargs)
    for answer in (OPS[op].reference_vjp(x, cotangent, **kwargs), OPS[op].oracle_vjp(x, cotangent, **kwargs)):
        assert np.all(np.abs(answer.astype(np.float64) - want) <= tol + reference_tol), (answer, want, tol)
