"""The backend contract: what any implementation must offer to be checked by xentcheck.

Arrays in and out are NumPy arrays (bfloat16 via ml_dtypes). A backend raises NotImplementedError
for an op, dtype or option it does not support; that is reported as unsupported, never as a pass or
a failure. Optional members: `flushes_subnormals` (True where the framework flushes subnormal results
to zero, as XLA on CPU does; comparisons then use the smallest normal as their floor),
`hvp(op, x, cotangent, tangent, **kwargs)` (a Hessian-vector product by the framework's autograd), and
`framework` ("torch" or "jax": a backend built on that framework inherits its documented departures
from the reference, which are then reported as semantic differences; see xentcheck.semantics), and
`compute_formats`, a dict {dtype: format} naming the format a dtype is computed in where it is not the
default (float32 for float16 and bfloat16, the dtype itself otherwise): a kernel that accumulates bfloat16 in
bfloat16 declares {"bfloat16": "bfloat16"}. The error bounds are derived for the (dtype, compute format) pair;
`check --compute` and `compare --compute` override the declaration, and every report says which was assumed.

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

from ..reference.dtypes import DEFAULT_COMPUTE, DTYPE_NAMES
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


def parse_compute(spec: str | None) -> dict[str, str]:
    """`--compute`: "native" (every dtype computed in itself) or DTYPE=FORMAT[,DTYPE=FORMAT...]; ValueError
    naming the option and what is allowed."""
    if not spec:
        return {}
    if spec.strip() == "native":
        return {d: d for d in DTYPE_NAMES}
    allowed = f"'native' or DTYPE=FORMAT pairs separated by commas, each of {', '.join(DTYPE_NAMES)}"
    out = {}
    for item in spec.split(","):
        dtype, sep, fmt = (part.strip() for part in item.partition("="))
        if not sep or dtype not in DTYPE_NAMES or fmt not in DTYPE_NAMES:
            raise ValueError(f"--compute: must be {allowed}; got {item.strip()!r}")
        out[dtype] = fmt
    return out


def compute_formats(backend, override: dict | None = None) -> dict[str, tuple[str, str]]:
    """{dtype: (compute format, where the choice came from: "default", "declared" or "override")}: the
    override (`--compute`), else the backend's `compute_formats`, else DEFAULT_COMPUTE. ValueError for a
    declaration that names an unknown dtype or format."""
    declared = getattr(backend, "compute_formats", None) or {}
    if not isinstance(declared, dict) or any(k not in DTYPE_NAMES or v not in DTYPE_NAMES
                                             for k, v in declared.items()):
        raise ValueError(f"compute_formats: the backend's declaration must be a dict {{dtype: format}} over "
                         f"{', '.join(DTYPE_NAMES)}; got {declared!r}")
    out = {}
    for dtype in DTYPE_NAMES:
        if override and dtype in override:
            out[dtype] = (override[dtype], "override")
        elif dtype in declared:
            out[dtype] = (declared[dtype], "declared")
        else:
            out[dtype] = (DEFAULT_COMPUTE[dtype], "default")
    return out


def describe_compute(formats: dict[str, tuple[str, str]]) -> str:
    """One line for reports: 'float16 in float32 (default), bfloat16 in bfloat16 (declared), ...'."""
    return ", ".join(f"{d} in {f} ({why})" for d, (f, why) in formats.items())
