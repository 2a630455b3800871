"""`xentcheck compare`: every backend against the exact oracle, in ULPs, and every edge side by side.

1. Accuracy: each op and its vjp on the fixed suite (suite.py), in each dtype, against the oracle
   rounded once to that dtype: max / median / p99 ULP error and max relative error per backend x op x
   kind x dtype, stratified by what drives the error (the gap x_max - x_i, the row length, the scale),
   and a cross-backend disagreement matrix in which the oracle says who is wrong.
2. Semantics: what each backend returns or raises on the edges (edges_table below), beside the
   reference, differences flagged.

Backends run in worker processes: a backend that raises, crashes, hangs past the per-call timeout, or
returns the wrong shape or dtype is recorded as such and the run goes on. The oracle runs in a pool
over every core and caches its results on disk (~/.cache/xentcheck/oracle), keyed by the input.
"""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from types import SimpleNamespace

from . import verdict
from .backends.contract import compute_formats, declined_option, flushes_subnormals
from .environment import environment
from .records import OPS, flattened
from .reference import DTYPE_NAMES, FORMATS, round_to_dtype
from .reference import exact as oracle

KINDS = ("value", "vjp", "jvp")  # jvp: forward mode, for the ops whose record derives it
DEFAULT_TIMEOUT = 120.0


# --------------------------------------------------------------------------------------------
# Backend workers: one process per backend, one request at a time.

def _loaded(spec):
    """(backend or None, its "ready" message, or ("unavailable", why)): the backend of `spec` loaded here."""
    try:
        from .backends import load_backend

        from .semantics import declared

        backend = load_backend(spec)
        formats = getattr(backend, "compute_formats", None) or {}
        flushes = [d for d in DTYPE_NAMES if flushes_subnormals(backend, d)]
        return backend, ("ready", getattr(backend, "name", spec), flushes, getattr(backend, "framework", None),
                         dict(formats) if isinstance(formats, dict) else formats, declared(backend))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, whatever it is
        return None, ("unavailable", f"{type(error).__name__}: {error}".splitlines()[0])


def _answer(backend, method, args, kwargs):
    """("ok", array) | ("error", type, message) | ("missing",): one call of a backend, whatever it does."""
    if not callable(getattr(backend, method, None)):  # an optional member (jvp, an optional op) it lacks
        return ("missing",)
    try:
        out = getattr(backend, method)(*args, **kwargs)
        return ("ok", np.asarray(flattened(OPS[args[0]].gradients_of(out, kwargs) if method == "vjp" else out)))
    except BaseException as error:  # noqa: BLE001
        option = declined_option(error, kwargs) if isinstance(error, TypeError) else None
        if option is not None:  # an option it does not take: declined
            return ("error", "NotImplementedError", f"it takes no {option}= option")
        return ("error", type(error).__name__, str(error).splitlines()[0][:300] if str(error) else "")


def _worker(spec, conn):
    import warnings

    warnings.filterwarnings("ignore")  # a backend's RuntimeWarnings are not the report's business
    backend, message = _loaded(spec)
    conn.send(message)
    if backend is None:
        return
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        conn.send(_answer(backend, *request))


class _Described:
    """What a backend's worker said about it once loaded: name, subnormal flushing, framework, departures,
    compute formats (the override applied), or why it is unavailable."""

    def __init__(self, spec: str, compute: dict | None = None):
        self.spec, self.override = spec, compute
        self.name, self.flushes, self.unavailable, self.framework = spec, [], None, None
        self.departures = frozenset()  # the names of the departures it declares (xentcheck.semantics.declared)
        self.formats = compute_formats(None, compute)  # {dtype: (format, source)}, the declaration once loaded

    def _describe(self, message) -> None:
        if message[0] != "ready":
            self.unavailable = message[1]
            return
        self.name, self.flushes, self.framework, self.departures = message[1], message[2], message[3], message[5]
        try:
            self.formats = compute_formats(SimpleNamespace(compute_formats=message[4]), self.override)
        except ValueError as error:
            self.unavailable = str(error)

    @property
    def compute(self) -> dict:
        """{dtype: the format it is assumed computed in}."""
        return {d: f for d, (f, _) in self.formats.items()}


