"""`xentcheck explain`: the Stage 9 worked example, every number computed exactly.

Each quantity is evaluated with mpmath at 40 significant digits on the logits' float64 values and
printed rounded; `worked_example` returns the same numbers as data so that tests can hold every
printed figure against the oracle.
"""
from __future__ import annotations

import mpmath
import numpy as np

# The Stage 9 text's logits for Max(1,6,2): input data, not results (its printed results are partly wrong).
STAGE9_TOKENS = ("[PAD]", "[EOS]", "'0'", "'1'", "'2'", "'3'", "'4'", "'5'", "'6'", "'7'", "'8'", "'9'",
                 "'First'", "'Second'", "'Last'", "'Max'", "'Min'", "'('", "')'", "','")
STAGE9_LOGITS = (-2.34, -1.56, -0.82, -0.31, 1.23, 0.78, 0.94, 1.52, 3.75, 0.41, 0.23, -0.08,
                 -1.92, -1.67, -1.43, -2.01, -1.78, -2.34, -2.12, -2.45)
STAGE9_TARGET = 8
DIGITS = 40


def worked_example(logits=STAGE9_LOGITS, target=STAGE9_TARGET) -> dict:
    """Every quantity of the softmax + cross-entropy walk-through, as mpmath numbers."""
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"logits: need a 1-D list of at least two logits; got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("logits: every logit must be finite")
    if not 0 <= int(target) < x.size:
        raise ValueError(f"target: must be a class index in [0, {x.size}); got {target}")
    with mpmath.workdps(DIGITS + 10):
        z = [mpmath.mpf(v) for v in x.tolist()]
        m = max(z)
        exps = [mpmath.exp(v) for v in z]
        shifted = [v - m for v in z]
        shifted_exps = [mpmath.exp(v) for v in shifted]
        total = mpmath.fsum(exps)
        probs = [e / total for e in exps]
        loss = -mpmath.log(probs[target])
        grad = [p - (1 if i == target else 0) for i, p in enumerate(probs)]
    return {"logits": z, "max": m, "shifted": shifted, "exps": exps, "shifted_exps": shifted_exps,
            "sum_exps": total, "sum_shifted_exps": mpmath.fsum(shifted_exps), "probs": probs,
            "target": int(target), "loss": loss, "prediction": int(np.argmax(x)), "grad": grad,
            "chance_loss": mpmath.log(len(z))}


def render(example: dict, tokens=STAGE9_TOKENS) -> str:
    f = lambda v, d=6: mpmath.nstr(v, d, strip_zeros=False)  # noqa: E731
    n, t = len(example["logits"]), example["target"]
    names = tokens if len(tokens) == n else [str(i) for i in range(n)]
    lines = [f"Softmax and cross-entropy, step by step ({n} logits, target {t} = {names[t]}); "
             f"every number computed exactly (mpmath, {DIGITS} digits) and rounded for display.", "",
             f"{'id':>3} {'token':>8} {'logit':>8} {'logit-max':>10} {'exp(logit-max)':>15} "
             f"{'probability':>12} {'gradient':>12}"]
    for i in range(n):
        lines.append(f"{i:>3} {names[i]:>8} {f(example['logits'][i], 4):>8} {f(example['shifted'][i], 4):>10} "
                     f"{f(example['shifted_exps'][i]):>15} {f(example['probs'][i]):>12} {f(example['grad'][i]):>12}")
    lines += ["",
              f"max logit                     {f(example['max'])}",
              f"sum of exp(logit)             {f(example['sum_exps'])}",
              f"sum of exp(logit - max)       {f(example['sum_shifted_exps'])}",
              f"p[target] = p[{t}]             {f(example['probs'][t])}",
              f"loss = -log p[target]         {f(example['loss'])}",
              f"prediction = argmax           {example['prediction']} ({names[example['prediction']]})"
              + ("  correct" if example["prediction"] == t else "  wrong"),
              f"gradient at the target p - 1  {f(example['grad'][t])}",
              f"chance level log K (K={n})     {f(example['chance_loss'])}"]
    return "\n".join(lines)
