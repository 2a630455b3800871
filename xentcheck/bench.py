"""`xentcheck bench`: how fast softmax and cross-entropy run here, against each other and against this
machine's own measured limits.

Tasks, on (rows, cols) logits with the class axis last:
  softmax          softmax forward
  softmax_fwd_bwd  softmax forward, then its vjp for a random cotangent (both results kept)
  cross_entropy    cross-entropy value (integer targets, reduction "mean") and its gradient
Implementations: numpy-ref (xentcheck.reference: softmax, vjp("softmax", ...),
cross_entropy_value_and_grad), torch (eager), torch.compile (Inductor, static shapes), jax.jit; on a GPU
also torch-cuda and jax-gpu. Each runs with its default thread count, which is every core here.

Timing (time.perf_counter): the first call of a new shape is timed on its own (first_call_s: it
includes compilation for torch.compile and jax.jit) and excluded; then samples of `number` calls each
(a sample lasts at least a millisecond) are taken until `budget` seconds have gone, at least 3 and at
most 100; time per call = the median sample / number.

Limits, measured in the same run: copy bandwidth (np.copyto on one thread, torch's copy_ on all,
bytes read + written per second) and exp throughput (np.exp, torch.exp on one thread and on all, on
cache-resident arrays). A task's lower bound is max(the bytes it must move at least / the best copy
bandwidth, its exps / the best exp rate for the dtype); fraction_of_limit = lower bound / time.

Peak memory, extra bytes beyond the inputs (outputs included), in a fresh subprocess per
implementation, after a warm-up call: the rise of the process's RSS high-water mark over one call
(Linux /proc/self/clear_refs resets it; glibc is told to return freed memory at once), and for
numpy-ref also tracemalloc's peak (NumPy reports its array buffers to tracemalloc; other frameworks'
allocators do not). A (size, dtype) whose estimated footprint exceeds MEMORY_FRACTION of the
memory available at the start is skipped, and the output says so.

results.json keys: tool, version, started, seconds, environment, settings, limits (copy_bytes_per_s,
exp_per_s, bandwidth, exp_rate), implementations (name -> available, reason, note, gpu), results: one
per implementation, task, dtype and size, with every key of RESULT_KEYS (null where it does not apply):
status is ok, skipped (memory, or the default grid), error or unavailable (with its reason); times in
seconds; ratio_to_fastest among the CPU (or among the GPU) implementations; memory in bytes.
"""
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

from .environment import environment
from .reference.dtypes import bfloat16

TASKS = {"softmax": "softmax forward", "softmax_fwd_bwd": "softmax forward + backward",
         "cross_entropy": "cross-entropy value + gradient"}
TRAFFIC = {"softmax": 2, "softmax_fwd_bwd": 4, "cross_entropy": 2}  # logits-sized arrays read or written at least
DTYPES = ("float32", "float64", "bfloat16")
DEFAULT_SIZES = ((8, 20), (64, 1024), (512, 8192), (2048, 32768), (8192, 131072))
LARGEST_FLOAT32_ONLY = (8192, 131072)  # the default grid's largest size: float32 only (name it in --sizes for all)
QUICK_SIZES = ((8, 20), (64, 1024), (512, 8192))
DEFAULT_BUDGET, QUICK_BUDGET = 0.5, 0.1
MIN_SAMPLES, MAX_SAMPLES, SAMPLE_S = 3, 100, 1e-3
MEMORY_FRACTION = 0.7
CPU_IMPLS = ("numpy-ref", "torch", "torch.compile", "jax.jit")
GPU_IMPLS = ("torch-cuda", "jax-gpu")
FILES = ("results.json", "RESULTS.md", "bench.png")
RESULT_KEYS = ("impl", "task", "dtype", "rows", "cols", "elements", "status", "reason", "median_s", "samples_s", "number",
               "first_call_s", "ratio_to_fastest", "lower_bound_s", "fraction_of_limit", "estimated_bytes",
               "peak_extra_bytes", "peak_method", "tracemalloc_bytes")


class Unavailable(Exception):
    """An implementation that cannot run here (no GPU, no compiler): its rows say why."""


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:200]


