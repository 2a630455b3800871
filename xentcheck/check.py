"""`xentcheck check`: the property suite as a CI gate for one backend.

Runs `pytest --pyargs xentcheck.properties` in-process with the options given, collects the record each
test attaches to its report (op, dtype, semantic differences, unsupported calls, failure and reproducer),
and prints a summary table op x dtype x passed / failed / unsupported / semantic, every failure with its
minimal counterexample, its error against the bound and a self-contained reproducer, and the semantic
differences. Exit status: 0 every property holds, 1 one is falsified (or a semantic difference under
--strict), 2 the spec or options are wrong or the backend cannot be loaded.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import re
import shlex
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from unittest import mock

import pytest

from .backends import BackendLoadError, load_backend
from .backends.contract import compute_formats, describe_compute, parse_compute
from .environment import environment
from .properties.plugin import PROFILES
from .records import OPS
from .reference import DTYPE_NAMES
from .reference.validation import check_choices
from .semantics import declared

FULL_REPRODUCERS = 3  # failures printed with their reproducer in full (all of them are in --json)
TEXT_CAP = 2000  # characters of a counterexample, an error or a reproducer shown (the JSON holds 10x)


class CheckUsageError(Exception):
    """Bad options or an unloadable backend: exit status 2, one line."""


@dataclass
class CheckResult:
    spec: str
    backend_name: str
    profile: str
    tests: list = field(default_factory=list)  # one dict per test: nodeid, op, dtype, property, outcome, ...
    seconds: float = 0.0
    pytest_status: int = 0
    output: str = ""  # pytest's own (quiet) output, for --verbose
    compute: dict = field(default_factory=dict)  # {dtype: (compute format, "default" | "declared" | "override")}

    @property
    def failed(self):
        """The tests (property x dtype) that failed."""
        return [t for t in self.tests if t["outcome"] == "failed"]

    @property
    def failures(self):
        """Every distinct failure of every failed test (a test may fail in several ways: a wrong value and a
        crash are two), each with its minimal example and reproducer."""
        return [f for t in self.failed for f in t.get("failures") or [
            {"property": t["property"], "op": t["op"], "dtype": t["dtype"], "kind": "error", "error": t["longrepr"]}]]

    @property
    def semantic(self):
        seen, out = set(), []
        for t in self.tests:
            for s in t.get("semantic", []):
                key = (s["departure"], s["kind"], s["dtype"])
                if key not in seen:
                    seen.add(key)
                    out.append(dict(s, property=t["property"]))
        return out

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.pytest_status not in (0, 5) else 0

    def summary(self):
        table = defaultdict(lambda: {"passed": 0, "failed": 0, "declined": 0, "unsupported": 0, "semantic": 0})
        for t in self.tests:
            if t.get("not_run"):  # no example ran (--profile edges: none explicit) or none could be judged
                continue
            row = table[t["op"], t["dtype"]]
            row[{"passed": "passed", "failed": "failed"}.get(t["outcome"], "unsupported")] += 1
            row["declined"] += any(f["kind"] == "declined" for f in t.get("failures", []))
            row["semantic"] += bool(t.get("semantic"))
        return [dict(op=op, dtype=dtype, **counts) for (op, dtype), counts in sorted(
            table.items(), key=lambda kv: (_position(kv[0][0], OPS), _position(kv[0][1], DTYPE_NAMES)))]

    def to_json(self) -> dict:
        return {"tool": "xentcheck check", "version": _version(), "backend": {"spec": self.spec, "name": self.backend_name},
                "profile": self.profile, "seconds": round(self.seconds, 2), "exit_code": self.exit_code,
                "environment": environment(),
                "compute_formats": {d: {"format": f, "source": why} for d, (f, why) in self.compute.items()},
                "summary": self.summary(),
                "failures": [{k: capped(v, 10 * TEXT_CAP) if isinstance(v, str) else v for k, v in f.items()}
                             for f in self.failures],
                "semantic_differences": self.semantic,
                "unsupported": sorted({u for t in self.tests for u in t.get("unsupported", [])}),
                "tests": [{k: t.get(k) for k in ("nodeid", "property", "op", "dtype", "outcome", "examples",
                                                 "not_judged")}
                          for t in self.tests]}


class _Collector:
    """pytest plugin: one dict per test from the records conftest attaches; a progress bar on a terminal."""

    def __init__(self, progress, spec=""):
        self.tests, self.total, self.done, self.progress = [], 0, 0, progress
        self.errors, self.spec = [], spec

    def pytest_collection_finish(self, session):
        self.total = len(session.items)

    def pytest_collectreport(self, report):
        if report.failed:
            self.errors.append(str(report.longrepr))

    def pytest_runtest_logreport(self, report):
        record = dict(report.user_properties).get("xentcheck")
        if record is None and report.failed and report.when == "???":  # pytest-xdist: its worker died running it
            record = _died(report.nodeid, str(report.longrepr), self.spec)
        if report.when == "setup" and report.failed:
            self.errors.append(str(report.longrepr))
        if record is None or report.when not in ("call", "???") and not (report.when == "setup" and report.skipped):
            return
        self.tests.append(dict(record, nodeid=report.nodeid, outcome=report.outcome,
                               longrepr=str(report.longrepr)[-2000:] if report.failed else None))
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total, f"{record['op']} {record['dtype'] or ''} {record['property']}")


def _position(name, names) -> int:
    """Where `name` stands in `names` (an op or dtype not among them: last)."""
    return list(names).index(name) if name in names else len(names)


def _died(nodeid: str, longrepr: str, spec: str) -> dict:
    """The record of a property whose worker process died running it (an abort or a segfault in the backend's
    native code, the memory exhausted): a failure, with the command that reruns it alone."""
    path, _, test = nodeid.partition("::")
    name, _, dtype = test.partition("[")
    dtype = dtype.rstrip("]") or None
    try:  # the controller of pytest-xdist has not imported the property modules
        module = importlib.import_module(f"xentcheck.properties.{os.path.splitext(os.path.basename(path))[0]}")
    except ImportError:
        module = None
    op = getattr(getattr(module, name, None), "xentcheck_op", None) or "?"
    rerun = f"xentcheck check --backend {shlex.quote(spec)} -k {name}" + (
        f" --dtypes {dtype}" if dtype in DTYPE_NAMES else "")
    last = longrepr.strip().splitlines()[-1] if longrepr.strip() else "no message"
    error = (f"the process running it died (an abort or segfault in the backend's native code, memory "
             f"exhausted, or past --timeout): {last}\nrerun it alone, without --workers, to see where: {rerun}")
    return {"op": op, "dtype": dtype, "property": name, "semantic": [], "unsupported": [], "examples": 0,
            "failures": [{"property": name, "op": op, "dtype": dtype, "kind": "crash", "error": error}]}


def run_check(spec: str, *, profile="ci", ops=None, dtypes=None, keyword=None, seed=None, strict=False,
              junitxml=None, workers=None, database=None, fail_fast=False, progress=None,
              compute=None, arrays=None, timeout=None) -> CheckResult:
    """Run the property suite on `spec`; raise CheckUsageError for bad options or an unloadable backend.
    `arrays`: the folder for reproducers' large inputs (.npy; default: see properties._harness.arrays_dir)."""
    if profile not in PROFILES:
        raise CheckUsageError(f"--profile: must be one of {', '.join(PROFILES)}; got {profile!r}")
    try:
        check_choices("--ops", ops, tuple(OPS))
        check_choices("--dtypes", dtypes, DTYPE_NAMES)
        backend = load_backend(spec)
        formats = compute_formats(backend, parse_compute(compute))
        declared(backend)  # its departures' names, from the documented list
    except (BackendLoadError, ValueError) as error:
        raise CheckUsageError(str(error)) from None
    args = ["--pyargs", "xentcheck.properties", "--backend", spec, "--profile", profile, "-p", "no:cacheprovider",
            "-qq", "--tb=native", "--no-header", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        args += ["-p", "xentcheck.properties.plugin"]
    if ops:
        args += ["--ops", ",".join(ops)]
    if dtypes:
        args += ["--dtypes", ",".join(dtypes)]
    if keyword:
        args += ["-k", keyword]
    if seed is not None:
        args += ["--hypothesis-seed", str(seed)]
    if strict:
        args.append("--strict-semantics")
    if junitxml:
        args += ["--junitxml", junitxml]
    if database:
        args += ["--database", database]
    if compute:
        args += ["--compute", compute]
    if profile == "explore":
        args.append("--hypothesis-show-statistics")
    if timeout:
        args += ["--property-timeout", str(timeout)]
    if workers:  # a worker that dies is reported as a failure with a rerun line, not with every thread's stack
        args += ["-n", str(workers), "-p", "no:faulthandler"]
    if fail_fast:
        args.append("-x")
    collector = _Collector(progress, spec)
    output = io.StringIO()
    start = time.perf_counter()
    env = {"XENTCHECK_ARRAYS": str(arrays)} if arrays else {}
    stderr = None if workers or not timeout else os.dup(2)  # pytest captures fd 2: the watchdog writes here
    if stderr is not None:
        env["XENTCHECK_STDERR_FD"] = str(stderr)
    try:
        with mock.patch.dict(os.environ, env), contextlib.redirect_stdout(output):
            status = pytest.main(args, plugins=[collector])
    finally:
        if stderr is not None:
            os.close(stderr)
    if getattr(progress, "clear", None):
        progress.clear()
    result = CheckResult(spec, getattr(backend, "name", spec), profile, collector.tests,
                         time.perf_counter() - start, int(status), output.getvalue(), formats)
    if status == pytest.ExitCode.USAGE_ERROR:
        raise CheckUsageError(_last_error_line(result.output) or "pytest rejected the options")
    if status == pytest.ExitCode.NO_TESTS_COLLECTED:
        raise CheckUsageError("no property matches the selection (--ops, --dtypes, -k)")
    if status in (pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.INTERRUPTED) and not collector.tests:
        raise CheckUsageError(_collection_error(collector.errors) or "the property suite could not run: " + (
            _last_error_line(result.output) or ("interrupted (Ctrl-C, or a KeyboardInterrupt raised by the backend)"
                                                if status == pytest.ExitCode.INTERRUPTED else "no message")))
    return result


def _collection_error(errors) -> str:
    """The message of the exception that stopped collection (a bad option is a UsageError there): the last
    line of its (native) traceback."""
    lines = [line.strip() for e in errors[-1:] for line in e.splitlines() if line.strip()]
    return re.sub(r"^[\w.]*(UsageError|ValueError): ", "", lines[-1])[:500] if lines else ""


def _last_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if "rror" in line]
    return lines[-1] if lines else ""


