"""Turn a --backend spec into a backend object.

Spec forms: a built-in name (numpy; torch, torch-compile (Inductor); jax (inputs padded
to shape buckets so that compiled programs are reused), jax-unpadded (XLA on the caller's own shapes);
optax (optax's losses on jax); keras (Keras 3 ops and losses on its JAX backend); torch-cuda, jax-gpu;
torch-vocab-parallel-W (W = 1, 2, 3 ranks of torch.distributed, gloo; -cuda: NCCL on W GPUs) and
jax-vocab-parallel-W (shard_map over W host devices), Megatron's vocabulary-parallel algorithm; naive, the
textbook softmax without the max shift, kept to show what the suite catches), a name registered by an
installed package under the entry-point group "xentcheck.backends", "package.module:attr" or
"path/to/file.py[:attr]". `attr` may be a class (instantiated with no arguments), a factory (called with
none) or an instance; a file without `:attr` gives the one object defined in it that meets the contract.
The file's folder is on sys.path while it loads (it may import its siblings). Every failure is a
BackendLoadError with a one-line message.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from importlib import metadata
from pathlib import Path

from .contract import BackendLoadError, BackendUnavailable, missing_members

ENTRY_POINT_GROUP = "xentcheck.backends"

# name -> (module inside xentcheck.backends, class, keyword arguments, the framework it needs)
BUILTINS = {
    "numpy": ("numpy_backend", "NumpyBackend", {}, None),
    "torch": ("torch_backend", "TorchBackend", {}, "torch"),
    "jax": ("jax_backend", "JaxBackend", {}, "jax"),
    "jax-unpadded": ("jax_backend", "JaxBackend", {"buckets": False}, "jax"),
    "torch-compile": ("torch_backend", "TorchBackend", {"compiled": True}, "torch"),
    "torch-linear-ce": ("torch_backend", "TorchBackend", {"linear": "reference"}, "torch"),
    "torch-linear-ce-chunked": ("torch_backend", "TorchBackend", {"linear": "chunked"}, "torch"),
    "optax": ("optax_backend", "OptaxBackend", {}, "optax"),
    "keras": ("keras_backend", "KerasBackend", {}, "keras"),
    "torch-cuda": ("torch_backend", "TorchBackend", {"device": "cuda"}, "torch"),
    "jax-gpu": ("jax_backend", "JaxBackend", {"platform": "gpu"}, "jax"),
    "naive": ("naive_backend", "NaiveBackend", {}, None),
    # vocabulary-parallel (Megatron's algorithm): the class axis sharded over W ranks or devices
    **{f"torch-vocab-parallel-{w}": ("vocab_parallel", "TorchVocabParallel", {"world_size": w}, "torch")
       for w in (1, 2, 3)},
    **{f"torch-vocab-parallel-{w}-cuda": ("vocab_parallel", "TorchVocabParallel", {"world_size": w, "device": "cuda"},
                                          "torch") for w in (1, 2)},
    **{f"jax-vocab-parallel-{w}": ("vocab_parallel_jax", "JaxVocabParallel", {"world_size": w}, "jax")
       for w in (1, 2, 3)},
}
GPU_BUILTINS = ("torch-cuda", "jax-gpu", "torch-vocab-parallel-1-cuda", "torch-vocab-parallel-2-cuda")
# `compare` runs these unless told otherwise (those installed and available here; not torch-compile, which
# compiles C++ for new shapes and options: name it, and a quick compare takes some 10 minutes), `bench` these
COMPARED = ("numpy", "torch", "jax", "optax", "keras", "torch-cuda", "jax-gpu")
TIMED = ("numpy", "torch", "torch-compile", "jax-unpadded", "torch-cuda", "jax-gpu")


def load_backend(spec: str):
    """The backend object for `spec`; raises BackendLoadError (BackendUnavailable for a missing framework)."""
    if not isinstance(spec, str) or not spec.strip():
        raise BackendLoadError(f"--backend: expected a spec such as numpy, torch, jax, module:attr or "
                               f"file.py:attr; got {spec!r}")
    spec = spec.strip()
    if spec in BUILTINS:
        return _builtin(spec)
    entry_point = _entry_points().get(spec)
    if entry_point is not None:
        return _build(spec, _guard(spec, entry_point.load))
    if ":" not in spec and _looks_like_path(spec):
        return _build(spec, _the_one_backend_in(spec, _guard(spec, lambda: _load_file(spec))))
    if ":" not in spec:
        known = ", ".join(list(BUILTINS) + sorted(_entry_points()))
        raise BackendLoadError(f"--backend: unknown backend {spec!r}; use one of {known}, "
                               "package.module:attr or path/to/file.py[:attr]")
    location, attr = spec.rsplit(":", 1)
    module = _guard(spec, lambda: _load_file(location) if _looks_like_path(location)
                    else importlib.import_module(location))
    if not attr or not hasattr(module, attr):
        raise BackendLoadError(f"--backend {spec}: {location} has no attribute {attr!r}")
    return _build(spec, getattr(module, attr))


def available_backends(load: bool = True) -> dict[str, str | None]:
    """Every built-in backend -> None when it loads here, else the reason it does not.

    load=False answers from cheap checks only (the framework is installed; a GPU built-in needs a GPU
    device node), importing no framework: None then means "expected to load"."""
    status = {}
    for name in BUILTINS:
        try:
            _builtin(name) if load else _precheck(name)
            status[name] = None
        except BackendLoadError as error:
            status[name] = str(error)
    return status


# Device nodes of a GPU a framework could use: NVIDIA (CUDA), AMD (ROCm), WSL2.
GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def _precheck(name: str) -> None:
    """Raise BackendUnavailable when built-in `name` cannot load, by checks that import nothing."""
    framework = BUILTINS[name][3]
    if framework is not None and importlib.util.find_spec(framework) is None:
        raise BackendUnavailable(f"{name}: {framework} is not installed (pip install 'xentcheck[{framework}]')")
    if name in GPU_BUILTINS and not any(Path(node).exists() for node in GPU_DEVICE_NODES):
        raise BackendUnavailable(f"{name}: no GPU on this machine (none of {', '.join(GPU_DEVICE_NODES)})")


def _builtin(name: str):
    module_name, class_name, kwargs, _ = BUILTINS[name]
    _precheck(name)
    try:
        module = importlib.import_module(f"{__package__}.{module_name}")
        return getattr(module, class_name)(**kwargs)
    except BackendUnavailable:
        raise
    except Exception as error:  # a broken framework install must not take the run down
        raise BackendUnavailable(f"{name}: {type(error).__name__}: {_one_line(error)}") from None


def _entry_points() -> dict:
    try:
        return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # a broken distribution's metadata
        return {}


def _looks_like_path(location: str) -> bool:
    return location.endswith(".py") or "/" in location or "\\" in location


def _load_file(location: str):
    path = Path(location).expanduser().resolve()
    if not path.is_file():
        raise BackendLoadError(f"no such file: {location}")
    name = f"xentcheck_user_backend_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise BackendLoadError(f"{location} is not a Python source file (expected a .py file)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    sys.path.insert(0, str(path.parent))  # the file may import modules beside it
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def _the_one_backend_in(location: str, module):
    """The object defined in the file that meets the contract (a class, or an instance of one): it must be
    the only one, or the spec must name it."""
    def defined_here(obj):
        cls = obj if inspect.isclass(obj) else type(obj)
        return cls.__module__ == module.__name__

    candidates = {name: obj for name, obj in vars(module).items()
                  if not name.startswith("_") and not inspect.ismodule(obj) and not inspect.isfunction(obj)
                  and defined_here(obj) and not missing_members(obj)}
    instances = {type(obj) for obj in candidates.values() if not inspect.isclass(obj)}
    candidates = {name: obj for name, obj in candidates.items() if obj not in instances}  # the instance, not its class
    if len(candidates) == 1:
        return next(iter(candidates.values()))
    if not candidates:
        raise BackendLoadError(f"--backend {location}: nothing defined in it meets the backend contract "
                               f"(name, the ops, vjp); name the object as {location}:NAME")
    raise BackendLoadError(f"--backend {location}: {len(candidates)} objects meet the backend contract "
                           f"({', '.join(sorted(candidates))}); name one as {location}:NAME")


def _build(spec: str, target):
    """Instantiate a class, call a factory, or take an instance as it is; then check the contract."""
    if inspect.isclass(target) or (callable(target) and missing_members(target)):
        backend = _guard(spec, target)
    else:
        backend = target
    missing = missing_members(backend)
    if missing:
        raise BackendLoadError(f"--backend {spec}: the object does not meet the backend contract; "
                               f"missing: {', '.join(missing)}")
    return backend


def _guard(spec: str, thunk):
    try:
        return thunk()
    except BackendLoadError as error:
        raise BackendLoadError(f"--backend {spec}: {error}") from None
    except BaseException as error:  # user code: even SystemExit or KeyboardInterrupt-free failures
        if isinstance(error, KeyboardInterrupt):
            raise
        raise BackendLoadError(f"--backend {spec}: {type(error).__name__}: {_one_line(error)}") from None


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
