"""Writing a run: results.json, RESULTS.md and bench.png."""
from __future__ import annotations

import json
import os

from ..reference.dtypes import FORMATS
from .run import gib

FILES = ("results.json", "RESULTS.md", "bench.png")


def tasks(results: dict) -> list[tuple[str, str]]:
    return [(op, kind) for op in results["settings"]["ops"] for kind in results["settings"]["kinds"]]


def title(op, kind) -> str:
    return f"{op} value" if kind == "value" else f"{op} vjp (forward + backward)"


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
        return "no GPU" if "GPU" in r["reason"] or "CUDA" in r["reason"] else "unavailable"
    if r["status"] == "skipped":
        return "skipped (memory)" if "memory" in r["reason"] else "skipped"
    return r["status"]


def _table(header, rows) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]


def _memory_cell(r, key="peak_extra_bytes") -> str:
    if r["status"] != "ok":
        return "-"
    value = r.get(key)
    if value is None:
        return "error" if key == "peak_extra_bytes" else "-"
    input_bytes = r["elements"] * FORMATS[r["dtype"]].dtype.itemsize
    return f"{_mib(value)} ({value / input_bytes:.2g}×)" if input_bytes >= 2**16 else _mib(value)


def _compile_cell(r) -> str:
    return _time(max(0.0, r["first_call_s"] - r["median_s"])) if r["status"] == "ok" else "-"


def _header(results, command) -> list[str]:
    env, status = results["environment"], results["implementations"]
    lines = ["# xentcheck bench", "",
             f"`{command}`, {results['started']}, {results['seconds']} s. Machine: {env.get('processor')}, "
             f"{env.get('cpu_threads_available')} cores, {gib(env.get('memory_total_bytes') or 0)} RAM; "
             f"Python {env['python']}, NumPy {env.get('numpy')}, torch {env.get('torch', '-')} "
             f"({env.get('torch_threads', '-')} threads, its default), JAX {env.get('jax', '-')}. Load average "
             f"(1 min) {env.get('load_average_start')} at the start, {env.get('load_average_end')} at the end: other "
             "processes on these cores slow multi-threaded code most (a thread that waits at a barrier for one "
             "that is descheduled).", "",
             "## Backends", "",
             "The backends `xentcheck check` verifies, each timed through its `prepare` (the inputs moved to the "
             "framework once; the computation its `evaluate` and `vjp` run).", ""]
    return lines + _table(["backend", "status", "how it runs"],
                          [[n, "available" if s["available"] else f"unavailable: {s['reason']}", s["note"] or "-"]
                           for n, s in status.items()])


def _limits(limits) -> list[str]:
    rows = [[k, f"{v / 1e9:.3g} GB/s (read + written)"] for k, v in limits["copy_bytes_per_s"].items()]
    rows += [[k, f"{v / 1e9:.3g} G exp/s"] for k, v in limits["exp_per_s"].items()]
    rows += [[k, f"{v / 1e9:.3g} GFLOP/s"] for k, v in limits.get("matmul_flops_per_s", {}).items()]
    return ["", "## This machine's limits (measured in this run)", ""] + _table(["limit", "value"], rows) + [
        "", f"A task's lower bound is max(bytes it must move / {limits['bandwidth'] / 1e9:.3g} GB/s, the best copy "
            "bandwidth; one exp per logit / the best exp rate for the dtype, float32's for bfloat16). It must move "
            "its array inputs (the cotangent too for a vjp), read, and its result, written. The bandwidth is "
            "DRAM's (arrays of 256 MiB): inputs that fit in the cache can beat it, and a fraction above 100% says so. "
            "The LM head (linear_cross_entropy; its sizes are tokens x vocabulary, hidden 2048) is also bound by its "
            "matmuls: 2 N H V flops for the value, three times that with the gradients, at the best measured "
            "matmul rate for the dtype (float32's or better for bfloat16)."]


def _times(results, index, sizes, names) -> list[str]:
    settings = results["settings"]
    lines = ["", "## Time per call", "",
             f"Each cell: the median time per call (its ratio to the fastest backend for that task, size and dtype; "
             f"the fraction of the lower bound reached). Warm-up excluded; samples of at least 1 ms until "
             f"{settings['budget_s']} s per measurement ({settings['min_samples']} to {settings['max_samples']} "
             f"samples). GPU rows are compared among themselves."]
    for op, kind in tasks(results):
        for dtype in settings["dtypes"]:
            lines += ["", f"### {title(op, kind)}, {dtype}", ""]
            lines += _table(["backend", *names], [[n] + [_cell(index[n, op, kind, dtype, r, c]) for r, c in sizes]
                                                  for n in results["implementations"]])
    return lines


