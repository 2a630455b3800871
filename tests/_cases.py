"""Named inputs shared by the tests: ordinary rows and every edge DESIGN.md names, in every dtype."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from xentcheck.records import OPS
from xentcheck.reference import FORMATS, round_to_dtype

DTYPES = tuple(FORMATS)
INF, NAN = np.inf, np.nan


def cast(values, dtype) -> np.ndarray:
    """float64 values into `dtype`, rounded once (ml_dtypes would round bfloat16 twice)."""
    return round_to_dtype(np.asarray(values, dtype=np.float64), dtype)


def exp_thresholds(dtype) -> tuple[float, float]:
    """(overflow, underflow): exp(x) overflows above the first, is below the smallest subnormal under the second."""
    fmt = FORMATS[dtype]
    return np.log(fmt.max), np.log(fmt.smallest_subnormal)


@dataclass
class RowCase:
    name: str
    make: object  # dtype -> float64 values (before the cast)
    axis: int = -1
    temperatures: tuple = (1.0,)
    dtypes: tuple = DTYPES

    def x(self, dtype) -> np.ndarray:
        return cast(self.make(dtype), dtype)


def _random(shape, scale, seed):
    return lambda dtype: np.random.default_rng(seed).standard_normal(shape) * scale


def _clipped(shape, scale, seed):
    def make(dtype):
        limit = FORMATS[dtype].max / 4
        return np.clip(np.random.default_rng(seed).standard_normal(shape) * scale, -limit, limit)
    return make


ROW_CASES = [
    RowCase("ordinary", _random((6, 9), 2.0, 0), temperatures=(1.0, 0.25, 7.5)),
    RowCase("large-1e4", _clipped((4, 8), 1e4, 1), temperatures=(1.0, 3.0)),
    RowCase("wide-spread", lambda d: [[0.0, -1.0, -30.0, -200.0, -900.0, -1e4, 5.0]]),
    RowCase("ties", lambda d: [[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0], [-3.0, 5.0, 5.0, -3.0]],
            temperatures=(1.0, 0.5)),
    RowCase("masked", lambda d: [[-INF, 0.5, -INF, 2.0, 1.0], [3.0, -INF, -INF, -INF, -INF]]),
    RowCase("all-masked", lambda d: [[-INF, -INF, -INF], [1.0, 2.0, 3.0]]),
    RowCase("plus-inf", lambda d: [[INF, 1.0, 2.0], [0.0, 1.0, 2.0], [INF, INF, -INF]]),
    RowCase("nan", lambda d: [[NAN, 1.0, 2.0], [0.0, 1.0, 2.0], [-INF, NAN, INF]]),
    RowCase("single-entry", lambda d: [[3.0], [-INF], [-7.5]]),
    RowCase("near-overflow", lambda d: [[exp_thresholds(d)[0] + k for k in (-1.0, -0.1, 0.0, 0.05)]]),
    RowCase("near-underflow", lambda d: [[0.0] + [exp_thresholds(d)[1] + k for k in (-1.0, 0.0, 2.0, 8.0)]]),
    RowCase("subnormal-logits", lambda d: [[FORMATS[d].smallest_subnormal * k for k in (1, 2, 3, 0, -5)]]),
    RowCase("axis-0", _random((7, 3), 3.0, 2), axis=0, temperatures=(1.0, 2.0)),
    RowCase("3d-axis-1", _random((2, 5, 3), 1.5, 3), axis=1),
    RowCase("tiny-and-huge-tau", _random((2, 6), 1.0, 4), temperatures=(1e-3, 1e3)),
    RowCase("long-row", _random((1, 2048), 4.0, 5)),
]


# --------------------------------------------------------------------------------------------
# Cross-entropy: every combination of the options.

@dataclass
class CECase:
    shape: tuple
    target_kind: str  # index | probability
    reduction: str
    weighted: bool
    ignore: str  # none | some | all | real-class
    smoothing: float
    seed: int = 0
    kwargs: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return (f"{'x'.join(map(str, self.shape))}-{self.target_kind}-{self.reduction}-"
                f"{'w' if self.weighted else 'nw'}-ign_{self.ignore}-ls{self.smoothing}")

    def make(self, dtype):
        """(logits, kwargs for cross_entropy) in `dtype`."""
        rng = np.random.default_rng(self.seed)
        n_classes = self.shape[-1]
        logits = cast(rng.standard_normal(self.shape) * 3, dtype)
        kwargs = {"reduction": self.reduction, "label_smoothing": self.smoothing}
        if self.weighted:
            weight = rng.uniform(0.2, 2.0, n_classes)
            weight[1 % n_classes] = 0.0  # a class with weight zero
            kwargs["weight"] = cast(weight, dtype)
        if self.target_kind == "probability":
            q = rng.uniform(0, 1, self.shape) * (rng.uniform(size=self.shape) < 0.7)
            q[..., 0] += 1e-3
            kwargs["target"] = cast(q / q.sum(axis=-1, keepdims=True), dtype)
            return logits, kwargs
        target = rng.integers(0, n_classes, self.shape[:-1])
        if self.ignore == "some" and target.size:
            target.reshape(-1)[::2] = -100
        elif self.ignore == "all":
            target[...] = -100
        elif self.ignore == "real-class":
            kwargs["ignore_index"] = 2
        kwargs["target"] = np.asarray(target)
        return logits, kwargs


def ce_cases(shapes=((7,), (6, 7), (2, 3, 7))) -> list[CECase]:
    cases = []
    for shape, kind, reduction, weighted, smoothing in itertools.product(
            shapes, ("index", "probability"), ("mean", "sum", "none"), (False, True), (0.0, 0.3, 1.0)):
        ignores = ("none", "some", "all", "real-class") if kind == "index" else ("none",)
        for ignore in ignores:
            if ignore in ("some", "all") and len(shape) == 1:
                continue  # one example: "some" is "all"
            cases.append(CECase(shape, kind, reduction, weighted, ignore, smoothing))
    return cases


def cotangent_for(op: str, x: np.ndarray, kwargs: dict, seed: int = 7) -> np.ndarray:
    """A random cotangent shaped like op's output (its record's shape rule), in x's dtype."""
    shape = OPS[op].output_shape(x, kwargs)
    return cast(np.random.default_rng(seed).standard_normal(shape), x.dtype.name if x.dtype.name in FORMATS
                else "float64")


