"""The fused linear cross-entropy reference (reference/linear.py).

It must equal reference.cross_entropy on the materialised float64 logits (value, and the gradients g W,
g^T hidden, sum_i g through the matmul), whatever its blocks; ignored tokens must contribute nothing;
its z-loss and softcap must be the formulas the module states (checked directly and by central
differences); rounded into float32 and bfloat16 it must sit within 1 ulp of the exact oracle; and it
must never hold the (tokens x V) logits (tracemalloc, which sees NumPy's buffers).
"""
import tracemalloc

import numpy as np
import pytest

from xentcheck.reference import cross_entropy, cross_entropy_vjp, logsumexp, round_to_dtype, softmax
from xentcheck.reference.exact_rows import ulp_error
from xentcheck.reference.linear import (exact_linear_cross_entropy, exact_linear_cross_entropy_vjp,
                                        linear_cross_entropy, linear_cross_entropy_value_and_grads,
                                        linear_cross_entropy_vjp, linear_logits)

REDUCTIONS = ("mean", "sum", "none")


def _inputs(n=7, n_hidden=5, n_classes=11, seed=0, dtype="float64", batch=None, ignored=(2,)):
    """hidden (batch or (n,), H), weight (V, H), bias (V,), target with `ignored` tokens, class weights (V,)."""
    rng = np.random.default_rng(seed)
    h = round_to_dtype(rng.standard_normal((n, n_hidden)), dtype)
    w = round_to_dtype(rng.standard_normal((n_classes, n_hidden)), dtype)
    b = round_to_dtype(rng.standard_normal(n_classes) * 0.5, dtype)
    t = rng.integers(0, n_classes, n)
    t[list(ignored)] = -100
    cw = rng.uniform(0.25, 2.0, n_classes)
    if batch is not None:
        h, t = h.reshape(batch + (n_hidden,)), t.reshape(batch)
    return h, w, b, t, cw


def _cotangent(reduction, target, seed=1):
    if reduction == "none":
        return np.random.default_rng(seed).standard_normal(target.shape)
    return np.asarray(1.7)


