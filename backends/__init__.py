"""Backends: the contract, the loader, and one adapter per framework (imported lazily)."""
from .contract import CONTRACT_MEMBERS, Backend, BackendLoadError, BackendUnavailable, missing_members
from .loader import BUILTINS, ENTRY_POINT_GROUP, GPU_BUILTINS, available_backends, load_backend

__all__ = ["BUILTINS", "Backend", "BackendLoadError", "BackendUnavailable", "CONTRACT_MEMBERS",
           "ENTRY_POINT_GROUP", "GPU_BUILTINS", "available_backends", "load_backend", "missing_members"]
