"""The strategies reach every edge they promise, and specs materialize into what the ops expect.

A strategy that never produces an all -inf row, a logit past the exp threshold or an ignored target
lets the bugs that live there through: each reachability claim is checked with hypothesis.find.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from xentcheck import strategies
from xentcheck.records import OPS
from xentcheck.reference import DTYPE_NAMES, FORMATS, cross_entropy, softmax

FIND = settings(max_examples=5000, database=None, suppress_health_check=list(HealthCheck),
                phases=[Phase.generate])  # finding is enough: no need to shrink what was found


def _rows(spec):
    x, kwargs = spec.materialize("float32")
    return np.moveaxis(x.astype(np.float64), kwargs["axis"], -1)


ROW_REACHES = {
    "an all -inf row": lambda s: np.any(np.all(_rows(s) == -np.inf, axis=-1)),
    "-inf beside a finite logit": lambda s: np.any(np.any(_rows(s) == -np.inf, axis=-1)
                                                   & np.any(np.isfinite(_rows(s)), axis=-1)),
    "exact ties": lambda s: any(len(set(r)) < len(r) for r in _rows(s).reshape(-1, _rows(s).shape[-1]).tolist()
                                if len(r) > 1),
    "a logit past exp overflow": lambda s: np.any(_rows(s) > math.log(FORMATS["float32"].max)),
    "a gap past exp underflow": lambda s: np.any(np.nanmax(_rows(s), axis=-1, keepdims=True) - _rows(s)
                                                 > -math.log(FORMATS["float32"].smallest_subnormal)),
    "magnitudes near 1e4": lambda s: np.nanmax(np.abs(np.where(np.isfinite(_rows(s)), _rows(s), 0))) > 5e3,
    "a 4-D input": lambda s: len(s.shape) == 4,
    "a negative axis other than -1": lambda s: s.axis < -1,
    "axis 0 of a 3-D input": lambda s: s.axis == 0 and len(s.shape) == 3,
    "a tiny temperature": lambda s: s.temperature <= 1e-3,
    "a huge temperature": lambda s: s.temperature >= 1e3,
    "a row of one entry": lambda s: s.shape[s.axis] == 1,
}


@pytest.mark.parametrize("what", ROW_REACHES)
def test_row_specs_reach(what):
    with np.errstate(invalid="ignore"):  # inf - inf in a row of infinities
        find(strategies.row_specs(), ROW_REACHES[what], settings=FIND)


def _ce(spec):
    return spec.materialize("float64")


CE_REACHES = {
    "an ignored target": lambda s: s.target_kind == "index" and s.ignore_index in s.targets,
    "every target ignored": lambda s: s.target_kind == "index" and set(s.targets) == {s.ignore_index},
    "ignore_index a real class": lambda s: s.target_kind == "index" and s.ignore_index == 0,
    "a class weight of 0": lambda s: s.weight is not None and 0.0 in s.weight,
    "label smoothing 1": lambda s: s.label_smoothing == 1.0,
    "weights with label smoothing": lambda s: s.weight is not None and 0 < s.label_smoothing < 1,
    "probability targets": lambda s: s.target_kind == "probability",
    "probability targets with smoothing": lambda s: s.target_kind == "probability" and s.label_smoothing > 0,
    "1-D logits and a scalar target": lambda s: len(s.shape) == 1,
    "3-D logits": lambda s: len(s.shape) == 3,
    "reduction none": lambda s: s.reduction == "none",
    "reduction sum": lambda s: s.reduction == "sum",
    "a -inf logit at the target": lambda s: s.target_kind == "index" and any(
        t != s.ignore_index and _ce(s)[0].reshape(-1, s.n_classes)[i, t] == -np.inf
        for i, t in enumerate(s.targets)),
}


@pytest.mark.parametrize("what", CE_REACHES)
def test_ce_specs_reach(what):
    find(strategies.ce_specs(), CE_REACHES[what], settings=FIND)


@pytest.fixture
def ci_shapes():
    """The ci profile's fixed shape set (strategies.fix_shapes), restored afterwards."""
    strategies.fix_shapes(True)
    yield
    strategies.fix_shapes(False)


