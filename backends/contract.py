"""The backend contract: what any implementation must offer to be checked by xentcheck.

A backend is any object with `name`, one method per required op of xentcheck.records (softmax(x, axis=-1,
temperature=1.0), log_softmax(x, axis=-1, temperature=1.0), logsumexp(x, axis=-1) with the axis removed,
cross_entropy(logits, target, reduction="mean", weight=None, ignore_index=-100, label_smoothing=0.0,
z_loss=0.0, softcap=None)) and `vjp(op, x, cotangent, **kwargs)`, d<cotangent, op(x, **kwargs)>/dx with x's
shape and dtype. Arrays in and out are NumPy arrays (bfloat16 via ml_dtypes); the inputs are read-only (a
backend that writes into one fails). A backend raises
NotImplementedError for an op, dtype or option it does not support: that is reported as unsupported where it
declines them for every input, and as a failure where it declines only some inputs of what it answers.
cross_entropy's z_loss and softcap (the LM head's options, semantics in reference/ops.py's HeadOptions) came
later (OpRecord.later_options): a backend is given them only when they are set, and a TypeError saying it
takes no such keyword argument counts as declining them, so an adapter written without them keeps working.

Optional: `linear_cross_entropy(hidden, weight, target, bias=None, reduction="mean", class_weight=None,
ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None)` (the LM head; semantics in
reference/linear.py), whose vjp returns the tuple (d hidden, d weight, d bias), d bias None without a bias (a
list is taken as the tuple, and an absent input's entry is not read); the loss family's ops (focal_loss,
mse_loss, multiclass_hinge_loss on logits and class indices; entropy(p), kl_divergence(p, q),
distribution_cross_entropy(p, q) on probability rows, their vjps with respect to p; semantics in
reference/losses.py), reported as "not provided" where a backend lacks them;
`hvp(op, x, cotangent, tangent, **kwargs)` (a Hessian-vector product by the framework's autograd);
`jvp(op, x, tangent, **kwargs)` (forward mode: J t, shaped like op's output; checked against the exact
directional derivative and against the backend's own vjp, <J t, v> = <t, J^T v>, for the ops whose record
derives it: softmax, log_softmax, logsumexp, cross_entropy);
`flushes_subnormals` (found by probing, `flushes_subnormals(backend, dtype)`: where a dtype's subnormal results
come back as 0, as XLA on CPU does, comparisons use the smallest normal as their floor; the attribute is
used only where the probe cannot run); `departures`, the names of the documented departures it has
(`xentcheck departures` lists them; each is checked as an expected answer: where one applies the backend must
give its documented answer, and a departure it does not declare is a failure); `framework` ("torch" or "jax": a
backend built on that framework declares that framework's set, xentcheck.semantics); and `compute_formats`, a dict {dtype: format} naming the format a dtype is computed in
where it is not the default (float32 for float16 and bfloat16, the dtype itself otherwise): a kernel that
accumulates bfloat16 in bfloat16 declares {"bfloat16": "bfloat16"}. The error bounds are derived for the
(dtype, compute format) pair; `check --compute` and `compare --compute` override the declaration, and every
report says which was assumed.

Optional for `xentcheck bench`: `prepare(op, kind, x, cotangent=None, **kwargs)`, a zero-argument call that
computes the value (kind "value") or the vjp with the inputs already in the framework (the default calls the
op's method or `vjp`), and `note`, one line on how the backend runs.

`Backend` is the base class an adapter may start from (einops' _backends.py is the model): it carries this
documentation, one method per op of every record (each forwarding to `evaluate(op, x, **kwargs)` with the
op's defaults filled in), `vjp` and `prepare`; an adapter imports its framework in __init__ and overrides
`evaluate`, `vjp` and whatever its framework does differently. Nothing requires it: any object with the
members works.
"""
from __future__ import annotations

import functools
import math
import re

import numpy as np

from ..reference.dtypes import DEFAULT_COMPUTE, DTYPE_NAMES, FORMATS


