"""Every op, value and vjp, equals the reference within the sum of the two derived bounds.

This is what catches a slightly wrong exp that renormalisation hides from sum-to-one, a float64 input
computed in float32, or a gradient off by a factor: any error the properties of one backend alone
cannot see. Output shape and dtype must be the reference's exactly.
"""
import numpy as np

from .. import verdict
from ..records import OPS
from ._common import native, native_vjp, reference_bound
from ._harness import property_of


def _ignored_options(op, x, kwargs, got, tol) -> str:
    """' (...)' naming the later options set here (OpRecord.later_options) where the answer is the reference's
    without them: a backend that takes them and ignores them (an adapter's **kwargs swallowing z_loss)."""
    later = [k for k in OPS[op].later_options if k in OPS[op].backend_kwargs(kwargs)]
    if not later:
        return ""
    without = OPS[op].reference(x, **{k: v for k, v in kwargs.items() if k not in later})
    if np.shape(got) != np.shape(without) or not verdict.close_mask(got, without, tol).all():
        return ""
    return f" (it equals the answer without {', '.join(later)}: the backend seems to ignore {later[0]}=)"


def _value_agreement(op):
    @property_of(op, name=f"test_{op}_value_equals_reference", large_edges=True)
    def check(h, dtype, case):
        x, kwargs = h.inputs(case, dtype)
        got = h.call(op, x, kwargs)
        want, reference_tol, dtype = verdict.reference_answer(op, "value", x, kwargs)
        tol = native(h, op, x, kwargs) + reference_tol
        what = f"{op} value"
        if not verdict.close_mask(got, want, tol).all():
            what += _ignored_options(op, x, kwargs, got, native(h, op, x, kwargs) + reference_bound(op, x, kwargs))
        h.close(got, want, tol, what, op=op, kind="value", x=x, kwargs=kwargs, check_dtype=dtype)

    return check


def _vjp_agreement(op):
    @property_of(op, name=f"test_{op}_vjp_equals_analytic", large_edges=True)
    def check(h, dtype, case):
        x, kwargs = h.inputs(case, dtype)
        v = OPS[op].cotangent(case, dtype)
        got = h.vjp(op, x, v, kwargs)
        want, reference_tol, dtype = verdict.reference_answer(op, "vjp", x, kwargs, v)
        h.close(got, want, native_vjp(h, op, x, v, kwargs) + reference_tol,
                f"vjp of {op} (shape and dtype those of the input)", op=op, kind="vjp", x=x, kwargs=kwargs,
                cotangent=v, check_dtype=dtype)

    return check


for _op in OPS:
    # an op with several inputs' gradients checks them in its own module (test_linear_cross_entropy)
    for _make in (_value_agreement, _vjp_agreement) if OPS[_op].gradients == ("x",) else (_value_agreement,):
        _test = _make(_op)
        globals()[_test.__name__] = _test
del _op, _make, _test
