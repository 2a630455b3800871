"""The row-chunked reference (reference/chunked.py): blocks and threads change nothing, and memory stays small.

Every row is computed on its own, so a result must be bit-for-bit the same whether the rows are
processed in one block inline or in blocks of 3 rows on 3 threads (row counts here are not
multiples of 3, and one block holds the last rows alone). The oracle tests then hold the blocked
results to the reference's own bound (tests/test_reference_vs_oracle.py), on rows long enough to
matter. Memory is measured with tracemalloc, which sees NumPy's allocations.
"""
import tracemalloc

import numpy as np
import pytest

from _cases import DTYPES, cast, ce_cases, cotangent_for
from xentcheck import verdict, reference
from xentcheck.verdict import assert_close
from xentcheck.reference import chunked, exact
from xentcheck.records import OPS

ROW_OPS = tuple(op for op, record in OPS.items() if record.family == "rows")


def _set_blocks(monkeypatch, rows):
    """Blocks of `rows` rows on 3 threads even for tiny inputs; rows=None: one block, inline."""
    if rows is None:
        monkeypatch.setattr(chunked, "block_rows", lambda n_rows, n_cols, workers: max(n_rows, 1))
        monkeypatch.setattr(chunked, "threads", lambda: 1)
    else:
        monkeypatch.setattr(chunked, "block_rows", lambda n_rows, n_cols, workers: rows)
        monkeypatch.setattr(chunked, "threads", lambda: 3)
        monkeypatch.setattr(chunked, "INLINE_ELEMENTS", 0)


def _blocked_and_whole(monkeypatch, fn, rows=3):
    _set_blocks(monkeypatch, rows)
    blocked = fn()
    _set_blocks(monkeypatch, None)
    return blocked, fn()


def _assert_same_bits(got, want, what=""):
    """Equal arrays to the bit (NaN payloads aside), dtype and -0.0 included."""
    got, want = (got if isinstance(got, tuple) else (got,)), (want if isinstance(want, tuple) else (want,))
    for a, b in zip(got, want):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, what
        bits = np.dtype(f"u{a.dtype.itemsize}")
        same = (a.view(bits) == b.view(bits)) | (np.isnan(a.astype(np.float64)) & np.isnan(b.astype(np.float64)))
        assert same.all(), f"{what}: {int((~same).sum())} of {same.size} elements differ"


def _rows(shape, dtype, seed=0, scale=3.0):
    """Random rows with the edge rows in front: -inf entries, all -inf, +inf, NaN."""
    x = np.random.default_rng(seed).standard_normal(shape) * scale
    flat = x.reshape(-1, shape[-1]) if x.ndim > 1 else x[None]
    if flat.shape[0] >= 5:
        flat[0, ::2] = -np.inf
        flat[1] = -np.inf
        flat[2, 1] = np.inf
        flat[3, 0] = np.nan
    return cast(x, dtype)


def _blocks_run(n_rows, n_cols):
    """[(lo, hi, ran in the calling thread)] for the blocks for_each_block makes."""
    import threading

    seen = []
    chunked.for_each_block(n_rows, n_cols, lambda lo, hi, scratch: seen.append(
        (lo, hi, threading.current_thread() is threading.main_thread())))
    return sorted(seen)


def test_blocks_cover_the_rows_once(monkeypatch):
    """The test configuration really splits rows over threads; small inputs run inline in one block."""
    assert _blocks_run(8, 20) == [(0, 8, True)]
    _set_blocks(monkeypatch, 3)
    blocks = _blocks_run(7, 4)
    assert [(lo, hi) for lo, hi, _ in blocks] == [(0, 3), (3, 6), (6, 7)]
    assert not any(inline for _, _, inline in blocks)


def test_default_blocks():
    assert chunked.block_rows(2048, 32768, 2) == chunked.BLOCK_BYTES // (8 * 32768)
    assert chunked.block_rows(256, 32768, 2) == 4  # 32 blocks per worker
    assert chunked.block_rows(4, 262144, 2) == 1
    assert chunked.block_rows(8, 20, 1) >= 8  # one block


