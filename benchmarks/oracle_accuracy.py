"""The oracle's throughput and the reference's accuracy against it, per op and dtype.

    python benchmarks/oracle_accuracy.py [--out benchmarks/ORACLE.md]

Input: a seeded suite of rows (standard normal at scales 1, 10, 100; lengths 2 to 1024; one row in
eight with -inf entries), the same values cast to each dtype. Throughput counts input elements per
second of a cold oracle (its row cache cleared), value and vjp separately.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from xentcheck import reference
from xentcheck.reference import FORMATS, exact, round_to_dtype

OPS = ("softmax", "log_softmax", "logsumexp", "cross_entropy")


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
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# The reference against the exact oracle\n\n" + __doc__.split("\n\n", 1)[1] + "\n" + text + "\n")


if __name__ == "__main__":
    main()
