"""cross_entropy's own properties; each side of each comparison is within its derived bound.

The loss is >= 0 (exactly); it equals -log_softmax at the target; uniform logits give log C; the mean
of a batch of copies is the loss of one copy; sum = N * mean where every example counts once; ignored
examples change neither the loss nor the gradient (and get a gradient of exactly 0); doubling every
class weight leaves the mean as it is and doubles the sum; the loss is linear in the label smoothing
(CE_eps = (1 - eps) CE_0 + eps CE_1); a one-hot probability target is the integer target.
"""
import dataclasses

import numpy as np
from hypothesis import assume

from ..records import OPS
from ..reference import round_to_dtype
from ..reference.ops import CrossEntropyProblem
from ._common import U64, native, native_vjp
from ._harness import property_of

OP = "cross_entropy"


def _with(case, **changes):
    return dataclasses.replace(case, **changes)


def _ce(h, case, dtype, **changes):
    spec = _with(case, **changes) if changes else case
    x, kwargs = h.inputs(spec, dtype)
    return x, kwargs, h.call(OP, x, kwargs)


def _no_ignored(case):
    """The case with every example counted: ignored targets become class 0, and nothing is ignored."""
    if case.target_kind != "index":
        return case
    return _with(case, targets=tuple(0 if t == case.ignore_index else t for t in case.targets), ignore_index=-100)


@property_of(OP)
def test_loss_is_non_negative(h, dtype, case):
    x, kwargs, loss = _ce(h, case, dtype)
    loss = loss.astype(np.float64)
    h.holds(np.isnan(loss) | (loss >= 0), "cross-entropy is >= 0 (or NaN)", op=OP, x=x, kwargs=kwargs, got=loss)


@property_of(OP)
def test_equals_minus_log_softmax_at_the_target(h, dtype, case):
    assume(case.target_kind == "index")
    x, kwargs, loss = _ce(h, case, dtype, reduction="none", weight=None, label_smoothing=0.0)
    y = h.call("log_softmax", x, {"axis": -1})
    target = kwargs["target"]
    valid = target != kwargs["ignore_index"]
    picked = -np.take_along_axis(y.astype(np.float64), np.where(valid, target, 0)[..., None], axis=-1)[..., 0]
    tol_y = np.take_along_axis(native(h, "log_softmax", x, {"axis": -1}),
                               np.where(valid, target, 0)[..., None], axis=-1)[..., 0]
    want = np.where(valid, picked, 0.0)
    h.close(loss.astype(np.float64), want, np.where(valid, native(h, OP, x, kwargs) + tol_y, 0),
            "cross_entropy == -log_softmax[target] (0 where ignored)", check_dtype=False)


@property_of(OP)
def test_uniform_logits_give_log_c(h, dtype, case):
    """The mean loss of equal logits is log C exactly: within the value bound, plus our float64 log (U64 log C)."""
    assume(case.target_kind == "index")
    spec = _no_ignored(_with(case, anchors="zero", offsets=(0.0,) * len(case.offsets), weight=None,
                             reduction="mean"))
    x, kwargs, loss = _ce(h, spec, dtype)
    want = np.log(case.n_classes)
    tol = native(h, OP, x, kwargs) + U64 * want
    h.close(np.float64(loss), np.float64(want), tol, f"uniform logits: mean loss == log {case.n_classes}",
            check_dtype=False, op=OP, kind="value", x=x, kwargs=kwargs, compares_calls=True)


@property_of(OP)
def test_mean_of_copies_is_the_single_loss(h, dtype, case):
    x, kwargs = h.inputs(_with(case, reduction="mean"), dtype)
    first = x.reshape(-1, x.shape[-1])[:1]
    target = kwargs["target"]
    first_target = target.reshape(-1)[:1] if target.ndim < x.ndim else target.reshape(-1, x.shape[-1])[:1]
    single = dict(kwargs, target=first_target)
    copies = dict(kwargs, target=np.concatenate([first_target] * 3))
    batch = np.concatenate([first] * 3)
    got, want = h.call(OP, batch, copies), h.call(OP, first, single)
    h.close(got, want, native(h, OP, batch, copies) + native(h, OP, first, single),
            "mean over three copies == the loss of one", op=OP, kind="value", x=first, kwargs=single, compares_calls=True)


@property_of(OP)
def test_sum_is_n_times_mean(h, dtype, case):
    spec = _no_ignored(case if case.target_kind == "probability" else _with(case, weight=None))
    x, kwargs, total = _ce(h, spec, dtype, reduction="sum")
    mean_kwargs = dict(kwargs, reduction="mean")
    mean = h.call(OP, x, mean_kwargs)
    n = int(np.prod(x.shape[:-1]))
    tol = native(h, OP, x, kwargs) + n * native(h, OP, x, mean_kwargs) + U64 * abs(float(total))
    h.close(np.float64(total), n * np.float64(mean), tol, f"sum == N * mean (N = {n})", check_dtype=False)


