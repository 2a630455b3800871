"""The reference against the exact oracle, on ordinary and edge inputs, in every dtype.

The bound (xentcheck.bounds.reference_*_bound) is the float64 first-order bound of the algorithm
plus half an ulp of the final rounding; the oracle's own rounding adds another half ulp of the exact
value. Infinities and NaN must match exactly.
"""
import numpy as np
import pytest

from _cases import DTYPES, ROW_CASES, ce_cases, cotangent_for, hard_ce_cases, op_kwargs
from xentcheck import verdict, reference
from xentcheck.verdict import assert_close
from xentcheck.reference import exact
from xentcheck.records import OPS

ROW_OPS = tuple(op for op, record in OPS.items() if record.family == "rows")


def _row_params():
    for case in ROW_CASES:
        for dtype in case.dtypes:
            for op in ROW_OPS:
                for tau in case.temperatures if "temperature" in OPS[op].parameters else (1.0,):
                    yield pytest.param(op, case, dtype, tau, id=f"{op}-{case.name}-{dtype}-tau{tau}")


@pytest.mark.parametrize("op, case, dtype, tau", list(_row_params()))
def test_row_op_value(op, case, dtype, tau):
    x = case.x(dtype)
    kwargs = op_kwargs(op, case, tau)
    got = getattr(reference, op)(x, **kwargs)
    want = getattr(exact, op)(x, **kwargs)
    tol = verdict.tolerance(op, "value", x, kwargs, versus="oracle", exact=want)
    assert_close(got, want, tol, err_msg=f"{op} {case.name} {dtype}")


@pytest.mark.parametrize("op, case, dtype, tau", list(_row_params()))
def test_row_op_vjp(op, case, dtype, tau):
    x = case.x(dtype)
    kwargs = op_kwargs(op, case, tau)
    v = cotangent_for(op, x, kwargs)
    got = reference.vjp(op, x, v, **kwargs)
    want = exact.vjp(op, x, v, **kwargs)
    tol = verdict.tolerance(op, "vjp", x, kwargs, v, versus="oracle", exact=want)
    assert_close(got, want, tol, err_msg=f"vjp {op} {case.name} {dtype}")


CE_CASES = ce_cases(shapes=((7,), (6, 7), (2, 3, 5)))


