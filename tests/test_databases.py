"""Beyond one process: `check --workers N` (pytest-xdist) and the shared example databases of --database
(a directory, or a real redis-server on loopback): a counterexample found once replays first everywhere."""
import shutil
import socket
import subprocess
import time

import pytest
from hypothesis import given, settings, strategies as st

from _cli import xentcheck, xentcheck_here
from xentcheck.properties.databases import database_from_spec
from xentcheck.strategies import REGIMES

BUG = "tests/planted_bugs.py:SlightlyWrongExp"
SUBTLE = "tests/dummy_backends.py:OnlyGeneratedExamplesFindMe"  # found by generated examples only


def summary(out):
    """The last line's counts: '... N passed, N failed, N unsupported ...'."""
    last = out.strip().splitlines()[-1]
    return [int(w) for w in last.split(":")[1].replace(",", " ").split() if w.isdigit()][:3]


def test_workers_run_the_same_suite_and_report_the_same_counts():
    args = ("check", "--backend", "numpy", "--ops", "logsumexp", "--dtypes", "float32", "--no-progress")
    code1, out1, err1 = xentcheck_here(*args)
    code2, out2, err2 = xentcheck(*args, "--workers", "2")
    assert code1 == code2 == 0, out2[-2000:] + err2[-2000:]
    assert summary(out1) == summary(out2) and summary(out2)[0] > 0


def test_workers_report_a_counterexample_with_its_reproducer():
    code, out, err = xentcheck("check", "--backend", BUG, "--ops", "softmax", "--dtypes", "float32", "--workers", "2",
                               "--no-progress")
    assert code == 1, out[-2000:] + err[-2000:]
    assert "FALSIFIED" in out and "counterexample:" in out and "reproducer:" in out


def rare_property(database, max_examples):
    """Fails only for x >= 10**8: found by a long run, practically never by a one-example run."""
    @settings(database=database, max_examples=max_examples, derandomize=False, deadline=None)
    @given(st.integers(0, 10**9))
    def prop(x):
        assert x < 10**8
    return prop


def found_with_one_example(database) -> bool:
    try:
        rare_property(database, 1)()
    except AssertionError:
        return True
    return False


def check_replay(spec):
    """A long run on one 'machine' saves its counterexample; a one-example run elsewhere replays it first."""
    assert not found_with_one_example(None)  # without the database one example does not find it
    with pytest.raises(AssertionError):
        rare_property(database_from_spec(spec), 500)()
    assert found_with_one_example(database_from_spec(spec))  # a fresh connection: another worker


def test_a_directory_database_replays_a_counterexample_first(tmp_path):
    check_replay(str(tmp_path / "db"))


@pytest.fixture
def redis_url():
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
    pytest.importorskip("redis", reason="the redis client is not installed (pip install 'xentcheck[test]')")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("redis-server did not start")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_redis_database_replays_a_counterexample_first(redis_url):
    check_replay(redis_url)


def test_check_saves_its_counterexamples_in_redis(redis_url):
    import redis

    args = ("check", "--backend", SUBTLE, "--ops", "softmax", "--dtypes", "float32", "-x", "--profile", "dev",
            "--no-progress", "--database", redis_url)
    code, out, err = xentcheck(*args)  # a subprocess, as a user runs it (run inside this test the database stayed empty)
    assert code == 1, out[-2000:] + err[-2000:]
    port = int(redis_url.rsplit(":", 1)[1])
    assert redis.Redis(port=port).keys(b"xentcheck:*")
    # a generated example, labelled by its regime (explicit edges, which carry their own names, are not saved);
    # the dev profile draws afresh each run, and the shrinker does not always carry a regime to 'ordinary'
    assert any(f"counterexample: RowSpec({regime!r}" in out for regime in REGIMES), out[-2000:]


def test_an_unreachable_redis_is_a_one_line_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    code, out, err = xentcheck_here("check", "--backend", "numpy", "--ops", "softmax", "--profile", "dev",
                               "--no-progress", "--database", f"redis://127.0.0.1:{port}")
    assert code == 2 and "cannot reach Redis" in err and "Traceback" not in err, err


def test_the_deterministic_ci_profile_refuses_a_database(tmp_path):
    code, out, err = xentcheck_here("check", "--backend", "numpy", "--no-progress", "--database", str(tmp_path))
    assert code == 2 and "--database: the ci profile" in err, err
