"""Every known edge, as explicit examples: the deterministic CI profile can never miss them.

Each property test is decorated with @example(case=...) for each edge of its op (see
properties/_harness.py). The LLM-sized rows (32768 and 131072 entries, targets past 32767) are here
too: kernel bugs hide in blocked code paths and index types that only show at that size, and a few
explicit examples cost little where thousands of generated ones would not. They run in the properties
that see a whole long row's arithmetic (`property_of(..., large_edges=True)`).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .strategies import CESpec, DistSpec, LinearSpec, LossSpec, RowSpec

INF, NAN = math.inf, math.nan


def _row(label, rows, temperature=1.0, axis=-1, anchors=None):
    values = np.asarray(rows, dtype=np.float64)
    flat = tuple(values.reshape(-1).tolist())
    anchors = anchors or "zero"
    return RowSpec(values.shape, axis, anchors if isinstance(anchors, str) else tuple(anchors), flat, temperature, (1.5, -0.5, 2.0, 0.25, -1.0), label)


def _untrained_rows(n_rows, vocab, seed):
    """An untrained model's logits: near-uniform, so the row's sum of exp(x - max) is about the vocab size."""
    return np.random.default_rng(seed).standard_normal((n_rows, vocab)) * 0.02


def _llm_rows(label, n_rows, vocab, seed):
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((n_rows, vocab)) * 2.0
    rows[np.arange(n_rows), rng.integers(0, vocab, n_rows)] += 18.0  # a confident prediction
    rows[:, -3:] = 25.0 - np.arange(3)  # the largest entries at the very end of the row
    return rows


def ordinary_logits(shape, seed=11) -> np.ndarray:
    """Ordinary logits (standard normal times 2, on a grid of 1/16, exact in every dtype): the example every
    property runs first, where the bounds are tight and systematic errors of a few units of roundoff show
    (tests/planted_bugs.py plants its systematic errors against the bounds there)."""
    return np.round(np.random.default_rng(seed).standard_normal(shape) * 2 * 16) / 16


@functools.lru_cache(maxsize=None)
def row_edges(temperature: bool = True) -> tuple[RowSpec, ...]:
    """Softmax-like ops on rows; the temperature edges for the ops that take one."""
    edges = [  # in the order they run: ordinary rows, the numerical edges, then the semantic ones
        _row("ordinary rows", ordinary_logits((3, 8))),
        _row("past exp overflow", [[-1.0, -0.25, 0.0, 0.5]], anchors=("overflow",) * 4),
        _row("at exp underflow", [[0.0, -1.0, 0.0, 2.0, 8.0]], anchors=("zero",) + ("underflow",) * 4),
        _row("huge spread", [[0.0, -1.0, -30.0, -200.0, -900.0, -1e4, 5.0]]),
        _row("large magnitudes", [[9000.0, 9001.5, -9000.0, 8999.0], [-1e4, -1e4 + 3.0, -9990.0, 0.0]]),
        _row("exact ties", [[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0], [-3.0, 5.0, 5.0, -3.0]]),
        _row("one entry per row", [[3.0], [-7.5], [0.0]]),
        _row("axis 0 of 3-D", np.arange(24.0).reshape(4, 3, 2) % 5 - 2, axis=0),
        _row("all -inf row", [[-INF, -INF, -INF, -INF], [0.5, -1.0, 2.0, 0.0]]),
        _row("partly masked rows", [[-INF, 0.5, -INF, 2.0, 1.0], [3.0, -INF, -INF, -INF, -INF]]),
        _row("+inf in a row", [[INF, 1.0, 2.0], [0.0, 1.0, 2.0]]),
        _row("NaN in a row", [[NAN, 1.0, 2.0], [0.0, 1.0, 2.0]]),
        _row("llm vocab 32768", _llm_rows("", 2, 32768, 1)),
        _row("llm vocab 131072", _llm_rows("", 1, 131072, 2)),
        _row("llm vocab 131072, untrained (near-uniform)", _untrained_rows(1, 131072, 4)),
    ]
    if temperature:
        edges += [
            _row("tiny temperature", [[1.0, 2.0, 3.0, 2.999], [10.0, -10.0, 0.0, 9.5]], temperature=1e-3),
            _row("huge temperature", [[1.0, 2.0, 3.0, -50.0]], temperature=1e3),
        ]
    return tuple(edges)


def _ce(label, rows, kind, targets, **options):
    values = np.asarray(rows, dtype=np.float64)
    flat = tuple(values.reshape(-1).tolist())
    return CESpec(values.shape, "zero", flat, kind, tuple(np.asarray(targets).reshape(-1).tolist()),
                  cotangent=(0.75, -1.25, 2.0), label=label, **options)


@functools.lru_cache(maxsize=None)
def ce_edges() -> tuple[CESpec, ...]:
    rows = [[1.0, 2.0, 0.5, -1.0], [0.0, 0.0, 0.0, 0.0], [3.0, -2.0, 1.0, 0.5]]
    masked = [[0.0, -INF, 1.0, 2.0], [1.0, 2.0, -INF, 0.0]]
    llm = _llm_rows("", 4, 131072, 3)
    return (
        _ce("ordinary", ordinary_logits((4, 8)), "index", [1, 5, 0, 7], reduction="none"),
        _ce("all targets ignored, mean", rows, "index", [-100, -100, -100]),
        _ce("some targets ignored", rows, "index", [1, -100, 0], reduction="sum"),
        _ce("ignore_index is a real class", rows, "index", [1, 2, 0], ignore_index=2),
        _ce("weights with label smoothing", rows, "index", [1, 3, 0], weight=(0.5, 0.0, 2.0, 1.0),
            label_smoothing=0.2),
        _ce("zero-weight class at -inf, smoothed", masked, "index", [0, 3], weight=(1.0, 0.0, 1.0, 1.0),
            label_smoothing=0.1, reduction="none"),
        _ce("probability target, -inf logit", masked, "probability", [1, 0, 0, 0, 0, 1, 0, 1], reduction="none"),
        _ce("probability target with smoothing", rows, "probability",
            [0.5, 0.5, 0, 0, 0, 0, 0, 1, 0.25, 0.25, 0.25, 0.25], label_smoothing=0.3),
        _ce("label smoothing 1", rows, "index", [2, 0, 1], label_smoothing=1.0),
        _ce("1-D logits, scalar target", rows[0], "index", 2),
        _ce("target at -inf logit", masked, "index", [1, 2], reduction="none"),
        _ce("confident and correct", [[30.0, 0.0, -5.0, 1.0]], "index", [0]),
        _ce("llm vocab 131072, targets past 32767", llm, "index", [40000, 131071, -100, 5], reduction="mean"),
        _ce("llm vocab 131072, untrained (near-uniform)", _untrained_rows(2, 131072, 5), "index", [70000, 3],
            reduction="none"),
        # the LM head's options (z_loss, softcap)
        _ce("z-loss, some targets ignored", rows, "index", [1, -100, 0], reduction="sum", z_loss=1e-2),
        _ce("z-loss, all targets ignored, mean", rows, "index", [-100, -100, -100], z_loss=1e-2),
        _ce("z-loss, class weights, one target ignored, mean", rows, "index", [1, -100, 3], z_loss=0.5,
            weight=(0.5, 2.0, 1.0, 4.0)),
        _ce("soft-capped at 1, large logits", [[30.0, -20.0, 5.0, 0.5], [100.0, -100.0, 0.0, 3.0]], "index", [2, 1],
            reduction="none", softcap=1.0),
        _ce("soft-cap over masked (-inf) logits", masked, "index", [0, 3], reduction="none", softcap=2.0),
        _ce("z-loss and soft-cap, probability target, smoothing", rows, "probability",
            [0.5, 0.5, 0, 0, 0, 0, 0, 1, 0.25, 0.25, 0.25, 0.25], label_smoothing=0.1, z_loss=1e-4, softcap=30.0),
    )


def _loss(label, rows, targets, **options):
    values = np.asarray(rows, dtype=np.float64)
    return LossSpec(values.shape, "zero", tuple(values.reshape(-1).tolist()), tuple(np.asarray(targets).reshape(-1).tolist()),
                    cotangent=(0.75, -1.25, 2.0), label=label, **options)


@functools.lru_cache(maxsize=None)
def loss_edges() -> tuple[LossSpec, ...]:
    """focal_loss, mse_loss, multiclass_hinge_loss (each takes the options it has)."""
    return (
        _loss("ordinary", ordinary_logits((4, 8)), [1, 5, 0, 7], reduction="none"),
        _loss("margin exactly met (the hinge's kink)", [[2.0, 1.0, 0.0, -1.0], [3.0, 2.0, 2.0, 0.0]], [0, 0],
              reduction="none", gamma=0.0),
        _loss("tied maxima among the other classes", [[0.0, 3.0, 3.0, 1.0], [1.0, 1.0, 1.0, 1.0]], [0, 2],
              reduction="sum", form="target"),
        _loss("confident and correct, gamma < 1", [[30.0, 0.0, -5.0, 1.0], [12.0, -3.0, 0.0, 1.0]], [0, 0],
              gamma=0.5, reduction="none"),
        _loss("target at -inf logit, alpha 0 there", [[0.0, -INF, 1.0, 2.0], [1.0, 2.0, -INF, 0.0]], [1, 2],
              alpha=(1.0, 0.0, 0.5, 0.25), reduction="none"),
        _loss("confidently wrong", [[0.0, -1.0, -30.0, -200.0, -900.0, -1e4, 5.0]], [3], alpha=0.25, margin=10.0),
        _loss("one class", [[3.0], [-7.5]], [0, 0], reduction="none"),
        _loss("NaN in a row", [[NAN, 1.0, 2.0], [0.0, 1.0, 2.0]], [1, 2], reduction="none"),
        _loss("1-D logits, scalar target", [1.0, 2.0, 0.5, -1.0], 2, form="target", gamma=5.0),
        _loss("llm vocab 32768", _llm_rows("", 2, 32768, 6), [30000, 5], reduction="mean"),
    )


def _dist(label, p_mass, q_mass):
    p = np.asarray(p_mass, dtype=np.float64)
    return DistSpec(p.shape, tuple(p.reshape(-1).tolist()), tuple(np.asarray(q_mass, dtype=np.float64).reshape(-1).tolist()),
                    (1.5, -0.5, 2.0), label)


@functools.lru_cache(maxsize=None)
def distribution_edges() -> tuple[DistSpec, ...]:
    """entropy, kl_divergence, distribution_cross_entropy (entropy ignores q)."""
    rng = np.random.default_rng(7)
    return (
        _dist("ordinary", np.exp(ordinary_logits((3, 8), 12) / 2), np.exp(ordinary_logits((3, 8), 13) / 2)),
        _dist("0 log 0: p_i = q_i = 0, and p_i = 0 < q_i", [[0.0, 1.0, 1.0, 0.0]], [[0.0, 1.0, 3.0, 2.0]]),
        _dist("q equals p", [[0.1, 0.2, 0.3, 0.4], [1.0, 1.0, 1.0, 0.0]], [[0.1, 0.2, 0.3, 0.4], [1.0, 1.0, 1.0, 0.0]]),
        _dist("one-hot p against uniform q", [[0.0, 1.0, 0.0, 0.0]], [[1.0, 1.0, 1.0, 1.0]]),
        _dist("q = 0 where p > 0 (infinite divergence)", [[1.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]]),
        _dist("peaked, tiny entries", [[1.0, 1e-20, 1e-6, 1e-3]], [[1e-3, 1.0, 1e-20, 1e-6]]),
        _dist("a row of zero mass", [[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]], [[1.0, 1.0, 1.0], [3.0, 2.0, 1.0]]),
        _dist("llm vocab 32768", np.exp(rng.standard_normal((2, 32768)) * 2), np.exp(rng.standard_normal((2, 32768)) * 2)),
    )


def _linear(label, hidden, weight, targets, bias=None, **options):
    h, w = np.asarray(hidden, dtype=np.float64), np.asarray(weight, dtype=np.float64)
    return LinearSpec(h.shape, w.shape[0], tuple(h.reshape(-1).tolist()), tuple(w.reshape(-1).tolist()),
                      None if bias is None else tuple(bias), tuple(np.asarray(targets).reshape(-1).tolist()),
                      cotangent=(0.75, -1.25, 2.0), label=label, **options)


@functools.lru_cache(maxsize=None)
def linear_edges() -> tuple[LinearSpec, ...]:
    """linear_cross_entropy: the LM head's edges (vocabularies past 65536, hidden sizes that divide no chunk,
    every token ignored, heavy soft-capping, z-loss with every option)."""
    h = ordinary_logits((4, 3), 21) / 4
    w = ordinary_logits((5, 3), 22) / 4
    return (
        _linear("ordinary", h, w, [1, 4, 0, 2], bias=(0.5, -0.25, 0.0, 1.0, -1.0), reduction="none"),
        _linear("all tokens ignored, mean", h, w, [-100, -100, -100, -100]),
        _linear("some tokens ignored, z-loss", h, w, [3, -100, 0, -100], z_loss=1e-2, reduction="sum"),
        _linear("soft-capped at 1, large logits", h * 8, w * 8, [0, 1, 2, 3], softcap=1.0, reduction="none"),
        _linear("z-loss, label smoothing and class weights", h, w, [4, 3, 2, 1], z_loss=1e-4, label_smoothing=0.1,
                class_weight=(1.0, 0.0, 2.0, 0.5, 1.0), softcap=30.0),
        _linear("one class", h, w[:1], [0, 0, 0, 0], bias=(2.0,)),
        _linear("hidden size 7 (no chunk divides it)", ordinary_logits((3, 7), 23) / 4, ordinary_logits((6, 7), 24) / 4,
                [5, 0, 3], reduction="none"),
        LinearSpec((3, 4), 70000, targets=(40000, 69999, -100), reduction="mean", cotangent=(0.75,), seed=25,
                   scale=0.5, with_bias=True, label="vocab 70000, targets past 32767 and 65535"),
        LinearSpec((2, 5), 131072, targets=(131071, 70000), reduction="none", z_loss=1e-4, softcap=30.0,
                   cotangent=(0.75, -1.25), seed=26, scale=0.5, label="vocab 131072, z-loss, soft-capped"),
        LinearSpec((256, 32), 2048, targets=tuple(int(t) for t in np.random.default_rng(27).integers(0, 2048, 256)),
                   label_smoothing=0.1, cotangent=(0.75,), seed=27, scale=0.25,
                   label="256 tokens, vocab 2048, label smoothing (a sum over tokens and classes past 65504)"),
    )
