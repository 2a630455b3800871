"""The loss family (reference/losses.py): focal, MSE on probabilities, multiclass hinge, entropy, KL divergence
and the cross-entropy between distributions.

* the reference against the exact oracle, within its derived bound plus half an ulp, and within 1 ulp of the
  correctly rounded value in float16, bfloat16 and float32 (as the other ops);
* the torch and JAX adapters against the reference within the sum of the two derived bounds, their documented
  departures (xentcheck.semantics) asserted to be seen, so that a change in a framework is noticed;
* the properties: gamma = 0 is cross-entropy, 0 <= focal <= cross-entropy, gradients against finite
  differences, the hinge at and beyond its margin, KL >= 0 and = 0 at p = q, H(p, q) = H(p) + KL, 0 log 0 = 0;
* the seed's question 34, exactly;
* bad input refused with a message that names the argument; a backend without the loss family is "not
  provided", not failed.
"""
import math

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, settings
from _cases import DTYPES, cast
from _cli import xentcheck_here
from test_backends_agree import _agree, _backend, _precision

from xentcheck import verdict, finite_differences, strategies
from xentcheck import reference as R
from xentcheck.verdict import assert_close
from xentcheck.records import OPS

from xentcheck.reference import exact as E
from xentcheck.reference import exact_losses as EL
from xentcheck.reference.exact import ulp, ulp_error
from xentcheck.reference.losses import IndexLossProblem, hinge_parts

U64 = 2.0 ** -53  # float64's unit roundoff: our own arithmetic here
LOSSES = tuple(op for op, r in OPS.items() if r.family == "index_loss")
DISTRIBUTIONS = tuple(op for op, r in OPS.items() if r.family == "distribution")
FAMILY = tuple(op for op, r in OPS.items() if r.family in ("index_loss", "distribution"))


def _inputs(op, dtype, max_size=4096):
    return OPS[op].fixed_inputs(dtype, max_size)


# -- the reference against the oracle -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", FAMILY)
def test_reference_against_the_oracle(op, dtype):
    worst = {"value": 0.0, "vjp": 0.0}
    for label, x, kwargs, v in _inputs(op, dtype):
        for kind, got, want in (("value", getattr(R, op)(x, **kwargs), getattr(EL, op)(x, **kwargs)),
                                ("vjp", R.vjp(op, x, v, **kwargs), E.vjp(op, x, v, **kwargs))):
            tol = verdict.tolerance(op, kind, x, kwargs, v, versus="oracle", exact=want)
            assert_close(got, want, tol, err_msg=f"{op} {kind} {label} {dtype}")
            worst[kind] = max(worst[kind], float(np.max(ulp_error(got, want, dtype), initial=0)))
    if dtype != "float64":  # one rounding of a float64 result: correctly rounded but for near-ties
        assert worst["value"] <= 1 and worst["vjp"] <= 1, worst


# -- torch and JAX against the reference ------------------------------------------------------------------

@pytest.fixture(scope="module", params=["torch", "jax"])
def backend(request):
    return _backend(request.param)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", FAMILY)
def test_frameworks_agree_with_the_reference(backend, op, dtype):
    precision = _precision(backend, dtype)
    for label, x, kwargs, v in _inputs(op, dtype, max_size=10 ** 6):
        _agree(backend, op, "value", x, kwargs, getattr(backend, op)(x, **kwargs), getattr(R, op)(x, **kwargs),
               verdict.value_bound(op, x, **precision, **kwargs), verdict.reference_value_bound(op, x, **kwargs),
               f"{backend.name} {op} {label} {dtype}")
        _agree(backend, op, "vjp", x, kwargs, backend.vjp(op, x, v, **kwargs), R.vjp(op, x, v, **kwargs),
               verdict.vjp_bound(op, x, v, **precision, **kwargs), verdict.reference_vjp_bound(op, x, v, **kwargs),
               f"{backend.name} vjp {op} {label} {dtype}", cotangent=v)


KINK = np.array([[2.0, 1.0, 0.0, -1.0], [3.0, 2.0, 2.0, 0.0]])  # z_t - max_{j != t} z_j = 1 = the margin