def _check_cross_entropy(logits, kwargs, dtype, label) -> float:
    """Value and vjp against the oracle within the derived bounds; returns the larger ULP error of the two."""
    got = reference.cross_entropy(logits, **kwargs)
    want = exact.cross_entropy(logits, **kwargs)
    assert_close(got, want, verdict.tolerance("cross_entropy", "value", logits, kwargs, versus="oracle", exact=want), err_msg=f"value {label}")
    worst = float(np.max(exact.ulp_error(got, want, dtype), initial=0))
    v = cotangent_for("cross_entropy", logits, kwargs)
    got = reference.vjp("cross_entropy", logits, v, **kwargs)
    want = exact.vjp("cross_entropy", logits, v, **kwargs)
    assert_close(got, want, verdict.tolerance("cross_entropy", "vjp", logits, kwargs, v, versus="oracle", exact=want), err_msg=f"vjp {label}")
    return max(worst, float(np.max(exact.ulp_error(got, want, dtype), initial=0)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CE_CASES[::3], ids=lambda c: c.id)
def test_cross_entropy_value_and_vjp(case, dtype):
    logits, kwargs = case.make(dtype)
    _check_cross_entropy(logits, kwargs, dtype, case.id)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", hard_ce_cases(), ids=lambda c: c.id)
def test_cross_entropy_small_smoothing_wide_weights_near_one_hot(case, dtype):
    """Label smoothing 1e-3 .. 1e-12, class weights 10**-k .. 10**k, probability targets 1e-3 .. 1e-12 from
    one-hot, on confident rows (target at the max and elsewhere) and ordinary ones. At the max entry the
    gradient is r ((A - a_top) - A (1 - p_top)); A - a_top, formed as A minus a_top, cancels when the target
    is there (it lost 5e8 ulp in float64 at smoothing 1e-9 on [30, 0, 0], 400 in float32 at 1e-12).

    Beyond the derived bound (absolute, about A u at the max entry: it admits that loss), float16, bfloat16
    and float32 are held to the reference's own claim, as in test_losses.py: computed in float64 and
    rounded once, within 1 ulp of the correctly rounded value."""
    logits, kwargs = case.make(dtype)
    worst = _check_cross_entropy(logits, kwargs, dtype, case.id)
    if dtype != "float64":
        assert worst <= 1, f"{case.id} {dtype}: {worst:g} ulp"


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_edges(dtype):
    """-inf logits under every kind of coefficient, NaN rows, all-ignored means: exactly as the oracle."""
    inf = np.inf
    logits = np.array([[0.0, -inf, 1.0], [2.0, 1.0, -inf], [-inf, -inf, -inf], [np.nan, 0.0, 1.0]])
    logits = logits.astype(np.float64).astype(reference.FORMATS[dtype].dtype) if dtype != "bfloat16" \
        else reference.round_to_dtype(logits, dtype)
    cases = [
        dict(target=np.array([0, 0, -100, -100])),                       # -inf at a non-target class
        dict(target=np.array([0, 2, -100, -100])),                       # -inf at the target: loss inf
        dict(target=np.array([0, 0, -100, -100]), weight=np.array([1.0, 0.0, 1.0]), label_smoothing=0.2),
        dict(target=np.array([0, 0, 1, 2]), reduction="none"),           # NaN rows
        dict(target=np.array([-100, -100, -100, -100])),                 # all ignored: NaN
        dict(target=np.array([1, 1, -100, -100]), weight=np.array([1.0, 0.0, 2.0])),  # D = 0: NaN
        dict(target=np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
             reduction="none"),                                          # 0 log 0 with probability targets
    ]
    for kwargs in cases:
        if np.asarray(kwargs["target"]).dtype.kind == "f":
            kwargs["target"] = reference.round_to_dtype(kwargs["target"], dtype)
        got = reference.cross_entropy(logits, **kwargs)
        want = exact.cross_entropy(logits, **kwargs)
        assert_close(got, want, verdict.tolerance("cross_entropy", "value", logits, kwargs, versus="oracle", exact=want), err_msg=str(kwargs))
        v = cotangent_for("cross_entropy", logits, kwargs)
        got = reference.vjp("cross_entropy", logits, v, **kwargs)
        want = exact.vjp("cross_entropy", logits, v, **kwargs)
        assert_close(got, want, verdict.tolerance("cross_entropy", "vjp", logits, kwargs, v, versus="oracle", exact=want), err_msg=str(kwargs))


def test_semantics_of_edges_are_the_designed_ones():
    """Spot checks of DESIGN.md's edge semantics, independent of the oracle."""
    inf = np.inf
    p = reference.softmax(np.array([[-inf, -inf], [-inf, 0.0], [inf, 0.0], [np.nan, 0.0]]))
    assert np.isnan(p[0]).all() and p[1].tolist() == [0.0, 1.0] and np.isnan(p[2]).all() and np.isnan(p[3]).all()
    lse = reference.logsumexp(np.array([[-inf, -inf], [inf, 0.0], [np.nan, inf]]))
    assert lse[0] == -inf and lse[1] == inf and np.isnan(lse[2])
    assert reference.softmax(np.array([3.0, 3.0, 3.0]))[0] == reference.softmax(np.array([3.0, 3.0, 3.0]))[2]
    mean = reference.cross_entropy(np.zeros((2, 3)), np.array([-100, -100]))
    assert np.isnan(mean)
    grad = reference.vjp("cross_entropy", np.zeros((2, 3)), 1.0, target=np.array([-100, -100]))
    assert np.isnan(grad).all()
    assert reference.cross_entropy(np.zeros((0, 3)), np.zeros(0, dtype=int), reduction="sum") == 0


def test_cross_entropy_value_and_grad_is_value_plus_vjp():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((5, 11)).astype(np.float32)
    target = rng.integers(0, 11, 5)
    for reduction in ("mean", "sum", "none"):
        loss, grad = reference.cross_entropy_value_and_grad(logits, target, reduction=reduction, label_smoothing=0.1)
        assert_close(loss, reference.cross_entropy(logits, target, reduction=reduction, label_smoothing=0.1), 0)
        ones = np.ones(5 if reduction == "none" else (), np.float32)
        assert_close(grad, reference.vjp("cross_entropy", logits, ones, target=target, reduction=reduction,
                                         label_smoothing=0.1), 0)


def _finite_row_params():
    for op, case, dtype, tau in (p.values for p in _row_params()):
        if np.isfinite(case.x(dtype).astype(np.float64)).all():
            yield pytest.param(op, case, dtype, tau, id=f"{op}-{case.name}-{dtype}-tau{tau}")


@pytest.mark.parametrize("op, case, dtype, tau", list(_finite_row_params()))
def test_row_op_jvp(op, case, dtype, tau):
    """Forward mode, J t at compare's tangent (cos 1.7 i), on the finite rows: within the derived bound."""
    from xentcheck.compare import tangent

    x = case.x(dtype)
    kwargs, t = op_kwargs(op, case, tau), tangent(x)
    got, want = reference.jvp(op, x, t, **kwargs), exact.jvp(op, x, t, **kwargs)
    assert_close(got, want, verdict.tolerance(op, "jvp", x, kwargs, t, versus="oracle", exact=want),
                 err_msg=f"jvp {op} {case.name} {dtype}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CE_CASES[::3] + hard_ce_cases()[::4], ids=lambda c: c.id)
def test_cross_entropy_jvp(case, dtype):
    from xentcheck.compare import tangent

    logits, kwargs = case.make(dtype)
    t = tangent(logits)
    got, want = reference.jvp("cross_entropy", logits, t, **kwargs), exact.jvp("cross_entropy", logits, t, **kwargs)
    assert_close(got, want, verdict.tolerance("cross_entropy", "jvp", logits, kwargs, t, versus="oracle", exact=want),
                 err_msg=f"jvp {case.id}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_with_z_loss_and_softcap(dtype):
    """The LM head's options on cross_entropy (its compare cases and edges): value, vjp and jvp against the
    oracle within the reference's bound; in the half formats and float32 correctly rounded but for near-ties
    (computed in float64, rounded once)."""
    from xentcheck.compare import tangent

    worst, seen = 0.0, 0
    for label, x, kwargs, v in OPS["cross_entropy"].fixed_inputs(dtype):
        if not (kwargs.get("z_loss") or kwargs.get("softcap") is not None):
            continue
        seen += 1
        t = tangent(x)
        for kind, got, want, extra in (
                ("value", reference.cross_entropy(x, **kwargs), exact.cross_entropy(x, **kwargs), None),
                ("vjp", reference.vjp("cross_entropy", x, v, **kwargs), exact.vjp("cross_entropy", x, v, **kwargs), v),
                ("jvp", reference.jvp("cross_entropy", x, t, **kwargs), exact.jvp("cross_entropy", x, t, **kwargs), t)):
            tol = verdict.tolerance("cross_entropy", kind, x, kwargs, extra, versus="oracle", exact=want)
            assert_close(got, want, tol, err_msg=f"{kind} {label}")
            worst = max(worst, float(np.max(exact.ulp_error(got, want, dtype), initial=0)))
    assert seen >= 8  # the three compare cases and the edges that carry the options
    if dtype != "float64":
        assert worst <= 1, worst
