"""The LM head: fused linear cross-entropy (an optional op), loss = cross-entropy on softcap(h W^T + b) plus
z_loss lse^2 per token; its vjp is (d hidden, d weight, d bias). Its value is held to the reference by
test_agreement; here: the three gradients against the reference, the op against the backend's own plain
cross-entropy on the materialised logits, ignored tokens, the z-loss's gradient 2 k lse softmax, and
soft-capping (the identity as cap -> inf, and a loss below 2 cap + log V per token). d hidden against finite
differences of the forward is test_gradients.py's property (the record's third-derivative bound).
"""
import math

import numpy as np
from hypothesis import assume

from .. import bounds, verdict
from ..records import OPS
from ..reference import FORMATS, linear
from ._common import native, reference_bound
from ._harness import property_of

OP = "linear_cross_entropy"
RECORD = OPS[OP]
NAMES = ("hidden", "weight", "bias")


def _gradients_close(h, got, want, tol, what, x, kwargs, v, dtypes=(True, True, True)):
    for name, g, w, t, dtype in zip(NAMES, got, want, tol, dtypes):
        if w is None:  # no bias: nothing to differentiate
            continue
        h.close(g, w, t, f"{what}: the gradient with respect to {name} (shape and dtype those of {name})", op=OP,
                kind="vjp", x=x, kwargs=kwargs, cotangent=v, check_dtype=dtype)


@property_of(OP, large_edges=True)
def test_linear_cross_entropy_vjp_equals_analytic(h, dtype, case):
    x, kwargs = h.inputs(case, dtype)
    v = RECORD.cotangent(case, dtype)
    got = h.vjp(OP, x, v, kwargs)
    want, reference_tol, dtypes = verdict.reference_answer(OP, "vjp", x, kwargs, v)
    tol = tuple(None if a is None else a + b for a, b in zip(h.vjp_bound(OP, x, v, kwargs), reference_tol))
    _gradients_close(h, got, want, tol, "vjp of linear_cross_entropy", x, kwargs, v, dtypes)


@property_of(OP)
def test_equals_cross_entropy_on_the_materialised_logits(h, dtype, case):
    """The fused op is the backend's own plain cross-entropy on h W^T + b rounded into the dtype (no z-loss,
    no soft-cap: plain cross-entropy has neither)."""
    x, kwargs = h.inputs(case, dtype)
    assume(kwargs["z_loss"] == 0 and kwargs["softcap"] is None)
    logits = linear.linear_logits(x, kwargs["weight"], kwargs.get("bias")).astype(x.dtype)
    ce_kwargs = {"target": kwargs["target"], "reduction": kwargs["reduction"], "weight": kwargs.get("class_weight"),
                 "ignore_index": kwargs["ignore_index"], "label_smoothing": kwargs["label_smoothing"]}
    fused, plain = h.call(OP, x, kwargs), h.call("cross_entropy", logits, ce_kwargs)
    tol = native(h, OP, x, kwargs) + native(h, "cross_entropy", logits, ce_kwargs)
    h.close(fused, plain, tol, "linear_cross_entropy == cross_entropy(h W^T + b)", op=OP, kind="value", x=x,
            kwargs=kwargs, compares_calls=True)


@property_of(OP)
def test_ignored_tokens_contribute_nothing(h, dtype, case):
    """Appending tokens whose target is ignore_index (any hidden state) changes the loss and the weight and bias
    gradients by nothing beyond rounding, and their hidden gradient is exactly 0."""
    x, kwargs = h.inputs(case, dtype)
    x2 = x.reshape(-1, x.shape[-1])
    t2 = kwargs["target"].reshape(-1)
    base = dict(kwargs, target=t2)
    assume(not (kwargs["reduction"] == "mean" and np.isnan(linear.linear_cross_entropy(x2, **base))))
    extra = (x2[::-1][:2] * np.asarray(1.5, x.dtype)) if len(x2) else x2
    bigger = np.concatenate([x2, extra])
    more = dict(base, target=np.concatenate([t2, np.full(len(extra), kwargs["ignore_index"])]))
    v = RECORD.cotangent(case, dtype).reshape(-1) if kwargs["reduction"] == "none" else RECORD.cotangent(case, dtype)
    v_more = np.concatenate([v, np.ones(len(extra), v.dtype)]) if kwargs["reduction"] == "none" else v
    got, want = h.vjp(OP, bigger, v_more, more), h.vjp(OP, x2, v, base)
    h.holds(np.asarray(got[0])[len(t2):] == 0, "the hidden gradient of an ignored token is exactly 0",
            got=np.asarray(got[0])[len(t2):])
    tol_more, tol_base = h.vjp_bound(OP, bigger, v_more, more), h.vjp_bound(OP, x2, v, base)
    for name, g, w, a, b in list(zip(NAMES, got, want, tol_more, tol_base))[1:]:
        if w is not None:
            h.close(g, w, a + b, f"ignored tokens leave the gradient with respect to {name} as it was")


