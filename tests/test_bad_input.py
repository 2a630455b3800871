"""Bad input to the reference and the oracle is refused with a message that names the argument.

Every public function of `xentcheck.reference` and of `xentcheck.reference.exact` must raise a
TypeError (wrong kind: complex, bool, object or string data, a non-int axis, a string temperature)
or a ValueError (bad shape, out-of-range value) whose message starts with the argument's name and
says what is allowed. DESIGN.md: "a bad shape, an out-of-range target, an empty class axis, a bad
temperature / smoothing / reduction is a ValueError whose message names the argument and the
allowed values".

The table rows are (callable, args, kwargs, exception type, regex the message must match). A row
marked xfail(strict=True) states the correct behaviour where the library currently falls short.
The second half checks that accepted input really works: lists and integer arrays are computed in
float64, and float16, bfloat16, float32 and float64 inputs keep their dtype.
"""
from __future__ import annotations

import functools
import math
import re

import numpy as np
import pytest

from xentcheck import bounds, verdict

from xentcheck import reference as R
from xentcheck.reference import bfloat16
from xentcheck.reference import exact as E

X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # 2 examples, 3 classes
TARGET = np.array([0, 2])
PROBS = np.array([[0.5, 0.25, 0.25], [0.0, 0.0, 1.0]])
ALLOWED_DTYPES = r"float16, bfloat16, float32, float64"


def case(fn, *args, exc, match, id, xfail=None, **kwargs):
    """One table row; `xfail` is the reason where the library is known to get this row wrong."""
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(fn, args, kwargs, exc, match, id=id, marks=marks)


def vjp_of(module, op):
    """module.vjp with the op bound: called as (x, cotangent, **kwargs)."""
    return functools.partial(module.vjp, op)


# Functions of one array along an axis: (id, callable(x, ...)).
ROW_OPS = [
    ("softmax", R.softmax), ("log_softmax", R.log_softmax), ("logsumexp", R.logsumexp),
    ("exact.softmax", E.softmax), ("exact.log_softmax", E.log_softmax), ("exact.logsumexp", E.logsumexp),
]
ROW_VJPS = [(f"{prefix}vjp[{op}]", vjp_of(module, op))
            for prefix, module in (("", R), ("exact.", E)) for op in ("softmax", "log_softmax", "logsumexp")]
TEMPERATURE_OPS = [(name, fn) for name, fn in ROW_OPS + ROW_VJPS if "logsumexp" not in name]
CE_OPS = [  # cross-entropy in every form: (id, callable(logits, target, **kw))
    ("cross_entropy", R.cross_entropy),
    ("cross_entropy_value_and_grad", R.cross_entropy_value_and_grad),
    ("exact.cross_entropy", E.cross_entropy),
    ("vjp[cross_entropy]", lambda x, t, **kw: R.vjp("cross_entropy", x, 1.0, target=t, **kw)),
    ("exact.vjp[cross_entropy]", lambda x, t, **kw: E.vjp("cross_entropy", x, 1.0, target=t, **kw)),
]


def _row_vjp_args(a):
    return (a, 1.0)  # x is validated before the cotangent, so any cotangent will do


def _x_and_cotangent(fn, cotangent):
    """The positional arguments of a row op (x) or of its vjp (x, cotangent)."""
    return (X,) if fn in dict(ROW_OPS).values() else (X, cotangent)


# Every function whose first argument is an array: (id, callable, args around the array, its name).
ARRAY_ARGUMENTS = (
    [(name, fn, lambda a: (a,), "x") for name, fn in ROW_OPS]
    + [(name, fn, _row_vjp_args, "x") for name, fn in ROW_VJPS]
    + [(name, fn, lambda a: (a, TARGET), "logits") for name, fn in CE_OPS]
    + [
        ("softmax_naive", R.softmax_naive, lambda a: (a,), "logits"),
        ("cross_entropy_loss", R.cross_entropy_loss, lambda a: (a, 0), "probs"),
        ("softmax_cross_entropy_grad", R.softmax_cross_entropy_grad, lambda a: (a, 0), "logits"),
        ("batch_cross_entropy_loss", R.batch_cross_entropy_loss, lambda a: (a, TARGET), "logits_batch"),
    ]
)