def op_kwargs(op: str, case: RowCase, temperature: float) -> dict:
    """The row case's axis, and the temperature where the op takes one."""
    return {"axis": case.axis, **({"temperature": temperature} if "temperature" in OPS[op].parameters else {})}


# --------------------------------------------------------------------------------------------
# Cross-entropy where a careless reference cancels: small label smoothing, class weights spanning many
# orders of magnitude, probability targets near one-hot; on confident rows (p_top within exp(-30) of 1,
# the target at the max and elsewhere) and ordinary ones.

SMALL_SMOOTHINGS = (1e-3, 1e-6, 1e-9, 1e-12)
NEAR_ONE_HOT = (1e-3, 1e-6, 1e-9, 1e-12)  # 1 - q_heavy: the rest spread evenly over the other classes
WEIGHT_DECADES = {"float16": 2, "bfloat16": 6, "float32": 6, "float64": 30}  # weights 10**-k .. 10**k

# Rows with a target at their max (top) in all but the second row. In the last, 1 - p_top = 2 exp(-100) is
# below the smoothing's share of the gradient at the top, (eps/C) sum_{c != top} w_c.
CONFIDENT_ROWS = ([[30.0, 0.0, 0.0], [0.0, 30.0, 0.0], [0.0, 0.0, 30.0], [12.0, 0.0, -3.0], [100.0, 0.0, 0.0]],
                  [0, 0, 2, 0, 0])


