"""The machinery under every property: calling the backend, comparing, and reporting.

* `Harness.call` / `vjp` / `hvp` call the backend and record each call, so that a failure can be
  replayed by a self-contained snippet. A NotImplementedError is "unsupported" only where the backend
  declines the op, dtype, shape and options themselves: the harness probes the same call on ordinary
  values, and where that is answered, declining this input is a failure (`Declined`), with this input as
  its counterexample. An example that never reached the backend is rejected (Hypothesis counts it), so a
  property passes only on examples the backend actually answered.
* `Harness.close` compares within a tolerance; elements covered by a known framework departure
  (xentcheck.semantics) must hold the departure's documented answer, and are then reported as semantic
  differences (failures under --strict).
* Tolerances come from xentcheck.bounds for the dtype's compute format (`Harness.compute`: the `--compute`
  override, the backend's `compute_formats`, or the default) and the subnormal floor.
* `property_of(op)` turns a function f(h, dtype, case) into a Hypothesis test over the op's specs,
  with every edge of the op's record as an explicit @example. An optional op (OpRecord.optional) that the
  backend does not have is skipped as "not provided", never failed.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import os
import tempfile
import textwrap
import traceback
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, note, reject

from .. import bounds, verdict
from ..backends.contract import declined_option, flushes_subnormals
from ..records import OPS
from ..reference import FORMATS, round_to_dtype
from ..semantics import applicable, declared, departures
from ..verdict import judge

DERIVATIVES = ("vjp", "jvp", "hvp")  # the backend methods that take the op's name first
_DIRECTIONS = {"vjp": ("cotangent",), "jvp": ("tangent",), "hvp": ("cotangent", "tangent")}  # their arrays after x

# Whether the backend answers a call on ordinary values, by the call's signature (its method, op, dtype,
# shape and options): a session-wide cache of the probes, one per backend object.
_PROBES: dict = {}


class Declined(AssertionError):
    """The backend declined an input of an op, dtype, shape and options that it answers on ordinary values."""


class ChangedItsInput(AssertionError):
    """The backend wrote into an input array (`names`) it was given: the contract's inputs are read-only."""

    def __init__(self, message: str, names: list):
        super().__init__(message)
        self.names = names