def _version() -> str:
    from . import __version__

    return __version__


# --------------------------------------------------------------------------------------------
# Rendering.

def render(result: CheckResult, verbose: bool = False) -> str:
    w = max(14, *(len(op) for op in OPS))
    lines = [f"{'op':<{w}} {'dtype':<9} {'passed':>7} {'failed':>7} {'declined':>9} {'unsupported':>12} "
             f"{'semantic':>9}"]
    for row in result.summary():
        lines.append(f"{row['op']:<{w}} {row['dtype']:<9} {row['passed']:>7} {row['failed']:>7} {row['declined']:>9} "
                     f"{row['unsupported']:>12} {row['semantic']:>9}")
    lines.append("(declined: failed because the backend declined inputs of what it answers elsewhere)")
    for i, f in enumerate(result.failures):
        lines += ["", f"FALSIFIED {f['property']} [{f['op']}, {f['dtype']}]" + (
            f" ({f['kind']})" if f["kind"] != "assertion" else "")]
        if "case" not in f:  # the test failed outside any example (pytest's own report)
            lines += ["  " + line for line in (f["error"] or "").splitlines()[-8:]]
            continue
        error = f["error"].splitlines()
        lines += [f"  counterexample: {capped(f['case'], TEXT_CAP // 4)}"] + [
            f"  {capped(line)}" for line in error[:1] + [line for line in error[1:] if "raised in" in line]]
        if i < FULL_REPRODUCERS or verbose:
            lines += ["  reproducer:"] + ["    " + line for line in capped(f["reproducer"]).splitlines()]
    if len(result.failures) > FULL_REPRODUCERS and not verbose:
        lines += ["", f"(reproducers of the other {len(result.failures) - FULL_REPRODUCERS} failures: --json or -v)"]
    unjudged = defaultdict(int)
    for t in result.tests:
        for reason, n in (t.get("not_judged") or {}).items():
            unjudged[t["property"], t["dtype"], reason] += n
    if unjudged:
        lines += ["", "Examples not judged (counted; the property's premise does not hold there for this backend):"] + [
            f"  {prop} [{dtype}]: {n} example(s): {reason}" for (prop, dtype, reason), n in sorted(unjudged.items())]
    unsupported = sorted({u for t in result.tests for u in t.get("unsupported", [])})
    if unsupported:
        lines += ["", "Unsupported (the backend raised NotImplementedError, lacks an optional op, or takes no such option):"] + [
            f"  {u}" for u in unsupported]
    if result.semantic:
        lines += ["", "Semantic differences (documented framework departures; --strict makes them failures):"]
        for s in result.semantic:
            lines.append(f"  {s['op']} {s['kind']} {s['dtype']}: {s['departure']}: {s['description']}")
    counts = defaultdict(int)
    for t in result.tests:
        counts["not run" if t.get("not_run") else t["outcome"]] += 1
    declined = sum(row["declined"] for row in result.summary())
    checked = {t["dtype"] for t in result.tests}
    lines += ["", "Bounds assume: " + describe_compute({d: f for d, f in result.compute.items() if d in checked}),
              f"{result.backend_name} ({result.spec}), profile {result.profile}: {counts['passed']} passed, "
              f"{counts['failed']} failed ({declined} of them declined inputs), {counts['skipped']} unsupported, "
              f"{len(result.semantic)} semantic difference(s) in {result.seconds:.1f} s"
              + (f"; {counts['not run']} properties ran no example (none explicit under --profile edges, or none "
                 "could be judged)" if counts["not run"] else "")]
    if verbose:
        lines += ["", "pytest output:", result.output]
    return "\n".join(lines)


def capped(text: str, limit: int = TEXT_CAP) -> str:
    """`text`, or its head and tail with how much was cut between them."""
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit * 3 // 4]} ... ({len(text) - limit} characters cut) ... {text[-limit // 4:]}"


def write_json(result: CheckResult, path: str) -> None:
    with open(path, "w") as f:
        json.dump(result.to_json(), f, indent=2)


def progress_bar(stream=sys.stderr):
    """A one-line progress bar on a terminal; None elsewhere (CI logs stay clean)."""
    if not stream.isatty():
        return None

    width = 30

    def clear():
        stream.write("\r" + " " * (width + 80) + "\r")
        stream.flush()

    def show(done, total, label):
        filled = int(width * min(done, total) / max(total, 1))
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label[:60]:<60}")
        if done >= total:
            clear()
        stream.flush()

    show.clear = clear  # called when the run ends, however many tests reported (skips and errors included)
    return show