class BackendProcess(_Described):
    """A backend in its own process, with a per-call timeout; restarted after a hang or a crash."""

    def __init__(self, spec: str, timeout: float, wait: bool = True, compute: dict | None = None):
        super().__init__(spec, compute)
        self.timeout = timeout
        self._launch()
        if wait:
            self.ready()

    def _start(self):
        self._launch()
        self.ready()

    def _launch(self):
        context = mp.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(self.spec, child), daemon=True)
        self.process.start()

    def ready(self):
        """Wait for the worker to load its backend (workers are launched together, so they load at once)."""
        try:
            if not self.conn.poll(max(self.timeout, 60.0)):
                self.unavailable = "did not start within the timeout"
                self.process.kill()
                return
            message = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(timeout=5)
            self.unavailable = f"its process died while loading (exit code {self.process.exitcode})"
            return
        self._describe(message)

    def call(self, method, *args, **kwargs):
        """("ok", array) | ("error", type, message) | ("timeout",) | ("crashed", exit code)."""
        if self.unavailable:
            return ("unavailable", self.unavailable)
        try:
            self.conn.send((method, args, kwargs))
            if self.conn.poll(self.timeout):
                return self.conn.recv()
            outcome = ("timeout",)
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.process.join(timeout=5)
            outcome = ("crashed", self.process.exitcode)
        self.process.kill()
        self.process.join()
        self._start()
        return outcome

    def stop(self):
        """Ask the worker to exit (see close_all: every worker is asked before any is waited for)."""
        if self.process.is_alive():
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass

    def close(self, wait: float = 5.0):
        self.stop()
        self.process.join(timeout=wait)
        if self.process.is_alive():
            self.process.kill()


# --------------------------------------------------------------------------------------------
# Backends on a Dask cluster: one task per backend and dtype runs its calls in a cluster worker's process.

_ON_THIS_WORKER = {}  # spec -> (backend or None, its message): loaded once per cluster worker process


def _cluster_task(spec, calls, timeout):
    """(the backend's message, [answer per call]) for calls [(method, args, kwargs)], run in this process.
    Each call runs in a thread given `timeout` seconds; one that overruns is answered ("timeout",) and the
    backend is loaded anew for the next (the stuck thread is left behind). A crash of the process is
    Dask's to handle: it runs the task again on another worker (distributed.scheduler.allowed-failures)."""
    import warnings

    warnings.filterwarnings("ignore")
    if spec not in _ON_THIS_WORKER:
        _ON_THIS_WORKER[spec] = _loaded(spec)
    backend, message = _ON_THIS_WORKER[spec]
    answers = []
    for method, args, kwargs in calls:
        if backend is None:
            answers.append(("unavailable", message[1]))
            continue
        box = []
        thread = threading.Thread(target=lambda: box.append(_answer(backend, method, args, kwargs)), daemon=True)
        thread.start()
        thread.join(timeout)
        if not box:
            answers.append(("timeout",))
            _ON_THIS_WORKER[spec] = _loaded(spec)
            backend, message = _ON_THIS_WORKER[spec]
            continue
        answers.append(box[0])
    return message, answers


class ClusterBackend(_Described):
    """A backend whose calls ran as tasks on a Dask cluster: BackendProcess's description, from the tasks."""


