"""Exhaustive half-precision sweeps: every finite bfloat16 and float16 input of the two-class ops, checked
against its correctly rounded value.

The inputs. For a dtype, every finite value x (every bit pattern that is not inf or NaN, both zeros included:
65280 for bfloat16, 63488 for float16), as the two-class row [x, 0] of an (n, 2) array, axis -1. For the row
[x, 0], with sigma(t) = 1/(1 + e^-t) and softplus(t) = log(1 + e^t), every result is one of three functions:

    op, kind                        cotangent      result per row
    softmax value                   -              [sigma(x), sigma(-x)]
    log_softmax value               -              [-softplus(-x), -softplus(x)]
    logsumexp value                 -              softplus(x)                      (lse(x, 0))
    cross_entropy value             -              softplus(-x)                     (target 0, reduction "none")
    softmax vjp                     [1, 0]         [q(x), -q(x)],  q = sigma(x) sigma(-x)
    log_softmax vjp                 [1, 0]         [sigma(-x), -sigma(-x)]
    logsumexp vjp                   1              [sigma(x), sigma(-x)]
    cross_entropy vjp               1              [-sigma(-x), sigma(-x)]

Every backend answers each (op, kind, dtype) in one call on the whole (n, 2) array (`batch` splits it into a
few big calls), through the contract: backend.softmax(x, axis=-1, temperature=1.0), backend.log_softmax(...),
backend.logsumexp(x, axis=-1), backend.cross_entropy(x, target, reduction="none") and
backend.vjp(op, x, cotangent, **the same keyword arguments).

The truth (Ziv's strategy). Each result is first evaluated in float64 by the formulas above (TRUTH_FORMULAS,
each with a derived relative error bound of a few float64 ulps), as a magnitude whose sign is known (every
quantity above is > 0 for finite x, so the sign of the correctly rounded result is that of the table, -0
included where a negative result underflows). Where the interval [v - B, v + B] around the float64 value v
rounds to one value of the dtype (rounding is monotonic: its two ends round alike), that is the correctly
rounded result; a row where some result's interval straddles a rounding boundary (a midpoint between two
values of the dtype, or the overflow threshold) is answered by the exact mpmath oracle instead,
xentcheck.records.OPS[op].oracle / .oracle_vjp on those rows, which rounds correctly. Where the oracle answers
an exact 0 (mpmath has no -0: it takes exp(z) below 2**-(prec + 1100) as 0, reference/exact_rows.py), the zero
gets the result's known sign. Chunks of the truth are computed by top-level picklable functions submitted to
any concurrent.futures.Executor; the result does not depend on the executor or the chunk size.

The lse pairs (run_lse_pairs): lse(a, b) for every pair of finite bfloat16 values, a <= b (lse is symmetric:
the half with the diagonal, n (n + 1)/2 = 2,130,771,840 pairs), or a reduced range (`values`, `pairs_limit`);
the report says whether the full range was run. Chunks of pairs stream through the executor and the backends
with bounded memory.

Scoring, per backend and (op, kind, dtype):
  * wrong: results whose bit pattern differs from the correctly rounded value's, after mapping every NaN to
    one NaN (a NaN is right only where the truth is NaN, which it never is here). -0 for +0 is wrong
    (`signed_zero` counts those, at 0 ulps); `subnormal` counts the wrong results whose truth is below the
    smallest normal (what flushing subnormals to zero shows up as).
  * ulps: |answer - truth| / ulp(truth), ulp(truth) = the dtype's spacing in the truth's binade (floored at the
    smallest subnormal; reference/exact_rows.ulp). An answer that is inf or NaN where the truth is finite (or
    an infinity of the other sign) is an infinite error: it counts as wrong and as > 1 ulp, max_ulps is then
    "inf" (JSON has no infinity: every non-finite number in the results is the string "inf", "-inf" or "nan").
  * worst: the 5 wrong results with the largest ulp error (ties: the lower x first), with x, the output entry
    (0 or 1; null for one result per row), truth, answer and ulps.
  * profile: for the plot, the largest ulp error in each run of PROFILE_BIN consecutive inputs (about one
    binade of bfloat16) and the x where it occurs.
A backend that raises NotImplementedError for an (op, dtype) is "unsupported" there; any other exception, or a
result of the wrong shape or dtype, is "error" with a one-line message; neither stops the sweep.

Output: run_exhaustive and run_lse_pairs return JSON-able dicts (every wall time under "timings", so that two
runs compare equal outside it); render_markdown(results) writes the table; plot(results, path) the ulp error
against x, one panel per (op, kind) and dtype. `xentcheck exhaustive` (xentcheck/cli.py) runs it all.
"""
from __future__ import annotations

import collections
import math
import os
import time

import numpy as np

from . import __version__
from .records import OPS
from .reference.dtypes import FORMATS, round_to_dtype
from .reference.exact import ulp_error

DTYPES = ("bfloat16", "float16")
SWEEP_OPS = ("softmax", "log_softmax", "logsumexp", "cross_entropy")
KINDS = ("value", "vjp")
WORST = 5
PROFILE_BIN = 128

