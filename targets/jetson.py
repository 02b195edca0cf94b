"""NVIDIA Jetson boards: fp16 ONNX through onnxruntime's TensorRT/CUDA providers, torch CUDA."""

from avedge.targets.registry import register
from avedge.targets.target import Budgets, Target

JETSON_ORIN = register(Target(
    name="jetson-orin",
    description="Jetson Orin (sm_87): fp16 ONNX on TensorRT/CUDA providers, torch CUDA",
    backends=("onnxruntime-tensorrt", "onnxruntime-cuda", "torch-cuda"),
    default_recipe="fp16",
    precision="fp16",
    threads=None,
    budgets=Budgets(ram_mb=4096.0),
    cuda_arch="sm_87",
))
