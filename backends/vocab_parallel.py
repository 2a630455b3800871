"""Vocabulary-parallel softmax and cross-entropy on torch.distributed, the way tensor-parallel LLM training
computes them (Megatron-LM's vocab_parallel_cross_entropy), as a backend that `xentcheck check` and `compare`
verify like any other.

W worker processes (multiprocessing "spawn"), each a rank of one process group (gloo on loopback; nccl for
device="cuda"), hold the classes [lo_r, hi_r) of the class axis (np.array_split's boundaries: V need not divide
by W, and a rank holds no class where V < W). Each call sends the whole input to every rank; each rank slices
its shard and computes with real collectives, on rows x (the op's axis moved last):

    m = all_reduce_MAX(max_shard x)            (a NaN anywhere in the row makes m NaN: a flag rides along)
    z = (x - m) / tau,  e = exp(z),  S = all_reduce_SUM(sum_shard e)
    softmax = e / S,  log_softmax = z - log S,  logsumexp = m + log S

and where m is not finite (an all -inf row, a +inf, a NaN) softmax and log-softmax are NaN and logsumexp is m.
Cross-entropy with class indices y (classes along the last axis, a = (1 - eps) w_y onehot(y) + (eps/C) w):

    z_y  = all_reduce_SUM(z[y - lo_r] on the rank that owns y, 0 on the others)
    l    = (1 - eps) w_y (log S - z_y) - (eps/C) all_reduce_SUM(sum_shard w_c (z_c - log S))

each term only where its coefficient is > 0 (0 log 0 = 0), 0 for an ignored example; with probability targets
q, a = w ((1 - eps) q + eps/C) and l = -all_reduce_SUM(sum_shard a_c (z_c - log S)). The reductions are
torch's: "none", "sum", "mean" = sum / D with D = sum of w_y over the counted examples (the number of examples
for probability targets), NaN where D = 0.

The vjps are written by hand, each rank forming its shard of the gradient (then gathered on rank 0):
    softmax:      p (v - all_reduce_SUM(sum_shard p v)) / tau
    log_softmax:  (v - p all_reduce_SUM(sum_shard v)) / tau
    logsumexp:    v p
    cross_entropy: r (A p - a), A = sum_c a_c, r the row's scale (v, or v / D for "mean"); exactly 0 (times
                  r) where A = 0, e.g. an ignored example.
float16 and bfloat16 are computed in float32 and rounded once; float32 and float64 in themselves. The
temperature acts on x/tau, formed as (x - m)/tau (m/tau is the max of x/tau) so that a small tau cannot
overflow, and the vjps divide by tau (the chain rule). The edges follow the reference's semantics (none of
torch's departures), so no `framework` is declared. The optional ops (the loss family, the LM head) raise
NotImplementedError ("unsupported"), as the template's adapter does. The ranks of one world size and device
are shared by every such backend in a process (`check` builds its own backend objects). device="cuda" (nccl,
one GPU per rank) is written but has not been run.

Planted bugs (`bug=`, or the classes at the bottom, 3 ranks by default), each a mistake made in real
tensor-parallel code:
  "no-max-allreduce"        each rank subtracts its own local max (the MAX all-reduce is missing);
  "target-on-another-rank"  a rank takes the target logit at the global index y, unshifted by lo_r, wherever
                            y < its shard's width (it bounds-checks against its own width, not [lo_r, hi_r));
  "ignore-mask-one-rank"    only rank 0 masks the ignored examples; the others count them (as class 0).

Usable as a spec: `xentcheck check --backend xentcheck.backends.vocab_parallel:vocab_parallel_2`.
"""
from __future__ import annotations

import contextlib
import datetime
import importlib.util
import math
import multiprocessing
import os
import socket
import sys
import threading
import time
import types
import weakref
from multiprocessing.connection import wait

import numpy as np

from ..records import OPS as RECORDS
from ..reference import validation
from ..reference.dtypes import round_to_dtype
from .contract import Backend, BackendUnavailable

