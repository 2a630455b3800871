"""The vocabulary-parallel torch.distributed backend (backends/vocab_parallel.py): its ranks' answers equal the
reference's for W = 1, 2, 3 (a vocabulary that no W > 1 divides, a rank holding no class, a target on every
rank, the edges), `xentcheck check` passes it and catches each of its planted bugs.

Starting the ranks is the cost here (each spawned process imports torch: seconds of CPU), so each world size
has one test: the backends of one size share their processes within a process (`check`'s own backend objects
find the ones the test started), and one test per size starts them once however pytest-xdist deals the tests.
"""
import gc
import importlib.util

import numpy as np
import pytest
from _cli import xentcheck_here

from xentcheck.backends import load_backend
from xentcheck.backends.vocab_parallel import BUGS, TorchVocabParallel, shard_bounds
from xentcheck.records import OPS
from xentcheck.reference import round_to_dtype
from xentcheck.verdict import assert_close, tolerance

# the ranks import torch; this process need not (seconds per pytest-xdist worker)
pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")

SPEC = "xentcheck.backends.vocab_parallel:"
ROW_OPS = ("softmax", "log_softmax", "logsumexp")
INF, NAN = np.inf, np.nan
X = np.random.default_rng(1).normal(size=(5, 7)) * 3  # 7 classes: no W in 2, 3 divides them
# the targets 0, 4, 6 lie one on each rank for every W <= 3 (test_shards_...), -100 is ignored
TARGETS = np.array([0, 4, 6, -100, 3])
CE_OPTIONS = [dict(reduction="none"), dict(reduction="mean", weight=(0.5, 1.0, 0.0, 2.0, 1.0, 0.25, 1.5)),
              dict(reduction="sum", label_smoothing=0.1),
              dict(reduction="mean", ignore_index=4, label_smoothing=0.3, target=np.array([0, 4, 6, 4, 3]))]
IRREGULAR = np.array([[1.0, -INF, 2.0, 0.5, -INF, 3.0, 0.0],      # -inf entries beside finite ones
                      [-INF] * 7,                                   # all -inf
                      [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, INF],          # +inf on the last rank
                      [NAN, 1.0, 2.0, 3.0, 4.0, 5.0, INF]])         # NaN on rank 0 beside +inf
CHECKED_OPS = "softmax,log_softmax,logsumexp,cross_entropy"
PLANTED = {"NoMaxAllreduce": "softmax", "TargetOnAnotherRank": "cross_entropy", "IgnoreMaskOneRank": "cross_entropy"}


def _agrees(b, op, x, kwargs):
    """Value and vjp equal the reference's within the two derived bounds (float64: its rounding alone)."""
    kwargs = {**OPS[op].defaults(), **kwargs}
    assert_close(getattr(b, op)(x, **kwargs), OPS[op].reference(x, **kwargs),
                 tolerance(op, "value", x, kwargs), err_msg=f"{b.name} {op} {kwargs}")
    v = np.random.default_rng(5).normal(size=OPS[op].output_shape(x, kwargs)).astype(x.dtype)
    assert_close(b.vjp(op, x, v, **kwargs), OPS[op].reference_vjp(x, v, **kwargs),
                 tolerance(op, "vjp", x, kwargs, v), err_msg=f"{b.name} vjp of {op} {kwargs}")


def _agree_with_the_reference(b):
    for op in ROW_OPS:
        _agrees(b, op, X, {})
        _agrees(b, op, X.T.copy(), {"axis": 0, **({"temperature": 0.25} if op != "logsumexp" else {})})
        _agrees(b, op, X[:, :2], {})  # 2 classes: under W = 3 a rank holds none
        _agrees(b, op, IRREGULAR, {})
    for options in CE_OPTIONS:
        _agrees(b, "cross_entropy", X, {"target": TARGETS, **options})
    q = OPS["softmax"].reference(np.random.default_rng(2).normal(size=X.shape))
    _agrees(b, "cross_entropy", X, dict(target=q, label_smoothing=0.2))
    # ignored examples with irregular rows get a gradient of exactly 0; a mean over nothing is NaN (its gradient
    # too); 0 log 0 = 0: zero-weight classes at -inf add nothing under label smoothing
    _agrees(b, "cross_entropy", IRREGULAR, dict(target=np.array([0, -100, -100, -100]), reduction="sum"))
    _agrees(b, "cross_entropy", X[:2], dict(target=np.array([-100, -100])))
    _agrees(b, "cross_entropy", IRREGULAR[:1], dict(target=np.array([0]), weight=(1.0, 0.0, 1, 1, 0.0, 1, 1),
                                                       label_smoothing=0.1, reduction="none"))


