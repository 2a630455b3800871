"""The op records: one declarative record per op (in the manner of PyTorch's OpInfo database).

A record holds everything the rest of xentcheck needs to know about an op: its keyword arguments and their
defaults (the backend contract's signature), its reference and analytic vjp, its exact oracle and oracle
vjp, its derived error bounds (value, vjp, and the gradient row sums where it has them), its output shape
(the cotangent's), its input strategy and explicit edges, its `compare` cases and error strata, its
finite-difference rules (direction, when it applies, the third-derivative bound) and, where the Hessian is
known in closed form, its Hessian-vector product, and where forward mode is derived its Jacobian-vector
product (reference, oracle, bound). The property suite, `check`, `compare`, the bench and the
tests iterate over OPS; none of them branches on an op's name. Adding an op is adding a record (with its
reference, oracle and bound functions): `register(record)`, from a module named in the environment variable
XENTCHECK_OPS (module names or .py paths, comma-separated) so that every process of a run sees it.

Families (`row_op`, `cross_entropy_op`, `index_loss_op`, `distribution_op`) fill in what ops of one kind
share: the row ops act along an axis, cross-entropy and the losses on logits along the last (class) axis
with targets and a reduction, the distributions on probability rows. An optional record (the loss family)
may be missing from a backend: it is then "not provided", never a failure.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import bounds, edges, finite_differences, reference, strategies, suite
from .reference import DTYPE_NAMES, FORMATS, exact, linear
from .reference.ops import CrossEntropyProblem, loss_part

REQUIRED = inspect.Parameter.empty  # a keyword argument without a default (a target)


@dataclass(frozen=True)
class OpRecord:
    name: str
    family: str                   # "rows", "cross_entropy", "index_loss", "distribution" (or a new one)
    parameters: dict              # keyword argument -> default (REQUIRED for none): the contract's signature
    reference: Callable           # (x, **kwargs) -> value
    reference_vjp: Callable       # (x, cotangent, **kwargs) -> gradient
    oracle: Callable              # exact value, correctly rounded (dtype= to round elsewhere)
    oracle_vjp: Callable          # exact vjp, correctly rounded
    value_bound: Callable         # (x, dtype=, compute=, floor=, **kwargs) -> absolute tolerance, output-shaped
    vjp_bound: Callable           # (x, cotangent, dtype=, compute=, floor=, **kwargs) -> tolerance, input-shaped
    output_shape: Callable        # (x, kwargs) -> the value's shape, and so the cotangent's
    specs: Callable               # () -> Hypothesis strategy of specs (strategies.py)
    edges: Callable               # () -> tuple of specs, every property's explicit examples (edges.py)
    suite: Callable               # (quick) -> the fixed cases of `xentcheck compare` (suite.py)
    third_derivative: Callable    # (x, v, d, kwargs) -> sup|F'''| along d (finite_differences.py)
    domain: str = "logits"        # "logits" (shift-invariant rows) or "probabilities" (entries in [0, 1])
    row_sum: Callable | None = None        # (x, v, kwargs) -> what each row of the vjp sums to; None: no property
    row_sum_bound: Callable | None = None  # its tolerance, like vjp_bound (bounds.vjp_row_sum_bound's default)
    defined_at: Callable | None = None     # (x, kwargs) -> whether the derivatives are defined (finite) there
    fd_applies: Callable | None = None     # (x, d, kwargs) -> whether a difference quotient along d measures one
    strata: Callable | None = None         # (x, kwargs, kind) -> each element's gap to its row max, or None
    hvp: Callable | None = None            # analytic (x, cotangent, tangent, **kwargs) -> Hessian-vector product
    hvp_bound: Callable | None = None      # its error bound, like vjp_bound
    jvp: Callable | None = None            # analytic (x, tangent, **kwargs) -> J t, output-shaped (forward mode)
    oracle_jvp: Callable | None = None     # exact J t, correctly rounded
    jvp_bound: Callable | None = None      # (x, tangent, dtype=, compute=, floor=, **kwargs) -> tolerance of J t
    example_kwargs: Callable | None = None  # (x, rng) -> its required keyword arguments (targets, q, weight)
    gradients: tuple = ("x",)              # what its vjp returns: one gradient, or one per name (a tuple)
    optional: bool = False                 # a backend may lack it: then "not provided", never a failure
    dtypes: tuple = DTYPE_NAMES
    options: dict = field(default_factory=dict)  # family-specific knobs (documented where the family is)
    later_options: tuple = ()  # options added after the op's first contract: a backend gets them only when set

    @property
    def kwarg_names(self) -> tuple:
        return tuple(self.parameters)

    def kwargs(self, spec_kwargs: dict) -> dict:
        """The spec's keyword arguments that this op takes."""
        return {k: v for k, v in spec_kwargs.items() if k in self.parameters}

    def backend_kwargs(self, kwargs: dict) -> dict:
        """kwargs without the later options left at their defaults: an adapter written before an option was
        added keeps working, and declines the option (a TypeError naming it counts as NotImplementedError)."""
        return {k: v for k, v in kwargs.items()
                if not (k in self.later_options and _is_default(v, self.parameters[k]))}

    def defaults(self) -> dict:
        """Its keyword arguments' defaults, as a backend is given them (later options left out)."""
        return self.backend_kwargs({k: v for k, v in self.parameters.items() if v is not REQUIRED})

    def cotangent(self, case, dtype: str):
        """A property spec's cotangent for this op's output."""
        return case.cotangent_for(self, dtype)

    def example(self, shape: tuple, dtype: str, rng):
        """(x, every keyword argument) of `shape` for timing: logits uniform in [-4, 4), or for an op on
        probabilities their softmax rows; its required arguments from `example_kwargs`, the rest defaults.
        A family that reads `shape` otherwise gives options["example"] (shape, dtype, rng) -> (x, kwargs)."""
        if "example" in self.options:
            x, kwargs = self.options["example"](shape, dtype, rng)
            return x, {**self.defaults(), **kwargs}
        x = _uniform_logits(shape, dtype, rng)
        if self.domain == "probabilities":
            x = reference.softmax(x)
        return x, {**self.defaults(), **(self.example_kwargs(x, rng) if self.example_kwargs else {})}

    def fixed_inputs(self, dtype: str, max_size: int = 4096):
        """(label, x, kwargs, cotangent) of its quick compare suite and its explicit edges (up to max_size
        entries): the fixed inputs the tests and benchmarks/oracle_accuracy.py hold the reference to."""
        for case in self.suite(True):
            x, kwargs = case.inputs(dtype)
            yield case.label, x, kwargs, case.cotangent(self.output_shape(x, kwargs), dtype)
        for spec in self.edges():
            if spec.size <= max_size:
                x, kwargs = spec.materialize(dtype)
                yield spec.label, x, self.kwargs(kwargs), spec.cotangent_for(self, dtype)

    def provided_by(self, backend) -> bool:
        """Whether `backend` offers this op (every backend offers the contract's required ops)."""
        return not self.optional or callable(getattr(backend, self.name, None))

    def gradients_of(self, out, kwargs: dict):
        """A backend's vjp result as the contract has it: one array, or for an op with several gradients a tuple
        of arrays in `gradients` order, None where that input is absent (a list is taken as the tuple, and an
        absent input's entry is not read: None or zeros alike). Anything else is a ValueError naming the form."""
        if len(self.gradients) == 1:
            return np.asarray(out)
        first = next(iter(inspect.signature(self.reference).parameters))  # x's own name: linear's hidden
        form = ", ".join(f"d {first if name == 'x' else name}" + (" or None" if self.parameters.get(name, 0) is None
                                                                 else "") for name in self.gradients)
        if not isinstance(out, (tuple, list)) or len(out) != len(self.gradients):
            got = (f"a {type(out).__name__} of {len(out)} entries" if isinstance(out, (tuple, list))
                   else type(out).__name__)
            raise ValueError(f"vjp of {self.name} must return a tuple ({form}); got {got}")
        given = [name == "x" or kwargs.get(name) is not None for name in self.gradients]
        missing = next((n for n, o, wanted in zip(self.gradients, out, given) if wanted and o is None), None)
        if missing is not None:
            raise ValueError(f"vjp of {self.name} must return a tuple ({form}); got None for d "
                             f"{first if missing == 'x' else missing}")
        return tuple(np.asarray(o) if wanted else None for o, wanted in zip(out, given))

    def signature(self) -> inspect.Signature:
        """The contract method's signature: (self, x, <keyword arguments with their defaults>)."""
        params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                  inspect.Parameter("x", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        params += [inspect.Parameter(k, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=v)
                   for k, v in self.parameters.items()]
        return inspect.Signature(params)


OPS: dict[str, OpRecord] = {}


def _is_default(value, default) -> bool:
    return value is default or (default is not None and isinstance(value, (int, float, np.integer, np.floating))
                                 and value == default)


def flattened(out):
    """An op's result as one array: a vjp of several inputs (OpRecord.gradients) as its gradients' entries one
    after another (an absent input's left out), so that `compare` measures them as one; anything else as is."""
    if isinstance(out, tuple):
        return np.concatenate([np.ravel(o) for o in out if o is not None])
    return out


def register(record: OpRecord) -> OpRecord:
    """Add `record` to OPS (and its forwarding method to the backend base class); returns it."""
    from .backends.contract import Backend

    OPS[record.name] = record
    Backend.add_op(record)
    return record


# --------------------------------------------------------------------------------------------
# Shape rules and strata shared by the families.

def _same_shape(x, kwargs):
    return np.shape(x)


def _axis_removed(x, kwargs):
    axis = kwargs.get("axis", -1) % max(np.ndim(x), 1)
    return tuple(s for i, s in enumerate(np.shape(x)) if i != axis)


def _per_example(x, kwargs):
    """One loss per example (the batch shape) for reduction "none", else a scalar."""
    return np.shape(x)[:-1] if kwargs.get("reduction", "mean") == "none" else ()


def _last_axis_removed(x, kwargs):
    return np.shape(x)[:-1]


def _gap(x, kwargs):
    """(x_max - x_i)/tau along the op's axis, per element."""
    rows = np.moveaxis(np.asarray(x).astype(np.float64), kwargs.get("axis", -1), -1)
    with np.errstate(invalid="ignore"):
        gap = (rows.max(axis=-1, keepdims=True) - rows) / kwargs.get("temperature", 1.0)
    return np.moveaxis(gap, -1, kwargs.get("axis", -1))


def _gap_of(kinds):
    """Strata by gap for the kinds whose result is elementwise over x."""
    return lambda x, kwargs, kind: _gap(x, kwargs) if kind in kinds else None


def _zero_row_sums(x, v, kwargs):
    return 0.0


# --------------------------------------------------------------------------------------------
# The families.

def row_op(name, *, reference_fn, reference_vjp, oracle, oracle_vjp, value_bound, vjp_bound, third_derivative,
           temperature=True, keeps_axis=True, row_sum=_zero_row_sums, row_sum_bound=None, **extra) -> OpRecord:
    """An op on rows of x along `axis` (and x/tau for `temperature`): its value keeps x's shape (`keeps_axis`)
    or removes the axis."""
    parameters = {"axis": -1, "temperature": 1.0} if temperature else {"axis": -1}
    return OpRecord(
        name=name, family="rows", parameters=parameters, reference=reference_fn, reference_vjp=reference_vjp,
        oracle=oracle, oracle_vjp=oracle_vjp, value_bound=value_bound, vjp_bound=vjp_bound,
        output_shape=_same_shape if keeps_axis else _axis_removed,
        specs=lambda: strategies.row_specs(temperature=temperature), edges=lambda: edges.row_edges(temperature),
        suite=lambda quick: suite.row_suite(name, quick, temperature), third_derivative=third_derivative,
        row_sum=row_sum, row_sum_bound=row_sum_bound,
        strata=_gap_of(("value", "vjp") if keeps_axis else ("vjp",)), **extra)


def _uniform_logits(shape, dtype, rng):
    """Uniform in [-4, 4), drawn in float32 (float64 for float64) in place: no float64 copy of a large array."""
    a = rng.random(shape, dtype=np.float64 if dtype == "float64" else np.float32)
    a *= 8
    a -= 4
    return a if a.dtype.name == dtype else a.astype(FORMATS[dtype].dtype)


def _class_targets(x, rng):
    return {"target": rng.integers(0, np.shape(x)[-1], np.shape(x)[:-1])}


def _q_like(x, rng):
    return {"q": reference.softmax(_uniform_logits(np.shape(x), x.dtype.name, rng))}


def _ce_defined(x, kwargs):
    """A mean over zero weight is NaN, and so is its gradient."""
    logits, options = loss_part(x, kwargs)
    problem = CrossEntropyProblem(logits, **options)
    return not (problem.reduction == "mean" and problem.denominator == 0)


def _head_options(kwargs) -> bool:
    """Whether cross-entropy's LM-head options (z_loss, softcap) are set. No row-sum bound or closed-form Hessian
    is derived for them (a gradient row sums to 2 z_loss r lse with a z-loss, to nothing simple under a soft-cap):
    those properties leave them to the agreement properties and their own (properties/test_cross_entropy.py).
    The finite differences take the z-loss, not the soft-cap (finite_differences.cross_entropy_third)."""
    return bool(kwargs.get("z_loss")) or kwargs.get("softcap") is not None


def _ce_row_sums(x, v, kwargs):
    return None if _head_options(kwargs) else 0.0


def cross_entropy_op(name, *, reference_fn, reference_vjp, oracle, oracle_vjp, value_bound, vjp_bound,
                     third_derivative, parameters, **extra) -> OpRecord:
    """Cross-entropy on logits (..., C) with class-index or probability targets and every torch option."""
    return OpRecord(
        name=name, family="cross_entropy", parameters=parameters, reference=reference_fn,
        reference_vjp=reference_vjp, oracle=oracle, oracle_vjp=oracle_vjp, value_bound=value_bound,
        vjp_bound=vjp_bound, output_shape=_per_example, specs=strategies.ce_specs, edges=edges.ce_edges,
        suite=suite.ce_suite, third_derivative=third_derivative, row_sum=_ce_row_sums, defined_at=_ce_defined,
        fd_applies=finite_differences.cross_entropy_fd_applies, example_kwargs=_class_targets, later_options=("z_loss", "softcap"), **extra)


def _hinge_applies(x, d, kwargs):
    return finite_differences.hinge_is_linear_along(x, d, kwargs)


def index_loss_op(name, *, reference_fn, reference_vjp, oracle, oracle_vjp, value_bound, vjp_bound,
                  third_derivative, parameters, suite_options, suite_edge_options=None, **extra) -> OpRecord:
    """A loss on logits (..., C) with class-index targets and a reduction (the loss family: optional).
    `suite_options`: the option sets every compare grid point runs; `suite_edge_options`: the edge rows'."""
    return OpRecord(
        name=name, family="index_loss", parameters=parameters, reference=reference_fn, reference_vjp=reference_vjp,
        oracle=oracle, oracle_vjp=oracle_vjp, value_bound=value_bound, vjp_bound=vjp_bound,
        output_shape=_per_example, specs=strategies.loss_specs, edges=edges.loss_edges,
        suite=lambda quick: suite.loss_suite(name, quick, suite_options, suite_edge_options or {}),
        third_derivative=third_derivative, row_sum=_zero_row_sums, example_kwargs=_class_targets, optional=True,
        options={"suite_options": suite_options}, **extra)


def _finite_divergence(x, kwargs):
    """KL or H(p, q) is +inf where q_i = 0 < p_i."""
    return bool(np.isfinite(reference.kl_divergence(x, kwargs["q"]) if "q" in kwargs else 0.0).all())


def distribution_op(name, *, reference_fn, reference_vjp, oracle, oracle_vjp, value_bound, vjp_bound,
                    third_derivative, with_q=True, **extra) -> OpRecord:
    """An op on probability rows p (and q), one value per row; its vjp is with respect to p (optional)."""
    return OpRecord(
        name=name, family="distribution", parameters={"q": REQUIRED} if with_q else {}, reference=reference_fn,
        reference_vjp=reference_vjp, oracle=oracle, oracle_vjp=oracle_vjp, value_bound=value_bound,
        vjp_bound=vjp_bound, output_shape=_last_axis_removed, specs=strategies.distribution_specs,
        edges=edges.distribution_edges, suite=lambda quick: suite.distribution_suite(name, quick, with_q),
        third_derivative=third_derivative, domain="probabilities", defined_at=_finite_divergence,
        example_kwargs=_q_like if with_q else None, optional=True, **extra)


def _linear_kwargs(x, rng):
    """A classifier weight of 7 classes for hidden states x, and their targets."""
    weight = _uniform_logits((7, np.shape(x)[-1]), x.dtype.name, rng) / 4
    return {"weight": weight, "target": rng.integers(0, 7, np.shape(x)[:-1])}


BENCH_HIDDEN = 2048  # `bench` times the LM head at (tokens x vocabulary) sizes with this hidden size


def _lm_head_example(shape, dtype, rng):
    """`bench`'s LM head at size (tokens, vocabulary): hidden (tokens, BENCH_HIDDEN) uniform in [-4, 4) / 8,
    weight (vocabulary, BENCH_HIDDEN) uniform / (8 sqrt(H)) (logits of order 1), class indices."""
    tokens, vocab = shape
    scale = 8 * math.sqrt(BENCH_HIDDEN)
    hidden = (_uniform_logits((tokens, BENCH_HIDDEN), "float64", rng) / 8).astype(FORMATS[dtype].dtype)
    weight = (_uniform_logits((vocab, BENCH_HIDDEN), "float64", rng) / scale).astype(FORMATS[dtype].dtype)
    return hidden, {"weight": weight, "target": rng.integers(0, vocab, tokens)}


def _lm_head_flops(x, kwargs, kind) -> int:
    """2 N H V per matmul: the logits; a vjp adds d hidden = g W and d weight = g^T hidden."""
    return 2 * math.prod(np.shape(x)) * np.shape(kwargs["weight"])[0] * (1 if kind == "value" else 3)


def _lm_head_bytes(kind, tokens, vocab, dtype) -> int:
    """`bench`'s memory model: the float32 logits (twice for a value, four times with their gradient and a
    framework's saved softmax) and the weight with its gradient."""
    logits = tokens * vocab * 4 * (2 if kind == "value" else 4)
    return logits + 3 * vocab * BENCH_HIDDEN * FORMATS[dtype].dtype.itemsize


def linear_op(name, *, reference_fn, reference_vjp, oracle, oracle_vjp, value_bound, vjp_bound, parameters,
              **extra) -> OpRecord:
    """An LM head: hidden states x (tokens..., H), a classifier weight (V, H) and bias in the keyword arguments,
    class indices; its vjp is a tuple (d x, d weight, d bias). Its own properties (xentcheck/properties/
    test_linear_cross_entropy.py) check the three gradients; `compare` measures them as one (`flattened`)."""
    return OpRecord(
        name=name, family="linear", parameters=parameters, reference=reference_fn, reference_vjp=reference_vjp,
        oracle=oracle, oracle_vjp=oracle_vjp, value_bound=value_bound, vjp_bound=vjp_bound,
        output_shape=_per_example, specs=strategies.linear_specs, edges=edges.linear_edges,
        suite=lambda quick: suite.linear_suite(name, quick),
        third_derivative=finite_differences.linear_cross_entropy_third, fd_applies=finite_differences.linear_fd_applies,
        example_kwargs=_linear_kwargs, optional=True, gradients=("x", "weight", "bias"),
        options={"example": _lm_head_example, "flops": _lm_head_flops, "estimated_bytes": _lm_head_bytes,
                 "bench_size": f"tokens x vocabulary, hidden {BENCH_HIDDEN}"}, **extra)


def _positional(function, first=("weight", "target")):
    """f(x, cotangent, **kwargs) for a function that takes (x, <first>..., cotangent, **rest) positionally."""
    def call(x, cotangent, **kwargs):
        return function(x, *(kwargs.pop(k) for k in first), cotangent, **kwargs)
    call.__name__ = function.__name__
    return call


# --------------------------------------------------------------------------------------------
# Hessian-vector products in closed form.
# The Hessian of log-sum-exp is diag(p) - p p^T, so H t = p * t - p <p, t> = softmax_vjp(x, t): the
# Hessian-vector product of v * lse is v times the softmax vjp with cotangent t. Cross-entropy is
# l_i = A_i lse(x_i) - <a_i, x_i>: its Hessian per row is A_i (diag(p) - p p^T), scaled by r_i.

def _lse_hvp(x, v, t, axis=-1):
    g = reference.softmax_vjp(x, t, axis=axis)
    return np.expand_dims(np.asarray(v, dtype=np.float64), axis) * g.astype(np.float64)


def _ce_hvp(x, v, t, **kwargs):
    if _head_options(kwargs):
        return None
    problem = CrossEntropyProblem(x, **kwargs)
    scale = problem.row_scale(v) * problem.row_coef_sum[:, None]
    g = reference.softmax_vjp(problem.logits, np.asarray(t, dtype=np.float64).reshape(problem.logits.shape))
    return (scale * g).reshape(problem.shape)


def _lse_row_sums(x, v, kwargs):
    """sum_j v p_j = v."""
    return np.asarray(v, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# The records.

def _math(name, **extra) -> dict:
    """An op's functions by their conventional names: reference.<name> and <name>_vjp, exact.<name> and
    <name>_vjp, bounds.<name> and <name>_vjp, finite_differences.<name>_third (unless given in `extra`), and
    where they exist <name>_jvp of reference, exact and bounds (forward mode)."""
    return {"reference_fn": getattr(reference, name), "reference_vjp": getattr(reference, f"{name}_vjp"),
            "oracle": getattr(exact, name), "oracle_vjp": getattr(exact, f"{name}_vjp"),
            "value_bound": getattr(bounds, name), "vjp_bound": getattr(bounds, f"{name}_vjp"),
            "third_derivative": getattr(finite_differences, f"{name}_third", None),
            "jvp": getattr(reference, f"{name}_jvp", None), "oracle_jvp": getattr(exact, f"{name}_jvp", None),
            "jvp_bound": getattr(bounds, f"{name}_jvp", None), **extra}


_zero_third = finite_differences.zero_third
CE_PARAMETERS = {"target": REQUIRED, "reduction": "mean", "weight": None, "ignore_index": -100,
                 "label_smoothing": 0.0, "z_loss": 0.0, "softcap": None}
for _record in (
    row_op("softmax", **_math("softmax"), row_sum_bound=bounds.softmax_vjp_row_sum),
    row_op("log_softmax", **_math("log_softmax"), row_sum_bound=bounds.log_softmax_vjp_row_sum),
    row_op("logsumexp", **_math("logsumexp"), temperature=False, keeps_axis=False, row_sum=_lse_row_sums,
           hvp=_lse_hvp, hvp_bound=bounds.logsumexp_hvp),
    cross_entropy_op("cross_entropy", **_math("cross_entropy"), parameters=CE_PARAMETERS,
                     row_sum_bound=bounds.cross_entropy_vjp_row_sum, hvp=_ce_hvp, hvp_bound=bounds.cross_entropy_hvp),
    index_loss_op("focal_loss", **_math("focal_loss"),
                  parameters={"target": REQUIRED, "gamma": 2.0, "alpha": None, "reduction": "mean"},
                  suite_options=[dict(reduction="mean"), dict(reduction="sum", gamma=5.0),
                                 dict(reduction="none", gamma=0.5, alpha=True)],
                  suite_edge_options={"gamma": 0.5}),
    index_loss_op("mse_loss", **_math("mse_loss"), parameters={"target": REQUIRED, "form": "full", "reduction": "mean"},
                  suite_options=[dict(reduction="mean"), dict(reduction="none", form="target")]),
    index_loss_op("multiclass_hinge_loss", **_math("multiclass_hinge_loss", third_derivative=_zero_third),
                  parameters={"target": REQUIRED, "margin": 1.0, "reduction": "mean"},
                  suite_options=[dict(reduction="mean"), dict(reduction="none", margin=2.0)],
                  fd_applies=_hinge_applies),
    distribution_op("entropy", **_math("entropy"), with_q=False),
    distribution_op("kl_divergence", **_math("kl_divergence", third_derivative=finite_differences.entropy_third)),
    distribution_op("distribution_cross_entropy",
                    **_math("distribution_cross_entropy", third_derivative=_zero_third)),
    linear_op("linear_cross_entropy", reference_fn=linear.linear_cross_entropy,
              reference_vjp=_positional(linear.linear_cross_entropy_vjp), oracle=linear.exact_linear_cross_entropy,
              oracle_vjp=_positional(linear.exact_linear_cross_entropy_vjp), value_bound=bounds.linear_cross_entropy,
              vjp_bound=bounds.linear_cross_entropy_vjp,
              parameters={"weight": REQUIRED, "target": REQUIRED, "bias": None, "reduction": "mean",
                          "class_weight": None, "ignore_index": -100, "label_smoothing": 0.0, "z_loss": 0.0,
                          "softcap": None}),
):
    register(_record)
del _record


# --------------------------------------------------------------------------------------------
# Records from elsewhere: XENTCHECK_OPS names modules (or .py files) that register their own.

def _load_extra_ops() -> None:
    for item in filter(None, (s.strip() for s in os.environ.get("XENTCHECK_OPS", "").split(","))):
        if item.endswith(".py"):
            path = Path(item).expanduser().resolve()
            spec = importlib.util.spec_from_file_location(f"xentcheck_ops_{path.stem}", path)
            if spec is None or not path.is_file():
                raise ImportError(f"XENTCHECK_OPS: no such file {item}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            importlib.import_module(item)


_load_extra_ops()