# Arrays no function accepts: (id, value, exception, the message after "<argument name>: ").
BAD_ARRAYS = [
    ("str", np.array([["a", "b", "c"]]), TypeError, rf".*{ALLOWED_DTYPES}.*got dtype <U1"),
    ("list-of-str", [["1.0", "2.0"]], TypeError, rf".*{ALLOWED_DTYPES}.*got dtype <U3"),
    ("complex", np.array([[1.0 + 1j, 2.0, 3.0]]), TypeError, rf".*{ALLOWED_DTYPES}.*got dtype complex128"),
    ("bool", np.array([[True, False, True]]), TypeError, rf".*{ALLOWED_DTYPES}.*got dtype bool"),
    ("object", np.array([[1.0, None, 3.0]], dtype=object), TypeError, rf".*{ALLOWED_DTYPES}.*got dtype object"),
    ("ragged", [[1.0, 2.0], [3.0]], ValueError, rf"could not be read as an array.*{ALLOWED_DTYPES}"),
]
if np.dtype(np.longdouble) != np.dtype(np.float64):  # where long double is wider than double
    BAD_ARRAYS.append(("longdouble", np.ones((2, 3), dtype=np.longdouble), TypeError,
                       rf".*{ALLOWED_DTYPES}.*got dtype {np.dtype(np.longdouble).name}"))


def _bad_array_rows():
    for fn_id, fn, make_args, argname in ARRAY_ARGUMENTS:
        for bad_id, value, exc, message in BAD_ARRAYS:
            yield case(fn, *make_args(value), exc=exc, match=rf"^{argname}: {message}", id=f"{fn_id}-{bad_id}")


SHAPE_ROWS = [
    # A 0-d input has no axis to act along.
    *[case(fn, np.float64(1.0), exc=ValueError, match=r"^x: .*0-dimensional.*at least one axis",
           id=f"{name}-0d") for name, fn in ROW_OPS],
    *[case(fn, np.float64(1.0), 1.0, exc=ValueError, match=r"^x: .*0-dimensional.*at least one axis",
           id=f"{name}-0d") for name, fn in ROW_VJPS],
    *[case(fn, np.float64(1.0), 0, exc=ValueError, match=r"^logits: .*0-dimensional.*at least one axis",
           id=f"{name}-0d") for name, fn in CE_OPS],
    case(R.softmax_naive, np.float64(1.0), exc=ValueError, match=r"^logits: .*0-dimensional", id="softmax_naive-0d"),
    case(R.cross_entropy_loss, np.float64(0.5), 0, exc=ValueError, match=r"^probs: must be a non-empty 1-D",
         id="cross_entropy_loss-0d"),
    case(R.softmax_cross_entropy_grad, np.float64(1.0), 0, exc=ValueError, match=r"^logits: .*0-dimensional",
         id="softmax_cross_entropy_grad-0d"),
    case(R.batch_cross_entropy_loss, np.float64(1.0), 0, exc=ValueError, match=r"^logits_batch: .*0-dimensional",
         id="batch_cross_entropy_loss-0d"),
    # An empty class axis: nothing to normalise over.
    *[case(fn, np.zeros((2, 0)), exc=ValueError, match=r"^x: .*is empty.*at least one entry",
           id=f"{name}-empty-axis") for name, fn in ROW_OPS],
    *[case(fn, np.zeros((2, 0)), np.zeros((2, 0)), exc=ValueError, match=r"^x: .*is empty.*at least one entry",
           id=f"{name}-empty-axis") for name, fn in ROW_VJPS],
    case(R.softmax, np.zeros((0, 3)), axis=0, exc=ValueError, match=r"^x: .*axis 0 of shape \(0, 3\).*is empty",
         id="softmax-empty-axis0"),
    *[case(fn, np.zeros((2, 0)), TARGET, exc=ValueError, match=r"^logits: .*is empty.*at least one entry",
           id=f"{name}-empty-axis") for name, fn in CE_OPS],
    case(R.softmax_naive, np.zeros((2, 0)), exc=ValueError, match=r"^logits: .*is empty", id="softmax_naive-empty"),
    case(R.cross_entropy_loss, np.zeros(0), 0, exc=ValueError, match=r"^probs: must be a non-empty 1-D",
         id="cross_entropy_loss-empty"),
    case(R.cross_entropy_loss, np.full((2, 2), 0.5), 0, exc=ValueError, match=r"^probs: must be a non-empty 1-D",
         id="cross_entropy_loss-2d"),
    case(R.softmax_cross_entropy_grad, X, 0, exc=ValueError, match=r"^logits: must be a 1-D array.*\(2, 3\)",
         id="softmax_cross_entropy_grad-2d"),
    case(R.softmax_cross_entropy_grad, np.zeros(0), 0, exc=ValueError, match=r"^logits: .*(empty|non-empty)",
         id="softmax_cross_entropy_grad-empty"),
    case(R.batch_cross_entropy_loss, X[0], TARGET, exc=ValueError, match=r"^logits_batch: must be 2-D",
         id="batch_cross_entropy_loss-1d"),
    case(R.batch_cross_entropy_loss, np.zeros((2, 0)), TARGET * 0, exc=ValueError,
         match=r"^logits_batch: .*(empty|non-empty|at least one)", id="batch_cross_entropy_loss-empty-classes"),
    # softmax_stable(logits) names its own argument.
    case(R.softmax_stable, np.array(["a"]), exc=TypeError, match=rf"^logits: .*{ALLOWED_DTYPES}",
         id="softmax_stable-str"),
    case(R.softmax_stable, np.float64(1.0), exc=ValueError, match=r"^logits: .*(0-dimensional|at least one)",
         id="softmax_stable-0d"),
    case(R.softmax_stable, np.zeros((2, 0)), exc=ValueError, match=r"^logits: .*empty",
         id="softmax_stable-empty"),
    case(R.softmax_stable, np.array([1 + 1j]), exc=TypeError, match=rf"^\w+: .*{ALLOWED_DTYPES}.*complex128",
         id="softmax_stable-complex-type"),
    case(R.softmax_stable, np.zeros((2, 0)), exc=ValueError, match=r"^\w+: .*is empty",
         id="softmax_stable-empty-type"),
]