# --------------------------------------------------------------------------------------------
# Implementations: load() imports the framework (raises Unavailable), prepare() returns a
# zero-argument call that runs the task to completion. EXTRA: the peak bytes beyond the inputs as
# multiples of the logits' bytes (float32, float64, bfloat16), measured with this module's memory
# method on (512, 8192); used, with a 10% margin, to skip what would not fit.

EXTRA = {"numpy-ref": {"softmax": (1.05, 1.05, 2), "softmax_fwd_bwd": (2.4, 2.2, 3), "cross_entropy": (1.05, 1.05, 2)},
         "torch": {"softmax": (1, 1, 1), "softmax_fwd_bwd": (2, 2, 2), "cross_entropy": (3, 3, 3)},
         "torch.compile": {"softmax": (1, 1, 1), "softmax_fwd_bwd": (2, 2, 2), "cross_entropy": (1, 1, 1)},
         "jax.jit": {"softmax": (1, 1, 3), "softmax_fwd_bwd": (2, 2, 4), "cross_entropy": (3, 3, 6)}}

class NumpyRef:
    name, gpu, compiles = "numpy-ref", False, False
    note = "xentcheck.reference; float64 inside; rows in blocks on every core"
    copies = 0

    def load(self):
        from .reference import cross_entropy_value_and_grad, softmax, vjp

        self.ops = softmax, vjp, cross_entropy_value_and_grad

    def prepare(self, task, x, v, target):
        softmax, vjp, value_and_grad = self.ops
        if task == "softmax":
            return lambda: softmax(x)
        if task == "softmax_fwd_bwd":
            return lambda: (softmax(x), vjp("softmax", x, v))
        return lambda: value_and_grad(x, target)



class Torch:
    def __init__(self, device="cpu", compiled=False):
        self.device, self.compiled, self.gpu = device, compiled, device != "cpu"
        self.compiles = compiled
        self.name = "torch.compile" if compiled else "torch" if device == "cpu" else f"torch-{device}"
        self.copies = int(self.gpu)

    def load(self):
        import torch

        if self.gpu and not torch.cuda.is_available():
            raise Unavailable("no GPU" + (" (and this torch is a CPU-only build)" if torch.version.cuda is None else ""))
        self.torch = torch
        threads = f"{torch.get_num_threads()} threads (torch's default)"
        self.note = ("Inductor, static shapes, compiled anew for every shape and dtype; " if self.compiled
                     else "eager; ") + (threads if not self.gpu else torch.cuda.get_device_name())
        if self.compiled:
            try:
                torch.compile(lambda a: torch.exp(a) + 1, dynamic=False)(torch.ones(4))
            except Exception as error:  # noqa: BLE001 - no C++ compiler, no Triton, ...: the rows say why
                raise Unavailable(_one_line(error)) from None

    def _tensor(self, array):
        if array.dtype == bfloat16:
            return self.torch.from_numpy(array.view(np.uint16)).view(self.torch.bfloat16).to(self.device)
        return self.torch.from_numpy(array).to(self.device)

    def prepare(self, task, x, v, target):
        torch = self.torch
        f = torch.nn.functional.cross_entropy if task == "cross_entropy" else (lambda a: torch.softmax(a, -1))
        if self.compiled:
            torch._dynamo.reset()
            f = torch.compile(f, dynamic=False)
        sync = torch.cuda.synchronize if self.gpu else (lambda: None)
        tx = self._tensor(x)
        if task == "softmax":
            def call():
                y = f(tx)
                sync()
                return y
            return call
        other = self._tensor(v) if task == "softmax_fwd_bwd" else torch.from_numpy(target).to(self.device)

        def call():
            a = tx.detach().requires_grad_()
            y = f(a, other) if task == "cross_entropy" else f(a)
            (g,) = torch.autograd.grad(y, a, None if task == "cross_entropy" else other)
            sync()
            return y, g
        return call



