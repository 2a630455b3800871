"""xentcheck.backends.load_backend: every spec form of DESIGN.md, and every way a spec can fail.

Spec forms: a built-in name (numpy, torch, jax; torch-cuda and jax-gpu where a GPU is present), a name
registered under the entry-point group "xentcheck.backends", "package.module:attr" and
"path/to/file.py:attr", where attr is a class (instantiated with no arguments), a factory or an
instance. Every failure is a BackendLoadError whose message is one line and mentions the spec.
The module:attr backends live in tests/dummy_backends.py.
"""
from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dummy_backends
from xentcheck.backends import (BUILTINS, ENTRY_POINT_GROUP, GPU_BUILTINS, BackendLoadError, BackendUnavailable,
                                available_backends, load_backend, missing_members)
from xentcheck.backends.loader import GPU_DEVICE_NODES
from xentcheck.backends.numpy_backend import NumpyBackend


def assert_works(backend):
    """The object meets the contract and really computes (a softmax of two equal logits is 1/2 each)."""
    assert missing_members(backend) == []
    assert isinstance(backend.name, str) and backend.name
    np.testing.assert_allclose(backend.softmax(np.zeros(2)), [0.5, 0.5])
    np.testing.assert_allclose(backend.vjp("logsumexp", np.zeros(2), np.float64(1.0)), [0.5, 0.5])


def load_error(spec, error_type=BackendLoadError) -> str:
    """load_backend(spec) fails with `error_type`; its message is one line. Returns the message."""
    with pytest.raises(error_type) as info:
        load_backend(spec)
    message = str(info.value)
    assert message and "\n" not in message and "\r" not in message, repr(message)
    return message


# -- built-in names -------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["numpy", "torch", "jax"])
def test_builtin_backends_load_and_meet_the_contract(spec):
    backend = load_backend(spec)
    assert_works(backend)
    assert backend.name == spec
    assert load_backend(f"  {spec}\n").name == spec  # surrounding whitespace (a copied command line) is fine


def _gpu_present(spec: str) -> bool:
    """Whether the framework itself sees the device that `spec` asks for."""
    if spec == "torch-cuda":
        import torch

        return torch.cuda.is_available()
    import jax

    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


@pytest.mark.parametrize("spec", ["torch-cuda", "jax-gpu"])
def test_gpu_builtins_load_only_where_the_framework_sees_a_gpu(spec):
    if _gpu_present(spec):
        backend = load_backend(spec)
        assert_works(backend)
        assert backend.name == spec
    else:
        message = load_error(spec, BackendUnavailable)
        assert message.startswith(f"{spec}: ")


@pytest.fixture(scope="module")
def status():
    """available_backends() once: it loads every built-in (the vocabulary-parallel ones start processes)."""
    return available_backends()


def test_available_backends_reports_every_builtin(status):
    assert isinstance(status, dict) and list(status) == list(BUILTINS)
    assert status["numpy"] is None
    for name, reason in status.items():
        if reason is None:
            assert_works(load_backend(name))
        else:  # the reason is the one-line message load_backend gives
            assert isinstance(reason, str) and reason.startswith(f"{name}: ") and "\n" not in reason
            with pytest.raises(BackendUnavailable, match="^" + re.escape(reason) + "$"):
                load_backend(name)