AXIS_FNS = ROW_OPS + ROW_VJPS
AXIS_ROWS = [
    row
    for name, fn in AXIS_FNS
    for args in [_x_and_cotangent(fn, 1.0)]  # axis is checked before the cotangent's shape
    for row in (
        case(fn, *args, axis=2, exc=ValueError, match=r"^axis: 2 is out of range .*2 dimensions.*allowed: -2 to 1",
             id=f"{name}-axis=2"),
        case(fn, *args, axis=-3, exc=ValueError, match=r"^axis: -3 is out of range.*allowed: -2 to 1",
             id=f"{name}-axis=-3"),
        case(fn, *args, axis=1.0, exc=TypeError, match=r"^axis: must be an int; got 1\.0", id=f"{name}-axis=1.0"),
        case(fn, *args, axis="0", exc=TypeError, match=r"^axis: must be an int; got '0'", id=f"{name}-axis='0'"),
        case(fn, *args, axis=None, exc=TypeError, match=r"^axis: must be an int; got None", id=f"{name}-axis=None"),
        case(fn, *args, axis=True, exc=TypeError, match=r"^axis: must be an int; got True", id=f"{name}-axis=True"),
    )
]

TEMPERATURE_ROWS = [
    row
    for name, fn in TEMPERATURE_OPS
    for args in [_x_and_cotangent(fn, np.ones_like(X))]
    for row in (
        *[case(fn, *args, temperature=tau, exc=ValueError, match=r"^temperature: must be finite and > 0; got",
               id=f"{name}-temperature={tau!r}") for tau in (0, 0.0, -1.0, math.inf, -math.inf, math.nan)],
        case(fn, *args, temperature="0.5", exc=TypeError, match=r"^temperature: must be a real number; got '0.5'",
             id=f"{name}-temperature=str"),
        case(fn, *args, temperature=None, exc=TypeError, match=r"^temperature: must be a real number; got None",
             id=f"{name}-temperature=None"),
        case(fn, *args, temperature=1j, exc=TypeError, match=r"^temperature: must be a real number",
             id=f"{name}-temperature=complex"),
    )
]


