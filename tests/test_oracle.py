"""The oracle itself: correct rounding, ULPs on their edges, and closed forms it must reproduce."""
import math

import mpmath
import numpy as np
import pytest

from _cases import DTYPES, cast
from xentcheck.reference import FORMATS, bfloat16, round_to_dtype
from xentcheck.reference import exact


# -- rounding -----------------------------------------------------------------------------------

def _all_finite_values(dtype):
    """Every finite value of a 16-bit format, as float64."""
    bits = np.arange(2 ** 16, dtype=np.uint16)
    with np.errstate(invalid="ignore"):  # NaN payloads
        values = bits.view(np.float16 if dtype == "float16" else bfloat16).astype(np.float64)
    return np.sort(np.unique(values[np.isfinite(values)]))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_round_mpf_and_round_to_dtype_agree_on_every_midpoint(dtype):
    """Midpoints between neighbours, and a hair either side, round to nearest-even in both roundings."""
    fmt = FORMATS[dtype]
    values = _all_finite_values(dtype)
    mids = (values[:-1] + values[1:]) / 2  # exact in float64
    nudge = np.spacing(np.abs(mids)) * 4
    for probe in (mids, mids + nudge, mids - nudge):
        expected = np.array([exact.round_mpf(mpmath.mpf(v), fmt) for v in probe.tolist()])
        assert np.array_equal(round_to_dtype(probe, dtype).astype(np.float64), expected)
    # ties go to the neighbour with an even last bit
    lower = round_to_dtype(mids, dtype).astype(np.float64)
    assert set(np.unique(lower)) <= set(values)


def test_bfloat16_rounds_once_where_ml_dtypes_rounds_twice():
    x = np.array([1 + 2.0 ** -8 + 2.0 ** -30])  # just above the midpoint between 1 and 1 + 2**-7
    assert round_to_dtype(x, "bfloat16").astype(np.float64)[0] == 1 + 2.0 ** -7
    assert x.astype(bfloat16).astype(np.float64)[0] == 1.0  # ml_dtypes: via float32, rounded twice


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_mpf_overflow_underflow_and_subnormals(dtype):
    fmt = FORMATS[dtype]
    r = lambda v: exact.round_mpf(mpmath.mpf(v), fmt)  # noqa: E731
    with mpmath.workprec(2000):
        top = mpmath.mpf(fmt.max)
        half_ulp_top = mpmath.ldexp(1, fmt.emax - fmt.precision)
        assert r(top + half_ulp_top * (1 - mpmath.mpf(2) ** -100)) == fmt.max
        assert r(top + half_ulp_top) == math.inf  # the tie rounds to even, i.e. up to infinity
        tiny = mpmath.mpf(fmt.smallest_subnormal)
        assert r(tiny / 2) == 0.0  # a tie with 0: even
        assert r(tiny / 2 * (1 + mpmath.mpf(2) ** -100)) == fmt.smallest_subnormal
        assert r(tiny * 3 / 2) == 2 * fmt.smallest_subnormal  # tie between 1 and 2 subnormal ulps: even
        assert r(-tiny * 5 / 2) == -2 * fmt.smallest_subnormal


# -- ulp and ulp_error ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_ulp_matches_the_spacing_of_the_format(dtype):
    fmt = FORMATS[dtype]
    values = np.array([1.0, 1.5, 2.0, fmt.smallest_normal, fmt.smallest_subnormal, 0.0, fmt.max, -3.0])
    expected = [fmt.eps, fmt.eps, 2 * fmt.eps, fmt.smallest_subnormal, fmt.smallest_subnormal,
                fmt.smallest_subnormal, 2.0 ** (fmt.emax - fmt.precision + 1), 2 * fmt.eps]
    assert exact.ulp(values, dtype).tolist() == expected
    if dtype in ("float32", "float64"):
        np_dtype = FORMATS[dtype].dtype
        probe = np.array([1.0, 3.0, 1e-30, 7e10], dtype=np_dtype)
        assert np.array_equal(exact.ulp(probe, dtype), np.spacing(probe).astype(np.float64))


def test_ulp_error_edges():
    f = lambda got, want, dtype="float32", **kw: float(exact.ulp_error(got, want, dtype, **kw))  # noqa: E731
    assert f(0.0, 0.0) == 0 and f(-0.0, 0.0) == 0  # signed zeros are equal
    tiny = FORMATS["float32"].smallest_subnormal
    assert f(tiny, 0.0) == 1  # the ulp at 0 is the smallest subnormal
    assert f(3 * tiny, tiny) == 2
    assert f(0.0, 3 * tiny, floor=FORMATS["float32"].smallest_normal) < 1  # flushed to zero, floored
    assert f(1.0 + 2 ** -23, 1.0) == 1 and f(1.0 - 2 ** -24, 1.0) == 0.5  # below 1 the spacing halves
    assert f(-1.0, 1.0) == 2 ** 24  # sign errors are large, not absolute-valued away
    assert f(np.inf, np.inf) == 0 and f(-np.inf, -np.inf) == 0
    assert f(np.inf, -np.inf) == np.inf and f(np.inf, 3.0) == np.inf and f(3.0, np.inf) == np.inf
    assert f(np.nan, np.nan) == 0 and f(np.nan, 1.0) == np.inf and f(1.0, np.nan) == np.inf
    assert exact.ulp_error([1.0, 2.0], [1.0, 2.0 + 2 ** -22], "float32").tolist() == [0.0, 1.0]


