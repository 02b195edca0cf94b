"""ExecuTorch (.pte, XNNPACK delegate) through the pip runtime's Python bindings."""

from __future__ import annotations

import importlib.util

import numpy as np
from avedge.runtime.backends.base import Backend
from avedge.runtime.errors import ArtifactError
from avedge.runtime.native_log import captured_stderr


class ExecutorchBackend(Backend):
    name = "executorch"
    format = "pte"

    @classmethod
    def unavailable_reason(cls):
        if importlib.util.find_spec("executorch") is None:
            return "the executorch package is not installed (pip install executorch)"
        return None

    def __init__(self, model_bytes, manifest, threads):
        with captured_stderr() as log:
            try:
                self._load(model_bytes, manifest, threads)
                return
            except RuntimeError as exc:
                error = exc
        detail = log[0].strip().splitlines()[-3:]
        raise ArtifactError(f"ExecuTorch could not load the program: {error}"
                            + (f" ({' | '.join(detail)})" if detail else "")) from error

    def _load(self, model_bytes, manifest, threads):
        import torch  # the pybindings exchange torch tensors
        from executorch.runtime import Runtime

        self._torch = torch
        if manifest.custom_ops:
            _load_custom_op_kernels(manifest.custom_ops)
        if threads:
            from executorch.extension.pybindings import portable_lib

            portable_lib._unsafe_reset_threadpool(int(threads))
        # The method borrows the program's memory: keep both alive together.
        self._program = Runtime.get().load_program(model_bytes)
        self._method = self._program.load_method("forward")

    def run(self, inputs):
        tensors = [self._torch.from_numpy(np.ascontiguousarray(x)) for x in inputs]
        # Outputs live in the method's planned memory, which the next call overwrites
        # (a stream feeds state outputs back in): hand out copies.
        return [o.numpy().copy() for o in self._method.execute(tensors)]


def _load_custom_op_kernels(ops: list[str]) -> None:
    """A .pte with avedge ops needs their ExecuTorch kernels registered before loading."""
    try:
        from avedge.cpp_kernels import load_executorch_ops
    except ImportError as exc:
        raise ArtifactError(
            f"this program uses custom ops {ops}, but avedge.cpp_kernels cannot provide their "
            f"ExecuTorch kernels ({exc})"
        ) from exc
    load_executorch_ops()
