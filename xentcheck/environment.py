"""What a report says about the machine and the libraries it was made with."""
from __future__ import annotations

import os
import platform
import sys


def environment() -> dict:
    env = {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
           "processor": platform.processor() or _cpu_model(), "cpus": os.cpu_count()}
    for module in ("numpy", "mpmath", "hypothesis", "torch", "jax", "jaxlib", "ml_dtypes"):
        mod = sys.modules.get(module)
        if mod is not None:
            env[module] = getattr(mod, "__version__", "?")
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
