"""onnxruntime (.onnx) on the CPU, CUDA or TensorRT execution providers."""

from __future__ import annotations

import importlib.util

import numpy as np
from avedge.runtime.backends.base import Backend
from avedge.runtime.errors import ArtifactError


class _OrtBackend(Backend):
    format = "onnx"
    provider = "CPUExecutionProvider"

    @classmethod
    def unavailable_reason(cls):
        if importlib.util.find_spec("onnxruntime") is None:
            return "the onnxruntime package is not installed (pip install onnxruntime)"
        import onnxruntime as ort

        have = ort.get_available_providers()
        if cls.provider not in have:
            return f"onnxruntime here lacks {cls.provider} (it has {', '.join(have)})"
        return None

    def __init__(self, model_bytes, manifest, threads):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # warnings about unused initializers etc. are not faults
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        providers = [self.provider] + (["CPUExecutionProvider"] if self.provider != "CPUExecutionProvider" else [])
        try:
            self._sess = ort.InferenceSession(model_bytes, sess_options=opts, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise ArtifactError(f"onnxruntime could not load the model: {exc}") from exc
        self._names = [i.name for i in self._sess.get_inputs()]

    def run(self, inputs):
        return self._sess.run(None, dict(zip(self._names, (np.ascontiguousarray(x) for x in inputs))))


class OrtCpuBackend(_OrtBackend):
    name = "onnxruntime"
    provider = "CPUExecutionProvider"


class OrtCudaBackend(_OrtBackend):
    name = "onnxruntime-cuda"
    provider = "CUDAExecutionProvider"


class OrtTensorrtBackend(_OrtBackend):
    name = "onnxruntime-tensorrt"
    provider = "TensorrtExecutionProvider"