@property_of(OP)
def test_ignored_examples_change_nothing(h, dtype, case):
    assume(case.target_kind == "index")
    x, kwargs = h.inputs(case, dtype)
    x2 = x.reshape(-1, x.shape[-1])
    t2 = kwargs["target"].reshape(-1)
    extra = x2[::-1][:2] + np.asarray(0.5, dtype=x.dtype)  # any finite logits: they must not count
    bigger = np.concatenate([x2, extra])
    t_bigger = np.concatenate([t2, np.full(len(extra), kwargs["ignore_index"])])
    base, more = dict(kwargs, target=t2), dict(kwargs, target=t_bigger)
    # a mean over zero total weight is NaN, and so is its gradient: nothing to compare there
    return_early = kwargs["reduction"] == "mean" and CrossEntropyProblem(x2, **base).denominator == 0
    got, want = h.call(OP, bigger, more), h.call(OP, x2, base)
    if kwargs["reduction"] == "none":
        h.holds(got[len(t2):] == 0, f"the loss of an ignored example is exactly 0: got {got[len(t2):]}")
        got = got[:len(t2)]
        tol = native(h, OP, x2, base) + native(h, OP, x2, base)  # the same examples, computed twice
    else:
        tol = native(h, OP, bigger, more) + native(h, OP, x2, base)
    h.close(got, want, tol, "adding ignored examples leaves the loss as it was")
    assume(not return_early)
    v = OPS[OP].cotangent(case, dtype)
    v_more = np.concatenate([v.reshape(-1), np.ones(len(extra), v.dtype)]) if kwargs["reduction"] == "none" else v
    g_more = h.vjp(OP, bigger, v_more.reshape(-1) if kwargs["reduction"] == "none" else v, more)
    g = h.vjp(OP, x2, v.reshape(-1) if kwargs["reduction"] == "none" else v, base)
    ignored_zero = np.ones(bigger.shape, dtype=bool)
    ignored_zero[len(t2):] = g_more[len(t2):] == 0
    h.holds(ignored_zero, f"an ignored example gets a gradient of exactly 0: got {g_more[len(t2):].ravel()[:4]}",
            op=OP, kind="vjp", x=bigger, kwargs=more)
    h.close(g_more[:len(t2)], g, native_vjp(h, OP, bigger, v_more, more)[:len(t2)]
            + native_vjp(h, OP, x2, v.reshape(-1) if kwargs["reduction"] == "none" else v, base),
            "adding ignored examples leaves the gradient as it was")


@property_of(OP)
def test_doubling_the_weights(h, dtype, case):
    """sum(2w) == 2 sum(w); mean(2w) == mean(w) for class indices (the mean divides by the summed target
    weights) and 2 mean(w) for probability targets (it divides by the number of examples)."""
    weight = case.weight if case.weight is not None else (1.0,) * case.n_classes
    for reduction in ("mean", "sum"):
        x, kwargs, once = _ce(h, case, dtype, weight=weight, reduction=reduction)
        _, twice_kwargs, twice = _ce(h, case, dtype, weight=tuple(2 * w for w in weight), reduction=reduction)
        factor = 1.0 if reduction == "mean" and case.target_kind == "index" else 2.0
        tol = native(h, OP, x, twice_kwargs) + factor * native(h, OP, x, kwargs)
        want = round_to_dtype(factor * np.float64(once), dtype).astype(np.float64)  # 2 x sum may overflow
        h.close(np.float64(twice), want, tol, f"{reduction} with every weight doubled == {factor:g} x {reduction}",
                op=OP, kind="value", x=x, kwargs=(twice_kwargs, kwargs), compares_calls=True, check_dtype=False)


@property_of(OP)
def test_label_smoothing_is_linear(h, dtype, case):
    eps = case.label_smoothing
    x, kwargs, smoothed = _ce(h, case, dtype, reduction="none")
    _, k0, plain = _ce(h, case, dtype, reduction="none", label_smoothing=0.0)
    _, k1, uniform = _ce(h, case, dtype, reduction="none", label_smoothing=1.0)
    plain, uniform = plain.astype(np.float64), uniform.astype(np.float64)
    want = plain if eps == 0 else uniform if eps == 1 else (1 - eps) * plain + eps * uniform
    tol = (native(h, OP, x, kwargs) + (1 - eps) * native(h, OP, x, k0)
           + eps * native(h, OP, x, k1) + 4 * U64 * np.abs(want))
    h.close(smoothed.astype(np.float64), want, tol, f"CE_eps == (1 - eps) CE_0 + eps CE_1 at eps = {eps}",
            op=OP, kind="value", x=x, kwargs=(kwargs, k0, k1), compares_calls=True, check_dtype=False)


@property_of(OP)
def test_one_hot_probability_target_is_the_index_target(h, dtype, case):
    assume(case.target_kind == "index")
    spec = _no_ignored(case)
    if spec.reduction == "mean":
        spec = _with(spec, weight=None)  # a weighted mean divides by sum w_y for indices, by N for probabilities
    x, kwargs, by_index = _ce(h, spec, dtype)
    onehot = np.zeros(x.shape, dtype=x.dtype)
    np.put_along_axis(onehot, kwargs["target"][..., None], 1, axis=-1)
    prob_kwargs = dict(kwargs, target=onehot)
    by_probability = h.call(OP, x, prob_kwargs)
    h.close(by_probability, by_index, native(h, OP, x, prob_kwargs) + native(h, OP, x, kwargs),
            "a one-hot probability target gives the integer target's loss", op=OP, kind="value", x=x,
            kwargs=(prob_kwargs, kwargs), compares_calls=True)