class Jax:
    copies = 1  # device_put: counted as a copy of each input
    compiles = True

    def __init__(self, platform="cpu"):
        self.platform, self.gpu = platform, platform != "cpu"
        self.name = "jax.jit" if platform == "cpu" else f"jax-{platform}"

    def load(self):
        import jax

        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_enable_compilation_cache", False)  # a new shape compiles; nothing read from disk
        try:
            self.device = jax.devices(self.platform)[0]
        except RuntimeError:
            platforms = ", ".join(sorted({d.platform for d in jax.devices()}))
            raise Unavailable(f"no GPU (JAX's platforms here: {platforms})" if self.gpu
                              else f"no {self.platform} device") from None
        self.jax, jnp = jax, jax.numpy
        self.note = f"XLA on {self.device.device_kind}, x64 enabled; one jitted function per task, recompiled per shape"

        def softmax(x):
            return jax.nn.softmax(x, axis=-1)

        def softmax_fwd_bwd(x, v):
            y, pullback = jax.vjp(softmax, x)
            return y, pullback(v)[0]

        def cross_entropy(x, t):
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(x, axis=-1), t[:, None], axis=-1))

        self.fns = {"softmax": jax.jit(softmax), "softmax_fwd_bwd": jax.jit(softmax_fwd_bwd),
                    "cross_entropy": jax.jit(jax.value_and_grad(cross_entropy))}

    def prepare(self, task, x, v, target):
        jax, f = self.jax, self.fns[task]
        args = [x] + ([v] if task == "softmax_fwd_bwd" else [target] if task == "cross_entropy" else [])
        args = [jax.device_put(a, self.device) for a in args]
        return lambda: jax.block_until_ready(f(*args))



def implementations():
    return [NumpyRef(), Torch(), Torch(compiled=True), Jax(), Torch("cuda"), Jax("gpu")]


def make_inputs(rows, cols, dtype, task, seed=0):
    """(logits uniform in [-4, 4), a cotangent like them for softmax_fwd_bwd or None, integer targets)."""
    rng = np.random.default_rng(seed)

    def uniform():
        a = rng.random((rows, cols), dtype=np.float64 if dtype == "float64" else np.float32)
        a *= 8
        a -= 4
        return a.astype(bfloat16) if dtype == "bfloat16" else a

    return uniform(), uniform() if task == "softmax_fwd_bwd" else None, rng.integers(0, cols, rows)


def estimated_bytes(impl, task, rows, cols, dtype) -> int:
    """The logits (and the cotangent), the implementation's copies of them, and 1.1x its EXTRA."""
    arrays = 2 if task == "softmax_fwd_bwd" else 1
    extra = EXTRA.get(impl.name, EXTRA["torch"])[task][DTYPES.index(dtype)]
    return int(_itemsize(dtype) * rows * cols * (arrays * (1 + impl.copies) + 1.1 * extra))


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """"8x20,64x1024" -> [(8, 20), (64, 1024)]; ValueError with a one-line message otherwise."""
    sizes = []
    for item in text.replace(" ", "").split(","):
        parts = item.lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError(f"expected ROWSxCOLS with positive integers, separated by commas (e.g. 8x20,64x1024); "
                             f"got {item!r}")
        sizes.append((int(parts[0]), int(parts[1])))
    return sorted(set(sizes), key=lambda s: (s[0] * s[1], s))


def _itemsize(dtype) -> int:
    return np.dtype(bfloat16 if dtype == "bfloat16" else dtype).itemsize


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
    return {"copy_bytes_per_s": copy, "exp_per_s": exp, "bandwidth": max(copy.values()), "exp_rate": best_exp}


