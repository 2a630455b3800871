"""`xentcheck explain`: every printed number against an independent exact computation.

`expected_sections` below recomputes each section in mpmath at 70 digits with other formulas than
xentcheck.explain (p_i = 1 / sum_j exp(z_j - z_i), losses as log-sum-exps of differences, the MSE
gradients by mpmath's numerical differentiation rather than the closed form J^T 2(p - y)). The tests hold
(1) the data structure to it, value by value, and (2) the rendered text to it line by line: every line
is the expected title, note, column header or row, each row prints exactly its values, and each printed
value is the exact value correctly rounded to its printed digits. Titles, labels and column headers are
compared as whole strings (the only numbers in them are the inputs: class indices, K, tau, eps, the loss
bounds, the probabilities of question 34); notes may hold only the constants 0, 1 and 2 of formulas.
No number is taken from the Stage 9 text: its printed results are partly wrong.
"""
import re
from decimal import Decimal

import mpmath
import pytest
from mpmath import mpf

from xentcheck import explain
from xentcheck.cli import main

NUMBER = re.compile(r"\d+(?:\.\d+)?")
USER_EXAMPLE = ([0.5, -1.0, 2.0, 2.0], 1)  # a tie at the max, a wrong prediction


def _p(z, tau=1):
    return [1 / mpmath.fsum(mpmath.exp((zj - zi) / tau) for zj in z) for zi in z]


def _mse_grads(probs):
    """d/dz of sum (p - y)^2 and of (p_0 - 1)^2 at z = log p, by numerical differentiation."""
    z0 = [mpmath.log(v) for v in probs]

    def p_of(*z):
        return _p(list(z))

    full = lambda *z: mpmath.fsum((pi - int(i == 0)) ** 2 for i, pi in enumerate(p_of(*z)))  # noqa: E731
    target = lambda *z: (p_of(*z)[0] - 1) ** 2  # noqa: E731
    unit = lambda i: tuple(int(j == i) for j in range(len(z0)))  # noqa: E731
    return ([mpmath.diff(full, z0, unit(i)) for i in range(len(z0))],
            [mpmath.diff(target, z0, unit(i)) for i in range(len(z0))])


