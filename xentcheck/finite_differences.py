"""A vjp against central finite differences of its forward, in float64, with a derived tolerance.

For F(t) = <v, f(x + t d)>, the central difference D_h = (F(h) - F(-h)) / 2h satisfies
    |D_h - F'(0)| <= h^2/6 sup|F'''| + (err F(h) + err F(-h)) / 2h + u |D_h|        (Taylor, rounding)
and F'(0) = <vjp(v), d> is computed with error sum|tol_vjp d| + n u sum|g d|. sup|F'''| is bounded per
op through third cumulants of D = d/tau under p (R = max D - min D along a row, Var D <= R^2/4):
    logsumexp   |v| |E[(D - ED)^3]|                    <= |v| R^3 / 4
    log_softmax |sum v| R^3 / 4                           (F = <v, D> t - (sum v) lse)
    softmax     |E[(v-Ev)(D-ED)^3] - 3 Cov(v,D) Var D|  <= R_v R^3 (1/4 + 3/16) <= R_v R^3 / 2
    cross-entropy, per row, |r| A R^3 / 4               (l = A lse - <a, x>)
    linear CE   the same with R the spread of d W^T, the logits' direction (hidden states along d)
The loss family, per row (u = log p_t along the line: |u'|, |u''|, |u'''| <= r R, r R^2, r R^3 with
r = 1 - p_t, each a moment of D - D_t under p, whose target term is 0):
    focal       |r_i| alpha_t R^3 (g(g+1)(g+5) + 3g(g+3) + g + 1)   (g = gamma; phi(u) = -u (1 - e^u)^g has
                |phi'| <= (1+g) r^g, |phi''| <= g(g+3) r^(g-1), |phi'''| <= g(g+1)(g+5) r^(g-2))
    MSE         |r_i| R^3 (11.5 + 4)                      (|(p^2)'''| <= 11.5 p^2 R^3, |p'''| <= 2 p R^3)
    hinge       0 where the segment x +- d/16 crosses no kink (`hinge_is_linear_along`; else no check)
    entropy, KL sum |v| |d_i|^3 / (p_i - |d_i|/16)^2    (|(p log p)'''| = 1/p^2, and h <= 1/16)
    H(p, q)     0 (linear in p)
x + h d is exact when x and d lie on a coarse binary grid (see `on_grid`) and h is a power of two;
h minimises the sum of the truncation and rounding terms. Probabilities take `probability_direction`,
which keeps p + t d inside [0, 1] and away from 0 for |t| <= 1/16.
"""
from __future__ import annotations

import numpy as np

from .reference.losses import IndexLossProblem, alpha_at_target, hinge_parts
from .reference.ops import CrossEntropyProblem, logsumexp

U = 2.0 ** -53


