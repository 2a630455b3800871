"""The time floor of a float64 linear cross-entropy with 3 matmuls (issue 14's speed target), as a measurement,
not a reference: value and the hidden and weight gradients of the mean loss, tokens in blocks whose whole row of
float64 logits is held (no recomputation), d weight's share of each block added into the float32 output (so d
weight is rounded once per block, not once: the exact reference, xentcheck/reference/linear.py, takes a 4th
matmul to avoid that within its memory cap). No validation, smoothing, weights, z-loss or bias. Prints the
seconds of each part.

    python benchmarks/linear_ce_floor.py [TOKENS HIDDEN VOCAB] [--row-mib MIB]
"""
import sys
import time
from collections import defaultdict

import numpy as np


def main(argv):
    row_mib = int(argv.pop(argv.index("--row-mib") + 1)) if "--row-mib" in argv else 384
    n, hidden, vocab = [int(a) for a in argv] or [4096, 2048, 131072]
    rng = np.random.default_rng(0)
    h = rng.standard_normal((n, hidden), dtype=np.float32) * np.float32(0.5)
    w = rng.standard_normal((vocab, hidden), dtype=np.float32) * np.float32(0.05)
    target = rng.integers(0, vocab, n)
    parts, last = defaultdict(float), [time.perf_counter()]

    def tick(part):
        now = time.perf_counter()
        parts[part] += now - last[0]
        last[0] = now

    start = time.perf_counter()
    rows, chunk = max(1, min(n, (row_mib << 20) // (vocab * 8))), 4096
    chunks = [(c, min(c + chunk, vocab)) for c in range(0, vocab, chunk)]
    logits = [np.empty((rows, c1 - c0)) for c0, c1 in chunks]  # one block's whole rows, float64
    w64, h64, part = np.empty((chunk, hidden)), np.empty((rows, hidden)), np.empty((chunk, hidden))
    d_weight, d_hidden, loss = np.zeros((vocab, hidden), np.float32), np.empty((n, hidden), np.float32), 0.0
    for lo in range(0, n, rows):
        hi = min(lo + rows, n)
        hb = h64[:hi - lo]
        np.copyto(hb, h[lo:hi])
        m = np.full(hi - lo, -np.inf)
        for (c0, c1), block in zip(chunks, logits):
            np.copyto(w64[:c1 - c0], w[c0:c1]); tick("convert the weight to float64")
            np.dot(hb, w64[:c1 - c0].T, out=block[:hi - lo]); tick("float64 GEMMs")
            np.maximum(m, block[:hi - lo].max(axis=1), out=m)
        s = np.zeros(hi - lo)
        for (c0, c1), block in zip(chunks, logits):
            rows_here = np.flatnonzero((target[lo:hi] >= c0) & (target[lo:hi] < c1))
            loss -= (block[rows_here, target[lo + rows_here] - c0] - m[rows_here]).sum()
            b = block[:hi - lo]
            b -= m[:, None]
            np.exp(b, out=b)
            s += b.sum(axis=1)
        loss += np.log(s).sum()
        tick("exp and the statistics")
        dh = np.zeros((hi - lo, hidden))
        for (c0, c1), block in zip(chunks, logits):
            g = block[:hi - lo]
            g /= (s * n)[:, None]
            rows_here = np.flatnonzero((target[lo:hi] >= c0) & (target[lo:hi] < c1))
            g[rows_here, target[lo + rows_here] - c0] -= 1.0 / n; tick("exp and the statistics")
            np.copyto(w64[:c1 - c0], w[c0:c1]); tick("convert the weight to float64")
            dh += g @ w64[:c1 - c0]
            np.dot(g.T, hb, out=part[:c1 - c0]); tick("float64 GEMMs")
            d_weight[c0:c1] += part[:c1 - c0]; tick("add d weight's share into float32")
        d_hidden[lo:hi] = dh
    print(f"tokens {n}, hidden {hidden}, vocab {vocab}, rows per block {rows}: {time.perf_counter() - start:.1f} s "
          f"(loss {loss / n:.4f}); " + ", ".join(f"{k} {v:.1f} s" for k, v in parts.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
