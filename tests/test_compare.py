"""`xentcheck compare` end to end on a small run: the report's files and schema, escaping, a planted bug
standing out, and backends that raise, hang, crash or answer in the wrong shape or dtype."""
import html
import json
from importlib import metadata
from pathlib import Path

import pytest
from _cli import xentcheck_here
from conftest import shared

from xentcheck.compare import run_compare
from xentcheck.records import OPS
from xentcheck.report import PLOTS, terminal_summary, write_all

TESTS = Path(__file__).parent
DUMMY = f"{TESTS / 'dummy_backends.py'}"
HOSTILE = "<script>alert('xentcheck')</script>&amp;"
RESULT_KEYS = {"backend", "op", "kind", "dtype", "max_ulp", "median_ulp", "p99_ulp", "max_rel_err", "n"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    def compare():
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))  # a cold, private oracle cache
            specs = ["numpy", "torch", f"{DUMMY}:HostileName", f"{DUMMY}:Misbehaving",
                     f"{TESTS / 'planted_bugs.py'}:SlightlyWrongExp"]
            results = run_compare(specs, dtypes=["float32", "float64"], quick=True, timeout=5)
        out = tmp_path_factory.mktemp("report")
        write_all(results, out)
        return {k: v for k, v in results.items() if k != "_measurements"}, out

    return shared(tmp_path_factory, "compare-run", compare)


def cell(results, backend, op, kind, dtype):
    [row] = [r for r in results["results"]
             if (r["backend"], r["op"], r["kind"], r["dtype"]) == (backend, op, kind, dtype)]
    return row


def test_the_report_is_written_with_the_documented_schema(run):
    results, out = run
    for name in ("results.json", "report.md", "report.html", *PLOTS):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "results.json").read_text())
    assert {"environment", "results", "semantics"} <= set(data)
    assert data["environment"]["numpy"] and data["environment"]["python"]
    # the installed version, whether or not this process imported torch (the backends run in workers)
    assert data["environment"]["torch"] == metadata.version("torch")
    for row in data["results"]:
        assert RESULT_KEYS <= set(row)
        assert row["op"] in OPS and row["kind"] in ("value", "vjp", "jvp") and row["dtype"] in ("float32", "float64")
    # a jvp (forward mode) for every op whose record derives one
    assert {(r["op"], r["kind"]) for r in data["results"]} == {(op, k) for op in OPS for k in ("value", "vjp", "jvp")
                                                               if k != "jvp" or OPS[op].jvp}
    edge = data["semantics"][0]
    assert {"edge", "op", "kind", "dtype", "reference", "backends"} <= set(edge)
    assert {"backend", "answer", "differs", "declined", "known_departure",
            "departure_not_as_documented"} <= set(edge["backends"][0])
    assert {b["spec"]: b["compute_formats"]["float32"]["format"] for b in data["backends"]}["numpy"] == "float32"


def test_the_terminal_table_is_aligned_and_marks_the_cases_that_failed_to_run(run):
    results, _ = run
    rows = terminal_summary(results).splitlines()[1:-1]
    assert len({len(row) for row in rows}) == 1  # long op and backend names widen their columns
    assert any("!" in row for row in rows if row.startswith("dummy-misbehaving"))
    assert terminal_summary(results).endswith("! = some cases failed to run.")
    clean = {**results, "results": [r for r in results["results"] if r["backend"] == "numpy"]}
    assert "!" not in terminal_summary(clean)


def test_numpy_float64_is_measured_against_the_oracle_not_against_itself(run):
    results, _ = run
    for op in OPS:
        assert cell(results, "numpy", op, "value", "float32")["max_ulp"] <= 1
    # float64 has no wider type to hide in: its own rounding shows up, small and non-zero
    assert 0 < cell(results, "numpy", "softmax", "value", "float64")["max_ulp"] < 1e4


def test_a_one_in_a_thousand_exp_error_stands_out_by_orders_of_magnitude(run):
    results, _ = run
    for dtype in ("float32", "float64"):
        planted = cell(results, "planted", "softmax", "value", dtype)["p99_ulp"]
        clean = max(cell(results, b, "softmax", "value", dtype)["max_ulp"] for b in ("numpy", "torch"))
        assert planted > 100 * max(clean, 1), (dtype, planted, clean)
    [row] = [d for d in results["disagreements"] if d["a"] == "numpy" and d["b"] == "planted"
             and (d["op"], d["kind"], d["dtype"]) == ("softmax", "value", "float32")]
    assert row["a_closer"] == row["differ"] > 0  # the oracle sides with numpy on every element