def on_grid(values, bits: int) -> np.ndarray:
    """float64 values rounded to multiples of 2**-bits (finite entries), so that x + h d stays exact."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(values), np.round(values * 2.0 ** bits) / 2.0 ** bits, values)


H_MAX = 2.0 ** -4  # the largest step `check` takes


def probability_direction(p, bits: int = 20) -> np.ndarray:
    """A direction for probabilities p (float64 on a grid of 2**-16 or coarser): d_i = c_i min(p_i, 1 - p_i)
    with |c_i| <= 1, rounded toward 0 onto a grid of 2**-bits, so that p + t d stays in [p/2, 1] for
    |t| <= H_MAX, and d_i = 0 where p_i is 0 or 1."""
    p = np.asarray(p, dtype=np.float64)
    c = np.cos(np.arange(p.size) * 1.7).reshape(p.shape)
    return np.trunc(c * np.minimum(p, 1 - p) * 2.0 ** bits) / 2.0 ** bits


def hinge_is_linear_along(x, d, kwargs) -> bool:
    """The hinge loss is linear on x + t d, |t| <= H_MAX: at both ends the max among j != t is attained by
    one and the same class alone, and the slack has one strict sign (linear pieces, so nothing between)."""
    ends = []
    for s in (-H_MAX, H_MAX):
        problem = IndexLossProblem(np.asarray(x, dtype=np.float64) + s * np.asarray(d), kwargs["target"], "none")
        slack, others, m = hinge_parts(problem, kwargs.get("margin", 1.0))
        ends.append(((others == m[:, None]).sum(axis=-1) == 1, np.argmax(others, axis=-1), np.sign(slack)))
    (one_a, k_a, s_a), (one_b, k_b, s_b) = ends
    return bool(np.all(one_a & one_b & (k_a == k_b) & (s_a == s_b) & (s_a != 0)))


# --------------------------------------------------------------------------------------------
# sup|F'''|, per op (see the module docstring): each record holds its own (xentcheck.records).

def _spread(d, x):
    """R per example: max - min of the direction along the class axis (the last)."""
    return np.ptp(np.asarray(d, dtype=np.float64).reshape(-1, np.shape(x)[-1]), axis=-1)


def _row_spread(d, kwargs):
    return np.ptp(np.moveaxis(np.asarray(d, dtype=np.float64), kwargs.get("axis", -1), -1), axis=-1) \
        / kwargs.get("temperature", 1.0)


def softmax_third(x, v, d, kwargs) -> float:
    vr = np.moveaxis(np.asarray(v, dtype=np.float64), kwargs.get("axis", -1), -1)
    return float((np.ptp(vr, axis=-1) * _row_spread(d, kwargs) ** 3 / 2).sum())


def log_softmax_third(x, v, d, kwargs) -> float:
    vr = np.moveaxis(np.asarray(v, dtype=np.float64), kwargs.get("axis", -1), -1)
    return float((np.abs(vr.sum(axis=-1)) * _row_spread(d, kwargs) ** 3 / 4).sum())


def logsumexp_third(x, v, d, kwargs) -> float:
    return float((np.abs(np.asarray(v, dtype=np.float64)) * _row_spread(d, kwargs) ** 3 / 4).sum())


def cross_entropy_third(x, v, d, kwargs) -> float:
    """The cross-entropy's |r| A R^3 / 4 per row and, with a z-loss k lse^2 (no soft-cap: `cross_entropy_fd_applies`),
    (lse^2)''' = 2 (3 lse' lse'' + lse lse''') with |lse'| <= max|d|, lse'' <= R^2 / 4, |lse'''| <= R^3 / 4 and
    |lse| <= |lse(x)| + max|d| / 16 on the segment (h <= 1/16): |r_z| k (1.5 max|d| R^2 + (|lse| + max|d|/16) R^3 / 2)."""
    options = {k: val for k, val in kwargs.items() if k not in ("z_loss", "softcap")}
    problem = CrossEntropyProblem(x, **options)
    r = np.abs(problem.row_scale(v))[:, 0]
    spread = _spread(d, x)
    third = r * problem.row_coef_sum * spread ** 3 / 4
    z_loss = kwargs.get("z_loss", 0.0)
    if z_loss:
        rows = np.asarray(x, dtype=np.float64).reshape(-1, problem.n_classes)
        reach = np.abs(np.asarray(d, dtype=np.float64).reshape(rows.shape)).max(axis=-1)
        lse = np.abs(logsumexp(rows)) + reach / 16
        v = np.asarray(v, dtype=np.float64)
        share = np.abs(v.reshape(-1) if problem.reduction == "none" else np.full(r.shape, float(v)))
        if problem.reduction == "mean":
            share = share / max(int(problem.valid.sum()), 1)
        third = third + np.where(problem.valid, share, 0.0) * z_loss * (1.5 * reach * spread ** 2 + lse * spread ** 3 / 2)
    return float(third.sum())


def cross_entropy_fd_applies(x, d, kwargs) -> bool:
    """cross_entropy_third is derived without a soft-cap."""
    return kwargs.get("softcap") is None


def linear_cross_entropy_third(x, v, d, kwargs) -> float:
    """Along a direction d of the hidden states the logits move along D = d W^T (exactly linear), so the
    cross-entropy's bound holds with R the spread of D per token (no soft-cap, no z-loss: `linear_fd_applies`)."""
    w = np.asarray(kwargs["weight"], dtype=np.float64)
    h = np.asarray(x, dtype=np.float64).reshape(-1, w.shape[1])
    bias = kwargs.get("bias")
    logits = h @ w.T + (0.0 if bias is None else np.asarray(bias, dtype=np.float64))
    problem = CrossEntropyProblem(logits, np.asarray(kwargs["target"]).reshape(-1), kwargs.get("reduction", "mean"),
                                  kwargs.get("class_weight"), kwargs.get("ignore_index", -100),
                                  kwargs.get("label_smoothing", 0.0))
    v = np.asarray(v, dtype=np.float64)
    r = np.abs(problem.row_scale(v.reshape(-1) if v.ndim else v))[:, 0]
    spread = np.ptp(np.asarray(d, dtype=np.float64).reshape(h.shape) @ w.T, axis=-1)
    return float((np.where(r > 0, r * problem.row_coef_sum * spread ** 3 / 4, 0.0)).sum())