class Harness:
    def __init__(self, backend, spec: str, strict: bool, node=None, compute=None):
        self.backend, self.spec, self.strict, self.node = backend, spec, strict, node
        self.compute_formats = compute or {}  # {dtype: (format, why)} (backends.contract.compute_formats)
        self.declared = declared(backend)  # the departures it has (xentcheck.semantics), held to their answers
        self.calls: list[tuple] = []
        self.semantic: list[dict] = []
        self.unsupported: list[str] = []
        self.context: dict = {}
        self.answered = 0  # backend calls answered in the current example
        self.examples = 0  # examples that reached the backend
        self.failures: dict = {}  # (kind, exception type, origin) -> the record of its latest failing example
        self.unjudged: dict = {}  # reason -> examples a property could not judge (rejected, counted, reported)

    # -- per example ---------------------------------------------------------------------------
    def begin(self, prop: str, op: str, dtype: str, case) -> None:
        if not OPS[op].provided_by(self.backend):  # an optional op of the contract (the loss family)
            self.unsupported.append(f"{op}: not provided by the backend (an optional op)")
            pytest.skip(f"not provided: the backend has no {op} (an optional op of the contract)")
        self.calls.clear()
        self.answered = 0
        self.context = {"property": prop, "op": op, "dtype": dtype, "case": case}
        self._skip_if_declined(op, dtype)

    def not_judged(self, reason: str) -> None:
        """Reject this example, counted under `reason`: the property's premise does not hold for this backend
        here (e.g. its forward is another function), so its check would mean nothing."""
        self.unjudged[reason] = self.unjudged.get(reason, 0) + 1
        reject()

    def finish(self) -> None:
        """The example passed: it counts only if it reached the backend."""
        if not self.answered:
            reject()
        self.examples += 1

    def inputs(self, case, dtype: str, op: str | None = None):
        """(x, kwargs) of `case` in `dtype`, with only the keyword arguments `op` takes."""
        op = op or self.context["op"]
        x, kwargs = case.materialize(dtype)
        return x, OPS[op].kwargs(kwargs)

    def bound(self, op: str, x, kwargs: dict):
        """The value bound of op(x, **kwargs) for this backend (its dtype's compute format, its floor)."""
        return verdict.value_bound(op, x, **self.precision(), **kwargs)

    def vjp_bound(self, op: str, x, v, kwargs: dict):
        return verdict.vjp_bound(op, x, v, **self.precision(), **kwargs)

    @property
    def floor(self):
        dtype = self.context["dtype"]
        return FORMATS[dtype].smallest_normal if flushes_subnormals(self.backend, dtype) else None

    @property
    def compute(self) -> str:
        """The format the current dtype is assumed computed in."""
        dtype = self.context["dtype"]
        return self.compute_formats.get(dtype, (bounds.DEFAULT_COMPUTE[dtype],))[0]

    def precision(self) -> dict:
        """The keyword arguments of every xentcheck.bounds function for this backend and dtype."""
        return {"dtype": self.context["dtype"], "compute": self.compute, "floor": self.floor}

    # -- calling the backend --------------------------------------------------------------------
    def call(self, op: str, x, kwargs: dict):
        return self._invoke(op, (x,), kwargs)

    def vjp(self, op: str, x, cotangent, kwargs: dict):
        return self._invoke("vjp", (op, x, cotangent), kwargs)

    def hvp(self, op: str, x, cotangent, tangent, kwargs: dict):
        return self._invoke("hvp", (op, x, cotangent, tangent), kwargs)

    def jvp(self, op: str, x, tangent, kwargs: dict):
        return self._invoke("jvp", (op, x, tangent), kwargs)

    def _invoke(self, method: str, args: tuple, kwargs: dict):
        self.calls.append((method, args, dict(kwargs)))
        op = args[0] if method in DERIVATIVES else method
        names, given = _named_inputs(method, args, kwargs)
        # the backend gets copies: an input it changes in place is found, and the properties keep the originals
        copies = {name: a.copy() for name, a in given.items() if isinstance(a, np.ndarray)}
        try:
            out = getattr(self.backend, method)(*(copies.get(n, a) for n, a in zip(names, args)),
                                                **{k: copies.get(k, v) for k, v in kwargs.items()})
        except NotImplementedError as error:
            self._declined(method, args, kwargs, error)
        except TypeError as error:  # an option the backend does not take: declined
            if (option := declined_option(error, kwargs)) is None:
                raise
            self._declined(method, args, kwargs, NotImplementedError(f"it takes no {option}= option"))
        self.answered += 1
        changed = [name for name, a in copies.items() if a.tobytes() != given[name].tobytes()]
        if changed:
            raise ChangedItsInput(f"{method}{'(' + op + ')' if method != op else ''} changed its input "
                                  f"{', '.join(changed)} in place: the contract's inputs are read-only (a caller's "
                                  "array would be overwritten)", changed)
        if method != "vjp":
            return np.asarray(out)
        try:
            return OPS[args[0]].gradients_of(out, kwargs)
        except ValueError as error:  # the contract's form of a vjp: a failure of the backend, not of the suite
            raise AssertionError(str(error)) from None

    def _declined(self, method, args, kwargs, error):
        """Unsupported (reject the example) where the same call on ordinary values is declined too; else a
        failure: the backend declines some inputs of what it answers."""
        op = args[0] if method in DERIVATIVES else method
        what = f"{method}{'(' + op + ')' if method != op else ''} in {self.context['dtype']}"
        reason = f"{what}: {error}" if str(error) else what
        if method != op:  # a derivative declined for this op and dtype altogether: the test is unsupported
            self._skip_if_declined(op, self.context["dtype"], method)
        if self._answers_ordinary_values(method, args, kwargs):
            raise Declined(f"declined: {reason} (NotImplementedError) on this input, but the backend answers the "
                           f"same op, dtype, shape and options on ordinary values: declining the inputs it finds hard "
                           f"is a failure, not 'unsupported'")
        self.unsupported.append(reason)
        reject()

    def _answers_ordinary_values(self, method, args, kwargs) -> bool:
        op = args[0] if method in DERIVATIVES else method
        x = np.asarray(args[1] if method != op else args[0])
        key = (id(self.backend), method, op, x.dtype.str, x.shape, _options(kwargs))
        if key not in _PROBES:
            ordinary = _ordinary_like(x, OPS[op].domain)
            others = tuple(np.ones(np.shape(a), np.asarray(a).dtype) for a in args[2 if method != op else 1:])
            probe = (op, ordinary) + others if method != op else (ordinary,) + others
            try:
                getattr(self.backend, method)(*probe, **kwargs)
                _PROBES[key] = True
            except NotImplementedError:
                _PROBES[key] = False
            except TypeError as error:
                _PROBES[key] = declined_option(error, kwargs) is None
            except Exception:  # noqa: BLE001 - it did not decline; what it does there is other properties' business
                _PROBES[key] = True
        return _PROBES[key]

    def _skip_if_declined(self, op: str, dtype: str, method: str | None = None) -> None:
        """Skip the whole test, as unsupported, where the backend declines the op (or its `method`: vjp, jvp,
        hvp) in this dtype on a small ordinary input with the default options: it is not retried per example."""
        method = method or op
        key = (id(self.backend), "declined", method, op, dtype)
        if key not in _PROBES:
            x, kwargs = _canonical_input(op, dtype)
            ones = np.ones(OPS[op].output_shape(x, kwargs), x.dtype)
            args = {"vjp": (op, x, ones), "jvp": (op, x, np.ones_like(x)),
                    "hvp": (op, x, ones, np.ones_like(x))}.get(method, (x,))
            what = f"{method}{'(' + op + ')' if method != op else ''} in {dtype}"
            try:
                getattr(self.backend, method)(*args, **kwargs)
                _PROBES[key] = None
            except NotImplementedError as error:
                _PROBES[key] = f"{what}: {error}" if str(error) else what
            except Exception:  # noqa: BLE001 - not a decline; the properties report what it is
                _PROBES[key] = None
        if _PROBES[key] is not None:
            self.unsupported.append(_PROBES[key])
            pytest.skip("unsupported: " + _PROBES[key])

    # -- comparing --------------------------------------------------------------------------------
    def close(self, got, want, tol, what: str, *, op: str | None = None, kind: str | None = None, x=None,
              kwargs=None, check_dtype=True, cotangent=None, compares_calls=False):
        """got == want within tol, elementwise (verdict.judge); where a known departure of the backend's framework
        applies, its documented answer is accepted instead (a semantic difference), and nothing else (for a vjp,
        give the cotangent: some departures show only at some cotangents). `compares_calls`: want comes from the
        backend too (a consistency property), and either side may hold the departure's answer."""
        found = applicable(self.declared, op, kind, x, kwargs, np.shape(want), cotangent) \
            if op is not None else []
        verdict = judge(got, want, tol, dtype=self.context["dtype"], departures=found, x=x, cotangent=cotangent,
                        compares_calls=compares_calls, check_dtype=check_dtype)
        if not verdict.ok:
            raise AssertionError(f"{what}: {verdict.message}")
        if verdict.used:
            self._semantic(verdict.used, op, kind)

    def holds(self, condition, what: str, *, op: str | None = None, kind: str = "value", x=None, kwargs=None,
              layout: str = "output", got=None):
        """Every element of `condition` is true, except where a known departure of the backend's framework
        covers it (then a semantic difference; the departure's answer itself is checked by the agreement
        properties). `layout` says how `condition` lines up with op's output: "output" (elementwise, shaped
        like the output), "rows_last" (the op's axis moved last) or "rows" (one value per row) of an output,
        or of a vjp, shaped like x. `got`: the values the condition is about (shaped like it), of which the
        failure message shows the first that break it."""
        condition = np.asarray(condition)
        if condition.all():
            return
        if op is not None:
            shape = condition.shape if kind == "value" and layout == "output" else np.shape(x)
            found = departures(self.declared, op, kind, x, kwargs, shape)
            mask = np.zeros(shape, dtype=bool)
            for _, hit in found:
                mask |= hit
            if layout != "output" and mask.ndim:
                mask = np.moveaxis(mask, kwargs.get("axis", -1), -1)
                mask = mask.any(axis=-1) if layout == "rows" else mask
            if found and np.all(condition | np.broadcast_to(mask, condition.shape)):
                self._semantic([d for d, _ in found], op, kind)
                return
        if got is not None and np.shape(got) == condition.shape:
            bad = np.asarray(got)[~condition]
            what += f": got {bad[:4].tolist()}{' ...' if bad.size > 4 else ''} ({bad.size} of {condition.size})"
        raise AssertionError(what)

    def _semantic(self, found, op, kind):
        for d in found:
            self.semantic.append({"departure": d.key, "op": op, "kind": kind, "dtype": self.context["dtype"],
                                  "description": d.description, "answer": d.answer})
        if self.strict:
            raise AssertionError("semantic difference (--strict): " + "; ".join(d.description for d in found))

    # -- reporting --------------------------------------------------------------------------------
    def reproducer(self, failure: BaseException) -> str:
        """A self-contained snippet: the backend calls of the failing example, each beside the reference."""
        lines = ["import numpy as np", "from xentcheck import reference", "from xentcheck.backends import load_backend",
                 "", f"backend = load_backend({self.spec!r})"]
        for i, (method, args, kwargs) in enumerate(self.calls):
            rendered = ", ".join([_literal(a) for a in args] + [f"{k}={_literal(v)}" for k, v in kwargs.items()])
            lines += ["", f"got = backend.{method}({rendered})"]
            if isinstance(failure, ChangedItsInput) and i == len(self.calls) - 1:
                lines[-1:] = self._changed_input_lines(failure.names, method, args, kwargs)
            elif method != "hvp":
                lines += [f"want = reference.{method}({rendered})",
                          "print('got ', got)", "print('want', want)",
                          "print('max |got - want| =', np.max(np.abs(np.asarray(got, float) - np.asarray(want, float))))"]
            else:
                lines += ["print('got ', got)"]
        lines += ["", f"# property {self.context['property']} ({self.context['op']}, {self.context['dtype']}) failed with:"]
        lines += ["# " + line for line in f"{type(failure).__name__}: {failure}".splitlines()[:6]]
        text = "\n".join(lines)
        extra = (["import base64, zlib"] if "zlib." in text else []) + (
            ["from ml_dtypes import bfloat16"] if "astype(bfloat16)" in text else [])
        return "\n".join(extra + lines)

    @staticmethod
    def _changed_input_lines(names: list, method: str, args: tuple, kwargs: dict) -> list:
        """The call with each changed input bound to its name, and whether it still holds what it held."""
        positional, given = _named_inputs(method, args, kwargs)
        lines = [f"{name} = {_literal(given[name])}" for name in names]
        lines += [f"{name}_before = {name}.copy()" for name in names]
        rendered = ", ".join([n if n in names else _literal(a) for n, a in zip(positional, args)]
                             + [f"{k}={k if k in names else _literal(v)}" for k, v in kwargs.items()])
        lines += [f"got = backend.{method}({rendered})"]
        lines += [f"print('{name} changed in place:', {name}.tobytes() != {name}_before.tobytes())" for name in names]
        return lines

    def record_failure(self, failure: BaseException, explicit: bool = False) -> None:
        """Keep `failure`'s record under its kind and origin, as Hypothesis tells distinct bugs apart (the
        exception's type and the line that raised it), each with its own minimal example: of the explicit edges
        the first that fails (edges.py lists the simplest first), of generated examples the last (Hypothesis
        replays the shrunk one last)."""
        kind = "declined" if isinstance(failure, Declined) else "assertion" if isinstance(
            failure, AssertionError) else "crash"
        frame = traceback.extract_tb(failure.__traceback__)[-1] if failure.__traceback__ else None
        error = f"{type(failure).__name__}: {failure}"
        if kind == "crash" and frame is not None:  # where in the backend (or the suite) it raised
            error += f"\n  raised in {frame.name} at {frame.filename}:{frame.lineno}: {frame.line}"
        key = (kind, type(failure).__name__, frame and (frame.filename, frame.lineno))
        if explicit and key in self.failures:
            return
        self.failures[key] = {
            "property": self.context["property"], "op": self.context["op"], "dtype": self.context["dtype"],
            "kind": kind, "case": repr(self.context["case"]), "error": error, "reproducer": self.reproducer(failure)}


