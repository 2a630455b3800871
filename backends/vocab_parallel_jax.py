"""Vocabulary-parallel softmax and cross-entropy in JAX: the logits sharded by class over W devices.

LLM training computes cross-entropy tensor-parallel (Megatron-LM's vocab_parallel_cross_entropy): each of W
devices holds a contiguous slice of k classes of every row, and the softmax is assembled with all-reduces.
Here the W devices are host CPU devices of XLA (XLA_FLAGS=--xla_force_host_platform_device_count), the
shards a `jax.shard_map` over a Mesh with the axis "tp". Per row, with shard j holding x_j (k classes):

    m = pmax_j max x_j            (the global max; no shard sees the whole row)
    e_j = exp(x_j - m),  s = psum_j sum e_j
    softmax_j = e_j / s,  log_softmax_j = x_j - m - log s,  logsumexp = m + log s
    cross-entropy (class index y, owned by the shard with offset <= y < offset + k):
        x_y = psum_j (x_j[y - offset_j] on the owner, 0 elsewhere),  nll = (m + log s) - x_y
        smooth = -psum_j sum_c w_c log p_c   (label smoothing: a psum of the weighted log-probabilities)
        l = (1 - eps) w_y nll + (eps / C) smooth        (0 log 0 = 0: a zero coefficient adds nothing)
    probability targets q: a_c = w_c ((1 - eps) q_c + eps / C),  l = -psum_j sum_c a_c log p_c

The vjps are written by hand, the Megatron way, never by differentiating the sharded forward:
    softmax:      g_j = p_j (v_j - c) / tau,    c = psum_j <p_j, v_j>     (p of x / tau)
    log_softmax:  g_j = (v_j - p_j S) / tau,    S = psum_j sum v_j
    logsumexp:    g_j = v p_j
    cross-entropy g_j = r (A p_j - a_j): the softmax minus the (weighted, smoothed) one-hot on each shard, times
                  the incoming gradient r (v_i for "none", v for "sum", v / D for "mean"); A = sum_c a_c.
`autodiff_vjp` gives the same by jax.vjp of the sharded forward, to compare them.

Semantics are the reference's (reference/ops.py, DESIGN.md), so no framework departure is declared: the
arguments are validated as the reference does (ValueError / TypeError naming the argument); the op's axis is
moved last; the temperature is divided first, x / tau rounded once in the compute dtype by NumPy before the
sharded program (inside it XLA contracts x / tau - m into an FMA and the max entry is no longer exactly 0;
a row where x / tau would overflow is shifted by its max first), and the gradient with respect to x / tau is
divided by tau after it. A row with NaN (counted by a psum: XLA's max on CPU skips NaN) gives NaN; a row whose
max is not finite NaN softmax and log-softmax, and logsumexp m itself (-inf, +inf); an ignored example
contributes nothing and has a zero gradient (0 r), and a mean over zero target weight is NaN, its gradient
too. float16 and bfloat16 are computed in float32 and the result rounded once into the input's dtype;
float32 and float64 in themselves (jax_enable_x64). XLA on CPU flushes subnormals to zero: the suite probes
for that itself. No jvp, no hvp, none of the optional ops (NotImplementedError).

Shapes (`Layout`): shard j holds classes [j k, (j + 1) k), k = ceil(C / W), at the start of its block of
`width` columns, the rest -inf logits (weight 0, probability target 0, cotangent 0); the rows are padded
too (marked not real: no loss, no weight). A padded class has exp = 0, adds 0 to every sum and psum, gets
probability 0 and its gradient is dropped, so padding changes no answer. `width` and the row count are
bucketed (1, 2, 3, 4, 6, 8, 12, 16, ...; at least 16 and 64 for short rows) so that one compiled program
serves many shapes: a program is compiled once per (kind, world size, bug, target kind, padded shapes,
dtype), one for the three row ops' values and one for their vjps, kept for the worker's life and on disk
(the jax backend's persistent compilation cache, ~/.cache/xentcheck/jax; XENTCHECK_JAX_CACHE=0 turns it off).

JAX fixes its device count when it initialises, and the process that runs `check` may already have JAX
with one device: so everything runs in ONE worker process per Python process (multiprocessing "spawn",
started on first use with XLA_FLAGS and JAX_PLATFORMS=cpu in its environment before it imports jax, with
DEVICES host devices, of which a backend uses the first W), inputs and results sent as NumPy arrays; the
worker is stopped at exit.

Planted bugs (`bug=`), for testing the tester: "no-max-allreduce" (each shard subtracts its own max),
"target-on-another-rank" (the global target index used as a shard-local one: every shard whose width
covers it adds its own logit there), "ignore-mask-one-rank" (only shard 0 zeroes the gradient of ignored
examples). The module-level factories are --backend specs, e.g.
`xentcheck check --backend xentcheck.backends.vocab_parallel_jax:vocab_parallel_3`.
"""
from __future__ import annotations

