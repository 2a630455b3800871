"""`xentcheck bench` end to end on a tiny run: the files, the JSON keys, every implementation's row in
the Markdown tables (GPU rows saying "no GPU" on a machine without one), the ratios, and bad options.
No timing assertions: performance claims come from the benchmark's output, never from a timed test."""
import json
from collections import defaultdict

import pytest
from _cli import xentcheck, xentcheck_here

from xentcheck.backends import GPU_BUILTINS, TIMED
from xentcheck.bench import FILES, KINDS, RESULT_KEYS
from xentcheck.bench.render import title

TASKS = [("softmax", kind) for kind in KINDS]  # the run's tasks: one op keeps the compiles few
# the default backends but torch-compile (its compiles, here and in its memory process, are half the run's
# CPU: CI's 10 minutes); `xentcheck bench` without --backend times it (docs: benchmarks/RESULTS.md)
TIMED_HERE = tuple(spec for spec in TIMED if spec != "torch-compile")


def test_a_small_run(tmp_path):
    """One run (its compiles and memory subprocesses are the cost), every check on it."""
    run = _bench(tmp_path)
    _the_files_and_the_json_keys(run)
    _every_implementation_has_a_row_in_every_time_table(run)
    _the_fastest_has_ratio_one_and_the_others_more(run)


def _bench(out):
    backends = [arg for spec in TIMED_HERE for arg in ("--backend", spec)]
    code, stdout, stderr = xentcheck("bench", *backends, "--sizes", "8x20", "--dtypes", "float32", "--ops", "softmax",
                                     "--budget", "0.01", "--out", str(out), "--no-progress")
    assert code == 0, stderr
    return out, json.loads((out / "results.json").read_text()), (out / "RESULTS.md").read_text(), stdout


def _the_files_and_the_json_keys(run):
    out, data, markdown, stdout = run
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    assert {"tool", "version", "started", "seconds", "environment", "settings", "limits", "implementations",
            "results"} <= set(data)
    assert data["settings"]["sizes"] == [[8, 20]] and data["settings"]["dtypes"] == ["float32"]
    assert list(data["implementations"]) == list(TIMED_HERE)
    assert {"copy_bytes_per_s", "exp_per_s", "bandwidth", "exp_rate"} <= set(data["limits"])
    assert data["limits"]["bandwidth"] > 0 and data["limits"]["exp_rate"]["float32"] > 0
    assert len(data["results"]) == len(TIMED_HERE) * len(TASKS)
    for r in data["results"]:
        assert set(RESULT_KEYS) <= set(r)
        available = data["implementations"][r["impl"]]["available"]
        assert r["status"] == ("ok" if available else "unavailable"), r
        if r["status"] == "ok":
            assert r["median_s"] > 0 and len(r["samples_s"]) >= 3 and r["lower_bound_s"] > 0
            if r["impl"] not in GPU_BUILTINS:
                assert 0 < r["fraction_of_limit"] and r["peak_extra_bytes"] is not None
    assert data["implementations"]["numpy"]["available"]
    assert all(r["tracemalloc_bytes"] > 0 for r in data["results"] if r["impl"] == "numpy")
    assert "Wrote:" in stdout


def _every_implementation_has_a_row_in_every_time_table(run):
    _, data, markdown, _ = run
    for task in TASKS:
        table = markdown.split(f"### {title(*task)}, float32")[1].split("\n\n")[1]
        rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
        assert set(rows) == set(TIMED_HERE), task
        for name in set(GPU_BUILTINS) & set(TIMED_HERE):
            if not data["implementations"][name]["available"]:
                assert rows[name].count("no GPU") == len(data["settings"]["sizes"]), rows[name]
    assert "## Peak memory" in markdown and "## The first call of a new shape" in markdown


def _the_fastest_has_ratio_one_and_the_others_more(run):
    _, data, _, _ = run
    groups = defaultdict(list)
    for r in data["results"]:
        if r["status"] == "ok":
            groups[r["op"], r["kind"], r["dtype"], r["rows"], r["cols"],
                   data["implementations"][r["impl"]]["gpu"]].append(r)
    assert groups
    for group in groups.values():
        fastest = min(group, key=lambda r: r["median_s"])
        assert fastest["ratio_to_fastest"] == 1.0
        assert all(r["ratio_to_fastest"] >= 1.0 for r in group)
        assert all(r["ratio_to_fastest"] == r["median_s"] / fastest["median_s"] for r in group)


