"""The oracle's throughput and the reference's accuracy against it, per op and dtype.

    python benchmarks/oracle_accuracy.py [--out benchmarks/ORACLE.md]

Input: a seeded suite of rows (standard normal at scales 1, 10, 100; lengths 2 to 1024; one row in
eight with -inf entries), the same values cast to each dtype. Throughput counts input elements per
second of a cold oracle (its row cache cleared), value and vjp separately.

The second table is the reference's largest error over every input the project holds it to: that
suite, the named inputs of tests/_cases.py (every row-op edge, every cross-entropy option, label
smoothing 1e-3 to 1e-12, class weights over 60 decades in float64 (12 in float32 and bfloat16, 4 in
float16), probability targets 1e-3 to 1e-12 from one-hot, on confident and ordinary rows), and the
loss family's compare cases and edges (xentcheck.suite, quick) plus confident rows, per-class alpha
over as many decades, and near one-hot distributions.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from xentcheck import reference
from xentcheck.edges import edges_for
from xentcheck.optable import OPS as OP_TABLE
from xentcheck.reference import FORMATS, exact, exact_losses, round_to_dtype
from xentcheck.reference.losses import DISTRIBUTIONS, LOSS_OPS
from xentcheck.suite import loss_suite

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import _cases  # noqa: E402  (the tests' named inputs)

OPS = ("softmax", "log_softmax", "logsumexp", "cross_entropy")
ALL_OPS = OPS + LOSS_OPS


def suite(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for n in (2, 7, 33, 128, 1024):
        for scale in (1.0, 10.0, 100.0):
            x = rng.standard_normal((max(1, 256 // n), n)) * scale
            x[::8, : max(1, n // 4)] = -np.inf
            x[::8, -1] = 0.0  # keep a finite entry in every row
            rows.append(x)
    return rows


def measure(dtype):
    results = {}
    for op in OPS:
        for kind in ("value", "vjp"):
            worst, values, seconds = 0.0, 0, 0.0
            for i, rows in enumerate(suite()):
                x = round_to_dtype(rows, dtype)
                rng = np.random.default_rng(i)
                kwargs = {"target": rng.integers(0, x.shape[-1], x.shape[0])} if op == "cross_entropy" else {}
                if kind == "value":
                    got = getattr(reference, op)(x, **kwargs)
                    exact._ROW_CACHE.clear()
                    start = time.perf_counter()
                    want = getattr(exact, op)(x, **kwargs)
                else:
                    shape = {"logsumexp": x.shape[:-1], "cross_entropy": ()}.get(op, x.shape)
                    v = round_to_dtype(rng.standard_normal(shape), dtype)
                    got = reference.vjp(op, x, v, **kwargs)
                    exact._ROW_CACHE.clear()
                    start = time.perf_counter()
                    want = exact.vjp(op, x, v, **kwargs)
                seconds += time.perf_counter() - start
                values += x.size  # input elements: a mean's one output still needs every row
                worst = max(worst, float(exact.ulp_error(got, want, dtype).max()))
            results[op, kind] = (worst, values / seconds)
    return results


def _suite_inputs(op, dtype):
    """The seeded suite above, as (x, kwargs, cotangent)."""
    for i, rows in enumerate(suite()):
        x = round_to_dtype(rows, dtype)
        rng = np.random.default_rng(i)
        kwargs = {"target": rng.integers(0, x.shape[-1], x.shape[0])} if op == "cross_entropy" else {}
        shape = {"logsumexp": x.shape[:-1], "cross_entropy": ()}.get(op, x.shape)
        yield x, kwargs, round_to_dtype(rng.standard_normal(shape), dtype)


def _loss_family_inputs(op, dtype):
    """The compare suite's cases and edges (as tests/test_losses.py), then the rows where cancellation
    would show: confident rows (target at the max and elsewhere) with alpha over many decades, and
    near one-hot distributions."""
    for case in loss_suite(op, quick=True):
        yield case.inputs(dtype)
    for spec in edges_for(op):
        if np.prod(spec.shape) <= 4096:
            x, kwargs = spec.materialize(dtype)
            yield x, OP_TABLE[op].kwargs(kwargs), spec.cotangent_for(op, dtype)
    rng = np.random.default_rng(5)
    if op in DISTRIBUTIONS:
        n = 7
        heavy = np.arange(8) % n
        for delta in _cases.NEAR_ONE_HOT:
            p = _cases.near_one_hot(heavy, n, delta)
            kwargs = {} if op == "entropy" else {"q": _cases.cast(np.concatenate([
                _cases.near_one_hot(heavy[:4], n, delta * 10), _cases.near_one_hot((heavy[4:] + 1) % n, n, 1e-3)]),
                dtype)}
            yield _cases.cast(p, dtype), kwargs, _cases.cast(rng.standard_normal(8), dtype)
        return
    for logits, target in (_cases.CONFIDENT_ROWS, _cases._ordinary_rows()):
        x = _cases.cast(logits, dtype)
        options = {"focal_loss": [{"gamma": 2.0}, {"gamma": 0.5, "alpha": _cases.wide_weights(x.shape[-1], dtype)}],
                   "mse_loss": [{"form": "full"}, {"form": "target"}],
                   "multiclass_hinge_loss": [{"margin": 1.0}]}[op]
        for extra in options:
            kwargs = {"target": np.asarray(target), "reduction": "none", **extra}
            if "alpha" in kwargs:
                kwargs["alpha"] = _cases.cast(kwargs["alpha"], dtype)
            yield x, kwargs, _cases.cast(rng.standard_normal(len(target)), dtype)


def _test_inputs(op, dtype):
    """The named inputs of tests/_cases.py for the row ops and cross-entropy."""
    if op == "cross_entropy":
        for case in _cases.ce_cases(shapes=((7,), (6, 7), (2, 3, 5))) + _cases.hard_ce_cases():
            x, kwargs = case.make(dtype)
            yield x, kwargs, _cases.cotangent_for(op, x, kwargs)
        return
    for case in _cases.ROW_CASES:
        if dtype not in case.dtypes:
            continue
        for tau in case.temperatures if op != "logsumexp" else (1.0,):
            x, kwargs = case.x(dtype), _cases.op_kwargs(op, case, tau)
            yield x, kwargs, _cases.cotangent_for(op, x, kwargs)


def worst_everywhere(dtype):
    """{(op, kind): the largest ULP error of the reference} over the suite, the tests' inputs and the loss family's."""
    results = {}
    for op in ALL_OPS:
        inputs = _loss_family_inputs(op, dtype) if op in LOSS_OPS else \
            (item for source in (_suite_inputs, _test_inputs) for item in source(op, dtype))
        oracle = getattr(exact_losses if op in LOSS_OPS else exact, op)
        worst = {"value": 0.0, "vjp": 0.0}
        for x, kwargs, v in inputs:
            for kind, got, want in (("value", getattr(reference, op)(x, **kwargs), oracle(x, **kwargs)),
                                    ("vjp", reference.vjp(op, x, v, **kwargs), exact.vjp(op, x, v, **kwargs))):
                worst[kind] = max(worst[kind], float(np.max(exact.ulp_error(got, want, dtype), initial=0)))
        results.update({(op, kind): value for kind, value in worst.items()})
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="also write the Markdown table here")
    args = parser.parse_args()
    lines = ["| op | kind | " + " | ".join(f"{d} max ulp | {d} oracle elements/s" for d in FORMATS) + " |",
             "|---|---|" + "---:|---:|" * len(FORMATS)]
    table = {d: measure(d) for d in FORMATS}
    for op in OPS:
        for kind in ("value", "vjp"):
            cells = [f"{table[d][op, kind][0]:g} | {table[d][op, kind][1]:,.0f}" for d in FORMATS]
            lines.append(f"| {op} | {kind} | " + " | ".join(cells) + " |")
    worst = {d: worst_everywhere(d) for d in FORMATS}
    lines += ["", "Largest error of the reference over every input (the suite above, tests/_cases.py, the loss family):",
              "", "| op | kind | " + " | ".join(f"{d} max ulp" for d in FORMATS) + " |",
              "|---|---|" + "---:|" * len(FORMATS)]
    for op in ALL_OPS:
        for kind in ("value", "vjp"):
            lines.append(f"| {op} | {kind} | " + " | ".join(f"{worst[d][op, kind]:g}" for d in FORMATS) + " |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# The reference against the exact oracle\n\n" + __doc__.split("\n\n", 1)[1] + "\n" + text + "\n")


if __name__ == "__main__":
    main()