def _ce_rows():
    bad_probs = {"above-1": [[0.5, 0.5, 1.5], [0.0, 0.0, 1.0]], "negative": [[-0.1, 0.6, 0.5], [0.0, 0.0, 1.0]],
                 "nan": [[np.nan, 0.5, 0.5], [0.0, 0.0, 1.0]]}
    for name, fn in CE_OPS:
        def row(target, exc, match, id, **kwargs):
            return case(fn, X, target, exc=exc, match=match, id=f"{name}-{id}", **kwargs)

        oob = r"^target: class indices must be in \[0, 3\) or equal ignore_index=-100; got {} at position \({},\)"
        yield row([0, 3], ValueError, oob.format(3, 1), "target-too-big")
        yield row([-1, 0], ValueError, oob.format(-1, 0), "target-negative")
        yield row([0, -100], ValueError, r"^target: .*equal ignore_index=-1; got -100", "target-default-ignore",
                  ignore_index=-1)
        yield row([0, 1, 2], ValueError, r"^target: class indices must have the batch shape \(2,\).*got shape \(3,\)",
                  "target-shape")
        yield row([[0], [2]], ValueError, r"^target: class indices must have the batch shape \(2,\)", "target-2d")
        yield row([True, False], TypeError, rf"^target: expected integer class indices or floating probabilities "
                  rf"\({ALLOWED_DTYPES}\); got dtype bool", "target-bool")
        yield row(np.array(["0", "1"]), TypeError, r"^target: expected integer class indices.*got dtype <U1",
                  "target-str")
        yield row(np.array([0, 1 + 0j]), TypeError, r"^target: expected integer class indices.*complex128",
                  "target-complex")
        yield row(np.array([0, None], dtype=object), TypeError, r"^target: expected integer.*object", "target-object")
        yield row([[0], [1, 2]], ValueError, r"^target: could not be read as an array", "target-ragged")
        for probs_id, probs in bad_probs.items():
            yield row(np.array(probs), ValueError, r"^target: probability targets must lie in \[0, 1\]",
                      f"probs-{probs_id}")
        yield row(np.full((2, 2), 0.5), ValueError,
                  r"^target: probability targets must have the logits' shape \(2, 3\); got shape \(2, 2\)",
                  "probs-shape")
        yield row(np.array([0.0, 2.0]), ValueError, r"^target: probability targets must have the logits' shape",
                  "float-indices")
        weight_values = r"^weight: every class weight must be finite and >= 0"
        yield row(TARGET, ValueError, r"^weight: must have shape \(3,\), one weight per class; got shape \(2,\)",
                  "weight-short", weight=[1.0, 1.0])
        yield row(TARGET, ValueError, r"^weight: must have shape \(3,\).*got shape \(1, 3\)", "weight-2d",
                  weight=[[1.0, 1.0, 1.0]])
        yield row(TARGET, ValueError, r"^weight: must have shape \(3,\).*got shape \(\)", "weight-scalar", weight=1.0)
        yield row(TARGET, ValueError, weight_values, "weight-negative", weight=[1.0, -0.5, 1.0])
        yield row(TARGET, ValueError, weight_values, "weight-nan", weight=[1.0, np.nan, 1.0])
        yield row(TARGET, ValueError, weight_values, "weight-inf", weight=[1.0, np.inf, 1.0])
        yield row(TARGET, TypeError, rf"^weight: .*{ALLOWED_DTYPES}.*got dtype bool", "weight-bool",
                  weight=[True, True, False])
        yield row(TARGET, TypeError, rf"^weight: .*{ALLOWED_DTYPES}.*got dtype <U", "weight-str",
                  weight=["1", "1", "1"])
        for eps in (-0.1, 1.5, math.nan, math.inf):
            yield row(TARGET, ValueError, r"^label_smoothing: must be in \[0, 1\]; got", f"label_smoothing={eps}",
                      label_smoothing=eps)
        yield row(TARGET, TypeError, r"^label_smoothing: must be a real number; got '0.1'", "label_smoothing=str",
                  label_smoothing="0.1")
        allowed = r"must be one of 'mean', 'sum', 'none'; got "
        for reduction in ("avg", "MEAN", "", None, ["mean"]):
            yield row(TARGET, ValueError, rf"^reduction: {allowed}{re.escape(repr(reduction))}$",
                      f"reduction={reduction!r}", reduction=reduction)
        yield row(TARGET, TypeError, r"^ignore_index: must be an int; got 1\.5", "ignore_index=1.5", ignore_index=1.5)
        yield row(TARGET, TypeError, r"^ignore_index: must be an int; got None", "ignore_index=None",
                  ignore_index=None)


