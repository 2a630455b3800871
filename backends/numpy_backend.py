"""The NumPy backend: the reference itself, its vjp (and jvp where a record derives one) from the analytic
formulas (every op of xentcheck.records)."""
from __future__ import annotations

from ..records import OPS
from .contract import Backend


class NumpyBackend(Backend):
    name = "numpy"
    note = "xentcheck.reference: NumPy, float64 inside for the narrow formats; analytic vjps"

    def evaluate(self, op, x, **kwargs):
        return OPS[op].reference(x, **kwargs)

    def vjp(self, op, x, cotangent, **kwargs):
        return OPS[op].reference_vjp(x, cotangent, **kwargs) if op in OPS else _unknown(op)

    def jvp(self, op, x, tangent, **kwargs):
        if op not in OPS:
            _unknown(op)
        if OPS[op].jvp is None:
            raise NotImplementedError(f"numpy: no jvp of {op}")
        return OPS[op].jvp(x, tangent, **kwargs)


def _unknown(op):
    raise ValueError(f"op: must be one of {', '.join(map(repr, OPS))}; got {op!r}")
