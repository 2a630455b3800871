"""cross_entropy's own properties; each side of each comparison is within its derived bound.

The loss is >= 0 (exactly); it equals -log_softmax at the target; uniform logits give log C; the mean
of a batch of copies is the loss of one copy; sum = N * mean where every example counts once; ignored
examples change neither the loss nor the gradient (and get a gradient of exactly 0); doubling every
class weight leaves the mean as it is and doubles the sum; the loss is linear in the label smoothing
(CE_eps = (1 - eps) CE_0 + eps CE_1); a one-hot probability target is the integer target. Under the LM
head's options: the z-loss adds 2 k r lse softmax to the gradient; a cap far beyond every logit is no cap,
and a capped loss stays below 2 cap + log C. (The properties about plain cross-entropy's formula set those
options aside; the agreement properties hold every option to the reference.)
"""
import dataclasses
import math

import numpy as np
from hypothesis import assume

from ..records import OPS
from ..reference import FORMATS, round_to_dtype
from ..reference.ops import CrossEntropyProblem, loss_part
from ._common import U64, native, native_vjp, reference_bound, reference_vjp_bound
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
    x, kwargs, loss = _ce(h, case, dtype, reduction="none", weight=None, label_smoothing=0.0, z_loss=0.0,
                          softcap=None)
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
                             reduction="mean", z_loss=0.0))  # equal logits stay equal under a soft-cap
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
    logits, options = loss_part(x2, base)
    return_early = kwargs["reduction"] == "mean" and CrossEntropyProblem(logits, **options).denominator == 0
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
    weights) and 2 mean(w) for probability targets (it divides by the number of examples). Without the z-loss,
    which the class weights do not scale."""
    weight = case.weight if case.weight is not None else (1.0,) * case.n_classes
    for reduction in ("mean", "sum"):
        x, kwargs, once = _ce(h, case, dtype, weight=weight, reduction=reduction, z_loss=0.0)
        _, twice_kwargs, twice = _ce(h, case, dtype, weight=tuple(2 * w for w in weight), reduction=reduction,
                                     z_loss=0.0)
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


# -- the LM head's options: z_loss and softcap (reference.ops.HeadOptions) ------------------------------

def _float64(kwargs):
    return {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind not in "iu" else v)
            for k, v in kwargs.items()}


@property_of(OP)
def test_z_loss_gradient_is_2_k_lse_softmax(h, dtype, case):
    """The z-loss adds 2 k r_i lse_i softmax(l_i) to each example's logit gradient (times the soft-cap's slope),
    r_i its share of the cotangent: the backend's vjp(k) - vjp(0) equals that, computed in float64."""
    assume(case.z_loss > 0)
    x, kwargs = h.inputs(case, dtype)
    plain = {k: v for k, v in kwargs.items() if k != "z_loss"}
    assume(np.isfinite(x.astype(np.float64)).all() and OPS[OP].defined_at(x, kwargs))
    v = OPS[OP].cotangent(case, dtype)
    got = h.vjp(OP, x, v, kwargs).astype(np.float64) - h.vjp(OP, x, v, plain).astype(np.float64)
    x64, v64, k64, p64 = x.astype(np.float64), v.astype(np.float64), _float64(kwargs), _float64(plain)
    want = OPS[OP].reference_vjp(x64, v64, **k64) - OPS[OP].reference_vjp(x64, v64, **p64)
    tol = (h.vjp_bound(OP, x, v, kwargs) + h.vjp_bound(OP, x, v, plain) + reference_vjp_bound(OP, x64, v64, k64)
           + reference_vjp_bound(OP, x64, v64, p64))
    h.close(got, want, tol, f"vjp(z_loss={case.z_loss}) - vjp(z_loss=0) == 2 k r lse softmax", check_dtype=False,
            op=OP, kind="vjp", x=x, kwargs=(kwargs, plain), cotangent=v, compares_calls=True)


@property_of(OP)
def test_softcap_is_the_identity_as_cap_grows_and_bounds_the_loss(h, dtype, case):
    """A cap far beyond every logit changes nothing (|cap tanh(u / cap) - u| <= |u|^3 / (3 cap^2)); under a cap
    each example's loss (index targets, no weights, no smoothing, no z-loss) is below 2 cap + log C."""
    assume(case.softcap is not None)
    x, kwargs = h.inputs(case, dtype)
    assume(np.isfinite(x.astype(np.float64)).all())
    uncapped = {k: v for k, v in kwargs.items() if k != "softcap"}
    # a cap whose own effect is below eps |u| / 16 (within the logits' rounding), small enough that u / cap
    # does not underflow in the dtype
    largest = float(np.abs(x.astype(np.float64)).max(initial=0.0))
    eps = FORMATS[dtype].eps
    huge = dict(kwargs, softcap=float(2.0 ** math.ceil(math.log2(4 * (largest + 1) / math.sqrt(3 * eps)))))
    assume(huge["softcap"] < FORMATS[dtype].max / 4)
    a, b = h.call(OP, x, huge), h.call(OP, x, uncapped)
    h.close(a, b, native(h, OP, x, huge) + native(h, OP, x, uncapped) + reference_bound(OP, x, uncapped),
            f"softcap {huge['softcap']:.3g} (far beyond every logit) is no cap", op=OP, kind="value", x=x,
            kwargs=(huge, uncapped), compares_calls=True)
    if case.target_kind == "index":
        _, plain, losses = _ce(h, case, dtype, reduction="none", weight=None, label_smoothing=0.0, z_loss=0.0)
        cap = kwargs["softcap"]
        limit = 2 * cap + math.log(case.n_classes)  # lse - l_t < max l - l_t + log C < 2 cap + log C
        allowed = limit + native(h, OP, x, plain)
        h.holds(~(losses.astype(np.float64) > allowed),
                f"soft-capped at {cap}, each example's loss is below 2 cap + log C = {limit:.6g}", got=losses)
