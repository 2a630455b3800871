"""How long `xentcheck check` takes on a user's jitted backend against the built-in one (issue: speed for any
backend): the wall time of `check --profile ci` on each backend, cold (empty caches: every program compiled)
and warm (JAX's persistent compilation cache, which `check` turns on for any backend on JAX), and the ratio
to the built-in `jax` backend measured in the same run.

    python benchmarks/check_speed.py [BACKEND ...]      (default: jax optax; the first is the baseline)

Prints a Markdown table; numbers from this machine are in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time


def timed_check(backend: str, cache: str) -> tuple[float, str]:
    """(seconds, check's last line) of `xentcheck check --backend BACKEND` with XDG_CACHE_HOME=cache."""
    env = dict(os.environ, XDG_CACHE_HOME=cache)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "xentcheck.cli", "check", "--backend", backend, "--no-progress"],
                          capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    return seconds, lines[-1] if lines else done.stderr.strip()[-300:]


def main(backends) -> None:
    rows = []
    for backend in backends:
        with tempfile.TemporaryDirectory() as cache:
            cold, summary = timed_check(backend, cache)
            warm, _ = timed_check(backend, cache)
        rows.append((backend, cold, warm, summary))
    base_cold, base_warm = rows[0][1], rows[0][2]
    print(f"| backend | cold (s) | x {backends[0]} | warm (s) | x {backends[0]} | check's summary |")
    print("|---|---|---|---|---|---|")
    for backend, cold, warm, summary in rows:
        print(f"| {backend} | {cold:.0f} | {cold / base_cold:.2f} | {warm:.0f} | {warm / base_warm:.2f} | {summary} |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["jax", "optax"])