def _close(got, want, rtol, what=""):
    """Elementwise within rtol of the larger of |want| and rtol-scaled max |want| (sums that cancel)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, what
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.max(np.abs(want), initial=0.0), err_msg=what)


OPTIONS = {
    "plain": dict(),
    "class_weight": dict(class_weight=True),
    "smoothing": dict(label_smoothing=0.1),
    "weighted_smoothing": dict(class_weight=True, label_smoothing=0.3),
    "ignore_index_7": dict(ignore_index=7),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", OPTIONS)
def test_equals_cross_entropy_on_materialised_logits(option, reduction):
    h, w, b, t, cw = _inputs(batch=(7,) if option == "plain" else None)
    kwargs = dict(OPTIONS[option], reduction=reduction)
    if kwargs.pop("class_weight", False):
        kwargs["class_weight"] = cw
    if "ignore_index" in kwargs:
        t = np.where(t == -100, 7, t)
    ce_kwargs = {("weight" if k == "class_weight" else k): v for k, v in kwargs.items()}
    v = _cotangent(reduction, t)
    logits = linear_logits(h, w, b)
    value, dh, dw, db = linear_cross_entropy_value_and_grads(h, w, t, b, cotangent=v, **kwargs, token_block=3,
                                                             vocab_block=4)
    _close(value, cross_entropy(logits, t, **ce_kwargs), 1e-13, "value")
    _close(linear_cross_entropy(h, w, t, b, **kwargs), value, 1e-15, "value alone")
    g = cross_entropy_vjp(logits, v, target=t, **ce_kwargs).reshape(-1, w.shape[0])
    _close(dh, (g @ w).reshape(h.shape), 1e-12, "d_hidden")
    _close(dw, g.T @ h.reshape(-1, w.shape[1]), 1e-12, "d_weight")
    _close(db, g.sum(axis=0), 1e-12, "d_bias")
    dh2, dw2, db2 = linear_cross_entropy_vjp(h, w, t, v, b, **kwargs)
    for got, want in ((dh2, dh), (dw2, dw), (db2, db)):
        _close(got, want, 1e-13)
    assert linear_cross_entropy_vjp(h, w, t, v, None, **kwargs)[2] is None


EVERYTHING = dict(label_smoothing=0.2, z_loss=0.03, softcap=2.5)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("blocks", [(1, 1), (3, 5), (7, 1000), (4, 13)], ids=str)
def test_blocks_change_nothing(blocks, reduction):
    """10 tokens, 13 classes: blocks of 3 and 5 leave a short last block, (7, 1000) one vocabulary block."""
    h, w, b, t, cw = _inputs(n=10, n_classes=13, ignored=(1, 6), batch=(2, 5))
    kwargs = dict(EVERYTHING, reduction=reduction, class_weight=cw, cotangent=_cotangent(reduction, t))
    want = linear_cross_entropy_value_and_grads(h, w, t, b, **kwargs)
    got = linear_cross_entropy_value_and_grads(h, w, t, b, **kwargs, token_block=blocks[0], vocab_block=blocks[1])
    for name, g, e in zip(("value", "d_hidden", "d_weight", "d_bias"), got, want):
        _close(g, e, 1e-13, name)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ignored_tokens_contribute_nothing(reduction):
    """Four more ignored tokens (large, NaN and inf hidden rows among them): the same value and gradients."""
    h, w, b, t, cw = _inputs(ignored=(2,))
    kwargs = dict(EVERYTHING, reduction=reduction, class_weight=cw)
    extra = np.random.default_rng(5).standard_normal((4, h.shape[1])) * 30.0
    extra[1, :2] = np.nan, np.inf  # never read
    h_more, t_more = np.concatenate([h, extra]), np.concatenate([t, np.full(4, -100)])
    v = _cotangent(reduction, t)
    v_more = np.concatenate([v, np.arange(1.0, 5.0)]) if reduction == "none" else v
    value, dh, dw, db = linear_cross_entropy_value_and_grads(h, w, t, b, cotangent=v, **kwargs)
    value2, dh2, dw2, db2 = linear_cross_entropy_value_and_grads(h_more, w, t_more, b, cotangent=v_more, **kwargs)
    if reduction == "none":
        assert np.all(value2[-4:] == 0) and value[2] == 0
        value2 = value2[:-4]
    _close(value2, value, 1e-14, "value")
    assert np.all(dh2[-4:] == 0) and np.all(dh[2] == 0), "ignored tokens' d_hidden rows must be exactly 0"
    for name, g, e in (("d_hidden", dh2[:-4], dh), ("d_weight", dw2, dw), ("d_bias", db2, db)):
        _close(g, e, 1e-13, name)


def test_mean_over_nothing_is_nan_and_sum_is_zero():
    h, w, b, t, cw = _inputs(n=4, ignored=(0, 1, 2, 3))
    out = linear_cross_entropy_value_and_grads(h, w, t, b, z_loss=0.1)
    assert all(np.isnan(x).all() for x in out), "mean over no valid token: NaN value and gradients"
    # valid tokens whose targets all weigh 0: the weighted mean's denominator is 0 too
    t = np.array([0, 1, 1, 0])
    out = linear_cross_entropy_value_and_grads(h, w, t, b, class_weight=np.r_[0.0, 0.0, np.ones(w.shape[0] - 2)])
    assert all(np.isnan(x).all() for x in out)
    value, dh, dw, db = linear_cross_entropy_value_and_grads(h, w, np.full(4, -100), b, reduction="sum", z_loss=0.1)
    assert value == 0 and not dh.any() and not dw.any() and not db.any()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_z_loss(reduction):
    """The z-loss adds coef lse_i**2 per valid token (the mean: over valid tokens, not class weights) and
    2 coef lse_i softmax_i to d loss / d logits, hence (times r_i) to d_bias summed over tokens."""
    h, w, b, t, cw = _inputs(ignored=(2, 4))
    coef, v = 0.07, _cotangent(reduction, t)
    kwargs = dict(reduction=reduction, class_weight=cw, label_smoothing=0.1, cotangent=v)
    without = linear_cross_entropy_value_and_grads(h, w, t, b, **kwargs)
    for got, want in zip(linear_cross_entropy_value_and_grads(h, w, t, b, z_loss=0.0, **kwargs), without):
        np.testing.assert_array_equal(got, want)
    value, dh, dw, db = linear_cross_entropy_value_and_grads(h, w, t, b, z_loss=coef, **kwargs)
    logits = linear_logits(h, w, b)
    lse, valid = logsumexp(logits), t != -100
    z = np.where(valid, coef * lse ** 2, 0.0)
    r = np.where(valid, np.broadcast_to(v, t.shape), 0.0)
    if reduction == "mean":
        r = r / valid.sum()
    want_value = {"none": z, "sum": z.sum(), "mean": z.sum() / valid.sum()}[reduction]
    _close(value - without[0], want_value, 1e-12, "z-loss value")
    g_z = (r * 2 * coef * lse)[:, None] * softmax(logits)
    _close(db - without[3], g_z.sum(axis=0), 1e-12, "z-loss d_bias")
    _close(dh - without[1], g_z @ w, 1e-12, "z-loss d_hidden")


def test_softcap():
    h, w, b, t, cw = _inputs()
    kwargs = dict(class_weight=cw, label_smoothing=0.1, z_loss=0.01)
    for got, want in zip(linear_cross_entropy_value_and_grads(h, w, t, b, softcap=1e6, **kwargs),
                         linear_cross_entropy_value_and_grads(h, w, t, b, **kwargs)):
        _close(got, want, 1e-9)
    cap = 5.0
    for scale in (3.0, 20.0):
        uncapped = linear_logits(h * scale, w, b)
        capped = linear_logits(h * scale, w, b, softcap=cap)
        assert np.abs(uncapped).max() > cap
        assert np.all(np.abs(capped) <= np.abs(uncapped)) and np.all(np.sign(capped) == np.sign(uncapped))
        inside = np.abs(uncapped) < 15 * cap  # beyond, tanh rounds to exactly 1 in float64
        assert np.all(np.abs(capped[inside]) < cap) and np.all(np.abs(capped) <= cap)
        _close(capped, cap * np.tanh(uncapped / cap), 1e-15)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_finite_differences(reduction):
    """Central differences (step 1e-6) of <v, loss> in float64, softcap, z-loss, smoothing, class weights
    and an ignored token all on: every gradient entry within 1e-6 of the gradient's largest entry."""
    h, w, b, t, cw = _inputs(n=3, n_hidden=4, n_classes=5, ignored=(1,), seed=3)
    v = _cotangent(reduction, t)
    kwargs = dict(reduction=reduction, class_weight=cw, label_smoothing=0.15, z_loss=0.05, softcap=1.5)
    args = [h, w, b]
    grads = linear_cross_entropy_vjp(h, w, t, v, b, **kwargs)

    def loss(values):
        return float(np.sum(v * linear_cross_entropy(values[0], values[1], t, values[2], **kwargs)))

    step = 1e-6
    for which, name in enumerate(("d_hidden", "d_weight", "d_bias")):
        fd = np.zeros(args[which].shape)
        for idx in np.ndindex(fd.shape):
            plus, minus = [a.copy() for a in args], [a.copy() for a in args]
            plus[which][idx] += step
            minus[which][idx] -= step
            fd[idx] = (loss(plus) - loss(minus)) / (2 * step)
        _close(grads[which], fd, 1e-6, name)