def _named_inputs(method: str, args: tuple, kwargs: dict) -> tuple:
    """(the names of a backend call's positional arguments, {name: value} of all its arguments): x is named
    as its op's first gradient ("x", "hidden"), the op's name (a derivative's first argument) None."""
    x_name = OPS[args[0] if method in DERIVATIVES else method].gradients[0]
    names = (None, x_name, *_DIRECTIONS[method]) if method in DERIVATIVES else (x_name,)
    return names, {**dict(zip(names, args)), **kwargs}


def _literal(value) -> str:
    """Python source that rebuilds `value` exactly (arrays with their dtype, floats round-trip)."""
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        a = np.asarray(value)
        dtype = a.dtype.name
        flat = a.astype(np.float64).reshape(-1) if a.dtype.kind not in "iu" else a.reshape(-1)
        if flat.size > 64:  # exact: the float64 (or int64) values in an .npy file beside the report
            try:
                return f"np.load({_saved(flat.reshape(a.shape))!r}).astype({_dtype_literal(dtype)})"
            except OSError:  # nowhere to write: the bytes, compressed, inline
                pass
            packed = base64.b64encode(zlib.compress(flat.astype(flat.dtype.newbyteorder("<")).tobytes(), 9))
            return (f"np.frombuffer(zlib.decompress(base64.b64decode({packed.decode()!r})), "
                    f"dtype='<{flat.dtype.kind}8').reshape({a.shape}).astype({_dtype_literal(dtype)})")
        items = ", ".join(_number(v) for v in flat.tolist())
        return f"np.array([{items}]).reshape({a.shape}).astype({_dtype_literal(dtype)})"
    if isinstance(value, float):
        return _number(value)
    return repr(value)


