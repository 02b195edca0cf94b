"""8-bit dynamic activations + 4-bit grouped weights ("8da4w") through torchao's own
`Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=
PerGroup(group_size))`: nn.Linear weights become int4 values with one scale per group of
`group_size` input columns; activations are quantized per token at run time.

Module-level (a quantize_ handler): every format sees the torchao module. Measured on a
2-layer MLP (64 -> 256 -> 64, torch 2.13, torchao 0.18, executorch 1.5, onnxruntime 1.32):
- .pte (XNNPACK, subclass flattened by `plain_weights`): delegated to XNNPACK's 4-bit
  kernels, 23 KB vs 135 KB fp32; the ExecuTorch runtime matches eager torchao to 4.4e-3
  of the output scale.
- .onnx: exports as float arithmetic (Round/Clip for the activations, int8 initializers
  holding the int4 values, dequantized by Mul/Sub): matches eager torchao to 2e-7, but no
  4-bit kernels and no packing, so the file is int8-sized and nothing runs faster.
- .pt2: the torch program matches eager torchao exactly.
Layers whose input width is not a multiple of `group_size` stay float (the report counts
them as float compute ops).
"""

from __future__ import annotations

from dataclasses import dataclass

from avedge.quantize.api import register_handler
from avedge.quantize.configs import register_config
from avedge.runtime.errors import AvedgeError


@register_config
@dataclass(frozen=True)
class Int8DynActInt4WeightConfig:
    """int4 nn.Linear weights in groups of `group_size` input columns, int8 dynamic
    activations (torchao). Convolutions stay float."""

    group_size: int = 32

    def __post_init__(self):
        if self.group_size not in (16, 32, 64, 128, 256):
            raise ValueError(f"group_size must be one of 16, 32, 64, 128, 256 (XNNPACK's "
                             f"blockwise kernels), got {self.group_size!r}")

    def to_torchao(self):
        import torch
        from torchao.quantization import Int8DynamicActivationIntxWeightConfig, PerGroup

        return Int8DynamicActivationIntxWeightConfig(
            weight_dtype=torch.int4, weight_granularity=PerGroup(self.group_size))


@register_handler(Int8DynActInt4WeightConfig)
def int8_dyn_act_int4_weight(model, config: Int8DynActInt4WeightConfig):
    from torch import nn
    from torchao.quantization import quantize_ as torchao_quantize_

    def fits(module, _fqn) -> bool:
        return isinstance(module, nn.Linear) and module.in_features % config.group_size == 0

    if not any(fits(m, n) for n, m in model.named_modules()):
        raise AvedgeError(f"Int8DynActInt4WeightConfig quantizes nn.Linear weights in groups "
                          f"of {config.group_size} input columns and {type(model).__name__} "
                          f"has no such layer; use int8-static for convolutions")
    torchao_quantize_(model, config.to_torchao(), filter_fn=fits)
    return model
