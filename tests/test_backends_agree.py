"""The torch and JAX adapters against the reference, on the same cases as the oracle tests.

Both sides are measured against the same exact value, so they may differ by the backend's bound
(for its dtype's compute format) plus the reference's bound: |b - r| <= |b - exact| + |exact - r|.
Where a framework departs from the reference on purpose (xentcheck.semantics), the test asserts the
departure's documented answer, and that the departure is still seen, so that a change in the framework is
noticed.
"""
import numpy as np
import pytest

from _cases import ROW_CASES, ce_cases, cotangent_for, op_kwargs
from xentcheck import verdict, reference
from xentcheck.verdict import assert_close, close_mask
from xentcheck.backends import BackendUnavailable, load_backend
from xentcheck.backends.contract import compute_formats, flushes_subnormals
from xentcheck.records import OPS
from xentcheck.semantics import declared, departures

ROW_OPS = tuple(op for op, record in OPS.items() if record.family == "rows")


def _backend(name):
    try:
        return load_backend(name)
    except BackendUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module", params=["torch", "jax"])
def backend(request):
    return _backend(request.param)


def _precision(backend, dtype):
    """The bounds' keyword arguments for this backend: its compute format, and the smallest normal as floor
    where it flushes subnormals to zero."""
    floor = reference.FORMATS[dtype].smallest_normal if flushes_subnormals(backend, dtype) else None
    return {"compute": compute_formats(backend)[dtype][0], "floor": floor}


def _agree(backend, op, kind, x, kwargs, got, want, backend_tol, reference_tol, msg, cotangent=None):
    """Agreement within the bounds, except on the elements of a documented departure, which must hold the
    reference's answer within the bounds or the departure's documented one, and differ from the reference
    somewhere (the departure is still there)."""
    found = departures(declared(backend), op, kind, x, kwargs, np.shape(want), cotangent)
    mask = np.zeros(np.shape(want), dtype=bool)
    close = close_mask(got, want, backend_tol + reference_tol)
    for d, hit in found:
        mask |= hit
        answered = np.broadcast_to(d.expected(got, x, kwargs, cotangent), np.shape(want)) | close
        assert answered[hit].all(), f"{msg}: {d.key} should give {d.answer}; got {got[hit & ~answered][:4]}"
    tol = np.where(mask, np.inf, np.broadcast_to(backend_tol + reference_tol, np.shape(want)))
    expected = np.where(mask, got.astype(np.float64), want.astype(np.float64)).astype(want.dtype)
    assert_close(got, expected, tol, err_msg=msg)
    if found:
        same = (got.astype(np.float64) == want.astype(np.float64)) | (np.isnan(got.astype(np.float64))
                                                                         & np.isnan(want.astype(np.float64)))
        assert not same[mask].all(), f"{msg}: documented departure {[d.key for d, _ in found]} no longer seen"


def _row_params():
    return [pytest.param(op, case, dtype, tau, id=f"{op}-{case.name}-{dtype}-tau{tau}")
            for case in ROW_CASES for dtype in case.dtypes for op in ROW_OPS
            for tau in (case.temperatures if "temperature" in OPS[op].parameters else (1.0,))]


@pytest.mark.parametrize("op, case, dtype, tau", _row_params())
def test_row_op_value_and_vjp(backend, op, case, dtype, tau):
    x = case.x(dtype)
    kwargs = op_kwargs(op, case, tau)
    precision = _precision(backend, dtype)
    want = getattr(reference, op)(x, **kwargs)
    got = getattr(backend, op)(x, **kwargs)
    _agree(backend, op, "value", x, kwargs, got, want, verdict.value_bound(op, x, **precision, **kwargs),
           verdict.reference_value_bound(op, x, **kwargs), f"{backend.name} {op} {case.name} {dtype}")
    v = cotangent_for(op, x, kwargs)
    want = reference.vjp(op, x, v, **kwargs)
    got = backend.vjp(op, x, v, **kwargs)
    _agree(backend, op, "vjp", x, kwargs, got, want, verdict.vjp_bound(op, x, v, **precision, **kwargs),
           verdict.reference_vjp_bound(op, x, v, **kwargs), f"{backend.name} vjp {op} {case.name} {dtype}", v)


CE_CASES = ce_cases()