def test_the_cheap_availability_check_imports_no_framework_and_agrees_with_loading(status):
    """available_backends(load=False), which `xentcheck compare` uses to pick its default backends,
    answers without importing torch or JAX, and says what loading says wherever it can tell."""
    import subprocess
    import sys

    code = ("import json, sys, xentcheck.backends as b\n"
            "status = b.available_backends(load=False)\n"
            "print(json.dumps([status, 'torch' in sys.modules, 'jax' in sys.modules]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    cheap, torch_imported, jax_imported = json.loads(result.stdout)
    assert not torch_imported and not jax_imported
    for name in BUILTINS:
        if cheap[name] is not None:  # a cheap "no" is final, with the same reason loading gives
            assert status[name] == cheap[name]
        elif name not in GPU_BUILTINS:
            assert status[name] is None  # CPU built-ins whose framework is installed load here
    if not any(Path(node).exists() for node in GPU_DEVICE_NODES):
        assert all("no GPU on this machine" in cheap[name] for name in GPU_BUILTINS)


# -- package.module:attr --------------------------------------------------------------------------

def test_module_attr_class_is_instantiated():
    backend = load_backend("dummy_backends:GoodBackend")
    assert type(backend) is dummy_backends.GoodBackend
    assert backend.name == "dummy-good"
    assert_works(backend)


def test_module_attr_factory_is_called():
    backend = load_backend("dummy_backends:make_backend")
    assert backend.name == "dummy-factory"
    assert_works(backend)


def test_module_attr_instance_is_taken_as_it_is():
    assert load_backend("dummy_backends:INSTANCE") is dummy_backends.INSTANCE
    # an instance that is callable and already meets the contract is not called
    assert load_backend("dummy_backends:CALLABLE_INSTANCE") is dummy_backends.CALLABLE_INSTANCE


def test_dotted_module_path():
    backend = load_backend("xentcheck.backends.numpy_backend:NumpyBackend")
    assert type(backend) is NumpyBackend
    assert_works(backend)


# -- path/to/file.py:attr -------------------------------------------------------------------------

BACKEND_FILE = textwrap.dedent("""
    from xentcheck.backends.numpy_backend import NumpyBackend

    class FileBackend(NumpyBackend):
        name = "from-a-file"

    def factory():
        return FileBackend()

    instance = FileBackend()
""")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("attr", ["FileBackend", "factory", "instance"])
def test_file_backend_by_absolute_path(tmp_path, attr):
    path = write(tmp_path / "my_backend.py", BACKEND_FILE)
    backend = load_backend(f"{path}:{attr}")
    assert backend.name == "from-a-file"
    assert_works(backend)


def test_file_backend_by_relative_path(tmp_path, monkeypatch):
    write(tmp_path / "sub" / "my_backend.py", BACKEND_FILE)
    write(tmp_path / "top_backend.py", BACKEND_FILE)
    monkeypatch.chdir(tmp_path)
    assert_works(load_backend("sub/my_backend.py:FileBackend"))
    assert_works(load_backend("top_backend.py:factory"))  # no slash: the .py suffix marks a path


def test_a_file_without_attr_gives_its_one_backend(tmp_path):
    """The instance it defines (not also its class); the one class where there is no instance."""
    assert load_backend(str(write(tmp_path / "one.py", BACKEND_FILE))).name == "from-a-file"
    only_class = write(tmp_path / "only_class.py", BACKEND_FILE.replace("instance = FileBackend()", ""))
    assert_works(load_backend(str(only_class)))


def test_a_file_without_attr_and_several_backends_names_the_candidates(tmp_path):
    path = write(tmp_path / "two.py", BACKEND_FILE + "\nclass Other(FileBackend):\n    name = 'other'\n")
    message = load_error(str(path))
    assert "2 objects meet the backend contract (Other, instance); name one as" in message, message
    empty = write(tmp_path / "empty.py", "from xentcheck.backends.numpy_backend import NumpyBackend\n")
    assert "nothing defined in it meets the backend contract" in load_error(str(empty))


def test_a_file_imports_the_modules_beside_it(tmp_path):
    write(tmp_path / "helpers_for_xentcheck_test.py", "NAME = 'beside'\n")
    path = write(tmp_path / "uses_helper.py", BACKEND_FILE.replace(
        'name = "from-a-file"', "from helpers_for_xentcheck_test import NAME as name"))
    assert load_backend(f"{path}:FileBackend").name == "beside"
    assert str(tmp_path) not in __import__("sys").path  # only while it loads


# -- entry points ---------------------------------------------------------------------------------

def _fake_distribution(root, entry_points: str):
    info = root / "fakepkg-0.1.dist-info"
    write(info / "METADATA", "Metadata-Version: 2.1\nName: fakepkg\nVersion: 0.1\n")
    write(info / "entry_points.txt", f"[{ENTRY_POINT_GROUP}]\n{entry_points}")


def test_entry_point_backend(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "mine = dummy_backends:GoodBackend\n"
                                 "broken = no_such_module_for_xentcheck_tests:Backend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    backend = load_backend("mine")
    assert type(backend) is dummy_backends.GoodBackend
    assert_works(backend)
    message = load_error("broken")
    assert "broken" in message and "ModuleNotFoundError" in message
    assert "mine" in load_error("not-registered")  # the unknown-name message lists the registered ones


def test_entry_point_cannot_shadow_a_builtin(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "numpy = dummy_backends:GoodBackend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert type(load_backend("numpy")) is NumpyBackend


# -- failures: each a one-line BackendLoadError that mentions the spec ------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("no-such-backend", r"unknown backend 'no-such-backend'; use one of numpy, torch, jax.*module:attr"),
    ("", r"expected a spec such as numpy.*; got ''$"),
    ("   ", r"expected a spec such as numpy.*; got '   '$"),
    (None, r"expected a spec .*; got None$"),
    ("no_such_module_for_xentcheck_tests:Backend",
     r"^--backend no_such_module_for_xentcheck_tests:Backend: ModuleNotFoundError: .*no_such_module_for_xentcheck"),
    ("dummy_backends:NoSuchThing", r"^--backend dummy_backends:NoSuchThing: dummy_backends has no attribute "
                                   r"'NoSuchThing'$"),
    ("dummy_backends:", r"^--backend dummy_backends:: dummy_backends has no attribute ''$"),
    ("dummy_backends:Incomplete", r"^--backend dummy_backends:Incomplete: the object does not meet the backend "
                                  r"contract; missing: logsumexp, vjp, cross_entropy$"),
    ("dummy_backends:NamelessName", r"missing: name \(must be a str\)$"),
    ("dummy_backends:factory_of_nothing",
     r"missing: name, softmax, log_softmax, logsumexp, cross_entropy, vjp$"),
    ("dummy_backends:RaisingBackend", r"^--backend dummy_backends:RaisingBackend: RuntimeError: no accelerator found$"),
    ("dummy_backends:raising_factory", r"^--backend dummy_backends:raising_factory: ValueError: bad configuration$"),
])
def test_bad_spec(spec, expected):
    message = load_error(spec)
    assert repr(spec) in message or f"--backend {spec}:" in message
    assert re.search(expected, message), message


@pytest.mark.parametrize("source, expected", [
    ("raise ImportError('needs a library that is not here\\nand more detail')",
     r"ImportError: needs a library that is not here$"),
    ("def broken(:\n    pass\n", r"SyntaxError: "),
    ("import sys\nsys.exit()\n", r"SystemExit"),
    ("import sys\nsys.exit('giving up')\n", r"SystemExit: giving up$"),
    ("1 / 0\n", r"ZeroDivisionError: division by zero$"),
])
def test_file_that_fails_at_import(tmp_path, source, expected):
    path = write(tmp_path / "bad_backend.py", source)
    spec = f"{path}:Backend"
    message = load_error(spec)
    assert message.startswith(f"--backend {spec}: ")
    assert re.search(expected, message), message


def test_missing_file(tmp_path):
    spec = f"{tmp_path / 'nowhere.py'}:Backend"
    message = load_error(spec)
    assert message.startswith(f"--backend {spec}: ") and "no such file" in message


def test_file_missing_attribute(tmp_path):
    path = write(tmp_path / "my_backend.py", BACKEND_FILE)
    message = load_error(f"{path}:Nope")
    assert message.startswith(f"--backend {path}:Nope: ") and "has no attribute 'Nope'" in message


def test_file_that_is_not_python(tmp_path):
    path = write(tmp_path / "my_backend.txt", BACKEND_FILE)
    spec = f"{path}:FileBackend"
    message = load_error(spec)
    assert message.startswith(f"--backend {spec}: ")
    assert "NoneType" not in message
    assert re.search(r"(?i)python|\.py\b", message.replace(str(path), "")), message


def test_failed_load_leaves_the_interpreter_usable(tmp_path):
    """A backend file that calls sys.exit() at import does not end the run; the next spec still loads."""
    path = write(tmp_path / "exits.py", "import sys\nsys.exit(3)\n")
    assert load_error(f"{path}:Backend").endswith("SystemExit: 3")
    assert_works(load_backend("dummy_backends:GoodBackend"))


def test_a_missing_framework_is_unavailable_not_an_import_error():
    """Blocking `import torch` and `import jax` (as on a machine without them): xentcheck still imports,
    and both built-ins are reported unavailable with the reason and the fix."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['jax'] = None\n"
        "import importlib.util as u; real = u.find_spec\n"
        "u.find_spec = lambda name, *a: None if name in ('torch', 'jax') else real(name, *a)\n"
        "import xentcheck, xentcheck.reference, xentcheck.backends as b\n"
        "status = b.available_backends()\n"
        "assert status['numpy'] is None, status\n"
        "assert 'torch is not installed' in status['torch'] and \"xentcheck[torch]\" in status['torch'], status\n"
        "assert 'jax is not installed' in status['jax'], status\n"
        "try:\n    b.load_backend('torch')\nexcept b.BackendUnavailable as e:\n    print('OK', e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("OK torch: torch is not installed"), result.stderr


def test_new_backend_writes_a_template_that_check_passes(tmp_path):
    """The template runs as written (NumPy), is found without :attr, and is never overwritten."""
    from _cli import xentcheck_here

    out = tmp_path / "my_lib.py"
    code, stdout, err = xentcheck_here("new-backend", "my-lib", "--out", str(out))
    assert code == 0 and out.exists() and "xentcheck check --backend" in stdout, err
    assert "bfloat16" in out.read_text() and "class MyLibBackend(Backend)" in out.read_text()
    code, stdout, err = xentcheck_here("check", "--backend", str(out), "--ops", "softmax,cross_entropy", "--dtypes",
                                       "bfloat16", "--no-progress")
    assert code == 0 and "my-lib" in stdout and " 0 failed" in stdout, stdout[-2000:] + err
    code, _, err = xentcheck_here("new-backend", "my-lib", "--out", str(out))
    assert code == 2 and "already exists" in err
    code, _, err = xentcheck_here("new-backend", "9lives")
    assert code == 2 and "NAME: letters, digits" in err
