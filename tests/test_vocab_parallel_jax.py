"""The vocabulary-parallel JAX backend (backends/vocab_parallel_jax.py): class-sharded over W host CPU devices.

W = 1, 2, 3 agree with the reference within the float64 bounds (the backend's, with the smallest normal as the
floor since XLA on CPU flushes subnormals, plus the reference's), on 7 classes (neither 2 nor 3 divides it, so
the last shard holds padded classes) with a target in every shard, masked (-inf) logits, and rows that are all
-inf, hold +inf or hold NaN; the hand-written vjps agree with jax.vjp of the sharded forward; `xentcheck check`
passes W = 3 on a few properties and fails (exit status 1) each planted bug on them.
"""
import importlib.util

import numpy as np
import pytest

from _cli import xentcheck_here
from xentcheck import verdict
from xentcheck.backends import vocab_parallel_jax
from xentcheck.backends.vocab_parallel_jax import BUGS, JaxVocabParallel, Layout
from xentcheck.records import OPS
from xentcheck.reference import FORMATS

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
SPEC = "xentcheck.backends.vocab_parallel_jax:"
FLOOR = FORMATS["float64"].smallest_normal  # XLA on CPU flushes subnormal results to zero
INF, NAN = np.inf, np.nan
RNG = np.random.default_rng(7)
ROWS = np.array([RNG.standard_normal(7) * 3,
                 [0.5, -INF, 2.0, 1.0, -INF, -1.0, 3.0],  # masked classes in every shard
                 [-INF] * 7,
                 [1.0, 2.0, INF, 0.0, -1.0, 0.5, 0.25],
                 [1.0, 2.0, 0.0, NAN, -1.0, 0.5, 0.25]])
LOGITS = np.array([RNG.standard_normal(7) * 2, RNG.standard_normal(7), [0.5, -INF, 2.0, 1.0, -INF, -1.0, 3.0],
                   RNG.standard_normal(7) * 4])
TARGETS = np.array([0, 3, 6, -100])  # shard 0, 1 and 2 of W = 3 (k = 3); 0 and 3 on shard 0, 6 on shard 1 of W = 2
WEIGHT = np.array([1.0, 0.5, 0.0, 2.0, 1.5, 0.25, 3.0])
ROW_OPTIONS = ({"axis": -1, "temperature": 1.0}, {"axis": -1, "temperature": 0.5}, {"axis": 0, "temperature": 2.0})
CE_OPTIONS = (
    {"target": TARGETS, "reduction": "none"},
    {"target": TARGETS, "reduction": "sum", "weight": WEIGHT, "label_smoothing": 0.2},
    {"target": TARGETS, "reduction": "mean", "weight": WEIGHT},
    {"target": np.array([1, -1, 5, -1]), "reduction": "mean", "ignore_index": -1, "label_smoothing": 1.0},
    {"target": np.full(4, -100), "reduction": "mean"},  # all ignored: a NaN mean, and a NaN gradient
    {"target": np.abs(RNG.standard_normal((4, 7))) / 7, "reduction": "mean", "label_smoothing": 0.1},
)


@pytest.fixture(scope="module", params=[1, 2, 3])
def backend(request):
    return JaxVocabParallel(request.param)


def _cases():
    """(op, x, kwargs) of every comparison: the row ops on ROWS, cross-entropy on LOGITS."""
    for op in ("softmax", "log_softmax", "logsumexp"):
        for options in ROW_OPTIONS:
            yield op, ROWS if options["axis"] == -1 else ROWS[:2].T.copy(), {
                k: v for k, v in options.items() if k in OPS[op].parameters}
    for options in CE_OPTIONS:
        yield "cross_entropy", LOGITS, options


def _cotangent(op, x, kwargs):
    return np.random.default_rng(3).uniform(-2, 2, OPS[op].output_shape(x, kwargs))


def test_layout_spreads_the_classes_and_pads_each_shard():
    """7 classes on 3 shards: k = 3 classes each ([0, 3), [3, 6), [6, 7)), then padding to the shard's width."""
    layout = Layout(2, 7, 3)
    x = np.arange(14.0).reshape(2, 7)
    padded = layout.pad(x, -INF)
    assert layout.k == 3 and padded.shape == (layout.padded_rows, 3 * layout.width)
    shards = padded[:2].reshape(2, 3, layout.width)
    assert (shards[:, 0, :3] == x[:, 0:3]).all() and (shards[:, 1, :3] == x[:, 3:6]).all()
    assert (shards[:, 2, :1] == x[:, 6:7]).all() and (shards[:, 2, 1:] == -INF).all()
    assert (shards[:, :, 3:] == -INF).all() and (padded[2:] == -INF).all()
    assert (layout.unpad(padded) == x).all()
    weight = layout.pad(np.arange(1.0, 8.0), 0, has_rows=False).reshape(3, layout.width)
    assert (weight[:, :3].ravel()[:7] == np.arange(1.0, 8.0)).all() and weight.sum() == np.arange(1.0, 8.0).sum()


def test_agrees_with_the_reference(backend):
    for op, x, kwargs in _cases():
        what = f"{backend.name} {op} {kwargs.get('reduction', '')} {kwargs.get('axis', '')}"
        got = getattr(backend, op)(x, **kwargs)
        tol = verdict.tolerance(op, "value", x, kwargs, floor=FLOOR)
        verdict.assert_close(got, OPS[op].reference(x, **kwargs), tol, err_msg=f"{what} value")
        v = _cotangent(op, x, kwargs)
        got = backend.vjp(op, x, v, **kwargs)
        tol = verdict.tolerance(op, "vjp", x, kwargs, v, floor=FLOOR)
        verdict.assert_close(got, OPS[op].reference_vjp(x, v, **kwargs), tol, err_msg=f"{what} vjp")


