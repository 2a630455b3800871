"""The exhaustive half-precision sweeps (xentcheck/exhaustive.py), on reduced ranges: the fast truth against the
mpmath oracle, what a sweep counts for the reference and for planted, raising and failing backends, and that the
results do not depend on the executor or the chunk size."""
import concurrent.futures
import json
import multiprocessing

import numpy as np
import pytest
from conftest import shared

from xentcheck import exhaustive as ex
from xentcheck.backends.numpy_backend import NumpyBackend
from xentcheck.records import OPS
from xentcheck.reference.dtypes import FORMATS, round_to_dtype

STRIDE = 64  # every 64th finite value: about 1000 inputs per dtype, every binade touched


def bits(a):
    return np.asarray(a).view(np.uint16)


def extremes(dtype):
    """The largest, smallest (subnormal and normal) and signed-zero inputs, and those around float64's exp
    underflow (|x| ~ 745) and the oracle's exp cut-off (|x| ~ 814)."""
    fmt = FORMATS[dtype]
    wide = [fmt.max, np.nextafter(fmt.max, 0), fmt.smallest_subnormal, 2 * fmt.smallest_subnormal,
            fmt.smallest_normal, 0.0, 0.5, 1.0, 36.0, 40.0, 92.0, 96.0, 700.0, 744.0, 748.0, 812.0, 816.0]
    return np.unique(round_to_dtype(np.array(wide + [-w for w in wide]), dtype))


def sample(dtype, size, seed):
    x = ex.finite_values(dtype)
    picked = np.random.default_rng(seed).choice(len(x), size, replace=False)
    return np.concatenate([x[np.sort(picked)], extremes(dtype)])


def assert_same_as_oracle(truth, exact, x, signs):
    """Bit for bit, except where the oracle answers +0 for a negative result: mpmath has no -0, and the oracle's
    value is an exact 0 only where the result is below 2**-1100 in magnitude (its exp cut-off and Ziv's cap,
    reference/exact_rows.py), while the truth keeps the sign (-0). Every result here is at most e^-|x| in
    magnitude where it is that small, so this is allowed only where |x| > 1000 ln 2 (a result below 2**-1000)."""
    differ = bits(truth) != bits(exact)
    tiny = (np.abs(x.astype(np.float64)) > 1000 * np.log(2))[:, None]
    unsigned_zero = (bits(exact) == 0) & (bits(truth) == 0x8000) & (signs < 0) & tiny
    assert not (differ & ~unsigned_zero).any(), (x[(differ & ~unsigned_zero).any(axis=1)],)


# --------------------------------------------------------------------------------------------
# The truth.

@pytest.mark.parametrize("dtype", ex.DTYPES)
def test_the_fast_truth_is_the_oracle_bit_for_bit(dtype):
    x = sample(dtype, 2000, seed=len(dtype))
    truths, _ = ex.truth(dtype, x)
    for (op, kind), values in truths.items():
        signs = np.array([sign for sign, _, _ in ex.TRUTH_FORMULAS[(op, kind)]])
        assert_same_as_oracle(values, ex.oracle(op, kind, x).astype(FORMATS[dtype].dtype), x, signs)


@pytest.mark.parametrize("dtype", ex.DTYPES)
def test_the_oracle_fallback_gives_the_same_truth(dtype):
    """A bound so loose (relative 2**-5) that most rows go to the oracle (all but those whose every result
    rounds to 0 anyway) changes nothing, zero signs included: the fallback path is the truth too."""
    x = np.concatenate([ex.finite_values(dtype, 509), extremes(dtype)])
    fast, none = ex.truth(dtype, x)
    slow, oracle_rows = ex.truth(dtype, x, bound_scale=2.0 ** 44, chunk=97)
    assert all(v == 0 for v in none.values())
    assert all(len(x) / 2 < v <= len(x) for v in oracle_rows.values())
    for key in fast:
        np.testing.assert_array_equal(bits(fast[key]), bits(slow[key]), err_msg=str(key))


def test_the_lse_pair_truth_is_the_oracle_bit_for_bit():
    values = ex.finite_values("bfloat16")
    rng = np.random.default_rng(7)
    a, b = rng.choice(values, 2000), rng.choice(values, 2000)
    edge = extremes("bfloat16")
    a = np.concatenate([a, np.repeat(edge, len(edge))])
    b = np.concatenate([b, np.tile(edge, len(edge))])
    exact = np.asarray(OPS["logsumexp"].oracle(np.stack([a, b], axis=-1), axis=-1))
    fast, _ = ex.lse_pair_truth(a, b)
    np.testing.assert_array_equal(fast, bits(exact))
    slow, sent = ex.lse_pair_truth(a[:300], b[:300], bound_scale=2.0 ** 44)
    assert sent == 300
    np.testing.assert_array_equal(slow, fast[:300])


