"""The four floating formats xentcheck checks, their constants, and correct rounding into them.

A format is described by its precision p (significand bits, the implicit bit included) and its
exponent range [emin, emax]: eps = 2**(1-p), the smallest normal is 2**emin, the smallest subnormal
2**(emin-p+1). Every value of every format is exactly representable in float64, so float64 is the
common currency: the reference computes in it and rounds once at the end.
"""
from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

bfloat16 = np.dtype(ml_dtypes.bfloat16)


@dataclass(frozen=True)
class Format:
    name: str
    dtype: np.dtype
    precision: int  # p: significand bits including the implicit one
    emin: int
    emax: int

    @property
    def eps(self) -> float:
        """Machine epsilon 2**(1-p): the gap between 1 and the next larger value."""
        return 2.0 ** (1 - self.precision)

    @property
    def unit_roundoff(self) -> float:
        """u = eps/2: the relative error bound of one round-to-nearest."""
        return 2.0 ** -self.precision

    @property
    def smallest_normal(self) -> float:
        return 2.0 ** self.emin

    @property
    def smallest_subnormal(self) -> float:
        return 2.0 ** (self.emin - self.precision + 1)

    @property
    def max(self) -> float:
        return (2.0 - 2.0 ** (1 - self.precision)) * 2.0 ** self.emax


FORMATS: dict[str, Format] = {
    "float16": Format("float16", np.dtype(np.float16), 11, -14, 15),
    "bfloat16": Format("bfloat16", bfloat16, 8, -126, 127),
    "float32": Format("float32", np.dtype(np.float32), 24, -126, 127),
    "float64": Format("float64", np.dtype(np.float64), 53, -1022, 1023),
}
DTYPE_NAMES = tuple(FORMATS)
# The format each dtype is assumed computed in unless a backend declares otherwise: torch, XLA, cuDNN and
# Triton kernels compute float16 and bfloat16 in float32 and round once.
DEFAULT_COMPUTE = {"float16": "float32", "bfloat16": "float32", "float32": "float32", "float64": "float64"}


def format_of(dtype) -> Format:
    """The Format of a floating dtype (or dtype name); TypeError for anything else."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in FORMATS:
        raise TypeError(f"dtype: must be one of {', '.join(DTYPE_NAMES)}; got {dtype!r}")
    return FORMATS[name]


def round_to_dtype(values, dtype) -> np.ndarray:
    """Round float64 values to `dtype` with a single round-to-nearest-even.

    NumPy's float64 -> float32 and float64 -> float16 casts round correctly. ml_dtypes' float64 ->
    bfloat16 cast goes through float32 and so rounds twice (1 + 2**-8 + 2**-30 becomes 1, not
    1 + 2**-7), so bfloat16 is rounded here by scaling each value to an integer multiple of its ulp.
    """
    fmt = format_of(dtype)
    values = np.asarray(values, dtype=np.float64)
    if fmt.name != "bfloat16":
        with np.errstate(over="ignore"):
            return values.astype(fmt.dtype)
    return _round_generic(values, fmt).astype(fmt.dtype)


def _round_generic(values: np.ndarray, fmt: Format) -> np.ndarray:
    """Correct rounding of float64 to any narrower format, result still held in float64."""
    finite = np.isfinite(values)
    safe = np.where(finite, values, 0.0)
    _, exponent = np.frexp(safe)  # safe = mantissa * 2**exponent with mantissa in [0.5, 1)
    ulp_exponent = np.maximum(exponent - 1, fmt.emin) - fmt.precision + 1
    scaled = np.ldexp(safe, -ulp_exponent)  # exact: a power-of-two scaling
    rounded = np.ldexp(np.rint(scaled), ulp_exponent)  # rint rounds half to even
    rounded = np.where(np.abs(rounded) > fmt.max, np.copysign(np.inf, safe), rounded)
    rounded = np.copysign(rounded, safe)  # keep the sign of zeros
    return np.where(finite, rounded, values)
