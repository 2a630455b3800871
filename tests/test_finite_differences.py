"""The reference's analytic vjps against central finite differences in float64.

For F(t) = <v, f(x + t d)>, the central difference D_h = (F(h) - F(-h)) / 2h satisfies
    |D_h - F'(0)| <= h^2/6 sup|F'''| + (err F(h) + err F(-h)) / 2h + u |D_h|       (Taylor, rounding)
and F'(0) = <vjp(v), d> is computed with error sum|tol_vjp d| + n u sum|g d|. sup|F'''| is bounded per
op through third cumulants of D = d/tau under p (R = max D - min D along a row, Var D <= R^2/4):
    logsumexp   |v| |E[(D - ED)^3]|                   <= |v| R^3 / 4
    log_softmax |sum v| R^3 / 4                          (F = <v, D> t - (sum v) lse)
    softmax     |E[(v-Ev)(D-ED)^3] - 3 Cov(v,D) Var D| <= (R_v R^3)(1/4 + 3/16) <= R_v R^3 / 2
    cross-entropy, per row, |r| A R^3 / 4              (l = A lse - <a, x>)
x and d lie on a coarse binary grid and h is a power of two, so x +- h d is exact. h minimises the
sum of the truncation and rounding terms. A gradient wrong by one part in 10^6 must fail the check.
"""
import numpy as np
import pytest

from _cases import ce_cases, cotangent_for
from xentcheck import bounds, reference

U = 2.0 ** -53


def _grid(rng, shape, scale, bits=10):
    return np.round(rng.standard_normal(shape) * scale * 2 ** bits) / 2 ** bits


def _third_derivative_bound(op, x, v, d, kwargs):
    axis = kwargs.get("axis", -1)
    tau = kwargs.get("temperature", 1.0)
    if op == "cross_entropy":
        problem = reference.ops._CrossEntropy(x, **{k: w for k, w in kwargs.items()})
        r = np.abs(problem.row_scale(v))[:, 0]
        spread = np.ptp(d.reshape(-1, x.shape[-1]), axis=-1)
        return float((r * problem.row_coef_sum * spread ** 3 / 4).sum())
    spread = np.ptp(np.moveaxis(d, axis, -1), axis=-1) / tau
    if op == "logsumexp":
        return float((np.abs(v) * spread ** 3 / 4).sum())
    vr = np.moveaxis(v, axis, -1)
    if op == "log_softmax":
        return float((np.abs(vr.sum(axis=-1)) * spread ** 3 / 4).sum())
    return float((np.ptp(vr, axis=-1) * spread ** 3 / 2).sum())


def _value(op, x, kwargs):
    if op == "cross_entropy":
        return reference.cross_entropy(x, **kwargs)
    return getattr(reference, op)(x, **kwargs)


def _value_error(op, x, v, kwargs):
    """Bound on |F~ - F| at x: the op's float64 bound dotted with |v|, plus the dot product's rounding."""
    f = _value(op, x, kwargs)
    tol = bounds.value_bound(op, x, dtype="float64", **kwargs)
    return float((np.abs(v) * tol).sum() + (v.size + 1) * U * np.abs(v * f).sum())


def check_against_finite_differences(op, x, v, d, kwargs, gradient=None):
    """Return (D_h - D_a, tolerance) for the reference vjp, or for `gradient` in its place."""
    g = reference.vjp(op, x, v, **kwargs) if gradient is None else gradient
    analytic = float((g * d).sum())
    analytic_err = float((bounds.vjp_bound(op, x, v, dtype="float64", **kwargs) * np.abs(d)).sum()
                         + g.size * U * np.abs(g * d).sum())
    m3 = _third_derivative_bound(op, x, v, d, kwargs)
    rounding = _value_error(op, x, v, kwargs)
    h = 2.0 ** np.clip(np.round(np.log2(max(3 * rounding / max(m3, 1e-300), 1e-300) ** (1 / 3))), -30, -4)
    f_plus, f_minus = (float((v * _value(op, x + s * h * d, kwargs)).sum()) for s in (1, -1))
    numeric = (f_plus - f_minus) / (2 * h)
    err_plus, err_minus = (_value_error(op, x + s * h * d, v, kwargs) for s in (1, -1))
    tolerance = h * h / 6 * m3 + (err_plus + err_minus) / (2 * h) + U * abs(numeric) + analytic_err
    return numeric - analytic, tolerance


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
