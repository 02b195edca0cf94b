"""Backend registry. Each backend is imported only when asked for, so a device with
only onnxruntime never imports torch."""

from __future__ import annotations

import importlib

from avedge.runtime.errors import BackendUnavailableError, UnknownNameError

# name -> (module, class)
_BACKENDS = {
    "executorch": ("executorch_backend", "ExecutorchBackend"),
    "onnxruntime": ("onnxruntime_backend", "OrtCpuBackend"),
    "onnxruntime-cuda": ("onnxruntime_backend", "OrtCudaBackend"),
    "onnxruntime-tensorrt": ("onnxruntime_backend", "OrtTensorrtBackend"),
    "torch": ("torch_backend", "TorchCpuBackend"),
    "torch-cuda": ("torch_backend", "TorchCudaBackend"),
    # Arm microcontrollers: artifacts name them, the host never runs them.
    "ethos-u": ("arm_backend", "EthosUBackend"),
    "cortex-m": ("arm_backend", "CortexMBackend"),
}

BACKEND_NAMES = tuple(_BACKENDS)


def backend_class(name: str):
    if name not in _BACKENDS:
        raise UnknownNameError("backend", name, _BACKENDS)
    mod, cls = _BACKENDS[name]
    return getattr(importlib.import_module(f"avedge.runtime.backends.{mod}"), cls)


def available_backends() -> list[str]:
    return [n for n in _BACKENDS if backend_class(n).unavailable_reason() is None]


def require_backend(name: str):
    cls = backend_class(name)
    reason = cls.unavailable_reason()
    if reason:
        raise BackendUnavailableError(
            f"backend {name!r} is not available here: {reason}; available: "
            f"{', '.join(available_backends()) or '(none)'}"
        )
    return cls