VIEWS = [  # (made from a (3, 4, 5) array, the (rows, columns) asked for, whether that is a view of it)
    ("contiguous", lambda a: a, (12, 5), True),
    ("strided-outer-axis", lambda a: a[:, ::2], (6, 5), True),  # still merges: outer stride = 2 x the next one
    ("moved-axis", lambda a: np.moveaxis(a, 0, -1), (20, 3), True),
    ("transposed-batch", lambda a: a.transpose(1, 0, 2), (12, 5), False),
    ("fortran-order", np.asfortranarray, (12, 5), False),
]


@pytest.mark.parametrize("new_numpy", [True, False], ids=["reshape-copy-false", "shape-assignment"])
@pytest.mark.parametrize("name, make, shape, is_view", VIEWS, ids=[v[0] for v in VIEWS])
def test_view_as_gives_a_view_or_none(monkeypatch, new_numpy, name, make, shape, is_view):
    """chunked.view_as: a view of the same memory where one exists, None (never a copy) where not; through
    reshape(copy=False) on NumPy >= 2.1, through assigning a view's shape before it. Rows uses the view."""
    if new_numpy and not chunked._RESHAPE_HAS_COPY:
        pytest.skip(f"NumPy {np.__version__} has no reshape(copy=False)")
    monkeypatch.setattr(chunked, "_RESHAPE_HAS_COPY", new_numpy)
    array = make(np.arange(60.0).reshape(3, 4, 5))
    view = chunked.view_as(array, shape)
    rows = chunked.Rows(array)
    if not is_view:
        assert view is None and rows._matrix is None
        return
    assert view.shape == shape and np.shares_memory(view, array) and np.array_equal(view, array.reshape(shape))
    assert np.shares_memory(rows.get(0, 2), array)


# --------------------------------------------------------------------------------------------
# Row ops.

ROW_SHAPES = [((7, 11), -1), ((11, 7), 0), ((2, 5, 4), 1), ((3, 2, 6), -1), ((5,), 0)]