BUGS = ("no-max-allreduce", "target-on-another-rank", "ignore-mask-one-rank")
ROW_OPS = ("softmax", "log_softmax", "logsumexp")
OPS = ROW_OPS + ("cross_entropy",)
CALL_SECONDS = 600  # a call unanswered this long (a rank stuck in a collective) stops the workers


def shard_bounds(n_classes: int, world_size: int) -> list[tuple[int, int]]:
    """[(lo_r, hi_r)] for r < world_size: np.array_split's boundaries (the first V mod W shards hold one more)."""
    base, extra = divmod(n_classes, world_size)
    edges = np.cumsum([0] + [base + (r < extra) for r in range(world_size)])
    return [(int(edges[r]), int(edges[r + 1])) for r in range(world_size)]


class TorchVocabParallel(Backend):
    """softmax, log_softmax, logsumexp, cross_entropy and their vjps, vocabulary-parallel over `world_size`
    ranks (torch.distributed); `bug`: one of BUGS, planted on purpose, or None."""

    def __init__(self, world_size: int = 2, bug: str | None = None, device: str = "cpu"):
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size: must be an int >= 1; got {world_size!r}")
        if bug is not None and bug not in BUGS:
            raise ValueError(f"bug: must be None or one of {', '.join(map(repr, BUGS))}; got {bug!r}")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device: must be 'cpu' or 'cuda'; got {device!r}")
        if importlib.util.find_spec("torch") is None:
            raise BackendUnavailable("torch-vocab-parallel: torch is not installed (pip install 'xentcheck[torch]')")
        if device == "cuda":
            import torch

            if torch.cuda.device_count() < world_size:
                raise BackendUnavailable(f"torch-vocab-parallel-{world_size}-cuda: needs {world_size} CUDA devices "
                                         f"(nccl takes one per rank); torch sees {torch.cuda.device_count()}")
        self.world_size, self.bug, self.device = world_size, bug, device
        self.name = (f"torch-vocab-parallel-{world_size}" + ("-cuda" if device == "cuda" else "")
                     + (f"-bug-{bug}" if bug else ""))
        self.note = (f"{world_size} spawned ranks, torch.distributed {'nccl' if device == 'cuda' else 'gloo'} on "
                     "loopback; the whole input is sent to every rank on each call")
        self._pool = None

    # -- the contract ----------------------------------------------------------------------------
    def evaluate(self, op, x, **kwargs):
        return self._call(op, "value", x, None, kwargs)

    def vjp(self, op, x, cotangent, **kwargs):
        return self._call(op, "vjp", x, cotangent, kwargs)

    def _call(self, op, kind, x, cotangent, kwargs):
        if op not in OPS:
            raise NotImplementedError(f"{self.name}: computes {', '.join(OPS)} (and their vjps) only; not {op}")
        unknown = sorted(set(kwargs) - set(RECORDS[op].parameters))
        if unknown:
            raise TypeError(f"{op}: unexpected keyword argument(s) {', '.join(unknown)}; "
                            f"allowed: {', '.join(RECORDS[op].parameters)}")
        kwargs = dict(kwargs)
        if kwargs.pop("z_loss", 0.0) or kwargs.pop("softcap", None) is not None:
            raise NotImplementedError(f"{self.name}: no z_loss or softcap (Megatron's vocab-parallel cross-entropy "
                                      "has neither)")
        prepare = _rows_request if op in ROW_OPS else _cross_entropy_request
        request, finish = prepare(op, kind, x, cotangent, kwargs)
        request.update(op=op, kind=kind, bug=self.bug)
        return finish(self._workers().run(request))

    def _workers(self) -> "_Workers":
        """The ranks: started on first use, shared with every backend of this world size and device in the
        process, stopped when the last of them is garbage-collected (or at exit)."""
        if self._pool is None or self._pool.broken:
            with _POOLS_LOCK:
                key = (self.world_size, self.device)
                pool = _POOLS.get(key)
                if pool is None or pool.broken:
                    pool = _POOLS[key] = _Workers(self.world_size, self.device)
            self._pool = pool
        return self._pool


