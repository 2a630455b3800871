"""Gradient properties beyond agreement with the analytic vjp (see test_agreement).

* rows of the softmax, log-softmax and cross-entropy gradients sum to 0, those of log-sum-exp to v
  (sum_j p_j (v_j - <p, v>) = 0, sum_j (v_j - p_j S) = 0, sum_j v p_j = v, A sum p - sum a = 0), and so
  do those of every loss on logits (focal, MSE, hinge: each is unchanged by a shift of its row);
* the backend's vjp equals central finite differences of the backend's own forward, in float64, within
  the tolerance derived in xentcheck.finite_differences: a vjp consistent with its forward;
* second order, where the backend offers hvp(op, x, cotangent, tangent, **kwargs): the Hessian-vector
  product equals the closed form (log-sum-exp's Hessian is diag(p) - p p^T) within its bound.
"""
import numpy as np
import pytest
from hypothesis import assume

from .. import bounds, finite_differences
from ..optable import OPS
from ..reference.ops import _CrossEntropy
from ._common import regular_rows, rows_last
from ._harness import property_of


def _row_sums(op):
    @property_of(op, name=f"test_{op}_gradient_rows_sum_to_{'v' if op == 'logsumexp' else 'zero'}", large_edges=True)
    def check(h, dtype, case):
        """|row sum - (0 or v)| <= bounds.vjp_row_sum_bound: what does not cancel between the terms."""
        x, kwargs = h.inputs(case, dtype)
        v = case.cotangent_for(op, dtype)
        g = h.vjp(op, x, v, kwargs)
        axis = kwargs.get("axis", -1)
        sums = rows_last(g, axis).sum(axis=-1)
        allowed = bounds.vjp_row_sum_bound(op, x, v, **h.precision(), **kwargs)
        want = v.astype(np.float64) if op == "logsumexp" else np.zeros_like(sums)
        if "axis" not in OPS[op].kwarg_names:  # cross-entropy and the losses: rows along the last axis
            rows = np.isfinite(x.astype(np.float64)).all(axis=-1) & np.isfinite(sums)
        else:
            rows = regular_rows(x, axis)
        bad = rows & ~(np.abs(sums - want) <= allowed)
        h.holds(~bad, f"gradient rows of {op} sum to {'v' if op == 'logsumexp' else 0} within "
                f"{np.broadcast_to(allowed, sums.shape)[bad][:1]}: {sums[bad][:4]}",
                op=op, kind="vjp", x=x, kwargs=kwargs, layout="rows")

    return check


def _finite_differences(op):
    @property_of(op, name=f"test_{op}_vjp_matches_finite_differences")
    def check(h, dtype, case):
        x, kwargs = h.inputs(case, dtype)
        probabilities = OPS[op].domain == "probabilities"
        x = finite_differences.on_grid(x, 16 if probabilities else 10)
        assume(np.isfinite(x).all() and x.size > 0)  # differences need finite logits
        # a mean over zero weight is NaN: nothing to difference
        assume(not (op == "cross_entropy" and kwargs["reduction"] == "mean"
                    and _CrossEntropy(x, **kwargs).denominator == 0))
        v = case.cotangent_for(op, dtype)
        if probabilities:  # p + t d stays inside [0, 1], entries at 0 and 1 stay put
            d = finite_differences.probability_direction(x)
            assume(np.isfinite(OPS[op].reference(x, **kwargs)).all())  # KL or H(p, q) = +inf (q_i = 0 < p_i)
        else:
            d = finite_differences.on_grid(np.cos(np.arange(x.size) * 1.7).reshape(x.shape), 4)
        # the segment crosses a kink: a difference quotient there measures no derivative
        assume(op != "multiclass_hinge_loss" or finite_differences.hinge_is_linear_along(x, d, kwargs))
        # a NaN or inf loss (a departure, or the value properties' business): nothing to difference
        assume(np.isfinite(h.call(op, x, kwargs).astype(np.float64)).all())
        g = h.vjp(op, x, v, kwargs)
        # a NaN or inf gradient along d: the agreement property's business (a failure or a departure)
        assume(np.isfinite(np.where(d != 0, g.astype(np.float64), 0.0)).all())
        diff, tol = finite_differences.check(op, lambda y: h.call(op, y, kwargs), x, v, d, kwargs, g)
        h.holds(abs(diff) <= tol, f"<vjp, d> == central difference of the forward: off by {abs(diff):.3g}, "
                                  f"allowed {tol:.3g}")

    check.xentcheck_dtypes = ("float64",)
    return check


def _second_order(op):
    @property_of(op, name=f"test_{op}_hessian_vector_product")
    def check(h, dtype, case):
        if not hasattr(h.backend, "hvp"):
            pytest.skip("unsupported: the backend has no hvp (optional)")
        x, kwargs = h.inputs(case, dtype)
        assume(np.isfinite(x.astype(np.float64)).all())
        assume(not (op == "cross_entropy" and kwargs["reduction"] == "mean"
                    and _CrossEntropy(x, **kwargs).denominator == 0))
        v = case.cotangent_for(op, dtype)
        t = np.resize(np.asarray(case.cotangent or (1.0,), dtype=np.float64)[::-1], x.shape).astype(x.dtype)
        got = h.hvp(op, x, v, t, kwargs)
        record = OPS[op]
        want = record.hvp(x, v, t, **kwargs)
        tol = record.hvp_bound(x, v, t, **h.precision(), **kwargs) \
            + record.hvp_bound(x, v, t, dtype="float64", **kwargs)
        h.close(got.astype(np.float64), want, tol, f"hvp of {op} == closed form (diag(p) - p p^T)",
                check_dtype=False, op=op, kind="hvp", x=x, kwargs=kwargs)

    return check


for _op in OPS:
    _makers = ((_row_sums,) if OPS[_op].domain == "logits" else ()) + (_finite_differences,)
    for _make in _makers + ((_second_order,) if OPS[_op].hvp else ()):
        _test = _make(_op)
        globals()[_test.__name__] = _test
del _op, _make, _makers, _test
