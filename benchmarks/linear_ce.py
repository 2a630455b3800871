"""Time and peak memory of linear cross-entropy (value and the three gradients) at LM-head scale: xentcheck's
chunked reference, torch's composition (F.linear + F.cross_entropy, every logit held), and torch 2.13's
F.linear_cross_entropy on its reference path (options=None) and its chunked path
(options=LinearCrossEntropyOptions()), all in the same run; and this machine's float32 and float64 matmul
rates (GFLOP/s), the bound on any of them, since the matmuls dominate (3 of 2 N H V flops each for torch,
4 for the reference: it recomputes the logits for the gradients).

    python benchmarks/linear_ce.py [TOKENS HIDDEN VOCAB] [--dtype float32|bfloat16] [--timeout SECONDS]
                                   [--ways WAY,WAY,...]

A way that takes longer than --timeout seconds (default none) is stopped and reported as "> SECONDS".

Each measurement runs in a fresh process: its time is the wall time of one value-and-gradients call after a
warm-up at a small size, its memory the process's peak resident set above what it held before the call
(ru_maxrss), so torch's allocator is counted as well as NumPy's.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

WAYS = ("reference", "torch-composed", "torch-linear-ce", "torch-linear-ce-chunked")


def _call(way: str, h, w, target, dtype: str):
    """A zero-argument call computing the loss and the gradients with respect to hidden and weight."""
    if way == "reference":
        from xentcheck.reference import bfloat16, linear

        if dtype == "bfloat16":
            h, w = h.astype(bfloat16), w.astype(bfloat16)
        return lambda: linear.linear_cross_entropy_value_and_grads(h, w, target)
    import torch

    F = torch.nn.functional
    th = torch.from_numpy(h).to(getattr(torch, dtype)).requires_grad_(True)
    tw = torch.from_numpy(w).to(getattr(torch, dtype)).requires_grad_(True)
    tt = torch.from_numpy(target)

    def run():
        if way == "torch-composed":
            loss = F.cross_entropy(F.linear(th, tw), tt)
        else:
            options = torch.nn.LinearCrossEntropyOptions() if way.endswith("chunked") else None
            loss = F.linear_cross_entropy(th, tw, tt, options=options)
        return torch.autograd.grad(loss, (th, tw))
    return run


def _child(way: str, tokens: int, hidden: int, vocab: int, dtype: str) -> dict:
    import resource

    import numpy as np

    rng = np.random.default_rng(0)
    # drawn in float32: a float64 temporary of the weight would set the peak before the call is measured
    h = rng.standard_normal((tokens, hidden), dtype=np.float32) * np.float32(0.5)
    w = rng.standard_normal((vocab, hidden), dtype=np.float32) * np.float32(0.05)
    target = rng.integers(0, vocab, tokens)
    _call(way, h[:8], w[:64], target[:8] % 64, dtype)()  # warm-up at a small size: imports, thread pools
    run = _call(way, h, w, target, dtype)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    return {"way": way, "seconds": seconds, "extra_peak_mib": peak / 1024}


def _matmul_rate(dtype: str) -> float:
    import numpy as np

    a = np.ones((2048, 2048), dtype=dtype)
    a @ a
    start = time.perf_counter()
    for _ in range(3):
        a @ a
    return 3 * 2 * 2048 ** 3 / (time.perf_counter() - start) / 1e9


def main(argv) -> None:
    dtype = argv[argv.index("--dtype") + 1] if "--dtype" in argv else "float32"
    timeout = float(argv.pop(argv.index("--timeout") + 1)) if "--timeout" in argv else None
    ways = argv.pop(argv.index("--ways") + 1).split(",") if "--ways" in argv else WAYS
    if set(ways) - set(WAYS):
        raise SystemExit(f"--ways: each of {', '.join(WAYS)}; got {','.join(ways)}")
    sizes = [int(a) for a in argv if a.isdigit()] or [1024, 256, 131072]
    tokens, hidden, vocab = sizes
    logits_mib = tokens * vocab * 4 / 2 ** 20
    print(f"linear cross-entropy, tokens {tokens}, hidden {hidden}, vocab {vocab}, {dtype}; the float32 logits "
          f"would be {logits_mib:.0f} MiB; matmul float32 {_matmul_rate('float32'):.0f} GFLOP/s, float64 "
          f"{_matmul_rate('float64'):.0f} GFLOP/s (NumPy, this machine)")
    print("| way | seconds (value + 3 gradients) | extra peak memory (MiB) |\n|---|---|---|")
    for way in ways:
        try:
            done = subprocess.run([sys.executable, __file__, "--child", way, str(tokens), str(hidden), str(vocab),
                                   dtype], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"| {way} | > {timeout:.0f} (stopped) | |", flush=True)
            continue
        if done.returncode:
            print(f"| {way} | failed: {done.stderr.strip().splitlines()[-1][:200]} | |")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| {way} | {r['seconds']:.2f} | {r['extra_peak_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        way, tokens, hidden, vocab, dtype = sys.argv[2:7]
        print(json.dumps(_child(way, int(tokens), int(hidden), int(vocab), dtype)))
    else:
        main(sys.argv[1:])