@property_of(OP)
def test_z_loss_gradient_is_2_k_lse_softmax(h, dtype, case):
    """The z-loss adds 2 k r_i lse_i softmax(l_i) to each token's logit gradient (r_i its cotangent share), so the
    bias gradient moves by sum_i 2 k r_i lse_i softmax(l_i) (times the soft-cap's slope)."""
    x, kwargs = h.inputs(case, dtype)
    assume(kwargs["z_loss"] > 0 and "bias" in kwargs)
    v = RECORD.cotangent(case, dtype)
    plain = dict(kwargs, z_loss=0.0)
    assume(not (kwargs["reduction"] == "mean" and np.isnan(linear.linear_cross_entropy(x, **plain))))
    with_z, without = h.vjp(OP, x, v, kwargs), h.vjp(OP, x, v, plain)
    want = linear.linear_cross_entropy_vjp(x.astype(np.float64), kwargs["weight"].astype(np.float64),
                                           kwargs["target"], v.astype(np.float64), **_float64(kwargs, "weight",
                                                                                              "target"))[2] \
        - linear.linear_cross_entropy_vjp(x.astype(np.float64), kwargs["weight"].astype(np.float64),
                                          kwargs["target"], v.astype(np.float64), **_float64(plain, "weight",
                                                                                             "target"))[2]
    tol = h.vjp_bound(OP, x, v, kwargs)[2] + h.vjp_bound(OP, x, v, plain)[2] + 4 * bounds.U64 * np.abs(want)
    h.close(np.asarray(with_z[2], np.float64) - np.asarray(without[2], np.float64), want, tol,
            "d bias(z-loss k) - d bias(0) == sum_i 2 k r_i lse_i softmax_i", check_dtype=False)


@property_of(OP)
def test_softcap_is_the_identity_as_cap_grows_and_bounds_the_loss(h, dtype, case):
    x, kwargs = h.inputs(case, dtype)
    assume(kwargs["softcap"] is not None)
    uncapped = dict(kwargs, softcap=None)
    logits = linear.linear_logits(x, kwargs["weight"], kwargs.get("bias"))
    # a cap whose own effect, |cap tanh(u / cap) - u| <= |u|^3 / (3 cap^2), is below eps |u| / 16 (within the
    # logits' rounding), and small enough that u / cap does not underflow in the dtype
    eps = FORMATS[dtype].eps
    huge = dict(kwargs, softcap=float(2.0 ** math.ceil(math.log2(4 * (np.abs(logits).max() + 1) / math.sqrt(3 * eps)))))
    a, b = h.call(OP, x, huge), h.call(OP, x, uncapped)
    h.close(a, b, native(h, OP, x, huge) + native(h, OP, x, uncapped) + reference_bound(OP, x, uncapped),
            f"softcap {huge['softcap']:.3g} (far beyond every logit) is no cap", op=OP, kind="value", x=x,
            kwargs=(huge, uncapped), compares_calls=True)
    plain = dict(kwargs, reduction="none", class_weight=None, label_smoothing=0.0, z_loss=0.0)
    losses = h.call(OP, x, plain).astype(np.float64)
    cap, n_classes = kwargs["softcap"], kwargs["weight"].shape[0]
    limit = 2 * cap + math.log(n_classes)  # lse - l_t < max l - l_t + log V < 2 cap + log V
    allowed = limit + native(h, OP, x, plain)
    h.holds(~(losses > allowed), f"soft-capped at {cap}, each token's loss is below 2 cap + log V = {limit:.6g}",
            got=losses)


def _float64(kwargs, *skip):
    return {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind not in "iu" else v)
            for k, v in kwargs.items() if k not in skip}