def expected_sections(logits=None, target=None):
    """(title, columns, [(label, values)]) per section, in order."""
    if logits is None:
        z, t = [mpf(v) for v in explain.STAGE9_LOGITS], 8
        suffix = [f" {tok}" for tok in explain.STAGE9_TOKENS]
        tz = [mpf(1), mpf(2), mpf(3)]
    else:
        z, t, suffix = [mpf(float(v)) for v in logits], target, [""] * len(logits)
        tz = z
    K, m = len(z), max(z)
    p = _p(z)
    lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in z))
    pred = [i for i in range(K) if z[i] == m][0]
    out = [(f"Softmax and cross-entropy, step by step: {K} logits, target {t}{suffix[t]}",
            ("z", "z - m", "exp(z - m)", "exp(z)", "p", "p - onehot"),
            [(f"{i}{suffix[i]}", [z[i], z[i] - m, mpmath.exp(z[i]) / mpmath.exp(m), mpmath.exp(z[i]), p[i],
                                  p[i] - int(i == t)]) for i in range(K)]),
           ("The sums, the loss and the prediction", (),
            [("max logit m", [m]),
             ("sum of exp(z)", [mpmath.exp(lse)]),
             ("sum of exp(z - m)", [mpmath.exp(lse - m)]),
             ("logsumexp(z) = m + log sum exp(z - m)", [lse]),
             ("sum of p", [mpf(1)]),
             (f"p[target] = p[{t}]", [p[t]]),
             ("loss = -log p[target]", [lse - z[t]]),
             ("prediction = argmax p" + suffix[pred] + (": correct" if pred == t else ": wrong"), [pred]),
             ("gradient at the target p[target] - 1", [p[t] - 1])]),
           ("Chance level", (), [(f"p = 1/K for K = {K}", [mpf(1) / K]),
                                 (f"loss = log K for K = {K}", [-mpmath.log(mpf(1) / K)])])]
    bounds = ["0", "0.1", "0.5", "1", "2", "3"]
    out.append(("Loss and the probability of the target", ("p[target] from", "p[target] to"),
                [(f"loss {a} to {b}", [1 / mpmath.e ** mpf(b), 1 / mpmath.e ** mpf(a)])
                 for a, b in zip(bounds, bounds[1:])] + [("loss above 3", [mpf(0), 1 / mpmath.e ** 3])]))
    out.append(("-log p for some probabilities of the target", (),
                [(f"p[target] = {v}", [mpmath.log(1 / mpf(v))])
                 for v in ["1", "0.9", "0.7", "0.5", "0.25", "0.1", "0.05", "0.01", "0.001"]]))
    top = [i for i in range(len(tz)) if tz[i] == max(tz)]
    out.append(("Temperature: p = softmax(z / tau)", ("z", "tau=0.5", "tau=1", "tau=2", "tau->0", "tau->inf"),
                [(f"p[{i}]", [tz[i], _p(tz, mpf("0.5"))[i], _p(tz)[i], _p(tz, 2)[i],
                              mpf(1) / len(top) if i in top else mpf(0), mpf(1) / len(tz)])
                 for i in range(len(tz))]))
    eps = mpf("0.1")
    q = [(1 - eps) * int(i == t) + eps / K for i in range(K)]
    j = sorted((p[i], i) for i in range(K) if i != t)[0][1]
    out.append(("Label smoothing, eps = 0.1", (),
                [("q[target] = 1 - eps + eps/K", [q[t]]),
                 ("q[other] = eps/K", [eps / K]),
                 ("loss without smoothing", [lse - z[t]]),
                 ("loss with smoothing", [mpmath.fsum(qc * (lse - zc) for qc, zc in zip(q, z))]),
                 ("smallest smoothed loss, at p = q: H(q)", [mpmath.fsum(qc * mpmath.log(1 / qc) for qc in q)]),
                 ("gradient at the target, without: p[target] - 1", [p[t] - 1]),
                 ("gradient at the target, with: p[target] - q[target]", [p[t] - q[t]]),
                 (f"gradient at the least likely other class {j}, without: p[{j}]", [p[j]]),
                 (f"gradient at the least likely other class {j}, with: p[{j}] - eps/K", [p[j] - q[j]])]))
    for probs, name in ((["0.6", "0.3", "0.1"], "question 34"), (["0.01", "0.98", "0.01"], "confidently wrong")):
        pv = [mpf(v) for v in probs]
        full, only_target = _mse_grads(pv)
        out.append((f"CE against MSE, {name}: p = [{', '.join(probs)}], target 0, logits z = log p",
                    ("loss", "d/dz0", "d/dz1", "d/dz2"),
                    [("cross-entropy -log p_t", [mpmath.log(1 / pv[0]), pv[0] - 1, pv[1], pv[2]]),
                     ("MSE sum (p - y)^2", [(pv[0] - 1) ** 2 + pv[1] ** 2 + pv[2] ** 2, *full]),
                     ("MSE (p_t - 1)^2", [(pv[0] - 1) ** 2, *only_target])]))
    return out


@pytest.fixture(scope="module", params=[(None, None), USER_EXAMPLE], ids=["stage9", "user"])
def case(request):
    logits, target = request.param
    with mpmath.workdps(70):
        want = expected_sections(logits, target)
    return explain.explanation(logits, target), want


def _close(got, want):
    if isinstance(want, int):
        return isinstance(got, int) and got == want
    return abs(got - want) <= mpf(10) ** -40 * max(1, abs(want))