def _ordinary_rows(n_rows=5, n_classes=7, seed=11):
    """Standard normal x 3 logits; the target at the row's max in every other row, elsewhere random."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n_rows, n_classes)) * 3
    target = rng.integers(0, n_classes, n_rows)
    target[::2] = logits.argmax(axis=-1)[::2]
    return logits.tolist(), target.tolist()


def wide_weights(n_classes, dtype, seed=0):
    """Class weights 10**-k .. 10**k (k from WEIGHT_DECADES), log-evenly spaced, the largest first (at the
    confident rows' first max), the others shuffled."""
    k = WEIGHT_DECADES[dtype]
    w = 10.0 ** np.linspace(k, -k, n_classes)
    w[1:] = np.random.default_rng(seed).permutation(w[1:])
    return w


def near_one_hot(heavy, n_classes, delta):
    """q = 1 - delta at each row's class `heavy`, delta / (C - 1) at the others."""
    q = np.full((len(heavy), n_classes), delta / (n_classes - 1))
    q[np.arange(len(heavy)), heavy] = 1.0 - delta
    return q


@dataclass
class NamedCECase:
    name: str
    build: object  # dtype -> (float64 logits, cross_entropy kwargs with float64 arrays)

    @property
    def id(self) -> str:
        return self.name

    def make(self, dtype):
        """(logits, kwargs for cross_entropy) in `dtype`: floating targets and weights rounded once."""
        values, kwargs = self.build(dtype)
        kwargs = dict(kwargs)
        for key in ("target", "weight"):
            if key in kwargs and np.asarray(kwargs[key]).dtype.kind == "f":
                kwargs[key] = cast(kwargs[key], dtype)
            elif key == "target":
                kwargs[key] = np.asarray(kwargs[key])
        return cast(values, dtype), kwargs


def hard_ce_cases() -> list[NamedCECase]:
    """Small smoothing, wide weights and near one-hot probability targets, on confident and ordinary rows."""
    rows = {"confident": CONFIDENT_ROWS, "ordinary": _ordinary_rows()}
    cases = []
    for (kind, (logits, target)), eps in itertools.product(rows.items(), SMALL_SMOOTHINGS):
        reduction = "none" if kind == "confident" else "mean"
        cases.append(NamedCECase(f"{kind}-ls{eps:g}", lambda d, x=logits, t=target, e=eps, r=reduction: (
            x, {"target": t, "label_smoothing": e, "reduction": r})))
    for (kind, (logits, target)), eps in itertools.product(rows.items(), (0.0, 1e-3, 1e-9)):
        for reduction in ("none", "mean"):
            cases.append(NamedCECase(f"{kind}-wide-weights-ls{eps:g}-{reduction}", lambda d, x=logits, t=target, e=eps, r=reduction: (
                x, {"target": t, "label_smoothing": e, "reduction": r, "weight": wide_weights(len(x[0]), d)})))
    for (kind, (logits, target)), delta in itertools.product(rows.items(), NEAR_ONE_HOT):
        reduction = "none" if kind == "confident" else "sum"
        cases.append(NamedCECase(f"{kind}-near-one-hot-{delta:g}", lambda d, x=logits, t=target, e=delta, r=reduction: (
            x, {"target": near_one_hot(t, len(x[0]), e), "reduction": r})))
        cases.append(NamedCECase(
            f"{kind}-near-one-hot-{delta:g}-wide-weights-ls1e-9", lambda d, x=logits, t=target, e=delta, r=reduction: (
                x, {"target": near_one_hot(t, len(x[0]), e), "reduction": r, "label_smoothing": 1e-9,
                    "weight": wide_weights(len(x[0]), d)})))
    return cases


# --------------------------------------------------------------------------------------------
# Every named input of an op, by its record's family: (x, kwargs, cotangent).

def _row_inputs(record, dtype):
    for case in ROW_CASES:
        if dtype in case.dtypes:
            for tau in case.temperatures if "temperature" in record.parameters else (1.0,):
                x, kwargs = case.x(dtype), op_kwargs(record.name, case, tau)
                yield x, kwargs, cotangent_for(record.name, x, kwargs)


def _ce_inputs(record, dtype):
    for case in ce_cases(shapes=((7,), (6, 7), (2, 3, 5))) + hard_ce_cases():
        x, kwargs = case.make(dtype)
        yield x, kwargs, cotangent_for(record.name, x, kwargs)


def _index_loss_inputs(record, dtype):
    """Confident and ordinary rows (where cancellation would show) under each option set of its compare
    suite, per example; wide per-class alpha where the op takes alpha."""
    rng = np.random.default_rng(5)
    for logits, target in (CONFIDENT_ROWS, _ordinary_rows()):
        x = cast(logits, dtype)
        for options in record.options["suite_options"]:
            kwargs = {**record.kwargs(options), "target": np.asarray(target), "reduction": "none"}
            if "alpha" in kwargs:
                kwargs["alpha"] = cast(wide_weights(x.shape[-1], dtype), dtype)
            yield x, kwargs, cast(rng.standard_normal(len(target)), dtype)


def _distribution_inputs(record, dtype):
    """Near one-hot p (and q: as near, and off by one class)."""
    rng, n = np.random.default_rng(5), 7
    heavy = np.arange(8) % n
    for delta in NEAR_ONE_HOT:
        q = np.concatenate([near_one_hot(heavy[:4], n, delta * 10), near_one_hot((heavy[4:] + 1) % n, n, 1e-3)])
        kwargs = {"q": cast(q, dtype)} if "q" in record.parameters else {}
        yield cast(near_one_hot(heavy, n, delta), dtype), kwargs, cast(rng.standard_normal(8), dtype)


FAMILY_INPUTS = {"rows": _row_inputs, "cross_entropy": _ce_inputs, "index_loss": _index_loss_inputs,
                 "distribution": _distribution_inputs}


def named_inputs(record, dtype):
    """The named inputs above for `record`'s family (none for a family they do not cover)."""
    return FAMILY_INPUTS.get(record.family, lambda r, d: iter(()))(record, dtype)
