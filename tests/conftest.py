"""Test order for pytest-xdist (scripts/test.sh runs `-n <cores> --dist worksteal`): worksteal hands
worker w the w-th contiguous share of the collection and lets an idle worker take the tail of a busy one's
queue. So the long tests are dealt round-robin to the heads of the shares (each worker starts on its part
of them at once, longest first) and the short ones fill in behind: the run does not end on one worker still
busy with a long test picked up last. SLOWEST holds the long ones, longest first (measured with
--durations); a test whose name starts with an entry is ranked there."""
import os

SHARED_FIXTURE_MODULES = ("test_compare.py",)
SLOWEST = (
    "test_check.py::test_the_built_in_backends_pass[torch-",
    "test_oldest_versions.py::",
    "test_bench.py::test_a_small_run",
    "test_check.py::test_systematic_errors",
    "test_compare.py::",  # one unit: its first test computes the compare run the others read (a minute)
    "test_check.py::test_the_built_in_backends_pass[jax-",
    "test_vocab_parallel.py::test_three_ranks",
    "test_vocab_parallel.py::test_two_ranks",
    "test_check.py::test_optax",
    "test_check.py::test_strict",
    "test_databases.py::",
    "test_vocab_parallel_jax.py::",
    "test_cluster.py::",
    "test_chunked.py::test_one_huge_row",
    "test_toy_op.py::",
    "test_check.py::",
    "test_loader.py::test_new_backend",
    "test_bench.py::",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        name = f"{item.path.name}::{item.name}"
        return next((i for i, prefix in enumerate(SLOWEST) if name.startswith(prefix)), len(SLOWEST))

    items.sort(key=rank)  # stable: within a rank, the files' own order
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    units = {}  # the long tests, a module that shares a fixture as one unit (on one worker: none waits)
    for item in items:
        if rank(item) < len(SLOWEST):
            key = item.path.name if item.path.name in SHARED_FIXTURE_MODULES else item.nodeid
            units.setdefault(key, []).append(item)
    long = list(units.values())
    short = [item for item in items if rank(item) == len(SLOWEST)]
    order = []
    for w in range(workers):  # share w: worksteal's first split, len(pending) // workers_left
        size = (len(items) - len(order)) // (workers - w)
        head = [item for unit in long[w::workers] for item in unit]
        order += head + short[:max(0, size - len(head))]
        short = short[max(0, size - len(head)):]
    items[:] = order + short


def shared(tmp_path_factory, name: str, compute):
    """compute() once per test session, whichever pytest-xdist worker asks first; the others wait for it and
    read its pickled result (a module-scoped fixture would run once per worker that runs the module's tests)."""
    import fcntl
    import pickle

    root = tmp_path_factory.getbasetemp()
    root = root.parent if root.name.startswith("popen-gw") else root  # the directory the workers share
    path = root / f"shared-{name}.pickle"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            path.write_bytes(pickle.dumps(compute()))
        return pickle.loads(path.read_bytes())
