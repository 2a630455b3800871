"""One comparison API (in the spirit of SciPy's xp_assert_close): the tolerance of an op's value or vjp for
its inputs, dtype and compute format, built from the op's record, and the comparison itself, with the
documented framework departures as the only other accepted answers.

* `tolerance(op, kind, x, kwargs, cotangent, versus=...)`: how far a result may be from what it is compared
  with: "exact" (the backend's own derived bound, xentcheck.bounds, for its dtype's compute format and
  subnormal floor), "reference" (that plus the NumPy reference's bound: both are within their bounds of the
  same exact value) or "oracle" (the reference against the oracle's correctly rounded value: the reference's
  bound plus half an ulp of the exact value).
* `reference_answer(op, kind, x, kwargs, cotangent)`: what the agreement properties compare a backend with:
  the reference's float64 answer before its one rounding, with its float64 bound (a backend's own bound plus
  that is tighter by the reference's half ulp than "reference" above: rounding toward zero is seen).
* `judge(got, want, tol, ...)`: elementwise equal NaN-ness, equal infinities, |got - want| <= tol elsewhere;
  where a documented departure applies (xentcheck.semantics.applicable), its documented answer is accepted
  instead. A Verdict says which elements differ, which departures were used, which applied but were not
  given, and describes the worst element with its numbers.
* `assert_close(actual, desired, tol)`: the same for tests, raising AssertionError.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .records import OPS
from .reference.dtypes import FORMATS, format_of, round_to_dtype
from .reference.exact import ulp, ulp_error

KINDS = ("value", "vjp", "jvp", "hvp")


# --------------------------------------------------------------------------------------------
# Tolerances, from the records.

def value_bound(op, x, *, dtype=None, compute=None, floor=None, **kwargs):
    """How far op(x, **kwargs) computed in `dtype` (default x's) with `compute` may be from exact."""
    return OPS[op].value_bound(x, **kwargs, dtype=dtype, compute=compute, floor=floor)


def vjp_bound(op, x, cotangent, *, dtype=None, compute=None, floor=None, **kwargs):
    """How far vjp(op, x, cotangent, **kwargs) computed in `dtype` with `compute` may be from exact."""
    return OPS[op].vjp_bound(x, cotangent, **kwargs, dtype=dtype, compute=compute, floor=floor)


def jvp_bound(op, x, tangent, *, dtype=None, compute=None, floor=None, **kwargs):
    """How far jvp(op, x, tangent, **kwargs) (forward mode) computed in `dtype` with `compute` may be from exact."""
    return OPS[op].jvp_bound(x, tangent, **kwargs, dtype=dtype, compute=compute, floor=floor)


def reference_value_bound(op, x, *, floor=None, **kwargs):
    """How far the reference (float64 inside, one rounding to x's dtype) may be from exact: the float64 bound
    plus half an ulp of the result in x's dtype."""
    return _plus_half_ulp(value_bound(op, np.asarray(x), dtype="float64", floor=floor, **kwargs),
                          OPS[op].reference(x, **kwargs), np.asarray(x).dtype)


def reference_vjp_bound(op, x, cotangent, *, floor=None, **kwargs):
    return _plus_half_ulp(vjp_bound(op, np.asarray(x), cotangent, dtype="float64", floor=floor, **kwargs),
                          OPS[op].reference_vjp(x, cotangent, **kwargs), np.asarray(x).dtype)


def reference_jvp_bound(op, x, tangent, *, floor=None, **kwargs):
    return _plus_half_ulp(jvp_bound(op, np.asarray(x), tangent, dtype="float64", floor=floor, **kwargs),
                          OPS[op].jvp(x, tangent, **kwargs), np.asarray(x).dtype)


def reference_answer(op, kind, x, kwargs, cotangent=None):
    """(want, tol, dtype): the reference's `kind` ("value", "vjp", or "jvp" with the tangent as `cotangent`) of
    op before its one rounding into x's dtype, how far that may be from exact (the float64 bound alone), and the
    dtype a backend must answer in; for a vjp of several gradients (OpRecord.gradients) a tuple of each, None
    where an input is absent. A backend compared with this rather than with the rounded answer is allowed its
    own bound plus the float64 one, not also the reference's half ulp: one that rounds toward zero (up to 1 ulp
    off) is seen. Computed on the inputs in float64, which hold them exactly; where the float64 answer is finite
    but rounds to an infinity (beyond the dtype's range) the infinity is wanted."""
    record, x = OPS[op], np.asarray(x)
    call = {"value": lambda a, c, kw: record.reference(a, **kw),
            "vjp": lambda a, c, kw: record.reference_vjp(a, c, **kw),
            "jvp": lambda a, c, kw: record.jvp(a, c, **kw)}[kind]
    bound = (value_bound(op, x, dtype="float64", **kwargs) if kind == "value"
             else vjp_bound(op, x, cotangent, dtype="float64", **kwargs) if kind == "vjp"
             else jvp_bound(op, x, cotangent, dtype="float64", **kwargs))
    if x.dtype.name not in ("float16", "bfloat16", "float32"):
        answer = call(x, cotangent, kwargs)
        return tuple(zip(*((a, b, None if a is None else a.dtype) for a, b in zip(answer, bound)))) \
            if isinstance(answer, tuple) else (answer, bound, np.asarray(answer).dtype)
    # the reference computes in float64 and rounds once: its answer on the inputs in float64 is that float64
    unrounded = call(_float64(x), _float64(cotangent), {k: _float64(v) for k, v in kwargs.items()})

    def one(u, b):
        if u is None:
            return None, None, None
        u = np.asarray(u, dtype=np.float64)
        rounded = round_to_dtype(u, x.dtype).astype(np.float64)
        return np.where(np.isfinite(rounded) | ~np.isfinite(u), u, rounded), b, x.dtype

    if isinstance(unrounded, tuple):
        return tuple(zip(*map(one, unrounded, bound)))
    return one(unrounded, bound)


def _float64(a):
    """A float16/bfloat16/float32 array as float64 (exact); anything else (targets, options) as it is."""
    return a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype.name in ("float16", "bfloat16",
                                                                                   "float32") else a


def _plus_half_ulp(tol64, value, dtype):
    dtype = np.dtype(dtype) if np.dtype(dtype).name in FORMATS else np.dtype(np.float64)
    if dtype == np.float64:
        return tol64
    return tol64 + 0.5 * ulp(np.asarray(value).astype(np.float64), dtype)


def tolerance(op, kind, x, kwargs, cotangent=None, *, versus="reference", exact=None, dtype=None, compute=None,
              floor=None):
    """The tolerance of a `kind` ("value", "vjp", or "jvp" with the tangent as `cotangent`) of op on
    (x, kwargs, cotangent):
    versus "exact": the backend's bound (dtype, compute, floor); "reference": that plus the reference's bound;
    "oracle": the reference against `exact`, the oracle's rounded value (the reference's bound plus half an ulp
    of it)."""
    if kind not in ("value", "vjp", "jvp"):
        raise ValueError(f"kind: must be 'value', 'vjp' or 'jvp'; got {kind!r}")
    precision = {"dtype": dtype, "compute": compute, "floor": floor}
    own = (value_bound(op, x, **precision, **kwargs) if kind == "value"
           else vjp_bound(op, x, cotangent, **precision, **kwargs) if kind == "vjp"
           else jvp_bound(op, x, cotangent, **precision, **kwargs))
    if versus == "exact":
        return own
    reference = (reference_value_bound(op, x, **kwargs) if kind == "value"
                 else reference_vjp_bound(op, x, cotangent, **kwargs) if kind == "vjp"
                 else reference_jvp_bound(op, x, cotangent, **kwargs))
    if versus == "reference":
        return own + reference
    if versus == "oracle":
        return reference + 0.5 * ulp(np.asarray(exact).astype(np.float64), np.asarray(x).dtype)
    raise ValueError(f"versus: must be 'exact', 'reference' or 'oracle'; got {versus!r}")


# --------------------------------------------------------------------------------------------
# Comparing.

def close_mask(actual, desired, tol) -> np.ndarray:
    """Elementwise: equal NaN-ness, equal infinities, and |actual - desired| <= tol elsewhere."""
    a = np.asarray(actual).astype(np.float64)
    d = np.asarray(desired).astype(np.float64)
    a, d = np.broadcast_arrays(a, d)
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), a.shape)
    finite = np.isfinite(a) & np.isfinite(d)
    with np.errstate(invalid="ignore", over="ignore"):
        within = np.abs(a - d) <= tol
    same_special = (np.isnan(a) & np.isnan(d)) | (np.isinf(d) & (a == d))
    return np.where(finite, within, same_special)