def test_hinge_subgradients_of_the_frameworks_are_as_documented():
    """At the kink the reference takes 0; torch's clamp(min=0) the active side; JAX's (optax's) max splits
    between the target's zero term and the k tied classes. Ties beyond the kink split evenly everywhere."""
    target, ones = np.array([0, 0]), np.ones(2)
    kwargs = dict(target=target, reduction="none", margin=1.0)
    assert np.all(R.vjp("multiclass_hinge_loss", KINK, ones, **kwargs) == 0)
    active = np.array([[-1.0, 1.0, 0.0, 0.0], [-1.0, 0.5, 0.5, 0.0]])
    split = np.array([[-1 / 2, 1 / 2, 0.0, 0.0], [-2 / 3, 1 / 3, 1 / 3, 0.0]])
    for name, want in (("torch", active), ("jax", split)):
        got = _backend(name).vjp("multiclass_hinge_loss", KINK, ones, **kwargs)
        assert_close(got, want, 4 * 2.0 ** -53, err_msg=name)
    beyond = dict(kwargs, margin=2.0)  # slack 1 > 0 in both rows: -1 and an even split
    for name in ("numpy", "torch", "jax"):
        b = R if name == "numpy" else _backend(name)
        assert_close(b.vjp("multiclass_hinge_loss", KINK, ones, **beyond), active, 4 * 2.0 ** -53, err_msg=name)


def test_distribution_departures_are_as_documented():
    p, q = np.array([0.0, 0.5, 0.5, 0.0]), np.array([0.0, 0.25, 0.5, 0.25])  # p_0 = q_0 = 0; p_3 = 0 < q_3
    assert np.isfinite(R.kl_divergence(p, q))
    torch_backend, jax_backend = _backend("torch"), _backend("jax")
    assert np.isnan(torch_backend.kl_divergence(p, q))  # F.kl_div: 0 * log 0 = NaN
    assert R.vjp("kl_divergence", p, 1.0, q=q)[[0, 3]].tolist() == [math.inf, -math.inf]
    assert np.isnan(torch_backend.vjp("kl_divergence", p, 1.0, q=q)[[0, 3]]).all()
    assert jax_backend.vjp("kl_divergence", p, 1.0, q=q)[[0, 3]].tolist() == [0.0, 0.0]  # rel_entr at p_i = 0
    assert R.vjp("distribution_cross_entropy", p, 1.0, q=q)[0] == math.inf
    assert torch_backend.vjp("distribution_cross_entropy", p, 1.0, q=q)[0] == 0.0  # xlogy's gradient


def test_xla_flushing_a_subnormal_p_where_q_is_0_is_its_documented_answer():
    """A float32 subnormal p_i where q_i = 0: exactly +inf; JAX (XLA on CPU flushes subnormal inputs) gives the
    divergence of the flushed p, here 0 (0 log 0 = 0). The departure accepts that answer, +inf or NaN, and no
    other value."""
    from xentcheck.semantics import DEPARTURES

    p = np.array([[1.0, 1e-45], [0.5, 0.5]], dtype=np.float32)
    q = np.array([[1.0, 0.0], [0.5, 0.5]], dtype=np.float32)
    assert R.kl_divergence(p, q)[0] == math.inf
    got = _backend("jax").kl_divergence(p, q)
    assert got.tolist() == [0.0, 0.0]
    [d] = [d for d in DEPARTURES if d.key == "subnormal-probabilities-flushed-kl_divergence-value"]
    assert d.affected(p, {"q": q}, "value").tolist() == [True, False]
    for answer, accepted in ((got, True), (np.array([math.inf, 0.0], np.float32), True),
                             (np.array([1e-3, 0.0], np.float32), False)):
        assert bool(d.expected(answer, p, {"q": q}, None)[0]) is accepted, answer


def test_focal_departures_are_as_documented():
    logits = np.array([[30.0, 0.0, -5.0, 1.0], [0.0, -np.inf, 1.0, 2.0]], dtype=np.float32)
    target = np.array([0, 1])
    for gamma, nan_rows in ((0.5, {"torch": [0, 1], "jax": [0, 1]}), (2.0, {"torch": [1], "jax": [1]}),
                            (0.0, {"torch": [], "jax": [0, 1]})):
        want = R.vjp("focal_loss", logits, np.ones(2, np.float32), target=target, gamma=gamma, reduction="none")
        assert np.isfinite(want).all()
        for name, rows in nan_rows.items():
            got = _backend(name).vjp("focal_loss", logits, np.ones(2, np.float32), target=target, gamma=gamma,
                                     reduction="none")
            assert [i for i in range(2) if np.isnan(got[i]).any()] == rows, (name, gamma, got)


