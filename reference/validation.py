"""Argument validation shared by the reference, the oracle and the loss family.

Every check raises TypeError or ValueError with a message that names the argument and says what is
allowed, so that a user's mistake never surfaces as a NumPy traceback from deep inside an op.
"""
from __future__ import annotations

import inspect

import math
import numbers
from typing import NamedTuple

import numpy as np

from .dtypes import DTYPE_NAMES, FORMATS

REDUCTIONS = ("mean", "sum", "none")
_ALLOWED_INPUT = f"a real array of {', '.join(DTYPE_NAMES)} (integers and lists are computed in float64)"


def as_float_array(x, name: str) -> np.ndarray:
    """x as an array of one of the four floating dtypes; lists and integer arrays become float64."""
    try:
        array = np.asarray(x)
    except (ValueError, TypeError) as error:  # ragged nested lists
        raise ValueError(f"{name}: could not be read as an array ({error}); expected {_ALLOWED_INPUT}") from None
    kind = array.dtype.kind
    if array.dtype.name in FORMATS:
        return array
    if kind in "iu":
        return array.astype(np.float64)
    raise TypeError(f"{name}: expected {_ALLOWED_INPUT}; got dtype {array.dtype}")


def check_axis(axis, ndim: int, name: str = "axis") -> int:
    """axis as a non-negative int; ValueError when it is out of range for `ndim` dimensions."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name}: must be an int; got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}: {axis} is out of range for an array with {ndim} dimensions "
                         f"(allowed: {-ndim} to {ndim - 1})")
    return int(axis) % ndim


def check_has_axis(array: np.ndarray, name: str) -> None:
    if array.ndim == 0:
        raise ValueError(f"{name}: is 0-dimensional; it needs at least one axis to act along")


def check_nonempty_axis(array: np.ndarray, axis: int, name: str) -> None:
    if array.shape[axis] == 0:
        raise ValueError(f"{name}: the axis it acts along (axis {axis} of shape {array.shape}) is empty; "
                         "it needs at least one entry")


def row_array(x, axis, name: str = "x") -> tuple[np.ndarray, int]:
    """x as an array of its floating dtype with a non-empty axis `axis` to act along, and that axis as a
    non-negative int."""
    array = as_float_array(x, name)
    check_has_axis(array, name)
    axis = check_axis(axis, array.ndim)
    check_nonempty_axis(array, axis, name)
    return array, axis


def logits_array(logits, name: str = "logits") -> np.ndarray:
    """Logits: a floating array whose last axis (the classes) is non-empty."""
    return row_array(logits, -1, name)[0]


def check_shape(value, name: str, shape: tuple, whose: str) -> np.ndarray:
    """`value` (a cotangent or tangent) as a floating array of exactly `shape`, e.g. whose="the loss's"."""
    array = as_float_array(value, name)
    if array.shape != tuple(shape):
        raise ValueError(f"{name}: must have {whose} shape {tuple(shape)}; got shape {array.shape}")
    return array


class CrossEntropyArguments(NamedTuple):
    logits: np.ndarray      # a floating array, classes along its non-empty last axis
    target_kind: str        # "index" or "probabilities"
    target: np.ndarray      # class indices (the batch shape) or probabilities (the logits' shape)
    reduction: str
    weight: np.ndarray | None
    ignore_index: int
    label_smoothing: float


def cross_entropy_arguments(logits, target, reduction="mean", weight=None, ignore_index=-100,
                            label_smoothing=0.0) -> CrossEntropyArguments:
    """cross_entropy's arguments, each checked (the reference, the oracle and the vocabulary-parallel
    backends share this)."""
    array = logits_array(logits)
    reduction, ignore_index = check_reduction(reduction), check_ignore_index(ignore_index)
    smoothing, weight = check_label_smoothing(label_smoothing), check_weight(weight, array.shape[-1])
    return CrossEntropyArguments(array, *check_target(target, array.shape, ignore_index), reduction, weight,
                                 ignore_index, smoothing)


def loss_cotangent(cotangent, batch_shape: tuple, reduction: str) -> np.ndarray:
    """The cotangent of a loss reduced by `reduction` over examples of `batch_shape`: shaped like the reduced
    loss (batch_shape for "none", () otherwise); returned as float64, flattened to 1-D."""
    shape = tuple(batch_shape) if reduction == "none" else ()
    return check_shape(cotangent, "cotangent", shape, "the loss's").astype(np.float64).reshape(-1)


def check_temperature(temperature) -> float:
    value = _real_scalar(temperature, "temperature")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"temperature: must be finite and > 0; got {temperature!r}")
    return value


def check_label_smoothing(label_smoothing) -> float:
    value = _real_scalar(label_smoothing, "label_smoothing")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"label_smoothing: must be in [0, 1]; got {label_smoothing!r}")
    return value


def check_reduction(reduction) -> str:
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction: must be one of {', '.join(map(repr, REDUCTIONS))}; got {reduction!r}")
    return reduction


def check_ignore_index(ignore_index) -> int:
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index: must be an int; got {ignore_index!r}")
    return int(ignore_index)


def check_weight(weight, n_classes: int) -> np.ndarray | None:
    """Class weights as float64 of shape (C,), finite and >= 0, or None."""
    if weight is None:
        return None
    w = as_float_array(weight, "weight")
    if w.shape != (n_classes,):
        raise ValueError(f"weight: must have shape ({n_classes},), one weight per class; got shape {w.shape}")
    w = w.astype(np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weight: every class weight must be finite and >= 0")
    return w


def check_target(target, logits_shape: tuple, ignore_index: int):
    """Classify and validate a cross-entropy target.

    Returns ("index", int64 array shaped like the batch) or ("probability", float64 array shaped
    like the logits).
    """
    batch_shape, n_classes = logits_shape[:-1], logits_shape[-1]
    try:
        t = np.asarray(target)
    except (ValueError, TypeError) as error:
        raise ValueError(f"target: could not be read as an array ({error})") from None
    if t.dtype.kind in "iu":
        if t.shape != batch_shape:
            raise ValueError(f"target: class indices must have the batch shape {batch_shape} "
                             f"(the logits' shape without its last, class, axis); got shape {t.shape}")
        bad = (t != ignore_index) & ((t < 0) | (t >= n_classes))  # before any cast: uint64 stays itself
        if np.any(bad):
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"target: class indices must be in [0, {n_classes}) or equal "
                             f"ignore_index={ignore_index}; got {int(t[where])} at position {where}")
        return "index", t.astype(np.int64)
    if t.dtype.name in FORMATS:
        if t.shape != tuple(logits_shape):
            raise ValueError(f"target: probability targets must have the logits' shape {tuple(logits_shape)}; "
                             f"got shape {t.shape}")
        q = t.astype(np.float64)
        if not np.all((q >= 0) & (q <= 1)):
            raise ValueError("target: probability targets must lie in [0, 1] (NaN is not allowed)")
        return "probability", q
    raise TypeError(f"target: expected integer class indices or floating probabilities "
                    f"({', '.join(DTYPE_NAMES)}); got dtype {t.dtype}")


def integer_indices(target) -> np.ndarray:
    """`target` as an array of integer class indices (TypeError for another dtype)."""
    try:
        t = np.asarray(target)
    except (ValueError, TypeError) as error:
        raise ValueError(f"target: could not be read as an array ({error})") from None
    if t.dtype.kind not in "iu":
        raise TypeError(f"target: expected integer class indices; got dtype {t.dtype}")
    return t


def check_class_index(target, logits_shape: tuple) -> np.ndarray:
    """Integer class indices shaped like the batch, each in [0, C), as int64 (the loss family's targets:
    there is no ignore_index and there are no probability targets)."""
    batch_shape, n_classes = tuple(logits_shape[:-1]), logits_shape[-1]
    t = integer_indices(target)
    if t.shape != batch_shape:
        raise ValueError(f"target: class indices must have the batch shape {batch_shape} "
                         f"(the logits' shape without its last, class, axis); got shape {t.shape}")
    bad = (t < 0) | (t >= n_classes)
    if np.any(bad):
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"target: class indices must be in [0, {n_classes}); got {int(t[where])} at position {where}")
    return t.astype(np.int64)


def check_non_negative(value, name: str) -> float:
    """A finite real number >= 0 (focal gamma, hinge margin)."""
    number = _real_scalar(value, name)
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{name}: must be finite and >= 0; got {value!r}")
    return number


def check_softcap(softcap) -> float | None:
    """Gemma 2's logit soft-cap: None (no cap) or a finite real number > 0."""
    if softcap is None:
        return None
    if isinstance(softcap, (bool, np.bool_)) or not isinstance(softcap, (numbers.Real, np.floating)):
        raise TypeError(f"softcap: must be None or a real number > 0; got {softcap!r}")
    value = float(softcap)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"softcap: must be None or a finite number > 0; got {softcap!r}")
    return value


