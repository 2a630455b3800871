"""Test order for pytest-xdist (scripts/test.sh runs `-n <cores + 1> --dist load`): the longest tests first.
`--dist load` deals its first batch of tests round-robin over the workers and then hands out the rest as
workers finish, so with the longest first each worker starts on one of them and the many short tests fill
in around them (longest processing time first): the run does not end on one worker still busy with a long
test picked up last. SLOWEST holds the long ones, longest first (measured with --durations); a test whose
name starts with an entry is ranked there."""

SLOWEST = (
    "test_check.py::test_the_built_in_backends_pass[torch-",
    "test_oldest_versions.py::",
    "test_bench.py::test_a_small_run",
    "test_check.py::test_systematic_errors",
    "test_compare.py::test_the_report_is_written",  # computes the compare run its module shares (a minute);
    # the module's other tests stay in file order, after the long ones: by then the run is there to read
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
