"""Hypothesis strategies that reach where softmax and cross-entropy bugs live.

A drawn case is a dtype-independent *spec*: every logit is an anchor plus an offset, the anchors being
0 and the current dtype's exp overflow and underflow thresholds (log max, log smallest subnormal).
`spec.materialize(dtype)` rounds the values once into the dtype. So one spec is meaningful in every
dtype, `@example(case=...)` works under a dtype parametrisation, and shrinking drives offsets to 0.

Regimes: ordinary logits, large magnitudes (to about 1e4), wide spreads, exact ties, -inf masked
entries (with and without a finite one), values next to the exp overflow and underflow thresholds,
temperatures far from 1, 1-D to 4-D shapes with any axis, and for cross-entropy integer targets with
ignore_index, class weights (zeros included), label smoothing, probability targets and all reductions.
The loss family: LossSpec (focal, MSE, hinge: the same logit regimes, every option) and DistSpec
(entropy, KL, cross-entropy between distributions: probability vectors with zeros, peaked and near-uniform
rows, q equal to p, q zero where p is not).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from .reference import FORMATS, round_to_dtype

ANCHORS = ("zero", "overflow", "underflow")
TEMPERATURES = (1.0, 0.5, 2.0, 1e-3, 0.05, 20.0, 1e3)
MAX_ROW = 32  # generated rows; LLM-sized rows come from explicit examples (see edges.py)

# The ci profile draws shapes from this small fixed set (`fix_shapes`), most of them the explicit edges' own
# (edges.py), so that a backend that compiles one program per shape (jax.jit, torch.compile, a user's own
# jitted kernel) compiles a few and reuses them; the dev and explore profiles draw any shape. Simplest first:
# Hypothesis shrinks towards the first. Between them: 1-D to 4-D, a row of one entry, one class.
FIXED_ROW_SHAPES = ((2, 4), (4,), (3, 8), (3, 1), (4, 3, 2), (2, 3, 2, 4))
FIXED_CLASS_SHAPES = ((3, 4), (4,), (2, 4), (4, 8), (3, 1), (2, 3, 4))  # (batch..., classes)
_fixed = {"on": False}


def fix_shapes(on: bool) -> None:
    """Draw shapes from the fixed set (True) or from the whole range (False, the default)."""
    _fixed["on"] = bool(on)


def anchor_value(anchor: str, dtype: str) -> float:
    fmt = FORMATS[dtype]
    return {"zero": 0.0, "overflow": math.log(fmt.max), "underflow": math.log(fmt.smallest_subnormal)}[anchor]


def materialize_values(anchors, offsets, shape, dtype) -> np.ndarray:
    """anchor + offset for each element, clipped into the dtype's finite range, rounded once.

    `anchors` is one anchor name for every element, or one per element.
    """
    fmt = FORMATS[dtype]
    if isinstance(anchors, str):
        base = anchor_value(anchors, dtype)
    else:
        lookup = {a: anchor_value(a, dtype) for a in set(anchors)}
        base = np.fromiter(map(lookup.__getitem__, anchors), dtype=np.float64, count=len(anchors))
    with np.errstate(invalid="ignore"):
        values = base + np.asarray(offsets, dtype=np.float64)
    finite = np.isfinite(values)
    values[finite] = np.clip(values[finite], -fmt.max / 4, fmt.max / 4)
    return round_to_dtype(values.reshape(shape), dtype)


def _anchor_names(anchors) -> list:
    return [anchors] if isinstance(anchors, str) else sorted(set(anchors))


class _Spec:
    """What every spec has: its size, and its cotangent for a record's output shape."""

    @property
    def size(self) -> int:
        """The number of elements of the spec's input."""
        return int(np.prod(self.shape))

    def cotangent_for(self, record, dtype: str) -> np.ndarray:
        """The spec's cotangent values repeated to fill the output shape of `record` (xentcheck.records) on this
        spec's input, in `dtype` (1.0 everywhere when the spec has none)."""
        x, kwargs = self.materialize(dtype)
        return _cotangent_values(self.cotangent, record.output_shape(x, record.kwargs(kwargs)), dtype)


