"""The fixed, seeded input suite of `xentcheck compare`: the regimes where accuracy is won or lost.

Row ops (softmax, log_softmax, logsumexp): logit scales 1 to 1e4, row lengths 2 to 131072, exact ties,
masked (-inf) entries, rows anchored next to the dtype's exp overflow and underflow thresholds, and
temperatures far from 1. Cross-entropy: every option (reductions, weights, ignore_index, label
smoothing, probability targets) on class counts 7 to 32768. The loss family (loss_suite): focal, MSE and
hinge with their options on class counts 7 to 1024, with masked, tied and confident rows; entropy, KL and
H(p, q) on peaked, sparse, near-equal and 0-log-0 rows. `quick` keeps rows up to 1024 entries (128 for
the loss family).

A Case holds float64 values and is cast to each dtype (rounded once) when it is measured; its strata
(row length, scale, regime) are what the report groups errors by.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from .reference import FORMATS, round_to_dtype


@dataclass(frozen=True, eq=False)
class Case:
    op: str
    label: str
    values: np.ndarray  # float64 logits (row ops: rows along the last axis)
    options: dict = field(default_factory=dict)  # op keyword arguments (targets, reduction, temperature...)
    regime: str = "normal"
    scale: float = 1.0
    anchor: str = "zero"  # "zero", "overflow" or "underflow": values are offsets from the dtype's threshold
    anchored: np.ndarray | None = None  # which elements the anchor applies to (default: every finite one)
    seed: int = 0

    @property
    def n(self) -> int:
        """The row length the report groups by: the classes, for an LM head its weight's rows (the vocabulary)."""
        weight = self.options.get("weight")
        return np.shape(weight)[0] if weight is not None and np.ndim(weight) == 2 else self.values.shape[-1]

    def inputs(self, dtype: str):
        """(x, kwargs) in `dtype`."""
        fmt = FORMATS[dtype]
        base = {"zero": 0.0, "overflow": math.log(fmt.max), "underflow": math.log(fmt.smallest_subnormal)}
        anchored = np.isfinite(self.values) if self.anchored is None else self.anchored
        values = self.values + base[self.anchor] * anchored
        values = np.where(np.isfinite(values), np.clip(values, -fmt.max / 4, fmt.max / 4), values)
        x = round_to_dtype(values, dtype)
        kwargs = dict(self.options)
        for key in ("target", "weight", "alpha", "q", "bias", "class_weight"):
            if key in kwargs and np.asarray(kwargs[key]).dtype.kind == "f":
                kwargs[key] = round_to_dtype(kwargs[key], dtype)
        return x, kwargs

    def cotangent(self, shape, dtype: str) -> np.ndarray:
        """A seeded standard-normal cotangent of the op's output `shape`, in `dtype`."""
        return round_to_dtype(np.random.default_rng(self.seed + 1000).standard_normal(shape), dtype)


def _rows(rng, n_rows, n, scale):
    return rng.standard_normal((n_rows, n)) * scale