def lower_bound(task, rows, cols, dtype, limits) -> float:
    n = rows * cols
    return max(TRAFFIC[task] * n * _itemsize(dtype) / limits["bandwidth"], n / limits["exp_rate"][dtype])


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
# Peak memory, in a fresh subprocess per implementation.

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
    """Read {impl, cases} on stdin; print one JSON line per case: rss_bytes (and tracemalloc_bytes) or error."""
    spec = json.loads(sys.stdin.read())
    [impl] = [i for i in implementations() if i.name == spec["impl"]]
    impl.load()
    key, inputs, warmed = None, None, set()
    for task, rows, cols, dtype in spec["cases"]:
        try:
            if key != (rows, cols, dtype, task == "softmax_fwd_bwd"):
                key, inputs = None, None
                gc.collect()
                key, inputs = (rows, cols, dtype, task == "softmax_fwd_bwd"), make_inputs(rows, cols, dtype, task)
            call = impl.prepare(task, *inputs)
            if impl.compiles or (task, dtype) not in warmed:
                call()  # warm-up: compilation, thread pools, autograd's engine, lazy allocations
                warmed.add((task, dtype))
            gc.collect()
            traced = impl.name == "numpy-ref"
            base = _reset_peak_rss()
            if traced:
                tracemalloc.start()
            call()
            result = {"rss_bytes": max(0, _proc_status("VmHWM") - base)}
            if traced:
                result["tracemalloc_bytes"] = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
        except Exception as error:  # noqa: BLE001 - reported in the row
            result = {"error": _one_line(error)}
        call = None
        print(json.dumps(result), flush=True)