def test_the_bounds_hold_for_numpy_and_torch_and_not_for_a_planted_exp_error(run):
    """Every element of numpy and torch within its derived bound (departures aside); the 1e-3 exp error far
    beyond it; and the bound slack of the frameworks on ordinary rows at least 1 (a bound they never exceed)."""
    results, out = run
    for r in results["results"]:
        if r["backend"] in ("numpy", "torch"):
            assert r["beyond_bound"] == 0 and r["checked_against_bound"] > 0, r
    assert cell(results, "planted", "softmax", "value", "float32")["beyond_bound"] > 0
    slack = {(r["op"], r["kind"], r["dtype"]): r for r in results["slack"]}
    measured = {(op, kind) for op, kind, _ in slack}  # (the hinge's gradient, -r and r/k, is exact in torch)
    assert {(op, k) for op in ("softmax", "log_softmax", "logsumexp", "cross_entropy") for k in ("value", "vjp", "jvp")} \
        <= measured <= {(op, k) for op in OPS for k in ("value", "vjp", "jvp")}
    assert all(r["tightest"] >= 1 and r["tightest"] <= r["median"] <= r["loosest"] for r in slack.values())
    assert "## Bound slack" in (out / "report.md").read_text()
    assert "planted" in (out / "report.md").read_text().split("## Errors beyond the derived bound")[1][:2000]


def test_the_html_report_escapes_a_hostile_backend_name(run):
    results, out = run
    page = (out / "report.html").read_text()
    assert HOSTILE not in page and "<script>" not in page
    assert html.escape(HOSTILE) in page
    assert cell(results, HOSTILE, "softmax", "value", "float32")["max_ulp"] <= 1  # measured like any other


def test_a_backend_that_raises_hangs_crashes_or_answers_wrongly_is_recorded_and_the_run_goes_on(run):
    results, out = run
    name = "dummy-misbehaving"

    def problems(op, kind):
        return " ".join(cell(results, name, op, kind, "float32")["problems"])

    assert "raised RuntimeError: softmax kernel not compiled" in problems("softmax", "value")
    assert "returned shape" in problems("log_softmax", "value")
    assert "returned dtype float64, expected float32" in problems("logsumexp", "value")
    assert "hung past the per-call timeout" in problems("cross_entropy", "value")
    assert "the process died (exit 7)" in problems("softmax", "vjp")
    # after the hang and the crashes the restarted worker went on answering
    assert cell(results, name, "cross_entropy", "value", "float32")["n"] > 0
    assert cell(results, name, "log_softmax", "vjp", "float32")["max_ulp"] <= 1
    assert "hung past the per-call timeout" in (out / "report.md").read_text()




@pytest.mark.parametrize("args, message", [
    (["--ops", "softmax,softmin"], "--ops: unknown softmin; choose from softmax"),
    (["--dtypes", "float8"], "--dtypes: unknown float8"),
    (["--timeout", "0"], "--timeout: must be > 0 seconds"),
])
def test_bad_options_are_one_line_errors(args, message):
    code, out, err = xentcheck_here("compare", *args, "--no-progress")
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize("backends, why", [
    ("numpy,nmupy", "cannot load nmupy: unknown backend 'nmupy'"),
    ("numpy,no_such_module:Backend", "cannot load no_such_module:Backend: ModuleNotFoundError"),
])
def test_a_named_backend_that_cannot_load_is_a_one_line_error_before_any_work(backends, why, tmp_path):
    code, out, err = xentcheck_here("compare", "--backends", backends, "--out", str(tmp_path / "r"))
    assert code == 2 and err.startswith(f"xentcheck compare: --backends: {why}") and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_an_out_that_is_a_file_fails_before_any_work(tmp_path):
    (tmp_path / "file").write_text("")
    code, _, err = xentcheck_here("compare", "--backends", "numpy", "--out", str(tmp_path / "file"))
    assert code == 2 and "--out" in err and "is a file; name a folder" in err

def test_a_subgradient_the_bound_admits_is_still_marked_as_a_different_answer(run):
    """At the hinge's kink the bound admits either side (a rounding of the margin could land there), but the
    reference's exact 0 is its semantics: torch's clamp subgradient is marked as differing, as its documented
    departure."""
    results, _ = run
    [edge] = [e for e in results["semantics"] if e["edge"] == "hinge: margin exactly met, gradient"]
    answers = {b["backend"]: b for b in edge["backends"]}
    assert not answers["numpy"]["differs"]
    assert answers["torch"]["differs"] and answers["torch"]["known_departure"] == ["hinge-kink-subgradient-clamp"]
