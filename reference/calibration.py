"""Calibration: temperature scaling, expected calibration error, reliability diagrams.

* `fit_temperature(logits, labels)`: the τ > 0 that minimises the mean negative log-likelihood
  NLL(τ) = mean_i [logsumexp(z_i / τ) - z_{i,y_i} / τ]  (Guo et al., "On calibration of modern neural
  networks", 2017).
* `expected_calibration_error(probs, labels, n_bins=15)` and `reliability_diagram(...)`: top-label
  confidence max_c p_ic against the accuracy of argmax_c p_ic, in `n_bins` equal-width bins.
* `plot_reliability(diagrams, path)`: the diagrams side by side in one PNG (needs matplotlib).

Every argument is validated: a ValueError names the argument and what is allowed.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from .ops import log_softmax

# fit_temperature searches τ in [TAU_MIN, TAU_MAX]. Where the NLL keeps decreasing past a bound it
# returns that bound exactly: TAU_MIN when every label is an argmax of its logits (separable data: the
# NLL falls towards its infimum as τ -> 0), TAU_MAX when the logits carry no information about the labels
# or anti-correlate with them (the optimum is at τ -> ∞ or a negative temperature).
TAU_MIN = 1e-3
TAU_MAX = 1e3


# --------------------------------------------------------------------------------------------
# Validation.

def _check_labels(labels, n: int, n_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels: need one label per example, shape ({n},); got shape {y.shape}")
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            raise ValueError(f"labels: must be integer class indices; got {y[bad[0]].item()!r} at position {bad[0]}")
    elif y.dtype.kind not in "iu":
        raise ValueError(f"labels: must be integer class indices; got dtype {y.dtype}")
    bad = np.flatnonzero((y < 0) | (y >= n_classes))
    if bad.size:
        raise ValueError(f"labels: must be in [0, {n_classes}) for {n_classes} classes; "
                         f"got {y[bad[0]].item()!r} at position {bad[0]}")
    return y.astype(np.int64)


def _check_matrix(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "iuf":
        raise ValueError(f"{name}: must be a real array of shape (examples, classes); got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 2:
        raise ValueError(f"{name}: must have shape (examples, classes) with at least 1 example and 2 classes; "
                         f"got shape {a.shape}")
    bad = np.argwhere(~np.isfinite(a))
    if bad.size:
        i, c = bad[0]
        raise ValueError(f"{name}: must be finite; got {a[i, c]} at row {i}, class {c}")
    return a


def check_logits_labels(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    """(logits as float64 (N, K), labels as int64 (N,)), or ValueError naming the bad argument."""
    z = _check_matrix(logits, "logits")
    return z.astype(np.float64), _check_labels(labels, z.shape[0], z.shape[1])


def check_probs_labels(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    """(probs as float64 (N, K), labels as int64 (N,)), or ValueError naming the bad argument.

    Each row must lie in [0, 1] and sum to 1 within (K + 4) eps, eps that of the probabilities' dtype
    but at least float32's: a softmax computed in float32 has each p_i within about (K + 2) u of exact
    (u = eps/2: K - 1 additions for the sum, one exp, one division), so its row sums pass.
    """
    p = _check_matrix(probs, "probs")
    k = p.shape[1]
    eps = max(np.finfo(p.dtype).eps if p.dtype.kind == "f" else 0.0, np.finfo(np.float32).eps)
    p = p.astype(np.float64)
    if (p < 0).any() or (p > 1).any():
        raise ValueError("probs: every probability must be in [0, 1]")
    off = np.abs(p.sum(axis=1) - 1)
    tol = (k + 4) * eps
    if (off > tol).any():
        i = int(np.argmax(off))
        raise ValueError(f"probs: each row must sum to 1 (within {tol:.2g}); row {i} sums to {p[i].sum():.17g} "
                         "(pass probabilities, e.g. softmax(logits), not logits)")
    return p, _check_labels(labels, p.shape[0], k)


def _check_bins(n_bins) -> int:
    if isinstance(n_bins, (bool, np.bool_)) or not isinstance(n_bins, numbers.Integral) or n_bins < 1:
        raise ValueError(f"n_bins: must be a positive integer; got {n_bins!r}")
    return int(n_bins)


# --------------------------------------------------------------------------------------------
# Temperature scaling.

def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood -mean_i log softmax(z_i / τ)[y_i], by the NumPy reference."""
    z, y = check_logits_labels(logits, labels)
    return float(-log_softmax(z, temperature=temperature)[np.arange(len(y)), y].mean())


