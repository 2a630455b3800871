"""entropy, kl_divergence and distribution_cross_entropy: information-theory identities and inequalities.

Rows need not sum to exactly 1 once rounded into the dtype, so each inequality is stated for
non-negative vectors with sums P = sum p, Q = sum q (it is the textbook one at P = Q = 1):
  * 0 <= H(p) <= P log(n / P);
  * KL(p || q) >= P (||p/P - q/Q||_1^2 / 2 + log(P/Q))  (Pinsker after normalising): KL >= 0 for
    distributions, and > 0 unless p = q; and KL(p || p) = 0;
  * H(p, q) = H(p) + KL(p || q), and H(p, p) = H(p);
  * 0 log 0 = 0: appending entries with p_i = 0 (q_i = 0 or not) changes none of the three.
Each side of each comparison is within its derived bound (xentcheck.bounds).
"""
import numpy as np

from ._common import native
from ._harness import property_of

H, KL, CE = "entropy", "kl_divergence", "distribution_cross_entropy"
U64 = 2.0 ** -53


def _values(h, case, dtype, op):
    p, kwargs = h.inputs(case, dtype, op)
    return p, kwargs, h.call(op, p, kwargs).astype(np.float64)


@property_of(H)
def test_entropy_between_zero_and_log_n(h, dtype, case):
    p, kwargs, entropy = _values(h, case, dtype, H)
    mass = p.astype(np.float64).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        top = np.where(mass > 0, mass * np.log(p.shape[-1] / mass), 0.0)
    tol = native(h, H, p, kwargs) + p.shape[-1] * U64 * np.abs(top)
    h.holds((entropy >= 0) & (entropy <= top + tol), f"0 <= H(p) <= P log(n/P): H {entropy.ravel()[:4]}, "
            f"bound {top.ravel()[:4]}", op=H, x=p, kwargs=kwargs)


@property_of(KL)
def test_kl_is_at_least_pinsker_and_zero_at_p(h, dtype, case):
    p, kwargs, kl = _values(h, case, dtype, KL)
    q = kwargs["q"]
    pp, qq = p.astype(np.float64), q.astype(np.float64)
    mass_p, mass_q = pp.sum(axis=-1), qq.sum(axis=-1)
    rows = (mass_p > 0) & (mass_q > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.abs(pp / mass_p[..., None] - qq / mass_q[..., None]).sum(axis=-1)
        floor = np.where(rows, mass_p * (gap ** 2 / 2 + np.log(mass_p / mass_q)), -np.inf)
    tol = native(h, KL, p, kwargs) + 4 * p.shape[-1] * U64 * (np.abs(floor) + 1)
    h.holds(np.isnan(kl) | (kl >= floor - tol), f"KL(p || q) >= P (||p/P - q/Q||^2/2 + log(P/Q)): KL "
            f"{kl.ravel()[:4]}, bound {floor.ravel()[:4]}", op=KL, x=p, kwargs=kwargs)
    same = dict(kwargs, q=p)
    kl_pp = h.call(KL, p, same).astype(np.float64)
    h.close(kl_pp, np.zeros_like(kl_pp), native(h, KL, p, same), "KL(p || p) == 0", check_dtype=False,
            op=KL, kind="value", x=p, kwargs=same, compares_calls=True)


@property_of(CE)
def test_cross_entropy_is_entropy_plus_kl(h, dtype, case):
    p, kwargs, cross = _values(h, case, dtype, CE)
    entropy = h.call(H, p, {}).astype(np.float64)
    kl = h.call(KL, p, kwargs).astype(np.float64)
    with np.errstate(invalid="ignore"):
        want = entropy + kl
    tol = (native(h, CE, p, kwargs) + native(h, H, p, {}) + native(h, KL, p, kwargs)
           + U64 * np.abs(np.where(np.isfinite(want), want, 0)))
    h.close(cross, want, tol, "H(p, q) == H(p) + KL(p || q)", check_dtype=False, op=KL, kind="value", x=p,
            kwargs=kwargs, compares_calls=True)
    self_cross = h.call(CE, p, {"q": p}).astype(np.float64)
    h.close(self_cross, entropy, native(h, CE, p, {"q": p}) + native(h, H, p, {}),
            "H(p, p) == H(p)", check_dtype=False, op=CE, kind="value", x=p, kwargs={"q": p}, compares_calls=True)


def _zero_log_zero(op):
    @property_of(op, name=f"test_{op}_zero_log_zero")
    def check(h, dtype, case):
        """Entries with p_i = 0 contribute nothing: two appended, one with q_i = 0 and one with q_i = 1/2."""
        p, kwargs, before = _values(h, case, dtype, op)
        zeros = np.zeros(p.shape[:-1] + (2,), dtype=p.dtype)
        wider = np.concatenate([p, zeros], axis=-1)
        more = dict(kwargs)
        if "q" in kwargs:
            more["q"] = np.concatenate([kwargs["q"], zeros + np.asarray([0.0, 0.5], dtype=p.dtype)], axis=-1)
        after = h.call(op, wider, more).astype(np.float64)
        h.close(after, before, native(h, op, wider, more) + native(h, op, p, kwargs),
                "appending entries with p_i = 0 (q_i = 0, and q_i = 1/2) changes nothing: 0 log 0 = 0",
                check_dtype=False, op=op, kind="value", x=wider, kwargs=more, compares_calls=True)

    return check


for _op in (H, KL, CE):
    _test = _zero_log_zero(_op)
    globals()[_test.__name__] = _test
del _op, _test