@dataclass
class Verdict:
    ok: bool
    message: str = ""
    used: list = field(default_factory=list)    # departures whose documented answer was given where it differs
    missed: list = field(default_factory=list)  # departures that apply there but whose answer was not given


def judge(got, want, tol, *, dtype=None, departures=(), x=None, cotangent=None, compares_calls=False,
          check_dtype=True) -> Verdict:
    """got == want within tol, elementwise; where one of `departures` ((departure, mask of the elements it covers,
    the call's keyword arguments), xentcheck.semantics.applicable) applies, its documented answer is accepted
    instead. With `compares_calls` want comes from the backend too, and either side may hold that answer."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return Verdict(False, f"shape {got.shape}, expected {want.shape}")
    expected = want.dtype if check_dtype is True else np.dtype(check_dtype) if check_dtype is not False else None
    if expected is not None and got.dtype != expected:
        return Verdict(False, f"dtype {got.dtype}, expected {expected}")
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), want.shape)
    ok = close_mask(got, want, tol)
    if ok.all():
        return Verdict(True)
    used, missed = [], []
    answered = np.zeros(want.shape, dtype=bool)
    for d, hit, kw in departures:
        given = hit & np.broadcast_to(d.expected(got, x, kw, cotangent) | (
            d.expected(want, x, kw, cotangent) & compares_calls), want.shape)
        if (given & ~ok).any() and d not in used:
            used.append(d)
        if (hit & ~ok & ~given).any() and d not in missed:
            missed.append(d)
        answered |= given
    if used and np.all(ok | answered):
        return Verdict(True, used=used)
    dtype = dtype or (want.dtype if want.dtype.name in FORMATS else np.float64)
    message = describe_mismatch(got, want, tol, ok, dtype) + "".join(
        f" (the documented departure {d.key} applies here: the framework returns {d.answer}, which this is not)"
        for d in missed)
    return Verdict(False, message, [], missed)


def assert_close(actual, desired, tol, *, dtype=None, check_dtype=True, err_msg: str = "") -> None:
    verdict = judge(actual, desired, tol, dtype=dtype, check_dtype=check_dtype)
    if not verdict.ok:
        raise AssertionError((f"{err_msg}: " if err_msg else "") + verdict.message)


def describe_mismatch(actual, desired, tol, ok, dtype) -> str:
    """Which elements differ and the worst one, with its numbers: a NaN or infinity where a finite value was
    expected (or the reverse) is named as such, a finite error in ulps and as a multiple of the tolerance."""
    a = np.asarray(actual).astype(np.float64)
    d = np.asarray(desired).astype(np.float64)
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), d.shape)
    special = ~ok & (~np.isfinite(a) | ~np.isfinite(d))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        excess = np.where(ok | special, 0.0, np.abs(a - d) / tol)
    worst = _index(special) if special.any() else np.unravel_index(int(np.argmax(excess)) if excess.size else 0,
                                                                    d.shape)
    head = f"{int((~ok).sum())} of {ok.size} elements differ; worst at index {tuple(map(int, worst))}: "
    got, want = float(a[worst]), float(d[worst])
    if special.any():
        return head + f"expected {_show(want)}, got {_show(got)}"
    ulps = float(ulp_error(a[worst], d[worst], format_of(dtype).name))
    return head + (f"expected {want!r}, got {got!r}, |diff| = {abs(got - want):.3g} ({ulps:.3g} ulp of "
                   f"{format_of(dtype).name}), tolerance {float(tol[worst]):.3g} ({float(excess[worst]):.3g}x the "
                   f"tolerance)")


def _index(mask):
    return np.unravel_index(int(np.flatnonzero(mask)[0]), mask.shape)


def _show(value: float) -> str:
    return "NaN" if np.isnan(value) else repr(value)