class Backend:
    """The base of an adapter: override `evaluate` (and `vjp`, `hvp` where the framework differentiates)."""
    name = "backend"
    framework: str | None = None       # "torch" or "jax": declare that framework's documented departures
    departures: tuple = ()             # names of documented departures it has besides (`xentcheck departures`)
    flushes_subnormals = False         # used only where the probe (flushes_subnormals below) cannot run
    compute_formats: dict = {}         # {dtype: format} where not computed in the default format
    note = ""                          # one line on how it runs (bench shows it)

    def evaluate(self, op: str, x, **kwargs):
        """op(x, **kwargs) with every keyword argument given (the named methods fill in the defaults)."""
        raise NotImplementedError(f"{self.name} does not compute {op}")

    def vjp(self, op: str, x, cotangent, **kwargs):
        """d<cotangent, op(x, **kwargs)>/dx, shaped and typed like x."""
        raise NotImplementedError(f"{self.name} has no vjp of {op}")

    def prepare(self, op: str, kind: str, x, cotangent=None, **kwargs):
        """A zero-argument call computing op's value (kind "value") or its vjp at these inputs, for `bench`.
        This default calls the op's method or `vjp` on the NumPy inputs; an adapter overrides it to move the
        inputs to its framework once and leave the result there (waiting for a device): the computation
        `evaluate` and `vjp` run, without the conversions."""
        if kind == "value":
            method = getattr(self, op)
            return lambda: method(x, **kwargs)
        return lambda: self.vjp(op, x, cotangent, **kwargs)

    @classmethod
    def add_op(cls, record) -> None:
        """Give the base class record's method: (x, <its keyword arguments>) -> evaluate(record.name, ...)."""
        signature = record.signature()

        @functools.wraps(cls.evaluate)
        def method(self, *args, **kwargs):
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = record.backend_kwargs(bound.arguments)
            del arguments["self"]
            return self.evaluate(record.name, arguments.pop("x"), **arguments)

        method.__name__ = method.__qualname__ = record.name
        method.__doc__ = f"{record.name}{str(signature).replace('self, ', '')}: the op of xentcheck.records."
        method.__signature__ = signature
        method.forwards_to_evaluate = True
        setattr(cls, record.name, method)


def declined_option(error: TypeError, kwargs: dict) -> str | None:
    """The keyword argument of `kwargs` that a TypeError says the callee does not take ("... got an unexpected
    keyword argument 'z_loss'"): an option the backend does not offer, i.e. declines, as if by NotImplementedError;
    None for any other TypeError."""
    found = re.search(r"unexpected keyword argument '(\w+)'", str(error))
    return found.group(1) if found and found.group(1) in kwargs else None


def prepared_call(backend, op: str, kind: str, x, cotangent, kwargs: dict):
    """The call `bench` times, for any object meeting the contract (Backend.prepare for one without its own)."""
    prepare = getattr(backend, "prepare", None)
    if callable(prepare):
        return prepare(op, kind, x, cotangent, **kwargs)
    return Backend.prepare(backend, op, kind, x, cotangent, **kwargs)


def flushes_subnormals(backend, dtype: str) -> bool:
    """Whether `backend` flushes subnormal results of `dtype` to zero, found by asking it: softmax([0, -L]) with
    e^-L = the smallest normal / 64 has a subnormal second entry, which comes back 0 only where results are
    flushed. Where the probe cannot run (the backend declines or fails), its `flushes_subnormals` attribute."""
    probed = vars(backend).setdefault("_probed_flushing", {}) if hasattr(backend, "__dict__") else {}
    if dtype not in probed:
        fmt = FORMATS[dtype]
        x = np.array([0.0, math.log(fmt.smallest_normal / 64)]).astype(fmt.dtype)
        try:
            p = np.asarray(backend.softmax(x, axis=-1, temperature=1.0)).astype(np.float64)
            probed[dtype] = bool(p.shape == (2,) and p[0] == 1.0 and p[1] == 0.0)
        except Exception:  # noqa: BLE001 - a backend that cannot answer keeps its declaration
            probed[dtype] = bool(getattr(backend, "flushes_subnormals", False))
    return probed[dtype]


class BackendLoadError(Exception):
    """The spec is wrong or the backend could not be imported or built; the message is one line."""


class BackendUnavailable(BackendLoadError):
    """A built-in backend whose framework (or device) is not present here; the message says why."""


def missing_members(obj) -> list[str]:
    """The contract members `obj` lacks (a non-callable op counts as missing)."""
    from ..records import OPS

    members = ["name"] + [r.name for r in OPS.values() if not r.optional] + ["vjp"]
    missing = [m for m in members if not hasattr(obj, m)]
    missing += [m for m in members[1:] if hasattr(obj, m) and not callable(getattr(obj, m))]
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
