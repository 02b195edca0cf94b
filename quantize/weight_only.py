"""Weight-only int8 through torchao's own config: int8 weights (one scale per output row,
or one per tensor), float activations and arithmetic.

`Int8WeightOnlyConfig` here is avedge's JSON-recordable form; the handler forwards it to
`torchao.quantization.Int8WeightOnlyConfig` via torchao's `quantize_`, which swaps each
nn.Linear weight for a torchao tensor subclass (int8 data + scales).

Lowering: the subclass must be flattened before ExecuTorch sees it. Measured (torch 2.13,
torchao 0.18, executorch 1.5): the subclass program through XNNPACK ran at a relative
error ~1e6; flattened into plain int8 tensors (torchao's `unwrap_tensor_subclass`) the
same .pte matches eager torchao (~7e-3) and stores int8 weights. ONNX takes the subclass
form as is (its constant folding would turn the flattened form back into fp32 weights).
"""

from __future__ import annotations

from dataclasses import dataclass

from avedge.quantize.api import register_handler
from avedge.quantize.configs import register_config
from avedge.runtime.errors import AvedgeError


@register_config
@dataclass(frozen=True)
class Int8WeightOnlyConfig:
    """int8 nn.Linear weights, float compute (torchao). Convolutions stay float."""

    per_channel: bool = True  # one scale per output row (torchao PerRow) vs per tensor

    def __post_init__(self):
        if not isinstance(self.per_channel, bool):
            raise ValueError(f"per_channel must be a bool, got {self.per_channel!r}")  # noqa: TRY004

    def to_torchao(self):
        from torchao.quantization import Int8WeightOnlyConfig as TorchaoConfig
        from torchao.quantization import PerRow, PerTensor

        # set_inductor_config would change global torch._inductor settings: not ours to touch.
        return TorchaoConfig(granularity=PerRow() if self.per_channel else PerTensor(),
                             set_inductor_config=False)


@register_handler(Int8WeightOnlyConfig)
def int8_weight_only(model, config: Int8WeightOnlyConfig):
    from torch import nn
    from torchao.quantization import quantize_ as torchao_quantize_

    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise AvedgeError(f"Int8WeightOnlyConfig quantizes nn.Linear weights and "
                          f"{type(model).__name__} has none; use int8-static for convolutions")
    torchao_quantize_(model, config.to_torchao())
    return model


def has_tensor_subclass_weights(module) -> bool:
    import torch

    return any(type(t) not in (torch.Tensor, torch.nn.Parameter)
               for t in (*module.parameters(), *module.buffers()))


def plain_weights(module):
    """`module` if its weights are plain tensors, else a copy whose torchao tensor
    subclasses are flattened into plain tensors (int8 data and scales as parametrizations)
    that torch.export, ExecuTorch and safetensors handle."""
    import copy

    if not has_tensor_subclass_weights(module):
        return module
    from torchao.utils import unwrap_tensor_subclass

    module = copy.deepcopy(module)
    unwrap_tensor_subclass(module)
    return module