class _Pretty(_Spec):
    """Hypothesis prints a failing spec with this: the fields that matter, the logits in full when short."""

    def _repr_pretty_(self, printer, cycle):
        printer.text(self._summary())

    def _summary(self) -> str:
        fields = [f"{k}={v!r}" for k, v in self._options().items()]
        size = int(np.prod(self.shape))
        if size <= 64:
            anchors = self.anchors if not isinstance(self.anchors, str) else (self.anchors,) * size
            logits = ", ".join(o if a == "zero" else f"{a}{'+' if o >= 0 else ''}{o}" for a, o in
                               ((a, repr(o)) if a == "zero" else (a, o) for a, o in zip(anchors, self.offsets)))
            fields.append(f"logits=[{logits}]")
        else:
            fields.append(f"logits=<{size} values, anchors {_anchor_names(self.anchors)}>")
        return f"{type(self).__name__}({self.label!r}, " + ", ".join(fields) + ")"


@dataclass(frozen=True, repr=False)
class RowSpec(_Pretty):
    """Input for softmax, log_softmax, logsumexp: logits, an axis, a temperature and a cotangent."""
    shape: tuple
    axis: int
    anchors: tuple
    offsets: tuple
    temperature: float = 1.0
    cotangent: tuple = ()
    label: str = "generated"

    def materialize(self, dtype):
        x = materialize_values(self.anchors, self.offsets, self.shape, dtype)
        return x, {"axis": self.axis, "temperature": self.temperature}

    def _options(self):
        return {"shape": self.shape, "axis": self.axis, "temperature": self.temperature}

    __repr__ = _Pretty._summary


@dataclass(frozen=True, repr=False)
class CESpec(_Pretty):
    """Input for cross_entropy: logits (..., C) and the target with every option."""
    shape: tuple
    anchors: tuple
    offsets: tuple
    target_kind: str  # "index" or "probability"
    targets: tuple  # class indices (ignore_index where ignored), or non-negative raw masses
    reduction: str = "mean"
    weight: tuple | None = None
    label_smoothing: float = 0.0
    ignore_index: int = -100
    cotangent: tuple = ()
    label: str = "generated"
    z_loss: float = 0.0           # the LM head's options (reference.ops.HeadOptions): given to a backend only
    softcap: float | None = None  # when set

    @property
    def n_classes(self) -> int:
        return self.shape[-1]

    def materialize(self, dtype):
        x = materialize_values(self.anchors, self.offsets, self.shape, dtype)
        kwargs = {"reduction": self.reduction, "label_smoothing": self.label_smoothing,
                  "ignore_index": self.ignore_index}
        if self.z_loss:
            kwargs["z_loss"] = self.z_loss
        if self.softcap is not None:
            kwargs["softcap"] = self.softcap
        if self.weight is not None:
            kwargs["weight"] = round_to_dtype(np.array(self.weight, dtype=np.float64), dtype)
        if self.target_kind == "index":
            kwargs["target"] = np.array(self.targets, dtype=np.int64).reshape(self.shape[:-1])
        else:
            mass = np.array(self.targets, dtype=np.float64).reshape(self.shape)
            total = mass.sum(axis=-1, keepdims=True)
            q = np.divide(mass, total, out=np.zeros_like(mass), where=total > 0)
            kwargs["target"] = round_to_dtype(q, dtype)
        return x, kwargs

    def _options(self):
        targets = self.targets if len(self.targets) <= 64 else f"<{len(self.targets)} values>"
        return {"shape": self.shape, "target_kind": self.target_kind, "targets": targets,
                "reduction": self.reduction, "weight": self.weight, "label_smoothing": self.label_smoothing,
                "ignore_index": self.ignore_index, **({"z_loss": self.z_loss} if self.z_loss else {}),
                **({"softcap": self.softcap} if self.softcap is not None else {})}

    __repr__ = _Pretty._summary