def measure_memory(name, cases, tick) -> list[dict]:
    """One dict per case from a fresh process; tick() after each. The process dying ends the rest."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    command = [sys.executable, "-c", "from xentcheck.bench import memory_worker; memory_worker()"]
    out = []
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env) as process:
        process.stdin.write(json.dumps({"impl": name, "cases": cases}))
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


# --------------------------------------------------------------------------------------------
# The run.

def run_bench(sizes=None, dtypes=None, budget=None, quick=False, progress=None) -> dict:
    started, start = time.strftime("%Y-%m-%d %H:%M:%S"), time.perf_counter()
    default_grid = not sizes and not quick
    sizes = [tuple(s) for s in sizes or (QUICK_SIZES if quick else DEFAULT_SIZES)]
    dtypes = list(dtypes or (["float32"] if quick else DTYPES))
    budget = budget or (QUICK_BUDGET if quick else DEFAULT_BUDGET)
    impls, status, load_start = implementations(), {}, _load_average()
    for impl in impls:
        try:
            impl.load()
            status[impl.name] = {"available": True, "reason": None, "note": impl.note, "gpu": impl.gpu}
        except Exception as error:  # noqa: BLE001 - Unavailable, or an import that fails
            reason = str(error) if isinstance(error, Unavailable) else _one_line(error)
            status[impl.name] = {"available": False, "reason": reason, "note": "", "gpu": impl.gpu}
    torch = sys.modules.get("torch")
    limits = measure_limits(torch if status["torch"]["available"] else None)
    memory_budget = int(MEMORY_FRACTION * available_memory())

    results, runnable = [], []
    for rows, cols in sizes:
        for dtype in dtypes:
            for task in ("softmax", "cross_entropy", "softmax_fwd_bwd"):  # the logits made twice, not three times
                for impl in impls:
                    r = dict.fromkeys(RESULT_KEYS)
                    r.update(impl=impl.name, task=task, dtype=dtype, rows=rows, cols=cols, elements=rows * cols,
                             status="ok")
                    if not status[impl.name]["available"]:
                        r.update(status="unavailable", reason=status[impl.name]["reason"])
                    elif default_grid and (rows, cols) == LARGEST_FLOAT32_ONLY and dtype != "float32":
                        r.update(status="skipped", reason=f"the default grid runs {rows}x{cols} in float32 only "
                                                          f"(--sizes {rows}x{cols} runs every dtype)")
                    else:
                        r["estimated_bytes"] = estimated_bytes(impl, task, rows, cols, dtype)
                        if r["estimated_bytes"] > memory_budget:
                            r.update(status="skipped", reason=f"needs about {_gib(r['estimated_bytes'])}, over the "
                                                              f"memory budget of {_gib(memory_budget)}")
                        else:
                            runnable.append(r)
                    results.append(r)
    memory_cases = [r for r in runnable if not status[r["impl"]]["gpu"]]
    total, done = len(runnable) + len(memory_cases), 0

    def tick(label):
        nonlocal done
        done += 1
        if progress:
            progress(done, total, label)

    by_impl = {impl.name: impl for impl in impls}
    inputs_key, inputs = None, None
    for r in runnable:
        key = (r["rows"], r["cols"], r["dtype"], r["task"] == "softmax_fwd_bwd")
        if key != inputs_key:
            inputs_key, inputs = None, None
            gc.collect()
            inputs_key, inputs = key, make_inputs(r["rows"], r["cols"], r["dtype"], r["task"])
        try:
            call = by_impl[r["impl"]].prepare(r["task"], *inputs)
            first, samples, number = time_call(call, budget)
            r.update(first_call_s=first, samples_s=samples, number=number, median_s=float(np.median(samples)))
        except Exception as error:  # noqa: BLE001 - one implementation failing is a row, not the end of the run
            r.update(status="error", reason=_one_line(error))
        call = None
        tick(f"time {r['impl']} {r['task']} {r['dtype']} {r['rows']}x{r['cols']}")
    inputs = None
    gc.collect()

    for name in CPU_IMPLS:
        cases = [r for r in memory_cases if r["impl"] == name]
        if not cases:
            continue
        measured = measure_memory(name, [[r["task"], r["rows"], r["cols"], r["dtype"]] for r in cases],
                                  lambda: tick(f"memory {name}"))
        for r, m in zip(cases, measured):
            r["peak_extra_bytes"] = m.get("rss_bytes")
            r["peak_method"] = "RSS high-water rise, fresh process" if "rss_bytes" in m else m["error"]
            r["tracemalloc_bytes"] = m.get("tracemalloc_bytes")

    for r in results:
        group = [o for o in results if o["status"] == "ok" and status[o["impl"]]["gpu"] == status[r["impl"]]["gpu"]
                 and (o["task"], o["dtype"], o["rows"], o["cols"]) == (r["task"], r["dtype"], r["rows"], r["cols"])]
        if r["status"] == "ok":
            r["ratio_to_fastest"] = r["median_s"] / min(o["median_s"] for o in group)
            r["lower_bound_s"] = lower_bound(r["task"], r["rows"], r["cols"], r["dtype"], limits)
            r["fraction_of_limit"] = None if status[r["impl"]]["gpu"] else r["lower_bound_s"] / r["median_s"]
    env = environment()
    env.update(load_average_start=load_start, load_average_end=_load_average(),memory_total_bytes=_meminfo_total(), memory_available_bytes=available_memory(),
               cpu_threads_available=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    if torch is not None:
        env["torch_threads"] = torch.get_num_threads()
    if "jax" in sys.modules and status["jax.jit"]["available"]:
        env["jax_devices"] = [str(d) for d in sys.modules["jax"].devices()]
    return {"tool": "xentcheck bench", "version": _version(), "started": started,
            "seconds": round(time.perf_counter() - start, 1), "environment": env,
            "settings": {"sizes": [list(s) for s in sizes], "dtypes": dtypes, "budget_s": budget, "quick": quick,
                         "memory_budget_bytes": memory_budget, "memory_fraction": MEMORY_FRACTION,
                         "min_samples": MIN_SAMPLES, "max_samples": MAX_SAMPLES},
            "limits": limits, "implementations": status, "results": results}


def _load_average():
    """The 1-minute load average: above 0 before the run starts, other processes share the cores."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _meminfo_total() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def _version() -> str:
    from . import __version__

    return __version__


# --------------------------------------------------------------------------------------------
# Writing: results.json, RESULTS.md, bench.png.

def _gib(n) -> str:
    return f"{n / 2**30:.1f} GiB"


def _mib(n) -> str:
    return f"{n / 2**20:.3g} MiB" if n >= 2**20 else f"{n / 2**10:.3g} KiB"


def _time(s) -> str:
    return f"{s * 1e6:.3g} µs" if s < 1e-3 else f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"


def _percent(f) -> str:
    return f"{f:.0%}" if f >= 0.1 else f"{f * 100:.2g}%"


def _cell(r) -> str:
    if r["status"] == "ok":
        fraction = "" if r.get("fraction_of_limit") is None else f", {_percent(r['fraction_of_limit'])}"
        ratio = r["ratio_to_fastest"]
        return f"{_time(r['median_s'])} ({ratio:.2f}×{fraction})" if ratio < 10 else \
            f"{_time(r['median_s'])} ({ratio:.3g}×{fraction})"
    if r["status"] == "unavailable":
        return "no GPU" if r["reason"].startswith("no GPU") else "unavailable"
    return ("skipped (memory)" if "memory" in r["reason"] else "skipped") if r["status"] == "skipped" else "error"


