"""The notebook's functions, under its names and signatures, on top of the reference ops.

"03 - Softmax and Cross-Entropy Loss" asks for softmax, softmax_stable, cross_entropy_loss,
softmax_cross_entropy_grad and batch_cross_entropy_loss. The general `softmax` lives in ops.py;
the others are here, each a thin, validated entry point. `softmax_naive` is the textbook formula
without the max shift, kept on purpose: `xentcheck check --backend naive` shows what it gets wrong.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import validation
from .ops import QUIET, cross_entropy, cross_entropy_value_and_grad, softmax


def softmax_stable(logits) -> np.ndarray:
    """Numerically stable softmax of a vector of logits (over the last axis of an array).

    An LLM's output layer emits one logit per vocabulary entry, and trained models emit large ones:
    exp(12) already overflows float16 and exp(89) float32. Subtracting the largest logit first
    (softmax is unchanged by adding a constant to every logit) makes every exponent <= 0, so nothing
    overflows and the largest term is exactly 1, whatever the vocabulary size.
    """
    return softmax(validation.logits_array(logits), axis=-1)


def softmax_naive(logits) -> np.ndarray:
    """The textbook softmax exp(z_i) / sum_j exp(z_j) WITHOUT the max shift: wrong on purpose.

    It overflows to inf (and returns NaN) as soon as a logit exceeds the dtype's exp threshold
    (about 11.1 in float16, 88.7 in float32, 709.8 in float64), and underflows to 0/0 when every
    logit is very negative. Kept to show what the property suite catches.
    """
    array = validation.logits_array(logits)
    with np.errstate(**QUIET):
        e = np.exp(array)  # computed in the input's own dtype, as a naive kernel would
        return (e / e.sum(axis=-1, keepdims=True)).astype(array.dtype)


def cross_entropy_loss(probs, target_index) -> float:
    """Cross-entropy -log(probs[target_index]) of one predicted distribution.

    Next-token prediction scores the model by the probability it gave the token that actually came
    next: the loss is 0 when that probability is 1 and grows without bound as it goes to 0, so a
    confidently wrong model is penalised hardest. Averaged over tokens it is the log-perplexity.
    """
    p = validation.as_float_array(probs, "probs")
    if p.ndim != 1 or p.shape[0] == 0:
        raise ValueError(f"probs: must be a non-empty 1-D array of probabilities; got shape {p.shape}")
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("probs: every probability must lie in [0, 1] (NaN is not allowed)")
    index = _check_index(target_index, p.shape[0])
    with np.errstate(divide="ignore"):
        return float(-np.log(np.float64(p[index])))


def softmax_cross_entropy_grad(logits, target_index) -> np.ndarray:
    """Gradient of cross_entropy(softmax(logits), target) with respect to the logits: p - onehot.

    This is the error signal that starts backpropagation in every LLM training step: the softmax
    Jacobian and the -1/p of the log cancel, leaving the predicted distribution minus the one-hot
    target, cheap to compute and never vanishing when the model is confidently wrong.
    """
    array = validation.logits_array(logits)
    if array.ndim != 1:
        raise ValueError(f"logits: must be a 1-D array of logits; got shape {array.shape}")
    index = _check_index(target_index, array.shape[0])
    return cross_entropy_value_and_grad(array, index, reduction="sum")[1]


def batch_cross_entropy_loss(logits_batch, target_indices) -> float:
    """Average cross-entropy over a batch of logits (batch_size x vocab_size) and target indices.

    LLM training evaluates every token position of every sequence in the batch at once: a stable
    log-softmax of each row, the negative log-probability of each target token, averaged so that
    the loss, and hence the learning rate, does not depend on the batch size.
    """
    array = validation.logits_array(logits_batch, "logits_batch")
    if array.ndim != 2:
        raise ValueError(f"logits_batch: must be 2-D (batch_size, vocab_size); got shape {array.shape}")
    try:
        targets = np.asarray(target_indices)
    except (ValueError, TypeError) as error:
        raise ValueError(f"target_indices: could not be read as an array ({error})") from None
    if targets.dtype.kind not in "iu":
        raise TypeError(f"target_indices: must be integer class indices; got dtype {targets.dtype}")
    if targets.shape != array.shape[:1]:
        raise ValueError(f"target_indices: must be {array.shape[0]} class indices, one per row; "
                         f"got shape {targets.shape}")
    if np.any((targets < 0) | (targets >= array.shape[1])):
        raise ValueError(f"target_indices: every index must be in [0, {array.shape[1]})")
    return float(cross_entropy(array.astype(np.float64), targets, reduction="mean"))


def _check_index(target_index, n_classes: int) -> int:
    if isinstance(target_index, (bool, np.bool_)) or not isinstance(target_index, numbers.Integral):
        raise TypeError(f"target_index: must be an int; got {target_index!r}")
    if not 0 <= target_index < n_classes:
        raise ValueError(f"target_index: must be in [0, {n_classes}); got {target_index}")
    return int(target_index)
