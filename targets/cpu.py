"""Host CPUs (x86-64, Arm Cortex-A application cores): ExecuTorch+XNNPACK and onnxruntime."""

from avedge.targets.registry import register
from avedge.targets.target import Target

CPU = register(Target(
    name="cpu",
    description="host CPU: ExecuTorch + XNNPACK and onnxruntime CPU, fp32",
    backends=("executorch", "onnxruntime"),
    default_recipe="fp32",
    precision="fp32",
    threads=None,
))