def check_alpha(alpha, n_classes: int) -> np.ndarray | None:
    """Focal alpha: None, a scalar or one weight per class (C,), finite and >= 0, as float64 (C,) or None."""
    if alpha is None:
        return None
    a = as_float_array(alpha, "alpha")
    if a.shape not in ((), (n_classes,)):
        raise ValueError(f"alpha: must be a scalar or have shape ({n_classes},), one weight per class; "
                         f"got shape {a.shape}")
    a = np.broadcast_to(a.astype(np.float64), (n_classes,))
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError("alpha: every class weight must be finite and >= 0")
    return a


def check_choice(value, name: str, allowed: tuple) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}: must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def check_probabilities(p, name: str, shape: tuple | None = None) -> np.ndarray:
    """Probability vectors along the last axis: a real array with at least one axis, a non-empty last axis
    and every entry in [0, 1] (NaN is not allowed). Rows need not sum to 1: the formulas are applied as
    written. With `shape`, p must have it (q beside p)."""
    array = row_array(p, -1, name)[0] if shape is None else row_array(check_shape(p, name, shape, "p's"), -1, name)[0]
    values = array.astype(np.float64)
    if not np.all((values >= 0) & (values <= 1)):
        raise ValueError(f"{name}: every entry must lie in [0, 1] (NaN is not allowed)")
    return array


