"""Full-precision GPU path: the exported torch program on CUDA. A board is one line."""

from avedge.targets.registry import register
from avedge.targets.target import Target


def cuda_gpu(name: str, what: str, precision: str = "fp32") -> Target:
    """A CUDA GPU running the torch.export program at `precision`."""
    return Target(name=name, description=f"{what}, {precision}: torch.export program on CUDA",
                  backends=("torch-cuda",), default_recipe=precision, precision=precision,
                  threads=None)


register(cuda_gpu("gpu", "NVIDIA GPU"))
