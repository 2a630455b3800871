"""The backend contract: what any implementation must offer to be checked by xentcheck.

Arrays in and out are NumPy arrays (bfloat16 via ml_dtypes). A backend raises NotImplementedError
for an op, dtype or option it does not support; that is reported as unsupported, never as a pass or
a failure. Optional members: `flushes_subnormals` (True where the framework flushes subnormal results
to zero, as XLA on CPU does; comparisons then use the smallest normal as their floor),
`hvp(op, x, cotangent, tangent, **kwargs)` (a Hessian-vector product by the framework's autograd), and
`framework` ("torch" or "jax": a backend built on that framework inherits its documented departures
from the reference, which are then reported as semantic differences; see xentcheck.semantics).

Optional too, the loss family (OPTIONAL_OPS; semantics in reference/losses.py), each answered by `vjp`
as well (with respect to the first argument):

    focal_loss(logits, target, gamma=2.0, alpha=None, reduction="mean")
    mse_loss(logits, target, form="full", reduction="mean")
    multiclass_hinge_loss(logits, target, margin=1.0, reduction="mean")
    entropy(p)                                  # the last axis is removed
    kl_divergence(p, q)                         # vjp(op, p, cotangent, q=q): with respect to p
    distribution_cross_entropy(p, q)

A backend without one of them is reported as "not provided" for that op, never as a failure.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..reference.losses import LOSS_OPS

CONTRACT_MEMBERS = ("name", "softmax", "log_softmax", "logsumexp", "cross_entropy", "vjp")
OPTIONAL_OPS = LOSS_OPS


@runtime_checkable
class Backend(Protocol):
    name: str

    def softmax(self, x, axis=-1, temperature=1.0) -> np.ndarray: ...

    def log_softmax(self, x, axis=-1, temperature=1.0) -> np.ndarray: ...

    def logsumexp(self, x, axis=-1) -> np.ndarray: ...  # the reduced axis is removed

    def cross_entropy(self, logits, target, reduction="mean", weight=None,
                      ignore_index=-100, label_smoothing=0.0) -> np.ndarray: ...

    def vjp(self, op, x, cotangent, **kwargs) -> np.ndarray: ...  # d<cotangent, op(x, **kwargs)>/dx


class BackendLoadError(Exception):
    """The spec is wrong or the backend could not be imported or built; the message is one line."""


class BackendUnavailable(BackendLoadError):
    """A built-in backend whose framework (or device) is not present here; the message says why."""


def missing_members(obj) -> list[str]:
    """The contract members `obj` lacks (a non-callable op counts as missing)."""
    missing = [m for m in CONTRACT_MEMBERS if not hasattr(obj, m)]
    missing += [m for m in CONTRACT_MEMBERS[1:] if hasattr(obj, m) and not callable(getattr(obj, m))]
    if hasattr(obj, "name") and not isinstance(obj.name, str):
        missing.append("name (must be a str)")
    return missing
