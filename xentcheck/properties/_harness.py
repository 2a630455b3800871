"""The machinery under every property: calling the backend, comparing, and reporting.

* `Harness.call` / `vjp` / `hvp` call the backend and record each call, so that a failure can be
  replayed by a self-contained snippet. A NotImplementedError marks the op, dtype or option as
  unsupported: never a pass, never a failure.
* `Harness.close` compares within a tolerance; elements covered by a known framework departure
  (xentcheck.semantics) are reported as semantic differences, failures under --strict.
* `property_of(op)` turns a function f(h, dtype, case) into a Hypothesis test over the op's specs,
  with every edge of edges.py as an explicit @example. An optional op (OpInfo.optional) that the
  backend does not have is skipped as "not provided", never failed.
"""
from __future__ import annotations

import base64
import functools
import textwrap
import zlib

import numpy as np
import pytest
from hypothesis import example, given, note, reject

from ..assertions import close_mask, describe_mismatch
from ..edges import edges_for
from ..optable import OPS
from ..reference import FORMATS
from ..semantics import departures


class Harness:
    def __init__(self, backend, spec: str, strict: bool, node=None):
        self.backend, self.spec, self.strict, self.node = backend, spec, strict, node
        self.calls: list[tuple] = []
        self.semantic: list[dict] = []
        self.unsupported: list[str] = []
        self.context: dict = {}

    # -- per example ---------------------------------------------------------------------------
    def begin(self, prop: str, op: str, dtype: str, case) -> None:
        if not OPS[op].provided_by(self.backend):  # an optional op of the contract (the loss family)
            self.unsupported.append(f"{op}: not provided by the backend (an optional op)")
            pytest.skip(f"not provided: the backend has no {op} (an optional op of the contract)")
        self.calls.clear()
        self.context = {"property": prop, "op": op, "dtype": dtype, "case": case}

    def inputs(self, case, dtype: str, op: str | None = None):
        """(x, kwargs) of `case` in `dtype`, with only the keyword arguments `op` takes."""
        op = op or self.context["op"]
        x, kwargs = case.materialize(dtype)
        return x, OPS[op].kwargs(kwargs)

    @property
    def floor(self):
        fmt = FORMATS[self.context["dtype"]]
        return fmt.smallest_normal if getattr(self.backend, "flushes_subnormals", False) else None

    # -- calling the backend --------------------------------------------------------------------
    def call(self, op: str, x, kwargs: dict):
        return self._invoke(op, (x,), kwargs)

    def vjp(self, op: str, x, cotangent, kwargs: dict):
        return self._invoke("vjp", (op, x, cotangent), kwargs)

    def hvp(self, op: str, x, cotangent, tangent, kwargs: dict):
        return self._invoke("hvp", (op, x, cotangent, tangent), kwargs)

    def _invoke(self, method: str, args: tuple, kwargs: dict):
        self.calls.append((method, args, dict(kwargs)))
        try:
            out = getattr(self.backend, method)(*args, **kwargs)
        except NotImplementedError as error:
            what = f"{method}{'(' + args[0] + ')' if method in ('vjp', 'hvp') else ''} in {self.context['dtype']}"
            self.unsupported.append(f"{what}: {error}" if str(error) else what)
            reject()
        return np.asarray(out)

    # -- comparing --------------------------------------------------------------------------------
    def close(self, got, want, tol, what: str, *, op: str | None = None, kind: str | None = None, x=None,
              kwargs=None, check_dtype=True, cotangent=None):
        """got == want within tol, elementwise; known departures become semantic differences (for a vjp,
        give the cotangent: some departures show only at some cotangents)."""
        got, want = np.asarray(got), np.asarray(want)
        if got.shape != want.shape:
            raise AssertionError(f"{what}: shape {got.shape}, expected {want.shape}")
        if check_dtype and got.dtype != want.dtype:
            raise AssertionError(f"{what}: dtype {got.dtype}, expected {want.dtype}")
        tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), want.shape)
        ok = close_mask(got, want, tol)
        if ok.all():
            return
        if op is not None:  # kwargs may be a tuple of the calls' keyword arguments that produced got and want
            mask, found = np.zeros(want.shape, dtype=bool), []
            for kw in kwargs if isinstance(kwargs, tuple) else (kwargs,):
                hit, more = departures(getattr(self.backend, "framework", None), op, kind, x, kw, want.shape,
                                       cotangent)
                mask, found = mask | hit, found + [d for d in more if d not in found]
            if found and np.all(ok | mask):
                self._semantic(found, op, kind)
                return
        raise AssertionError(f"{what}: " + describe_mismatch(got, want, tol, ok, self.context["dtype"]))

    def holds(self, condition, what: str, *, op: str | None = None, kind: str = "value", x=None, kwargs=None,
              layout: str = "output"):
        """Every element of `condition` is true, except where a known departure of the backend's framework
        covers it (then a semantic difference). `layout` says how `condition` lines up with op's output:
        "output" (elementwise), "rows_last" (the op's axis moved last) or "rows" (one value per row)."""
        condition = np.asarray(condition)
        if condition.all():
            return
        if op is not None:
            out_shape = np.shape(OPS[op].reference(x, **kwargs)) if kind == "value" else np.shape(x)
            mask, found = departures(getattr(self.backend, "framework", None), op, kind, x, kwargs, out_shape)
            if layout != "output" and mask.ndim:
                mask = np.moveaxis(mask, kwargs.get("axis", -1), -1)
                mask = mask.any(axis=-1) if layout == "rows" else mask
            if found and np.all(condition | np.broadcast_to(mask, condition.shape)):
                self._semantic(found, op, kind)
                return
        raise AssertionError(what)

    def _semantic(self, found, op, kind):
        for d in found:
            self.semantic.append({"departure": d.key, "op": op, "kind": kind, "dtype": self.context["dtype"],
                                  "description": d.description})
        if self.strict:
            raise AssertionError("semantic difference (--strict): " + "; ".join(d.description for d in found))

    # -- reporting --------------------------------------------------------------------------------
    def reproducer(self, failure: BaseException) -> str:
        """A self-contained snippet: the backend calls of the failing example, each beside the reference."""
        lines = ["import numpy as np", "from xentcheck import reference", "from xentcheck.backends import load_backend",
                 "", f"backend = load_backend({self.spec!r})"]
        for method, args, kwargs in self.calls:
            rendered = ", ".join([_literal(a) for a in args] + [f"{k}={_literal(v)}" for k, v in kwargs.items()])
            lines += ["", f"got = backend.{method}({rendered})"]
            if method != "hvp":
                lines += [f"want = reference.{method}({rendered})",
                          "print('got ', got)", "print('want', want)",
                          "print('max |got - want| =', np.nanmax(np.abs(np.asarray(got, float) - np.asarray(want, float))))"]
            else:
                lines += ["print('got ', got)"]
        lines += ["", f"# property {self.context['property']} ({self.context['op']}, {self.context['dtype']}) failed with:"]
        lines += ["# " + line for line in f"{type(failure).__name__}: {failure}".splitlines()[:6]]
        text = "\n".join(lines)
        extra = (["import base64, zlib"] if "zlib." in text else []) + (
            ["from ml_dtypes import bfloat16"] if "astype(bfloat16)" in text else [])
        return "\n".join(extra + lines)

    def failure_record(self, failure: BaseException) -> dict:
        return {"property": self.context["property"], "op": self.context["op"], "dtype": self.context["dtype"],
                "case": repr(self.context["case"]), "error": f"{type(failure).__name__}: {failure}",
                "reproducer": self.reproducer(failure)}