@pytest.mark.parametrize("what", ["a 4-D input", "a negative axis other than -1", "axis 0 of a 3-D input",
                                  "a row of one entry", "an all -inf row", "a logit past exp overflow"])
def test_the_ci_shapes_still_reach(what, ci_shapes):
    """The few shapes that spare a jitted backend its compilations keep the reach that depends on shape."""
    find(strategies.row_specs(), ROW_REACHES[what], settings=FIND)


@pytest.mark.parametrize("what", ["1-D logits and a scalar target", "3-D logits", "every target ignored",
                                  "probability targets with smoothing"])
def test_the_ci_shapes_still_reach_ce(what, ci_shapes):
    find(strategies.ce_specs(), CE_REACHES[what], settings=FIND)


def test_the_ci_shapes_are_few(ci_shapes):
    """At most the fixed set: a jitted backend compiles one program per shape (and option set), not per example."""
    for strategy, allowed in ((strategies.row_specs(), strategies.FIXED_ROW_SHAPES),
                              (strategies.ce_specs(), strategies.FIXED_CLASS_SHAPES),
                              (strategies.loss_specs(), strategies.FIXED_CLASS_SHAPES),
                              (strategies.distribution_specs(), strategies.FIXED_CLASS_SHAPES)):
        shapes = set()

        @settings(max_examples=60, database=None, suppress_health_check=list(HealthCheck), deadline=None)
        @given(spec=strategy)
        def collect(spec):
            shapes.add(spec.shape)

        collect()
        assert shapes <= set(allowed) and len(shapes) >= 3, shapes


@settings(max_examples=200, database=None, suppress_health_check=list(HealthCheck), deadline=None)
@given(spec=strategies.row_specs(), dtype=st.sampled_from(DTYPE_NAMES))
def test_row_specs_materialize_into_valid_inputs(spec, dtype):
    x, kwargs = spec.materialize(dtype)
    assert x.dtype == FORMATS[dtype].dtype and x.shape == spec.shape
    assert not np.isnan(x.astype(np.float64)).any()  # NaN only where an edge puts it
    softmax(x, **kwargs)  # the reference accepts every generated input
    v = spec.cotangent_for(OPS["softmax"], dtype)
    assert v.shape == x.shape and v.dtype == x.dtype


@settings(max_examples=200, database=None, suppress_health_check=list(HealthCheck), deadline=None)
@given(spec=strategies.ce_specs(), dtype=st.sampled_from(DTYPE_NAMES))
def test_ce_specs_materialize_into_valid_inputs(spec, dtype):
    x, kwargs = spec.materialize(dtype)
    assert x.dtype == FORMATS[dtype].dtype
    cross_entropy(x, **kwargs)  # valid targets, weights and options
    if spec.target_kind == "probability":
        q = kwargs["target"].astype(np.float64)
        sums = q.sum(axis=-1)
        # normalised in float64 (U64 per entry) and each entry rounded once into the dtype (u q_i, or a subnormal
        # spacing): |sum - 1| <= u + n (spacing + U64), our float64 sum included (or the row is all zero)
        fmt, n = FORMATS[dtype], q.shape[-1]
        tol = fmt.unit_roundoff + n * (fmt.smallest_subnormal + 2.0 ** -52)
        assert np.all((np.abs(sums - 1) <= tol) | (sums == 0))
    assert spec.cotangent_for(OPS["cross_entropy"], dtype).shape == \
        (x.shape[:-1] if spec.reduction == "none" else ())


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp", "cross_entropy"])
def test_every_op_has_its_edges_and_llm_sized_rows(op):
    edges = OPS[op].edges()
    labels = " | ".join(e.label for e in edges)
    for needed in ("llm vocab 131072", "untrained"):
        assert needed in labels, f"{op} lacks an edge '{needed}'"
    sizes = [int(np.prod(e.shape)) for e in edges]
    assert max(sizes) >= 131072 and min(sizes) <= 8
    for dtype in DTYPE_NAMES:
        for e in edges:
            x, _ = e.materialize(dtype)
            assert x.dtype == FORMATS[dtype].dtype