def _real_scalar(value, name: str) -> float:
    """A real number as a float; integers too large for a float become inf (and fail the range check)."""
    floating_scalar = isinstance(value, np.generic) and value.dtype.name in FORMATS  # bfloat16 is not Real
    if isinstance(value, (bool, np.bool_)) or not (isinstance(value, numbers.Real) or floating_scalar):
        raise TypeError(f"{name}: must be a real number; got {value!r}")
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def vjp_function(op, kwargs: dict, namespace: dict, suffix: str = "_vjp"):
    """The function `<op>_vjp` (or `<op><suffix>`) of `namespace` (a module's globals), once `op` and the keyword
    arguments are checked against the functions there and its signature (ValueError / TypeError naming what is
    allowed)."""
    ops = sorted(name[:-len(suffix)] for name, fn in namespace.items()
                 if name.endswith(suffix) and not name.startswith("_") and callable(fn))
    if not isinstance(op, str):
        raise TypeError(f"op: must be one of {', '.join(map(repr, ops))} (a str); got {op!r}")
    if op not in ops:
        raise ValueError(f"op: must be one of {', '.join(map(repr, ops))}; got {op!r}")
    fn = namespace[f"{op}{suffix}"]
    allowed = [name for name in inspect.signature(fn).parameters][2:]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"{op}: unexpected keyword argument(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return fn


def check_choices(option: str, chosen, allowed) -> list | None:
    """`chosen` (a list of names, or None for the default) when every name is one of `allowed`; ValueError
    naming the option, the unknown names and the choices otherwise (an empty list names none)."""
    if chosen is None:
        return None
    unknown = [c for c in chosen if c not in allowed]
    if unknown or not chosen:
        raise ValueError(f"{option}: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(allowed)}")
    return list(chosen)
