"""Fixtures and hooks of the property suite (the options are in plugin.py).

Each property test takes `h` (a Harness around the backend under test) and `dtype` (parametrised over
the selected dtypes); its op is `test.xentcheck_op`. Each report carries a user property "xentcheck"
with the op, dtype, property, semantic differences, unsupported calls and, on failure, the minimal
counterexample's record and reproducer; `xentcheck check` builds its summary and JSON from them.
"""
from __future__ import annotations

import faulthandler
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Unsatisfiable
from hypothesis.internal.conjecture import engine

from .. import strategies

from ..backends import BackendLoadError, load_backend
from ..backends.contract import compute_formats, parse_compute
from ..records import OPS
from ..semantics import declared
from ..reference import DTYPE_NAMES
from ._harness import Harness

_SUPPRESS = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
             HealthCheck.function_scoped_fixture,  # the harness is reset by begin() for every example
             HealthCheck.large_base_example, HealthCheck.differing_executors]
PROFILES = {
    "edges": dict(max_examples=1, derandomize=True, database=None, deadline=None, print_blob=False,
                  phases=[Phase.explicit]),  # the explicit edge examples only: a first look in seconds
    "ci": dict(max_examples=12, derandomize=True, database=None, deadline=None, print_blob=False),
    "dev": dict(max_examples=60, deadline=None, print_blob=True),
    "explore": dict(max_examples=1000, deadline=None, print_blob=True),
}
# Seconds a property may spend shrinking a failure before it reports the smallest example found so far
# (Hypothesis's own limit is 300 s: minutes per property on a backend that compiles every new shape).
SHRINK_SECONDS = {"edges": 0, "ci": 20, "dev": 60, "explore": 300}
_HYPOTHESIS_SHRINK_SECONDS = engine.MAX_SHRINKING_SECONDS
_CALLERS_SETTINGS = pytest.StashKey()


def _database(spec: str | None):
    if not spec:
        path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xentcheck" / "hypothesis"
        from hypothesis.database import DirectoryBasedExampleDatabase

        return DirectoryBasedExampleDatabase(path)
    from .databases import database_from_spec

    return database_from_spec(spec)


def pytest_configure(config):
    profile = config.getoption("xentcheck_profile", "ci")
    # every distinct failure of a property (by exception type and origin: a crash does not hide a wrong
    # value), each shrunk to its own minimal example; under -x (stop at the first failure) the first alone
    options = dict(PROFILES[profile], suppress_health_check=_SUPPRESS,
                   report_multiple_bugs=not config.getoption("exitfirst", False))
    timeout = config.getoption("xentcheck_timeout", None)
    if timeout is not None and not 0 <= timeout <= 1e6:
        raise pytest.UsageError(f"--property-timeout: must be from 0 to 1e6 seconds (0: no limit); got {timeout}")
    database = config.getoption("xentcheck_database", None)
    if database and profile == "ci":
        raise pytest.UsageError("--database: the ci profile draws the same examples every run and keeps no "
                                "database; use --profile dev or explore")
    if profile == "explore" or database:
        try:
            options["database"] = _database(database)
        except ValueError as error:
            raise pytest.UsageError(str(error)) from None
    if config.getoption("hypothesis_seed", None) is not None:
        options["derandomize"] = False  # an explicit --seed picks the examples
    config.stash[_CALLERS_SETTINGS] = settings.default
    settings.register_profile(f"xentcheck-{profile}", **options)
    settings.load_profile(f"xentcheck-{profile}")
    strategies.fix_shapes(profile in ("ci", "edges"))  # few shapes: few compilations for a jitted backend
    engine.MAX_SHRINKING_SECONDS = SHRINK_SECONDS[profile]


def pytest_unconfigure(config):
    """Leave the process as it was (`xentcheck check` runs the suite inside its caller)."""
    if _CALLERS_SETTINGS in config.stash:
        settings.register_profile("xentcheck-callers", config.stash[_CALLERS_SETTINGS])
        settings.load_profile("xentcheck-callers")
    strategies.fix_shapes(False)
    engine.MAX_SHRINKING_SECONDS = _HYPOTHESIS_SHRINK_SECONDS