def _on_cluster(client, specs, tasks, dtypes, timeout, compute, edge_calls, tick):
    """The suite's calls and the edges of every backend as cluster tasks, one per (backend, dtype) and one
    per backend for the edges: ({spec: ClusterBackend}, outputs, edges, seconds per backend)."""
    from distributed import as_completed

    def calls(index, op, dtype, x, kwargs, v):
        return [(op, (x,), kwargs), ("vjp", (op, x, v), kwargs)] + (
            [("jvp", (op, x, tangent(x)), kwargs)] if OPS[op].jvp else [])

    jobs = {}
    for spec in specs:
        for dtype in dtypes:
            mine = [t for t in tasks if t[2] == dtype]
            work = [c for index, op, dt, x, kwargs, v, ci in mine for c in calls(index, op, dt, x, kwargs, v)]
            jobs[client.submit(_cluster_task, spec, work, timeout, pure=False)] = (spec, dtype, mine, len(work))
        jobs[client.submit(_cluster_task, spec, edge_calls, timeout, pure=False)] = (spec, "edges", None,
                                                                                     len(edge_calls))
    backends = {spec: ClusterBackend(spec, compute) for spec in specs}
    outputs, edges, seconds, started = {}, {}, {}, time.perf_counter()
    for future in as_completed(list(jobs)):
        spec, dtype, mine, n_calls = jobs[future]
        try:
            message, answers = future.result()
            backends[spec]._describe(message)
        except Exception as error:  # noqa: BLE001 - the task's workers kept dying (a crashing backend)
            crashed = ("crashed", f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
            answers = [crashed] * n_calls
        if dtype == "edges":
            edges[spec] = answers
            continue
        answers = iter(answers)
        for index, op, *_ in mine:
            outputs[spec, index] = (next(answers), next(answers), next(answers) if OPS[op].jvp else None)
            tick(f"{spec} {op} {dtype}")
        seconds[f"{spec} {dtype}"] = round(time.perf_counter() - started, 2)
    return backends, outputs, edges, seconds


def close_all(workers) -> None:
    for bp in workers:
        bp.stop()
    deadline = time.perf_counter() + 5.0
    for bp in workers:
        bp.close(wait=max(0.0, deadline - time.perf_counter()))


# --------------------------------------------------------------------------------------------
# The oracle, in a pool and cached on disk.

def _cache_dir() -> Path | None:
    if os.environ.get("XENTCHECK_ORACLE_CACHE", "1") == "0":
        return None
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xentcheck" / "oracle"


def _key(op, dtype, x, kwargs, v) -> str:
    h = hashlib.sha256(f"{op}|{dtype}|{oracle.GUARD_BITS}|".encode())
    for a in (x, v):
        h.update(np.ascontiguousarray(a).tobytes() + str(a.shape).encode())
    for k in sorted(kwargs):
        val = kwargs[k]
        h.update(k.encode() + (np.ascontiguousarray(val).tobytes() if isinstance(val, np.ndarray) else repr(val).encode()))
    return h.hexdigest()[:32]


def _oracle_task(group):
    """Exact values, vjps and jvps (at tangent(x), where the record derives one; else None) for every
    (op, kwargs, cotangent) of one input in one dtype.

    The ops of a group share their rows' exact quantities (the oracle's row cache): softmax,
    log_softmax and logsumexp of the same logits cost one set of exps. Returns a list of
    (index, value, vjp, jvp, seconds, cached)."""
    dtype, x, items = group
    directory = _cache_dir()
    answers = []
    for index, op, kwargs, v in items:
        path = directory / f"{_key(op, dtype, x, kwargs, v)}.npz" if directory else None
        record = OPS[op]
        if path is not None and path.exists():
            try:
                with np.load(path) as data:
                    jvp = data["jvp"].astype(x.dtype) if record.oracle_jvp else None  # KeyError: computed anew
                    answers.append((index, data["value"].astype(x.dtype), data["vjp"].astype(x.dtype), jvp, 0.0,
                                    True))
                    continue
            except (OSError, ValueError, KeyError):
                pass
        start = time.perf_counter()
        value = record.oracle(x, **kwargs)
        grad = flattened(record.oracle_vjp(x, v, **kwargs))
        jvp = record.oracle_jvp(x, tangent(x), **kwargs) if record.oracle_jvp else None
        answers.append((index, value, grad, jvp, time.perf_counter() - start, False))
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp.npz")  # many writers, maybe many hosts
                extra = {} if jvp is None else {"jvp": jvp.astype(np.float64)}
                np.savez(tmp, value=value.astype(np.float64), vjp=grad.astype(np.float64), **extra)
                os.replace(tmp, path)
            except OSError:
                pass
    return answers


def tangent(x):
    """The tangent of the jvp measurements: cos(1.7 i) over x's entries (i in C order), in x's dtype."""
    return round_to_dtype(np.cos(np.arange(x.size) * 1.7).reshape(x.shape), x.dtype.name)


def _in_float64(a):
    """A floating input (logits, targets, weights, q, a cotangent) in float64: the same values."""
    return a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype.kind not in "iub" else a


def _near_exact(op, dtype, x, kwargs, v, exact):
    """((value, vjp, jvp), their absolute error bounds) as good as exact for measuring against a bound: for
    float16, bfloat16 and float32 the reference evaluated on the same values in float64 (within its float64
    bound, some 2**-50 relative, far below those dtypes' ulps); for float64 the oracle's values (within half an
    ulp). The jvp's are None where the record derives none."""
    if dtype == "float64":
        return exact, tuple(None if e is None else 0.5 * oracle.ulp(e, dtype) for e in exact)
    record, kw64 = OPS[op], {k: _in_float64(a) for k, a in kwargs.items()}
    x64, v64, t64 = _in_float64(x), _in_float64(v), _in_float64(tangent(x))
    with np.errstate(all="ignore"):
        jvp = (record.jvp(x64, t64, **kw64), verdict.jvp_bound(op, x64, t64, **kw64)) if record.jvp else (None,) * 2
        return ((record.reference(x64, **kw64), flattened(record.reference_vjp(x64, v64, **kw64)), jvp[0]),
                (verdict.value_bound(op, x64, **kw64), flattened(verdict.vjp_bound(op, x64, v64, **kw64)), jvp[1]))


def _groups(tasks):
    """Tasks with the same logits and dtype, together (largest first, so the pool ends evenly)."""
    groups = {}
    for index, op, dtype, x, kwargs, v, ci in tasks:
        key = (dtype, x.shape, hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest())
        groups.setdefault(key, (dtype, x, []))[2].append((index, op, kwargs, v))
    return sorted(groups.values(), key=lambda g: -g[1].size * len(g[2]))


# --------------------------------------------------------------------------------------------
# Measuring.

@dataclass
class Measurement:
    backend: str
    op: str
    kind: str
    dtype: str
    framework: str | None = None
    errors: list = field(default_factory=list)  # ULP errors, one array per case
    rel: list = field(default_factory=list)     # relative errors
    gaps: list = field(default_factory=list)    # x_max - x_i (scaled by 1/tau) per element, or NaN
    lengths: list = field(default_factory=list)
    scales: list = field(default_factory=list)
    problems: list = field(default_factory=list)  # (case label, what went wrong)
    # against the derived bound (the backend's compute format), documented departures left out:
    beyond: int = 0  # elements whose error exceeds the bound: a defect of the backend (or of the bound)
    bounded: int = 0  # elements checked against the bound
    ratios: list = field(default_factory=list)  # (case is ordinary, max error / bound over the case's elements)

    def summary(self) -> dict:
        err = np.concatenate(self.errors) if self.errors else np.zeros(0)
        rel = np.concatenate(self.rel) if self.rel else np.zeros(0)
        finite = err[np.isfinite(err)]
        rel = rel[np.isfinite(rel)]
        return {"backend": self.backend, "op": self.op, "kind": self.kind, "dtype": self.dtype,
                "max_ulp": float(err.max()) if err.size else None,
                "median_ulp": float(np.median(err)) if err.size else None,
                "p99_ulp": float(np.percentile(err, 99, method="higher")) if err.size else None,
                "max_rel_err": float(rel.max()) if rel.size else None,
                "n": int(err.size), "mismatches": int(err.size - finite.size),
                "max_finite_ulp": float(finite.max()) if finite.size else None,
                "beyond_bound": self.beyond, "checked_against_bound": self.bounded,
                "problems": [f"{label}: {what}" for label, what in self.problems]}


def _strata(case, x, kwargs, kind, size):
    """Per output element: the gap (x_max - x_i)/tau where the op's record has strata for `kind`, else NaN."""
    gap = OPS[case.op].strata(x, kwargs, kind) if OPS[case.op].strata else None
    return np.full(size, np.nan) if gap is None else np.asarray(gap, dtype=np.float64).reshape(-1)


def _relative(got, want):
    g, w = got.astype(np.float64).reshape(-1), want.astype(np.float64).reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((w != 0) & np.isfinite(w) & np.isfinite(g), np.abs(g - w) / np.abs(w), np.nan)


def _tasks(ops, dtypes, quick):
    """(the suite's cases, one task per case and dtype: (index, op, dtype, x, kwargs, cotangent, case index))."""
    cases = [case for op in ops for case in OPS[op].suite(quick)]
    tasks = []
    for ci, case in enumerate(cases):
        for dtype in dtypes:
            x, kwargs = case.inputs(dtype)
            v = case.cotangent(OPS[case.op].output_shape(x, kwargs), dtype)
            tasks.append((len(tasks), case.op, dtype, x, kwargs, v, ci))
    return cases, tasks


def _measure(measurements, spec, bp, mine, tasks, cases, outputs, exact) -> None:
    """Add one worker's answers (its dtypes `mine`) to `measurements`: ULPs, strata, the bound."""
    for index, op, dtype, x, kwargs, v, ci in tasks:
        if dtype not in mine or (spec, index) not in outputs:
            continue
        case, near = cases[ci], None
        for k, (kind, answer, want) in enumerate(zip(KINDS, outputs[spec, index], exact[index])):
            if _absent(answer, want):
                continue
            m = measurements.setdefault((spec, op, kind, dtype), Measurement(bp.name, op, kind, dtype, bp.framework))
            problem = _check_answer(answer, want)
            if problem:
                m.problems.append((case.label, problem))
                continue
            got = answer[1]
            floor = FORMATS[dtype].smallest_normal if dtype in bp.flushes else None
            m.errors.append(oracle.ulp_error(got, want, dtype, floor=floor).reshape(-1))
            m.rel.append(_relative(got, want))
            m.gaps.append(_strata(case, x, kwargs, kind, want.size))
            m.lengths.append(np.full(want.size, case.n))
            m.scales.append(np.full(want.size, case.scale))
            near = near or _near_exact(op, dtype, x, kwargs, v, exact[index])
            _against_bound(m, bp, case, kind, x, kwargs, tangent(x) if kind == "jvp" else v, got, near[0][k],
                           near[1][k])


def _start_workers(specs, n, timeout, compute) -> dict:
    """n worker processes per backend spec, started together (their imports overlap), ready when returned."""
    workers_of = {spec: [BackendProcess(spec, timeout, wait=False, compute=compute) for _ in range(n)]
                  for spec in specs}
    for group in workers_of.values():
        for bp in group:
            bp.ready()
    return workers_of


def _collect_oracle(pending, tick):
    """({task index: (exact value, vjp, jvp or None)}, the oracle's CPU seconds, how many came from its cache)."""
    exact, seconds, cached = {}, 0.0, 0
    for answers in pending:
        for index, value, grad, jvp, spent, hit in answers:
            exact[index] = (value, grad, jvp)
            seconds += spent
            cached += hit
            tick("oracle")
    return exact, seconds, cached


def run_compare(specs, ops=None, dtypes=None, quick=False, timeout=DEFAULT_TIMEOUT, progress=None, workers=None,
                compute=None, client=None):
    """Measure every backend of `specs`; returns the results dict written to results.json. With `client` (a
    dask.distributed Client) the oracle and the backends' calls run as tasks on its cluster (each backend
    loaded once per cluster worker, a per-call timeout in a thread there); else the oracle in a local
    process pool of `workers` and each backend in processes of its own."""
    from .edge_semantics import semantics_calls

    start = time.perf_counter()
    ops, dtypes = list(ops or OPS), list(dtypes or DTYPE_NAMES)
    cases, tasks = _tasks(ops, dtypes, quick)
    total, done = len(tasks) * (len(specs) + 1), [0]

    def tick(what):
        done[0] += 1
        if progress:
            progress(done[0], total, what)

    # Two worker processes per backend, splitting the dtypes: no program is compiled twice, and a slow
    # backend (JAX compiling) can use a second core once the oracle is done.
    # Alternate dtypes, so each worker gets one of the costly narrow types (float16, bfloat16) when both run.
    edge_calls = semantics_calls()
    if client is not None:  # a Dask cluster: the oracle's tasks and the backends' calls all run there
        oracle_start = time.perf_counter()
        pending = _oracle_on_cluster(client, _groups(tasks))
        processes, outputs, edges, backend_seconds = _on_cluster(client, specs, tasks, dtypes, timeout, compute,
                                                                 edge_calls, tick)
        processes = [processes[spec] for spec in specs]
        exact, oracle_seconds, cached = _collect_oracle(pending, tick)
        oracle_wall = time.perf_counter() - oracle_start
        measurements = {}
        for bp in processes:
            _measure(measurements, bp.spec, bp, tuple(dtypes), tasks, cases, outputs, exact)
        return _results(specs, ops, dtypes, quick, timeout, compute, cases, tasks, processes, measurements,
                        outputs, exact, edges, start, oracle_start, oracle_wall, oracle_seconds, cached,
                        backend_seconds)
    halves = [h for h in (tuple(dtypes[0::2]), tuple(dtypes[1::2])) if h]
    workers_of = _start_workers(specs, len(halves), timeout, compute)
    processes = [group[0] for group in workers_of.values()]
    oracle_start = time.perf_counter()
    pool = mp.get_context("spawn").Pool(processes=workers or os.cpu_count() or 1)
    pending = pool.imap_unordered(_oracle_task, _groups(tasks), chunksize=1)
    outputs, backend_seconds, edges, finished = {}, {}, {}, queue.Queue()

    def drive(spec, bp, mine, with_edges):
        """The suite calls in `mine` dtypes (and the edges) of one backend worker, from one thread."""
        started = time.perf_counter()
        try:
            for index, op, dtype, x, kwargs, v, ci in tasks:
                if dtype not in mine:
                    continue
                if not bp.unavailable:
                    outputs[spec, index] = (bp.call(op, x, **kwargs), bp.call("vjp", op, x, v, **kwargs),
                                            bp.call("jvp", op, x, tangent(x), **kwargs) if OPS[op].jvp else None)
                tick(f"{bp.name} {op} {dtype}")
            if with_edges:
                edges[spec] = [bp.call(method, *args, **kwargs) for method, args, kwargs in edge_calls]
            backend_seconds[f"{bp.name} {'/'.join(mine)}"] = round(time.perf_counter() - started, 2)
        finally:
            finished.put((spec, bp, mine))

    threads = [threading.Thread(target=drive, args=(spec, bp, half, i == 0), daemon=True)
               for spec, group in workers_of.items() for i, (bp, half) in enumerate(zip(group, halves))]
    for thread in threads:
        thread.start()
    exact, oracle_seconds, cached = _collect_oracle(pending, tick)
    oracle_wall = time.perf_counter() - oracle_start
    pool.close()
    measurements = {}
    for _ in threads:  # each worker's answers measured as soon as it is done, while the slower ones still run
        _measure(measurements, *finished.get(), tasks, cases, outputs, exact)
    pool.join()
    close_all([bp for group in workers_of.values() for bp in group])
    return _results(specs, ops, dtypes, quick, timeout, compute, cases, tasks, processes, measurements, outputs,
                    exact, edges, start, oracle_start, oracle_wall, oracle_seconds, cached, backend_seconds)


def _oracle_on_cluster(client, groups):
    """_oracle_task of every group submitted as a Dask task now; their answers as each finishes (a task whose
    worker dies is run again elsewhere: no result is lost)."""
    from distributed import as_completed

    futures = as_completed([client.submit(_oracle_task, group, pure=False) for group in groups])
    return (future.result() for future in futures)


def _results(specs, ops, dtypes, quick, timeout, compute, cases, tasks, processes, measurements, outputs, exact,
             edges, start, oracle_start, oracle_wall, oracle_seconds, cached, backend_seconds) -> dict:
    from .edge_semantics import semantics_table

    measurements = dict(sorted(measurements.items(), key=lambda item: (  # task order: spec, op, dtype, kind
        specs.index(item[0][0]), ops.index(item[0][1]), dtypes.index(item[0][3]), KINDS.index(item[0][2]))))
    return {
        "environment": environment(),
        "settings": {"backends": list(specs), "ops": ops, "dtypes": dtypes, "quick": quick, "timeout_s": timeout,
                     "compute_override": compute or {},
                     "cases": len(cases), "elements": int(sum(c.values.size for c in cases))},
        "backends": [{"spec": bp.spec, "name": bp.name, "unavailable": bp.unavailable,
                      "flushes_subnormals": bp.flushes,
                      "compute_formats": {d: {"format": f, "source": why} for d, (f, why) in bp.formats.items()
                                          if d in dtypes}} for bp in processes],
        "results": [m.summary() for m in measurements.values()],
        "slack": _slack_table(measurements),
        "stratified": _stratify(measurements),
        "disagreements": _disagreements(processes, tasks, outputs, exact),
        "semantics": semantics_table(processes, edges),
        "timing": {"total_s": round(time.perf_counter() - start, 2), "startup_s": round(oracle_start - start, 2),
                   "backends_s": backend_seconds, "oracle_wall_s": round(oracle_wall, 2),
                   "oracle_cpu_s": round(oracle_seconds, 2), "oracle_cached": cached, "oracle_tasks": len(tasks)},
        "_measurements": measurements,  # for the plots; not serialised
    }


# suite.py's regimes of ordinary rows, at logit scales up to ORDINARY_SCALE (1e3 and 1e4 make rows of exact
# zeros and ones, where no backend errs measurably)
ORDINARY_REGIMES = ("normal", "mean", "sum", "none", "dirichlet-like")
ORDINARY_SCALE = 100.0


def _against_bound(m: Measurement, bp, case, kind, x, kwargs, v, got, exact, exact_error) -> None:
    """Each element's error against the (near-)exact value and the backend's derived bound: beyond it only
    where the error exceeds the bound by more than the near-exact value's own error bound. Elements of a
    documented departure and non-finite ones are left out."""
    from .semantics import departures

    dtype = x.dtype.name
    floor = FORMATS[dtype].smallest_normal if dtype in bp.flushes else None
    try:
        precision = {"compute": bp.compute[dtype], "floor": floor}
        tol = (verdict.value_bound(case.op, x, **precision, **kwargs) if kind == "value" else
               flattened(verdict.vjp_bound(case.op, x, v, **precision, **kwargs)) if kind == "vjp" else
               verdict.jvp_bound(case.op, x, v, **precision, **kwargs))
        covered = departures(bp.departures, case.op, kind, x, kwargs, exact.shape, v if kind == "vjp" else None)
    except (ValueError, TypeError):
        return
    g, w = got.astype(np.float64), np.asarray(exact).astype(np.float64)
    tol = np.broadcast_to(tol, w.shape)
    keep = np.isfinite(g) & np.isfinite(w) & (tol > 0)
    for _, hit in covered:
        keep &= ~hit
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(g - w)
        m.beyond += int((keep & (err - exact_error > tol)).sum())
        m.bounded += int(keep.sum())
        if keep.any():
            ordinary = case.regime in ORDINARY_REGIMES and case.scale <= ORDINARY_SCALE
            m.ratios.append((ordinary, float((err[keep] / tol[keep]).max())))


def _slack_table(measurements) -> list:
    """Per op, kind and dtype, over the ordinary cases: the bound divided by the largest error the framework
    backends (torch, JAX) show, per case (the largest over them), its median, loosest and tightest (where
    every framework is correctly rounded on a case, it has no slack to measure)."""
    per = {}
    for (spec, op, kind, dtype), m in measurements.items():
        if m.framework not in ("torch", "jax"):
            continue
        for i, (ordinary, ratio) in enumerate(m.ratios):
            if ordinary:
                key = (op, kind, dtype)
                per.setdefault(key, {})
                per[key][i] = max(per[key].get(i, 0.0), ratio)
    rows = []
    for (op, kind, dtype), cases in per.items():
        slack = np.array([1 / r for r in cases.values() if r > 0])
        if slack.size:
            rows.append({"op": op, "kind": kind, "dtype": dtype, "cases": int(slack.size),
                         "median": float(np.median(slack)), "loosest": float(slack.max()),
                         "tightest": float(slack.min())})
    return rows


def _absent(answer, want) -> bool:
    """Nothing to measure: the record derives no such derivative, or the backend lacks the optional member."""
    return answer is None or want is None or answer[0] == "missing"


def _check_answer(answer, want):
    """None when the answer is an array of the exact value's shape and dtype, else what went wrong."""
    status = answer[0]
    if status == "error":
        return f"raised {answer[1]}: {answer[2]}"
    if status in ("timeout", "crashed", "unavailable"):
        return {"timeout": "hung past the per-call timeout", "crashed": f"the process died (exit {answer[-1]})",
                "unavailable": f"unavailable: {answer[-1]}"}[status]
    got = answer[1]
    if got.shape != want.shape:
        return f"returned shape {got.shape}, expected {want.shape}"
    if got.dtype != want.dtype:
        return f"returned dtype {got.dtype}, expected {want.dtype}"
    return None


# ULP errors grouped by the gap to the row max (powers of two) and by row length.
GAP_EDGES = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, np.inf)