def _table(header, rows) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]


def render_markdown(results: dict, command="xentcheck bench") -> str:
    env, settings, limits, status = (results[k] for k in ("environment", "settings", "limits", "implementations"))
    sizes = [tuple(s) for s in settings["sizes"]]
    names = [f"{r}x{c}" for r, c in sizes]
    index = {(r["impl"], r["task"], r["dtype"], r["rows"], r["cols"]): r for r in results["results"]}
    lines = ["# xentcheck bench", "",
             f"`{command}`, {results['started']}, {results['seconds']} s. Machine: {env.get('processor')}, "
             f"{env.get('cpu_threads_available')} cores, {_gib(env.get('memory_total_bytes') or 0)} RAM; "
             f"Python {env['python']}, NumPy {env.get('numpy')}, torch {env.get('torch', '-')} "
             f"({env.get('torch_threads', '-')} threads, its default), JAX {env.get('jax', '-')}. Load average "
             f"(1 min) {env.get('load_average_start')} at the start, {env.get('load_average_end')} at the end: other "
             "processes on these cores slow multi-threaded code most (a thread that waits at a barrier for one "
             "that is descheduled).", "",
             "## Implementations", ""]
    lines += _table(["implementation", "status", "how it runs"],
                    [[n, "available" if s["available"] else f"unavailable: {s['reason']}", s["note"] or "-"]
                     for n, s in status.items()])
    lines += ["", "## This machine's limits (measured in this run)", ""]
    rows = [[k, f"{v / 1e9:.3g} GB/s (read + written)"] for k, v in limits["copy_bytes_per_s"].items()]
    rows += [[k, f"{v / 1e9:.3g} G exp/s"] for k, v in limits["exp_per_s"].items()]
    lines += _table(["limit", "value"], rows)
    lines += ["", f"A task's lower bound is max(bytes it must move / {limits['bandwidth'] / 1e9:.3g} GB/s, the best "
              "copy bandwidth; exps it must take / the best exp rate for the dtype, float32's for bfloat16). It "
              "must move: softmax, the logits read and the probabilities written; forward + backward, also the "
              "cotangent read and the gradient written; cross-entropy, the logits read and the gradient written. "
              "The bandwidth is DRAM's (arrays of 256 MiB): logits that fit in the cache can beat it, and a "
              "fraction above 100% says so.",
              "", "## Time per call", "",
              f"Each cell: the median time per call (its ratio to the fastest implementation for that task, size "
              f"and dtype; the fraction of the lower bound reached). Warm-up excluded; samples of at least 1 ms "
              f"until {settings['budget_s']} s per measurement ({settings['min_samples']} to "
              f"{settings['max_samples']} samples). GPU rows are compared among themselves."]
    for task, title in TASKS.items():
        for dtype in settings["dtypes"]:
            lines += ["", f"### {title}, {dtype}", ""]
            lines += _table(["implementation", *names],
                            [[n] + [_cell(index[n, task, dtype, r, c]) for r, c in sizes] for n in status])
    lines += ["", "## Peak memory", "",
              "Extra bytes beyond the inputs, outputs included, for one warm call, in a fresh process per "
              "implementation: the rise of the RSS high-water mark (reset through /proc/self/clear_refs; glibc "
              "made to return freed memory at once, so a 4 KiB page counts only while it is in use). numpy-ref also by "
              "tracemalloc (its array buffers exactly). GPU memory is not measured. Per cell: the bytes (and, for "
              "logits of 64 KiB or more, the multiple of their size; below that, pages and allocator overheads "
              "dominate).", ""]
    rows = []
    for task in TASKS:
        for dtype in settings["dtypes"]:
            for n in CPU_IMPLS:
                cells = [index[n, task, dtype, r, c] for r, c in sizes]
                if all(x["status"] == "unavailable" for x in cells):
                    continue
                rows.append([task, dtype, n] + [_memory_cell(x) for x in cells])
                if n == "numpy-ref":
                    rows.append([task, dtype, "numpy-ref (tracemalloc)"] + [_memory_cell(x, "tracemalloc_bytes")
                                                                            for x in cells])
    lines += _table(["task", "dtype", "implementation", *names], rows)
    lines += ["", "## Compilation: the first call of a new shape minus a warm call", "",
              "JAX compiles each new shape (its persistent compilation cache is off for this run); torch.compile "
              "starts afresh for each (torch._dynamo.reset()), but Inductor's on-disk caches make a second run's "
              "compiles faster than a first's.", ""]
    rows = [[n, task, dtype] + [_compile_cell(index[n, task, dtype, r, c]) for r, c in sizes]
            for n in ("jax.jit", "torch.compile") if status[n]["available"]
            for task in TASKS for dtype in settings["dtypes"]]
    lines += _table(["implementation", "task", "dtype", *names], rows) if rows else ["(neither is available here)"]
    skipped = [r for r in results["results"] if r["status"] in ("skipped", "error")]
    lines += ["", "## Skipped and failed", ""]
    reasons = {}
    for r in skipped:
        reasons.setdefault(f"{r['status']}: {r['reason']}", []).append(f"{r['impl']} {r['task']} {r['dtype']} "
                                                                      f"{r['rows']}x{r['cols']}")
    lines += [f"- {reason}: {', '.join(cases)}" for reason, cases in reasons.items()] or ["(none)"]
    lines.append(f"\nMemory budget: {_gib(settings['memory_budget_bytes'])} ({settings['memory_fraction']:.0%} of "
                 "the memory available at the start; a measurement whose estimated footprint exceeds it is skipped).")
    return "\n".join(lines) + "\n"


