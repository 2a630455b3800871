"""The `xentcheck` command as a user or CI starts it: a subprocess from the checkout's root; and the same
command in this process, for the many short runs on NumPy backends (an interpreter start with torch and
JAX importable costs seconds; a framework's global settings would outlive an in-process run, so those
stay subprocesses)."""
import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

from xentcheck import cli

ROOT = Path(__file__).parent.parent


def xentcheck(*args, timeout=600, env=None):
    """(exit code, stdout, stderr) of `xentcheck ARGS`, with `env` added to the environment."""
    result = subprocess.run([sys.executable, "-m", "xentcheck.cli", *args], capture_output=True, text=True,
                            timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})
    return result.returncode, result.stdout, result.stderr


def xentcheck_here(*args, env=None):
    """(exit code, stdout, stderr) of cli.main(ARGS) in this process, from the checkout's root."""
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        with mock.patch.dict(os.environ, env or {}), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(args))
    finally:
        os.chdir(cwd)
    return code, out.getvalue(), err.getvalue()