# -- the properties -----------------------------------------------------------------------------------------

def _logits(dtype, shape=(6, 9), scale=3.0, seed=0):
    return cast(np.random.default_rng(seed).standard_normal(shape) * scale, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_focal_with_gamma_zero_is_cross_entropy(dtype, reduction):
    x = _logits(dtype)
    target = np.arange(6) % 9
    focal = R.focal_loss(x, target, gamma=0.0, reduction=reduction)
    tol = verdict.reference_value_bound("focal_loss", x, target=target, gamma=0.0, reduction=reduction) \
        + verdict.reference_value_bound("cross_entropy", x, target=target, reduction=reduction)
    assert_close(focal, R.cross_entropy(x, target, reduction=reduction), tol)
    alpha = cast(np.linspace(0.25, 1.0, 9), dtype)  # per-class alpha is cross-entropy's class weight
    if reduction != "mean":  # (cross-entropy's weighted mean divides by the summed weights, focal's by N)
        tol = verdict.reference_value_bound("focal_loss", x, target=target, gamma=0.0, alpha=alpha, reduction=reduction) \
            + verdict.reference_value_bound("cross_entropy", x, target=target, weight=alpha, reduction=reduction)
        assert_close(R.focal_loss(x, target, gamma=0.0, alpha=alpha, reduction=reduction),
                     R.cross_entropy(x, target, weight=alpha, reduction=reduction), tol)
    ones = np.ones(6, x.dtype)
    g = R.vjp("focal_loss", x, ones, target=target, gamma=0.0, reduction="none")
    assert_close(g, R.vjp("cross_entropy", x, ones, target=target, reduction="none"),
                 verdict.reference_vjp_bound("focal_loss", x, ones, target=target, gamma=0.0, reduction="none")
                 + verdict.reference_vjp_bound("cross_entropy", x, ones, target=target, reduction="none"))


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
def test_focal_lies_between_zero_and_cross_entropy(gamma):
    x = _logits("float64", (64, 7), scale=6.0, seed=1)
    target = np.random.default_rng(2).integers(0, 7, 64)
    alpha = np.random.default_rng(3).uniform(0, 1, 7)
    focal = R.focal_loss(x, target, gamma=gamma, alpha=alpha, reduction="none")
    ce = R.cross_entropy(x, target, reduction="none")
    assert np.all(focal >= 0) and np.all(focal <= ce)
    # the down-weighting: confident, correct examples (p_t near 1) lose the most
    p_t = R.softmax(x)[np.arange(64), target]
    # both losses within their reference bounds; (1 - p_t)^gamma here: 1 - p_t, pow and the product (4 U64)
    tol = verdict.reference_value_bound("focal_loss", x, target=target, gamma=gamma, alpha=alpha, reduction="none") \
        + verdict.reference_value_bound("cross_entropy", x, target=target, reduction="none")
    assert np.all(focal <= (1 - p_t) ** gamma * ce * (1 + 4 * U64) + tol)


FD_CASES = [
    ("focal_loss", dict(gamma=2.0, reduction="mean")),
    ("focal_loss", dict(gamma=0.5, alpha=0.25, reduction="sum")),
    ("focal_loss", dict(gamma=5.0, alpha=np.linspace(0.1, 1.0, 6), reduction="none")),
    ("mse_loss", dict(form="full", reduction="mean")),
    ("mse_loss", dict(form="target", reduction="none")),
    ("multiclass_hinge_loss", dict(margin=1.0, reduction="sum")),
    ("multiclass_hinge_loss", dict(margin=10.0, reduction="none")),
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("op, options", FD_CASES, ids=lambda c: str(c))
def test_loss_gradients_match_finite_differences(op, options, seed):
    rng = np.random.default_rng(seed)
    x = finite_differences.on_grid(rng.standard_normal((5, 6)) * 3, 10)
    d = finite_differences.on_grid(rng.standard_normal((5, 6)), 4)
    kwargs = dict(options, target=rng.integers(0, 6, 5))
    v = cast(rng.standard_normal(5 if options["reduction"] == "none" else ()), "float64")
    if OPS[op].fd_applies and not OPS[op].fd_applies(x, d, kwargs):
        pytest.skip("the segment crosses a kink")
    g = R.vjp(op, x, v, **kwargs)
    diff, tol = finite_differences.check(OPS[op], lambda y: getattr(R, op)(y, **kwargs), x, v, d, kwargs, g)
    assert abs(diff) <= tol, f"{op}: |D_h - D_a| = {abs(diff):.3g} > {tol:.3g}"
    if "gamma" in kwargs:  # the tolerance tells a gradient without the (1 - p_t)^gamma factor apart
        wrong = R.vjp(op, x, v, **dict(kwargs, gamma=0.0))
        diff, tol = finite_differences.check(OPS[op], lambda y: getattr(R, op)(y, **kwargs), x, v, d, kwargs, wrong)
        assert abs(diff) > tol


@pytest.mark.parametrize("op", DISTRIBUTIONS)
def test_distribution_gradients_match_finite_differences(op):
    rng = np.random.default_rng(4)
    m = rng.uniform(size=(4, 7)) ** 3
    m[0, :2] = 0.0
    p = finite_differences.on_grid(m / m.sum(axis=-1, keepdims=True), 16)
    q = rng.uniform(0.05, 1, (4, 7))
    q /= q.sum(axis=-1, keepdims=True)
    kwargs = {"q": q} if "q" in OPS[op].parameters else {}
    d = finite_differences.probability_direction(p)
    v = rng.standard_normal(4)
    g = R.vjp(op, p, v, **kwargs)
    diff, tol = finite_differences.check(OPS[op], lambda y: getattr(R, op)(y, **kwargs), p, v, d, kwargs, g)
    assert abs(diff) <= tol
    diff, tol = finite_differences.check(OPS[op], lambda y: getattr(R, op)(y, **kwargs), p, v, d, kwargs, g * (1 + 1e-6))
    assert abs(diff) > tol


def test_hinge_is_zero_where_the_margin_holds_and_at_the_kink():
    x = np.array([[5.0, 1.0, 0.0], [2.0, 1.0, 0.0], [1.5, 1.0, 0.0], [0.0, 3.0, 3.0], [0.0, 0.0, 0.0]])
    target = np.zeros(5, dtype=int)
    losses = R.multiclass_hinge_loss(x, target, margin=1.0, reduction="none")
    assert losses.tolist() == [0.0, 0.0, 0.5, 4.0, 1.0]  # holds, the kink, and three active rows
    g = R.vjp("multiclass_hinge_loss", x, np.ones(5), target=target, margin=1.0, reduction="none")
    assert g.tolist() == [[0, 0, 0], [0, 0, 0], [-1, 1, 0], [-1, 0.5, 0.5], [-1, 0.5, 0.5]]
    assert R.multiclass_hinge_loss(np.array([[3.0]]), np.array([0]), reduction="none").tolist() == [0.0]


def test_mse_forms():
    x = _logits("float64", (32, 5), seed=5)
    target = np.arange(32) % 5
    p = R.softmax(x)
    y = np.eye(5)[target]
    # the reference within its bound; the closed form here from p (within softmax's reference bound, rel_p):
    # (p - y)^2 errs by 2|p - y| tol_p + 2 U64 (p - y)^2 per term, and the 5-term sum by 5 U64
    tol_p = verdict.reference_value_bound("softmax", x)
    for form, closed, tol in (
            ("full", ((p - y) ** 2).sum(-1), (2 * np.abs(p - y) * tol_p).sum(-1) + 7 * U64 * ((p - y) ** 2).sum(-1)),
            ("target", (p[np.arange(32), target] - 1) ** 2,
             (2 * np.abs(p - y) * tol_p)[np.arange(32), target] + 2 * U64 * (p[np.arange(32), target] - 1) ** 2)):
        assert_close(R.mse_loss(x, target, form=form, reduction="none"), closed,
                     tol + verdict.reference_value_bound("mse_loss", x, target=target, form=form, reduction="none"))


def check_distributions(n=9, rows=16, seed=6):
    rng = np.random.default_rng(seed)
    p, q = rng.uniform(size=(rows, n)) ** 3, rng.uniform(size=(rows, n)) ** 3
    p[:4, :3] = 0.0  # zeros in p, and some matched by zeros in q (0 log 0)
    q[:2, :3] = 0.0
    return p / p.sum(-1, keepdims=True), q / q.sum(-1, keepdims=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_is_non_negative_zero_only_at_p_and_splits_the_cross_entropy(dtype):
    p, q = (cast(a, dtype) for a in check_distributions())
    kl = R.kl_divergence(p, q).astype(np.float64)
    # Pinsker after normalising (the rounded rows do not sum to exactly 1): KL >= P (|p/P - q/Q|^2/2 + log(P/Q))
    P, Q = p.astype(np.float64).sum(-1), q.astype(np.float64).sum(-1)
    pinsker = P * (np.abs(p / P[:, None] - q / Q[:, None]).sum(-1) ** 2 / 2 + np.log(P / Q))
    assert np.all(kl >= pinsker - verdict.reference_value_bound("kl_divergence", p, q=q))
    assert np.all(pinsker > 0) or dtype != "float64"  # for distributions: strictly positive unless p = q
    assert np.all(R.kl_divergence(p, p) == 0)
    cross = R.distribution_cross_entropy(p, q).astype(np.float64)
    tol = sum(verdict.reference_value_bound(op, p, **kw) for op, kw in
              (("distribution_cross_entropy", {"q": q}), ("entropy", {}), ("kl_divergence", {"q": q})))
    assert_close(cross, R.entropy(p).astype(np.float64) + kl, tol)



@pytest.mark.parametrize("spread", [1e-9, 1e-6, 1e-3, 0.2])
def test_kl_near_p_equals_q_keeps_its_relative_accuracy(spread):
    """KL(p || q) ~ sum (p - q)^2 / 2q cancels in sum p log(p/q): each term carries u p of rounding, so the
    naive sum is off by ~u where KL is ~spread^2. The reference sums g_i = p log(p/q) - (p - q) >= 0 (each to
    a few u g_i) and then the differences (exact, Sterbenz; pairwise-summed to ceil(log2 n) u sum |p - q|):
    |err| <= (ceil(log2 n) + 8) u (KL + sum |p_i - q_i|), plus half an ulp of the result."""
    rng = np.random.default_rng(11)
    n = 200
    p = rng.uniform(0.5, 1.5, size=(8, n))
    p /= p.sum(-1, keepdims=True)
    q = p * (1 + spread * rng.standard_normal(p.shape))
    q /= q.sum(-1, keepdims=True)
    exact = EL.kl_divergence(p, q, dtype="float64").astype(np.float64)
    u = 2.0 ** -53
    bound = (math.ceil(math.log2(n)) + 8) * u * (exact + np.abs(p - q).sum(-1)) + ulp(exact, "float64") / 2
    assert np.all(np.abs(R.kl_divergence(p, q) - exact) <= bound)  # (at 1e-9 the rows' sums, off 1 by ~1e-17, lead)

@pytest.mark.parametrize("op", DISTRIBUTIONS)
def test_zero_log_zero(op):
    """Entries with p_i = 0 contribute exactly nothing, whether q_i is 0 or not."""
    p, q = check_distributions()
    kwargs = {"q": q} if "q" in OPS[op].parameters else {}
    wider = np.concatenate([p, np.zeros((16, 2))], axis=-1)
    more = {"q": np.concatenate([q, np.tile([0.0, 0.5], (16, 1))], axis=-1)} if "q" in OPS[op].parameters else {}
    assert np.array_equal(getattr(R, op)(wider, **more), getattr(R, op)(p, **kwargs))
    assert np.array_equal(getattr(EL, op)(wider[:4], **{k: v[:4] for k, v in more.items()}),
                          getattr(EL, op)(p[:4], **{k: v[:4] for k, v in kwargs.items()}))


def test_distribution_closed_forms_and_vjp_conventions():
    n = 7
    uniform = np.full(n, 1 / n)
    onehot = np.eye(n)[2]
    with mpmath.workprec(200):
        log_n = float(mpmath.log(n))
    assert_close(R.entropy(uniform), np.float64(log_n), 4 * 2.0 ** -53 * log_n)
    assert_close(R.kl_divergence(onehot, uniform), np.float64(log_n), 4 * 2.0 ** -53 * log_n)
    assert R.entropy(onehot) == 0 and R.kl_divergence(onehot, np.eye(n)[3]) == math.inf
    g = R.vjp("entropy", onehot, 2.0)
    assert g[0] == math.inf and g[2] == -2.0  # -v (log p + 1): +inf at p = 0
    assert np.all(R.vjp("entropy", onehot, 0.0) == 0)  # linear in v: 0, even where the slope is infinite
    g = R.vjp("kl_divergence", onehot, 1.0, q=np.eye(n)[3])
    assert g[2] == math.inf and g[3] == -math.inf and g[0] == math.inf  # q_i = 0; p_i = 0 < q_i; both 0


# -- the seed's question 34 -----------------------------------------------------------------------------------

def _exact_gradient(loss, logits):
    """d loss / d logits by mpmath's numerical differentiation at 60 digits (independent of every formula)."""
    with mpmath.workdps(60):
        z = [mpmath.mpf(v) for v in logits]

        def probabilities(*zz):
            e = [mpmath.exp(v) for v in zz]
            return [v / mpmath.fsum(e) for v in e]

        return np.array([float(mpmath.diff(lambda *zz: loss(probabilities(*zz)), z,
                                           tuple(int(i == j) for i in range(len(z)))))
                         for j in range(len(z))])


@pytest.mark.parametrize("probabilities", [[0.6, 0.3, 0.1], [0.01, 0.9, 0.09]], ids=["p_t=0.6", "p_t=0.01"])
def test_question_34_cross_entropy_against_mse_gradients(probabilities):
    """Seed question 34: the model predicts p (logits = log p), the target is class 0. The exact gradients
    of cross-entropy and of both MSE forms with respect to the logits match the reference's vjps, and
    cross-entropy's is the larger at the target; the more so the more confidently wrong the model is."""
    logits = np.log(np.array(probabilities))
    target = np.array(0)
    exact = {
        "cross_entropy": _exact_gradient(lambda p: -mpmath.log(p[0]), logits),
        "target": _exact_gradient(lambda p: (p[0] - 1) ** 2, logits),
        "full": _exact_gradient(lambda p: (p[0] - 1) ** 2 + p[1] ** 2 + p[2] ** 2, logits),
    }
    got = {"cross_entropy": R.vjp("cross_entropy", logits, 1.0, target=target),
           **{form: R.vjp("mse_loss", logits, 1.0, target=target, form=form) for form in ("target", "full")}}
    for name, want in exact.items():
        op, kw = ("cross_entropy", {}) if name == "cross_entropy" else ("mse_loss", {"form": name})
        tol = verdict.reference_vjp_bound(op, logits, 1.0, target=target, **kw) + U64 * np.abs(want)  # mpmath's rounding
        assert_close(got[name], want, tol, err_msg=name)
    p_t = probabilities[0]
    # each exact value rounded once (U64), each closed form here a few float64 operations (U64 each)
    assert_close(exact["cross_entropy"][0], np.float64(p_t - 1), 2 * U64 * abs(p_t - 1))  # p - onehot
    assert_close(exact["target"][0], np.float64(-2 * (1 - p_t) ** 2 * p_t), 5 * U64 * 2 * (1 - p_t) ** 2 * p_t)
    for form in ("target", "full"):
        assert abs(exact["cross_entropy"][0]) > abs(exact[form][0])
    ratio = abs(exact["cross_entropy"][0] / exact["target"][0])  # 1 / (2 p_t (1 - p_t))
    # two rounded exact values and a division (3 U64), the closed form 1 - p_t, two products, a division (4 U64)
    assert_close(np.float64(ratio), np.float64(1 / (2 * p_t * (1 - p_t))), 7 * U64 * ratio)
    if p_t == 0.01:
        assert ratio > 50  # confidently wrong: MSE's gradient all but vanishes, cross-entropy's does not


# -- bad input ------------------------------------------------------------------------------------------------

X = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 1.0]])
T = np.array([0, 2])
P = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])