def _cotangent_values(cotangent, shape, dtype) -> np.ndarray:
    """The spec's cotangent values repeated to fill `shape` (1.0 when there are none), in `dtype`."""
    n = int(np.prod(shape))
    values = (list(cotangent) * (n // max(len(cotangent), 1) + 1))[:n] if cotangent else [1.0] * n
    return round_to_dtype(np.array(values, dtype=np.float64).reshape(shape), dtype)


@dataclass(frozen=True, repr=False)
class LossSpec(_Pretty):
    """Input for focal_loss, mse_loss and multiclass_hinge_loss: logits (..., C), class indices, every
    option of the three (each op takes its own: OpRecord.kwargs)."""
    shape: tuple
    anchors: tuple
    offsets: tuple
    targets: tuple
    reduction: str = "mean"
    gamma: float = 2.0
    alpha: float | tuple | None = None
    form: str = "full"
    margin: float = 1.0
    cotangent: tuple = ()
    label: str = "generated"

    @property
    def n_classes(self) -> int:
        return self.shape[-1]

    def materialize(self, dtype):
        x = materialize_values(self.anchors, self.offsets, self.shape, dtype)
        kwargs = {"target": np.array(self.targets, dtype=np.int64).reshape(self.shape[:-1]),
                  "reduction": self.reduction, "gamma": self.gamma, "form": self.form, "margin": self.margin}
        if self.alpha is not None:
            alpha = round_to_dtype(np.array(self.alpha, dtype=np.float64), dtype)
            kwargs["alpha"] = alpha if alpha.ndim else float(alpha)
        return x, kwargs

    def _options(self):
        return {"shape": self.shape, "targets": self.targets if len(self.targets) <= 64 else
                f"<{len(self.targets)} values>", "reduction": self.reduction, "gamma": self.gamma,
                "alpha": self.alpha, "form": self.form, "margin": self.margin}

    __repr__ = _Pretty._summary


@dataclass(frozen=True, repr=False)
class DistSpec(_Spec):
    """Input for entropy, kl_divergence and distribution_cross_entropy: non-negative masses for p and q,
    each row normalised in float64 and rounded once into the dtype (so rows sum to 1 within rounding).
    A row of zero mass stays zero."""
    shape: tuple
    p_mass: tuple
    q_mass: tuple
    cotangent: tuple = ()
    label: str = "generated"

    def materialize(self, dtype):
        return _normalised(self.p_mass, self.shape, dtype), {"q": _normalised(self.q_mass, self.shape, dtype)}

    def __repr__(self):
        size = self.size
        masses = (f"p_mass={list(self.p_mass)}, q_mass={list(self.q_mass)}" if size <= 64
                  else f"<{size} masses each>")
        return f"DistSpec({self.label!r}, shape={self.shape}, {masses})"

    def _repr_pretty_(self, printer, cycle):
        printer.text(repr(self))


def _normalised(mass, shape, dtype) -> np.ndarray:
    m = np.array(mass, dtype=np.float64).reshape(shape)
    total = m.sum(axis=-1, keepdims=True)
    return round_to_dtype(np.divide(m, total, out=np.zeros_like(m), where=total > 0), dtype)


# --------------------------------------------------------------------------------------------
# Logits: a regime fixes the anchors; Hypothesis draws only the offsets (fewer choices to shrink).

_ordinary = st.floats(-10, 10, allow_nan=False, width=32)
_large = st.floats(-1e4, 1e4, allow_nan=False, width=32)
_near = st.floats(-3, 1, allow_nan=False, width=32)
REGIMES = {
    # regime: (anchor of every element but the first, anchor of the first, offsets)
    "ordinary": ("zero", "zero", _ordinary),
    "large": ("zero", "zero", _large),
    "wide": ("zero", "zero", st.one_of(_ordinary, st.floats(-1e4, -30, width=32))),
    "ties": ("zero", "zero", st.sampled_from([0.0, 1.0, -1.0, 2.5])),
    "masked": ("zero", "zero", st.one_of(_ordinary, st.just(-math.inf))),
    "overflow": ("overflow", "overflow", _near),
    "underflow": ("underflow", "zero", _near),  # one entry near 0, the rest near the underflow threshold
}


@st.composite
def logits(draw, shape):
    """(anchors, offsets, regime) for an array of `shape` in one regime."""
    regime = draw(st.sampled_from(list(REGIMES)))
    rest, first, offsets = REGIMES[regime]
    size = int(np.prod(shape))
    values = draw(st.lists(offsets, min_size=size, max_size=size))
    anchors = rest if first == rest else (first,) + (rest,) * (size - 1)
    return anchors, tuple(values), regime


@st.composite
def shapes(draw, max_dims=4, max_row=MAX_ROW, max_size=64):
    """1-D to 4-D shapes with at most `max_size` elements and rows of at most `max_row` (or the fixed set)."""
    if _fixed["on"]:
        return draw(st.sampled_from(FIXED_ROW_SHAPES))
    ndim = draw(st.integers(1, max_dims))
    dims = [draw(st.integers(1, max_row))]
    for _ in range(ndim - 1):
        room = max_size // int(np.prod(dims))
        dims.append(draw(st.integers(1, max(1, min(room, 6)))))
    order = draw(st.permutations(range(ndim)))
    return tuple(dims[i] for i in order)


def _batch_and_classes(batches):
    """(batch shape, number of classes): from `batches` and 1..24, or from the fixed set."""
    if _fixed["on"]:
        return st.sampled_from([(shape[:-1], shape[-1]) for shape in FIXED_CLASS_SHAPES])
    return st.tuples(st.sampled_from(batches), st.integers(1, 24))


def _cotangent(size):
    return st.lists(st.floats(-3, 3, allow_nan=False, width=32), min_size=min(size, 8), max_size=min(size, 8))


@st.composite
def row_specs(draw, temperature=True):
    shape = draw(shapes())
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    anchors, offsets, regime = draw(logits(shape))
    tau = draw(st.one_of(st.sampled_from(TEMPERATURES), st.floats(2.0 ** -7, 128.0, width=32))) if temperature else 1.0
    return RowSpec(shape, axis, anchors, offsets, float(tau), tuple(draw(_cotangent(int(np.prod(shape))))),
                   label=regime)


@st.composite
def ce_specs(draw, reductions=("mean", "sum", "none")):
    batch, n_classes = draw(_batch_and_classes([(), (1,), (3,), (6,), (2, 3), (4, 2)]))
    shape = batch + (n_classes,)
    anchors, offsets, regime = draw(logits(shape))
    n = int(np.prod(batch))
    kind = draw(st.sampled_from(["index", "index", "probability"]))
    # ignore_index means nothing to probability targets (torch refuses any but the default there)
    ignore_index = draw(st.sampled_from([-100, -100, -1, 0])) if kind == "index" else -100
    if kind == "index":
        targets = draw(st.lists(st.one_of(st.integers(0, n_classes - 1), st.just(ignore_index)), min_size=n,
                                max_size=n))
    else:
        masses = st.one_of(st.just(0.0), st.floats(0, 1, width=32))
        targets = draw(st.lists(masses, min_size=n * n_classes, max_size=n * n_classes))
    weight = draw(st.one_of(st.none(), st.lists(st.one_of(st.just(0.0), st.floats(0.125, 4.0, width=32)),
                                                 min_size=n_classes, max_size=n_classes)))
    smoothing = draw(st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0]))
    reduction = draw(st.sampled_from(reductions))
    cot = tuple(draw(_cotangent(max(n, 1))))
    head = draw(st.sampled_from(["", "", "", "z-loss", "soft-cap", "z-loss, soft-cap"]))
    z_loss = draw(st.sampled_from(Z_LOSSES)) if "z-loss" in head else 0.0
    softcap = draw(st.sampled_from(SOFTCAPS)) if "soft-cap" in head else None
    return CESpec(shape, anchors, offsets, kind, tuple(targets), reduction,
                  None if weight is None else tuple(weight), float(smoothing), ignore_index, cot,
                  label=f"{regime}, {head}" if head else regime, z_loss=z_loss, softcap=softcap)


