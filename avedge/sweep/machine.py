"""The machine a sweep ran on: recorded with its results, since latency means nothing
without it."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket

PACKAGES = ("avedge", "torch", "torchao", "executorch", "onnxruntime", "onnx", "numpy")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"host": socket.gethostname(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "cores_usable": usable, "os": platform.platform(),
            "python": platform.python_version(), "versions": versions}