def _bad(fn, args, kwargs, exc, match, id):
    return pytest.param(fn, args, kwargs, exc, match, id=id)


BAD = [
    *[_bad(m.focal_loss, (X, T), {"gamma": g}, exc, f"^gamma: {msg}", f"{m.__name__}-gamma-{g!r}")
      for m in (R, EL) for g, exc, msg in ((-1.0, ValueError, "must be finite and >= 0"),
                                           (math.nan, ValueError, "must be finite"), ("2", TypeError, "must be a real"))],
    *[_bad(m.focal_loss, (X, T), {"alpha": a}, ValueError, f"^alpha: {msg}", f"{m.__name__}-alpha-{i}")
      for m in (R, EL) for i, (a, msg) in enumerate(((np.ones(2), r"must be a scalar or have shape \(3,\)"),
                                                     (-0.5, "every class weight must be finite and >= 0"),
                                                     (np.array([1.0, np.nan, 1.0]), "every class weight")))],
    _bad(R.mse_loss, (X, T), {"form": "brier"}, ValueError, "^form: must be one of 'full', 'target'", "mse-form"),
    _bad(EL.mse_loss, (X, T), {"form": None}, ValueError, "^form: must be one of", "exact-mse-form"),
    *[_bad(m.multiclass_hinge_loss, (X, T), {"margin": -1.0}, ValueError, "^margin: must be finite and >= 0",
           f"{m.__name__}-margin") for m in (R, EL)],
    *[_bad(getattr(R, op), (X, T), {"reduction": "avg"}, ValueError, "^reduction: must be one of 'mean'",
           f"{op}-reduction") for op in LOSSES],
    *[_bad(getattr(R, op), (X, np.array([0.5, 1.0])), {}, TypeError, "^target: expected integer class indices",
           f"{op}-float-target") for op in LOSSES],
    *[_bad(getattr(R, op), (X, np.array([0, 3])), {}, ValueError, r"^target: class indices must be in \[0, 3\)",
           f"{op}-target-range") for op in LOSSES],
    *[_bad(getattr(R, op), (X, np.array([0, -100])), {}, ValueError, r"^target: class indices must be in",
           f"{op}-no-ignore-index") for op in LOSSES],
    *[_bad(getattr(R, op), (X, np.array(0)), {}, ValueError, "^target: class indices must have the batch shape",
           f"{op}-target-shape") for op in LOSSES],
    *[_bad(getattr(R, op), (X.astype(complex), T), {}, TypeError, "^logits: expected a real array",
           f"{op}-complex") for op in LOSSES],
    *[_bad(getattr(m, op), (P * 3,) + ((P,) if "q" in OPS[op].parameters else ()), {}, ValueError,
           r"^p: every entry must lie in \[0, 1\]", f"{m.__name__}-{op}-p-range")
      for m in (R, EL) for op in DISTRIBUTIONS],
    *[_bad(getattr(R, op), (P, P[:1]), {}, ValueError, r"^q: must have p's shape \(2, 3\)", f"{op}-q-shape")
      for op in DISTRIBUTIONS[1:]],
    *[_bad(getattr(R, op), (P, np.where(P > 0.4, np.nan, P)), {}, ValueError, "^q: every entry must lie",
           f"{op}-q-nan") for op in DISTRIBUTIONS[1:]],
    _bad(R.entropy, (np.float64(0.5),), {}, ValueError, "^p: is 0-dimensional", "entropy-0d"),
    _bad(R.entropy, (np.zeros((2, 0)),), {}, ValueError, "^p: the axis it acts along .* is empty", "entropy-empty"),
    *[_bad(m.vjp, ("focal_loss", X, 1.0), {}, TypeError, "^target: vjp\\('focal_loss', ...\\) needs the target=",
           f"{m.__name__}-vjp-no-target") for m in (R, E)],
    *[_bad(m.vjp, ("kl_divergence", P, np.ones(2)), {}, TypeError, "^q: vjp\\('kl_divergence', ...\\) needs",
           f"{m.__name__}-vjp-no-q") for m in (R, E)],
    *[_bad(m.vjp, ("entropy", P, np.ones(3)), {}, ValueError, r"^cotangent: must have the op's output shape \(2,\)",
           f"{m.__name__}-vjp-cotangent") for m in (R, E)],
    *[_bad(m.vjp, ("mse_loss", X, np.ones(2)), {"target": T}, ValueError,
           r"^cotangent: must have the loss's shape \(\)", f"{m.__name__}-vjp-loss-cotangent") for m in (R, E)],
    *[_bad(m.vjp, ("hinge", X, 1.0), {"target": T}, ValueError, "^op: must be one of .*'multiclass_hinge_loss'",
           f"{m.__name__}-vjp-unknown-op") for m in (R, E)],
    *[_bad(m.vjp, ("entropy", P, np.ones(2)), {"q": P}, TypeError, r"^entropy: unexpected keyword argument\(s\) q",
           f"{m.__name__}-vjp-unexpected") for m in (R, E)],
]


