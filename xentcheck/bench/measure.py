"""What a measurement is: a task's inputs, the timing of a call, this machine's limits, the peak memory
of a call in a fresh process."""
from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import time
import tracemalloc

import numpy as np

from ..backends import load_backend, prepared_call
from ..records import OPS

MIN_SAMPLES, MAX_SAMPLES, SAMPLE_S = 3, 100, 1e-3


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:200]


def task_inputs(op: str, kind: str, rows: int, cols: int, dtype: str, seed: int = 0):
    """(x, keyword arguments, cotangent or None) of a task: the record's example, and for a vjp a cotangent
    uniform in [0, 1) shaped like the op's output."""
    record, rng = OPS[op], np.random.default_rng(seed)
    x, kwargs = record.example((rows, cols), dtype, rng)
    if kind == "value":
        return x, kwargs, None
    return x, kwargs, rng.random(record.output_shape(x, kwargs)).astype(x.dtype)


def moved_bytes(x, kwargs, cotangent, output_shape) -> int:
    """What a task must read and write at least: its array inputs, and its result (x-shaped for a vjp)."""
    inputs = [x, cotangent, *kwargs.values()]
    read = sum(a.nbytes for a in inputs if isinstance(a, np.ndarray))
    return read + (x.nbytes if cotangent is not None else math.prod(output_shape) * x.dtype.itemsize)


# --------------------------------------------------------------------------------------------
# Timing and this machine's limits.

def time_call(call, budget):
    """(first call's seconds, per-call seconds of each sample, calls per sample)."""
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    once = first
    if first < budget:
        start = time.perf_counter()
        call()
        once = time.perf_counter() - start
    number = max(1, math.ceil(SAMPLE_S / max(once, 1e-9)))
    samples, deadline = [], time.perf_counter() + budget
    while len(samples) < MIN_SAMPLES or (len(samples) < MAX_SAMPLES and time.perf_counter() < deadline):
        start = time.perf_counter()
        for _ in range(number):
            call()
        samples.append((time.perf_counter() - start) / number)
    return first, samples, number


def _median_rate(call, amount, budget=0.3):
    return amount / float(np.median(time_call(call, budget)[1]))


def measure_limits(torch=None) -> dict:
    """Copy bandwidth in bytes/s (read + written) and exp throughput in elements/s."""
    src = np.ones(1 << 25)  # 256 MiB: far beyond any cache
    dst = np.zeros_like(src)
    copy = {"np.copyto (1 thread)": _median_rate(lambda: np.copyto(dst, src), 2 * src.nbytes)}
    exp = {}
    small = {d: np.linspace(-4, 0, 1 << 17, dtype=d) for d in ("float32", "float64")}  # 0.5-1 MiB: in cache
    for d, a in small.items():
        out = np.empty_like(a)
        exp[f"np.exp {d} (1 thread)"] = _median_rate(lambda: np.exp(a, out=out), a.size)
    if torch is not None:
        threads = torch.get_num_threads()
        ts, td = torch.from_numpy(src), torch.from_numpy(dst)
        copy[f"torch copy_ ({threads} threads)"] = _median_rate(lambda: td.copy_(ts), 2 * src.nbytes)
        for d, a in small.items():
            ta, out = torch.from_numpy(a), torch.empty(a.size, dtype=getattr(torch, d))
            for n in (1, threads):
                torch.set_num_threads(n)
                exp[f"torch.exp {d} ({n} thread{'s' * (n > 1)})"] = _median_rate(
                    lambda: torch.exp(ta, out=out), a.size)
        torch.set_num_threads(threads)
    best_exp = {d: max(v for k, v in exp.items() if d in k) for d in ("float32", "float64")}
    best_exp["bfloat16"] = best_exp["float32"]  # every implementation here takes bfloat16's exp in float32 or wider
    matmul = _matmul_rates(torch)
    best_matmul = {d: max(v for k, v in matmul.items() if d in k) for d in ("float32", "float64")}
    # bfloat16: the best of its own kernels and float32's (a bfloat16 product is exact in float32)
    best_matmul["bfloat16"] = max([best_matmul["float32"]] + [v for k, v in matmul.items() if "bfloat16" in k])
    return {"copy_bytes_per_s": copy, "exp_per_s": exp, "bandwidth": max(copy.values()), "exp_rate": best_exp,
            "matmul_flops_per_s": matmul, "matmul_rate": best_matmul}