def test_rounding_to_bfloat16_by_round_to_odd_is_correct_rounding():
    v = ex.finite_values("bfloat16").astype(np.float64)
    half_ulps = np.array([0.0, 2.0 ** -9, -(2.0 ** -9), 2.0 ** -9 + 2.0 ** -40, 2.0 ** -9 - 2.0 ** -40, 2.0 ** -30])
    rng = np.random.default_rng(3)
    tests = np.concatenate([(v[:, None] * (1 + half_ulps)).ravel(),
                            rng.standard_normal(20000) * np.exp2(rng.integers(-150, 130, 20000)),
                            [1e300, -1e300, 1e-300, -1e-300, 2.0 ** -134, 3 * 2.0 ** -135, 3.3961775292304047e38]])
    np.testing.assert_array_equal(ex.round_bfloat16_bits(tests), bits(round_to_dtype(tests, "bfloat16")))


def test_the_inputs_are_every_finite_value_in_order():
    for dtype, n in (("bfloat16", 65280), ("float16", 63488)):
        x = ex.finite_values(dtype)
        wide = x.astype(np.float64)
        assert len(x) == n and len(set(bits(x).tolist())) == n
        assert np.isfinite(wide).all() and (np.diff(wide) >= 0).all()
        assert wide[0] == -FORMATS[dtype].max and wide[-1] == FORMATS[dtype].max
        assert bits(x)[n // 2 - 1] == 0x8000 and bits(x)[n // 2] == 0  # -0, then +0
    near = ex.finite_values("float16", interval=(-20, 20)).astype(np.float64)
    assert near.min() == -20 and near.max() == 20 and len(near) == 2 * (1 + np.flatnonzero(x == 20)[0] - n // 2)
    with pytest.raises(ValueError, match="dtype"):
        ex.finite_values("float32")
    with pytest.raises(ValueError, match="dtypes"):
        ex.run_exhaustive(["numpy"], dtypes=("float32",))


def test_pair_indices_cover_the_triangle_in_order_whatever_the_chunks():
    n = 37
    expected = [(i, j) for i in range(n) for j in range(i, n)]
    for chunk in (1, 5, 36, 37, 700):
        got = [pair for k in range(0, len(expected), chunk)
               for pair in zip(*ex.pair_indices(n, k, min(k + chunk, len(expected))))]
        assert [(int(i), int(j)) for i, j in got] == expected


# --------------------------------------------------------------------------------------------
# Sweeps.

@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    """One reduced sweep for the whole test session (pytest-xdist workers share it: conftest.shared)."""
    return shared(tmp_path_factory, "exhaustive-reduced",
                  lambda: ex.run_exhaustive(["numpy", "torch", "no-such-backend"], stride=STRIDE))


def entry(results, backend, op, kind, dtype):
    [r] = [r for r in results["results"]
           if (r["backend"], r["op"], r["kind"], r["dtype"]) == (backend, op, kind, dtype)]
    return r


# Where the reference is not bit for bit right (found by the full sweep, checked here elementwise): where float64's
# exp(-|x|) underflows to 0 (|x| > 745.13) it returns +0 for some negative results below half the smallest
# subnormal, whose correct rounding is -0: (op, kind) -> the (output entry, sign of x) where it does.
NUMPY_SIGNED_ZEROS = {("log_softmax", "value"): ((0, 1), (1, -1)), ("softmax", "vjp"): ((1, -1),),
                      ("log_softmax", "vjp"): ((1, 1),), ("cross_entropy", "vjp"): ((0, 1),)}


@pytest.mark.parametrize("dtype", ex.DTYPES)
def test_the_reference_is_counted_right(reduced, dtype):
    """numpy's results are correctly rounded in magnitude everywhere (0 ulps), and bit for bit everywhere but at
    the +0s of NUMPY_SIGNED_ZEROS: exactly those are counted wrong, and nothing else."""
    x = ex.finite_values(dtype, STRIDE)
    wide = x.astype(np.float64)
    truths, _ = ex.truth(dtype, x)
    got = {key: ex.call(NumpyBackend(), *key, x) for key in truths}
    assert reduced["inputs"][dtype] == {"n": len(x), "full": False}
    for (op, kind), truth in truths.items():
        expected = np.zeros(truth.shape, dtype=bool)
        for column, side in NUMPY_SIGNED_ZEROS.get((op, kind), ()):
            expected[:, column] = (side * wide > 0) & (np.exp(-np.abs(wide)) == 0)
        assert (bits(truth)[expected] == 0x8000).all() and (bits(got[(op, kind)])[expected] == 0).all()
        np.testing.assert_array_equal(ex.compare(got[(op, kind)], truth, dtype)["wrong"], expected)
        r = entry(reduced, "numpy", op, kind, dtype)
        n = int(expected.sum())
        assert (r["status"], r["wrong"], r["signed_zero"], r["over_1ulp"], r["max_ulps"]) == ("ok", n, n, 0, 0.0)
        assert ((op, kind) in NUMPY_SIGNED_ZEROS) == (n > 0), (op, kind)
        assert all(abs(w["x"]) > 745.13 and w["answer"] == 0 and w["truth"] == 0 for w in r["worst"])


def test_torch_is_swept_and_an_unknown_spec_is_recorded(reduced):
    assert reduced["backends"]["no-such-backend"]["status"] == "unavailable"
    torch_rows = [r for r in reduced["results"] if r["backend"] == "torch"]
    assert len(torch_rows) == 16 and all(r["status"] == "ok" for r in torch_rows)
    assert sum(r["wrong"] for r in torch_rows) > 0  # torch's half-precision results are not all correctly rounded
    for r in torch_rows:
        assert r["signed_zero"] <= r["wrong"] and r["over_1ulp"] <= r["wrong"] and len(r["worst"]) == min(5, r["wrong"])
        ulps = [float(w["ulps"]) for w in r["worst"]]
        assert ulps == sorted(ulps, reverse=True) and (not ulps or ulps[0] == float(r["max_ulps"]))
    json.dumps(reduced, allow_nan=False)


class Planted(NumpyBackend):
    """The reference, with softmax's first entry one ulp too large at one input."""
    name = "planted"

    def __init__(self, x0):
        self.x0 = x0

    def evaluate(self, op, x, **kwargs):
        out = super().evaluate(op, x, **kwargs)
        if op == "softmax" and x.dtype == self.x0.dtype:
            hit = bits(x[:, 0]) == bits(self.x0)
            out.view(np.uint16)[hit, 0] += 1  # a positive value: the next bit pattern is one ulp larger
        return out


def test_a_planted_one_ulp_error_is_found_as_the_worst():
    x = ex.finite_values("bfloat16", STRIDE)
    x0 = x[np.argmin(np.abs(x.astype(np.float64) - 1.3))]  # softmax: 0.79, inside a binade
    results = ex.run_exhaustive([Planted(x0)], dtypes=("bfloat16",), ops=("softmax",), kinds=("value",),
                                stride=STRIDE)
    [r] = results["results"]
    assert (r["backend"], r["wrong"], r["over_1ulp"], r["max_ulps"]) == ("planted", 1, 0, 1.0)
    assert r["worst"][0]["x"] == float(x0) and r["worst"][0]["entry"] == 0 and len(r["worst"]) == 1


class Raising(NumpyBackend):
    """Declines float16, fails softmax's vjp, answers logsumexp in float32: recorded, and the rest still runs."""
    name = "raising"

    def evaluate(self, op, x, **kwargs):
        if x.dtype == np.float16:
            raise NotImplementedError("raising: no float16\nsecond line")
        out = super().evaluate(op, x, **kwargs)
        return out.astype(np.float32) if op == "logsumexp" else out

    def vjp(self, op, x, cotangent, **kwargs):
        if op == "softmax":
            raise RuntimeError("boom\nsecond line")
        return super().vjp(op, x, cotangent, **kwargs)


def test_batches_and_an_interval_change_nothing_but_the_range():
    whole = ex.run_exhaustive(["numpy"], dtypes=("float16",), ops=("cross_entropy",), interval=(-20, 20))
    batched = ex.run_exhaustive(["numpy"], dtypes=("float16",), ops=("cross_entropy",), interval=(-20, 20), batch=999)
    assert whole["results"] == batched["results"] and whole["inputs"]["float16"]["full"] is False
    assert whole["inputs"]["float16"]["n"] == len(ex.finite_values("float16", interval=(-20, 20)))


def test_a_raising_backend_is_recorded_not_fatal():
    results = ex.run_exhaustive([Raising()], ops=("softmax", "logsumexp"), stride=STRIDE * 4)
    status = {(r["op"], r["kind"], r["dtype"]): (r["status"], r["message"]) for r in results["results"]}
    assert status[("softmax", "value", "float16")] == ("unsupported", "NotImplementedError: raising: no float16")
    assert status[("softmax", "vjp", "bfloat16")] == ("error", "RuntimeError: boom")
    assert status[("logsumexp", "value", "bfloat16")][0] == "error"
    assert "float32, not bfloat16" in status[("logsumexp", "value", "bfloat16")][1]
    assert status[("softmax", "value", "bfloat16")] == ("ok", None)
    assert "unsupported" in ex.render_markdown(results)


def test_the_results_do_not_depend_on_the_executor_or_the_chunks(reduced):
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        parallel = ex.run_exhaustive(["numpy", "torch", "no-such-backend"], stride=STRIDE, executor=pool, chunk=300)
        values = ex.finite_values("bfloat16", 640)
        pairs_parallel = ex.run_lse_pairs(["numpy", "torch"], values, executor=pool, chunk=777)
    assert parallel["timings"]["executor"] == "ProcessPoolExecutor"
    assert {k: v for k, v in parallel.items() if k != "timings"} == {k: v for k, v in reduced.items()
                                                                     if k != "timings"}
    pairs = ex.run_lse_pairs(["numpy", "torch"], values)
    assert {k: v for k, v in pairs.items() if k != "timings"} == {k: v for k, v in pairs_parallel.items()
                                                                  if k != "timings"}


def test_lse_pairs_of_a_reduced_range():
    values = ex.finite_values("bfloat16", 640)
    results = ex.run_lse_pairs(["numpy", Planted(values[3]), Raising()], values)
    n = len(values)
    assert results["pairs"] == n * (n + 1) // 2 and not results["full"] and results["full_pairs"] == 2130771840
    numpy, planted, raising = results["results"]
    assert (numpy["status"], numpy["pairs"], numpy["wrong"], numpy["max_ulps"]) == ("ok", results["pairs"], 0, 0.0)
    assert planted["wrong"] == 0  # its plant is in softmax, not logsumexp
    assert raising["status"] == "error" and "float32" in raising["message"]
    limited = ex.run_lse_pairs(["numpy"], pairs_limit=1000, chunk=300)
    assert limited["pairs"] == limited["results"][0]["pairs"] == 1000 and not limited["full"]
    json.dumps([results, limited], allow_nan=False)
    with pytest.raises(ValueError, match="values"):
        ex.run_lse_pairs(["numpy"], values[::-1])
    with pytest.raises(ValueError, match="values"):
        ex.run_lse_pairs(["numpy"], [0.1, 0.2])  # not bfloat16 values
    with pytest.raises(ValueError, match="chunk"):
        ex.run_lse_pairs(["numpy"], values, chunk=0)


def test_render_and_plot_write_something(reduced, tmp_path):
    values = ex.finite_values("bfloat16", 1280)
    text = ex.render_markdown(reduced, ex.run_lse_pairs(["numpy"], values))
    assert "| numpy | softmax | value | bfloat16 |" in text and "lse(a, b)" in text and "no-such-backend" in text
    # two of the 16 panels (each is drawn alike; all 16 take seconds of matplotlib)
    few = dict(reduced, settings=dict(reduced["settings"], ops=["logsumexp"], kinds=["value"]))
    path = tmp_path / "exhaustive.png"
    ex.plot(few, path)
    assert path.stat().st_size > 10_000


def test_the_command_writes_its_report_and_rejects_bad_options(tmp_path):
    from _cli import xentcheck_here

    code, out, err = xentcheck_here("exhaustive", "--backends", "numpy", "--stride", "256", "--pairs",
                                    "--pairs-stride", "2048", "--out", str(tmp_path))
    assert code == 0, err
    assert {p.name for p in tmp_path.iterdir()} >= {"exhaustive.json", "exhaustive.md", "exhaustive.png"}
    assert "lse(a, b) over pairs" in out
    code, _, err = xentcheck_here("exhaustive", "--ops", "softmin", "--out", str(tmp_path))
    assert code == 2 and "--ops: unknown softmin" in err
    code, _, err = xentcheck_here("exhaustive", "--stride", "0", "--out", str(tmp_path))
    assert code == 2 and "--stride: must be an integer >= 1" in err