def _selected(config, option, allowed, what):
    value = config.getoption(option, None)
    if not value:
        return list(allowed)
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in allowed]
    if unknown:
        raise pytest.UsageError(f"--{what}: unknown {what} {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return chosen


def pytest_generate_tests(metafunc):
    if "dtype" in metafunc.fixturenames and hasattr(metafunc.function, "xentcheck_op"):
        op = OPS[metafunc.function.xentcheck_op]
        only = getattr(metafunc.function, "xentcheck_dtypes", op.dtypes)
        dtypes = [d for d in _selected(metafunc.config, "xentcheck_dtypes", DTYPE_NAMES, "dtypes")
                  if d in op.dtypes and d in only]
        metafunc.parametrize("dtype", dtypes)


def pytest_collection_modifyitems(config, items):
    ops = _selected(config, "xentcheck_ops", tuple(OPS), "ops")
    keep, drop = [], []
    for item in items:
        op = getattr(getattr(item, "function", None), "xentcheck_op", None)
        (drop if op is not None and op not in ops else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def backend(request):
    spec = request.config.getoption("xentcheck_backend", None)
    if not spec:
        raise pytest.UsageError("--backend: give the backend to check (numpy, torch, jax, module:attr, file.py:attr)")
    try:
        obj = load_backend(spec)
        formats = compute_formats(obj, parse_compute(request.config.getoption("xentcheck_compute", None)))
        declared(obj)  # a departure name not in the documented list is a usage error, before any test
    except (BackendLoadError, ValueError) as error:
        raise pytest.UsageError(str(error)) from None
    if "jax" in sys.modules:  # a backend on JAX: its compiled programs are kept on disk for the next run
        from ..backends.jax_backend import persistent_compile_cache

        persistent_compile_cache(sys.modules["jax"])
    return spec, obj, formats


@pytest.fixture(autouse=True)
def _watchdog(request):
    """--property-timeout: a watchdog thread in C (it fires even where the backend hangs in native code) prints
    every thread's stack and ends the process."""
    seconds = request.config.getoption("xentcheck_timeout", None)
    if seconds:  # `check` without workers passes the terminal's stderr (pytest captures fd 2 during a test)
        fd = os.environ.get("XENTCHECK_STDERR_FD")
        faulthandler.dump_traceback_later(seconds, exit=True, file=int(fd) if fd else sys.__stderr__)
    yield
    if seconds:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def h(request, backend):
    spec, obj, formats = backend
    harness = Harness(obj, spec, request.config.getoption("xentcheck_strict", False), request.node, formats)
    request.node.xentcheck_harness = harness
    return harness


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    harness = getattr(item, "xentcheck_harness", None)
    op = getattr(getattr(item, "function", None), "xentcheck_op", None)
    if op is None or report.when != "call":
        return
    record = {"op": op, "dtype": item.callspec.params.get("dtype") if hasattr(item, "callspec") else None,
              "property": item.originalname, "semantic": [], "unsupported": [], "failures": [], "examples": 0}
    if harness is not None:
        record["semantic"] = _unique(harness.semantic)
        record["unsupported"] = sorted(set(harness.unsupported))
        record["examples"] = harness.examples
        record["not_judged"] = dict(harness.unjudged)
        if report.failed and call.excinfo is not None and call.excinfo.errisinstance(Unsatisfiable) \
                and harness.unsupported:
            report.outcome, report.longrepr = "skipped", (str(item.path), 0, "unsupported: " + harness.unsupported[0])
            record["unsupported_only"] = True
        elif report.failed and call.excinfo is not None and call.excinfo.errisinstance(Unsatisfiable) \
                and harness.unjudged:  # no example could be judged: not a pass, not a failure
            report.outcome, report.longrepr = "skipped", (str(item.path), 0, "not judged: " + next(iter(harness.unjudged)))
            record["not_run"] = True
        elif report.failed:
            record["failures"] = list(harness.failures.values())
        elif report.passed and not harness.examples:  # --profile edges: the property has no explicit example
            report.outcome, report.longrepr = "skipped", (str(item.path), 0, "no example reached the backend")
            record["not_run"] = True
    report.user_properties.append(("xentcheck", record))


def _unique(records):
    seen, out = set(), []
    for r in records:
        key = (r["departure"], r["kind"], r["dtype"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out