@pytest.mark.parametrize("fn, args, kwargs, exc, match", BAD)
def test_bad_input_is_refused_naming_the_argument(fn, args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes_are_kept_and_lists_computed_in_float64(dtype):
    x, p = cast(X, dtype), cast(P, dtype)
    for op in LOSSES:
        assert getattr(R, op)(x, T).dtype == x.dtype and R.vjp(op, x, np.float64(1.0), target=T).dtype == x.dtype
    for op in DISTRIBUTIONS:
        args = (p, p) if "q" in OPS[op].parameters else (p,)
        assert getattr(R, op)(*args).dtype == p.dtype
    assert R.focal_loss(X.tolist(), T.tolist()).dtype == np.float64
    assert R.entropy(P.tolist()).dtype == np.float64


# -- the strategies reach the loss family's edges --------------------------------------------------------------

def _hinge_slack(spec):
    x, kwargs = spec.materialize("float32")
    problem = IndexLossProblem(x, kwargs["target"], "none")
    with np.errstate(invalid="ignore"):
        return hinge_parts(problem, spec.margin)


LOSS_REACHES = {
    "the hinge's kink": lambda s: np.any(_hinge_slack(s)[0] == 0),
    "ties for the max among the other classes": lambda s: np.any(
        (_hinge_slack(s)[1] == _hinge_slack(s)[2][:, None]).sum(-1) > 1),
    "a target at a -inf logit": lambda s: np.any(np.take_along_axis(
        s.materialize("float32")[0].reshape(-1, s.n_classes), np.array(s.targets)[:, None], -1) == -np.inf),
    "a single class": lambda s: s.n_classes == 1,
    "0 < gamma < 1": lambda s: 0 < s.gamma < 1,
    "a per-class alpha with a zero": lambda s: isinstance(s.alpha, tuple) and 0.0 in s.alpha,
    "a confident, correct example": lambda s: np.any(R.softmax(s.materialize("float64")[0]).reshape(
        -1, s.n_classes)[np.arange(len(s.targets)), list(s.targets)] > 1 - 2.0 ** -24),
}
DISTRIBUTION_REACHES = {
    "p_i = q_i = 0": lambda s: np.any((np.array(s.p_mass) == 0) & (np.array(s.q_mass) == 0)),
    "p_i = 0 < q_i": lambda s: np.any((np.array(s.p_mass) == 0) & (np.array(s.q_mass) > 0)),
    "q_i = 0 < p_i": lambda s: np.any((np.array(s.q_mass) == 0) & (np.array(s.p_mass) > 0)),
    "q equal to p": lambda s: s.p_mass == s.q_mass and any(m > 0 for m in s.p_mass),
    "a float32 subnormal probability": lambda s: np.any((s.materialize("float32")[0] > 0) & (
        s.materialize("float32")[0] < np.finfo(np.float32).tiny)),
}
FIND = settings(max_examples=5000, database=None, suppress_health_check=list(HealthCheck), phases=[Phase.generate])


@pytest.mark.parametrize("what", LOSS_REACHES)
def test_loss_specs_reach(what):
    find(strategies.loss_specs(), LOSS_REACHES[what], settings=FIND)


@pytest.mark.parametrize("what", DISTRIBUTION_REACHES)
def test_distribution_specs_reach(what):
    find(strategies.distribution_specs(), DISTRIBUTION_REACHES[what], settings=FIND)


# -- the contract: the loss family is optional ------------------------------------------------------------------

def test_a_backend_without_the_loss_family_is_reported_not_provided(tmp_path):
    backend = tmp_path / "core_only.py"
    backend.write_text(
        "from xentcheck.backends.numpy_backend import NumpyBackend\n"
        "class CoreOnly:\n"
        "    name = 'core-only'\n"
        "    def __init__(self):\n"
        "        self._b = NumpyBackend()\n"
        "    def __getattr__(self, name):\n"
        "        if name in ('softmax', 'log_softmax', 'logsumexp', 'cross_entropy', 'vjp'):\n"
        "            return getattr(self._b, name)\n"
        "        raise AttributeError(name)\n")
    code, out, err = xentcheck_here("check", "--backend", f"{backend}:CoreOnly", "--ops", "cross_entropy,focal_loss,entropy",
                               "--dtypes", "float32", "-k", "value_equals", "--no-progress")
    assert code == 0, out + err
    assert "focal_loss: not provided by the backend" in out and "entropy: not provided by the backend" in out
    table = {line.split()[0]: line.split()[2:] for line in out.splitlines() if line.split()[:2][-1:] == ["float32"]}
    assert table["cross_entropy"] == ["1", "0", "0", "0", "0"] and table["focal_loss"] == ["0", "0", "0", "1", "0"]
