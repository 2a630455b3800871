"""The fixed, seeded input suite of `xentcheck compare`: the regimes where accuracy is won or lost.

Row ops (softmax, log_softmax, logsumexp): logit scales 1 to 1e4, row lengths 2 to 131072, exact ties,
masked (-inf) entries, rows anchored next to the dtype's exp overflow and underflow thresholds, and
temperatures far from 1. Cross-entropy: every option (reductions, weights, ignore_index, label
smoothing, probability targets) on class counts 7 to 32768. `quick` keeps rows up to 1024 entries.

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
        return self.values.shape[-1]

    def inputs(self, dtype: str):
        """(x, kwargs, cotangent) in `dtype`."""
        fmt = FORMATS[dtype]
        base = {"zero": 0.0, "overflow": math.log(fmt.max), "underflow": math.log(fmt.smallest_subnormal)}
        anchored = np.isfinite(self.values) if self.anchored is None else self.anchored
        values = self.values + base[self.anchor] * anchored
        values = np.where(np.isfinite(values), np.clip(values, -fmt.max / 4, fmt.max / 4), values)
        x = round_to_dtype(values, dtype)
        kwargs = dict(self.options)
        for key in ("target", "weight"):
            if key in kwargs and np.asarray(kwargs[key]).dtype.kind == "f":
                kwargs[key] = round_to_dtype(kwargs[key], dtype)
        rng = np.random.default_rng(self.seed + 1000)
        if self.op == "logsumexp":
            shape = x.shape[:-1]
        elif self.op == "cross_entropy":
            shape = x.shape[:-1] if kwargs.get("reduction", "mean") == "none" else ()
        else:
            shape = x.shape
        return x, kwargs, round_to_dtype(rng.standard_normal(shape), dtype)


def _rows(rng, n_rows, n, scale):
    return rng.standard_normal((n_rows, n)) * scale


def row_suite(op: str, quick: bool = False) -> list[Case]:
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
    if op in ("softmax", "log_softmax") and not quick:
        for tau in (0.05, 20.0):
            cases.append(Case(op, f"temperature {tau:g}", _rows(rng, 16, 64, 3.0), {"temperature": tau},
                              regime="temperature"))
    return [dataclasses.replace(c, seed=i) for i, c in enumerate(cases)]


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
                values = _rows(rng, n_rows, n_classes, scale)
                options = {"reduction": combo["reduction"], "label_smoothing": combo.get("label_smoothing", 0.0)}
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
                label = f"C={n_classes} scale={scale:g} " + ", ".join(
                    k if v is True else f"{k}={v}" for k, v in combo.items())
                cases.append(Case("cross_entropy", label, values, options, regime=combo["reduction"], scale=scale,
                                  seed=len(cases)))
    return cases
