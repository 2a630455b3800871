"""The `xentcheck` command as a user or CI starts it: a subprocess from the checkout's root."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def xentcheck(*args, timeout=600):
    """(exit code, stdout, stderr) of `xentcheck ARGS`."""
    result = subprocess.run([sys.executable, "-m", "xentcheck.cli", *args], capture_output=True, text=True,
                            timeout=timeout, cwd=ROOT)
    return result.returncode, result.stdout, result.stderr