def arrays_dir() -> Path:
    """Where reproducers' large inputs go: $XENTCHECK_ARRAYS (`check --json R.json` sets R-arrays/ beside the
    report), else xentcheck-arrays/ in the system's temporary folder."""
    return Path(os.environ.get("XENTCHECK_ARRAYS") or Path(tempfile.gettempdir()) / "xentcheck-arrays")


def _saved(values: np.ndarray) -> str:
    """The path of an .npy file holding `values` (named by their content, written once)."""
    data = values.astype(values.dtype.newbyteorder("<"))
    path = arrays_dir() / (hashlib.sha256(data.tobytes() + repr(data.shape).encode()).hexdigest()[:20] + ".npy")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, data)
    return str(path.resolve())


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

LARGE_EDGE = 4096  # elements: the LLM-sized edges (rows of 32768 and 131072) are larger


def property_of(op_name: str, specs=None, edges=True, name: str | None = None, large_edges=False):
    """Decorate f(h, dtype, case): Hypothesis draws `case` from the op's specs; every edge is an @example.

    The LLM-sized edges run in the properties that see a whole long row's arithmetic (`large_edges`: the
    agreement with the reference, the normalisation, the gradient rows); the other properties, which call the
    backend several times on variants of one input, take the small edges only."""
    op = OPS[op_name]

    def decorate(check):
        if name:
            check.__name__ = check.__qualname__ = name

        @functools.wraps(check)
        def body(h, dtype, case):
            h.begin(check.__name__, op_name, dtype, case)
            try:
                check(h, dtype, case)
                h.finish()
            except BaseException as failure:
                if type(failure).__name__ in ("UnsatisfiedAssumption", "Skipped"):
                    raise
                h.record_failure(failure, explicit=case in explicit)
                note("Reproducer:\n" + textwrap.indent(h.reproducer(failure), "    "))
                raise

        test = given(case=specs if specs is not None else op.specs())(body)
        chosen = [e for e in (op.edges() if edges else ()) if large_edges or e.size <= LARGE_EDGE]
        explicit = set(chosen)
        for edge in reversed(chosen):  # the last applied runs first
            test = example(case=edge)(test)
        test.xentcheck_op = op_name
        return test

    return decorate