import atexit
import contextlib
import importlib.util
import math
import multiprocessing
import os
import threading

import numpy as np

from ..records import OPS
from .contract import Backend, BackendUnavailable
from ..reference.dtypes import round_to_dtype
from .vocab_parallel import LossLayout, RowLayout, spawning

AXIS = "tp"
DEVICES = 8  # host CPU devices of the worker; a backend's world size is at most this
BUGS = ("no-max-allreduce", "target-on-another-rank", "ignore-mask-one-rank")
ROW_OPS = ("softmax", "log_softmax", "logsumexp")


class JaxVocabParallel(Backend):
    """softmax, log_softmax, logsumexp, cross_entropy and their vjps, class-sharded over `world_size` devices."""
    flushes_subnormals = True  # XLA on CPU (the probe decides per dtype; this is its fallback)

    def __init__(self, world_size: int = 2, bug: str | None = None):
        if isinstance(world_size, bool) or not isinstance(world_size, int) or not 1 <= world_size <= DEVICES:
            raise ValueError(f"world_size: must be an int from 1 to {DEVICES}; got {world_size!r}")
        if bug is not None and bug not in BUGS:
            raise ValueError(f"bug: must be None or one of {', '.join(map(repr, BUGS))}; got {bug!r}")
        self.world_size, self.bug = world_size, bug
        self.name = f"jax-vocab-parallel-{world_size}" + (f"-{bug}" if bug else "")
        if importlib.util.find_spec("jax") is None:  # the worker imports it; say so here, not at the first call
            raise BackendUnavailable(f"{self.name}: jax is not installed (pip install 'xentcheck[jax]')")
        self.note = (f"jax.shard_map over {world_size} host CPU devices (class axis sharded, pmax/psum), "
                     "in a worker process; hand-written vjps")

    # -- the contract ------------------------------------------------------------------------------
    def evaluate(self, op, x, **kwargs):
        return self._run(op, "value", x, None, kwargs)

    def vjp(self, op, x, cotangent, **kwargs):
        return self._run(op, "vjp", x, cotangent, kwargs)

    def autodiff_vjp(self, op, x, cotangent, **kwargs):
        """The vjp by jax.vjp of the sharded forward (the max held constant): to compare with `vjp`."""
        return self._run(op, "autodiff", x, cotangent, kwargs)

    def _run(self, op, kind, x, cotangent, kwargs):
        if op not in OPS or op not in ROW_OPS + ("cross_entropy",):
            raise NotImplementedError(f"{self.name}: no {op} (it computes {', '.join(ROW_OPS)} and cross_entropy)")
        kwargs = {**OPS[op].defaults(), **kwargs}
        if op == "cross_entropy":
            z_loss, softcap = kwargs.pop("z_loss", 0.0), kwargs.pop("softcap", None)
            if z_loss or softcap is not None:
                raise NotImplementedError(f"{self.name}: no z_loss or softcap (Megatron's vocab-parallel "
                                          "cross-entropy has neither)")
            return self._cross_entropy(kind, x, cotangent, **kwargs)
        return self._rows(op, kind, x, cotangent, **kwargs)

    def _rows(self, op, kind, x, cotangent, **kwargs):
        """(..., n, ...) -> (rows, n) with the axis last, in the compute dtype; the result back in x's layout."""
        layout = RowLayout(op, x, cotangent, **kwargs)
        tau = layout.temperature
        out = _worker().call(("rows", op, kind, self.world_size, self.bug, _divided(layout.rows, tau),
                              layout.cotangent))
        if kind != "value" and tau != 1.0:
            out = out / out.dtype.type(tau)  # the chain rule's 1/tau, after the gradient with respect to x/tau
        return layout.restore(np.asarray(out), keeps_axis=not (op == "logsumexp" and kind == "value"))

    def _cross_entropy(self, kind, logits, cotangent, **kwargs):
        """(..., C) -> (N, C) in the compute dtype; class indices (N,) or probabilities (N, C)."""
        layout = LossLayout(logits, cotangent, **kwargs)
        args, (n, n_classes), compute = layout.args, layout.rows.shape, layout.rows.dtype
        w = np.ones(n_classes, compute) if layout.weight is None else layout.weight
        options = (np.asarray(args.label_smoothing, compute), np.asarray(args.ignore_index, np.int64),
                   np.asarray(n_classes, compute))
        v = mean = None
        if cotangent is not None:
            v = np.broadcast_to(layout.cotangent, (n,)).copy()
            mean = np.asarray(args.reduction == "mean")
        out = _worker().call(("cross_entropy", kind, self.world_size, self.bug, args.target_kind, args.reduction,
                              layout.rows, layout.target, w, options, v, mean))
        if kind != "value":
            return round_to_dtype(out.reshape(layout.shape), layout.dtype)
        losses, total, average = out
        value = {"none": losses, "sum": total, "mean": average}[args.reduction]
        return round_to_dtype(np.asarray(value).reshape(layout.out_shape), layout.dtype)

    def compiled_programs(self) -> int:
        """How many programs the worker has compiled so far (every backend in this process shares it)."""
        return _worker().call(("stats",))["compiled"]


