"""The torch path: a torch.export program (.pt2), on the CPU or a CUDA GPU."""

from __future__ import annotations

import importlib.util
import io

import numpy as np
from avedge.runtime.backends.base import Backend
from avedge.runtime.errors import ArtifactError


class TorchCpuBackend(Backend):
    name = "torch"
    format = "pt2"
    device = "cpu"

    @classmethod
    def unavailable_reason(cls):
        if importlib.util.find_spec("torch") is None:
            return "the torch package is not installed"
        return None

    def __init__(self, model_bytes, manifest, threads):
        import torch

        self._torch = torch
        if threads:
            torch.set_num_threads(int(threads))
        if manifest.custom_ops:
            self._register_custom_ops(manifest.custom_ops)
        try:
            program = torch.export.load(io.BytesIO(model_bytes))
        except Exception as exc:  # torch raises several types for a bad archive
            raise ArtifactError(f"torch could not load the exported program: {exc}") from exc
        self._module = program.module().to(self.device)

    def _register_custom_ops(self, ops: list[str]) -> None:
        """A program with avedge ops needs their schemas and kernels before it loads."""
        try:
            import avedge.cpp_kernels as kernels
        except ImportError as exc:
            raise ArtifactError(f"this program uses custom ops {ops}, but avedge.cpp_kernels "
                                f"is not importable ({exc})") from exc
        kernels.ensure_cuda_loaded() if self.device == "cuda" else kernels.ensure_loaded()

    def run(self, inputs):
        torch = self._torch
        with torch.inference_mode():
            args = [torch.from_numpy(np.ascontiguousarray(x)).to(self.device) for x in inputs]
            out = self._module(*args)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().to("cpu").numpy() for o in out]


class TorchCudaBackend(TorchCpuBackend):
    name = "torch-cuda"
    device = "cuda"

    @classmethod
    def unavailable_reason(cls):
        reason = super().unavailable_reason()
        if reason:
            return reason
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU is visible to torch"
        return None