def _memory_cell(r, key="peak_extra_bytes") -> str:
    if r["status"] != "ok":
        return "-"
    value = r.get(key)
    if value is None:
        return "error" if key == "peak_extra_bytes" else "-"
    input_bytes = r["elements"] * _itemsize(r["dtype"])
    return f"{_mib(value)} ({value / input_bytes:.2g}×)" if input_bytes >= 2**16 else _mib(value)


def _compile_cell(r) -> str:
    return _time(max(0.0, r["first_call_s"] - r["median_s"])) if r["status"] == "ok" else "-"


def plot(results: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes, limits = results["settings"]["dtypes"], results["limits"]
    fig, axes = plt.subplots(len(TASKS), len(dtypes), figsize=(4.5 * len(dtypes), 3.4 * len(TASKS)),
                             squeeze=False, sharex=True)
    sizes = [tuple(s) for s in results["settings"]["sizes"]]
    for i, (task, title) in enumerate(TASKS.items()):
        for j, dtype in enumerate(dtypes):
            ax = axes[i][j]
            for k, name in enumerate(results["implementations"]):  # one colour per implementation in every panel
                ok = [r for r in results["results"] if (r["impl"], r["task"], r["dtype"], r["status"])
                      == (name, task, dtype, "ok")]
                if ok:
                    ax.loglog([r["elements"] for r in ok], [r["median_s"] for r in ok], "o-", color=f"C{k}",
                              label=name, ms=3)
            ax.loglog([r * c for r, c in sizes], [lower_bound(task, r, c, dtype, limits) for r, c in sizes],
                      "k--", lw=1, label="lower bound (limits)")
            ax.set_title(f"{title}, {dtype}", fontsize=9)
            ax.grid(True, which="major", alpha=0.3)
            if j == 0:
                ax.set_ylabel("seconds per call")
            if i == len(TASKS) - 1:
                ax.set_xlabel("elements (rows x cols)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_all(results: dict, out, command="xentcheck bench") -> list[str]:
    os.makedirs(out, exist_ok=True)
    paths = [os.path.join(out, name) for name in FILES]
    with open(paths[0], "w") as f:
        json.dump(results, f, indent=1)
    with open(paths[1], "w") as f:
        f.write(render_markdown(results, command))
    plot(results, paths[2])
    return paths