# -- closed forms -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000])
def test_uniform_rows(dtype, n):
    """Equal logits: p = 1/n, log p = -log n, lse = c + log n, each correctly rounded."""
    fmt = FORMATS[dtype]
    c = cast([-2.5], dtype)[0].astype(np.float64)
    x = cast(np.full((1, n), c), dtype)
    with mpmath.workprec(300):
        p = exact.round_mpf(mpmath.mpf(1) / n, fmt)
        logp = exact.round_mpf(-mpmath.log(n), fmt)
        lse = exact.round_mpf(mpmath.mpf(c) + mpmath.log(n), fmt)
    assert np.all(exact.softmax(x).astype(np.float64) == p)
    assert np.all(exact.log_softmax(x).astype(np.float64) == logp)
    assert exact.logsumexp(x).astype(np.float64)[0] == lse
    # cross-entropy of uniform logits is log C whatever the target
    assert exact.cross_entropy(x, np.array([0])).astype(np.float64) == exact.round_mpf(mpmath.log(n) + 0, fmt)


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_class_softmax_is_the_logistic_function(dtype):
    fmt = FORMATS[dtype]
    rng = np.random.default_rng(0)
    a, b = cast(rng.standard_normal(40) * 8, dtype), cast(rng.standard_normal(40) * 8, dtype)
    x = np.stack([a, b], axis=-1)
    got = exact.softmax(x).astype(np.float64)
    with mpmath.workprec(300):
        for i, (ai, bi) in enumerate(zip(a.astype(np.float64).tolist(), b.astype(np.float64).tolist())):
            logistic = 1 / (1 + mpmath.exp(mpmath.mpf(bi) - mpmath.mpf(ai)))
            assert got[i, 0] == exact.round_mpf(logistic, fmt)
            assert got[i, 1] == exact.round_mpf(1 - logistic, fmt)
            # log-softmax of two classes: -log1p(exp(b - a)), the softplus
            assert exact.log_softmax(x[i]).astype(np.float64)[0] == exact.round_mpf(
                -mpmath.log1p(mpmath.exp(mpmath.mpf(bi) - mpmath.mpf(ai))), fmt)


def test_log_softmax_of_a_confident_row_keeps_its_relative_accuracy():
    """y_max = -log1p(t) with t ~ 1e-300: the oracle must not round 1 + t to 1."""
    x = np.array([0.0, -690.0])
    want = exact.round_mpf(-mpmath.log1p(mpmath.exp(mpmath.mpf(-690))), FORMATS["float64"])
    assert exact.log_softmax(x)[0] == want != 0.0


def test_cancellation_is_resolved_by_higher_precision():
    """log-sum-exp of [-log 2, -log 2] rounded to float64 is a tiny number, not 0 or noise."""
    m = float(-mpmath.log(2))
    x = np.array([m, m])
    with mpmath.workprec(400):
        want = exact.round_mpf(mpmath.mpf(m) + mpmath.log(2), FORMATS["float64"])
    assert exact.logsumexp(x)[()] == want and want != 0.0 and abs(want) < 1e-16
    # a vjp whose exact value is 0: equal logits, constant cotangent
    assert np.all(exact.vjp("log_softmax", np.zeros(4), np.ones(4)) == 0.0)
    assert np.all(exact.vjp("softmax", np.zeros(8), np.full(8, 3.0)) == 0.0)


def test_cross_entropy_closed_forms():
    # one-hot probability target equals the integer target; label smoothing 1 is the uniform target
    x = np.array([[1.0, 2.0, 0.5], [-1.0, 0.0, 4.0]])
    assert exact.cross_entropy(x, np.array([2, 0])) == exact.cross_entropy(x, np.eye(3)[[2, 0]])
    with mpmath.workprec(300):
        per_row = []
        for row in x.tolist():
            lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(v)) for v in row))
            per_row.append(mpmath.fsum(lse - mpmath.mpf(v) for v in row) / 3)
        want = exact.round_mpf(mpmath.fsum(per_row) / 2, FORMATS["float64"])
    assert exact.cross_entropy(x, np.array([0, 1]), label_smoothing=1.0) == want
