"""The oracle's throughput and the reference's accuracy against it, per op of xentcheck.records and dtype.

    python benchmarks/oracle_accuracy.py [--out benchmarks/ORACLE.md]

Input: a seeded suite of rows (standard normal at scales 1, 10, 100; lengths 2 to 1024; one row in
eight with -inf entries), the same values cast to each dtype (their softmax for an op on probabilities;
targets and q from the record's example_kwargs). Throughput counts input elements per second of a cold
oracle (its row cache cleared), value and vjp separately.

The second table is the reference's largest error over every input the project holds it to: that
suite, each record's fixed inputs (its quick compare cases and explicit edges), and the named inputs of
tests/_cases.py for its family (every row-op edge, every cross-entropy option, label smoothing 1e-3 to
1e-12, class weights over 60 decades in float64 (12 in float32 and bfloat16, 4 in float16), probability
targets 1e-3 to 1e-12 from one-hot, on confident and ordinary rows; the losses' option sets with per-class
alpha over as many decades on such rows; near one-hot distributions).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from xentcheck.records import OPS
from xentcheck.reference import FORMATS, round_to_dtype, softmax
from xentcheck.reference.exact_rows import ROW_CACHE, ulp_error

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import _cases  # noqa: E402  (the tests' named inputs)

KINDS = ("value", "vjp")


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


def suite_inputs(record, dtype):
    """The seeded suite above as (x, kwargs, cotangent) for `record`."""
    for i, rows in enumerate(suite()):
        rng = np.random.default_rng(i)
        x = round_to_dtype(softmax(rows) if record.domain == "probabilities" else rows, dtype)
        kwargs = {**record.defaults(), **(record.example_kwargs(x, rng) if record.example_kwargs else {})}
        yield x, kwargs, round_to_dtype(rng.standard_normal(record.output_shape(x, kwargs)), dtype)


def _both(record, kind, x, kwargs, v):
    """(the reference's answer, the oracle's)."""
    if kind == "value":
        return record.reference(x, **kwargs), record.oracle(x, **kwargs)
    return record.reference_vjp(x, v, **kwargs), record.oracle_vjp(x, v, **kwargs)


def measure(dtype):
    """{(op, kind): (the reference's largest ULP error over the suite, the cold oracle's elements/s)}."""
    results = {}
    for op, record in OPS.items():
        for kind in KINDS:
            worst, values, seconds = 0.0, 0, 0.0
            for x, kwargs, v in suite_inputs(record, dtype):
                got = record.reference(x, **kwargs) if kind == "value" else record.reference_vjp(x, v, **kwargs)
                ROW_CACHE.clear()
                start = time.perf_counter()
                want = record.oracle(x, **kwargs) if kind == "value" else record.oracle_vjp(x, v, **kwargs)
                seconds += time.perf_counter() - start
                values += x.size  # input elements: a mean's one output still needs every row
                worst = max(worst, float(np.max(ulp_error(got, want, dtype), initial=0)))
            results[op, kind] = (worst, values / seconds)
    return results


def worst_everywhere(dtype):
    """{(op, kind): the reference's largest ULP error} over the suite, the record's fixed inputs and the
    tests' named inputs."""
    results = {}
    for op, record in OPS.items():
        inputs = [*suite_inputs(record, dtype), *((x, kw, v) for _, x, kw, v in record.fixed_inputs(dtype)),
                  *_cases.named_inputs(record, dtype)]
        for kind in KINDS:
            results[op, kind] = max(float(np.max(ulp_error(*_both(record, kind, x, kwargs, v), dtype), initial=0))
                                    for x, kwargs, v in inputs)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="also write the Markdown table here")
    args = parser.parse_args()
    lines = ["| op | kind | " + " | ".join(f"{d} max ulp | {d} oracle elements/s" for d in FORMATS) + " |",
             "|---|---|" + "---:|---:|" * len(FORMATS)]
    table = {d: measure(d) for d in FORMATS}
    worst = {d: worst_everywhere(d) for d in FORMATS}
    for op in OPS:
        for kind in KINDS:
            cells = [f"{table[d][op, kind][0]:g} | {table[d][op, kind][1]:,.0f}" for d in FORMATS]
            lines.append(f"| {op} | {kind} | " + " | ".join(cells) + " |")
    lines += ["", "Largest error of the reference over every input (the suite above, each record's fixed inputs, "
              "tests/_cases.py):", "", "| op | kind | " + " | ".join(f"{d} max ulp" for d in FORMATS) + " |",
              "|---|---|" + "---:|" * len(FORMATS)]
    for op in OPS:
        for kind in KINDS:
            lines.append(f"| {op} | {kind} | " + " | ".join(f"{worst[d][op, kind]:g}" for d in FORMATS) + " |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# The reference against the exact oracle\n\n" + __doc__.split("\n\n", 1)[1] + "\n" + text + "\n")


if __name__ == "__main__":
    main()