# --------------------------------------------------------------------------------------------
# Parent side: validate (the ranks never see a bad argument, so none can fail alone and leave the others
# waiting in a collective), lay the input out as rows (N, V) in the compute dtype, and put the answer back.

def compute_dtype(dtype: np.dtype) -> np.dtype:
    """float32 for float16, bfloat16 and float32; float64 for float64."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


class RowLayout:
    """A row op's checked input as rows (N, n) with its axis last, in the compute dtype; the cotangent as
    (N, n), or (N,) for logsumexp; `restore` puts a result back in x's layout and dtype."""

    def __init__(self, op, x, cotangent, axis=-1, temperature=1.0):
        array, self.axis = validation.row_array(x, axis)
        self.temperature = validation.check_temperature(temperature)
        self.dtype, compute = array.dtype, compute_dtype(array.dtype)
        moved = np.moveaxis(array, self.axis, -1)
        self.moved_shape = moved.shape
        self.rows = moved.reshape(-1, moved.shape[-1]).astype(compute)
        self.cotangent = None
        if cotangent is not None:
            v = validation.check_shape(cotangent, "cotangent", RECORDS[op].output_shape(array, {"axis": axis}),
                                       "the op's output")
            v = v.reshape(-1) if op == "logsumexp" else np.moveaxis(v, self.axis, -1).reshape(self.rows.shape)
            self.cotangent = v.astype(compute)

    def restore(self, out, keeps_axis=True):
        if not keeps_axis:
            return round_to_dtype(out.reshape(self.moved_shape[:-1]), self.dtype)
        return round_to_dtype(np.moveaxis(out.reshape(self.moved_shape), -1, self.axis), self.dtype)


class LossLayout:
    """Cross-entropy's checked arguments (`args`) with the logits as rows (N, C) in the compute dtype, the
    target flattened (indices (N,), probabilities (N, C) in the compute dtype), the cotangent flattened
    (one entry, or N for reduction "none")."""

    def __init__(self, logits, cotangent, target=None, reduction="mean", weight=None, ignore_index=-100,
                 label_smoothing=0.0):
        if target is None:
            raise TypeError("cross_entropy: missing the keyword argument 'target'")
        self.args = args = validation.cross_entropy_arguments(logits, target, reduction, weight, ignore_index,
                                                              label_smoothing)
        self.shape, self.dtype, compute = args.logits.shape, args.logits.dtype, compute_dtype(args.logits.dtype)
        self.rows = args.logits.reshape(-1, self.shape[-1]).astype(compute)
        self.target = (args.target.reshape(-1) if args.target_kind == "index"
                       else args.target.reshape(self.rows.shape).astype(compute))
        self.weight = None if args.weight is None else args.weight.astype(compute)
        self.cotangent = None if cotangent is None else validation.loss_cotangent(
            cotangent, self.shape[:-1], args.reduction).astype(compute)
        self.out_shape = self.shape[:-1] if args.reduction == "none" else ()


def _rows_request(op, kind, x, cotangent, kwargs):
    layout = RowLayout(op, x, cotangent if kind == "vjp" else None, **kwargs)
    v = layout.cotangent
    request = {"x": layout.rows, "temperature": layout.temperature,
               "cotangent": v[:, None] if op == "logsumexp" and v is not None else v}
    return request, lambda out: layout.restore(out, keeps_axis=not (kind == "value" and op == "logsumexp"))


def _cross_entropy_request(op, kind, logits, cotangent, kwargs):
    layout = LossLayout(logits, cotangent if kind == "vjp" else None, **kwargs)
    args = layout.args
    request = {"x": layout.rows, "target_kind": args.target_kind, "ignore_index": args.ignore_index,
               "smoothing": args.label_smoothing, "reduction": args.reduction, "cotangent": layout.cotangent,
               "target": layout.target, "weight": layout.weight}
    return request, lambda out: round_to_dtype(out.reshape(layout.shape if kind == "vjp" else layout.out_shape),
                                               layout.dtype)


