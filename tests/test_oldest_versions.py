"""The oldest dependencies pyproject.toml allows, tested: .ci/oldest.txt pins them (the oldest releases with
Python 3.11 wheels), and a fresh throw-away virtual environment gets exactly those and xentcheck[jax] itself,
built from a copy of the package so that the checkout is left as it is (no torch). A fast subset runs there:
the reference against the exact oracle, the blocked row ops, and `xentcheck check` on numpy and jax.

One pip run installs the pins and xentcheck[jax] together, so pip also refuses a pin outside the ranges that
pyproject.toml declares. Where pip cannot reach the package index the test skips, saying so;
XENTCHECK_REQUIRE_INDEX=1 (.ci/run sets it) makes that a failure.
"""
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PINS = ROOT / ".ci" / "oldest.txt"
# What building xentcheck takes: pyproject.toml, the README it names, the folders its package-dir maps.
SOURCE = ("pyproject.toml", "README.md", "xentcheck", "reference", "backends")
NO_INDEX = re.compile(r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|"
                      r"Name or service not known|Network is unreachable|ConnectTimeout|ReadTimeout|ProxyError|"
                      r"Could not fetch URL|Max retries exceeded")
# The fast subset, in one pytest run: the reference against the oracle on ordinary, +inf, -inf, NaN and 3-d rows
# and on the cross-entropy edges; chunked.view_as (NumPy < 2.1 has no reshape(copy=False)), the blocked row ops.
PYTEST_SUBSET = ("tests/test_reference_vs_oracle.py", "tests/test_chunked.py", "-k",
                 "(test_row_op_ and (ordinary or plus-inf or masked or nan or 3d-axis)) or test_cross_entropy_edges"
                 " or view_as or (row_ops_blocked_equal_whole and (float32 or bfloat16))")
CHECKS = (  # backend, ops, properties; in bfloat16 (computed in float32: both formats' code paths)
    ("numpy", "softmax,cross_entropy", "value_equals"),
    ("jax", "softmax,cross_entropy", "value_equals or vjp_equals"),
)


def pins() -> dict[str, str]:
    """{distribution: version} from .ci/oldest.txt: `name==version` lines, # starting a comment."""
    found = {}
    for line in PINS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            found[name.strip()] = version.strip()
    return found


def _run(args, cwd, env, timeout=600):
    """(exit code, stdout + stderr)."""
    result = subprocess.run([str(arg) for arg in args], capture_output=True, text=True, cwd=cwd, env=env,
                            timeout=timeout)
    return result.returncode, result.stdout + result.stderr


def _pip(venv_python: Path) -> list:
    """A pip that installs into venv_python: this interpreter's own aimed at it (`pip --python`, pip >= 22.3,
    which Python 3.11 bundles), else the venv's, installed first (seconds more)."""
    # pip's version from its metadata: importing pip here, or even looking for it (importlib.util.find_spec),
    # turns off setuptools' distutils shim for the rest of this process (_distutils_hack's spec_for_pip), and
    # torch.compile, which imports setuptools, would then fail in every later test of this pytest worker
    try:
        version = importlib.metadata.version("pip")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    if tuple(int(part) for part in re.findall(r"\d+", version)[:2]) >= (22, 3):
        return [sys.executable, "-m", "pip", "--python", venv_python]
    subprocess.run([venv_python, "-m", "ensurepip", "--default-pip"], check=True, capture_output=True, timeout=300)
    return [venv_python, "-m", "pip"]


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason=".ci/oldest.txt pins the oldest releases with Python "
                    f"3.11 wheels; this is Python {sys.version_info[0]}.{sys.version_info[1]}")
def test_the_oldest_allowed_versions_work():
    pinned = pins()
    env = {key: value for key, value in os.environ.items()  # nothing of this pytest (xdist, PYTEST_ADDOPTS) or venv
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not key.startswith("PYTEST_")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONNOUSERSITE="1")
    with tempfile.TemporaryDirectory(prefix="xentcheck-oldest-") as tmp:  # the venv takes ~0.5 GB: gone after
        tmp = Path(tmp)
        (tmp / "src").mkdir()
        for name in SOURCE:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, tmp / "src" / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(ROOT / name, tmp / "src" / name)
        # the tests run from a copy too: from the checkout's root, `import xentcheck` would find the checkout's
        shutil.copytree(ROOT / "tests", tmp / "tests", ignore=shutil.ignore_patterns("__pycache__"))

        subprocess.run([sys.executable, "-m", "venv", "--without-pip", tmp / "venv"], check=True, timeout=120)
        python = tmp / "venv" / ("Scripts" if os.name == "nt" else "bin") / "python"
        code, out = _run([*_pip(python), "install", "--no-compile", "--only-binary=:all:", "--retries", "2",
                          "--timeout", "30", "-r", PINS, f"{tmp / 'src'}[jax]"], tmp, env, timeout=900)
        unreachable = NO_INDEX.search(out) if code else None
        if unreachable and os.environ.get("XENTCHECK_REQUIRE_INDEX") != "1":
            pytest.skip(f"pip cannot reach the package index to install .ci/oldest.txt ({unreachable.group(0)})")
        assert code == 0, f"pip install -r .ci/oldest.txt xentcheck[jax]:\n{out[-6000:]}"

        code, out = _run([python, "-c",
                          "import importlib.metadata as m, importlib.util as u, json, sys; print(json.dumps({"
                          "'versions': {n: m.version(n) for n in sys.argv[1:]}, 'no torch': u.find_spec('torch') is None,"
                          "'xentcheck here': u.find_spec('xentcheck').origin.startswith(sys.prefix)}))", *pinned], tmp, env)
        assert code == 0, out
        assert json.loads(out.splitlines()[-1]) == {"versions": pinned, "no torch": True, "xentcheck here": True}, \
            "the venv holds other versions than .ci/oldest.txt's, or torch, or xentcheck from elsewhere"

        code, out = _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *PYTEST_SUBSET], tmp, env)
        assert code == 0, f"pytest {' '.join(PYTEST_SUBSET)} on the oldest versions:\n{out[-6000:]}"

        for backend, ops, properties in CHECKS:
            code, out = _run([python, "-m", "xentcheck.cli", "check", "--backend", backend, "--ops", ops,
                              "--dtypes", "bfloat16", "-k", properties, "--no-progress"], tmp, env)
            assert code == 0 and re.search(r"profile ci: \d+ passed, 0 failed", out), \
                f"xentcheck check --backend {backend} on the oldest versions:\n{out[-6000:]}"
