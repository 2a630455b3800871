"""Gradient properties beyond agreement with the analytic vjp (see test_agreement).

* rows of the softmax, log-softmax and cross-entropy gradients sum to 0, those of log-sum-exp to v
  (sum_j p_j (v_j - <p, v>) = 0, sum_j (v_j - p_j S) = 0, sum_j v p_j = v, A sum p - sum a = 0), and so
  do those of every loss on logits (focal, MSE, hinge: each is unchanged by a shift of its row);
* the backend's vjp equals central finite differences of the backend's own forward, in float64, within
  the tolerance derived in xentcheck.finite_differences: a vjp consistent with its forward;
* second order, where the backend offers hvp(op, x, cotangent, tangent, **kwargs): the Hessian-vector
  product equals the closed form (log-sum-exp's Hessian is diag(p) - p p^T) within its bound;
* forward mode, where the backend offers jvp(op, x, tangent, **kwargs) and the record derives it: J t equals
  the reference's within the two derived bounds, and is the adjoint of the backend's own vjp:
  <J t, v> = <t, J^T v> within the sum of the two bounds, each weighted by the other vector.
"""
import numpy as np
import pytest
from hypothesis import assume

from .. import bounds, finite_differences, verdict
from ..records import OPS
from ._common import regular_rows, rows_last
from ._harness import property_of


def _row_sums(op):
    record = OPS[op]

    @property_of(op, name=f"test_{op}_gradient_row_sums", large_edges=True)
    def check(h, dtype, case):
        """Each row of the vjp sums to record.row_sum (0, or v for log-sum-exp) within record.row_sum_bound
        (what does not cancel between the terms), or within the sum of the elementwise bounds."""
        x, kwargs = h.inputs(case, dtype)
        v = record.cotangent(case, dtype)
        want = record.row_sum(x, v, kwargs)
        assume(want is not None)  # no row sum derived for these options (cross-entropy's soft-cap)
        g = h.vjp(op, x, v, kwargs)
        axis = kwargs.get("axis", -1)
        sums = rows_last(g, axis).sum(axis=-1)
        allowed = (record.row_sum_bound or bounds.elementwise_row_sum_bound(record.vjp_bound))(
            x, v, **h.precision(), **kwargs)
        want = np.broadcast_to(want, sums.shape)
        if "axis" not in record.kwarg_names:  # cross-entropy and the losses: rows along the last axis
            rows = np.isfinite(x.astype(np.float64)).all(axis=-1) & np.isfinite(sums)
        else:
            rows = regular_rows(x, axis)
        bad = rows & ~(np.abs(sums - want) <= allowed)
        h.holds(~bad, f"gradient rows of {op} sum to {want[bad][:1]} within {np.broadcast_to(allowed, sums.shape)[bad][:1]}: "
                f"{sums[bad][:4]}", op=op, kind="vjp", x=x, kwargs=kwargs, layout="rows")

    return check


def _finite_differences(op):
    record = OPS[op]

    @property_of(op, name=f"test_{op}_vjp_matches_finite_differences")
    def check(h, dtype, case):
        x, kwargs = h.inputs(case, dtype)
        probabilities = record.domain == "probabilities"
        x = finite_differences.on_grid(x, 16 if probabilities else 10)
        assume(np.isfinite(x).all() and x.size > 0)  # differences need finite logits
        assume(record.defined_at is None or record.defined_at(x, kwargs))  # e.g. a mean over zero weight: NaN
        v = record.cotangent(case, dtype)
        if probabilities:  # p + t d stays inside [0, 1], entries at 0 and 1 stay put
            d = finite_differences.probability_direction(x)
        else:
            d = finite_differences.on_grid(np.cos(np.arange(x.size) * 1.7).reshape(x.shape), 4)
        # e.g. the segment crosses the hinge's kink: a difference quotient there measures no derivative
        assume(record.fd_applies is None or record.fd_applies(x, d, kwargs))
        # a NaN or inf loss (a departure, or the value properties' business): nothing to difference
        assume(np.isfinite(h.call(op, x, kwargs).astype(np.float64)).all())
        g = h.vjp(op, x, v, kwargs)
        g = g[0] if isinstance(g, tuple) else g  # an op with several inputs' gradients: x's (the hidden states)
        # a NaN or inf gradient along d: the agreement property's business (a failure or a departure)
        assume(np.isfinite(np.where(d != 0, g.astype(np.float64), 0.0)).all())
        def forward(y):
            """The backend's forward where it is the reference's function within its value bound: the tolerance
            treats it as that function plus a bounded error (finite_differences.check), so it is valid for it."""
            value = h.call(op, y, kwargs)
            want = record.reference(y, **kwargs)
            if not verdict.close_mask(value, want, h.bound(op, y, kwargs) + verdict.reference_value_bound(
                    op, y, **kwargs)).all():
                h.not_judged("finite differences: the backend's forward departs from the reference on the "
                             "segment (its value properties judge that)")
            return value

        diff, tol = finite_differences.check(record, forward, x, v, d, kwargs, g)
        h.holds(abs(diff) <= tol, f"<vjp, d> == central difference of the forward: off by {abs(diff):.3g}, "
                                  f"allowed {tol:.3g}")

    check.xentcheck_dtypes = ("float64",)
    return check