# --------------------------------------------------------------------------------------------
# The worker processes.

_POOLS: "weakref.WeakValueDictionary[tuple, _Workers]" = weakref.WeakValueDictionary()
_POOLS_LOCK = threading.Lock()


class _Workers:
    """W spawned processes, rank r of one process group each, answering requests until told to stop.

    run() sends the request to every rank and waits for all of them; rank 0's answer is returned. A rank that
    fails, dies or does not answer in CALL_SECONDS stops them all (`broken`) and raises RuntimeError; the next
    call starts new ones."""

    def __init__(self, world_size: int, device: str):
        context = multiprocessing.get_context("spawn")
        port = _free_port()
        self.connections, self.processes, self.broken = [], [], False
        self.lock = threading.Lock()
        for rank in range(world_size):
            ours, theirs = context.Pipe()
            process = context.Process(target=_serve, args=(rank, world_size, port, device, _loopback(), theirs),
                                      name=f"xentcheck-vocab-parallel-rank{rank}", daemon=True)
            with spawning():
                process.start()
            theirs.close()
            self.connections.append(ours)
            self.processes.append(process)
        # at garbage collection or at exit, whichever comes first (it must not refer to self)
        self._stop = weakref.finalize(self, _stop, self.processes, self.connections)

    def run(self, request: dict):
        with self.lock:
            if self.broken:
                raise RuntimeError("torch-vocab-parallel: the worker processes were stopped after an earlier failure")
            try:
                for connection in self.connections:
                    connection.send(request)
                answer = self._answer()
            except BaseException:
                self.broken = True
                self._stop()
                raise
        return answer

    def _answer(self):
        """Rank 0's answer, once every rank has answered; RuntimeError as soon as one fails or exits (the
        others may be waiting for it in a collective), or when they take longer than CALL_SECONDS."""
        pending, answers = dict(enumerate(self.connections)), {}
        deadline = time.monotonic() + CALL_SECONDS
        while pending:
            sentinels = [self.processes[rank].sentinel for rank in pending]
            if not wait([*pending.values(), *sentinels], timeout=max(deadline - time.monotonic(), 0)):
                raise RuntimeError(f"torch-vocab-parallel: rank(s) {', '.join(map(str, pending))} did not answer "
                                   f"in {CALL_SECONDS} s")
            for rank, connection in list(pending.items()):
                if connection.poll():
                    status, answers[rank] = connection.recv()
                    if status != "ok":
                        raise RuntimeError(f"torch-vocab-parallel: {answers[rank]}")
                    del pending[rank]
                elif not self.processes[rank].is_alive():
                    raise RuntimeError(f"torch-vocab-parallel: rank {rank} exited (code "
                                       f"{self.processes[rank].exitcode})")
        return answers[0]


@contextlib.contextmanager
def spawning():
    """Around starting a rank (or vocab_parallel_jax's worker). It runs this package's code only, so the
    caller's __main__ is hidden: the child neither re-runs the caller's script (one without an `if __name__ ==
    "__main__":` guard would start ranks of its own) nor imports its main module (`python -m xentcheck.cli`:
    seconds for nothing). And a daemonic process may start ranks (`xentcheck compare` runs each backend in one):
    multiprocessing refuses a daemon children lest they outlive it, but a rank leaves when its pipe to this
    process closes."""
    main, me = sys.modules.get("__main__"), multiprocessing.current_process()
    daemon = me.daemon
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        if daemon:
            me.daemon = False
        yield
    finally:
        sys.modules["__main__"] = main
        if daemon:
            me.daemon = True


def _stop(processes, connections) -> None:
    """Ask every rank to leave the group and exit; terminate the ones that do not within a few seconds."""
    for connection in connections:
        try:
            connection.send(None)
        except (OSError, ValueError):
            pass
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)
    for connection in connections:
        connection.close()


