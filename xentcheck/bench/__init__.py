"""`xentcheck bench`: how fast the backends that `check` verifies run the ops of xentcheck.records, against
each other and against this machine's own measured limits.

Tasks: each op named (default softmax and cross_entropy) times each kind, "value" (the op) and "vjp" (its
vector-Jacobian product for a random cotangent, the forward included, as autograd runs it), on (rows, cols)
inputs with the class axis last, made by the record (`OpRecord.example`: logits uniform in [-4, 4),
targets uniform over the classes). Backends: any --backend spec, by default numpy (the reference),
torch (eager), torch-compile (Inductor; each size compiled afresh, static), jax-unpadded (XLA on the caller's shapes), and
torch-cuda and jax-gpu where a GPU is present; each times its `prepare(op, kind, x, cotangent, **kwargs)`
(backends/contract.py): the inputs moved to the framework once, the computation `evaluate` / `vjp` run.
Each runs with its default thread count, which is every core here.

Timing (measure.py, time.perf_counter): the first call of a new shape, preparing it included, is timed on
its own (first_call_s: compilation for torch.compile and JAX, whose persistent cache is off for the run)
and excluded; then samples of `number` calls each (a sample lasts at least a millisecond) are taken until
`budget` seconds have gone, at least 3 and at most 100; time per call = the median sample / number.

Limits, measured in the same run: copy bandwidth (np.copyto on one thread, torch's copy_ on all, bytes
read + written per second) and exp throughput (np.exp, torch.exp on one thread and on all, on
cache-resident arrays). A task's lower bound is max(the bytes it must move at least: its inputs read and
its result written / the best copy bandwidth, one exp per logit / the best exp rate for the dtype);
fraction_of_limit = lower bound / time.

Peak memory (measure.py), extra bytes beyond the inputs (outputs included), in a fresh subprocess per
backend, after a warm-up call: the rise of the process's RSS high-water mark over one call (Linux
/proc/self/clear_refs resets it; glibc is told to return freed memory at once), and for numpy also
tracemalloc's peak (NumPy reports its array buffers to tracemalloc; other frameworks' allocators do not).
A (size, dtype) whose estimated footprint (the inputs twice, a framework's copy, and 1.5 times the result,
twice for a vjp) exceeds MEMORY_FRACTION of the memory available at the start is skipped, and the output
says so.

results.json keys: tool, version, started, seconds, environment, settings, limits (copy_bytes_per_s,
exp_per_s, bandwidth, exp_rate), implementations (name -> available, reason, note, gpu), results: one per
backend, task, dtype and size, with every key of RESULT_KEYS (null where it does not apply): status is ok,
skipped (memory, or the default grid), unsupported (the backend declines the op), error or unavailable
(with its reason); times in seconds; ratio_to_fastest among the CPU (or among the GPU) backends; memory
in bytes.
"""
from .measure import memory_worker
from .render import FILES, render_markdown, write_all
from .run import DEFAULT_OPS, DTYPES, KINDS, RESULT_KEYS, parse_sizes, run_bench

__all__ = ["DEFAULT_OPS", "DTYPES", "FILES", "KINDS", "RESULT_KEYS", "memory_worker", "parse_sizes",
           "render_markdown", "run_bench", "write_all"]