@pytest.mark.parametrize("args, message", [
    (["--sizes", "8by20"], "--sizes: expected ROWSxCOLS"),
    (["--sizes", "0x20"], "--sizes: expected ROWSxCOLS"),
    (["--sizes", "8x20,"], "--sizes: expected ROWSxCOLS"),
    (["--dtypes", "float8"], "--dtypes: unknown float8"),
    (["--dtypes", ","], "--dtypes: unknown (none given)"),
    (["--ops", "softmaxx"], "--ops: unknown softmaxx; choose from softmax, "),
    (["--budget", "0"], "--budget: must be a finite number of seconds > 0"),
    (["--budget", "abc"], "--budget: must be a finite number of seconds > 0"),
    (["--budget", "inf"], "--budget: must be a finite number of seconds > 0"),
])
def test_bad_options_are_one_line_errors(args, message, tmp_path):
    code, stdout, stderr = xentcheck_here("bench", *args, "--out", str(tmp_path / "out"))
    assert code == 2
    assert stderr.startswith(f"xentcheck bench: {message}") and stderr.count("\n") == 1, stderr
    assert not (tmp_path / "out" / "results.json").exists()


def test_an_out_that_is_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("")
    code, _, stderr = xentcheck_here("bench", "--out", str(tmp_path / "file"))
    assert code == 2 and stderr.startswith(f"xentcheck bench: --out {tmp_path / 'file'}: is a file; name a folder")
    assert stderr.count("\n") == 1


BACKEND_WITHOUT_THE_LOSSES = """
import numpy as np
from xentcheck.backends import Backend
from xentcheck.records import OPS


class Partial(Backend):
    name = "partial"

    def evaluate(self, op, x, **kwargs):
        if OPS[op].optional:
            raise NotImplementedError(f"no {op} here")
        return OPS[op].reference(x, **kwargs)

    def vjp(self, op, x, cotangent, **kwargs):
        if OPS[op].optional:
            raise NotImplementedError(f"no {op} here")
        if op == "cross_entropy":
            raise RuntimeError("this vjp is broken")
        return OPS[op].reference_vjp(x, cotangent, **kwargs)
"""


def test_any_backend_and_any_op_of_the_records(tmp_path):
    """--backend times a user's backend (as check loads it), --ops any record: a declined op is
    "unsupported", a crashing one "error", and neither ends the run."""
    (tmp_path / "partial.py").write_text(BACKEND_WITHOUT_THE_LOSSES)
    code, stdout, stderr = xentcheck("bench", "--sizes", "4x8", "--dtypes", "float64", "--budget", "0.01",
                                     "--ops", "logsumexp,cross_entropy,entropy", "--backend", "numpy",
                                     "--backend", f"{tmp_path / 'partial.py'}:Partial", "--out", str(tmp_path / "out"),
                                     "--no-progress")
    assert code == 0, stderr
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    status = {(r["impl"].split("/")[-1], r["op"], r["kind"]): r["status"] for r in data["results"]}
    assert len(status) == 2 * 3 * 2
    assert all(v == "ok" for (impl, op, kind), v in status.items() if impl == "numpy")
    partial = {(op, kind): v for (impl, op, kind), v in status.items() if impl != "numpy"}
    assert partial == {("logsumexp", "value"): "ok", ("logsumexp", "vjp"): "ok", ("cross_entropy", "value"): "ok",
                       ("cross_entropy", "vjp"): "error", ("entropy", "value"): "unsupported",
                       ("entropy", "vjp"): "unsupported"}
    assert "this vjp is broken" in (tmp_path / "out" / "RESULTS.md").read_text()


def test_the_lm_head_is_bound_by_its_matmuls(tmp_path):
    """linear_cross_entropy's sizes are tokens x vocabulary (hidden 2048); its lower bound is its matmul flops
    at the best measured matmul rate (2 N H V for the value, 3 times that with the gradients)."""
    code, _, stderr = xentcheck_here("bench", "--backend", "numpy", "--ops", "linear_cross_entropy", "--sizes", "4x64",
                                     "--dtypes", "float32", "--budget", "0.01", "--out", str(tmp_path), "--no-progress")
    assert code == 0, stderr
    data = json.loads((tmp_path / "results.json").read_text())
    rate = data["limits"]["matmul_rate"]["float32"]
    assert rate > 0 and any(k.startswith("np.matmul") for k in data["limits"]["matmul_flops_per_s"])
    for r in data["results"]:
        flops = 2 * 4 * 2048 * 64 * (1 if r["kind"] == "value" else 3)
        assert r["status"] == "ok" and r["lower_bound_s"] >= flops / rate, r
    assert "hidden 2048" in (tmp_path / "RESULTS.md").read_text()
