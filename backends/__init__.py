"""Backends: the contract, the loader, and one adapter per framework (imported lazily)."""
from .contract import Backend, BackendLoadError, BackendUnavailable, missing_members, prepared_call
from .. import records  # noqa: F401,E402  (each op's method on Backend)
from .numpy_backend import NumpyBackend
from .loader import (BUILTINS, COMPARED, ENTRY_POINT_GROUP, GPU_BUILTINS, TIMED, available_backends,
                     load_backend)

__all__ = ["BUILTINS", "COMPARED", "Backend", "BackendLoadError", "BackendUnavailable", "ENTRY_POINT_GROUP",
           "GPU_BUILTINS", "NumpyBackend", "TIMED", "available_backends", "load_backend", "missing_members", "prepared_call"]
