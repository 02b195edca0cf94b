"""Full-precision GPU path: the exported torch program on CUDA."""

from avedge.targets.registry import register
from avedge.targets.target import Target

GPU = register(Target(
    name="gpu",
    description="NVIDIA GPU, full precision: torch.export program on CUDA",
    backends=("torch-cuda",),
    default_recipe="fp32",
    precision="fp32",
    threads=None,
))
