"""Row-chunked evaluation: the rows of an array cut into cache-sized blocks, spread over the cores.

The reference computes in float64 whatever the input dtype. Done on the whole array at once that
needs several float64 copies of it (for a 4 GiB float32 batch, 8 GiB each); done a block of rows at a
time it needs only block-sized float64 work arrays, which also stay in the cache (L2 or L3) between
the passes over a block. NumPy releases the GIL inside its ufuncs, so blocks run in parallel on a thread pool.
"""
from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

BLOCK_BYTES = 1 << 22        # float64 bytes of one block (measured here: 2-4 MiB beat L2-sized ones)
BLOCKS_PER_WORKER = 32       # on threads, this many blocks per worker where rows allow: all workers' work
                             # arrays together then stay below 1/32 of the input's size in float64
INLINE_ELEMENTS = 1 << 18    # below this many elements (about a millisecond) threads cost more than they give


def threads() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_RESHAPE_HAS_COPY = np.lib.NumpyVersion(np.__version__) >= "2.1.0"


def view_as(array: np.ndarray, shape: tuple) -> np.ndarray | None:
    """`array` reshaped to `shape` as a view of the same memory, or None where that would need a copy.

    NumPy 2.1 says so through reshape(copy=False); before it, reshape has no copy argument and copies
    silently, but assigning the shape of a view raises instead (an assignment NumPy 2.5 deprecates).
    """
    if _RESHAPE_HAS_COPY:
        try:
            return array.reshape(shape, copy=False)
        except ValueError:
            return None
    view = array.view()
    try:
        view.shape = shape
    except AttributeError:
        return None
    return view


class Rows:
    """The rows of `array` along `axis` as an (N, C) matrix, read and written a block at a time.

    Where the other axes merge into one (always for the last axis of a C-contiguous array) the matrix
    is a view; otherwise each block is gathered and scattered through its indices, so that nothing
    the size of the whole array is ever copied.
    """

    def __init__(self, array: np.ndarray, axis: int = -1):
        moved = array if axis % array.ndim == array.ndim - 1 else np.moveaxis(array, axis, -1)
        self.batch_shape = moved.shape[:-1]
        self.n_rows, self.n_cols = math.prod(self.batch_shape), moved.shape[-1]
        self._matrix = view_as(moved, (self.n_rows, self.n_cols))
        self._moved = moved if self._matrix is None else None

    def _where(self, lo: int, hi: int):
        return np.unravel_index(np.arange(lo, hi), self.batch_shape)

    def get(self, lo: int, hi: int) -> np.ndarray:
        return self._matrix[lo:hi] if self._matrix is not None else self._moved[self._where(lo, hi)]

    def set(self, lo: int, hi: int, values: np.ndarray) -> None:
        if self._matrix is not None:
            self._matrix[lo:hi] = values
        else:
            self._moved[self._where(lo, hi)] = values


class Scratch:
    """Float64 work arrays, kept from one block to the next by the thread that uses them."""

    def __init__(self):
        self._arrays: dict[str, np.ndarray] = {}

    def __call__(self, name: str, shape: tuple) -> np.ndarray:
        size = math.prod(shape)
        array = self._arrays.get(name)
        if array is None or array.size < size:
            array = self._arrays[name] = np.empty(size)
        return array[:size].reshape(shape)


def block_rows(n_rows: int, n_cols: int, workers: int) -> int:
    """Rows per block: BLOCK_BYTES of float64, at least one row; on threads, no more than leaves
    BLOCKS_PER_WORKER blocks to each worker."""
    rows = BLOCK_BYTES // (8 * n_cols)
    if workers > 1:
        rows = min(rows, -(-n_rows // (BLOCKS_PER_WORKER * workers)))
    return max(1, rows)


def for_each_block(n_rows: int, n_cols: int, task) -> None:
    """Call task(lo, hi, scratch) for blocks of rows covering [0, n_rows), in parallel when it pays.

    Tasks write disjoint rows of their outputs, so the order they run in does not change any result.
    """
    workers = threads() if n_rows * n_cols >= INLINE_ELEMENTS else 1
    step = block_rows(n_rows, n_cols, workers)
    starts = range(0, n_rows, step)
    workers = min(workers, len(starts))
    if workers <= 1:
        scratch = Scratch()
        for lo in starts:
            task(lo, min(lo + step, n_rows), scratch)
        return
    pending = iter(starts)
    lock = threading.Lock()

    def worker():
        scratch = Scratch()
        while True:
            with lock:
                lo = next(pending, None)
            if lo is None:
                return
            task(lo, min(lo + step, n_rows), scratch)

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(worker) for _ in range(workers)]:
            future.result()