def _free_port() -> int:
    """A TCP port free on loopback now, for rank 0's rendezvous store."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback() -> str | None:
    """The loopback interface's name (gloo's GLOO_SOCKET_IFNAME), where the system lists one."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except (OSError, AttributeError):
        return None
    return next((name for name in names if name.startswith("lo")), None)


def _serve(rank, world_size, port, device, loopback, connection) -> None:
    """A worker process: join the group as `rank`, then answer each request (None: leave) with
    ("ok", rank 0's result or None) or ("error", message)."""
    try:
        if device == "cpu" and loopback and "GLOO_SOCKET_IFNAME" not in os.environ:
            os.environ["GLOO_SOCKET_IFNAME"] = loopback
        import torch
        import torch.distributed as dist

        torch.set_num_threads(1)  # W ranks share the machine's cores
        if device == "cuda":
            torch.cuda.set_device(rank)
        dist.init_process_group("nccl" if device == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                                rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=CALL_SECONDS))
    except BaseException as error:  # noqa: BLE001 - reported to the parent as the answer to its first request
        connection.send(("error", f"rank {rank} could not join the process group: {type(error).__name__}: {error}"))
        return
    try:
        while (request := connection.recv()) is not None:
            try:
                out = _Rank(torch, dist, rank, world_size, device, request).answer()
                connection.send(("ok", out))
            except Exception as error:  # noqa: BLE001 - the parent stops every rank and raises
                connection.send(("error", f"rank {rank}: {type(error).__name__}: {error}"))
    except (EOFError, KeyboardInterrupt):  # the parent is gone, or Ctrl-C reached the whole process group
        pass
    finally:
        dist.destroy_process_group()