def _divided(rows: np.ndarray, tau: float) -> np.ndarray:
    """x / tau, rounded in the compute dtype (NumPy: XLA would fuse the division into x / tau - m with an FMA,
    and the max entry would not be exactly 0). A row where a finite x / tau overflows is shifted by its max
    first, (x - max x) / tau, which softmax and log-softmax do not see."""
    if tau == 1.0:
        return rows
    with np.errstate(over="ignore", invalid="ignore"):
        out = rows / rows.dtype.type(tau)
        overflow = np.any(np.isinf(out) & np.isfinite(rows), axis=-1)
        if overflow.any():
            shifted = rows[overflow] - rows[overflow].max(axis=-1, keepdims=True)
            out[overflow] = shifted / rows.dtype.type(tau)
    return out


# -- the factories: --backend module:attr specs ------------------------------------------------------

def vocab_parallel_1():
    return JaxVocabParallel(1)


def vocab_parallel_2():
    return JaxVocabParallel(2)


def vocab_parallel_3():
    return JaxVocabParallel(3)


def vocab_parallel_no_max_allreduce():
    """Planted bug: each shard subtracts its own max (softmax, log-softmax, logsumexp, cross-entropy wrong)."""
    return JaxVocabParallel(2, bug="no-max-allreduce")


def vocab_parallel_target_on_another_rank():
    """Planted bug: the target's global index used on every shard without the shard's offset."""
    return JaxVocabParallel(3, bug="target-on-another-rank")


def vocab_parallel_ignore_mask_one_rank():
    """Planted bug: ignored examples' gradient zeroed on shard 0 only."""
    return JaxVocabParallel(2, bug="ignore-mask-one-rank")


# -- the worker process: started once, asked by every backend of this process ---------------------------

