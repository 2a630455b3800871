"""`xentcheck explain`: the Stage 9 worked example and its companions, every number computed exactly.

`explanation(logits, target)` returns a list of `Section`s; each holds its numbers as exact mpmath values
(50 significant digits) next to their labels, and `render` prints exactly those numbers, rounded to
DISPLAY_DIGITS significant digits, and no others (titles, labels and column names carry only the inputs,
notes only the constants of formulas). tests/test_explain.py holds every printed number against an
independent exact computation. The logits are taken at their float64 values, the values an
implementation sees; the fixed illustrations (p = [0.6, 0.3, 0.1], ...) at their decimal values.

Sections: the step-by-step softmax, loss and gradient; chance level; the loss <-> probability ranges;
the temperature table with its limits; label smoothing; and the Stage 9 text's question 34, the gradients
of cross-entropy and of MSE on probabilities with respect to the logits.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import mpmath
import numpy as np
from mpmath import mpf

# The Stage 9 text's logits for Max(1,6,2): input data, not results (its printed results are partly wrong).
STAGE9_TOKENS = ("[PAD]", "[EOS]", "'0'", "'1'", "'2'", "'3'", "'4'", "'5'", "'6'", "'7'", "'8'", "'9'",
                 "'First'", "'Second'", "'Last'", "'Max'", "'Min'", "'('", "')'", "','")
STAGE9_LOGITS = (-2.34, -1.56, -0.82, -0.31, 1.23, 0.78, 0.94, 1.52, 3.75, 0.41, 0.23, -0.08,
                 -1.92, -1.67, -1.43, -2.01, -1.78, -2.34, -2.12, -2.45)
STAGE9_TARGET = 8
TEMPERATURE_LOGITS = (1, 2, 3)
TEMPERATURES = ("0.5", "1", "2")
SMOOTHING = "0.1"
LOSS_BOUNDS = ("0", "0.1", "0.5", "1", "2", "3")      # the Stage 9 text's loss ranges
PROBABILITIES = ("1", "0.9", "0.7", "0.5", "0.25", "0.1", "0.05", "0.01", "0.001")
Q34_CASES = ((("0.6", "0.3", "0.1"), "question 34", False), (("0.01", "0.98", "0.01"), "confidently wrong", True))
DIGITS = 50
DISPLAY_DIGITS = 6


@dataclass(frozen=True)
class Section:
    """A titled block: rows of (label, values), the values under `columns` (one unnamed value if none)."""

    title: str
    notes: tuple = ()
    columns: tuple = ()
    rows: tuple = ()


def _softmax(z: list, tau=1) -> list:
    m = max(z)
    e = [mpmath.exp((v - m) / tau) for v in z]
    s = mpmath.fsum(e)
    return [v / s for v in e]


def _check(x: np.ndarray, target: int) -> None:
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"logits: need a 1-D list of at least two logits; got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("logits: every logit must be finite")
    if not 0 <= target < x.size:
        raise ValueError(f"target: must be a class index in [0, {x.size}); got {target}")


def _step_by_step(z: list, t: int, tokens) -> list:
    K, m = len(z), max(z)
    name = [f" {tok}" for tok in tokens] if tokens else [""] * K  # " '6'" after a class index, or nothing
    p = _softmax(z)
    grad = [pi - int(i == t) for i, pi in enumerate(p)]
    pred = max(range(K), key=lambda i: (z[i], -i))  # argmax, the first on ties
    table = Section(
        f"Softmax and cross-entropy, step by step: {K} logits, target {t}{name[t]}",
        ("m = max z;  p = exp(z - m) / sum exp(z - m), the same as exp(z) / sum exp(z)",
         "loss = -log p[target];  gradient d loss / dz = p - onehot(target)"),
        ("z", "z - m", "exp(z - m)", "exp(z)", "p", "p - onehot"),
        tuple((f"{i}{name[i]}", (z[i], z[i] - m, mpmath.exp(z[i] - m), mpmath.exp(z[i]), p[i], grad[i]))
              for i in range(K)))
    totals = Section(
        "The sums, the loss and the prediction", (), (),
        (("max logit m", (m,)),
         ("sum of exp(z)", (mpmath.fsum(mpmath.exp(v) for v in z),)),
         ("sum of exp(z - m)", (mpmath.fsum(mpmath.exp(v - m) for v in z),)),
         ("logsumexp(z) = m + log sum exp(z - m)", (m + mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in z)),)),
         ("sum of p", (mpmath.fsum(p),)),
         (f"p[target] = p[{t}]", (p[t],)),
         ("loss = -log p[target]", (-mpmath.log(p[t]),)),
         ("prediction = argmax p" + name[pred] + (": correct" if pred == t else ": wrong"), (pred,)),
         ("gradient at the target p[target] - 1", (grad[t],))))
    chance = Section(
        "Chance level", ("a model that knows nothing gives every class p = 1/K: its loss is -log(1/K) = log K",), (),
        ((f"p = 1/K for K = {K}", (mpf(1) / K,)), (f"loss = log K for K = {K}", (mpmath.log(K),))))
    return [table, totals, chance]


def _loss_ranges() -> list:
    b = [mpf(v) for v in LOSS_BOUNDS]
    ranges = [(f"loss {lo} to {hi}", (mpmath.exp(-b[i + 1]), mpmath.exp(-b[i])))
              for i, (lo, hi) in enumerate(zip(LOSS_BOUNDS, LOSS_BOUNDS[1:]))]
    ranges.append((f"loss above {LOSS_BOUNDS[-1]}", (mpf(0), mpmath.exp(-b[-1]))))
    return [Section("Loss and the probability of the target", ("p[target] = exp(-loss): loss < L exactly when "
                                                               "p[target] > exp(-L)",),
                    ("p[target] from", "p[target] to"), tuple(ranges)),
            Section("-log p for some probabilities of the target", (), (),
                    tuple((f"p[target] = {v}", (-mpmath.log(mpf(v)),)) for v in PROBABILITIES))]


def _temperature(z: list) -> Section:
    m = max(z)
    ties = sum(v == m for v in z)
    cols = [_softmax(z, mpf(tau)) for tau in TEMPERATURES]
    rows = tuple((f"p[{i}]", (z[i], *(c[i] for c in cols), mpf(int(z[i] == m)) / ties, mpf(1) / len(z)))
                 for i in range(len(z)))
    return Section("Temperature: p = softmax(z / tau)",
                   ("tau -> 0: one-hot on the argmax (shared equally by tied maxima);  tau -> inf: uniform 1/K",),
                   ("z", *(f"tau={tau}" for tau in TEMPERATURES), "tau->0", "tau->inf"), rows)


def _label_smoothing(z: list, t: int) -> Section:
    K, eps = len(z), mpf(SMOOTHING)
    p = _softmax(z)
    q = [eps / K + (1 - eps) * int(i == t) for i in range(K)]
    j = min((i for i in range(K) if i != t), key=lambda i: (p[i], i))  # the least likely other class
    return Section(
        f"Label smoothing, eps = {SMOOTHING}",
        ("target q = (1 - eps) onehot + eps/K;  loss = -sum q log p;  gradient = p - q",
         "the gradient vanishes at p = q, not at the one-hot: p[target] is pulled to q[target], never to 1"),
        (),
        (("q[target] = 1 - eps + eps/K", (q[t],)),
         ("q[other] = eps/K", (eps / K,)),
         ("loss without smoothing", (-mpmath.log(p[t]),)),
         ("loss with smoothing", (-mpmath.fsum(qi * mpmath.log(pi) for qi, pi in zip(q, p)),)),
         ("smallest smoothed loss, at p = q: H(q)", (-mpmath.fsum(qi * mpmath.log(qi) for qi in q),)),
         ("gradient at the target, without: p[target] - 1", (p[t] - 1,)),
         ("gradient at the target, with: p[target] - q[target]", (p[t] - q[t],)),
         (f"gradient at the least likely other class {j}, without: p[{j}]", (p[j],)),
         (f"gradient at the least likely other class {j}, with: p[{j}] - eps/K", (p[j] - eps / K,))))


def _question_34(probs: tuple, name: str, wrong: bool) -> Section:
    p = [mpf(v) for v in probs]  # logits z = log p give softmax(z) = p exactly
    y = [int(i == 0) for i in range(len(p))]
    v = [2 * (pi - yi) for pi, yi in zip(p, y)]
    pv = mpmath.fsum(pi * vi for pi, vi in zip(p, v))
    mse = [pi * (vi - pv) for pi, vi in zip(p, v)]  # J^T v with J = diag(p) - p p^T (symmetric): p_i (v_i - p.v)
    mse_t = [2 * (p[0] - 1) * p[0] * (yi - pi) for pi, yi in zip(p, y)]  # d p_0 / dz = p_0 (e_0 - p)
    notes = (("cross-entropy: d/dz = p - y",
              "MSE on probabilities: d/dz sum (p - y)^2 = J^T 2(p - y) with J = diag(p) - p p^T",
              "MSE on the target only: d/dz (p_t - 1)^2 = 2 (p_t - 1) p_t (e_t - p)") if not wrong else
             ("both MSE gradients carry the factor p_t (from dp/dz) and vanish as p_t -> 0, however wrong",
              "the model is; the cross-entropy gradient at the target, p_t - 1, keeps pushing"))
    return Section(
        f"CE against MSE, {name}: p = [{', '.join(probs)}], target 0, logits z = log p", notes,
        ("loss", *(f"d/dz{i}" for i in range(len(p)))),
        (("cross-entropy -log p_t", (-mpmath.log(p[0]), *(pi - yi for pi, yi in zip(p, y)))),
         ("MSE sum (p - y)^2", (mpmath.fsum((pi - yi) ** 2 for pi, yi in zip(p, y)), *mse)),
         ("MSE (p_t - 1)^2", ((p[0] - 1) ** 2, *mse_t))))


def explanation(logits=None, target=None) -> list:
    """Every section of `xentcheck explain`, as exact mpmath values.

    No logits: the Stage 9 example (its tokens named), with the temperature table on TEMPERATURE_LOGITS.
    Your logits and target: the same sections for them, the temperature table on your logits too.
    """
    if logits is None:
        x, t, tokens, tz = np.array(STAGE9_LOGITS), STAGE9_TARGET, STAGE9_TOKENS, TEMPERATURE_LOGITS
    else:
        if isinstance(target, bool) or not isinstance(target, numbers.Integral):
            raise ValueError(f"target: must be an integer class index; got {target!r}")
        x, t, tokens, tz = np.asarray(logits, dtype=np.float64), int(target), None, None
    _check(x, t)
    with mpmath.workdps(DIGITS):
        z = [mpf(v) for v in x.tolist()]
        return (_step_by_step(z, t, tokens) + _loss_ranges()
                + [_temperature([mpf(v) for v in tz] if tz else z), _label_smoothing(z, t)]
                + [_question_34(*case) for case in Q34_CASES])


def fmt(value) -> str:
    """A printed number: an int as is, an mpf to DISPLAY_DIGITS significant digits."""
    return str(value) if isinstance(value, (int, np.integer)) else mpmath.nstr(value, DISPLAY_DIGITS)


def render(sections: list) -> str:
    lines = ["Every number below is computed exactly with mpmath and rounded for display.", ""]
    for k, s in enumerate(sections, 1):
        lines.append(f"{k}. {s.title}")
        lines += [f"   {note}" for note in s.notes]
        width = max(len(label) for label, _ in s.rows)
        cells = [[fmt(v) for v in values] for _, values in s.rows]
        if s.columns:
            widths = [max(len(c), *(len(r[j]) for r in cells)) + 2 for j, c in enumerate(s.columns)]
            lines.append("  " + " " * width + "".join(c.rjust(w) for c, w in zip(s.columns, widths)))
        else:
            widths = [max(len(r[0]) for r in cells) + 2]
        lines += ["  " + label.ljust(width) + "".join(c.rjust(w) for c, w in zip(row, widths))
                  for (label, _), row in zip(s.rows, cells)]
        lines.append("")
    return "\n".join(lines).rstrip("\n")