VJP_ROWS = [
    row
    for prefix, module in (("", R), ("exact.", E))
    for row in (
        case(module.vjp, "softmaxx", X, X, exc=ValueError, id=f"{prefix}vjp-op-unknown",
             match=r"^op: must be one of 'cross_entropy', .*'softmax'; got 'softmaxx'"),
        case(module.vjp, None, X, X, exc=TypeError, match=r"^op: must be one of .*; got None",
             id=f"{prefix}vjp-op-None"),
        case(module.vjp, ["softmax"], X, X, exc=TypeError, match=r"^op: must be one of 'cross_entropy', .* \(a str\); got \['softmax'\]",
             id=f"{prefix}vjp-op-list"),
        case(module.vjp, "softmax", X, X[0], exc=ValueError, id=f"{prefix}vjp[softmax]-cotangent-shape",
             match=r"^cotangent: must have the op's output shape \(2, 3\); got shape \(3,\)"),
        case(module.vjp, "log_softmax", X, 1.0, exc=ValueError, id=f"{prefix}vjp[log_softmax]-cotangent-scalar",
             match=r"^cotangent: must have the op's output shape \(2, 3\); got shape \(\)"),
        case(module.vjp, "logsumexp", X, X, exc=ValueError, id=f"{prefix}vjp[logsumexp]-cotangent-shape",
             match=r"^cotangent: must have the op's output shape \(2,\); got shape \(2, 3\)"),
        case(module.vjp, "logsumexp", X, [1.0, 1.0], axis=0, exc=ValueError,
             id=f"{prefix}vjp[logsumexp]-axis0-cotangent-shape", match=r"^cotangent: .*shape \(3,\); got shape \(2,\)"),
        case(module.vjp, "cross_entropy", X, [1.0, 1.0], target=TARGET, exc=ValueError,
             id=f"{prefix}vjp[cross_entropy]-mean-cotangent-shape",
             match=r"^cotangent: must have the loss's shape \(\); got shape \(2,\)"),
        case(module.vjp, "cross_entropy", X, 1.0, target=TARGET, reduction="none", exc=ValueError,
             id=f"{prefix}vjp[cross_entropy]-none-cotangent-shape",
             match=r"^cotangent: must have the loss's shape \(2,\); got shape \(\)"),
        case(module.vjp, "softmax", X, np.full((2, 3), "a"), exc=TypeError, id=f"{prefix}vjp-cotangent-str",
             match=rf"^cotangent: .*{ALLOWED_DTYPES}.*got dtype <U1"),
        case(module.vjp, "softmax", X, X + 1j, exc=TypeError, id=f"{prefix}vjp-cotangent-complex",
             match=rf"^cotangent: .*{ALLOWED_DTYPES}.*got dtype complex128"),
        case(module.vjp, "cross_entropy", X, True, target=TARGET, exc=TypeError, id=f"{prefix}vjp-cotangent-bool",
             match=r"^cotangent: .*got dtype bool"),
        case(module.vjp, "softmax", X, X, target=TARGET, exc=TypeError, id=f"{prefix}vjp[softmax]-unknown-kwarg",
             match=r"^softmax: unexpected keyword argument\(s\) target; allowed: axis, temperature"),
        case(module.vjp, "logsumexp", X, [1.0, 1.0], temperature=2.0, exc=TypeError,
             id=f"{prefix}vjp[logsumexp]-unknown-kwarg",
             match=r"^logsumexp: unexpected keyword argument\(s\) temperature; allowed: axis"),
        case(module.vjp, "cross_entropy", X, 1.0, target=TARGET, axis=0, exc=TypeError,
             id=f"{prefix}vjp[cross_entropy]-unknown-kwarg",
             match=r"^cross_entropy: unexpected keyword argument\(s\) axis; "
                   r"allowed: target, reduction, weight, ignore_index, label_smoothing"),
        case(module.vjp, "cross_entropy", X, 1.0, exc=TypeError, id=f"{prefix}vjp[cross_entropy]-no-target",
             match=r"^target: vjp\('cross_entropy', \.\.\.\) needs the target= keyword"),
    )
]