def _second_order(op):
    record = OPS[op]

    @property_of(op, name=f"test_{op}_hessian_vector_product")
    def check(h, dtype, case):
        if not hasattr(h.backend, "hvp"):
            pytest.skip("unsupported: the backend has no hvp (optional)")
        x, kwargs = h.inputs(case, dtype)
        assume(np.isfinite(x.astype(np.float64)).all())
        assume(record.defined_at is None or record.defined_at(x, kwargs))
        v = record.cotangent(case, dtype)
        t = np.resize(np.asarray(case.cotangent or (1.0,), dtype=np.float64)[::-1], x.shape).astype(x.dtype)
        want = record.hvp(x, v, t, **kwargs)
        assume(want is not None)  # no closed form for these options (cross-entropy's z-loss and soft-cap)
        got = h.hvp(op, x, v, t, kwargs)
        tol = record.hvp_bound(x, v, t, **h.precision(), **kwargs) \
            + record.hvp_bound(x, v, t, dtype="float64", **kwargs)
        h.close(got.astype(np.float64), want, tol, f"hvp of {op} == closed form (diag(p) - p p^T)",
                check_dtype=False, op=op, kind="hvp", x=x, kwargs=kwargs)

    return check


def _tangent(case, x):
    """A tangent of x's shape from the spec's cotangent values, reversed (so it differs from the cotangent)."""
    return np.resize(np.asarray(case.cotangent or (1.0,), dtype=np.float64)[::-1], x.shape).astype(x.dtype)


def _forward_mode(op):
    record = OPS[op]

    @property_of(op, name=f"test_{op}_jvp_equals_reference_and_is_the_vjp_adjoint")
    def check(h, dtype, case):
        if not callable(getattr(h.backend, "jvp", None)):
            pytest.skip("unsupported: the backend has no jvp (optional)")
        x, kwargs = h.inputs(case, dtype)
        # edges (inf, NaN, a mean over nothing) are the value and vjp properties' business
        assume(np.isfinite(x.astype(np.float64)).all())
        assume(record.defined_at is None or record.defined_at(x, kwargs))
        t = _tangent(case, x)
        got = h.jvp(op, x, t, kwargs)
        own = verdict.jvp_bound(op, x, t, **h.precision(), **kwargs)
        want, reference_tol, out_dtype = verdict.reference_answer(op, "jvp", x, kwargs, t)
        h.close(got, want, own + reference_tol, f"jvp of {op} == the reference's J t", op=op, kind="jvp", x=x,
                kwargs=kwargs, check_dtype=out_dtype)
        v = record.cotangent(case, dtype)
        g = h.vjp(op, x, v, kwargs).astype(np.float64)
        assume(np.isfinite(g).all())
        got, v64, t64 = got.astype(np.float64), v.astype(np.float64), t.astype(np.float64)
        forward, backward = np.sum(got * v64), np.sum(t64 * g)
        # both sides summed in float64: (n + 1) u64 times the sum of the terms' magnitudes each
        u64 = 2.0 ** -53 * (x.size + 1)
        allowed = (np.sum(np.abs(v64) * own) + np.sum(np.abs(t64) * verdict.vjp_bound(op, x, v, **h.precision(),
                                                                                      **kwargs))
                   + u64 * (np.sum(np.abs(got * v64)) + np.sum(np.abs(t64 * g))))
        h.holds(abs(forward - backward) <= allowed,
                f"<J t, v> == <t, J^T v> for {op}: {forward!r} vs {backward!r}, off by {abs(forward - backward):.3g}, "
                f"allowed {allowed:.3g}")

    return check


for _op, _record in OPS.items():
    _makers = ((_row_sums,) if _record.row_sum else ()) + ((_finite_differences,) if _record.third_derivative else ())
    _makers += ((_second_order,) if _record.hvp else ()) + ((_forward_mode,) if _record.jvp else ())
    for _make in _makers:
        _test = _make(_op)
        globals()[_test.__name__] = _test
del _op, _record, _make, _makers, _test