def _stratify(measurements) -> list:
    rows = []
    for m in measurements.values():
        if not m.errors:
            continue
        err, gap, length = np.concatenate(m.errors), np.concatenate(m.gaps), np.concatenate(m.lengths)
        for lo, hi in zip(GAP_EDGES[:-1], GAP_EDGES[1:]):
            sel = (gap >= lo) & (gap < hi)
            if sel.any():
                rows.append(_stratum(m, "gap", f"[{lo:g}, {hi:g})", err[sel]))
        for n in np.unique(length):
            rows.append(_stratum(m, "n", int(n), err[length == n]))
    return rows


def _stratum(m, by, value, err):
    finite = err[np.isfinite(err)]
    return {"backend": m.backend, "op": m.op, "kind": m.kind, "dtype": m.dtype, "by": by, "stratum": value,
            "n": int(err.size), "max_ulp": float(err.max()), "p99_ulp": float(np.percentile(err, 99, method="higher")),
            "median_ulp": float(np.median(err)), "mismatches": int(err.size - finite.size)}


def _disagreements(processes, tasks, outputs, exact) -> list:
    """Per pair of backends and (op, kind, dtype): elements where they differ, and which one the oracle backs."""
    rows = {}
    live = [bp for bp in processes if not bp.unavailable]
    for i, a in enumerate(live):
        for b in live[i + 1:]:
            for index, op, dtype, x, kwargs, v, ci in tasks:
                for k, kind in enumerate(KINDS):
                    ra, rb = outputs[a.spec, index][k], outputs[b.spec, index][k]
                    want = exact[index][k]
                    if _absent(ra, want) or _absent(rb, want) or _check_answer(ra, want) or _check_answer(rb, want):
                        continue
                    ga, gb = ra[1].astype(np.float64), rb[1].astype(np.float64)
                    same = (ga == gb) | (np.isnan(ga) & np.isnan(gb))
                    ea, eb = oracle.ulp_error(ga, want, dtype), oracle.ulp_error(gb, want, dtype)
                    key = (a.name, b.name, op, kind, dtype)
                    row = rows.setdefault(key, {"a": a.name, "b": b.name, "op": op, "kind": kind, "dtype": dtype,
                                                "elements": 0, "differ": 0, "a_closer": 0, "b_closer": 0,
                                                "max_ulp_apart": 0.0})
                    row["elements"] += int(same.size)
                    row["differ"] += int((~same).sum())
                    row["a_closer"] += int(((ea < eb) & ~same).sum())
                    row["b_closer"] += int(((eb < ea) & ~same).sum())
                    apart = oracle.ulp_error(ga, gb.astype(want.dtype), dtype)
                    row["max_ulp_apart"] = max(row["max_ulp_apart"], float(np.nan_to_num(apart, posinf=np.inf).max()))
    return list(rows.values())