@pytest.mark.parametrize("kind", ["value", "vjp"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, axis", ROW_SHAPES, ids=[f"{s}-axis{a}" for s, a in ROW_SHAPES])
@pytest.mark.parametrize("op", ROW_OPS)
def test_row_ops_blocked_equal_whole(monkeypatch, op, shape, axis, dtype, kind):
    x = _rows(shape, dtype)
    kwargs = {"axis": axis, **({"temperature": 0.5} if "temperature" in OPS[op].parameters else {})}
    v = cotangent_for(op, x, kwargs)
    run = (lambda: getattr(reference, op)(x, **kwargs)) if kind == "value" else (
        lambda: reference.vjp(op, x, v, **kwargs))
    blocked, whole = _blocked_and_whole(monkeypatch, run)
    _assert_same_bits(blocked, whole, f"{op} {kind} {shape} axis {axis}")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("op", ROW_OPS)
def test_row_ops_blocked_against_oracle(monkeypatch, op, dtype):
    _set_blocks(monkeypatch, 2)
    x = _rows((5, 3001), dtype, scale=4.0)
    kwargs = {"temperature": 0.75} if "temperature" in OPS[op].parameters else {}
    got = getattr(reference, op)(x, **kwargs)
    want = getattr(exact, op)(x, **kwargs)
    tol = verdict.tolerance(op, "value", x, kwargs, versus="oracle", exact=want)
    assert_close(got, want, tol, err_msg=f"{op} {dtype}")


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_one_huge_row_against_oracle(op):
    x = _rows((1, 262144), "float32", seed=1, scale=4.0)
    got = getattr(reference, op)(x)
    want = getattr(exact, op)(x)
    tol = verdict.tolerance(op, "value", x, {}, versus="oracle", exact=want)
    assert_close(got, want, tol, err_msg=op)


# --------------------------------------------------------------------------------------------
# Cross-entropy: every option, blocked against whole, and against the oracle.

CE_CASES = ce_cases(shapes=((7, 5), (2, 5, 3)))


def _ce_all(logits, kwargs):
    """(value, fused value and gradient, vjp) of cross-entropy."""
    v = cotangent_for("cross_entropy", logits, kwargs)
    return (reference.cross_entropy(logits, **kwargs),
            *reference.cross_entropy_value_and_grad(logits, **kwargs),
            reference.vjp("cross_entropy", logits, v, **kwargs))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CE_CASES, ids=lambda c: c.id)
def test_cross_entropy_blocked_equal_whole(monkeypatch, case, dtype):
    logits, kwargs = case.make(dtype)
    blocked, whole = _blocked_and_whole(monkeypatch, lambda: _ce_all(logits, kwargs))
    _assert_same_bits(blocked, whole, case.id)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_edges_blocked_equal_whole(monkeypatch, dtype):
    logits = _rows((7, 4), dtype)
    for kwargs in [dict(target=np.array([0, 1, 2, 3, 0, 1, -100])),
                   dict(target=np.array([0, 1, 2, 3, 0, 1, 2]), reduction="none", label_smoothing=0.2,
                        weight=np.array([1.0, 0.0, 2.0, 0.5]))]:
        blocked, whole = _blocked_and_whole(monkeypatch, lambda: _ce_all(logits, kwargs))
        _assert_same_bits(blocked, whole, str(kwargs))


def _assert_ce_against_oracle(logits, kwargs, what):
    loss, grad = reference.cross_entropy_value_and_grad(logits, **kwargs)
    want = exact.cross_entropy(logits, **kwargs)
    tol = verdict.tolerance("cross_entropy", "value", logits, kwargs, versus="oracle", exact=want)
    assert_close(loss, want, tol, err_msg=f"value {what}")
    ones = np.ones(logits.shape[:-1] if kwargs.get("reduction") == "none" else (), logits.dtype)
    want = exact.vjp("cross_entropy", logits, ones, **kwargs)
    tol = verdict.tolerance("cross_entropy", "vjp", logits, kwargs, ones, versus="oracle", exact=want)
    assert_close(grad, want, tol, err_msg=f"gradient {what}")


CE_LONG = [
    dict(reduction="mean"),
    dict(reduction="sum", label_smoothing=0.1),
    dict(reduction="none", weighted=True, label_smoothing=0.3, ignore=True),
    dict(reduction="mean", probability=True, label_smoothing=0.05),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", CE_LONG, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_cross_entropy_blocked_against_oracle(monkeypatch, options, dtype):
    """Rows of 1500 classes in blocks of 2 rows: the fused value and gradient within the reference's bound."""
    _set_blocks(monkeypatch, 2)
    options = dict(options)
    rng = np.random.default_rng(5)
    n, c = 5, 1500
    logits = cast(rng.standard_normal((n, c)) * 3, dtype)
    kwargs = {"reduction": options.pop("reduction"), "label_smoothing": options.pop("label_smoothing", 0.0)}
    if options.pop("weighted", False):
        weight = rng.uniform(0.2, 2.0, c)
        weight[::7] = 0.0
        kwargs["weight"] = cast(weight, dtype)
    if options.pop("probability", False):
        q = rng.uniform(0, 1, (n, c)) * (rng.uniform(size=(n, c)) < 0.3)
        q[:, 0] += 1e-3
        kwargs["target"] = cast(q / q.sum(axis=-1, keepdims=True), dtype)
    else:
        target = rng.integers(0, c, n)
        target[1] = np.argmax(logits[1].astype(np.float64))  # a confident, correct example
        if options.pop("ignore", False):
            target[3] = -100
        kwargs["target"] = target
    assert not options
    _assert_ce_against_oracle(logits, kwargs, str(kwargs.keys()))


def test_large_vocabulary_blocked_equal_whole(monkeypatch):
    """(64, 262144) float32 (64 MiB), one row per block on 3 threads against one block."""
    rng = np.random.default_rng(9)
    logits = (rng.standard_normal((64, 262144), dtype=np.float32) * 4)
    target = rng.integers(0, 262144, 64)
    target[5] = -100
    _assert_same_bits(*_blocked_and_whole(
        monkeypatch, lambda: reference.cross_entropy_value_and_grad(logits, target, label_smoothing=0.1), rows=1))


# --------------------------------------------------------------------------------------------
# out=

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_out_receives_the_result(op, dtype):
    fn = getattr(reference, op)
    x = _rows((6, 9), dtype)
    want = fn(x, axis=0, temperature=2.0)
    out = np.full_like(x, 7)
    assert fn(x, axis=0, temperature=2.0, out=out) is out
    _assert_same_bits(out, want, f"{op} out=")
    x_copy = x.copy()
    assert fn(x_copy, axis=0, temperature=2.0, out=x_copy) is x_copy  # in place
    _assert_same_bits(x_copy, want, f"{op} in place")
    column_major = np.asfortranarray(x)
    out = np.empty_like(column_major)
    _assert_same_bits(fn(column_major, axis=0, temperature=2.0, out=out), want, f"{op} Fortran order")


def test_out_for_a_list_is_float64():
    out = np.empty((2, 3))
    assert reference.softmax([[1, 2, 3], [4, 5, 6]], out=out) is out
    _assert_same_bits(out, reference.softmax(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])))


