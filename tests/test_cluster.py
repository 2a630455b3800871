"""`compare` on a Dask cluster (a real LocalCluster of worker processes on loopback): the report is the local
run's, figure for figure, and a worker killed mid-run loses no result (Dask runs its tasks again)."""
import json
import os
import signal

import pytest

from xentcheck.compare import run_compare

distributed = pytest.importorskip("distributed")

SPECS = ["numpy", "tests/planted_bugs.py:SlightlyWrongExp"]  # one honest backend, one with a planted error
SELECTION = dict(ops=["softmax", "cross_entropy"], dtypes=["float32"], quick=True)


def _figures(results) -> str:
    """Everything a report shows but the timings and the machine."""
    return json.dumps({k: v for k, v in results.items() if k not in ("timing", "environment", "_measurements")},
                      sort_keys=True, default=str)


@pytest.fixture(scope="module")
def local_run():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XENTCHECK_ORACLE_CACHE", "0")  # every oracle task computed, here and on the cluster
        return run_compare(SPECS, workers=2, **SELECTION)


@pytest.fixture(scope="module")
def cluster():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XENTCHECK_ORACLE_CACHE", "0")  # (the workers inherit the environment)
        with distributed.LocalCluster(n_workers=3, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
            yield client


def test_the_cluster_report_is_the_local_one_figure_for_figure(local_run, cluster):
    remote = run_compare(SPECS, client=cluster, **SELECTION)
    assert _figures(remote) == _figures(local_run)
    beyond = {r["backend"] for r in remote["results"] if r["beyond_bound"]}
    assert beyond == {"planted"}, beyond  # the planted error stands out there as here


def test_a_worker_killed_mid_run_loses_no_result(local_run, cluster):
    pids = cluster.run(os.getpid)  # {worker address: pid}
    killed = []

    def kill_a_busy_worker(done, total, what):
        if killed:
            return
        busy = [address for address, keys in cluster.processing().items() if keys and address in pids]
        if busy:
            killed.append(len(cluster.processing()[busy[0]]))
            os.kill(pids[busy[0]], signal.SIGKILL)

    remote = run_compare(SPECS, client=cluster, progress=kill_a_busy_worker, **SELECTION)
    assert killed and killed[0] >= 1, "no worker was busy when the first result came back"
    assert _figures(remote) == _figures(local_run)
    assert set(cluster.run(os.getpid).values()) != set(pids.values())  # the nanny started a new worker