def linear_fd_applies(x, d, kwargs) -> bool:
    """The linear cross-entropy's third-derivative bound is derived without a soft-cap or z-loss."""
    return not kwargs.get("z_loss") and kwargs.get("softcap") is None


def focal_loss_third(x, v, d, kwargs) -> float:
    problem = IndexLossProblem(x, kwargs["target"], kwargs.get("reduction", "mean"))
    r = np.abs(problem.row_scale(v))[:, 0]
    g = kwargs.get("gamma", 2.0)
    alpha_t = alpha_at_target(problem, kwargs.get("alpha"))
    return float((r * alpha_t * _spread(d, x) ** 3).sum() * (g * (g + 1) * (g + 5) + 3 * g * (g + 3) + g + 1))


def mse_loss_third(x, v, d, kwargs) -> float:
    problem = IndexLossProblem(x, kwargs["target"], kwargs.get("reduction", "mean"))
    r = np.abs(problem.row_scale(v))[:, 0]
    return float((r * 15.5 * _spread(d, x) ** 3).sum())


def zero_third(x, v, d, kwargs) -> float:
    """Piecewise linear (the hinge, where `hinge_is_linear_along` holds) or linear (H(p, q) in p)."""
    return 0.0


def entropy_third(x, v, d, kwargs) -> float:
    """Entropy and KL in p: |(p log p)'''| = 1/p^2 on the segment (h <= H_MAX)."""
    p, d = np.asarray(x, dtype=np.float64), np.asarray(d, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(d != 0, np.abs(d) ** 3 / (p - np.abs(d) * H_MAX) ** 2, 0.0)
    return float((np.abs(np.asarray(v, dtype=np.float64))[..., None] * per).sum())


def _value_error(record, x, v, kwargs, value) -> float:
    """Bound on |F~ - F| at x: the op's float64 bound dotted with |v|, plus the dot product's rounding."""
    tol = record.value_bound(x, **kwargs, dtype="float64")
    v = np.asarray(v, dtype=np.float64)
    return float((np.abs(v) * tol).sum() + (v.size + 1) * U * np.abs(v * value).sum())


def check(record, forward, x, v, d, kwargs, gradient) -> tuple[float, float]:
    """(D_h - <gradient, d>, tolerance) for float64 x, cotangent v, direction d.

    `record` is the op's (xentcheck.records: its float64 bounds, its third-derivative bound); `forward(x)`
    evaluates the op (e.g. a backend's); `gradient` is the vjp under test at x.
    """
    d = np.asarray(d, dtype=np.float64)
    g = np.where(d != 0, np.asarray(gradient, dtype=np.float64), 0.0)  # coordinates not moved do not count
    analytic = float((g * d).sum())
    vjp_tol = record.vjp_bound(x, v, **kwargs, dtype="float64")
    vjp_tol = np.where(d != 0, vjp_tol[0] if isinstance(vjp_tol, tuple) else vjp_tol, 0.0)  # x's of several
    analytic_err = float((vjp_tol * np.abs(d)).sum() + g.size * U * np.abs(g * d).sum())
    m3 = record.third_derivative(x, v, d, kwargs)
    rounding = _value_error(record, x, v, kwargs, forward(x))
    ratio = max(3 * rounding / max(m3, 1e-300), 1e-300)
    h = 2.0 ** float(np.clip(np.round(np.log2(ratio) / 3), -30, np.log2(H_MAX)))
    sides = []
    for s in (1, -1):
        xs = x + s * h * d
        value = np.asarray(forward(xs), dtype=np.float64)
        sides.append((float((np.asarray(v, dtype=np.float64) * value).sum()), _value_error(record, xs, v, kwargs, value)))
    (f_plus, err_plus), (f_minus, err_minus) = sides
    numeric = (f_plus - f_minus) / (2 * h)
    tolerance = h * h / 6 * m3 + (err_plus + err_minus) / (2 * h) + U * abs(numeric) + analytic_err
    return numeric - analytic, tolerance