X = np.arange(12, dtype=np.float32).reshape(3, 4)
_read_only = X.copy()
_read_only.flags.writeable = False


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("out, exc, match", [
    (np.empty((4, 3), np.float32), ValueError, r"^out: .*shape \(3, 4\) and dtype float32.*got shape \(4, 3\)"),
    (np.empty((3, 4), np.float64), ValueError, r"^out: .*dtype float32 \(x's\).*got shape \(3, 4\) and dtype float64"),
    (_read_only, ValueError, r"^out: .*writeable.*read-only"),
    (X[::-1], ValueError, r"^out: .*not overlapping it.*another view of x's memory"),
    ([[0.0] * 4] * 3, TypeError, r"^out: must be a writeable NumPy array.*got list"),
], ids=["shape", "dtype", "read-only", "overlap", "list"])
def test_bad_out_is_refused_naming_it(op, out, exc, match):
    with pytest.raises(exc, match=match):
        getattr(reference, op)(X, out=out)


# --------------------------------------------------------------------------------------------
# Memory: beyond the input, the result (gradient) itself, O(rows), and block-sized work arrays.

def _peak_extra(fn) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del result
    return peak - before


@pytest.fixture(scope="module")
def batch():
    """Logits, targets and a cotangent of the logits' shape (allocated before anything is measured)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((256, 32768), dtype=np.float32)
    return x, rng.integers(0, 32768, 256), rng.standard_normal(x.shape, dtype=np.float32)


@pytest.mark.parametrize("name, fn, limit", [
    ("cross_entropy_value_and_grad", lambda x, t: reference.cross_entropy_value_and_grad(x, t), 1.25),
    ("cross_entropy_value_and_grad-sum-smoothing-weight",
     lambda x, t: reference.cross_entropy_value_and_grad(x, t, reduction="sum", label_smoothing=0.1,
                                                         weight=np.linspace(0, 2, x.shape[1])), 1.25),
    ("vjp[cross_entropy]-none", lambda x, t: reference.vjp("cross_entropy", x, np.ones(x.shape[0]), target=t,
                                                          reduction="none"), 1.25),
    ("cross_entropy", lambda x, t: reference.cross_entropy(x, t), 0.25),
    ("softmax", lambda x, t: reference.softmax(x), 1.25),
    ("log_softmax-out", lambda x, t: reference.log_softmax(x, out=np.empty_like(x)), 1.25),
    ("softmax-in-place", lambda x, t: reference.softmax(x, out=x), 0.25),
    ("logsumexp", lambda x, t: reference.logsumexp(x), 0.25),
])
def test_extra_memory_is_the_result_and_small_blocks(batch, name, fn, limit):
    x, target, _ = batch
    x = x.copy() if name.endswith("in-place") else x
    extra = _peak_extra(lambda: fn(x, target))
    assert extra <= limit * x.nbytes, f"{name}: {extra / x.nbytes:.3f} x the logits' bytes (limit {limit})"


@pytest.mark.parametrize("op", ROW_OPS)
def test_row_vjp_extra_memory_is_the_gradient_and_a_few_blocks(batch, op):
    """Beyond the gradient, at most 8 float64 work arrays of one block per thread: the most the
    formulas hold at once (the softmax vjp: the block, v, p, w and three products), plus O(rows)."""
    x, _, v = batch
    kwargs = {"temperature": 0.5} if "temperature" in OPS[op].parameters else {}
    cotangent = v if OPS[op].output_shape(x, kwargs) == x.shape else v[:, 0].copy()
    extra = _peak_extra(lambda: reference.vjp(op, x, cotangent, **kwargs))
    workers = chunked.threads()
    block_bytes = 8 * chunked.block_rows(*x.shape, workers) * x.shape[1]
    limit = x.nbytes + 8 * block_bytes * workers + 64 * x.shape[0]
    assert extra <= limit, f"vjp {op}: {extra / x.nbytes:.3f} x the logits' bytes (limit {limit / x.nbytes:.3f})"
