"""A vjp against central finite differences of its forward, in float64, with a derived tolerance.

For F(t) = <v, f(x + t d)>, the central difference D_h = (F(h) - F(-h)) / 2h satisfies
    |D_h - F'(0)| <= h^2/6 sup|F'''| + (err F(h) + err F(-h)) / 2h + u |D_h|        (Taylor, rounding)
and F'(0) = <vjp(v), d> is computed with error sum|tol_vjp d| + n u sum|g d|. sup|F'''| is bounded per
op through third cumulants of D = d/tau under p (R = max D - min D along a row, Var D <= R^2/4):
    logsumexp   |v| |E[(D - ED)^3]|                    <= |v| R^3 / 4
    log_softmax |sum v| R^3 / 4                           (F = <v, D> t - (sum v) lse)
    softmax     |E[(v-Ev)(D-ED)^3] - 3 Cov(v,D) Var D|  <= R_v R^3 (1/4 + 3/16) <= R_v R^3 / 2
    cross-entropy, per row, |r| A R^3 / 4               (l = A lse - <a, x>)
x + h d is exact when x and d lie on a coarse binary grid (see `on_grid`) and h is a power of two;
h minimises the sum of the truncation and rounding terms.
"""
from __future__ import annotations

import numpy as np

from . import bounds
from .reference.ops import _CrossEntropy

U = 2.0 ** -53


def on_grid(values, bits: int) -> np.ndarray:
    """float64 values rounded to multiples of 2**-bits (finite entries), so that x + h d stays exact."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(values), np.round(values * 2.0 ** bits) / 2.0 ** bits, values)


def third_derivative_bound(op, x, v, d, kwargs) -> float:
    axis = kwargs.get("axis", -1)
    tau = kwargs.get("temperature", 1.0)
    if op == "cross_entropy":
        problem = _CrossEntropy(x, **kwargs)
        r = np.abs(problem.row_scale(v))[:, 0]
        spread = np.ptp(np.asarray(d, dtype=np.float64).reshape(-1, np.shape(x)[-1]), axis=-1)
        return float((r * problem.row_coef_sum * spread ** 3 / 4).sum())
    spread = np.ptp(np.moveaxis(np.asarray(d, dtype=np.float64), axis, -1), axis=-1) / tau
    v = np.asarray(v, dtype=np.float64)
    if op == "logsumexp":
        return float((np.abs(v) * spread ** 3 / 4).sum())
    vr = np.moveaxis(v, axis, -1)
    if op == "log_softmax":
        return float((np.abs(vr.sum(axis=-1)) * spread ** 3 / 4).sum())
    return float((np.ptp(vr, axis=-1) * spread ** 3 / 2).sum())


def _value_error(op, x, v, kwargs, value) -> float:
    """Bound on |F~ - F| at x: the op's float64 bound dotted with |v|, plus the dot product's rounding."""
    tol = bounds.value_bound(op, x, dtype="float64", **kwargs)
    v = np.asarray(v, dtype=np.float64)
    return float((np.abs(v) * tol).sum() + (v.size + 1) * U * np.abs(v * value).sum())


def check(op: str, forward, x, v, d, kwargs, gradient) -> tuple[float, float]:
    """(D_h - <gradient, d>, tolerance) for float64 x, cotangent v, direction d.

    `forward(x)` evaluates the op (e.g. a backend's); `gradient` is the vjp under test at x.
    """
    g = np.asarray(gradient, dtype=np.float64)
    d = np.asarray(d, dtype=np.float64)
    analytic = float((g * d).sum())
    analytic_err = float((bounds.vjp_bound(op, x, v, dtype="float64", **kwargs) * np.abs(d)).sum()
                         + g.size * U * np.abs(g * d).sum())
    m3 = third_derivative_bound(op, x, v, d, kwargs)
    rounding = _value_error(op, x, v, kwargs, forward(x))
    ratio = max(3 * rounding / max(m3, 1e-300), 1e-300)
    h = 2.0 ** float(np.clip(np.round(np.log2(ratio) / 3), -30, -4))
    sides = []
    for s in (1, -1):
        xs = x + s * h * d
        value = np.asarray(forward(xs), dtype=np.float64)
        sides.append((float((np.asarray(v, dtype=np.float64) * value).sum()), _value_error(op, xs, v, kwargs, value)))
    (f_plus, err_plus), (f_minus, err_minus) = sides
    numeric = (f_plus - f_minus) / (2 * h)
    tolerance = h * h / 6 * m3 + (err_plus + err_minus) / (2 * h) + U * abs(numeric) + analytic_err
    return numeric - analytic, tolerance