def test_narrower_dtypes_are_computed_in_float32():
    """float16 and bfloat16 within the bound of float32 compute and one rounding (the default), dtype kept; the
    floor is the smallest normal where XLA flushes (bfloat16 and float32 results; float16's are float32 normals)."""
    backend = JaxVocabParallel(3)
    for dtype in ("float32", "float16", "bfloat16"):
        x = LOGITS.astype(FORMATS[dtype].dtype)
        got = backend.log_softmax(x)
        assert got.dtype == x.dtype
        floor = None if dtype == "float16" else FORMATS[dtype].smallest_normal
        verdict.assert_close(got, OPS["log_softmax"].reference(x),
                             verdict.tolerance("log_softmax", "value", x, {}, floor=floor), err_msg=dtype)


def test_hand_written_vjps_equal_autodiff_of_the_sharded_forward():
    """jax.vjp through shard_map, pmax (the max held constant) and psum, on rows where both are defined: each
    side within its float64 vjp bound of the exact value."""
    backend = JaxVocabParallel(3)
    regular = ROWS[:2]
    cases = [(op, regular, {}) for op in ("softmax", "log_softmax", "logsumexp")]
    cases.append(("cross_entropy", LOGITS[:2], dict(CE_OPTIONS[1], target=TARGETS[:2], reduction="mean")))
    for op, x, kwargs in cases:
        v = _cotangent(op, x, kwargs)
        tol = 2 * verdict.tolerance(op, "vjp", x, kwargs, v, versus="exact", floor=FLOOR)
        verdict.assert_close(backend.vjp(op, x, v, **kwargs), backend.autodiff_vjp(op, x, v, **kwargs), tol,
                             err_msg=op)


def test_arguments_are_checked_as_the_reference_does():
    backend = JaxVocabParallel(2)
    with pytest.raises(ValueError, match="target"):
        backend.cross_entropy(LOGITS, target=np.array([0, 1, 7, 2]))
    with pytest.raises(ValueError, match="weight"):
        backend.cross_entropy(LOGITS, target=TARGETS, weight=np.ones(3))
    with pytest.raises(ValueError, match="axis"):
        backend.softmax(ROWS, axis=2)
    with pytest.raises(NotImplementedError, match="focal_loss"):
        backend.focal_loss(LOGITS, target=np.zeros(4, int))
    with pytest.raises(ValueError, match="world_size"):
        JaxVocabParallel(0)
    with pytest.raises(ValueError, match="bug"):
        JaxVocabParallel(2, bug="typo")


# A property that sees each planted bug: softmax keeps the order of the logits across shards (the max),
# cross-entropy is -log_softmax at the target (the target's shard), ignored examples get a zero gradient (the mask).
SELECTION = "order_is_kept or minus_log_softmax or ignored_examples"


def _check(factory, *options):
    return xentcheck_here("check", "--backend", SPEC + factory, "--dtypes", "float32", "--no-progress", *options)


def test_check_passes_on_three_shards():
    code, out, err = _check("vocab_parallel_3", "--ops", "softmax,cross_entropy", "-k", SELECTION)
    assert code == 0, out + err
    assert "0 failed" in out and "jax-vocab-parallel-3" in out


@pytest.mark.parametrize("factory, ops, properties", [
    ("vocab_parallel_no_max_allreduce", "softmax", "order_is_kept"),
    ("vocab_parallel_target_on_another_rank", "cross_entropy", "minus_log_softmax"),
    ("vocab_parallel_ignore_mask_one_rank", "cross_entropy", "ignored_examples"),
])
def test_check_fails_each_planted_bug(factory, ops, properties):
    code, out, err = _check(factory, "--ops", ops, "-k", properties, "-x")
    assert code == 1, out + err
    assert "FALSIFIED" in out


def test_a_factory_per_world_size_and_per_bug():
    for world in (1, 2, 3):
        assert getattr(vocab_parallel_jax, f"vocab_parallel_{world}")().name == f"jax-vocab-parallel-{world}"
    for bug in BUGS:
        backend = getattr(vocab_parallel_jax, f"vocab_parallel_{bug.replace('-', '_')}")()
        assert backend.bug == bug and backend.world_size in (2, 3) and bug in backend.name


def test_compare_runs_it_and_the_torch_ranks_from_its_daemonic_backend_processes():
    """`compare` runs each backend in a daemonic process, which multiprocessing forbids to have children: both
    vocabulary-parallel backends start theirs anyway (their workers leave when their pipes close)."""
    from xentcheck.compare import run_compare

    specs = ["jax-vocab-parallel-2"] + (["torch-vocab-parallel-2"] if importlib.util.find_spec("torch") else [])
    results = run_compare(specs, ops=["logsumexp"], dtypes=["float32"], quick=True, timeout=60)
    rows = [r for r in results["results"] if r["backend"] in specs]
    assert {r["backend"] for r in rows} == set(specs)
    for r in rows:
        assert not r["problems"] and r["n"] > 0 and r["beyond_bound"] == 0, r
    # the edges of ops they do not compute (the loss family) are declined, not answers that differ
    answers = [(e["op"], b) for e in results["semantics"] for b in e["backends"]]
    others = [b for op, b in answers if OPS[op].family not in ("rows", "cross_entropy")]
    assert others and all(b["declined"] and not b["differs"] for b in others)
    assert not any(b["declined"] for op, b in answers if op == "softmax")
