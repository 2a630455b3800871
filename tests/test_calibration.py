"""Calibration: temperature fit, ECE, reliability diagrams, and `xentcheck calibrate`.

Tolerances are statistical and derived next to each test: the maximum-likelihood β = 1/τ has standard
deviation 1/sqrt(N I(β)) with I(β) = mean_i Var_{p_i}(z_i) the Fisher information per example; on
calibrated data each bin's accuracy - confidence is a mean of independent zero-mean terms.
"""
import sys
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from xentcheck.cli import main
from xentcheck.reference import calibration as cal
from xentcheck.reference import softmax


def _sample(rng, z, tau):
    """One label per row of z, drawn from softmax(z / tau)."""
    p = softmax(z, temperature=tau)
    return (rng.random(len(z))[:, None] > np.cumsum(p, axis=1)).sum(axis=1).clip(0, z.shape[1] - 1)


@pytest.mark.parametrize("seed, tau", [(0, 2.0), (1, 0.5), (2, 1.3)])
def test_temperature_is_recovered(seed, tau):
    rng = np.random.default_rng(seed)
    z = 3 * rng.standard_normal((4000, 10))
    y = _sample(rng, z, tau)
    beta0 = 1 / tau
    # Fisher information per example at the true β: Var of z under p = softmax(β0 z), averaged over rows.
    p = softmax(z, temperature=tau)
    info = np.mean((p * z**2).sum(1) - (p * z).sum(1) ** 2)
    sd = 1 / np.sqrt(len(z) * info)
    beta = 1 / cal.fit_temperature(z, y)
    assert abs(beta - beta0) <= 4 * sd, (beta, beta0, sd)  # 4 standard deviations: fails with p ~ 6e-5


def test_the_fit_is_the_root_of_the_exact_derivative():
    """dNLL/dβ = mean_i Σ_c p_ic (z_ic - z_iy), evaluated in mpmath, changes sign across the fitted β."""
    rng = np.random.default_rng(5)
    z = 2 * rng.standard_normal((60, 4))
    y = _sample(rng, z, 1.7)
    beta = 1 / cal.fit_temperature(z, y)

    def derivative(b):
        with mpmath.workdps(40):
            total = 0
            for row, label in zip(z.tolist(), y.tolist()):
                e = [mpmath.exp(b * (v - row[label])) for v in row]
                total += mpmath.fsum(ei * (v - row[label]) for ei, v in zip(e, row)) / mpmath.fsum(e)
            return total / len(z)

    step = mpmath.mpf("1e-10")
    assert derivative(beta * (1 - step)) < 0 < derivative(beta * (1 + step))


def test_separable_and_uninformative_data_give_the_documented_bounds():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((200, 5))
    assert cal.fit_temperature(z, z.argmax(1)) == cal.TAU_MIN  # every label an argmax: optimum at τ -> 0
    assert cal.fit_temperature(z, z.argmin(1)) == cal.TAU_MAX  # anti-correlated: optimum beyond τ -> ∞
    # ... where the NLL is still falling towards the bound
    y = z.argmax(1)
    assert cal.nll(z, y, cal.TAU_MIN) < cal.nll(z, y, 2 * cal.TAU_MIN) < cal.nll(z, y, 1.0)


def test_fitting_lowers_the_nll_and_the_ece():
    rng = np.random.default_rng(4)
    z = 2 * rng.standard_normal((3000, 8))
    y = _sample(rng, z, 1.0)
    overconfident = 2.5 * z
    tau = cal.fit_temperature(overconfident, y)
    assert cal.nll(overconfident, y, tau) < cal.nll(overconfident, y)
    for other in (0.9 * tau, 1.1 * tau, 1.0):
        assert cal.nll(overconfident, y, tau) < cal.nll(overconfident, y, other)
    before = cal.expected_calibration_error(softmax(overconfident), y)
    after = cal.expected_calibration_error(softmax(overconfident, temperature=tau), y)
    assert after < before / 3


def _ece_tolerance(probs, n_bins):
    """4 standard deviations per bin of (n_b / N)(acc_b - conf_b) on calibrated data.

    With labels drawn from p_i, example i is correct with probability c_i = max p_i, so the bin's
    n_b (acc_b - conf_b) = Σ (correct_i - c_i) has mean 0 and variance Σ c_i (1 - c_i).
    """
    d = cal.reliability_diagram(probs, probs.argmax(1), n_bins)  # only the binning is used
    c = probs.max(1)
    index = np.clip(np.searchsorted(d.edges, c, side="left") - 1, 0, n_bins - 1)
    var = np.bincount(index, weights=c * (1 - c), minlength=n_bins)
    return 4 * np.sqrt(var).sum() / len(probs)


