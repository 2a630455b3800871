"""`xentcheck check` end to end: it catches every planted bug, passes the built-in backends, and reports.

Runs on torch and JAX are subprocesses, as a user or CI would start them; runs on NumPy backends (the planted
bugs) run in this process (the same command, without an interpreter start). Planted bugs run with -x (the first falsified
property is enough to prove the catch) on the ops they break; the built-in backends run the whole ci
profile, one group of ops per test so that pytest-xdist spreads them over the cores.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from _cli import xentcheck, xentcheck_here

import planted_bugs
from planted_bugs import PLANTED

from xentcheck.records import OPS

TESTS = Path(__file__).parent


@pytest.mark.parametrize("bug", PLANTED)
def test_every_planted_bug_is_caught(bug):
    planted = getattr(planted_bugs, bug)
    selection = ("-k", planted.properties) if hasattr(planted, "properties") else ()
    code, out, err = xentcheck_here("check", "--backend", f"tests/planted_bugs.py:{bug}", "--ops", ",".join(planted.breaks),
                               "--dtypes", getattr(planted, "dtypes", "float32,float64"), *selection, "-x",
                               "--no-progress")
    assert code == 1, f"{bug} was not caught (exit {code}):\n{out[-3000:]}\n{err[-2000:]}"
    assert "FALSIFIED" in out and "counterexample:" in out and "reproducer:" in out


# the ops by their records' family; the loss family's together (one run, as its ops are optional)
OP_GROUPS = {"rows": tuple(op for op, r in OPS.items() if r.family == "rows"),
             "cross_entropy": tuple(op for op, r in OPS.items() if r.family == "cross_entropy"),
             "loss_family": tuple(op for op, r in OPS.items() if r.family in ("index_loss", "distribution")),
             "lm_head": tuple(op for op, r in OPS.items() if r.family == "linear")}
ALL_DTYPES = ("float16", "bfloat16", "float32", "float64")
# Fewer dtypes where more would add time, not coverage (CI's 10 minutes): every group passes in every dtype
# (`xentcheck check --backend B`). float32 takes the same code paths and bounds as float64 (each computed in
# itself), and bfloat16 the same as float16 (both computed in float32; float16 has the overflow edges). So here:
# each framework's rows and cross-entropy, a half format in one group and float64 (where finite differences
# judge its gradients) in the other (tests/test_backends_agree.py: the rows in every dtype, cross-entropy's
# every option in float16 and float64); the LM head in the format LLMs train in (JAX compiles a program per
# shape and option there); the loss family in float32 (tests/test_losses.py: every dtype); and the reference,
# which computes every dtype in float64 and rounds once, in bfloat16 (tests/test_reference_vs_oracle.py
# holds it to the oracle in every dtype).
GROUP_DTYPES = {"lm_head": ("bfloat16",), "loss_family": ("float32",), "rows": ("float16",),
                "cross_entropy": ("float64",)}
GROUP_DTYPES_JAX = {"lm_head": ("float32",), "rows": ("float64",), "cross_entropy": ("float16",)}
NUMPY_DTYPES = ("bfloat16",)
# A documented departure each framework must show in each group (a change in the framework is noticed).
DEPARTURES = {"rows": {"torch": "logsumexp-gradient-with-plus-inf", "jax": "logsumexp-gradient-with-plus-inf"},
              "cross_entropy": {"torch": "all-ignored-mean-gradient", "jax": "all-ignored-mean-gradient"},
              "lm_head": {"torch": "all-ignored-mean-gradient-linear", "jax": "all-ignored-mean-gradient-linear"}}


# not numpy's LM head (tests/test_linear_reference.py), nor torch's and JAX's loss family (tests/test_losses.py
# holds them to the reference in every dtype and their hinge subgradients to the documented departures)
@pytest.mark.parametrize("spec, group", [(spec, group) for spec in ("numpy", "torch", "jax") for group in OP_GROUPS
                                         if (spec, group) not in {("numpy", "lm_head"), ("torch", "loss_family"),
                                                                  ("jax", "loss_family")}])
def test_the_built_in_backends_pass(spec, group, tmp_path):
    pytest.importorskip({"numpy": "numpy", "torch": "torch", "jax": "jax"}[spec])
    report = tmp_path / "report.json"
    junit = tmp_path / "junit.xml"
    ops = OP_GROUPS[group]
    dtypes = (GROUP_DTYPES_JAX if spec == "jax" else {}).get(group, GROUP_DTYPES.get(group, ALL_DTYPES))
    dtypes = NUMPY_DTYPES if spec == "numpy" else dtypes
    run = xentcheck_here if spec == "numpy" else xentcheck  # (a framework's global settings stay in its process)
    code, out, err = run("check", "--backend", spec, "--ops", ",".join(ops), "--dtypes", ",".join(dtypes),
                         "--no-progress", "--json", str(report), "--junitxml", str(junit))
    assert code == 0, out[-4000:] + err[-2000:]
    data = json.loads(report.read_text())
    assert data["exit_code"] == 0 and data["backend"]["spec"] == spec and not data["failures"]
    assert {(r["op"], r["dtype"]) for r in data["summary"]} == {(op, dtype) for op in ops for dtype in dtypes}
    passed = sum(r["passed"] for r in data["summary"])
    assert passed >= 6 * len(dtypes) and junit.read_text().count("<testcase") >= passed
    # every property passed on examples the backend answered (the ci profile exercises each of them)
    assert all(t["examples"] >= 1 for t in data["tests"] if t["outcome"] == "passed")
    if spec != "numpy":  # torch and JAX depart from the reference on documented edges
        assert DEPARTURES[group][spec] in {s["departure"] for s in data["semantic_differences"]}


def test_jax_passes_on_the_callers_own_shapes_too(tmp_path):
    """The jax backend pads inputs to shape buckets (compiled programs reused); jax-unpadded runs XLA on the
    caller's shapes (another reduction order and kernel): it passes too (one compile per shape, so softmax
    in float32 only)."""
    pytest.importorskip("jax")
    report = tmp_path / "report.json"
    code, out, err = xentcheck("check", "--backend", "jax-unpadded", "--ops", "softmax", "--dtypes",
                               "float32", "-k", "equals", "--no-progress", "--json", str(report))
    assert code == 0, out[-4000:] + err[-2000:]
    data = json.loads(report.read_text())
    assert data["backend"]["name"] == "jax-unpadded" and sum(r["passed"] for r in data["summary"]) >= 3


def test_naive_softmax_fails_with_an_overflow_counterexample():
    code, out, _ = xentcheck_here("check", "--backend", "naive", "--ops", "softmax", "-x", "--no-progress")
    assert code == 1 and "overflow" in out  # the edge 'past exp overflow' or an overflow-anchored logit


def test_strict_makes_a_semantic_difference_fail():
    args = ("check", "--backend", "tests/dummy_backends.py:ZeroGradientOfAnEmptyMean", "--ops", "cross_entropy",
            "--dtypes", "float32", "-k", "vjp_equals", "--no-progress")
    code, out, _ = xentcheck_here(*args)
    assert code == 0 and "all-ignored-mean-gradient" in out, out[-3000:]
    code, out, _ = xentcheck_here(*args, "--strict")
    assert code == 1 and "semantic difference (--strict)" in out, out[-3000:]


def test_an_adapter_without_the_head_options_is_reported_as_not_offering_them():
    """Written before z_loss and softcap were added: their TypeError is declining them (unsupported), and every
    other option still passes."""
    code, out, _ = xentcheck_here("check", "--backend", "tests/dummy_backends.py:WrittenBeforeTheHeadOptions",
                                  "--ops", "cross_entropy", "--dtypes", "float32", "-k", "equals", "--no-progress")
    assert code == 0, out[-3000:]
    assert "takes no z_loss= option" in out and "takes no softcap= option" in out, out[-3000:]


def test_an_adapter_that_swallows_the_head_options_fails_and_is_told_so():
    code, out, _ = xentcheck_here("check", "--backend", "tests/dummy_backends.py:SwallowsUnknownOptions", "--ops",
                                  "cross_entropy", "--dtypes", "float32", "-k", "value_equals", "-x", "--no-progress")
    assert code == 1 and "the backend seems to ignore" in out, out[-3000:]


def test_the_form_of_the_lm_heads_gradients_is_the_contracts_and_only_that():
    """A list for the tuple, zeros for an absent bias's gradient: passed. Two entries instead of three: every
    gradient property fails, saying what form the contract asks for (not a crash inside the suite)."""
    args = ("--ops", "linear_cross_entropy", "--dtypes", "float32", "-k", "vjp_equals or ignored", "--profile", "edges",
            "--no-progress")
    code, out, _ = xentcheck_here("check", "--backend", "tests/dummy_backends.py:LinearGradientsAsAList", *args)
    assert code == 0, out[-3000:]
    code, out, _ = xentcheck_here("check", "--backend", "tests/dummy_backends.py:LinearWithoutTheBiasEntry", *args)
    want = "must return a tuple (d hidden, d weight, d bias or None); got a tuple of 2 entries"
    assert code == 1 and out.count(want) >= 2 and "(crash)" not in out, out[-3000:]


@pytest.mark.parametrize("args, message", [
    (("--backend", "no_such_backend"), "unknown backend 'no_such_backend'"),
    (("--backend", "tests/nothing_here.py:X"), "no such file"),
    (("--backend", "numpy", "--ops", "softmaxx"), "--ops: unknown softmaxx"),
    (("--backend", "numpy", "--dtypes", "float8"), "--dtypes: unknown float8"),
    (("--backend", "numpy", "--profile", "fast"), "--profile: must be one of edges, ci, dev, explore"),
    (("--backend", "numpy", "-k", "no_property_has_this_name"), "no property matches"),
    (("--backend", "numpy", "--timeout", "-1"), "--timeout: must be from 0 to 1e6 seconds (0: no limit); got -1.0"),
    (("--backend", "numpy", "--timeout", "nan"), "--timeout: must be from 0 to 1e6 seconds (0: no limit); got nan"),
    (("--backend", "numpy", "--timeout", "inf"), "--timeout: must be from 0 to 1e6 seconds (0: no limit); got inf"),
])
def test_bad_options_exit_2_with_one_line(args, message):
    code, out, err = xentcheck_here("check", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_an_unsupported_dtype_is_reported_not_failed(tmp_path):
    backend = tmp_path / "half_shy.py"
    backend.write_text(
        "import numpy as np\n"
        "from xentcheck.backends.numpy_backend import NumpyBackend\n"
        "class HalfShy(NumpyBackend):\n"
        "    name = 'half-shy'\n"
        "    def softmax(self, x, axis=-1, temperature=1.0):\n"
        "        if np.asarray(x).dtype.name in ('float16', 'bfloat16'):\n"
        "            raise NotImplementedError('no half precision here')\n"
        "        return super().softmax(x, axis, temperature)\n")
    code, out, _ = xentcheck_here("check", "--backend", f"{backend}:HalfShy", "--ops", "softmax", "-k", "value_equals",
                             "--no-progress")
    assert code == 0, out
    assert "no half precision here" in out
    table = {line.split()[1]: line.split()[2:] for line in out.splitlines() if line.startswith("softmax ")}
    # passed, failed, declined, unsupported, semantic
    assert table["float16"] == ["0", "0", "0", "1", "0"] and table["float32"] == ["1", "0", "0", "0", "0"]


def test_declining_hard_inputs_is_a_failure(tmp_path):
    """The textbook softmax that declines every input it would overflow on: not 'unsupported', a failure whose
    counterexample is a declined input."""
    backend = tmp_path / "shy.py"
    backend.write_text(
        "import numpy as np\n"
        "from xentcheck.backends.numpy_backend import NumpyBackend\n"
        "class Shy(NumpyBackend):\n"
        "    name = 'shy'\n"
        "    def softmax(self, x, axis=-1, temperature=1.0):\n"
        "        x = np.asarray(x)\n"
        "        if np.nanmax(np.abs(x.astype(float)), initial=0) > 10:\n"
        "            raise NotImplementedError('would overflow')\n"
        "        e = np.exp(x / temperature)\n"
        "        return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)\n")
    report = tmp_path / "r.json"
    code, out, _ = xentcheck_here("check", "--backend", f"{backend}:Shy", "--ops", "softmax", "--dtypes", "float32",
                             "-k", "value_equals", "--no-progress", "--json", str(report))
    assert code == 1, out
    data = json.loads(report.read_text())
    assert data["summary"][0]["declined"] == 1 and data["failures"][0]["kind"] == "declined"
    assert "would overflow" in data["failures"][0]["error"]


def test_declined_ops_and_dtypes_are_unsupported_never_passed(tmp_path):
    """A backend that answers float32 softmax only: every other op and dtype is unsupported, none passes."""
    backend = tmp_path / "only.py"
    backend.write_text(
        "import numpy as np\n"
        "from xentcheck.backends.numpy_backend import NumpyBackend\n"
        "class Only(NumpyBackend):\n"
        "    name = 'only-float32-softmax'\n"
        "    def softmax(self, x, axis=-1, temperature=1.0):\n"
        "        if np.asarray(x).dtype != np.float32:\n"
        "            raise NotImplementedError('float32 only')\n"
        "        return super().softmax(x, axis, temperature)\n"
        "    def _no(self, *args, **kwargs):\n"
        "        raise NotImplementedError('softmax only')\n"
        "    log_softmax = logsumexp = cross_entropy = vjp = jvp = _no\n")
    report = tmp_path / "r.json"
    code, out, _ = xentcheck_here("check", "--backend", f"{backend}:Only", "--ops", "softmax,log_softmax,cross_entropy",
                             "--dtypes", "float32,float64", "--no-progress", "--json", str(report))
    assert code == 0, out
    rows = {(r["op"], r["dtype"]): r for r in json.loads(report.read_text())["summary"]}
    assert rows["softmax", "float32"]["passed"] > 0
    for key, row in rows.items():
        if key != ("softmax", "float32"):
            assert row["passed"] == 0 and row["failed"] == 0 and row["unsupported"] > 0, (key, row)


def test_systematic_errors_just_outside_the_bounds_are_caught(tmp_path):
    """tests/planted_bugs.py:SystematicErrors scales every value by 1 - k u and every vjp and jvp by 1 + k u, k a
    few units beyond the tightest tolerance on ordinary rows: each op's value, vjp and (where derived) jvp
    agreement fails in every dtype."""
    report = tmp_path / "r.json"
    # the explicit edges alone (--profile edges): their ordinary rows are where the bounds are tightest, and the
    # ci profile stops at the same failing edges (a third of this test's time went on generating for nothing)
    code, out, err = xentcheck_here("check", "--backend", "tests/planted_bugs.py:SystematicErrors", "-k",
                               "equals_reference or equals_analytic", "--profile", "edges", "--no-progress", "--json",
                               str(report))
    assert code == 1, out[-2000:] + err[-2000:]
    kinds = {"value": "value_equals_reference", "vjp": "vjp_equals_analytic", "jvp": "jvp_equals_reference"}
    failed = {(f["op"], kind, f["dtype"]) for f in json.loads(report.read_text())["failures"]
              for kind, name in kinds.items() if name in f["property"]}
    assert failed == {(op, kind, dtype) for op, record in OPS.items() for kind in kinds
                      if kind != "jvp" or record.jvp for dtype in ("float16", "bfloat16", "float32", "float64")}


def test_the_reproducer_runs_and_shows_the_bug(tmp_path):
    report = tmp_path / "r.json"
    code, _, _ = xentcheck_here("check", "--backend", "tests/planted_bugs.py:TemperatureMultiplied", "-x",
                           "--no-progress", "--json", str(report))
    assert code == 1
    snippet = json.loads(report.read_text())["failures"][0]["reproducer"]
    result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, cwd=TESTS.parent,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    diffs = [float(line.split("=")[-1]) for line in result.stdout.splitlines() if line.startswith("max |got")]
    assert diffs and max(diffs) > 1e-3  # the planted bug, visible by running the snippet alone


def test_a_backend_that_writes_into_its_input_fails_and_the_reproducer_shows_it(tmp_path):
    report = tmp_path / "r.json"
    code, _, _ = xentcheck_here("check", "--backend", "tests/planted_bugs.py:GradientWrittenIntoTheLogits", "--ops",
                                "cross_entropy", "--dtypes", "float32", "-k", "vjp_equals_analytic", "-x",
                                "--no-progress", "--json", str(report))
    assert code == 1
    failure = json.loads(report.read_text())["failures"][0]
    assert "vjp(cross_entropy) changed its input x in place" in failure["error"]
    result = subprocess.run([sys.executable, "-c", failure["reproducer"]], capture_output=True, text=True,
                            cwd=TESTS.parent, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "x changed in place: True" in result.stdout


def test_a_worker_that_dies_in_the_backend_fails_its_property_with_a_rerun_line():
    """An abort in native code (or a hang past --timeout) ends the worker process, and pytest-xdist starts another:
    the property it was running is reported as failed, not lost, with the command that reruns it alone."""
    code, out, err = xentcheck_here("check", "--backend", "tests/dummy_backends.py:DiesOrHangsOnNaN", "--profile",
                                    "edges", "--ops", "log_softmax", "--dtypes", "float32", "-k",
                                    "value_equals_reference", "--workers", "1", "--no-progress")
    assert code == 1, out + err
    assert "FALSIFIED test_log_softmax_value_equals_reference [log_softmax, float32] (crash)" in out
    assert ("the process running it died" in out and "rerun it alone, without --workers, to see where: xentcheck "
            "check --backend tests/dummy_backends.py:DiesOrHangsOnNaN -k test_log_softmax_value_equals_reference "
            "--dtypes float32") in out
    assert "0 passed, 1 failed" in out


def test_without_workers_a_hang_ends_the_run_with_where_it_hung():
    code, out, err = xentcheck("check", "--backend", "tests/dummy_backends.py:DiesOrHangsOnNaN", "--profile", "edges",
                               "--ops", "softmax", "--dtypes", "float32", "-k", "value_equals_reference",
                               "--timeout", "1", "--no-progress", timeout=120)
    assert code == 1
    assert err.startswith("Timeout (0:00:01)!") and 'dummy_backends.py", line' in err and "in evaluate" in err


def test_pytest_pyargs_runs_the_same_suite():
    result = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "xentcheck.properties", "--backend", "numpy",
                             "--ops", "logsumexp", "--dtypes", "float64", "-q", "-p", "no:cacheprovider"],
                            capture_output=True, text=True, timeout=300, cwd="/")
    assert result.returncode == 0 and " passed" in result.stdout, result.stdout[-2000:]


@pytest.mark.parametrize("option, path, message", [
    ("--json", "{d}/no/such/dir/r.json", "its folder does not exist"),
    ("--json", "{d}", "is a folder; name a file in it"),
    ("--junitxml", "{d}/missing/r.xml", "its folder does not exist"),
])
def test_a_bad_output_path_fails_before_any_work(option, path, message, tmp_path):
    code, out, err = xentcheck_here("check", "--backend", "numpy", option, path.format(d=tmp_path))
    assert code == 2 and out == "" and message in err and err.count("\n") == 1, err


def test_optax_declares_its_nans_from_zero_times_minus_inf_and_is_held_to_them():
    """optax's softmax_cross_entropy is NaN for a probability target with a -inf logit at a class of target 0,
    and its kl_divergence NaN where p_i = q_i = 0 (0 * -inf both): the answers of documented departures, which
    the adapter declares by name. check reports them as semantic differences; and a
    backend that answers the same without declaring them fails (the classification follows the declaration;
    --strict fails a declared one: test_strict_makes_a_semantic_difference_fail)."""
    pytest.importorskip("optax")
    args = ("check", "--backend", "optax", "--ops", "cross_entropy,kl_divergence", "--dtypes", "float32", "-k",
            "value_equals", "--no-progress")
    code, out, err = xentcheck(*args, timeout=300)
    assert code == 0, out[-3000:] + err[-2000:]
    for name in ("zero-coefficient-minus-inf-logit", "kl-div-zero-zero-nan"):
        assert f": {name}: " in out, out[-3000:]
    code, out, err = xentcheck("check", "--backend", "tests/dummy_backends.py:UndeclaredOptax", *args[3:], timeout=300)
    assert code == 1 and "got NaN" in out and "semantic difference" not in out.split("Bounds assume")[0], \
        out[-3000:] + err[-2000:]


def test_an_unknown_departure_name_is_a_usage_error():
    code, out, err = xentcheck_here("check", "--backend", "tests/dummy_backends.py:MisnamedDeparture", "--no-progress")
    assert code == 2 and "departures: unknown departure 'zero-times-inf'" in err, out[-2000:] + err[-2000:]


def test_many_failures_stay_readable_and_small(tmp_path):
    """A backend with several bugs, one of them on 131072-entry rows: a few kB of terminal per failure, a JSON
    report under 1 MB, the large inputs in .npy files beside it, and a reproducer that loads them and runs."""
    report = tmp_path / "r.json"
    code, out, err = xentcheck_here("check", "--backend", "tests/planted_bugs.py:ManyBugs", "--ops",
                               "softmax,log_softmax,cross_entropy", "--dtypes", "float32", "-k",
                               "equals_reference or equals_analytic", "--no-progress", "--json", str(report))
    assert code == 1, out[-3000:] + err[-2000:]
    failures = json.loads(report.read_text())["failures"]
    assert out.count("FALSIFIED") == len(failures) >= 3
    ce = {f["kind"]: f for f in failures if f["property"] == "test_cross_entropy_value_equals_reference"}
    assert set(ce) == {"crash", "assertion"}, failures  # one property, two distinct failures, each shrunk
    assert "raised in evaluate at" in ce["crash"]["error"] and "131072)" in ce["crash"]["case"]
    assert "label_smoothing=0.2" in ce["assertion"]["case"] and "expected" in ce["assertion"]["error"]
    assert len(out) < 4000 * (len(failures) + 1), len(out)
    assert report.stat().st_size < 1_000_000
    assert list((tmp_path / "r-arrays").glob("*.npy"))
    [snippet] = [f["reproducer"] for f in failures if "np.load(" in f["reproducer"]][:1]
    result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, cwd=TESTS.parent,
                            timeout=120)
    assert result.returncode == 0 and "got" in result.stdout, result.stderr[-2000:]


def test_keras_focal_loss_clipping_is_found():
    """Keras's categorical_focal_crossentropy clips p to [1e-7, 1 - 1e-7]: a confidently wrong example costs 4.03,
    not 51.25 (the keras backend is an optional extra: skipped where Keras is not installed)."""
    if importlib.util.find_spec("keras") is None:  # (importing it here would pick its TensorFlow backend)
        pytest.skip("keras is not installed (pip install 'xentcheck[keras]')")
    code, out, err = xentcheck("check", "--backend", "keras", "--ops", "focal_loss", "--dtypes", "float32", "-k",
                               "value_equals", "--no-progress", timeout=300)
    assert code == 1 and "expected 51.25" in out and "got 4.029" in out, out[-3000:] + err[-2000:]


def test_finite_differences_judge_the_backends_own_function():
    """A backend whose forward is another function (softmax(16 x)), differentiated exactly: the value
    property fails it, the finite-difference property does not (its examples counted as not judged)."""
    code, out, err = xentcheck_here("check", "--backend", "tests/dummy_backends.py:ItsOwnSoftmax", "--ops",
                               "softmax,logsumexp", "--dtypes", "float64", "-k", "finite_differences or value_equals",
                               "--no-progress")
    assert code == 1, out[-3000:] + err[-2000:]
    assert "FALSIFIED test_softmax_value_equals_reference" in out, out[-3000:]
    assert "matches_finite_differences [" not in out.split("Examples not judged")[0], out[-3000:]  # (the tolerance
    # of the reference's function fails it: off by 2.8e-12, allowed 4.2e-13 for softmax)
    for op in ("softmax", "logsumexp"):
        assert f"test_{op}_vjp_matches_finite_differences [float64]" in out, out[-3000:]
    assert "forward departs" in out


def test_the_edges_profile_runs_only_the_explicit_edges():
    """--profile edges: a first look in seconds. The textbook softmax fails on the overflow and temperature edges; numpy
    passes."""
    code, out, err = xentcheck_here("check", "--backend", "naive", "--ops", "softmax", "--dtypes", "float32",
                               "--profile", "edges", "--no-progress")
    assert code == 1 and "FALSIFIED test_softmax_value_equals_reference" in out, out[-3000:] + err[-2000:]
    code, out, err = xentcheck_here("check", "--backend", "numpy", "--ops", "softmax,cross_entropy", "--dtypes",
                               "float32", "--profile", "edges", "--no-progress")
    assert code == 0 and int(out.split("profile edges: ")[1].split(" passed")[0]) >= 20, out[-3000:] + err[-2000:]