class _Worker:
    """One spawned process that runs JAX with DEVICES host CPU devices; `call` sends a request and returns
    its result (NumPy arrays), or raises RuntimeError with the worker's error. Calls are serialised."""

    def __init__(self):
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
        flags.append(f"--xla_force_host_platform_device_count={DEVICES}")
        # the child's environment, read before jax loads; started as vocab_parallel starts its ranks (no __main__
        # re-run in the child; from a daemonic process too: `compare` runs each backend in one)
        with _environment(XLA_FLAGS=" ".join(flags), JAX_PLATFORMS="cpu"), spawning():
            self.process = context.Process(target=_serve, args=(child,), name="xentcheck-vocab-parallel-jax",
                                           daemon=True)
            self.process.start()
        child.close()
        self.lock, self.owner = threading.Lock(), os.getpid()

    def call(self, request):
        with self.lock:
            try:
                self.conn.send(request)
                status, payload = self.conn.recv()
            except (EOFError, OSError) as error:
                raise RuntimeError(f"the JAX worker process stopped ({type(error).__name__}: {error}; "
                                   f"exit code {self.process.exitcode})") from None
        if status != "ok":
            raise RuntimeError(f"the JAX worker failed: {payload}")
        return payload

    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.send(None)
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        self.conn.close()


_WORKER: dict = {}
_WORKER_LOCK = threading.Lock()


def _worker() -> _Worker:
    """The process's worker, started on first use (and again if it has died); stopped at exit."""
    with _WORKER_LOCK:
        worker = _WORKER.get("worker")
        if worker is None or worker.owner != os.getpid() or not worker.alive():  # a forked child starts its own
            if worker is None:
                atexit.register(_stop_worker)
            worker = _WORKER["worker"] = _Worker()
        return worker


def _stop_worker() -> None:
    worker = _WORKER.pop("worker", None)
    if worker is not None and worker.owner == os.getpid():
        worker.stop()


@contextlib.contextmanager
def _environment(**values):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _serve(conn) -> None:
    """The worker's loop: a request in, ("ok", result) or ("error", message) out; None stops it."""
    import traceback

    import jax

    from .jax_backend import persistent_compile_cache

    jax.config.update("jax_enable_x64", True)
    persistent_compile_cache(jax)  # compiled programs kept on disk between runs, as the jax backend does
    programs = _Programs(jax)
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        try:
            reply = ("ok", programs.run(*request))
        except Exception as error:  # noqa: BLE001 - reported to the caller, the worker goes on
            reply = ("error", f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=4)}")
        conn.send(reply)


# -- inside the worker: padding, compiling, the sharded math -------------------------------------------

def bucket(n: int) -> int:
    """The padded size of n: 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (the next of 2**j and 3 * 2**(j-1))."""
    if n <= 2:
        return max(n, 1)
    power = 2 ** math.ceil(math.log2(n))
    return 3 * power // 4 if n <= 3 * power // 4 else power


class Layout:
    """Where a (rows, n) input goes on `world` shards: shard j holds classes [j k, (j + 1) k), k = ceil(n / W),
    in the first k of its width columns (width = the bucket of k, at least 16), the rest padding (-inf logits,
    weight 0, target probability 0, cotangent 0); the last shard may hold fewer than k classes. The rows are
    padded to a bucket, at least 64 while the padded row is at most 1024 long: every small input of the
    property suite shares one program per op and kind. `pad` and `unpad` move arrays in and out of it."""

    def __init__(self, rows: int, n: int, world: int):
        self.rows, self.n, self.world = rows, n, world
        self.k = math.ceil(n / world)
        self.width = bucket(max(self.k, 16))
        self.padded_rows = bucket(max(rows, 64) if world * self.width <= 1024 else rows)

    def pad(self, array: np.ndarray, value, has_rows: bool = True) -> np.ndarray:
        """(rows, n) or (n,) (has_rows False) -> (padded rows, W width) or (W width,); padding = value."""
        lead = (self.rows,) if has_rows else ()
        classes = np.full(lead + (self.world * self.k,), value, array.dtype)
        classes[..., :self.n] = array
        blocks = np.full(lead + (self.world, self.width), value, array.dtype)
        blocks[..., :self.k] = classes.reshape(lead + (self.world, self.k))
        if not has_rows:
            return blocks.reshape(-1)
        out = np.full((self.padded_rows, self.world * self.width), value, array.dtype)
        out[:self.rows] = blocks.reshape(self.rows, self.world * self.width)
        return out

    def pad_rows(self, array: np.ndarray, value) -> np.ndarray:
        """(rows,) -> (padded rows,)."""
        out = np.full((self.padded_rows,), value, array.dtype)
        out[:self.rows] = array
        return out

    def unpad(self, array: np.ndarray) -> np.ndarray:
        blocks = array[:self.rows].reshape(self.rows, self.world, self.width)[..., :self.k]
        return blocks.reshape(self.rows, self.world * self.k)[:, :self.n]