def _matmul_rates(torch=None, n: int = 1024) -> dict:
    """Flops/s of an (n x n) @ (n x n) product (2 n^3 flops): NumPy's BLAS in float32 and float64, torch's in
    float32, float64 and bfloat16, each on every thread it uses by default."""
    rates = {}
    for d in ("float32", "float64"):
        a = np.ones((n, n), dtype=d)
        rates[f"np.matmul {d}"] = _median_rate(lambda: a @ a, 2 * n ** 3)
    if torch is not None:
        for d in ("float32", "float64", "bfloat16"):
            m = n if d != "bfloat16" else n // 4  # (bfloat16 products can be some 50x slower on a CPU)
            t = torch.ones((m, m), dtype=getattr(torch, d))
            rates[f"torch.matmul {d} ({torch.get_num_threads()} threads)"] = _median_rate(lambda: t @ t, 2 * m ** 3)
    return rates


def lower_bound(moved: int, exps: int, dtype: str, limits: dict, flops: int = 0) -> float:
    """The time no implementation can beat here: its bytes at the copy bandwidth, its exps at the exp rate,
    and (the LM head) its matmul flops at the measured matmul rate."""
    return max(moved / limits["bandwidth"], exps / limits["exp_rate"][dtype], flops / limits["matmul_rate"][dtype])


def available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------------------------
# Peak memory, in a fresh subprocess per backend.

def _proc_status(key) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {key} in /proc/self/status")


def _reset_peak_rss() -> int:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    return _proc_status("VmRSS")


def memory_worker() -> None:
    """Read {spec, traced, cases} on stdin; print one JSON line per case (op, kind, rows, cols, dtype):
    rss_bytes (and tracemalloc_bytes where traced) or error."""
    request = json.loads(sys.stdin.read())
    backend = load_backend(request["spec"])
    for op, kind, rows, cols, dtype in request["cases"]:
        try:
            x, kwargs, v = task_inputs(op, kind, rows, cols, dtype)
            call = prepared_call(backend, op, kind, x, v, kwargs)
            call()  # warm-up: compilation, thread pools, autograd's engine, lazy allocations
            gc.collect()
            base = _reset_peak_rss()
            if request["traced"]:
                tracemalloc.start()
            call()
            result = {"rss_bytes": max(0, _proc_status("VmHWM") - base)}
            if request["traced"]:
                result["tracemalloc_bytes"] = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
        except Exception as error:  # noqa: BLE001 - reported in the row
            result = {"error": one_line(error)}
        call = x = kwargs = v = None
        print(json.dumps(result), flush=True)


def measure_memory(spec: str, cases: list, tick, traced: bool = False) -> list[dict]:
    """One dict per case from a fresh process; tick() after each. The process dying ends the rest."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    command = [sys.executable, "-c", "from xentcheck.bench import memory_worker; memory_worker()"]
    out = []
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env) as process:
        process.stdin.write(json.dumps({"spec": spec, "traced": traced, "cases": cases}))
        process.stdin.close()
        for line in process.stdout:
            out.append(json.loads(line))
            tick()
        stderr = process.stderr.read()
    if len(out) < len(cases):
        last = stderr.strip().splitlines()[-1:] or [""]
        why = f"the memory process ended early (exit {process.returncode}"
        why += ", killed: out of memory?)" if process.returncode == -9 else f") {last[0][:150]}"
        for _ in cases[len(out):]:
            out.append({"error": why})
            tick()
    return out