NOTEBOOK_ROWS = [
    case(R.cross_entropy_loss, [0.5, 1.5], 0, exc=ValueError, match=r"^probs: every probability must lie in \[0, 1\]",
         id="cross_entropy_loss-probs-above-1"),
    case(R.cross_entropy_loss, [-0.5, 1.0], 0, exc=ValueError, match=r"^probs: every probability must lie in \[0, 1\]",
         id="cross_entropy_loss-probs-negative"),
    case(R.cross_entropy_loss, [np.nan, 1.0], 0, exc=ValueError, match=r"^probs: .*NaN is not allowed",
         id="cross_entropy_loss-probs-nan"),
    case(R.cross_entropy_loss, [np.inf, 1.0], 0, exc=ValueError, match=r"^probs: .*\[0, 1\]",
         id="cross_entropy_loss-probs-inf"),
    *[
        case(fn, vector, index, exc=exc, match=match, id=f"{name}-target_index={index!r}")
        for name, fn, vector in (("cross_entropy_loss", R.cross_entropy_loss, [0.25, 0.25, 0.5]),
                                 ("softmax_cross_entropy_grad", R.softmax_cross_entropy_grad, [1.0, 2.0, 3.0]))
        for index, exc, match in (
            (3, ValueError, r"^target_index: must be in \[0, 3\); got 3"),
            (-1, ValueError, r"^target_index: must be in \[0, 3\); got -1"),
            (1.0, TypeError, r"^target_index: must be an int; got 1\.0"),
            ("1", TypeError, r"^target_index: must be an int; got '1'"),
            (True, TypeError, r"^target_index: must be an int; got True"),
            (None, TypeError, r"^target_index: must be an int; got None"),
            (np.array([1]), TypeError, r"^target_index: must be an int"),
        )
    ],
    case(R.batch_cross_entropy_loss, X, [0, 3], exc=ValueError,
         match=r"^target_indices: every index must be in \[0, 3\)",
         id="batch_cross_entropy_loss-target-too-big"),
    case(R.batch_cross_entropy_loss, X, [-1, 0], exc=ValueError,
         match=r"^target_indices: every index must be in \[0, 3\)", id="batch_cross_entropy_loss-target-negative"),
    case(R.batch_cross_entropy_loss, X, [-100, 0], exc=ValueError,
         match=r"^target_indices: every index must be in \[0, 3\)", id="batch_cross_entropy_loss-no-ignore_index"),
    case(R.batch_cross_entropy_loss, X, [0], exc=ValueError,
         match=r"^target_indices: must be 2 class indices, one per row; got shape \(1,\)",
         id="batch_cross_entropy_loss-target-count"),
    case(R.batch_cross_entropy_loss, X, [0.0, 1.0], exc=TypeError,
         match=r"^target_indices: must be integer class indices.*got dtype float64",
         id="batch_cross_entropy_loss-target-float"),
    case(R.batch_cross_entropy_loss, X, [True, False], exc=TypeError, match=r"^target_indices: .*integer",
         id="batch_cross_entropy_loss-target-bool"),
    case(R.batch_cross_entropy_loss, X, [[0], [1, 2]], exc=ValueError, match=r"^target_indices: ",
         id="batch_cross_entropy_loss-target-ragged"),
]

# Once bugs, one row per bug and implementation (the checks are shared by the reference and the oracle).
BUG_ROWS = [
    row
    for name, module in (("", R), ("exact.", E))
    for row in (
        case(module.softmax, X, temperature=10 ** 400, exc=ValueError, match=r"^temperature: must be finite",
             id=f"{name}softmax-temperature=10**400"),
        case(module.cross_entropy, X, TARGET, label_smoothing=10 ** 400, exc=ValueError,
             match=r"^label_smoothing: must be in \[0, 1\]", id=f"{name}cross_entropy-label_smoothing=10**400"),
        case(module.cross_entropy, X, np.array([2 ** 64 - 1, 0], dtype=np.uint64), exc=ValueError,
             match=r"^target: class indices must be in \[0, 3\).*got 18446744073709551615",
             id=f"{name}cross_entropy-target-uint64-huge"),
        case(module.cross_entropy, X, TARGET, reduction=np.array(["mean", "sum"]), exc=ValueError,
             match=r"^reduction: must be one of 'mean', 'sum', 'none'", id=f"{name}cross_entropy-reduction=array"),
    )
]

