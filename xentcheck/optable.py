"""The op table: one declarative record per op (in the manner of PyTorch's OpInfo database).

Each record holds the op's reference and analytic vjp, its exact oracle, its derived error bounds,
its input strategy, the dtypes it is checked in, and (where the Hessian is known in closed form) its
Hessian-vector product. The property suite, `compare` and the benchmarks iterate over OPS; adding an
op is adding a record.

The loss family (reference/losses.py) is `optional`: a backend may lack it (backends/contract.py), and the
property suite reports such an op as not provided instead of failing. Its distribution ops take
probability vectors, not logits (`domain`), and their vjp is with respect to p, q being the keyword q=.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import bounds, reference, strategies, suite
from .reference import DTYPE_NAMES, exact, exact_losses


@dataclass(frozen=True)
class OpInfo:
    name: str
    reference: Callable        # (x, **kwargs) -> value
    reference_vjp: Callable    # (x, cotangent, **kwargs) -> gradient
    oracle: Callable           # exact value, correctly rounded
    oracle_vjp: Callable       # exact vjp, correctly rounded
    value_bound: Callable      # (x, dtype=, floor=, **kwargs) -> absolute tolerance, output-shaped
    vjp_bound: Callable        # (x, cotangent, dtype=, floor=, **kwargs) -> absolute tolerance, input-shaped
    specs: Callable            # () -> Hypothesis strategy of specs (see strategies.py)
    suite: Callable            # (quick) -> the fixed cases of `xentcheck compare` (see suite.py)
    kwarg_names: tuple         # the keyword arguments the op takes
    dtypes: tuple = DTYPE_NAMES
    hvp: Callable | None = None        # analytic (x, cotangent, tangent, **kwargs) -> Hessian-vector product
    hvp_bound: Callable | None = None  # its error bound, like vjp_bound
    optional: bool = False             # a backend may lack it: then it is "not provided", never a failure
    domain: str = "logits"             # "logits" (rows shift-invariant) or "probabilities" (entries in [0, 1])

    def kwargs(self, spec_kwargs: dict) -> dict:
        """The spec's keyword arguments that this op takes."""
        return {k: v for k, v in spec_kwargs.items() if k in self.kwarg_names}

    def call(self, backend, x, kwargs):
        return getattr(backend, self.name)(x, **kwargs)

    def provided_by(self, backend) -> bool:
        """Whether `backend` offers this op (every backend offers the contract's own ops)."""
        return not self.optional or callable(getattr(backend, self.name, None))


def _op(name, kwarg_names, **extra):
    loss = name in reference.LOSS_OPS
    return OpInfo(
        name=name,
        reference=getattr(reference, name),
        reference_vjp=lambda x, v, **kw: reference.vjp(name, x, v, **kw),
        oracle=getattr(exact_losses if loss else exact, name),
        oracle_vjp=lambda x, v, **kw: exact.vjp(name, x, v, **kw),
        value_bound=bounds.VALUE_BOUNDS[name],
        vjp_bound=bounds.VJP_BOUNDS[name],
        specs=lambda: strategies.specs_for(name),
        suite=(lambda quick: suite.ce_suite(quick)) if name == "cross_entropy" else (
            lambda quick: suite.loss_suite(name, quick)) if loss else (lambda quick: suite.row_suite(name, quick)),
        kwarg_names=kwarg_names,
        optional=loss,
        **extra,
    )


# -- Hessian-vector products in closed form ------------------------------------------------------
# The Hessian of log-sum-exp is diag(p) - p p^T, so H t = p * t - p <p, t> = softmax_vjp(x, t): the
# Hessian-vector product of v * lse is v times the softmax vjp with cotangent t. Cross-entropy is
# l_i = A_i lse(x_i) - <a_i, x_i>: its Hessian per row is A_i (diag(p) - p p^T), scaled by r_i.

def _lse_hvp(x, v, t, axis=-1):
    g = reference.vjp("softmax", x, t, axis=axis)
    return np.expand_dims(np.asarray(v, dtype=np.float64), axis) * g.astype(np.float64)


def _ce_hvp(x, v, t, **kwargs):
    problem = reference.ops._CrossEntropy(x, **kwargs)
    scale = problem.row_scale(v) * problem.row_coef_sum[:, None]
    g = reference.vjp("softmax", problem.logits, np.asarray(t, dtype=np.float64).reshape(problem.logits.shape))
    return (scale * g).reshape(problem.shape)


OPS: dict[str, OpInfo] = {op.name: op for op in (
    _op("softmax", ("axis", "temperature")),
    _op("log_softmax", ("axis", "temperature")),
    _op("logsumexp", ("axis",), hvp=_lse_hvp, hvp_bound=bounds.logsumexp_hvp),
    _op("cross_entropy", ("target", "reduction", "weight", "ignore_index", "label_smoothing"),
            hvp=_ce_hvp, hvp_bound=bounds.cross_entropy_hvp),
    _op("focal_loss", ("target", "gamma", "alpha", "reduction")),
    _op("mse_loss", ("target", "form", "reduction")),
    _op("multiclass_hinge_loss", ("target", "margin", "reduction")),
    _op("entropy", (), domain="probabilities"),
    _op("kl_divergence", ("q",), domain="probabilities"),
    _op("distribution_cross_entropy", ("q",), domain="probabilities"),
)}