def _options(kwargs: dict) -> tuple:
    """A call's options as a hashable signature: scalars by value, arrays by shape and dtype."""
    out = []
    for k in sorted(kwargs):
        v = kwargs[k]
        out.append((k, (np.shape(v), np.asarray(v).dtype.str) if isinstance(v, np.ndarray) else repr(v)))
    return tuple(out)


def _ordinary_like(x: np.ndarray, domain: str) -> np.ndarray:
    """Ordinary values of x's shape and dtype: logits in [-1.5, 1.5], or rows of equal probabilities."""
    if x.dtype.kind in "iub":
        return (np.arange(x.size) % 4 - 2).reshape(x.shape).astype(x.dtype)
    if domain == "probabilities":
        values = np.full(x.shape, 1.0 / max(x.shape[-1], 1) if x.ndim else 1.0)
    else:
        values = ((np.arange(x.size) % 7) * 0.5 - 1.5).reshape(x.shape)
    return round_to_dtype(values, x.dtype)


def _canonical_input(op: str, dtype: str):
    """A small ordinary input of `op` in `dtype` with its default options (and a target or q where it takes one)."""
    record = OPS[op]
    x = _ordinary_like(np.zeros((2, 4), dtype=FORMATS[dtype].dtype), record.domain)
    extra = record.example_kwargs(x, np.random.default_rng(0)) if record.example_kwargs else {}
    return x, {k: _ordinary_like(v, record.domain) if k == "q" else v for k, v in extra.items()}