def test_ece_is_near_zero_on_calibrated_data_and_not_on_miscalibrated_data():
    rng = np.random.default_rng(6)
    z = 2 * rng.standard_normal((20000, 10))
    y = _sample(rng, z, 1.0)
    p = softmax(z)
    tol = _ece_tolerance(p, 15)
    assert cal.expected_calibration_error(p, y) <= tol
    sharp = softmax(z, temperature=0.5)  # overconfident: far above the noise
    assert cal.expected_calibration_error(sharp, y) > 5 * _ece_tolerance(sharp, 15)


def test_ece_by_hand_right_closed_bins_weighted_by_count():
    # 4 bins with exact binary edges 0, 1/4, 1/2, 3/4, 1; a confidence on an edge belongs to the bin below.
    probs = np.array([[0.75, 0.25], [0.125, 0.875], [0.625, 0.375], [1.0, 0.0], [0.5, 0.5]])
    labels = np.array([0, 0, 1, 0, 1])  # correct, wrong, wrong, correct, wrong (a tie predicts class 0)
    d = cal.reliability_diagram(probs, labels, n_bins=4)
    np.testing.assert_array_equal(d.edges, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_array_equal(d.counts, [0, 1, 2, 2])
    np.testing.assert_array_equal(d.confidence, [np.nan, 0.5, 0.6875, 0.9375])
    np.testing.assert_array_equal(d.accuracy, [np.nan, 0, 0.5, 0.5])
    want = (1 * Fraction(1, 2) + 2 * Fraction(3, 16) + 2 * Fraction(7, 16)) / 5
    # exact inputs; 2 roundings per term (n_b/N, times the gap) and 2 additions: within 4u relative
    assert cal.expected_calibration_error(probs, labels, n_bins=4) == pytest.approx(float(want), rel=4 * 2.0**-53)


def test_float32_softmax_rows_are_accepted_as_probabilities():
    z = np.random.default_rng(7).standard_normal((50, 1000)).astype(np.float32)
    p = softmax(z)
    cal.expected_calibration_error(p, np.zeros(50, dtype=int))
    cal.expected_calibration_error(p.astype(np.float64), np.zeros(50, dtype=int))


Z = np.array([[1.0, 2.0, 3.0], [0.0, 0.5, -1.0]])
P = softmax(Z)


@pytest.mark.parametrize("call, message", [
    (lambda: cal.fit_temperature(Z, [0, 1, 2]), "labels: need one label per example, shape (2,)"),
    (lambda: cal.fit_temperature(Z, [0, 3]), "labels: must be in [0, 3) for 3 classes; got 3 at position 1"),
    (lambda: cal.fit_temperature(Z, [-1, 0]), "labels: must be in [0, 3)"),
    (lambda: cal.fit_temperature(Z, [0.5, 1.0]), "labels: must be integer class indices; got 0.5"),
    (lambda: cal.fit_temperature(Z, np.array([0, np.nan])), "labels: must be integer class indices"),
    (lambda: cal.fit_temperature(Z, ["a", "b"]), "labels: must be integer class indices; got dtype"),
    (lambda: cal.fit_temperature(Z, [True, False]), "labels: must be integer class indices; got dtype bool"),
    (lambda: cal.fit_temperature([[1.0, np.nan], [0.0, 1.0]], [0, 1]), "logits: must be finite; got nan at row 0"),
    (lambda: cal.fit_temperature([[1.0, 2.0], [np.inf, 1.0]], [0, 1]), "logits: must be finite; got inf at row 1"),
    (lambda: cal.fit_temperature([1.0, 2.0], [0]), "logits: must have shape (examples, classes)"),
    (lambda: cal.fit_temperature([[1.0], [2.0]], [0, 0]), "at least 1 example and 2 classes"),
    (lambda: cal.expected_calibration_error(Z, [0, 1]), "probs: every probability must be in [0, 1]"),
    (lambda: cal.expected_calibration_error(P * 0.9, [0, 1]), "probs: each row must sum to 1"),
    (lambda: cal.expected_calibration_error([[0.5, np.nan], [0.5, 0.5]], [0, 1]), "probs: must be finite"),
    (lambda: cal.expected_calibration_error(P, [0]), "labels: need one label per example"),
    (lambda: cal.expected_calibration_error(P, [0, 1], n_bins=0), "n_bins: must be a positive integer"),
    (lambda: cal.reliability_diagram(P, [0, 1], n_bins=2.5), "n_bins: must be a positive integer"),
])
def test_bad_input_is_a_value_error_naming_the_argument(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


def test_plot_writes_a_png_and_says_when_matplotlib_is_missing(tmp_path, monkeypatch):
    d = cal.reliability_diagram(P, [2, 1])
    cal.plot_reliability({"before": d, "after": d}, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # what an environment without matplotlib looks like
    with pytest.raises(ImportError, match=r"needs matplotlib: pip install 'xentcheck\[plot\]'"):
        cal.plot_reliability({"before": d}, tmp_path / "s.png")


# --------------------------------------------------------------------------------------------
# The command line.

@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(8)
    z = 3 * rng.standard_normal((500, 6))
    return z, _sample(rng, z, 1.8)


def _run(capsys, *argv):
    code = main(["calibrate", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("fmt", ["npy", "npz", "npz-named", "csv"])
def test_cli_end_to_end(fmt, data, tmp_path, capsys):
    z, y = data
    if fmt == "npy":
        np.save(tmp_path / "z.npy", z)
        np.save(tmp_path / "y.npy", y)
        args = [tmp_path / "z.npy", tmp_path / "y.npy"]
    elif fmt == "npz":
        np.savez(tmp_path / "z.npz", z)
        np.savez(tmp_path / "y.npz", y)
        args = [tmp_path / "z.npz", tmp_path / "y.npz"]
    elif fmt == "npz-named":
        np.savez(tmp_path / "d.npz", labels=y, logits=z)  # the first array is labels: names pick them
        args = [f"{tmp_path / 'd.npz'}:logits", f"{tmp_path / 'd.npz'}:labels"]
    else:
        np.savetxt(tmp_path / "z.csv", z, delimiter=",", fmt="%.17g")
        np.savetxt(tmp_path / "y.csv", y, fmt="%d")
        args = [tmp_path / "z.csv", tmp_path / "y.csv"]
    png = tmp_path / "out.png"
    code, out, err = _run(capsys, *args, "--out", png, "--bins", 10)
    assert code == 0 and err == ""
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in out.splitlines()
            if line.split() and line.split()[0] in ("before", "after")}
    tau = cal.fit_temperature(z, y)
    assert rows["before"] == pytest.approx([1.0, cal.nll(z, y), cal.expected_calibration_error(softmax(z), y, 10)],
                                           abs=5e-6)
    assert rows["after"][0] == pytest.approx(tau, rel=5e-6)
    assert rows["after"][1:] == pytest.approx(
        [cal.nll(z, y, tau), cal.expected_calibration_error(softmax(z, temperature=tau), y, 10)], abs=5e-6)
    assert rows["after"][1] < rows["before"][1]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_reports_a_temperature_at_the_bound(data, tmp_path, capsys):
    z, _ = data
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", z.argmax(1))
    code, out, _ = _run(capsys, tmp_path / "z.npy", tmp_path / "y.npy", "--out", tmp_path / "r.png")
    assert code == 0 and "note: tau is at the search bound 0.001 (every label is an argmax" in out


def _bad_files(tmp_path, data):
    z, y = data
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "short.npy", y[:-1])
    np.save(tmp_path / "big.npy", np.where(y == 0, 6, y))
    z_nan = z.copy()
    z_nan[3, 2] = np.nan
    np.save(tmp_path / "nan.npy", z_nan)
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file")
    (tmp_path / "z.txt").write_text("1,2\n")
    (tmp_path / "header.csv").write_text("a,b\n1,2\n")
    np.savetxt(tmp_path / "frac.csv", np.full(len(y), 0.5))
    np.savez(tmp_path / "d.npz", logits=z)
    np.savez(tmp_path / "empty.npz")


@pytest.mark.parametrize("logits, labels, extra, message", [
    ("missing.npy", "y.npy", [], "LOGITS {d}/missing.npy: no such file"),
    ("z.npy", "missing.csv", [], "LABELS {d}/missing.csv: no such file"),
    ("z.txt", "y.npy", [], "LOGITS {d}/z.txt: unsupported format .txt; use .npy, .npz or .csv"),
    ("junk.npy", "y.npy", [], "LOGITS {d}/junk.npy: could not read it as .npy"),
    ("header.csv", "y.npy", [], "LOGITS {d}/header.csv: could not read it as .csv"),
    ("d.npz:logitz", "y.npy", [], "LOGITS {d}/d.npz:logitz: no array 'logitz' in the .npz file; it holds logits"),
    ("empty.npz", "y.npy", [], "LOGITS {d}/empty.npz: the .npz file holds no arrays"),
    ("z.npy", "short.npy", [], "labels: need one label per example, shape (500,); got shape (499,)"),
    ("z.npy", "big.npy", [], "labels: must be in [0, 6) for 6 classes; got 6"),
    ("z.npy", "frac.csv", [], "labels: must be integer class indices; got 0.5"),
    ("nan.npy", "y.npy", [], "logits: must be finite; got nan at row 3, class 2"),
    ("z.npy", "y.npy", ["--bins", "0"], "--bins: must be a positive integer; got 0"),
    ("z.npy", "y.npy", ["--out", "{d}/no/such/dir/r.png"], "its folder does not exist"),
    ("z.npy", "y.npy", ["--out", "{d}/"], "is a folder; name a file in it"),
])
def test_cli_errors_are_one_line_with_exit_status_2(logits, labels, extra, message, data, tmp_path, capsys):
    _bad_files(tmp_path, data)
    extra = [e.format(d=tmp_path) for e in extra]
    code, out, err = _run(capsys, tmp_path / logits, tmp_path / labels, *extra)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("xentcheck calibrate: ")
    assert message.format(d=tmp_path) in err