TABLE = [*_bad_array_rows(), *SHAPE_ROWS, *AXIS_ROWS, *TEMPERATURE_ROWS, *_ce_rows(), *VJP_ROWS, *NOTEBOOK_ROWS,
         *BUG_ROWS]


@pytest.mark.parametrize("fn, args, kwargs, exc, match", TABLE)
def test_bad_input_is_refused_naming_the_argument(fn, args, kwargs, exc, match):
    with pytest.raises(exc, match=match) as info:
        fn(*args, **kwargs)
    assert type(info.value) in (TypeError, ValueError), "a subclass (e.g. numpy's errors) is not the contract"


def test_the_table_covers_every_public_function():
    """Each public function of the reference and the oracle appears in the table."""
    def underlying(fn):
        return fn.func if isinstance(fn, functools.partial) else fn

    covered = {underlying(p.values[0]) for p in TABLE}
    covered |= {R.vjp, E.vjp}  # the cross-entropy vjp rows go through lambdas
    public = [R.softmax, R.log_softmax, R.logsumexp, R.cross_entropy, R.vjp, R.cross_entropy_value_and_grad,
              R.softmax_stable, R.softmax_naive, R.cross_entropy_loss, R.softmax_cross_entropy_grad,
              R.batch_cross_entropy_loss, E.softmax, E.log_softmax, E.logsumexp, E.cross_entropy, E.vjp]
    assert [f.__name__ for f in public if f not in covered] == []


# ------------------------------------------------------------------------------------------------
# Accepted input really works.

# (id, f(x) -> result or tuple of results) for every function that returns arrays in x's dtype.
ARRAY_RESULTS = [
    ("softmax", lambda x: R.softmax(x)),
    ("softmax-axis0-tau", lambda x: R.softmax(x, axis=0, temperature=0.5)),
    ("log_softmax", lambda x: R.log_softmax(x, temperature=2.0)),
    ("logsumexp", lambda x: R.logsumexp(x)),
    ("cross_entropy", lambda x: R.cross_entropy(x, TARGET)),
    ("cross_entropy-none-weight-smoothing",
     lambda x: R.cross_entropy(x, TARGET, reduction="none", weight=[1.0, 2.0, 0.5], label_smoothing=0.1)),
    ("cross_entropy-probs", lambda x: R.cross_entropy(x, PROBS, reduction="sum")),
    ("cross_entropy_value_and_grad", lambda x: R.cross_entropy_value_and_grad(x, TARGET)),
    ("vjp[softmax]", lambda x: R.vjp("softmax", x, np.ones((2, 3)), temperature=0.5)),
    ("vjp[log_softmax]", lambda x: R.vjp("log_softmax", x, [[1, 0, 0], [0, 1, 0]])),
    ("vjp[logsumexp]", lambda x: R.vjp("logsumexp", x, [1.0, 2.0])),
    ("vjp[cross_entropy]", lambda x: R.vjp("cross_entropy", x, 1.0, target=TARGET)),
    ("softmax_stable", lambda x: R.softmax_stable(x)),
    ("softmax_naive", lambda x: R.softmax_naive(x)),
    ("softmax_cross_entropy_grad", lambda x: R.softmax_cross_entropy_grad(x[0], 1)),
    ("exact.softmax", lambda x: E.softmax(x, temperature=0.5)),
    ("exact.log_softmax", lambda x: E.log_softmax(x)),
    ("exact.logsumexp", lambda x: E.logsumexp(x, axis=0)),
    ("exact.cross_entropy", lambda x: E.cross_entropy(x, TARGET, reduction="none")),
    ("exact.vjp[softmax]", lambda x: E.vjp("softmax", x, np.ones((2, 3)))),
    ("exact.vjp[logsumexp]", lambda x: E.vjp("logsumexp", x, [1.0, 2.0])),
    ("exact.vjp[cross_entropy]", lambda x: E.vjp("cross_entropy", x, 1.0, target=TARGET)),
]
ARRAY_RESULT_IDS = [name for name, _ in ARRAY_RESULTS]
ARRAY_RESULT_FNS = [fn for _, fn in ARRAY_RESULTS]