def _literal(value) -> str:
    """Python source that rebuilds `value` exactly (arrays with their dtype, floats round-trip)."""
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        a = np.asarray(value)
        dtype = a.dtype.name
        flat = a.astype(np.float64).reshape(-1) if a.dtype.kind not in "iu" else a.reshape(-1)
        if flat.size > 64:  # exact and compact: the float64 (or int64) bytes, compressed
            packed = base64.b64encode(zlib.compress(flat.astype(flat.dtype.newbyteorder("<")).tobytes(), 9))
            return (f"np.frombuffer(zlib.decompress(base64.b64decode({packed.decode()!r})), "
                    f"dtype='<{flat.dtype.kind}8').reshape({a.shape}).astype({_dtype_literal(dtype)})")
        items = ", ".join(_number(v) for v in flat.tolist())
        return f"np.array([{items}]).reshape({a.shape}).astype({_dtype_literal(dtype)})"
    if isinstance(value, float):
        return _number(value)
    return repr(value)


def _number(v) -> str:
    if isinstance(v, float):
        if np.isnan(v):
            return "np.nan"
        if np.isinf(v):
            return "np.inf" if v > 0 else "-np.inf"
    return repr(v)


def _dtype_literal(name: str) -> str:
    return "bfloat16" if name == "bfloat16" else f"np.{name}"


# --------------------------------------------------------------------------------------------
# Turning a check function into a Hypothesis test.

def property_of(op_name: str, specs=None, edges=True, name: str | None = None):
    """Decorate f(h, dtype, case): Hypothesis draws `case` from the op's specs; every edge is an @example."""
    op = OPS[op_name]

    def decorate(check):
        if name:
            check.__name__ = check.__qualname__ = name

        @functools.wraps(check)
        def body(h, dtype, case):
            h.begin(check.__name__, op_name, dtype, case)
            try:
                check(h, dtype, case)
            except BaseException as failure:
                if type(failure).__name__ in ("UnsatisfiedAssumption", "Skipped"):
                    raise
                h.last_failure = h.failure_record(failure)
                note("Reproducer:\n" + textwrap.indent(h.reproducer(failure), "    "))
                raise

        test = given(case=specs if specs is not None else op.specs())(body)
        for edge in reversed(edges_for(op_name) if edges else ()):  # the last applied runs first
            test = example(case=edge)(test)
        test.xentcheck_op = op_name
        return test

    return decorate