# every option in the two formats at the ends: float16 (computed in float32, like bfloat16; its overflow
# edges) and float64 (computed in itself, like float32); `xentcheck check --backend torch` runs the others
@pytest.mark.parametrize("dtype", ("float16", "float64"))
@pytest.mark.parametrize("case", CE_CASES, ids=lambda c: c.id)
def test_cross_entropy_every_option(backend, case, dtype):
    """Every combination of shape, target kind, reduction, weight, ignore_index and smoothing."""
    logits, kwargs = case.make(dtype)
    precision = _precision(backend, dtype)
    want = reference.cross_entropy(logits, **kwargs)
    got = backend.cross_entropy(logits, **kwargs)
    _agree(backend, "cross_entropy", "value", logits, kwargs, got, want,
           verdict.value_bound("cross_entropy", logits, **precision, **kwargs),
           verdict.reference_value_bound("cross_entropy", logits, **kwargs), f"{backend.name} {case.id} {dtype}")
    v = cotangent_for("cross_entropy", logits, kwargs)
    got = backend.vjp("cross_entropy", logits, v, **kwargs)
    want = reference.vjp("cross_entropy", logits, v, **kwargs)
    _agree(backend, "cross_entropy", "vjp", logits, kwargs, got, want,
           verdict.vjp_bound("cross_entropy", logits, v, **precision, **kwargs),
           verdict.reference_vjp_bound("cross_entropy", logits, v, **kwargs),
           f"{backend.name} vjp {case.id} {dtype}", v)


def test_torch_departures_are_as_documented():
    torch_backend = _backend("torch")
    logits = np.array([[0.0, -np.inf, 1.0], [1.0, 2.0, 3.0]])
    q = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert np.isfinite(reference.cross_entropy(logits, q))
    assert np.isnan(torch_backend.cross_entropy(logits, q))  # 0 * -inf
    with pytest.raises(IndexError):
        torch_backend.cross_entropy(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match="target"):
        reference.cross_entropy(logits, np.array([0, 3]))


def test_jax_departures_are_as_documented():
    jax_backend = _backend("jax")
    logits = np.array([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]])
    assert np.isnan(jax_backend.cross_entropy(logits, np.array([0, 3]), reduction="none")[1])
    wrapped = jax_backend.cross_entropy(logits, np.array([0, -1]), reduction="none")[1]
    last = reference.cross_entropy(logits[1], np.array(2))  # -1 wraps to the last class
    assert_close(wrapped, last, verdict.value_bound("cross_entropy", logits[1], target=np.array(2))
                 + verdict.reference_value_bound("cross_entropy", logits[1], target=np.array(2)))
    tiny = np.array([0.0, -100.0], dtype=np.float32)  # exp(-100) is subnormal in float32
    assert jax_backend.softmax(tiny)[1] == 0 < reference.softmax(tiny)[1]


@pytest.mark.parametrize("name", ["torch", "jax"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_second_order_is_the_softmax_hessian(name, reduction):
    """hvp of cross-entropy: per row r A (diag(p) - p p^T) t, by each framework's double differentiation."""
    b = _backend(name)
    rng = np.random.default_rng(5)
    logits, tangent = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    target = np.array([1, 0, -100, 5])
    scale = 1.0 / 3 if reduction == "mean" else 1.0  # three examples are not ignored
    p = reference.softmax(logits)
    valid = (target != -100)[:, None]
    want = valid * scale * (p * tangent - p * (p * tangent).sum(axis=-1, keepdims=True))
    got = b.hvp("cross_entropy", logits, np.float64(1.0), tangent, target=target, reduction=reduction)
    # the backend's hvp bound, and the same float64 bound for the closed form evaluated here
    hvp_bound = OPS["cross_entropy"].hvp_bound
    tol = hvp_bound(logits, np.float64(1.0), tangent, target=target, reduction=reduction) \
        + hvp_bound(logits, np.float64(1.0), tangent, target=target, reduction=reduction)
    assert_close(got, want, tol)


def test_integer_logits_are_computed_in_float64(backend):
    """The contract computes integer logits in float64 (the jax adapter once padded them with -inf cast to an
    integer: softmax 0, cross-entropy inf); a framework that declines them says so (torch's kernels do)."""
    x = np.array([[1, 2, 3], [0, -5, 2]])
    for op, kwargs in [("softmax", {}), ("log_softmax", {}), ("logsumexp", {}),
                       ("cross_entropy", {"target": np.array([0, 2])})]:
        try:
            got = getattr(backend, op)(x, **kwargs)
        except NotImplementedError:
            continue
        assert np.asarray(got).dtype == np.float64, (backend.name, op)
        assert_close(got, getattr(reference, op)(x, **kwargs),
                     verdict.tolerance(op, "value", x.astype(np.float64), kwargs), err_msg=f"{backend.name} {op}")
