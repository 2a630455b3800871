"""Where the built-in framework backends depart from the reference's semantics, on purpose.

DESIGN.md: on these edges a difference is a semantic difference, not a failure (`check --strict` makes
it one). Each Departure says which backends, op and kind (value or vjp) it concerns, and which output
elements it affects for a given input; everything else is still held to the error bound.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .reference.ops import _QUIET, _CrossEntropy


@dataclass(frozen=True)
class Departure:
    key: str
    frameworks: tuple[str, ...]  # backend names, or their prefix before "-" (torch-cuda is torch)
    op: str
    kind: str  # "value" or "vjp"
    description: str
    affected: Callable  # (x, kwargs) -> boolean mask broadcastable to the output

    def applies_to(self, backend_name: str, op: str, kind: str) -> bool:
        return backend_name.split("-")[0] in self.frameworks and op == self.op and kind == self.kind


def _all_ignored_mean(x, kwargs):
    problem = _CrossEntropy(x, **kwargs)
    return np.asarray(problem.reduction == "mean" and problem.denominator == 0)


def _plus_inf_rows(x, kwargs):
    axis = kwargs.get("axis", -1)
    rows = np.asarray(x, dtype=np.float64)
    with np.errstate(**_QUIET):
        bad = np.any(rows == np.inf, axis=axis, keepdims=True) & ~np.any(np.isnan(rows), axis=axis, keepdims=True)
    return np.broadcast_to(bad, rows.shape)


def _zero_coefficient_at_minus_inf(x, kwargs):
    """Rows where a class with coefficient a_ic = 0 has a -inf logit: torch computes 0 * -inf = NaN."""
    problem = _CrossEntropy(x, **kwargs)
    hit = np.any((problem.coefficients() == 0) & (problem.logits == -np.inf), axis=-1)
    if problem.target_kind == "index":
        hit &= problem.valid & (problem.smoothing > 0)  # torch gathers the target alone without smoothing
    if problem.reduction != "none":
        return np.asarray(hit.any())
    return hit.reshape(problem.batch_shape)


DEPARTURES = (
    Departure("all-ignored-mean-gradient", ("torch", "jax"), "cross_entropy", "vjp",
              "the gradient of a mean over zero total weight (all targets ignored) is 0, not NaN",
              _all_ignored_mean),
    Departure("logsumexp-gradient-with-plus-inf", ("torch", "jax"), "logsumexp", "vjp",
              "in a row holding +inf the log-sum-exp gradient is 0 at the finite entries (NaN at +inf), "
              "where the reference's v * softmax(x) is NaN throughout",
              _plus_inf_rows),
    Departure("zero-coefficient-minus-inf-logit", ("torch",), "cross_entropy", "value",
              "a class with zero coefficient (probability 0, or weight 0 under label smoothing) and a -inf "
              "logit gives NaN (0 * -inf), where the reference takes 0 log 0 = 0",
              _zero_coefficient_at_minus_inf),
)


def departures(backend_name: str, op: str, kind: str, x, kwargs: dict, out_shape: tuple):
    """(mask of output elements covered by a known departure, the departures that apply)."""
    mask = np.zeros(out_shape, dtype=bool)
    found = []
    for d in DEPARTURES:
        if not d.applies_to(backend_name, op, kind):
            continue
        hit = np.broadcast_to(d.affected(np.asarray(x), kwargs), out_shape)
        if hit.any():
            mask |= hit
            found.append(d)
    return mask, found