def _results(value):
    return value if isinstance(value, tuple) else (value,)


@pytest.mark.parametrize("fn", ARRAY_RESULT_FNS, ids=ARRAY_RESULT_IDS)
@pytest.mark.parametrize("make", [
    pytest.param(lambda: X.tolist(), id="list-of-floats"),
    pytest.param(lambda: X.astype(int).tolist(), id="list-of-ints"),
    pytest.param(lambda: X.astype(np.int32), id="int32"),
    pytest.param(lambda: X.astype(np.uint8), id="uint8"),
    pytest.param(lambda: X.astype(np.int64), id="int64"),
])
def test_lists_and_integer_arrays_are_computed_in_float64(fn, make):
    expected = _results(fn(X))
    got = _results(fn(make()))
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == np.float64
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("fn", ARRAY_RESULT_FNS, ids=ARRAY_RESULT_IDS)
@pytest.mark.parametrize("dtype", [np.dtype(np.float16), bfloat16, np.dtype(np.float32), np.dtype(np.float64)],
                         ids=lambda d: d.name)
def test_floating_inputs_keep_their_dtype(fn, dtype):
    x = X.astype(dtype)  # small integers: exact in every format
    for got, reference in zip(_results(fn(x)), _results(fn(X)), strict=True):
        assert got.dtype == dtype
        assert got.shape == reference.shape
        # The values are right too: the same float64 computation (the logits are exact in every format),
        # rounded once into the dtype; softmax_naive computes in the dtype itself, within the native bound of
        # softmax there (these logits are far from overflow) and the reference's.
        if fn is dict(ARRAY_RESULTS)["softmax_naive"]:
            tol = bounds.softmax(x, compute=dtype.name) + verdict.reference_value_bound("softmax", x)
            assert np.all(np.abs(got.astype(np.float64) - reference) <= tol)
        else:
            np.testing.assert_array_equal(got, R.round_to_dtype(reference, dtype))


def test_notebook_losses_accept_lists_and_integers():
    one_log = bounds.FN_ULPS["float64"] * R.FORMATS["float64"].eps  # one log of an exact float64 probability
    assert R.cross_entropy_loss([0.25, 0.75], 1) == pytest.approx(-math.log(0.75), rel=2 * one_log)  # and ours
    assert R.cross_entropy_loss(np.array([0, 1]), 1) == 0.0  # integer probabilities: float64
    assert R.cross_entropy_loss(np.array([0.25, 0.75], dtype=np.float16), np.int64(0)) == \
        pytest.approx(math.log(4), rel=2 * one_log)
    expected = float(R.cross_entropy(X, TARGET))
    tol = 2 * float(verdict.reference_value_bound("cross_entropy", X, target=TARGET))  # two float64 computations
    for logits in (X.tolist(), X.astype(np.int16), X.astype(np.float32), X.astype(bfloat16)):
        got = R.batch_cross_entropy_loss(logits, TARGET.tolist())
        assert type(got) is float and abs(got - expected) <= tol


def test_accepted_scalar_forms():
    """NumPy integer axes and float temperatures, a negative ignore_index, floating probability targets."""
    np.testing.assert_array_equal(R.softmax(X, axis=np.int64(0)), R.softmax(X, axis=0))
    np.testing.assert_array_equal(R.softmax(X, temperature=np.float32(0.5)), R.softmax(X, temperature=0.5))
    np.testing.assert_array_equal(R.cross_entropy(X, [-1, 2], ignore_index=-1),
                                  R.cross_entropy(X[1:], [2]))
    for dtype in (np.float16, bfloat16, np.float32):
        assert R.cross_entropy(X, PROBS.astype(dtype)).dtype == np.float64  # the logits' dtype decides
    assert R.cross_entropy([1.0, 2.0, 3.0], 2).shape == ()  # 1-D logits, scalar target


def test_bfloat16_scalar_temperature_is_accepted():
    tau = bfloat16.type(0.5)
    np.testing.assert_array_equal(R.softmax(X, temperature=tau), R.softmax(X, temperature=0.5))