Z_LOSSES = (1e-4, 1e-2, 0.5)   # PaLM's 1e-4, and larger coefficients that make the term matter
SOFTCAPS = (30.0, 2.0, 0.5)    # Gemma 2's 30 on its final logits, and caps that most logits reach


@st.composite
def loss_specs(draw):
    """LossSpec: the cross-entropy batches and logit regimes, class indices, and the loss family's options."""
    batch, n_classes = draw(_batch_and_classes([(), (1,), (3,), (6,), (2, 3)]))
    shape = batch + (n_classes,)
    anchors, offsets, regime = draw(logits(shape))
    n = int(np.prod(batch))
    targets = draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n))
    alpha = draw(st.one_of(st.none(), st.sampled_from([0.25, 1.0]),
                           st.lists(st.one_of(st.just(0.0), st.floats(0.125, 1.0, width=32)),
                                    min_size=n_classes, max_size=n_classes).map(tuple)))
    return LossSpec(shape, anchors, offsets, tuple(targets), draw(st.sampled_from(["mean", "sum", "none"])),
                    gamma=draw(st.sampled_from(GAMMAS)), alpha=alpha, form=draw(st.sampled_from(["full", "target"])),
                    margin=draw(st.sampled_from(MARGINS)), cotangent=tuple(draw(_cotangent(max(n, 1)))), label=regime)