def _derivatives(z: np.ndarray, y: np.ndarray, beta: float) -> tuple[float, float]:
    """g = dNLL/dβ and h = d²NLL/dβ² at β = 1/τ.

    With p_i = softmax(β z_i) and d_ic = z_ic - z_{i,y_i}:
    NLL(β) = mean_i log Σ_c exp(β d_ic),  g = mean_i E_{p_i}[d_i],  h = mean_i Var_{p_i}[d_i] >= 0.
    """
    d = z - z[np.arange(len(y)), y][:, None]
    a = beta * d
    e = np.exp(a - a.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    mean = (p * d).sum(axis=1)
    var = (p * (d - mean[:, None]) ** 2).sum(axis=1)
    return float(mean.mean()), float(var.mean())


def fit_temperature(logits, labels) -> float:
    """The temperature τ in [TAU_MIN, TAU_MAX] minimising the mean NLL of softmax(logits / τ) at `labels`.

    logits: (N, K) finite reals; labels: (N,) integer class indices in [0, K).

    Method: the NLL is convex in β = 1/τ (a mean of log-sum-exps of functions linear in β), so its
    derivative g(β) = mean_i E_{p_i}[z_i - z_{i,y_i}] is nondecreasing and the minimiser is the root of g.
    We bracket the root in β ∈ [1/TAU_MAX, 1/TAU_MIN] and run Newton's method (g' = mean Var_p[z] >= 0)
    from β = 1, falling back to bisection in log β whenever a Newton step would leave the bracket
    (safeguarded Newton: deterministic, and it converges because the bracket always holds the root).
    If g >= 0 at β = 1/TAU_MAX the NLL rises on the whole range and TAU_MAX is returned; if g <= 0 at
    β = 1/TAU_MIN (e.g. perfectly separable data, where the optimum is τ -> 0) TAU_MIN is returned.
    """
    z, y = check_logits_labels(logits, labels)
    lo, hi = 1 / TAU_MAX, 1 / TAU_MIN
    if _derivatives(z, y, lo)[0] >= 0:
        return TAU_MAX
    if _derivatives(z, y, hi)[0] <= 0:
        return TAU_MIN
    beta = 1.0
    for _ in range(200):
        g, h = _derivatives(z, y, beta)
        if g == 0:
            break
        if g < 0:
            lo = beta
        else:
            hi = beta
        step = beta - g / h if h > 0 else math.nan
        new = step if lo < step < hi else math.sqrt(lo * hi)
        done = abs(new - beta) <= 1e-14 * beta or hi - lo <= 1e-15 * hi
        beta = new
        if done:
            break
    return 1 / beta


# --------------------------------------------------------------------------------------------
# Expected calibration error and reliability diagrams.

@dataclass(frozen=True)
class ReliabilityDiagram:
    """Equal-width confidence bins: bin b holds the examples with edges[b] < confidence <= edges[b+1]
    (bin 0 also holds confidence 0). confidence and accuracy are the bin means, NaN for an empty bin."""

    edges: np.ndarray       # (n_bins + 1,), 0 to 1
    counts: np.ndarray      # (n_bins,) examples per bin
    confidence: np.ndarray  # (n_bins,) mean top-label probability max_c p_ic
    accuracy: np.ndarray    # (n_bins,) fraction with argmax_c p_ic == label

    @property
    def ece(self) -> float:
        """Σ_b (n_b / N) |accuracy_b - confidence_b| over the non-empty bins."""
        full = self.counts > 0
        weights = self.counts[full] / self.counts.sum()
        return float(np.sum(weights * np.abs(self.accuracy[full] - self.confidence[full])))


def reliability_diagram(probs, labels, n_bins: int = 15) -> ReliabilityDiagram:
    """Bin the top-label confidence max_c p_ic (prediction argmax_c p_ic, the first on ties) into
    `n_bins` equal-width bins (lo, hi] of [0, 1]; per bin, the count, mean confidence and accuracy."""
    p, y = check_probs_labels(probs, labels)
    n_bins = _check_bins(n_bins)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=n_bins) / counts
        accuracy = np.bincount(index, weights=correct, minlength=n_bins) / counts
    return ReliabilityDiagram(edges, counts, mean_conf, accuracy)


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """ECE = Σ_b (n_b / N) |acc_b - conf_b|: top-label confidence, `n_bins` equal-width bins (lo, hi],
    each bin weighted by its share of the examples (Guo et al. 2017; Naeini et al. 2015)."""
    return reliability_diagram(probs, labels, n_bins).ece


def plot_reliability(diagrams: dict, path) -> None:
    """Write the reliability diagrams (a dict title -> ReliabilityDiagram) side by side to a PNG at `path`.

    Bars: accuracy per bin; the diagonal is perfect calibration; the gap to it is shaded. Needs matplotlib
    (the `plot` extra); it is imported here and drawn with the Agg canvas, without pyplot.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plotting a reliability diagram needs matplotlib: pip install 'xentcheck[plot]'") from None
    fig = Figure(figsize=(4.5 * len(diagrams), 4.5))
    FigureCanvasAgg(fig)  # render with Agg; no pyplot, so no global backend state is touched
    axes = fig.subplots(1, len(diagrams), squeeze=False)[0]
    for ax, (title, d) in zip(axes, diagrams.items()):
        width = np.diff(d.edges)
        full = d.counts > 0
        ax.bar(d.edges[:-1][full], d.accuracy[full], width[full], align="edge", color="tab:blue",
               edgecolor="black", label="accuracy")
        ax.bar(d.edges[:-1][full], d.confidence[full] - d.accuracy[full], width[full], bottom=d.accuracy[full],
               align="edge", color="tab:red", alpha=0.3, edgecolor="tab:red", label="gap to confidence")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-label probability)", ylabel="accuracy",
               title=f"{title}  (ECE {d.ece:.4f})")
        ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


__all__ = ["TAU_MAX", "TAU_MIN", "ReliabilityDiagram", "check_logits_labels", "check_probs_labels",
           "expected_calibration_error", "fit_temperature", "nll", "plot_reliability", "reliability_diagram"]
