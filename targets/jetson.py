"""NVIDIA Jetson boards: fp16 ONNX through onnxruntime's TensorRT/CUDA providers, torch CUDA.

A board is one line: `register(jetson_board(name, cuda_arch, ram_mb))`.
"""

from avedge.targets.registry import register
from avedge.targets.target import Budgets, Target


def jetson_board(name: str, what: str, cuda_arch: str, ram_mb: float) -> Target:
    """A Jetson module: its GPU architecture (e.g. "sm_87") and the RAM a model may use."""
    return Target(name=name,
                  description=f"{what} ({cuda_arch}): fp16 ONNX on TensorRT/CUDA providers, "
                              f"torch CUDA",
                  backends=("onnxruntime-tensorrt", "onnxruntime-cuda", "torch-cuda"),
                  default_recipe="fp16", precision="fp16", threads=None,
                  budgets=Budgets(ram_mb=ram_mb), cuda_arch=cuda_arch)


register(jetson_board("jetson-orin", "Jetson Orin", cuda_arch="sm_87", ram_mb=4096.0))
