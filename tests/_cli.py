"""The `xentcheck` command as a user or CI starts it: a subprocess from the checkout's root."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def xentcheck(*args, timeout=600, env=None):
    """(exit code, stdout, stderr) of `xentcheck ARGS`, with `env` added to the environment."""
    result = subprocess.run([sys.executable, "-m", "xentcheck.cli", *args], capture_output=True, text=True,
                            timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})
    return result.returncode, result.stdout, result.stderr