class _Programs:
    """The worker's state: a Mesh per world size, the compiled programs by (what, padded shapes and dtypes)."""

    def __init__(self, jax):
        self.jax = jax
        self.meshes, self.compiled = {}, {}

    def run(self, what, *args):
        if what == "stats":
            return {"compiled": len(self.compiled), "devices": len(self.jax.devices())}
        return getattr(self, what)(*args)

    def _mesh(self, world):
        if world not in self.meshes:
            self.meshes[world] = self.jax.sharding.Mesh(np.array(self.jax.devices()[:world]), (AXIS,))
        return self.meshes[world]

    def _call(self, key, build, args):
        """build() -> the function of args; compiled once per key and argument shapes and dtypes."""
        signature = key + tuple((a.shape, a.dtype.str) for a in args)
        if signature not in self.compiled:
            self.compiled[signature] = self.jax.jit(build()).lower(*args).compile()
        out = self.compiled[signature](*args)
        return tuple(map(np.asarray, out)) if isinstance(out, tuple) else np.asarray(out)

    def _shard_map(self, f, world, bug, in_specs, out_specs):
        # a planted bug may leave a value that should be replicated differing between shards: unchecked there
        return self.jax.shard_map(f, mesh=self._mesh(world), in_specs=in_specs, out_specs=out_specs,
                                  check_vma=bug is None)

    def rows(self, op, kind, world, bug, x, v):
        """x (rows, n) -> the op's value (rows, n), or (rows,) for logsumexp, or its vjp (rows, n). One program
        computes the three ops' values, one their three vjps (the others' cotangents 0): each is a few
        operations on the same row statistics, and one compilation serves all three."""
        P = self.jax.sharding.PartitionSpec
        layout, pick = Layout(*x.shape, world), ROW_OPS.index(op)
        args, specs = [layout.pad(x, -np.inf)], [P(None, AXIS)]
        if kind == "vjp":
            full = v if v.ndim == 2 else np.zeros(x.shape, x.dtype)
            per_row = v if v.ndim == 1 else np.zeros(x.shape[:1], x.dtype)
            args, specs = args + [layout.pad(full, 0), layout.pad_rows(per_row, 0)], specs + [P(None, AXIS), P()]
        elif kind == "autodiff":
            args.append(layout.pad(v, 0) if v.ndim == 2 else layout.pad_rows(v, 0))
            specs.append(P(None, AXIS) if v.ndim == 2 else P())

        def build():
            forward = self._shard_map(lambda y: _row_values(bug, y), world, bug, tuple(specs[:1]),
                                      (P(None, AXIS), P(None, AXIS), P()))
            if kind == "value":
                return forward
            if kind == "autodiff":
                return lambda y, u: _vjp_of(lambda z: forward(z)[pick], y, u)
            return self._shard_map(lambda *a: _row_vjps(bug, *a), world, bug, tuple(specs), (P(None, AXIS),) * 3)

        out = self._call(("rows", kind, world, bug) + ((op,) if kind == "autodiff" else ()), build, args)
        out = out if kind == "autodiff" else out[pick]
        return out[:layout.rows] if op == "logsumexp" and kind == "value" else layout.unpad(out)

    def cross_entropy(self, kind, world, bug, target_kind, reduction, x, target, weight, options, v, mean):
        """x (N, C), target (N,) or (N, C), weight (C,) -> (losses, sum, mean), or the vjp (N, C)."""
        P = self.jax.sharding.PartitionSpec
        layout = Layout(*x.shape, world)
        real = layout.pad_rows(np.ones(layout.rows, bool), False)  # the padded examples count for nothing
        args = [layout.pad(x, -np.inf), layout.pad(target, 0) if target.ndim == 2 else layout.pad_rows(target, 0),
                real, layout.pad(weight, 0, has_rows=False), np.asarray(layout.k), *options]
        specs = [P(None, AXIS), P(None, AXIS) if target.ndim == 2 else P(), P(), P(AXIS), P(), P(), P(), P()]
        if kind != "value":
            args += [layout.pad_rows(v, 0), mean]
            specs += [P(), P()]
        key = ("cross_entropy", kind, world, bug, target_kind) + ((reduction,) if kind == "autodiff" else ())

        def build():
            forward = self._shard_map(lambda *a: _ce_value(target_kind, bug, *a), world, bug, tuple(specs[:8]),
                                      (P(), P(), P()))
            if kind == "value":
                return forward
            if kind == "autodiff":
                pick = ("none", "sum", "mean").index(reduction)
                return lambda y, *a: _vjp_of(lambda z: forward(z, *a[:-2])[pick], y,
                                             a[-2] if reduction == "none" else a[-2][0])
            return self._shard_map(lambda *a: _ce_vjp(target_kind, bug, *a), world, bug, tuple(specs), P(None, AXIS))

        out = self._call(key, build, args)
        if kind == "value":
            losses, total, average = out
            return losses[:layout.rows], total, average
        return layout.unpad(out)


