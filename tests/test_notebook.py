"""The notebook's functions on the Stage 9 worked example; every expected value comes from the oracle.

(The Stage 9 text prints a sum of exponentials of 61.404, p[8] = 0.6925 and a loss of 0.3673; the exact
values are 61.604..., 0.690229... and 0.370732..., so nothing here is copied from it.)
"""
import mpmath
import numpy as np
import pytest

from xentcheck import verdict, reference
from xentcheck.verdict import assert_close
from xentcheck.explain import STAGE9_LOGITS, STAGE9_TARGET
from xentcheck.reference import exact

LOGITS = np.array(STAGE9_LOGITS)
TARGET = STAGE9_TARGET


def _within_reference_bound(got, want, op, x, **kwargs):
    tol = verdict.tolerance(op, "value", x, kwargs, versus="oracle", exact=want)
    assert_close(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64), tol)


def test_softmax_and_softmax_stable_on_the_worked_example():
    want = exact.softmax(LOGITS)
    _within_reference_bound(reference.softmax(LOGITS), want, "softmax", LOGITS)
    _within_reference_bound(reference.softmax_stable(LOGITS), want, "softmax", LOGITS)
    assert int(np.argmax(reference.softmax_stable(LOGITS))) == 8


def test_cross_entropy_loss_of_the_target_probability():
    probs = exact.softmax(LOGITS)
    with mpmath.workprec(200):
        want = float(-mpmath.log(mpmath.mpf(probs[TARGET])))  # exact -log of the float64 probability
    got = reference.cross_entropy_loss(probs, TARGET)
    assert abs(got - want) <= 4 * 2.0 ** -53 * abs(want)  # one log call (<= FN_ULPS ulps) on an exact input
    # ... which is the cross-entropy of the logits to within the rounding of p[8]
    loss = exact.cross_entropy(LOGITS, np.array(TARGET))
    assert abs(got - loss) <= 2 * 2.0 ** -53 / probs[TARGET] + 4 * 2.0 ** -53 * loss


def test_softmax_cross_entropy_grad_is_p_minus_onehot():
    want = exact.vjp("cross_entropy", LOGITS, np.float64(1.0), target=np.array(TARGET))
    got = reference.softmax_cross_entropy_grad(LOGITS, TARGET)
    tol = verdict.tolerance("cross_entropy", "vjp", LOGITS, {"target": np.array(TARGET)}, 1.0, versus="oracle",
                            exact=want)
    assert_close(got, want, tol)
    assert got[TARGET] < 0 and np.all(np.delete(got, TARGET) > 0)


def test_batch_cross_entropy_loss_is_the_mean():
    rng = np.random.default_rng(9)
    batch = np.stack([LOGITS, LOGITS[::-1], rng.standard_normal(20) * 2])
    targets = np.array([8, 11, 3])
    want = exact.cross_entropy(batch, targets, reduction="mean")
    _within_reference_bound(reference.batch_cross_entropy_loss(batch, targets), want, "cross_entropy", batch,
                            target=targets)
    # a batch of copies of one example has that example's loss
    copies = np.repeat(LOGITS[None], 4, axis=0)
    single = exact.cross_entropy(LOGITS, np.array(TARGET))
    _within_reference_bound(reference.batch_cross_entropy_loss(copies, np.full(4, TARGET)), single,
                            "cross_entropy", copies, target=np.full(4, TARGET))


def test_the_stage9_printed_numbers_are_wrong():
    """The seed's printed sum of exponentials (61.404) is off by more than its last printed digit."""
    with mpmath.workprec(200):
        total = mpmath.fsum(mpmath.exp(mpmath.mpf(v)) for v in STAGE9_LOGITS)
    assert abs(total - 61.404) > 0.1
    assert abs(float(exact.softmax(LOGITS)[TARGET]) - 0.6925) > 1e-3


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_softmax_naive_overflows_where_the_stable_one_does_not(dtype):
    overflow = {"float16": 12.0, "float32": 89.0, "float64": 710.0}[dtype]
    x = np.array([0.0, 1.0, overflow], dtype=dtype)
    assert np.isnan(reference.softmax_naive(x)).any()
    assert np.all(np.isfinite(reference.softmax_stable(x)))
    small = np.array([0.0, 1.0, 2.0], dtype=dtype)
    assert_close(reference.softmax_naive(small), reference.softmax(small),
                 verdict.value_bound("softmax", small) + verdict.reference_value_bound("softmax", small))
