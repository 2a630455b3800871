"""Test order for pytest-xdist (scripts/test.sh runs `-n <cores + 1> --dist worksteal`): the slow end-to-end
modules first. worksteal hands each worker a contiguous share of this order and lets an idle worker take
the tail of a busy one's queue, so the long subprocess runs and the expensive module-scoped fixtures (a
bench run, a compare run) start at once and the many short tests fill in around them; the run does not
end on one worker still busy with a long test picked up last."""

SLOW_FIRST = ("test_oldest_versions.py", "test_check.py", "test_bench.py", "test_compare.py", "test_databases.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)


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
