"""The run: which (backend, task, dtype, size) to time, timing them, their memory, the ratios."""
from __future__ import annotations

import gc
import inspect
import math
import os
import sys
import time

import numpy as np

from ..backends import GPU_BUILTINS, TIMED, BackendLoadError, load_backend, prepared_call
from ..environment import environment
from ..records import OPS
from ..reference.dtypes import FORMATS
from .measure import (available_memory, lower_bound, measure_limits, measure_memory, moved_bytes, one_line,
                      task_inputs, time_call)

DTYPES = ("float32", "float64", "bfloat16")
DEFAULT_OPS = ("softmax", "cross_entropy")
KINDS = ("value", "vjp")
DEFAULT_SIZES = ((8, 20), (64, 1024), (512, 8192), (2048, 32768), (8192, 131072))
LARGEST_FLOAT32_ONLY = (8192, 131072)  # the default grid's largest size: float32 only (name it in --sizes for all)
QUICK_SIZES = ((8, 20), (64, 1024), (512, 8192))
DEFAULT_BUDGET, QUICK_BUDGET = 0.5, 0.1
MEMORY_FRACTION = 0.7
RESULT_KEYS = ("impl", "op", "kind", "dtype", "rows", "cols", "elements", "status", "reason", "median_s",
               "samples_s", "number", "first_call_s", "ratio_to_fastest", "lower_bound_s", "fraction_of_limit",
               "estimated_bytes", "peak_extra_bytes", "peak_method", "tracemalloc_bytes")


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


def estimated_bytes(op: str, kind: str, rows: int, cols: int, dtype: str) -> int:
    """The inputs twice (a framework's copy) and 1.5 times the result, twice for a vjp (the forward's saved
    output): a rough model, checked by the peak memory each run measures."""
    if "estimated_bytes" in OPS[op].options:  # a family whose sizes mean something else (the LM head)
        return OPS[op].options["estimated_bytes"](kind, rows, cols, dtype)
    itemsize = FORMATS[dtype].dtype.itemsize
    x = np.broadcast_to(np.empty((), FORMATS[dtype].dtype), (rows, cols))
    out = int(np.prod(OPS[op].output_shape(x, OPS[op].defaults()))) * itemsize
    if kind == "value":
        return int(2 * x.nbytes + 1.5 * out)
    return int(2 * (x.nbytes + out) + 3 * x.nbytes)


def _load(specs):
    backends, status = {}, {}
    for spec in specs:
        try:
            backend = backends[spec] = load_backend(spec)
            note = getattr(backend, "note", "") or (inspect.getdoc(type(backend)) or "").split("\n")[0]
            status[spec] = {"available": True, "reason": None, "note": note, "gpu": spec in GPU_BUILTINS}
        except BackendLoadError as error:
            status[spec] = {"available": False, "reason": str(error), "note": "", "gpu": spec in GPU_BUILTINS}
    return backends, status


def _plan(sizes, dtypes, ops, backends, status, default_grid, memory_budget) -> list[dict]:
    results = []
    for rows, cols in sizes:
        for dtype in dtypes:
            for op in ops:
                for kind in KINDS:
                    for spec in status:
                        r = dict.fromkeys(RESULT_KEYS)
                        r.update(impl=spec, op=op, kind=kind, dtype=dtype, rows=rows, cols=cols,
                                 elements=rows * cols, status="ok")
                        if not status[spec]["available"]:
                            r.update(status="unavailable", reason=status[spec]["reason"])
                        elif not OPS[op].provided_by(backends[spec]):
                            r.update(status="unsupported", reason=f"{spec} does not provide {op}")
                        elif default_grid and (rows, cols) == LARGEST_FLOAT32_ONLY and dtype != "float32":
                            r.update(status="skipped", reason=f"the default grid runs {rows}x{cols} in float32 "
                                                              f"only (--sizes {rows}x{cols} runs every dtype)")
                        else:
                            r["estimated_bytes"] = estimated_bytes(op, kind, rows, cols, dtype)
                            if r["estimated_bytes"] > memory_budget:
                                r.update(status="skipped", reason=f"needs about {gib(r['estimated_bytes'])}, over "
                                                                  f"the memory budget of {gib(memory_budget)}")
                        results.append(r)
    return results


def _time_all(runnable, backends, budget, limits, tick) -> None:
    key, inputs = None, None
    for r in runnable:
        if key != (r["op"], r["kind"], r["rows"], r["cols"], r["dtype"]):
            key, inputs = None, None
            gc.collect()
            key = (r["op"], r["kind"], r["rows"], r["cols"], r["dtype"])
            inputs = task_inputs(*key)
        x, kwargs, v = inputs
        try:
            start = time.perf_counter()
            call = prepared_call(backends[r["impl"]], r["op"], r["kind"], x, v, kwargs)
            prepared = time.perf_counter() - start
            first, samples, number = time_call(call, budget)
            moved = moved_bytes(x, kwargs, v, OPS[r["op"]].output_shape(x, kwargs))
            flops = OPS[r["op"]].options["flops"](x, kwargs, r["kind"]) if "flops" in OPS[r["op"]].options else 0
            exps = math.prod(OPS[r["op"]].output_shape(x, kwargs)) * r["cols"] if flops else x.size  # one per logit
            r.update(first_call_s=prepared + first, samples_s=samples, number=number, median_s=float(np.median(samples)),
                     lower_bound_s=lower_bound(moved, exps, r["dtype"], limits, flops))
        except NotImplementedError as error:
            r.update(status="unsupported", reason=one_line(error))
        except Exception as error:  # noqa: BLE001 - one backend failing is a row, not the end of the run
            r.update(status="error", reason=one_line(error))
        call = None
        tick(f"time {r['impl']} {r['op']} {r['kind']} {r['dtype']} {r['rows']}x{r['cols']}")


