"""What a report says about the machine and the libraries it was made with."""
from __future__ import annotations

import os
import platform
from importlib import metadata


def environment() -> dict:
    env = {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
           "processor": platform.processor() or _cpu_model(), "cpus": os.cpu_count()}
    for package in ("numpy", "mpmath", "hypothesis", "torch", "jax", "jaxlib", "ml_dtypes"):
        try:  # the installed version, without importing the package (the backends run in their own processes)
            env[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return env


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""
