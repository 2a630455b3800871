"""Adding an op is one record plus its math (issue 12): tests/toy_ops.py registers sigmoid, the 2-class
softmax, and nothing else in the tree names it. Loaded through XENTCHECK_OPS, it is checked by `check`
(and a sigmoid a few ulps off is caught), measured against the oracle by `compare` and timed by `bench`."""
import json

import pytest
from _cli import ROOT, xentcheck

TOY = {"XENTCHECK_OPS": str(ROOT / "tests" / "toy_ops.py")}

OFF_BY_ULPS = """
import numpy as np
from xentcheck.backends import NumpyBackend

class Sigmoid(NumpyBackend):
    name = "sigmoid-%s"

    def evaluate(self, op, x, **kwargs):
        out = super().evaluate(op, x, **kwargs)
        if op != "sigmoid":
            return out
        return (out.astype(np.float64) * (1 + %s * np.finfo(out.dtype).eps)).astype(out.dtype)
"""


@pytest.mark.parametrize("how, factor, code", [("honest", 0, 0), ("off", 8, 1)])
def test_check_runs_the_new_op(tmp_path, how, factor, code):
    (tmp_path / "sigmoid.py").write_text(OFF_BY_ULPS % (how, factor))
    status, out, err = xentcheck("check", "--backend", f"{tmp_path / 'sigmoid.py'}:Sigmoid", "--ops", "sigmoid",
                                 "--dtypes", "float64", "--no-progress", "--json", str(tmp_path / "r.json"),
                                 env=TOY)
    assert status == code, out[-3000:] + err[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    properties = {t["property"] for t in report["tests"] if t["op"] == "sigmoid"}
    assert {"test_sigmoid_value_equals_reference", "test_sigmoid_vjp_equals_analytic",
            "test_sigmoid_vjp_matches_finite_differences"} <= properties, properties
    if code:
        assert [f["property"] for f in report["failures"]] == ["test_sigmoid_value_equals_reference"]


def test_compare_and_bench_run_the_new_op(tmp_path):
    status, out, err = xentcheck("compare", "--backends", "numpy", "--ops", "sigmoid", "--dtypes", "float32",
                                 "--quick", "--out", str(tmp_path / "compare"), "--no-progress", env=TOY)
    assert status == 0, err[-2000:]
    results = json.loads((tmp_path / "compare" / "results.json").read_text())
    accuracy = {(a["op"], a["kind"]) for a in results["results"]}
    assert accuracy == {("sigmoid", "value"), ("sigmoid", "vjp")}, accuracy
    status, out, err = xentcheck("bench", "--backend", "numpy", "--ops", "sigmoid", "--sizes", "4x8",
                                 "--dtypes", "float32", "--budget", "0.01", "--out", str(tmp_path / "bench"),
                                 "--no-progress", env=TOY)
    assert status == 0, err[-2000:]
    rows = json.loads((tmp_path / "bench" / "results.json").read_text())["results"]
    assert {(r["op"], r["kind"], r["status"]) for r in rows} == {("sigmoid", "value", "ok"), ("sigmoid", "vjp", "ok")}