# --------------------------------------------------------------------------------------------
# The float64 fast path and its error bounds.
#
# u = 2**-53, the unit roundoff of float64. Assumed: +, -, *, / round correctly (error <= u relative), and
# np.exp and np.log1p are within 2 ulps of float64 (<= 4u relative; measured < 0.8 ulp here, and glibc
# documents <= 1 ulp for both on x86-64). With a = |t| (exact) and e = exp(-a), computed as e(1 + d1),
# |d1| <= 4u (while e >= 2**-1022, i.e. a <= 708.39; beyond it see TINY):
#   1 + e:            (1 + e)(1 + d2), |d2| <= 4u e/(1 + e) + u <= 3u                     (e/(1 + e) <= 1/2)
#   sigma(a)  = 1/(1 + e):        3u + u                                   = 4u  (+ O(u^2))
#   sigma(-a) = e/(1 + e):        4u + 3u + u                              = 8u
#   softplus(-a) = log1p(e):      log1p's condition at e is e/((1+e) log1p(e)) <= 1:  4u + 4u = 8u
#   softplus(a)  = a + log1p(e):  a sum of two non-negative terms:  8u + u              = 9u
#   q = sigma(a) sigma(-a):       4u + 8u + u                                          = 13u
# A bound k u |exact| on |v - exact| is at most (k + 1) u |v| for the computed v. REL = 16u covers them all
# (any larger bound is as correct: it only sends more rows to the oracle; `bound_scale` widens it, for tests).
# TINY, an absolute term: where e (or a result) falls below float64's smallest normal its error is no longer
# relative, but it is then below 2**-1022 absolutely, and so is every result there: those round to 0 in both
# dtypes (their smallest subnormals are 2**-133 and 2**-24), far from any rounding boundary.
U = 2.0 ** -53
REL = 16 * U
TINY = 2.0 ** -1022