GAMMAS = (2.0, 2.0, 0.0, 0.5, 1.0, 5.0)
MARGINS = (1.0, 1.0, 0.0, 0.5, 2.0, 10.0)
_MASSES = {  # regime: the mass of each entry
    "ordinary": st.floats(0, 1, width=32),
    "sparse": st.one_of(st.just(0.0), st.floats(0, 1, width=32)),
    "peaked": st.one_of(st.just(1.0), st.floats(0, 2.0 ** -20, width=32)),
    "tiny": st.one_of(st.just(0.0), st.floats(0, 2.0 ** -100, width=32), st.just(1.0)),
}


@st.composite
def distribution_specs(draw):
    """DistSpec: p in one mass regime; q independent, equal to p, or p with some entries moved to 0."""
    batch, n = draw(_batch_and_classes([(), (1,), (3,), (2, 3)]))
    shape, size = batch + (n,), int(np.prod(batch)) * n
    regime = draw(st.sampled_from(list(_MASSES)))
    p = draw(st.lists(_MASSES[regime], min_size=size, max_size=size))
    how = draw(st.sampled_from(["independent", "independent", "equal", "zeros"]))
    if how == "equal":
        q = p
    elif how == "zeros":  # q = 0 where p may not be: KL and the cross-entropy become +inf there
        q = [0.0 if zero else m for m, zero in zip(p, draw(st.lists(st.booleans(), min_size=size, max_size=size)))]
    else:
        q = draw(st.lists(_MASSES[draw(st.sampled_from(list(_MASSES)))], min_size=size, max_size=size))
    cot = tuple(draw(_cotangent(max(int(np.prod(batch)), 1))))
    return DistSpec(shape, tuple(p), tuple(q), cot, label=f"{regime}, q {how}")


# --------------------------------------------------------------------------------------------
# The LM head: fused linear cross-entropy (hidden states, classifier weight and bias, class indices).