# The shard bodies below run under shard_map: x is this shard's (rows, k) block of the padded logits.

def _row_stats(x, bug):
    """(m, e, s, regular, has_nan) per row: m the pmax of the shards' maxima (held constant under
    differentiation: softmax does not depend on it), e = exp(x - m) on this shard, s = psum of the shards'
    sums of e, has_nan from a psum of the shards' NaN counts, regular = m finite and no NaN."""
    from jax import lax, numpy as jnp

    local_max = lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    m = local_max if bug == "no-max-allreduce" else lax.pmax(local_max, AXIS)
    e = jnp.exp(x - m)
    s, nans = lax.psum((jnp.sum(e, axis=-1, keepdims=True), jnp.sum(jnp.isnan(x), axis=-1, keepdims=True)), AXIS)
    has_nan = nans > 0
    return m, e, s, jnp.isfinite(m) & ~has_nan, has_nan


def _row_values(bug, x):
    """(softmax e/s, log-softmax (x - m) - log s, logsumexp m + log s one per row) of x (already x / tau)."""
    from jax import numpy as jnp

    m, e, s, regular, has_nan = _row_stats(x, bug)
    return (jnp.where(regular, e / s, jnp.nan), jnp.where(regular, (x - m) - jnp.log(s), jnp.nan),
            jnp.where(has_nan, jnp.nan, jnp.where(jnp.isinf(m), m, m + jnp.log(s)))[:, 0])


def _row_vjps(bug, x, v, u):
    """With respect to x (already x / tau; the caller divides by tau), along v (rows, k) for softmax and
    log-softmax and u (rows,) for logsumexp: softmax p (v - c), c = psum <p, v>; log-softmax v - p S,
    S = psum sum v; logsumexp u p. p is NaN throughout a row that is not regular (as the reference's)."""
    from jax import lax, numpy as jnp

    _, e, s, regular, _ = _row_stats(x, bug)
    p = jnp.where(regular, e / s, jnp.nan)
    c, total = lax.psum((jnp.sum(p * v, axis=-1, keepdims=True), jnp.sum(v, axis=-1, keepdims=True)), AXIS)
    return p * (v - c), v - p * total, u[:, None] * p