def _sigmoid(t: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(t))
    return np.where(t >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus(t: np.ndarray) -> np.ndarray:
    return np.maximum(t, 0.0) + np.log1p(np.exp(-np.abs(t)))


def _sigmoid_product(t: np.ndarray) -> np.ndarray:
    return _sigmoid(np.abs(t)) * _sigmoid(-np.abs(t))


FUNCTIONS = {"sigmoid": _sigmoid, "softplus": _softplus, "q": _sigmoid_product}

# (op, kind) -> the result entries of the row [x, 0]: (sign, function, argument sign): sign * f(s * x).
TRUTH_FORMULAS = {
    ("softmax", "value"): ((1, "sigmoid", 1), (1, "sigmoid", -1)),
    ("log_softmax", "value"): ((-1, "softplus", -1), (-1, "softplus", 1)),
    ("logsumexp", "value"): ((1, "softplus", 1),),
    ("cross_entropy", "value"): ((1, "softplus", -1),),
    ("softmax", "vjp"): ((1, "q", 1), (-1, "q", 1)),
    ("log_softmax", "vjp"): ((1, "sigmoid", -1), (-1, "sigmoid", -1)),
    ("logsumexp", "vjp"): ((1, "sigmoid", 1), (1, "sigmoid", -1)),
    ("cross_entropy", "vjp"): ((-1, "sigmoid", -1), (1, "sigmoid", -1)),
}


def _round(values: np.ndarray, dtype: str) -> np.ndarray:
    """Correctly rounded into dtype, back in float64."""
    return round_to_dtype(values, dtype).astype(np.float64)


def _settled(v: np.ndarray, bound: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(round(v), whether every value within `bound` of v rounds to it): a magnitude v >= 0 whose exact value
    is > 0 and within `bound` of v."""
    low = _round(np.maximum(v - bound, 0.0), dtype)
    high = _round(v + bound, dtype)
    return high, low == high


# --------------------------------------------------------------------------------------------
# Inputs, arguments and the oracle.

def finite_values(dtype: str, stride: int = 1, interval: tuple | None = None) -> np.ndarray:
    """Every finite value of `dtype` in increasing order (-0 just before +0), every `stride`-th of them, those
    in the closed `interval` (lo, hi) if given."""
    fmt = _format(dtype)
    _check_count("stride", stride)
    exponent_field = ((1 << (15 - (fmt.precision - 1))) - 1) << (fmt.precision - 1)  # all ones: inf or NaN
    positive = np.arange(0x8000, dtype=np.uint16)
    positive = positive[(positive & exponent_field) != exponent_field]
    bits = np.concatenate([(positive | 0x8000)[::-1], positive])
    values = bits.view(fmt.dtype)
    if interval is not None:
        lo, hi = interval
        wide = values.astype(np.float64)
        values = values[(wide >= lo) & (wide <= hi)]
    return values[::stride]


def _check_count(name: str, value, optional: bool = False) -> None:
    """ValueError naming the argument unless value is a positive integer (or None where optional)."""
    if not (optional and value is None) and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name}: must be a positive integer{' or None' if optional else ''}; got {value!r}")


def _format(dtype: str):
    if dtype not in DTYPES:
        raise ValueError(f"dtype: must be one of {', '.join(DTYPES)}; got {dtype!r}")
    return FORMATS[dtype]


def rows_of(x: np.ndarray) -> np.ndarray:
    """The (n, 2) rows [x, 0] in x's dtype."""
    return np.stack([x, np.zeros_like(x)], axis=-1)


def op_kwargs(op: str, n: int) -> dict:
    """The keyword arguments of op's call (and its vjp's) on n rows: its record's defaults, class 0 as the
    target where it takes one, one result per row (reduction "none") where it reduces."""
    kwargs = OPS[op].defaults()
    if "target" in OPS[op].parameters:
        kwargs["target"] = np.zeros(n, dtype=np.int64)
    if "reduction" in kwargs:
        kwargs["reduction"] = "none"
    return kwargs


def cotangent(op: str, n: int, dtype: str) -> np.ndarray:
    """1 per result where op gives one per row (logsumexp, cross_entropy), else [1, 0] per row (softmax,
    log_softmax: the derivative of the first entry; ones would give softmax's vjp 0)."""
    shape = OPS[op].output_shape(np.zeros((n, 2)), op_kwargs(op, n))
    v = np.ones(shape) if len(shape) == 1 else np.tile(np.array([1.0, 0.0]), (n, 1))
    return v.astype(FORMATS[dtype].dtype)


def oracle(op: str, kind: str, x: np.ndarray) -> np.ndarray:
    """The exact oracle's answer on the rows [x, 0] (x in its dtype), as (n, entries) float64."""
    rows, kwargs = rows_of(x), op_kwargs(op, len(x))
    record = OPS[op]
    if kind == "value":
        out = record.oracle(rows, **kwargs)
    else:
        out = record.oracle_vjp(rows, cotangent(op, len(x), x.dtype.name), **kwargs)
    return np.asarray(out).astype(np.float64).reshape(len(x), -1)


# --------------------------------------------------------------------------------------------
# The truth of the single-value sweep, by chunks (top-level and picklable, for any executor).

def truth_chunk(dtype: str, bits: np.ndarray, op_kinds: tuple, bound_scale: float = 1.0) -> dict:
    """The correctly rounded results of each (op, kind) in op_kinds on the rows [x, 0], x = bits viewed as
    dtype: {"op/kind": uint16 bit patterns (n, entries)}, with "oracle_rows" {"op/kind": rows the oracle
    answered} and "seconds" (the chunk's own time)."""
    start = time.perf_counter()
    fmt = FORMATS[dtype]
    x = np.asarray(bits, dtype=np.uint16).view(fmt.dtype)
    wide = x.astype(np.float64)
    out, oracle_rows = {}, {}
    with np.errstate(over="ignore", under="ignore"):
        cache = {}
        for op, kind in op_kinds:
            entries = TRUTH_FORMULAS[(op, kind)]
            values, settled = [], np.ones(len(x), dtype=bool)
            for sign, name, s in entries:
                if (name, s) not in cache:
                    v = FUNCTIONS[name](s * wide)
                    cache[(name, s)] = _settled(v, (REL * v + TINY) * bound_scale, dtype)
                rounded, ok = cache[(name, s)]
                values.append(sign * rounded)
                settled &= ok
            truth = np.stack(values, axis=-1)
            signs = np.array([sign for sign, _, _ in entries], dtype=np.float64)
            unsettled = np.flatnonzero(~settled)
            if unsettled.size:
                exact = oracle(op, kind, x[unsettled])
                truth[unsettled] = np.where(exact == 0, np.copysign(0.0, signs), exact)
            key = f"{op}/{kind}"
            out[key] = truth.astype(fmt.dtype).view(np.uint16)
            oracle_rows[key] = int(unsettled.size)
    return {"truth": out, "oracle_rows": oracle_rows, "seconds": time.perf_counter() - start}


def truth(dtype: str, x: np.ndarray, op_kinds=None, executor=None, chunk: int = 8192,
          bound_scale: float = 1.0) -> tuple[dict, dict]:
    """({(op, kind): the correctly rounded results on the rows [x, 0], (n, entries) of dtype}, {(op, kind):
    rows the oracle answered}), computed in chunks of `chunk` rows on `executor` (None: here)."""
    op_kinds = tuple(op_kinds or TRUTH_FORMULAS)
    _check_count("chunk", chunk)
    bits = np.asarray(x).view(np.uint16)
    pieces = [(dtype, bits[lo:lo + chunk], op_kinds, bound_scale) for lo in range(0, len(bits), chunk)]
    if executor is None:
        done = [truth_chunk(*piece) for piece in pieces]
    else:
        done = [f.result() for f in [executor.submit(truth_chunk, *piece) for piece in pieces]]
    fmt = FORMATS[dtype]
    values, oracle_rows = {}, {}
    for op, kind in op_kinds:
        key = f"{op}/{kind}"
        width = len(TRUTH_FORMULAS[(op, kind)])
        parts = [d["truth"][key] for d in done] or [np.zeros((0, width), np.uint16)]
        values[(op, kind)] = np.concatenate(parts).view(fmt.dtype)
        oracle_rows[(op, kind)] = sum(d["oracle_rows"][key] for d in done)
    return values, oracle_rows


# --------------------------------------------------------------------------------------------
# Scoring one answer against the truth.

def _json_number(v) -> float | str:
    v = float(v)
    return v if math.isfinite(v) else str(v)


def canonical_bits(values: np.ndarray) -> np.ndarray:
    """The uint16 bit patterns, every NaN mapped to one NaN."""
    values = np.asarray(values)
    bits = values.view(np.uint16).copy()
    bits[np.isnan(values.astype(np.float64))] = 0x7FFF
    return bits


def compare(got: np.ndarray, truth_values: np.ndarray, dtype: str) -> dict:
    """The elementwise comparison: {"wrong", "ulps", "signed_zero", "subnormal"} arrays shaped like truth
    (ulps is 0 wherever the answer is right, computed only where it is wrong)."""
    wrong = canonical_bits(got) != canonical_bits(truth_values)
    where = np.nonzero(wrong)
    g, t = got[where].astype(np.float64), truth_values[where].astype(np.float64)
    ulps, signed_zero, subnormal = np.zeros(wrong.shape), np.zeros_like(wrong), np.zeros_like(wrong)
    with np.errstate(invalid="ignore"):
        ulps[where] = ulp_error(g, t, dtype)
        signed_zero[where] = (g == 0) & (t == 0)
        subnormal[where] = np.abs(t) < FORMATS[dtype].smallest_normal
    return {"wrong": wrong, "ulps": ulps, "signed_zero": signed_zero, "subnormal": subnormal}


def _worst(keys: np.ndarray, ulps: np.ndarray, wrong: np.ndarray, count: int = WORST) -> np.ndarray:
    """The flat indices of the `count` wrong entries with the largest ulps (ties: the lowest key first)."""
    flat = np.flatnonzero(wrong.reshape(-1))
    order = np.lexsort((keys.reshape(-1)[flat], -ulps.reshape(-1)[flat]))
    return flat[order[:count]]


def score(x: np.ndarray, got: np.ndarray, truth_values: np.ndarray, dtype: str) -> dict:
    """The counts, max ulps, worst inputs and profile of an answer `got` for the rows [x, 0]."""
    c = compare(got, truth_values, dtype)
    ulps, wrong = c["ulps"], c["wrong"]
    width = truth_values.shape[1]
    keys = np.arange(ulps.size)  # row-major: x order, then the entry
    worst = []
    for k in _worst(keys, ulps, wrong):
        row, entry = divmod(int(k), width)
        worst.append({"x": _json_number(x[row]), "entry": entry if width > 1 else None,
                      "truth": _json_number(truth_values[row, entry]), "answer": _json_number(got[row, entry]),
                      "ulps": _json_number(ulps[row, entry])})
    row_ulps = np.where(wrong, ulps, 0.0).max(axis=1)
    return {"inputs": int(len(x)), "results": int(truth_values.size), "wrong": int(wrong.sum()),
            "signed_zero": int(c["signed_zero"].sum()), "subnormal": int(c["subnormal"].sum()),
            "over_1ulp": int((ulps > 1).sum()), "max_ulps": _json_number(ulps.max() if ulps.size else 0.0),
            "worst": worst, "profile": _profile(x, row_ulps)}


def _profile(x: np.ndarray, row_ulps: np.ndarray) -> dict:
    """The largest ulp error in each run of PROFILE_BIN consecutive inputs and the x where it is."""
    xs, ys = [], []
    for lo in range(0, len(x), PROFILE_BIN):
        i = lo + int(np.argmax(row_ulps[lo:lo + PROFILE_BIN]))
        xs.append(_json_number(x[i]))
        ys.append(_json_number(row_ulps[i]))
    return {"x": xs, "ulps": ys}


# --------------------------------------------------------------------------------------------
# Backends.

def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def load(specs) -> tuple[list, dict]:
    """[(label, backend)] for the specs that load (a spec: anything load_backend takes, or a backend object),
    and {label: {"status", "reason", "flushes_subnormals"}} for all of them."""
    from .backends import BackendLoadError, load_backend

    loaded, info = [], {}
    for spec in specs:
        if isinstance(spec, str):
            try:
                backend = load_backend(spec)
            except BackendLoadError as error:
                info[spec] = {"status": "unavailable", "reason": str(error)}
                continue
        else:
            backend = spec
        label = spec if isinstance(spec, str) else str(getattr(backend, "name", type(backend).__name__))
        if label in info:  # two backends of one name: number the later ones
            label = f"{label}#{sum(1 for k in info if k.split('#')[0] == label) + 1}"
        loaded.append((label, backend))
        info[label] = {"status": "ok", "name": str(getattr(backend, "name", label)),
                       "flushes_subnormals": bool(getattr(backend, "flushes_subnormals", False))}
    return loaded, info


def call(backend, op: str, kind: str, x: np.ndarray, batch: int | None = None) -> np.ndarray:
    """The backend's answer on the rows [x, 0] as (n, entries) of x's dtype: one call through the contract
    (or one per `batch` rows). Raises what the backend raises; ValueError for a result of the wrong shape or
    dtype."""
    n, dtype = len(x), x.dtype
    width = len(TRUTH_FORMULAS[(op, kind)])
    expected = (n, 2) if width == 2 else (n,)
    parts = []
    for lo in range(0, n, batch or max(n, 1)):
        rows = rows_of(x[lo:lo + (batch or n)])
        kwargs = op_kwargs(op, len(rows))
        if kind == "value":
            out = getattr(backend, op)(rows, **kwargs)
        else:
            out = backend.vjp(op, rows, cotangent(op, len(rows), dtype.name), **kwargs)
        parts.append(np.asarray(out))
    got = np.concatenate(parts) if parts else np.zeros(expected, dtype)
    if got.shape != expected:
        raise ValueError(f"the {op} {kind} has shape {got.shape}, not {expected}")
    if got.dtype != dtype:
        raise ValueError(f"the {op} {kind} is {got.dtype.name}, not {dtype.name} (the input's dtype)")
    return got.reshape(n, width)


def _answer(backend, op, kind, x, batch):
    """(status, message, answer or None, seconds)."""
    start = time.perf_counter()
    try:
        got = call(backend, op, kind, x, batch)
        status, message = "ok", None
    except NotImplementedError as error:
        got, status, message = None, "unsupported", _one_line(error)
    except Exception as error:  # noqa: BLE001 - any failure of a backend is recorded, never fatal
        got, status, message = None, "error", _one_line(error)
    return status, message, got, time.perf_counter() - start


# --------------------------------------------------------------------------------------------
# The single-value sweep.

def run_exhaustive(specs, dtypes=DTYPES, ops=SWEEP_OPS, kinds=KINDS, executor=None, chunk: int = 8192,
                   stride: int = 1, interval: tuple | None = None, batch: int | None = None,
                   bound_scale: float = 1.0) -> dict:
    """Every finite value of each dtype (every `stride`-th, those in `interval`: a reduced range) as the row
    [x, 0], through each op and kind of each backend in `specs`, scored against the correctly rounded truth
    (computed in chunks of `chunk` rows on `executor`, None: in this process). Backends are called here, one
    call per (op, kind, dtype), or one per `batch` rows. Returns the JSON-able results (module docstring)."""
    for name, given, allowed in (("dtypes", dtypes, DTYPES), ("ops", ops, SWEEP_OPS), ("kinds", kinds, KINDS)):
        bad = [g for g in given if g not in allowed]
        if bad or not given:
            raise ValueError(f"{name}: must be a non-empty selection of {', '.join(allowed)}; got {list(given)!r}")
    _check_count("stride", stride)
    _check_count("chunk", chunk)
    _check_count("batch", batch, optional=True)
    start = time.perf_counter()
    loaded, info = load(specs)
    timings = {"load_s": time.perf_counter() - start, "truth_s": {}, "backend_s": {}}
    op_kinds = tuple((op, kind) for op in ops for kind in kinds)
    results, truth_info, inputs = [], {}, {}
    for dtype in dtypes:
        x = finite_values(dtype, stride, interval)
        inputs[dtype] = {"n": int(len(x)), "full": stride == 1 and interval is None}
        t0 = time.perf_counter()
        truths, oracle_rows = truth(dtype, x, op_kinds, executor, chunk, bound_scale)
        timings["truth_s"][dtype] = time.perf_counter() - t0
        truth_info[dtype] = {"oracle_rows": {f"{op}/{kind}": oracle_rows[(op, kind)] for op, kind in op_kinds}}
        for label, backend in loaded:
            for op, kind in op_kinds:
                status, message, got, seconds = _answer(backend, op, kind, x, batch)
                timings["backend_s"].setdefault(label, {})[f"{op}/{kind}/{dtype}"] = seconds
                entry = {"backend": label, "op": op, "kind": kind, "dtype": dtype, "status": status,
                         "message": message}
                if got is not None:
                    entry.update(score(x, got, truths[(op, kind)], dtype))
                else:
                    entry["inputs"] = int(len(x))
                results.append(entry)
    for label in timings["backend_s"]:
        timings["backend_s"][label]["total"] = sum(timings["backend_s"][label].values())
    timings["wall_s"] = time.perf_counter() - start
    return {"tool": "xentcheck exhaustive", "version": __version__,
            "settings": {"dtypes": list(dtypes), "ops": list(ops), "kinds": list(kinds), "stride": stride,
                         "interval": list(interval) if interval is not None else None, "batch": batch,
                         "bound_scale": bound_scale},
            "inputs": inputs, "backends": info, "truth": truth_info, "results": results,
            "timings": dict(timings, chunk=chunk, executor=type(executor).__name__ if executor else None)}


# --------------------------------------------------------------------------------------------
# lse(a, b) for pairs of bfloat16 values.
#
# r = m + log1p(exp(-d)), m = max(a, b), d = |a - b|. m is exact; d is rounded once (|a - b| can need more
# than 53 bits), d(1 + d0), |d0| <= u, which changes exp(-d) by the factor exp(-d d0): a relative error
# <= 1.01 u d for d <= 745 (beyond, exp(-d) = 0 in float64, and log1p(exp(-d)) < 2**-1074 absolutely). With
# exp and log1p within 4u each (above), L = log1p(exp(-d)) is within L u (1.01 d + 8) of its exact value
# (log1p's condition is <= 1), and the final sum m + L adds u |r|. As there is cancellation where m < 0 < L,
# the bound is absolute: |r - exact| <= u (|r| + L (1.01 d + 8)) + O(u^2); PAIR_BOUND doubles each term for the
# O(u^2) terms and the exact-versus-computed arguments, and TINY covers results in float64's subnormal range.

def _pair_bound(r: np.ndarray, L: np.ndarray, d: np.ndarray) -> np.ndarray:
    return U * (2 * np.abs(r) + L * (2 * d + 16)) + TINY


def round_bfloat16_bits(v: np.ndarray) -> np.ndarray:
    """float64 -> bfloat16 rounded once to nearest-even (as uint16 bits), fast: round to odd into float32, then to
    nearest-even into bfloat16. Rounding to odd in a format of p + 2 bits or more (float32: 24 >= 8 + 2, and 16
    bits to spare in bfloat16's subnormal range, which float32 shares) and then to nearest in p bits is one
    correct rounding (Boldo and Melquiond, 2008). Round to odd: float32's nearest, stepped one toward zero where
    it went past v (from inf to float32's max, which rounds to inf in bfloat16 as it should), its last bit set
    where inexact. Same results as reference.dtypes.round_to_dtype (tests/test_exhaustive.py checks it)."""
    v = np.asarray(v, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore"):
        nearest = v.astype(np.float32)
    back = nearest.astype(np.float64)
    inexact = back != v
    bits = nearest.view(np.uint32) - (inexact & (np.abs(back) > np.abs(v))).astype(np.uint32)
    bits |= inexact.astype(np.uint32)
    return bits.view(np.float32).astype(FORMATS["bfloat16"].dtype).view(np.uint16)


def lse_pair_truth(a: np.ndarray, b: np.ndarray, bound_scale: float = 1.0) -> tuple[np.ndarray, int]:
    """(the correctly rounded bfloat16 lse(a, b) for bfloat16 values a, b, as uint16 bits; the number of pairs
    the oracle answered). Ziv: float64 and PAIR_BOUND, the oracle where the bound straddles a boundary. Where
    max(a, b) >= 0, lse > 0: the interval's low end is taken at +0 at least (so that lse(a, 0) for a < -745,
    whose float64 value is 0, is +0 and not sent to the oracle). The oracle's lse is an exact 0 only where
    max(a, b) = 0 and exp(min - max) is below its cut-off, where lse > 0: its +0 is right there."""
    wa, wb = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(over="ignore", under="ignore"):
        m = np.maximum(wa, wb)
        d = np.abs(wa - wb)
        L = np.log1p(np.exp(-d))
        r = m + L
        bound = _pair_bound(r, L, d) * bound_scale
        low = np.where(m >= 0, np.maximum(r - bound, 0.0), r - bound)
    high = round_bfloat16_bits(r + bound)
    unsettled = np.flatnonzero(round_bfloat16_bits(low) != high)
    if unsettled.size:
        rows = np.stack([a[unsettled], b[unsettled]], axis=-1)
        high[unsettled] = np.asarray(OPS["logsumexp"].oracle(rows, axis=-1)).view(np.uint16)
    return high, int(unsettled.size)


def pair_count(n: int) -> int:
    """Pairs (i, j), i <= j, of n values."""
    return n * (n + 1) // 2


def pair_indices(n: int, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) of the pairs k0 <= k < k1 in the order (0, 0), (0, 1), ..., (0, n-1), (1, 1), ...: row i starts
    at S_i = i n - i (i - 1)/2."""
    rows = np.arange(n, dtype=np.int64)
    starts = rows * n - rows * (rows - 1) // 2
    first = int(np.searchsorted(starts, k0, side="right")) - 1
    last = int(np.searchsorted(starts, k1 - 1, side="right")) - 1 if k1 > k0 else first - 1
    i = np.arange(first, last + 1, dtype=np.int64)
    lo = np.maximum(starts[i], k0)
    hi = np.minimum(starts[i] + (n - i), k1)
    counts = hi - lo
    ii = np.repeat(i, counts)
    offsets = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    jj = ii + np.repeat(lo - starts[i], counts) + offsets
    return ii, jj


def pairs_truth_chunk(value_bits: np.ndarray, k0: int, k1: int, bound_scale: float = 1.0) -> dict:
    """The truth of pairs k0 <= k < k1 of the bfloat16 values `value_bits` (uint16): {"truth": uint16 bits,
    "oracle_pairs", "seconds"} (top-level: picklable for any executor)."""
    start = time.perf_counter()
    values = np.asarray(value_bits, dtype=np.uint16).view(FORMATS["bfloat16"].dtype)
    i, j = pair_indices(len(values), k0, k1)
    bits, oracle_pairs = lse_pair_truth(values[i], values[j], bound_scale)
    return {"truth": bits, "oracle_pairs": oracle_pairs, "seconds": time.perf_counter() - start}


def run_lse_pairs(specs, values=None, pairs_limit: int | None = None, executor=None, chunk: int = 1 << 21,
                  batch: int | None = None, bound_scale: float = 1.0, in_flight: int | None = None) -> dict:
    """lse(a, b) of the rows [a, b] for every pair a <= b of `values` (default: every finite bfloat16, the full
    range; values must be sorted) or their first `pairs_limit` pairs, through each backend's logsumexp(x,
    axis=-1), scored against the correctly rounded truth. Pairs go by chunks of `chunk` through the executor
    (the truth) and then the backends (one call per chunk, or per `batch` rows), with `in_flight` chunks
    submitted ahead (default twice the executor's workers, or 2 x the cores): memory stays bounded. Returns the
    JSON-able results; "full" says whether every pair of finite bfloat16 was run."""
    everything = finite_values("bfloat16")
    given = everything if values is None else np.asarray(values)
    values = given.astype(FORMATS["bfloat16"].dtype)
    wide = values.astype(np.float64)
    if (not np.all(np.isfinite(wide)) or np.any(np.diff(wide) < 0)
            or not np.array_equal(wide, given.astype(np.float64))):
        raise ValueError("values: must be finite bfloat16 values (exactly) in increasing order")
    if pairs_limit is not None and (not isinstance(pairs_limit, int) or pairs_limit < 0):
        raise ValueError(f"pairs_limit: must be None or a non-negative integer; got {pairs_limit!r}")
    _check_count("chunk", chunk)
    _check_count("batch", batch, optional=True)
    n = len(values)
    total = pair_count(n) if pairs_limit is None else min(pair_count(n), pairs_limit)
    full = total == pair_count(len(everything)) and np.array_equal(values.view(np.uint16), everything.view(np.uint16))
    start = time.perf_counter()
    loaded, info = load(specs)
    bits = values.view(np.uint16)
    tallies = {label: _PairTally() for label, _ in loaded}
    backend_s = {label: 0.0 for label, _ in loaded}
    truth_cpu_s, oracle_pairs = 0.0, 0
    ranges = [(k, min(k + chunk, total)) for k in range(0, total, chunk)]
    if executor is None:
        window = 1
    else:
        window = in_flight or 2 * (getattr(executor, "_max_workers", None) or os.cpu_count() or 1)
    pending = collections.deque()
    for index in range(len(ranges)):
        while len(pending) < window and index + len(pending) < len(ranges):
            k0, k1 = ranges[index + len(pending)]
            pending.append(executor.submit(pairs_truth_chunk, bits, k0, k1, bound_scale) if executor is not None
                           else (bits, k0, k1, bound_scale))
        job = pending.popleft()
        done = job.result() if executor is not None else pairs_truth_chunk(*job)
        truth_cpu_s += done["seconds"]
        oracle_pairs += done["oracle_pairs"]
        k0, k1 = ranges[index]
        i, j = pair_indices(n, k0, k1)
        rows = np.stack([values[i], values[j]], axis=-1)
        expected = done["truth"].view(FORMATS["bfloat16"].dtype)
        for label, backend in loaded:
            t0 = time.perf_counter()
            tallies[label].add(backend, rows, expected, k0, batch)
            backend_s[label] += time.perf_counter() - t0
    results = [dict(backend=label, **tallies[label].result(values, n)) for label, _ in loaded]
    return {"tool": "xentcheck exhaustive lse pairs", "version": __version__,
            "settings": {"values": int(n), "pairs_limit": pairs_limit, "batch": batch, "bound_scale": bound_scale},
            "pairs": int(total), "full": bool(full), "full_pairs": pair_count(len(everything)),
            "backends": info, "oracle_pairs": oracle_pairs, "results": results,
            "timings": {"wall_s": time.perf_counter() - start, "truth_cpu_s": truth_cpu_s, "backend_s": backend_s,
                        "chunk": chunk, "executor": type(executor).__name__ if executor else None}}


class _PairTally:
    """One backend's running counts over the chunks of pairs (its first failure ends its run)."""

    def __init__(self):
        self.status, self.message = "ok", None
        self.pairs = self.wrong = self.signed_zero = self.subnormal = self.over_1ulp = 0
        self.max_ulps = 0.0
        self.worst = []  # (ulps, k, a, b, truth, answer)

    def add(self, backend, rows, expected, k0, batch):
        if self.status != "ok":
            return
        try:
            parts = [np.asarray(backend.logsumexp(rows[lo:lo + (batch or len(rows))], axis=-1))
                     for lo in range(0, len(rows), batch or max(len(rows), 1))]
            got = np.concatenate(parts) if parts else np.zeros(0, rows.dtype)
            if got.shape != expected.shape or got.dtype != expected.dtype:
                raise ValueError(f"logsumexp of {rows.shape} {rows.dtype.name} rows gave {got.shape} "
                                 f"{got.dtype.name}, not {expected.shape} {expected.dtype.name}")
        except NotImplementedError as error:
            self.status, self.message = "unsupported", _one_line(error)
            return
        except Exception as error:  # noqa: BLE001 - recorded, never fatal
            self.status, self.message = "error", _one_line(error)
            return
        c = compare(got, expected, "bfloat16")
        self.pairs += len(rows)
        self.wrong += int(c["wrong"].sum())
        self.signed_zero += int(c["signed_zero"].sum())
        self.subnormal += int(c["subnormal"].sum())
        self.over_1ulp += int((c["ulps"] > 1).sum())
        if c["ulps"].size:
            self.max_ulps = max(self.max_ulps, float(c["ulps"].max()))
        keys = np.arange(k0, k0 + len(rows))
        for k in _worst(keys, c["ulps"], c["wrong"]):
            self.worst.append((float(c["ulps"][k]), int(keys[k]), float(rows[k, 0]), float(rows[k, 1]),
                               float(expected[k]), float(got[k])))
        self.worst = sorted(self.worst, key=lambda w: (-w[0], w[1]))[:WORST]

    def result(self, values, n) -> dict:
        out = {"status": self.status, "message": self.message, "pairs": self.pairs}
        if self.status == "ok":
            out.update(wrong=self.wrong, signed_zero=self.signed_zero, subnormal=self.subnormal,
                       over_1ulp=self.over_1ulp, max_ulps=_json_number(self.max_ulps),
                       worst=[{"a": _json_number(a), "b": _json_number(b), "truth": _json_number(t),
                               "answer": _json_number(g), "ulps": _json_number(u)}
                              for u, _, a, b, t, g in self.worst])
        return out


# --------------------------------------------------------------------------------------------
# Output.

def _fmt_ulps(v) -> str:
    v = float(v)
    return "inf" if math.isinf(v) else f"{v:.3g}"


def render_markdown(results: dict, pairs: dict | None = None) -> str:
    """The results (and an lse-pairs run, given or under results["pairs"]) as Markdown tables."""
    pairs = pairs if pairs is not None else results.get("pairs")
    lines = ["# Exhaustive half-precision sweep", ""]
    inputs = results["inputs"]
    lines.append("Inputs: the rows [x, 0] for " + "; ".join(
        f"{'every' if v['full'] else 'a reduced range of'} finite {d} value ({v['n']} inputs)"
        for d, v in inputs.items()) + ". Truth: correctly rounded (float64 with a derived bound, the mpmath "
        "oracle near rounding boundaries: " + ", ".join(
            f"{d}: {sum(t['oracle_rows'].values())} oracle rows" for d, t in results["truth"].items()) + ").")
    lines.append("")
    lines.append("Wrongly rounded: results whose bits differ from the correctly rounded value's (NaN = NaN only "
                 "where the truth is NaN); of them, ±0: a zero of the wrong sign (0 ulps); subnormal: the truth is "
                 "below the smallest normal. ulps: in the truth's binade; an inf or NaN answer for a finite truth "
                 "counts as inf.")
    lines += ["", "| backend | op | kind | dtype | inputs | results | wrongly rounded | of them ±0 | of them "
              "subnormal | > 1 ulp | max ulps | worst x (entry: answer vs truth) |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results["results"]:
        head = f"| {r['backend']} | {r['op']} | {r['kind']} | {r['dtype']} | {r['inputs']} |"
        if r["status"] != "ok":
            lines.append(f"{head} - | {r['status']}: {r['message']} | | | | | |")
            continue
        worst = r["worst"][0] if r["worst"] else None
        where = (f"{worst['x']:.9g}" if isinstance(worst["x"], float) else worst["x"]) if worst else ""
        if worst:
            entry = f"[{worst['entry']}] " if worst["entry"] is not None else ""
            where += f" ({entry}{worst['answer']!r} vs {worst['truth']!r})"
        lines.append(f"{head} {r['results']} | {r['wrong']} | {r['signed_zero']} | {r['subnormal']} | "
                     f"{r['over_1ulp']} | {_fmt_ulps(r['max_ulps'])} | {where} |")
    unavailable = {k: v for k, v in results["backends"].items() if v["status"] != "ok"}
    if unavailable:
        lines += ["", "Not run: " + "; ".join(f"{k} ({v['reason']})" for k, v in unavailable.items())]
    flushing = [k for k, v in results["backends"].items() if v.get("flushes_subnormals")]
    if flushing:
        lines += ["", f"Declared to flush subnormals to zero: {', '.join(flushing)} (their subnormal column)."]
    t = results["timings"]
    lines += ["", "## Timings (wall seconds)", "",
              "truth: " + ", ".join(f"{d} {s:.2f}" for d, s in t["truth_s"].items()),
              ""] + [f"- {b}: {s['total']:.2f} s" for b, s in t["backend_s"].items()]
    if pairs:
        lines += ["", "## lse(a, b) over pairs of bfloat16 values", "",
                  f"{pairs['pairs']} pairs a <= b of {pairs['settings']['values']} values "
                  f"({'the full range' if pairs['full'] else 'a reduced range: not every pair of finite bfloat16'}"
                  f"; the full range is {pairs['full_pairs']} pairs); {pairs['oracle_pairs']} answered by the oracle.",
                  "", "| backend | pairs | wrongly rounded | of them ±0 | > 1 ulp | max ulps | worst (a, b): answer "
                  "vs truth | seconds |", "|---|---:|---:|---:|---:|---:|---|---:|"]
        for r in pairs["results"]:
            seconds = pairs["timings"]["backend_s"].get(r["backend"], 0.0)
            if r["status"] != "ok":
                lines.append(f"| {r['backend']} | {r['pairs']} | {r['status']}: {r['message']} | | | | | "
                             f"{seconds:.2f} |")
                continue
            w = r["worst"][0] if r["worst"] else None
            where = f"({w['a']!r}, {w['b']!r}): {w['answer']!r} vs {w['truth']!r}" if w else ""
            lines.append(f"| {r['backend']} | {r['pairs']} | {r['wrong']} | {r['signed_zero']} | {r['over_1ulp']} | "
                         f"{_fmt_ulps(r['max_ulps'])} | {where} | {seconds:.2f} |")
        lines.append(f"\ntruth: {pairs['timings']['truth_cpu_s']:.2f} s of worker time; wall "
                     f"{pairs['timings']['wall_s']:.2f} s.")
    return "\n".join(lines) + "\n"


def _symlog(axis, set_scale, linthresh: float, top: float, first: int = 0) -> None:
    """A symmetric log scale with 0 and a few decades labelled, from the `first`-th (matplotlib's own locator
    labels every decade of a range of 80, which takes seconds to draw)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    set_scale("symlog", linthresh=linthresh)
    decades = range(math.floor(math.log10(linthresh)), math.ceil(math.log10(top)) + 1)
    step = max(1, math.ceil(len(decades) / 4))
    ticks = [10.0 ** d for d in decades[first * step::step]]
    axis.set_major_locator(FixedLocator(sorted([-t for t in ticks] + [0.0] + ticks)))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-")
                                           if v else "0"))  # plain text: no mathtext to lay out


def plot(results: dict, path) -> None:
    """Ulp error against x (the largest in each run of PROFILE_BIN inputs) for each backend: one panel per
    (dtype, kind) row and op column; an inf error is drawn at the top, marked x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = results["settings"]
    panels = [(dtype, kind) for dtype in settings["dtypes"] for kind in settings["kinds"]]
    fig, axes = plt.subplots(len(panels), len(settings["ops"]), figsize=(4.2 * len(settings["ops"]),
                             3.0 * len(panels)), squeeze=False)
    labels = list(dict.fromkeys(r["backend"] for r in results["results"]))
    for i, (dtype, kind) in enumerate(panels):
        fmt = FORMATS[dtype]
        for j, op in enumerate(settings["ops"]):
            ax = axes[i][j]
            rows = {r["backend"]: r for r in results["results"]
                    if (r["op"], r["kind"], r["dtype"], r["status"]) == (op, kind, dtype, "ok")}
            finite = [float(u) for r in rows.values() for u in r["profile"]["ulps"] if math.isfinite(float(u))]
            top = 2 * max(finite + [1.0])
            for k, label in enumerate(labels):
                if label not in rows:
                    continue
                xs = np.array([float(v) for v in rows[label]["profile"]["x"]])
                ys = np.array([float(v) for v in rows[label]["profile"]["ulps"]])
                inf = np.isinf(ys)
                ax.plot(xs[~inf], ys[~inf], ".", ms=3, color=f"C{k}", label=f"{label} ({rows[label]['wrong']} wrong)")
                if inf.any():
                    ax.plot(xs[inf], np.full(inf.sum(), top), "x", ms=4, color=f"C{k}")
            _symlog(ax.xaxis, ax.set_xscale, fmt.smallest_normal, fmt.max, first=1)  # not +-linthresh: by 0
            _symlog(ax.yaxis, ax.set_yscale, 1.0, top)
            ax.set_title(f"{op} {kind}, {dtype}", fontsize=9)
            ax.grid(True, alpha=0.3)
            if j == 0:
                ax.set_ylabel("ulps (max per 128 inputs)")
            if i == len(panels) - 1:
                ax.set_xlabel("x (row [x, 0])")
            if rows:
                ax.legend(fontsize=6)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.04, top=0.97, wspace=0.25, hspace=0.45)
    fig.savefig(path, dpi=90)
    plt.close(fig)