@dataclass(frozen=True, repr=False)
class LinearSpec(_Spec):
    """Input for linear_cross_entropy: hidden (tokens..., H), weight (V, H), bias (V,) or None, class indices
    and every option. Values are listed, or drawn from `seed` (N(0, scale^2)) for the vocabulary-sized edges."""
    shape: tuple                 # hidden's (tokens..., H)
    n_classes: int
    hidden: tuple = ()
    weight: tuple = ()
    bias: tuple | None = None
    targets: tuple = ()
    reduction: str = "mean"
    class_weight: tuple | None = None
    ignore_index: int = -100
    label_smoothing: float = 0.0
    z_loss: float = 0.0
    softcap: float | None = None
    cotangent: tuple = ()
    label: str = "generated"
    seed: int | None = None
    scale: float = 1.0
    with_bias: bool = False      # for a seeded spec: draw a bias too

    def _values(self):
        v, h = self.n_classes, self.shape[-1]
        if self.seed is None:
            return (np.array(self.hidden, dtype=np.float64).reshape(self.shape),
                    np.array(self.weight, dtype=np.float64).reshape(v, h),
                    None if self.bias is None else np.array(self.bias, dtype=np.float64))
        rng = np.random.default_rng(self.seed)
        return (rng.standard_normal(self.shape) * self.scale, rng.standard_normal((v, h)) * self.scale,
                rng.standard_normal(v) if self.with_bias else None)

    def materialize(self, dtype):
        hidden, weight, bias = self._values()
        kwargs = {"weight": round_to_dtype(weight, dtype), "target": np.array(self.targets, dtype=np.int64).reshape(
                  self.shape[:-1]), "reduction": self.reduction, "ignore_index": self.ignore_index,
                  "label_smoothing": self.label_smoothing, "z_loss": self.z_loss, "softcap": self.softcap}
        if bias is not None:
            kwargs["bias"] = round_to_dtype(bias, dtype)
        if self.class_weight is not None:
            kwargs["class_weight"] = round_to_dtype(np.array(self.class_weight, dtype=np.float64), dtype)
        return round_to_dtype(hidden, dtype), kwargs

    def __repr__(self):
        values = (f"seeded {self.seed} (scale {self.scale})" if self.seed is not None else
                  f"hidden={list(self.hidden)}, weight={list(self.weight)}, bias={self.bias}"
                  if self.size + len(self.weight) <= 64 else f"<{self.size} + {len(self.weight)} values>")
        targets = self.targets if len(self.targets) <= 64 else f"<{len(self.targets)} targets>"
        return (f"LinearSpec({self.label!r}, hidden {self.shape}, vocab {self.n_classes}, targets={targets}, "
                f"reduction={self.reduction!r}, class_weight={self.class_weight}, ignore_index={self.ignore_index}, "
                f"label_smoothing={self.label_smoothing}, z_loss={self.z_loss}, softcap={self.softcap}, {values})")

    def _repr_pretty_(self, printer, cycle):
        printer.text(repr(self))


FIXED_LINEAR_SHAPES = ((3, 4, 5), (2, 3, 2, 7), (4, 1, 3))  # (tokens..., H, V) under the ci profile
_entry = st.floats(-2, 2, allow_nan=False, width=32)


@st.composite
def linear_specs(draw):
    """LinearSpec: a few tokens, hidden sizes 1 to 8, vocabularies 1 to 24, every option of the op."""
    if _fixed["on"]:
        *batch, h, v = draw(st.sampled_from(FIXED_LINEAR_SHAPES))
        batch = tuple(batch)
    else:
        batch = draw(st.sampled_from([(1,), (3,), (2, 3), (5,)]))
        h, v = draw(st.integers(1, 8)), draw(st.integers(1, 24))
    n = int(np.prod(batch))
    ignore_index = draw(st.sampled_from([-100, -100, 0]))
    targets = draw(st.lists(st.one_of(st.integers(0, v - 1), st.just(ignore_index)), min_size=n, max_size=n))
    bias = draw(st.one_of(st.none(), st.lists(_entry, min_size=v, max_size=v).map(tuple)))
    class_weight = draw(st.one_of(st.none(), st.lists(st.one_of(st.just(0.0), st.floats(0.125, 4.0, width=32)),
                                                      min_size=v, max_size=v).map(tuple)))
    return LinearSpec(batch + (h,), v, tuple(draw(st.lists(_entry, min_size=n * h, max_size=n * h))),
                      tuple(draw(st.lists(_entry, min_size=v * h, max_size=v * h))), bias, tuple(targets),
                      draw(st.sampled_from(["mean", "sum", "none"])), class_weight, ignore_index,
                      draw(st.sampled_from([0.0, 0.0, 0.1, 1.0])), draw(st.sampled_from([0.0, 0.0, 1e-4, 0.1])),
                      draw(st.sampled_from([None, None, 1.0, 30.0])), tuple(draw(_cotangent(max(n, 1)))))