def run_bench(sizes=None, dtypes=None, budget=None, quick=False, progress=None, ops=None, specs=None) -> dict:
    """Time `ops` (default DEFAULT_OPS) on the backends `specs` (default TIMED) over the grid."""
    started, start = time.strftime("%Y-%m-%d %H:%M:%S"), time.perf_counter()
    os.environ["XENTCHECK_JAX_CACHE"] = "0"  # a new shape compiles; nothing is read from disk
    default_grid = not sizes and not quick
    sizes = [tuple(s) for s in sizes or (QUICK_SIZES if quick else DEFAULT_SIZES)]
    dtypes = list(dtypes or (["float32"] if quick else DTYPES))
    ops = list(ops or DEFAULT_OPS)
    budget = budget or (QUICK_BUDGET if quick else DEFAULT_BUDGET)
    load_start = _load_average()
    backends, status = _load(list(specs or TIMED))
    torch = sys.modules.get("torch")
    limits = measure_limits(torch)
    memory_budget = int(MEMORY_FRACTION * available_memory())
    results = _plan(sizes, dtypes, ops, backends, status, default_grid, memory_budget)
    runnable = [r for r in results if r["status"] == "ok"]
    memory_specs = [s for s in status if status[s]["available"] and not status[s]["gpu"]]
    total, done = len(runnable) + sum(r["impl"] in memory_specs for r in runnable), 0

    def tick(label):
        nonlocal done
        done += 1
        if progress:
            progress(done, total, label)

    _time_all(runnable, backends, budget, limits, tick)
    gc.collect()
    memory_cases = [r for r in runnable if r["impl"] in memory_specs and r["status"] == "ok"]
    total = done + len(memory_cases)
    for spec in memory_specs:
        cases = [r for r in memory_cases if r["impl"] == spec]
        if not cases:
            continue
        measured = measure_memory(spec, [[r["op"], r["kind"], r["rows"], r["cols"], r["dtype"]] for r in cases],
                                  lambda: tick(f"memory {spec}"), traced=spec == "numpy")
        for r, m in zip(cases, measured):
            r["peak_extra_bytes"] = m.get("rss_bytes")
            r["peak_method"] = "RSS high-water rise, fresh process" if "rss_bytes" in m else m["error"]
            r["tracemalloc_bytes"] = m.get("tracemalloc_bytes")
    _ratios(results, status)
    return {"tool": "xentcheck bench", "version": _version(), "started": started,
            "seconds": round(time.perf_counter() - start, 1), "environment": _environment(status, load_start),
            "settings": {"sizes": [list(s) for s in sizes], "dtypes": dtypes, "ops": ops, "kinds": list(KINDS),
                         "budget_s": budget, "quick": quick, "memory_budget_bytes": memory_budget,
                         "memory_fraction": MEMORY_FRACTION, "min_samples": 3, "max_samples": 100},
            "limits": limits, "implementations": status, "results": results}


def _ratios(results, status) -> None:
    """ratio_to_fastest among the backends of the same task, dtype and size on the same kind of device."""
    def group_of(r):
        return r["op"], r["kind"], r["dtype"], r["rows"], r["cols"], status[r["impl"]]["gpu"]

    fastest = {}
    for r in results:
        if r["status"] == "ok":
            fastest[group_of(r)] = min(fastest.get(group_of(r), np.inf), r["median_s"])
    for r in results:
        if r["status"] == "ok":
            r["ratio_to_fastest"] = r["median_s"] / fastest[group_of(r)]
            r["fraction_of_limit"] = None if status[r["impl"]]["gpu"] else r["lower_bound_s"] / r["median_s"]


def _environment(status, load_start) -> dict:
    env = environment()
    env.update(load_average_start=load_start, load_average_end=_load_average(), memory_total_bytes=_meminfo_total(),
               memory_available_bytes=available_memory(),
               cpu_threads_available=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    if "torch" in sys.modules:
        env["torch_threads"] = sys.modules["torch"].get_num_threads()
    if "jax" in sys.modules:
        env["jax_devices"] = [str(d) for d in sys.modules["jax"].devices()]
    return env


def _load_average():
    """The 1-minute load average: above 0 before the run starts, other processes share the cores."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _meminfo_total() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def _version() -> str:
    from .. import __version__

    return __version__


def gib(n) -> str:
    return f"{n / 2**30:.1f} GiB"
