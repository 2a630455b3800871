"""The edges `xentcheck compare` puts side by side: what the reference and each backend return or raise
there, differences flagged and matched to a documented departure (xentcheck.semantics) where one applies."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import verdict
from .records import OPS
from .reference import round_to_dtype, validation
from .reference.dtypes import FORMATS
from .semantics import departures


@dataclass(frozen=True)
class Edge:
    name: str
    op: str
    kind: str  # "value" or "vjp"
    x: object  # logits (a list, or a callable returning an array, for large ones)
    dtype: str = "float32"
    kwargs: dict = None
    cotangent: object = None

    def inputs(self):
        raw = self.x() if callable(self.x) else np.asarray(self.x)
        x = raw if raw.dtype.kind in "iu" else round_to_dtype(np.asarray(raw, dtype=np.float64), self.dtype)
        kwargs = dict(self.kwargs or {})
        for key in ("target", "weight", "alpha", "q"):
            if key in kwargs and np.asarray(kwargs[key]).dtype.kind == "f":
                kwargs[key] = round_to_dtype(np.asarray(kwargs[key], dtype=np.float64), self.dtype)
        return x, kwargs


_INF = np.inf
_ROWS = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
EDGES = (
    Edge("all -inf row", "softmax", "value", [[-_INF, -_INF, -_INF], [1.0, 2.0, 3.0]]),
    Edge("all -inf row", "logsumexp", "value", [[-_INF, -_INF, -_INF], [1.0, 2.0, 3.0]]),
    Edge("partly masked row", "softmax", "value", [[-_INF, 0.0, 1.0]]),
    Edge("partly masked row, gradient", "log_softmax", "vjp", [[-_INF, 0.0, 1.0]], cotangent=[[1.0, 2.0, -1.0]]),
    Edge("+inf logit", "softmax", "value", [[_INF, 0.0, 1.0]]),
    Edge("+inf logit", "logsumexp", "value", [[_INF, 0.0, 1.0]]),
    Edge("+inf logit, log-sum-exp gradient", "logsumexp", "vjp", [[_INF, 0.0, 1.0]], cotangent=[1.0]),
    Edge("NaN logit", "softmax", "value", [[np.nan, 0.0, 1.0], [0.0, 1.0, 2.0]]),
    Edge("all targets ignored, mean", "cross_entropy", "value", _ROWS, kwargs={"target": [-100, -100]}),
    Edge("all targets ignored, mean, gradient", "cross_entropy", "vjp", _ROWS, kwargs={"target": [-100, -100]},
         cotangent=1.0),
    Edge("target out of range", "cross_entropy", "value", _ROWS, kwargs={"target": [0, 3]}),
    Edge("negative target (not ignore_index)", "cross_entropy", "value", _ROWS, kwargs={"target": [0, -1]}),
    Edge("weights with label smoothing", "cross_entropy", "value", _ROWS,
         kwargs={"target": [1, 2], "weight": [0.5, 2.0, 1.0], "label_smoothing": 0.2}),
    Edge("probability targets with smoothing", "cross_entropy", "value", _ROWS,
         kwargs={"target": [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], "label_smoothing": 0.3}),
    Edge("probability target, -inf logit", "cross_entropy", "value", [[0.0, -_INF, 1.0]],
         kwargs={"target": [[1.0, 0.0, 0.0]], "reduction": "none"}),
    Edge("probability targets, ignore_index=0", "cross_entropy", "value", _ROWS,
         kwargs={"target": [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], "ignore_index": 0}),
    Edge("label smoothing 1, -inf at the target", "cross_entropy", "value", [[-_INF, 0.0, 1.0]],
         kwargs={"target": [0], "label_smoothing": 1.0, "reduction": "none"}),
    Edge("empty batch, mean", "cross_entropy", "value", lambda: np.zeros((0, 3)),
         kwargs={"target": np.zeros(0, dtype=np.int64)}),
    Edge("empty batch, sum", "cross_entropy", "value", lambda: np.zeros((0, 3)),
         kwargs={"target": np.zeros(0, dtype=np.int64), "reduction": "sum"}),
    Edge("float16 logits beyond exp's range", "softmax", "value", [[12.0, 0.0, -20.0]], dtype="float16"),
    Edge("float16 logits beyond exp's range", "cross_entropy", "value", [[12.0, 0.0, -20.0]], dtype="float16",
         kwargs={"target": [2]}),
    Edge("float16, 65536 equal logits", "log_softmax", "value", lambda: np.zeros((1, 65536)), dtype="float16"),
    Edge("float16, 65536 equal logits", "softmax", "value", lambda: np.zeros((1, 65536)), dtype="float16"),
    Edge("integer logits", "softmax", "value", lambda: np.array([[1, 2, 3]], dtype=np.int64),
         dtype="float64"),  # the dtype they are computed in
    Edge("temperature 0", "softmax", "value", [[1.0, 2.0]], kwargs={"temperature": 0.0}),
    Edge("hinge: margin exactly met, gradient", "multiclass_hinge_loss", "vjp", [[2.0, 1.0, 0.0, -1.0]],
         kwargs={"target": [0], "reduction": "none"}, cotangent=[1.0]),
    Edge("hinge: tied maxima, gradient", "multiclass_hinge_loss", "vjp", [[0.0, 3.0, 3.0, 1.0]],
         kwargs={"target": [0], "reduction": "none"}, cotangent=[1.0]),
    Edge("focal: target at -inf logit, gradient", "focal_loss", "vjp", [[0.0, -_INF, 1.0, 2.0]],
         kwargs={"target": [1], "reduction": "none"}, cotangent=[1.0]),
    Edge("focal: confident, gamma 0.5, gradient", "focal_loss", "vjp", [[30.0, 0.0, -5.0, 1.0]],
         kwargs={"target": [0], "gamma": 0.5, "reduction": "none"}, cotangent=[1.0]),
    Edge("KL: p_i = q_i = 0", "kl_divergence", "value", [[0.0, 0.5, 0.5]], kwargs={"q": [[0.0, 0.25, 0.75]]}),
    Edge("KL: p_i = 0, gradient", "kl_divergence", "vjp", [[0.0, 0.5, 0.5]], kwargs={"q": [[0.25, 0.25, 0.5]]},
         cotangent=[1.0]),
    Edge("H(p, q): p_i = q_i = 0, gradient", "distribution_cross_entropy", "vjp", [[0.0, 0.5, 0.5]],
         kwargs={"q": [[0.0, 0.25, 0.75]]}, cotangent=[1.0]),
)


def _call_args(edge):
    x, kwargs = edge.inputs()
    if edge.kind == "value":
        return edge.op, (x,), kwargs
    v = round_to_dtype(np.asarray(edge.cotangent, dtype=np.float64), edge.dtype)
    return "vjp", (edge.op, x, v), kwargs


def describe(outcome) -> str:
    """A short, human description of an answer: values (or a summary) or the exception raised."""
    if outcome[0] != "ok":
        return {"error": lambda: f"raises {outcome[1]}" + (f": {outcome[2][:300]}" if len(outcome) > 2 and outcome[2]
                                                              else ""),
                "timeout": lambda: "hangs (timeout)", "crashed": lambda: "crashes the process",
                "unavailable": lambda: "unavailable", "missing": lambda: "not provided"}[outcome[0]]()
    a = np.asarray(outcome[1]).astype(np.float64)
    if a.size <= 6:
        return np.array2string(a, precision=4, separator=", ", floatmode="maxprec")
    finite = np.isfinite(a)
    return (f"shape {a.shape}: {int(finite.sum())} finite, {int(np.isnan(a).sum())} NaN, "
            f"{int(np.isinf(a).sum())} inf; first {a.reshape(-1)[0]:.4g}")


def _tolerance(edge, compute=None, floor=None):
    """The edge's answer within the backend's bound (its compute format) plus the reference's: both are
    within their bounds of the exact value (integer logits as computed: in float64)."""
    x, kwargs = edge.inputs()
    try:
        x = validation.as_float_array(x, "x")
        if edge.kind == "value":
            return (verdict.value_bound(edge.op, x, compute=compute, floor=floor, **kwargs)
                    + verdict.reference_value_bound(edge.op, x, **kwargs))
        v = _call_args(edge)[1][2]
        return (verdict.vjp_bound(edge.op, x, v, compute=compute, floor=floor, **kwargs)
                + verdict.reference_vjp_bound(edge.op, x, v, **kwargs))
    except (ValueError, TypeError):  # an input the bounds refuse (as the reference does): compared exactly
        return 0.0


def _differing(want, got, edge, compute=None, floor=None) -> np.ndarray:
    """The elements where a backend's answer is not the reference's: beyond the two bounds, or of normal
    magnitude where the reference's answer is exactly 0. Those zeros are semantics (a masked entry, the
    subgradient the reference takes at a kink), even where the bound admits a rounding to either side."""
    got = np.asarray(got)
    beyond = ~verdict.close_mask(got, want, _tolerance(edge, compute, floor))
    with np.errstate(invalid="ignore"):
        nonzero = (np.asarray(want, dtype=np.float64) == 0) & (
            np.abs(got.astype(np.float64)) >= FORMATS[edge.dtype].smallest_normal)
    return beyond | nonzero


def known_departures(declared, op, kind, x, kwargs, got, cotangent=None, differing=None):
    """(departures whose documented answer `got` gives wherever they apply and it differs, departures that
    apply there but whose answer it does not give)."""
    got = np.asarray(got)
    differing = np.ones(got.shape, bool) if differing is None else differing
    given, not_given = [], []
    for d, hit in departures(declared, op, kind, x, kwargs, got.shape, cotangent):
        where = hit & differing
        if not where.any():
            continue
        answered = np.broadcast_to(d.expected(got, x, kwargs, cotangent), got.shape)
        (given if answered[where].all() else not_given).append(d)
    return given, not_given


def semantics_calls() -> list:
    """(method, args, kwargs) of every edge, in EDGES order, for a backend to answer."""
    return [_call_args(edge) for edge in EDGES]


def semantics_table(processes, answers: dict) -> list:
    """One row per edge: the reference's answer and each backend's (answers[spec], in EDGES order),
    differences flagged and matched to a documented departure where there is one."""
    rows = []
    for i, edge in enumerate(EDGES):
        method, args, kwargs = _call_args(edge)
        record = OPS[edge.op]
        try:
            ref = ("ok", np.asarray(record.reference(*args, **kwargs) if edge.kind == "value"
                                    else record.reference_vjp(*args[1:], **kwargs)))
        except Exception as error:  # noqa: BLE001 - the reference's own refusal is part of the table
            ref = ("error", type(error).__name__, str(error).splitlines()[0])
        row = {"edge": edge.name, "op": edge.op, "kind": edge.kind, "dtype": edge.dtype,
               "reference": describe(ref), "backends": []}
        for bp in processes:
            outcome = answers[bp.spec][i] if bp.spec in answers else ("unavailable", bp.unavailable)
            floor = FORMATS[edge.dtype].smallest_normal if bp.flushes else None
            # an op the backend lacks or declines (NotImplementedError: the contract's "unsupported") is not a
            # different answer
            declined = outcome[0] == "missing" or outcome[:2] == ("error", "NotImplementedError")
            known, wrong = [], []
            if declined:
                same = True
            elif ref[0] != "ok" or outcome[0] != "ok":  # the same when both raise the same exception type
                same = ref[0] == outcome[0] == "error" and ref[1] == outcome[1]
            elif np.shape(outcome[1]) != np.shape(ref[1]):
                same = False
            else:
                differing = _differing(ref[1], outcome[1], edge, bp.compute.get(edge.dtype), floor)
                same = not differing.any()
                if not same:
                    x, kw = edge.inputs()
                    v = args[2] if edge.kind == "vjp" else None
                    given, not_given = known_departures(bp.departures, edge.op, edge.kind, x, kw, outcome[1], v,
                                                        differing)
                    known, wrong = [d.key for d in given], [d.key for d in not_given]
            row["backends"].append({"backend": bp.name, "answer": describe(outcome), "differs": not same,
                                    "declined": declined,
                                    "known_departure": known, "departure_not_as_documented": wrong})
        rows.append(row)
    return rows