ORACLE_OPTIONS = {
    "plain": dict(),
    "everything": dict(EVERYTHING, class_weight=True),
    "confident": dict(),  # token 0's target logit about 25 above the rest: 1 - p_target near 1e-10
    "confident_everything": dict(EVERYTHING, softcap=40.0, class_weight=True),
}


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("option", ORACLE_OPTIONS)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_against_exact_oracle(dtype, option, reduction):
    """3 tokens (one ignored), H = 4, V = 5: value and gradients within 1 ulp of the exact, correctly rounded
    values (the reference rounds float64 once, so nearly all are equal)."""
    h, w, b, t, cw = _inputs(n=3, n_hidden=4, n_classes=5, ignored=(1,), seed=7, dtype=dtype)
    kwargs = dict(ORACLE_OPTIONS[option], reduction=reduction)
    if kwargs.pop("class_weight", False):
        kwargs["class_weight"] = cw
    if option.startswith("confident"):  # there d_hidden[0] is made of the tiny g_0c = r (p_c - [c = t]) alone
        w = w.copy()
        w[t[0]] = round_to_dtype(h[0].astype(np.float64) * 25.0 / np.sum(h[0].astype(np.float64) ** 2), dtype)
        b = np.zeros_like(b)
    v = round_to_dtype(_cotangent(reduction, t), dtype)
    got = (linear_cross_entropy(h, w, t, b, **kwargs),) + linear_cross_entropy_vjp(h, w, t, v, b, **kwargs)
    want = (exact_linear_cross_entropy(h, w, t, b, **kwargs),) + exact_linear_cross_entropy_vjp(h, w, t, v, b, **kwargs)
    equal = total = 0
    for name, g, e in zip(("value", "d_hidden", "d_weight", "d_bias"), got, want):
        assert g.dtype == e.dtype == np.dtype(h.dtype), name
        err = ulp_error(g, e, dtype)
        assert err.max() <= 1, f"{name}: {err.max()} ulp"
        equal, total = equal + int((err == 0).sum()), total + err.size
    assert equal >= 0.9 * total, f"only {equal} of {total} results equal the correctly rounded ones"