def row_suite(op: str, quick: bool = False, temperature: bool = True) -> list[Case]:
    rng = np.random.default_rng(1234)
    if quick:
        grid = [(n, scale, 256) for n in (2, 7, 128, 1024) for scale in (1.0, 100.0, 1e4)]
    else:
        grid = [(n, scale, 512) for n in (2, 7, 33, 128, 1024) for scale in (1.0, 10.0, 100.0, 1e3, 1e4)]
        grid += [(8192, 1.0, 8192), (8192, 100.0, 8192), (131072, 1.0, 131072)]
    cases = [Case(op, f"n={n} scale={scale:g}", _rows(rng, max(1, size // n), n, scale), scale=scale)
             for n, scale, size in grid]
    underflow = np.concatenate([np.zeros((16, 1)), rng.uniform(-2, 6, (16, 15))], axis=1)
    cases += [
        Case(op, "ties", np.repeat(rng.integers(-3, 4, (32, 4)).astype(float), 4, axis=1), regime="ties"),
        Case(op, "masked", np.where(rng.uniform(size=(32, 32)) < 0.25, -np.inf, _rows(rng, 32, 32, 3.0)),
             regime="masked"),
        Case(op, "near exp overflow", rng.uniform(-2.0, 0.5, (16, 16)), regime="overflow", anchor="overflow"),
        # the row max at 0, every other entry near log(smallest subnormal): exp(x - max) underflows
        Case(op, "near exp underflow", underflow, regime="underflow", anchor="underflow",
             anchored=np.arange(16)[None, :] > 0),
    ]
    if temperature and not quick:
        for tau in (0.05, 20.0):
            cases.append(Case(op, f"temperature {tau:g}", _rows(rng, 16, 64, 3.0), {"temperature": tau},
                              regime="temperature"))
    return [dataclasses.replace(c, seed=i) for i, c in enumerate(cases)]


HEAD_COMBOS = [dict(reduction="mean", z_loss=1e-4), dict(reduction="none", softcap=30.0, z_loss=1e-4),
               dict(reduction="mean", softcap=2.0, ignore=True, label_smoothing=0.1)]


def _ce_case(rng, n_classes, n_rows, scale, combo, seed) -> Case:
    values = _rows(rng, n_rows, n_classes, scale)
    options = {"reduction": combo["reduction"], "label_smoothing": combo.get("label_smoothing", 0.0)}
    options.update({k: combo[k] for k in ("z_loss", "softcap") if k in combo})
    if combo.get("weight"):
        options["weight"] = rng.uniform(0.25, 2.0, n_classes)
    if combo.get("probability"):
        q = rng.uniform(size=(n_rows, n_classes)) ** 4
        options["target"] = q / q.sum(axis=-1, keepdims=True)
    else:
        target = rng.integers(0, n_classes, n_rows)
        if combo.get("ignore"):
            target[::3] = -100
        options["target"] = target
    label = f"C={n_classes} scale={scale:g} " + ", ".join(k if v is True else f"{k}={v}" for k, v in combo.items())
    return Case("cross_entropy", label, values, options, regime=combo["reduction"], scale=scale, seed=seed)


def ce_suite(quick: bool = False) -> list[Case]:
    rng = np.random.default_rng(4321)
    combos = [
        dict(reduction="mean"),
        dict(reduction="none"),
        dict(reduction="sum", label_smoothing=0.1),
        dict(reduction="mean", weight=True),
        dict(reduction="mean", weight=True, label_smoothing=0.2),
        dict(reduction="mean", ignore=True),
        dict(reduction="none", probability=True),
        dict(reduction="mean", probability=True, label_smoothing=0.1),
    ]
    if quick:  # (classes, rows, scales, combos): every reduction and both target kinds, once
        few = [combos[i] for i in (0, 1, 2, 4, 6)]
        grid = [(7, 16, (10.0,), few), (128, 8, (10.0,), few)]
    else:
        grid = [(7, 32, (1.0, 100.0), combos), (128, 8, (1.0, 100.0), combos), (1024, 2, (1.0, 100.0), combos),
                (32768, 1, (10.0,), combos[:2])]
    cases = []
    for n_classes, n_rows, scales, chosen in grid:
        for scale in scales:
            for combo in chosen:
                cases.append(_ce_case(rng, n_classes, n_rows, scale, combo, len(cases)))
    # the LM head's options, from their own generator (the cases above stay as they were)
    head_rng = np.random.default_rng(8765)
    for n_classes, n_rows in [(128, 8)] + ([] if quick else [(32768, 2)]):
        for combo in HEAD_COMBOS:
            cases.append(_ce_case(head_rng, n_classes, n_rows, 10.0, combo, len(cases)))
    return cases


def loss_suite(op: str, quick: bool, options: list[dict], edge_options: dict) -> list[Case]:
    """A loss on logits with class-index targets: logits at several scales, each grid point run with every
    option set of `options` (quick: the last one); and one case of edge rows, with `edge_options`: ties (and so
    the hinge's kinks), masked (-inf) logits with the target on a finite one, and confident, correct rows (p_t
    near 1)."""
    rng = np.random.default_rng(2468)
    grid = [(7, 16, 3.0)] if quick else [(7, 32, 1.0), (7, 32, 30.0), (128, 8, 3.0), (1024, 4, 10.0)]
    cases = []
    for n_classes, n_rows, scale in grid:
        for combo in options[-1:] if quick else options:
            values = _rows(rng, n_rows, n_classes, scale)
            options = {k: v for k, v in combo.items() if k != "alpha"}
            if combo.get("alpha"):
                options["alpha"] = rng.uniform(0.25, 1.0, n_classes)
            options["target"] = rng.integers(0, n_classes, n_rows)
            label = f"C={n_classes} scale={scale:g} " + ", ".join(f"{k}={v}" for k, v in combo.items())
            cases.append(Case(op, label, values, options, regime=combo["reduction"], scale=scale))
    n = 9
    ties = np.repeat(rng.integers(-2, 3, (8, 3)).astype(float), 3, axis=1)
    masked = np.where(rng.uniform(size=(8, n)) < 0.3, -np.inf, _rows(rng, 8, n, 3.0))
    masked[:, 0] = np.abs(masked[:, 0])  # a finite entry in each row, and the target on a finite one
    confident = _rows(rng, 8, n, 1.0)
    confident[np.arange(8), np.arange(8)] += 25.0
    targets = np.concatenate([rng.integers(0, n, 8), [rng.choice(np.flatnonzero(np.isfinite(r))) for r in masked],
                              np.arange(8)])
    options = {"target": targets, "reduction": "none", **edge_options}
    cases.append(Case(op, "edges: ties, masked, confident", np.concatenate([ties, masked, confident]), options,
                      regime="edges"))
    return [dataclasses.replace(c, seed=i) for i, c in enumerate(cases)]


def linear_suite(op: str, quick: bool = False) -> list[Case]:
    """The LM head: hidden states of scale 1 and a classifier weight of scale 1/sqrt(H) (logits of scale 1 to 3),
    vocabularies 7 to 2048 (quick: 7; the oracle's exact dot products are what it costs), with and without bias, every reduction, label smoothing with class
    weights, ignored tokens, z-loss, soft-capping at 30 (Gemma 2) and at 1 (every logit capped)."""
    rng = np.random.default_rng(9753)
    combos = [dict(reduction="mean"), dict(reduction="none", bias=True), dict(reduction="sum", label_smoothing=0.1),
              dict(reduction="mean", class_weight=True, ignore=True), dict(reduction="mean", z_loss=1e-4),
              dict(reduction="none", softcap=30.0, z_loss=1e-4), dict(reduction="mean", softcap=1.0, bias=True)]
    grid = [(7, 8, 8)] + ([] if quick else [(256, 4, 16), (2048, 2, 8)])  # the exact oracle's dot products
    cases = []
    for vocab, tokens, hidden in grid:
        for combo in combos if vocab <= 256 else combos[:2]:
            options = {k: v for k, v in combo.items() if k not in ("bias", "class_weight", "ignore")}
            options["weight"] = rng.standard_normal((vocab, hidden)) * (2 / math.sqrt(hidden))
            target = rng.integers(0, vocab, tokens)
            if combo.get("ignore"):
                target[::3] = -100
            options["target"] = target
            if combo.get("bias"):
                options["bias"] = rng.standard_normal(vocab)
            if combo.get("class_weight"):
                options["class_weight"] = rng.uniform(0.25, 2.0, vocab)
            label = f"V={vocab} H={hidden} " + ", ".join(k if v is True else f"{k}={v}" for k, v in combo.items())
            cases.append(Case(op, label, rng.standard_normal((tokens, hidden)), options, regime=combo["reduction"]))
    return [dataclasses.replace(c, seed=i) for i, c in enumerate(cases)]


def distribution_suite(op: str, quick: bool = False, with_q: bool = True) -> list[Case]:
    """Dirichlet-like rows with zeros in p and q (0 log 0, and q_i = 0 only where p_i = 0); near-equal and
    peaked rows (q given to the op with_q)."""
    rng = np.random.default_rng(1357)

    def normalise(m):
        return m / m.sum(axis=-1, keepdims=True)

    def case(label, p, q):
        return Case(op, label, normalise(p), {"q": normalise(q)} if with_q else {}, regime=label.split(" ")[0])

    cases = []
    for n, n_rows in [(7, 32)] if quick else [(7, 64), (128, 16), (1024, 4)]:
        p = np.where(rng.uniform(size=(n_rows, n)) < 0.2, 0.0, rng.uniform(size=(n_rows, n)) ** 4)
        p[:, 0] += 0.5
        q = np.where((p == 0) & (rng.uniform(size=p.shape) < 0.5), 0.0, rng.uniform(size=p.shape) ** 4)
        q[:, 0] += 0.5
        cases.append(case(f"dirichlet-like n={n}", p, q))
        peaked = np.exp(_rows(rng, n_rows, n, 6.0))
        near = p * (1 + 1e-3 * rng.standard_normal(p.shape))
        cases.append(case(f"near-equal and peaked n={n}", np.concatenate([p, peaked]),
                          np.concatenate([near, np.exp(_rows(rng, n_rows, n, 6.0))])))
    return [dataclasses.replace(c, seed=i) for i, c in enumerate(cases)]
