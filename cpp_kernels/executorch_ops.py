"""Load the avedge ExecuTorch kernels into the running ExecuTorch runtime.

A ``.pte`` that calls ``avedge::*.out`` ops fails to load with ``Missing operator`` until the
kernels are in ExecuTorch's operator registry. ``load_executorch_ops()`` builds
``libavedge_et_ops.so`` (cached, see _build.py) and loads it with RTLD_GLOBAL; its static
initialiser registers the kernels in the ``libexecutorch.so`` that the executorch pybindings
also use. Call it before ``Runtime.get().load_program(...)``. Imports no torch.
"""

from __future__ import annotations

import ctypes
import threading

from . import _build
from .schemas import ET_OPS

_lock = threading.Lock()
_loaded: tuple[ctypes.CDLL, str] | None = None



def load_executorch_ops() -> str:
    """Build (if needed) and load the ExecuTorch kernel library; return its path. Idempotent.

    Raises FileNotFoundError without a C++ compiler, _build.BuildError if compilation fails,
    RuntimeError if the kernels could not be registered.
    """
    global _loaded
    with _lock:
        if _loaded is None:
            path = str(_build.build(("executorch",))["executorch"])
            handle = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            if handle.avedge_et_ops_registered() != 1:
                raise RuntimeError(
                    f"{path} loaded but ExecuTorch refused to register {', '.join(ET_OPS)} "
                    "(already registered by another copy of the library?)")
            _loaded = (handle, path)
        return _loaded[1]
