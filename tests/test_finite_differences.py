"""The reference's analytic vjps against central finite differences in float64.

The tolerance is derived in xentcheck.finite_differences (Taylor truncation with a third-cumulant bound
on the third derivative, plus the rounding of both sides from xentcheck.bounds). x and d lie on a
coarse binary grid and h is a power of two, so x +- h d is exact. A gradient wrong by one part in 10^6
must fail.
"""
import numpy as np
import pytest

from _cases import ce_cases, cotangent_for
from xentcheck import finite_differences, reference
from xentcheck.records import OPS


def _grid(rng, shape, scale, bits=10):
    return finite_differences.on_grid(rng.standard_normal(shape) * scale, bits)


def _forward(op, kwargs):
    return lambda x: getattr(reference, op)(x, **kwargs)


def check_against_finite_differences(op, x, v, d, kwargs, gradient=None):
    g = reference.vjp(op, x, v, **kwargs) if gradient is None else gradient
    return finite_differences.check(OPS[op], _forward(op, kwargs), x, v, d, kwargs, g)


ROW_CASES = [
    ("softmax", (5, 8), {"axis": -1, "temperature": 1.0}),
    ("softmax", (5, 8), {"axis": 0, "temperature": 0.3}),
    ("softmax", (3, 4, 6), {"axis": 1, "temperature": 4.0}),
    ("log_softmax", (5, 8), {"axis": -1, "temperature": 1.0}),
    ("log_softmax", (4, 9), {"axis": 0, "temperature": 2.5}),
    ("logsumexp", (6, 7), {"axis": -1}),
    ("logsumexp", (2, 3, 5), {"axis": 1}),
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("op, shape, kwargs", ROW_CASES, ids=lambda c: str(c))
def test_row_op_vjp_matches_finite_differences(op, shape, kwargs, seed):
    rng = np.random.default_rng(seed)
    x, d = _grid(rng, shape, 3.0), _grid(rng, shape, 1.0, bits=4)
    v = cotangent_for(op, x, kwargs, seed=seed)
    diff, tol = check_against_finite_differences(op, x, v, d, kwargs)
    assert abs(diff) <= tol, f"{op} {kwargs}: |D_h - D_a| = {abs(diff):.3g} > {tol:.3g}"


@pytest.mark.parametrize("case", ce_cases(shapes=((6,), (5, 6), (2, 3, 4)))[::2], ids=lambda c: c.id)
def test_cross_entropy_vjp_matches_finite_differences(case):
    x, kwargs = case.make("float64")
    rng = np.random.default_rng(case.seed + 1)
    x = np.round(x * 2 ** 10) / 2 ** 10
    d = _grid(rng, x.shape, 1.0, bits=4)
    v = cotangent_for("cross_entropy", x, kwargs)
    if kwargs.get("reduction", "mean") == "mean" and np.isnan(reference.cross_entropy(x, **kwargs)):
        pytest.skip("a mean over zero weight is NaN, and so is its gradient: nothing to difference")
    diff, tol = check_against_finite_differences("cross_entropy", x, v, d, kwargs)
    assert abs(diff) <= tol, f"{case.id}: |D_h - D_a| = {abs(diff):.3g} > {tol:.3g}"


@pytest.mark.parametrize("op, shape, kwargs", ROW_CASES[:1] + ROW_CASES[3:4] + ROW_CASES[5:6], ids=str)
def test_a_gradient_wrong_by_one_part_in_a_million_fails(op, shape, kwargs):
    """The tolerance is not vacuous: a slightly wrong gradient is told apart from the right one."""
    rng = np.random.default_rng(11)
    x, d = _grid(rng, shape, 3.0), _grid(rng, shape, 1.0, bits=4)
    v = cotangent_for(op, x, kwargs, seed=3)
    wrong = reference.vjp(op, x, v, **kwargs) * (1 + 1e-6)
    diff, tol = check_against_finite_differences(op, x, v, d, kwargs, gradient=wrong)
    assert abs(diff) > tol


def _with_z_loss_and_linear(seed):
    """(op, x, kwargs, d) of cross_entropy with a z-loss (large logits make the term matter) and of
    linear_cross_entropy (d moves the hidden states), each on the grid."""
    rng = np.random.default_rng(seed)
    x = _grid(rng, (4, 6), 4.0)
    target = np.array([1, -100, 5, 0])
    yield "cross_entropy", x, dict(target=target, reduction="mean", z_loss=0.5, label_smoothing=0.1), \
        _grid(rng, x.shape, 1.0, bits=4)
    yield "cross_entropy", x, dict(target=target, reduction="none", z_loss=1e-2), _grid(rng, x.shape, 1.0, bits=4)
    h, w = _grid(rng, (3, 5), 1.0), rng.standard_normal((7, 5))
    yield "linear_cross_entropy", h, dict(weight=w, target=np.array([6, 0, -100]), bias=rng.standard_normal(7),
                                          reduction="sum", label_smoothing=0.2), _grid(rng, h.shape, 1.0, bits=4)


@pytest.mark.parametrize("seed", range(2))
def test_z_loss_and_the_lm_head_against_finite_differences(seed):
    """cross_entropy with a z-loss and linear_cross_entropy's d hidden: their third-derivative bounds hold (the
    reference passes), and are not vacuous (its gradient wrong by one part in 10^6 fails)."""
    for op, x, kwargs, d in _with_z_loss_and_linear(seed):
        record = OPS[op]
        v = cotangent_for(op, x, kwargs)
        g = record.reference_vjp(x, v, **kwargs)
        g = g[0] if isinstance(g, tuple) else g  # d hidden
        forward = lambda y: record.reference(y, **kwargs)  # noqa: E731
        diff, tol = finite_differences.check(record, forward, x, v, d, kwargs, g)
        assert abs(diff) <= tol, f"{op} {kwargs}: |D_h - D_a| = {abs(diff):.3g} > {tol:.3g}"
        diff, tol = finite_differences.check(record, forward, x, v, d, kwargs, g * (1 + 1e-6))
        assert abs(diff) > tol, f"{op} {kwargs}: a gradient off by 1e-6 passes (tolerance {tol:.3g})"