def test_vocabulary_past_65536():
    n_classes = 70_000
    h, w, b, _, cw = _inputs(n=4, n_hidden=8, n_classes=n_classes, seed=11)
    t = np.array([32_768, 65_535, 65_536, 69_999])
    logits = linear_logits(h, w, b)
    for reduction in REDUCTIONS:
        _close(linear_cross_entropy(h, w, t, b, reduction=reduction, vocab_block=8192),
               cross_entropy(logits, t, reduction=reduction), 1e-13, reduction)
    g = cross_entropy_vjp(logits, np.asarray(1.0), target=t, weight=cw)
    _, dh, _, db = linear_cross_entropy_value_and_grads(h, w, t, b, class_weight=cw, vocab_block=8192)
    _close(db, g.sum(axis=0), 1e-12, "d_bias")
    _close(dh, g @ w, 1e-12, "d_hidden")
    f32 = [round_to_dtype(x, "float32") for x in (h, w, b)]
    want = cross_entropy(linear_logits(*f32), t, reduction="none").astype(np.float32)
    assert ulp_error(linear_cross_entropy(*f32[:2], t, f32[2], reduction="none"), want, "float32").max() <= 1


def test_memory_stays_below_a_quarter_of_the_logits():
    """tokens 64, H 16, V 262144, float32, vocab_block 4096: the logits would be 64 MiB in float32. The peak
    must stay below a quarter of that plus the outputs themselves (d_weight V H, d_hidden tokens H, d_bias V,
    all float32, and the scalar loss)."""
    n, n_hidden, n_classes = 64, 16, 262_144
    rng = np.random.default_rng(0)
    h = rng.standard_normal((n, n_hidden), dtype=np.float32)
    w = rng.standard_normal((n_classes, n_hidden), dtype=np.float32) * np.float32(0.25)
    b = rng.standard_normal(n_classes, dtype=np.float32)
    t = rng.integers(0, n_classes, n)
    logits_bytes = n * n_classes * 4
    outputs_bytes = (n_classes * n_hidden + n * n_hidden + n_classes + 1) * 4
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        out = linear_cross_entropy_value_and_grads(h, w, t, b, vocab_block=4096)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    budget = logits_bytes // 4 + outputs_bytes
    print(f"\nlinear CE memory: peak {peak / 2**20:.2f} MiB; budget {budget / 2**20:.2f} MiB = logits/4 "
          f"{logits_bytes / 4 / 2**20:.2f} MiB + outputs {outputs_bytes / 2**20:.2f} MiB "
          f"(d_weight {n_classes * n_hidden * 4 / 2**20:.2f}, d_bias {n_classes * 4 / 2**20:.2f}, "
          f"d_hidden {n * n_hidden * 4 / 2**10:.2f} KiB, loss 4 B)")
    assert np.isfinite(out[0]) and out[2].dtype == np.float32
    assert peak < budget


def _bad(**changes):
    h, w, b, t, cw = _inputs(n=3, n_hidden=4, n_classes=5, ignored=(1,))
    args = dict(hidden=h, weight=w, target=t, bias=b, class_weight=cw)
    args.update(changes)
    return args


BAD = [
    ("weight", _bad(weight=np.zeros((5, 3)))),
    ("weight", _bad(weight=np.zeros((5, 4), np.float32))),
    ("bias", _bad(bias=np.zeros(6))),
    ("bias", _bad(bias=np.zeros(5, np.float32))),
    ("target", _bad(target=np.array([0, 5, 1]))),
    ("target", _bad(target=np.array([0, -1, 1]))),
    ("target", _bad(target=np.array([0, 1]))),
    ("reduction", _bad(reduction="avg")),
    ("softcap", _bad(softcap=0.0)),
    ("softcap", _bad(softcap=-1.0)),
    ("softcap", _bad(softcap=float("inf"))),
    ("z_loss", _bad(z_loss=-0.1)),
    ("label_smoothing", _bad(label_smoothing=1.5)),
    ("class_weight", _bad(class_weight=np.ones(4))),
    ("class_weight", _bad(class_weight=-np.ones(5))),
    ("token_block", _bad(token_block=0)),
    ("vocab_block", _bad(vocab_block=-3)),
]


@pytest.mark.parametrize("name, kwargs", BAD, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD)])
def test_bad_arguments_name_the_argument(name, kwargs):
    with pytest.raises(ValueError, match=f"^{name}: "):
        linear_cross_entropy(**kwargs)
    with pytest.raises(ValueError, match=f"^{name}: "):
        linear_cross_entropy_value_and_grads(**kwargs)
    if "block" not in name:
        with pytest.raises(ValueError, match=f"^{name}: "):
            exact_linear_cross_entropy(**kwargs)


def test_bad_cotangent_and_non_finite_oracle_input():
    args = _bad()
    with pytest.raises(ValueError, match="^cotangent: "):
        linear_cross_entropy_vjp(cotangent=np.ones(3), **args)
    with pytest.raises(ValueError, match="^cotangent: "):
        linear_cross_entropy_vjp(cotangent=np.float64(1.0), **args, reduction="none")
    args["hidden"] = args["hidden"].copy()
    args["hidden"][0, 0] = np.nan
    with pytest.raises(ValueError, match="^hidden: "):
        exact_linear_cross_entropy_vjp(cotangent=1.0, **args)