def _memory(results, index, sizes, names) -> list[str]:
    status = results["implementations"]
    lines = ["", "## Peak memory", "",
             "Extra bytes beyond the inputs, outputs included, for one warm call, in a fresh process per backend: "
             "the rise of the RSS high-water mark (reset through /proc/self/clear_refs; glibc made to return freed "
             "memory at once, so a 4 KiB page counts only while it is in use). numpy also by tracemalloc (its "
             "array buffers exactly). GPU memory is not measured. Per cell: the bytes (and, for inputs of 64 KiB "
             "or more, the multiple of their size; below that, pages and allocator overheads dominate).", ""]
    rows = []
    for op, kind in tasks(results):
        for dtype in results["settings"]["dtypes"]:
            for n in status:
                cells = [index[n, op, kind, dtype, r, c] for r, c in sizes]
                if status[n]["gpu"] or all(x["peak_method"] is None for x in cells):
                    continue
                rows.append([title(op, kind), dtype, n] + [_memory_cell(x) for x in cells])
                if any(x["tracemalloc_bytes"] is not None for x in cells):
                    rows.append([title(op, kind), dtype, f"{n} (tracemalloc)"]
                                + [_memory_cell(x, "tracemalloc_bytes") for x in cells])
    return lines + (_table(["task", "dtype", "backend", *names], rows) if rows else ["(nothing measured)"])


def _compiles(results, index, sizes, names) -> list[str]:
    lines = ["", "## The first call of a new shape minus a warm call", "",
             "Preparing included: compilation for JAX (its persistent compilation cache is off for this run) and "
             "torch.compile (which starts afresh for each, torch._dynamo.reset(), though Inductor's on-disk caches "
             "make a second run's compiles faster than a first's).", ""]
    rows = [[n, title(op, kind), dtype] + [_compile_cell(index[n, op, kind, dtype, r, c]) for r, c in sizes]
            for n, s in results["implementations"].items() if s["available"]
            for op, kind in tasks(results) for dtype in results["settings"]["dtypes"]]
    return lines + _table(["backend", "task", "dtype", *names], rows) if rows else lines + ["(none available)"]


def render_markdown(results: dict, command="xentcheck bench") -> str:
    settings = results["settings"]
    sizes = [tuple(s) for s in settings["sizes"]]
    names = [f"{r}x{c}" for r, c in sizes]
    index = {(r["impl"], r["op"], r["kind"], r["dtype"], r["rows"], r["cols"]): r for r in results["results"]}
    lines = _header(results, command) + _limits(results["limits"]) + _times(results, index, sizes, names)
    lines += _memory(results, index, sizes, names) + _compiles(results, index, sizes, names)
    reasons = {}
    for r in results["results"]:
        if r["status"] in ("skipped", "error", "unsupported"):
            reasons.setdefault(f"{r['status']}: {r['reason']}", []).append(
                f"{r['impl']} {title(r['op'], r['kind'])} {r['dtype']} {r['rows']}x{r['cols']}")
    lines += ["", "## Skipped and failed", ""]
    lines += [f"- {reason}: {', '.join(cases)}" for reason, cases in reasons.items()] or ["(none)"]
    lines.append(f"\nMemory budget: {gib(settings['memory_budget_bytes'])} ({settings['memory_fraction']:.0%} of "
                 "the memory available at the start; a measurement whose estimated footprint exceeds it is skipped).")
    return "\n".join(lines) + "\n"


def plot(results: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes, panels = results["settings"]["dtypes"], tasks(results)
    fig, axes = plt.subplots(len(panels), len(dtypes), figsize=(4.5 * len(dtypes), 3.4 * len(panels)),
                             squeeze=False, sharex=True)
    for i, (op, kind) in enumerate(panels):
        for j, dtype in enumerate(dtypes):
            ax = axes[i][j]
            rows = [r for r in results["results"] if (r["op"], r["kind"], r["dtype"], r["status"])
                    == (op, kind, dtype, "ok")]
            for k, name in enumerate(results["implementations"]):  # one colour per backend in every panel
                ok = [r for r in rows if r["impl"] == name]
                if ok:
                    ax.loglog([r["elements"] for r in ok], [r["median_s"] for r in ok], "o-", color=f"C{k}",
                              label=name, ms=3)
            bound = sorted({(r["elements"], r["lower_bound_s"]) for r in rows})
            if bound:
                ax.loglog(*zip(*bound), "k--", lw=1, label="lower bound (limits)")
            ax.set_title(f"{title(op, kind)}, {dtype}", fontsize=9)
            ax.grid(True, which="major", alpha=0.3)
            if j == 0:
                ax.set_ylabel("seconds per call")
            if i == len(panels) - 1:
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