def _check(spec, *options):
    return xentcheck_here("check", "--backend", SPEC + spec, "--ops", *options, "--no-progress")


def _check_passes(world_size):
    """The agreement properties (value and vjp against the reference, every edge and the ci profile's examples:
    classes 1, 4 and 8, so shards of unequal width and empty ones) on the four ops in float32."""
    code, out, err = _check(f"vocab_parallel_{world_size}", CHECKED_OPS, "--dtypes", "float32", "-k", "equals")
    assert code == 0, out[-3000:] + err[-2000:]
    assert " 0 failed" in out and "0 semantic" in out


def test_shards_are_array_splits_boundaries():
    for n_classes in (1, 2, 3, 7, 8, 131072):
        for world_size in (1, 2, 3, 5):
            sizes = [len(part) for part in np.array_split(np.arange(n_classes), world_size)]
            assert shard_bounds(n_classes, world_size) == [(sum(sizes[:r]), sum(sizes[:r + 1]))
                                                          for r in range(world_size)]
    for world_size in (2, 3):
        shards = enumerate(shard_bounds(7, world_size))
        owners = {r for r, (lo, hi) in shards if any(lo <= t < hi for t in TARGETS)}
        assert owners == set(range(world_size))


def test_bad_arguments_are_refused_before_any_rank_starts():
    b = TorchVocabParallel(2)
    x = np.zeros((2, 3))
    for call, error in [(lambda: b.softmax(x, axis=2), ValueError), (lambda: b.softmax(x, temperature=0.0), ValueError),
                        (lambda: b.softmax(x.astype(complex)), TypeError),
                        (lambda: b.cross_entropy(x, target=np.array([0, 3])), ValueError),
                        (lambda: b.cross_entropy(x, target=np.array([0, 1]), weight=(1.0, 2.0)), ValueError),
                        (lambda: b.vjp("softmax", x, np.ones(3)), ValueError),
                        (lambda: b.vjp("softmax", x, x, dim=1), TypeError),
                        (lambda: b.focal_loss(x, target=np.array([0, 1])), NotImplementedError),
                        (lambda: TorchVocabParallel(0), ValueError),
                        (lambda: TorchVocabParallel(2, bug="typo"), ValueError)]:
        with pytest.raises(error):
            call()
    assert b._pool is None  # nothing was sent to a rank
    assert load_backend(SPEC + "vocab_parallel_3").name == "torch-vocab-parallel-3"
    assert sorted(load_backend(SPEC + name).bug for name in PLANTED) == sorted(BUGS)


def test_one_rank_agrees_and_stops_when_its_last_backend_is_collected():
    b, other = TorchVocabParallel(1), TorchVocabParallel(1)
    _agree_with_the_reference(b)
    other.softmax(np.zeros(3))
    processes = list(b._pool.processes)
    assert other._pool is b._pool and all(p.is_alive() for p in processes)
    del b
    gc.collect()
    assert all(p.is_alive() for p in processes)  # `other` still uses them
    del other
    gc.collect()
    assert not any(p.is_alive() for p in processes)


def test_two_ranks_agree():
    b = TorchVocabParallel(2)  # alive through the check: its ranks serve `check`'s backend
    _agree_with_the_reference(b)
    for dtype in ("float16", "bfloat16"):  # computed in float32, rounded once
        x = round_to_dtype(X, dtype)
        for op, kwargs in [("log_softmax", {}), ("cross_entropy", {"target": TARGETS[:3]})]:
            _agrees(b, op, x[:3], kwargs)


def test_three_ranks_agree_pass_check_and_catch_every_planted_bug():
    b = TorchVocabParallel(3)
    _agree_with_the_reference(b)
    _check_passes(3)
    for bug, op in PLANTED.items():  # 3 ranks each
        code, out, err = _check(bug, op, "--dtypes", "float64", "-k", "equals", "-x")
        assert code == 1, f"{bug} was not caught (exit {code}):\n{out[-3000:]}\n{err[-2000:]}"
        assert "FALSIFIED" in out and "reproducer:" in out
    assert b._pool.processes[0].is_alive()