class _Rank:
    """One rank's part of one request: its shard x[:, lo:hi] of the rows, in torch."""

    def __init__(self, torch, dist, rank, world_size, device, request):
        self.torch, self.dist, self.rank, self.request = torch, dist, rank, request
        self.device = torch.device(f"cuda:{rank}" if device == "cuda" else "cpu")
        self.bug = request["bug"]
        rows = self._tensor(request["x"])
        self.n_rows, self.n_classes = rows.shape
        self.bounds = shard_bounds(self.n_classes, world_size)
        self.lo, self.hi = self.bounds[rank]
        self.x = rows[:, self.lo:self.hi]

    def _tensor(self, array):
        return self.torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def answer(self):
        """Rank 0: the result as a NumPy array (the whole gradient, gathered); the other ranks: None."""
        op, kind = self.request["op"], self.request["kind"]
        if op == "cross_entropy":
            out = self.cross_entropy() if kind == "value" else self.cross_entropy_vjp()
        else:
            out = getattr(self, op if kind == "value" else f"{op}_vjp")()
        if out.ndim == 2:  # a shard of a result shaped like x
            out = self.gather(out)
        return None if self.rank != 0 else out.cpu().numpy()

    # -- collectives -----------------------------------------------------------------------------
    def all_reduce(self, tensor, op="sum"):
        tensor = tensor.contiguous()
        self.dist.all_reduce(tensor, op=self.dist.ReduceOp.SUM if op == "sum" else self.dist.ReduceOp.MAX)
        return tensor

    def gather(self, shard):
        """The shards (N, hi_r - lo_r) of every rank side by side on rank 0 (padded to one width for the
        collective); the other ranks get their own shard back."""
        width = max(hi - lo for lo, hi in self.bounds)
        padded = shard.new_zeros((self.n_rows, width))
        padded[:, :shard.shape[1]] = shard
        parts = [padded.new_empty(padded.shape) for _ in self.bounds] if self.rank == 0 else None
        self.dist.gather(padded, parts, dst=0)
        if self.rank != 0:
            return shard
        return self.torch.cat([part[:, :hi - lo] for part, (lo, hi) in zip(parts, self.bounds)], dim=1)

    # -- the row statistics ---------------------------------------------------------------------------
    def statistics(self, tau=1.0):
        """(m, finite, z, e, S): the global row max m (NaN where the row holds a NaN: gloo's MAX need not
        propagate NaN, so a flag rides along in the same all-reduce), whether m is finite, this shard's
        z = (x - m)/tau and e = exp(z), and S = the all-reduced sum of e. Rows whose m is not finite are
        shifted by 0 instead: their results are set from m alone."""
        torch, x = self.torch, self.x
        has_nan = x.isnan().any(dim=-1)
        local = x.amax(dim=-1) if x.shape[1] else x.new_full((self.n_rows,), -math.inf)
        both = torch.stack([torch.where(has_nan, -math.inf, local), has_nan.to(x.dtype)])
        if self.bug != "no-max-allreduce":
            both = self.all_reduce(both, "max")
        m = torch.where(both[1] > 0, math.nan, both[0])
        finite = m.isfinite()
        z = (x - torch.where(finite, m, 0.0)[:, None]) / tau
        e = z.exp()
        return m, finite, z, e, self.all_reduce(e.sum(dim=-1))

    def probabilities(self, tau=1.0):
        """(p, z, log S) of this shard, p = e / S; NaN in the rows whose max is not finite."""
        m, finite, z, e, s = self.statistics(tau)
        irregular = finite.logical_not()[:, None]
        return (e / s[:, None]).masked_fill(irregular, math.nan), z, self.torch.where(finite, s.log(), math.nan)

    def cotangent(self):
        return self._tensor(self.request["cotangent"])

    # -- the row ops -------------------------------------------------------------------------------------
    def softmax(self):
        return self.probabilities(self.request["temperature"])[0]

    def log_softmax(self):
        _, z, log_s = self.probabilities(self.request["temperature"])
        return z - log_s[:, None]

    def logsumexp(self):
        """m + log S; where m is not finite, m itself (+-inf, NaN)."""
        m, finite, _, _, s = self.statistics()
        return self.torch.where(finite, m + s.log(), m)

    def softmax_vjp(self):
        tau, v = self.request["temperature"], self.cotangent()[:, self.lo:self.hi]
        p = self.probabilities(tau)[0]
        return p * (v - self.all_reduce((p * v).sum(dim=-1))[:, None]) / tau

    def log_softmax_vjp(self):
        tau, v = self.request["temperature"], self.cotangent()[:, self.lo:self.hi]
        p = self.probabilities(tau)[0]
        return (v - p * self.all_reduce(v.sum(dim=-1))[:, None]) / tau

    def logsumexp_vjp(self):
        return self.cotangent() * self.probabilities()[0]  # v is (N, 1): one entry per row

    # -- cross-entropy -------------------------------------------------------------------------------
    def coefficients(self):
        """The per-example terms of a = (1 - eps) w_y onehot(y) + u w, u = eps/C for a counted example:
        (one-hot coefficient (1 - eps) w_y, u, D = sum of w_y over the counted examples, the target's index
        in this shard, whether this rank owns it). Ignored examples count nowhere (their index is made 0,
        as Megatron sanitises its masked targets)."""
        torch, r = self.torch, self.request
        target = self._tensor(r["target"])
        counted = target != r["ignore_index"]
        if self.bug == "ignore-mask-one-rank" and self.rank != 0:
            counted = torch.ones_like(counted)
        index = torch.where(target == r["ignore_index"], 0, target)
        w_y = torch.where(counted, self.weight()[index], 0.0)
        uniform = counted.to(self.x.dtype) * (r["smoothing"] / self.n_classes)
        if self.bug == "target-on-another-rank":
            owned, local = counted & (index < self.hi - self.lo), index
        else:
            owned, local = counted & (index >= self.lo) & (index < self.hi), index - self.lo
        local = torch.where(owned, local, 0)
        return (1 - r["smoothing"]) * w_y, uniform, w_y.sum(), local, owned

    def weight(self):
        w = self.request["weight"]
        return self.x.new_ones(self.n_classes) if w is None else self._tensor(w)

    def target_logit(self, z, local, owned):
        """z_y: taken by the rank that owns y, 0 on the others, all-reduced."""
        mine = z.gather(1, local[:, None])[:, 0] if z.shape[1] else z.new_zeros(self.n_rows)
        return self.all_reduce(self.torch.where(owned, mine, 0.0))

    def weighted_log_probabilities(self, coef, z, log_s):
        """sum_c coef_c log p_c over the whole row (all-reduced), counting only coef_c > 0 (0 log 0 = 0)."""
        terms = coef * (z - log_s[:, None])
        return self.all_reduce(self.torch.where(coef > 0, terms, 0.0).sum(dim=-1))

    def probability_coefficients(self):
        """a = w ((1 - eps) q + eps/C) on this shard, for probability targets."""
        r = self.request
        q = self._tensor(r["target"])[:, self.lo:self.hi]
        return self.weight()[self.lo:self.hi] * ((1 - r["smoothing"]) * q + r["smoothing"] / self.n_classes)

    def cross_entropy(self):
        torch = self.torch
        _, z, log_s = self.probabilities()
        if self.request["target_kind"] == "probability":
            losses = -self.weighted_log_probabilities(self.probability_coefficients(), z, log_s)
            denominator = float(self.n_rows)
        else:
            onehot, uniform, denominator, local, owned = self.coefficients()
            losses = torch.where(onehot > 0, onehot * (log_s - self.target_logit(z, local, owned)), 0.0)
            if self.request["smoothing"]:
                w = self.weight()[self.lo:self.hi].expand_as(z)
                spread = -self.weighted_log_probabilities(w, z, log_s)
                losses = losses + torch.where(uniform > 0, uniform * spread, 0.0)
        reduction = self.request["reduction"]
        if reduction == "none":
            return losses
        total = losses.sum()
        return total if reduction == "sum" else total / denominator if denominator > 0 else total * math.nan

    def cross_entropy_vjp(self):
        """r (A p - a) on this shard: Megatron's (softmax - onehot) * grad, with weights and smoothing."""
        torch = self.torch
        p, _, _ = self.probabilities()
        if self.request["target_kind"] == "probability":
            a = self.probability_coefficients()
            big_a = self.all_reduce(a.sum(dim=-1))
            grad = big_a[:, None] * p - a
            denominator = float(self.n_rows)
        else:
            onehot, uniform, denominator, local, owned = self.coefficients()
            w = self.weight()
            big_a = onehot + uniform * w.sum()
            grad = big_a[:, None] * p - uniform[:, None] * w[self.lo:self.hi]
            if grad.shape[1]:
                grad.scatter_add_(1, local[:, None], torch.where(owned, -onehot, 0.0)[:, None])
        v = self.cotangent()
        reduction = self.request["reduction"]
        scale = v if reduction == "none" else v.expand(self.n_rows)
        if reduction == "mean":
            scale = scale / denominator if denominator > 0 else scale * math.nan
        grad = grad * scale[:, None]
        return torch.where((big_a == 0)[:, None], 0.0 * scale[:, None], grad)


# --------------------------------------------------------------------------------------------
# Specs for the loader (`--backend xentcheck.backends.vocab_parallel:NAME`).

def vocab_parallel_1():
    return TorchVocabParallel(1)


def vocab_parallel_2():
    return TorchVocabParallel(2)


def vocab_parallel_3():
    return TorchVocabParallel(3)


class NoMaxAllreduce(TorchVocabParallel):
    """Planted bug: each rank subtracts its own local max."""

    def __init__(self, world_size: int = 3):
        super().__init__(world_size, bug="no-max-allreduce")


class TargetOnAnotherRank(TorchVocabParallel):
    """Planted bug: the target logit taken at the global index, unshifted by the shard's offset."""

    def __init__(self, world_size: int = 3):
        super().__init__(world_size, bug="target-on-another-rank")


class IgnoreMaskOneRank(TorchVocabParallel):
    """Planted bug: only rank 0 masks the ignored examples."""

    def __init__(self, world_size: int = 3):
        super().__init__(world_size, bug="ignore-mask-one-rank")