def _vjp_of(f, x, v):
    """jax.vjp of f (a sharded forward) at x along v: autodiff through shard_map, pmax and psum."""
    import jax

    value, pullback = jax.vjp(f, x)
    return pullback(v.astype(value.dtype))[0]


def _ce_terms(target_kind, bug, x, target, real, weight, k, eps, ignore_index, n_classes):
    """Per example: the losses (0 where ignored or padded), the target weight w_y (index targets), whether it
    counts (valid), the coefficient sum A, this shard's coefficients a, and p; and D, the mean's denominator."""
    from jax import lax, numpy as jnp

    shard = lax.axis_index(AXIS)
    m, e, s, regular, _ = _row_stats(x, bug)
    lse = jnp.where(regular, m + jnp.log(s), jnp.nan)
    p = jnp.where(regular, e / s, jnp.nan)
    spread = eps / n_classes
    if target_kind == "probability":
        valid = real
        a = weight * ((1 - eps) * target + spread)  # 0 at the padded classes (weight 0)
        a_sum, losses = lax.psum((jnp.sum(a, axis=-1), jnp.sum(jnp.where(a > 0, a * (lse - x), 0), axis=-1)), AXIS)
        denominator = jnp.sum(valid).astype(x.dtype)
    else:
        valid = real & (target != ignore_index)
        safe = jnp.where(valid, target, 0)  # an ignored example looks up class 0; the mask drops it below
        local = safe if bug == "target-on-another-rank" else safe - shard * k
        onehot = (jnp.arange(x.shape[-1]) == local[:, None]) & ((local >= 0) & (local < k))[:, None]
        x_target, w_target, w_total, smooth = lax.psum(
            (jnp.sum(jnp.where(onehot, x, 0), axis=-1), jnp.sum(jnp.where(onehot, weight, 0), axis=-1),
             jnp.sum(weight), -jnp.sum(jnp.where(weight > 0, weight * (x - lse), 0), axis=-1)), AXIS)
        nll_coef = (1 - eps) * w_target
        losses = (jnp.where(nll_coef > 0, nll_coef * (lse[:, 0] - x_target), 0)
                  + jnp.where(spread > 0, spread * smooth, 0))
        a_sum = nll_coef + spread * w_total
        a = jnp.where(onehot, nll_coef[:, None], 0) + spread * weight
        denominator = jnp.sum(jnp.where(valid, w_target, 0))
    losses = jnp.where(valid, losses, 0)
    return losses, valid, a_sum, a, p, denominator, shard


def _ce_value(target_kind, bug, x, target, real, weight, k, eps, ignore_index, n_classes):
    """(per-example losses, their sum, their mean: the sum over D = sum of the target weights, NaN when D = 0)."""
    from jax import numpy as jnp

    losses, *_, denominator, _ = _ce_terms(target_kind, bug, x, target, real, weight, k, eps, ignore_index,
                                           n_classes)
    total = jnp.sum(losses)
    return losses, total, total / jnp.where(denominator > 0, denominator, jnp.nan)


def _ce_vjp(target_kind, bug, x, target, real, weight, k, eps, ignore_index, n_classes, v, mean):
    """r (A p - a) on each shard, r = v (v / D for the mean, NaN when D = 0); exactly 0 r for an example with
    no coefficient (ignored, padded, or of zero weight: 0 log 0 = 0)."""
    from jax import numpy as jnp

    _, valid, a_sum, a, p, denominator, shard = _ce_terms(target_kind, bug, x, target, real, weight, k, eps,
                                                           ignore_index, n_classes)
    r = jnp.where(mean, v / jnp.where(denominator > 0, denominator, jnp.nan), v)[:, None]
    g = r * (a_sum[:, None] * p - a)
    keep = valid & (a_sum > 0)
    if bug == "ignore-mask-one-rank":
        keep = jnp.where(shard == 0, keep, real & (a_sum > 0))
    return jnp.where(keep[:, None], g, 0 * r)