def test_every_value_in_the_structure_is_exact(case):
    got, want = case
    assert [s.title for s in got] == [w[0] for w in want]
    for section, (title, columns, rows) in zip(got, want):
        assert section.columns == columns, title
        assert [label for label, _ in section.rows] == [label for label, _ in rows], title
        for (label, values), (_, expected) in zip(section.rows, rows):
            assert len(values) == max(1, len(columns)) == len(expected), label
            for v, e in zip(values, expected):
                assert _close(v, e), f"{title} / {label}: {v} != {e}"


def _printed_correctly(text: str, exact) -> bool:
    """`text` is `exact` rounded to DISPLAY_DIGITS significant digits (trailing zeros may be left off)."""
    if isinstance(exact, int):
        return text == str(exact)
    value = Decimal(text)
    if value == 0:  # nstr prints 0.0 only for an exact zero
        return exact == 0
    half_unit = mpf(str(Decimal(5).scaleb(value.adjusted() - explain.DISPLAY_DIGITS)))
    return abs(mpf(text) - exact) <= half_unit


def test_the_text_prints_exactly_the_checked_numbers(case):
    got, want = case
    lines = explain.render(got).split("\n")
    assert not NUMBER.search(lines[0]) and lines[1] == ""
    i = 2
    for k, (section, (title, columns, rows)) in enumerate(zip(got, want), 1):
        assert lines[i] == f"{k}. {title}"
        i += 1
        for note in section.notes:
            assert lines[i] == f"   {note}"
            assert set(NUMBER.findall(note)) <= {"0", "1", "2"}, note
            i += 1
        if columns:
            header = lines[i]
            assert header.split() == " ".join(columns).split()
            i += 1
        for label, values in rows:
            line = lines[i]
            assert line.startswith(f"  {label} "), line
            printed = line[2 + len(label):].split()
            assert len(printed) == len(values), line
            for text, exact in zip(printed, values):
                assert _printed_correctly(text, exact), f"{line!r}: {text} is not {mpmath.nstr(exact, 15)}"
            i += 1
        assert lines[i:i + 1] in ([""], []), lines[i]
        i += 1
    assert i >= len(lines)


def test_the_temperature_limits_are_the_limits():
    with mpmath.workdps(40):
        z = [mpf(1), mpf(2), mpf(3)]
        cold, hot = _p(z, mpf("1e-4")), _p(z, mpf("1e6"))
    assert max(abs(a - b) for a, b in zip(cold, [0, 0, 1])) < 1e-100
    assert max(abs(a - mpf(1) / 3) for a in hot) < 1e-5


@pytest.mark.parametrize("logits, target, message", [
    ([1.0], 0, "logits: need a 1-D list of at least two logits"),
    ([1.0, float("nan")], 0, "logits: every logit must be finite"),
    ([1.0, float("inf")], 0, "logits: every logit must be finite"),
    ([1.0, 2.0], 2, "target: must be a class index in [0, 2)"),
    ([1.0, 2.0], -1, "target: must be a class index in [0, 2)"),
    ([1.0, 2.0], 1.5, "target: must be an integer class index"),
])
def test_bad_examples_are_rejected(logits, target, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        explain.explanation(logits, target)


@pytest.mark.parametrize("argv, message", [
    (["--logits", "1"], "give both"),
    (["--target", "0"], "give both"),
    (["--logits", "1,x", "--target", "0"], "--logits: expected numbers"),
    (["--logits", "1", "--target", "0"], "at least two logits"),
    (["--logits", "1,nan", "--target", "0"], "every logit must be finite"),
    (["--logits", "1,2", "--target", "5"], "target: must be a class index in [0, 2)"),
])
def test_cli_errors_are_one_line(argv, message, capsys):
    assert main(["explain", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("xentcheck explain: ") and message in err


def test_cli_prints_the_rendered_explanation(capsys):
    assert main(["explain"]) == 0
    assert capsys.readouterr().out == explain.render(explain.explanation()) + "\n"
    assert main(["explain", "--logits", "0.5 -1 2 2", "--target", "1"]) == 0
    assert capsys.readouterr().out == explain.render(explain.explanation(*USER_EXAMPLE)) + "\n"
