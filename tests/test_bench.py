"""`xentcheck bench` end to end on a tiny run: the files, the JSON keys, every implementation's row in
the Markdown tables (GPU rows saying "no GPU" on a machine without one), the ratios, and bad options.
No timing assertions: performance claims come from the benchmark's output, never from a timed test."""
import json
from collections import defaultdict

import pytest
from _cli import xentcheck

from xentcheck.bench import CPU_IMPLS, FILES, GPU_IMPLS, RESULT_KEYS, TASKS

ALL_IMPLS = CPU_IMPLS + GPU_IMPLS


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    code, stdout, stderr = xentcheck("bench", "--sizes", "8x20,16x64", "--dtypes", "float32", "--budget", "0.01",
                                     "--out", str(out), "--no-progress")
    assert code == 0, stderr
    return out, json.loads((out / "results.json").read_text()), (out / "RESULTS.md").read_text(), stdout


def test_the_files_and_the_json_keys(run):
    out, data, markdown, stdout = run
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    assert {"tool", "version", "started", "seconds", "environment", "settings", "limits", "implementations",
            "results"} <= set(data)
    assert data["settings"]["sizes"] == [[8, 20], [16, 64]] and data["settings"]["dtypes"] == ["float32"]
    assert set(data["implementations"]) == set(ALL_IMPLS)
    assert {"copy_bytes_per_s", "exp_per_s", "bandwidth", "exp_rate"} <= set(data["limits"])
    assert data["limits"]["bandwidth"] > 0 and data["limits"]["exp_rate"]["float32"] > 0
    assert len(data["results"]) == len(ALL_IMPLS) * len(TASKS) * 2
    for r in data["results"]:
        assert set(RESULT_KEYS) <= set(r)
        available = data["implementations"][r["impl"]]["available"]
        assert r["status"] == ("ok" if available else "unavailable"), r
        if r["status"] == "ok":
            assert r["median_s"] > 0 and len(r["samples_s"]) >= 3 and r["lower_bound_s"] > 0
            if r["impl"] in CPU_IMPLS:
                assert 0 < r["fraction_of_limit"] and r["peak_extra_bytes"] is not None
    assert data["implementations"]["numpy-ref"]["available"]
    assert all(r["tracemalloc_bytes"] > 0 for r in data["results"] if r["impl"] == "numpy-ref")
    assert "Wrote:" in stdout


def test_every_implementation_has_a_row_in_every_time_table(run):
    _, data, markdown, _ = run
    for title in TASKS.values():
        table = markdown.split(f"### {title}, float32")[1].split("\n\n")[1]
        rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
        assert set(rows) == set(ALL_IMPLS), title
        for name in GPU_IMPLS:
            if not data["implementations"][name]["available"]:
                assert rows[name].count("no GPU") == 2, rows[name]
    assert "## Peak memory" in markdown and "## Compilation" in markdown


def test_the_fastest_has_ratio_one_and_the_others_more(run):
    _, data, _, _ = run
    groups = defaultdict(list)
    for r in data["results"]:
        if r["status"] == "ok":
            groups[r["task"], r["dtype"], r["rows"], r["cols"], data["implementations"][r["impl"]]["gpu"]].append(r)
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
    (["--budget", "0"], "--budget: must be a finite number of seconds > 0"),
    (["--budget", "abc"], "--budget: must be a finite number of seconds > 0"),
    (["--budget", "inf"], "--budget: must be a finite number of seconds > 0"),
])
def test_bad_options_are_one_line_errors(args, message, tmp_path):
    code, stdout, stderr = xentcheck("bench", *args, "--out", str(tmp_path / "out"), timeout=120)
    assert code == 2
    assert stderr.startswith(f"xentcheck bench: {message}") and stderr.count("\n") == 1, stderr
    assert not (tmp_path / "out" / "results.json").exists()


def test_an_out_that_is_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("")
    code, _, stderr = xentcheck("bench", "--out", str(tmp_path / "file"), timeout=120)
    assert code == 2 and stderr.startswith(f"xentcheck bench: --out {tmp_path / 'file'}: cannot make that folder")
    assert stderr.count("\n") == 1
