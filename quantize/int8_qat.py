"""Quantization-aware fine-tuning before dynamic int8 (`int8-qat`): torchao's QAT
fake-quantizes every nn.Linear the way the int8 lowering will run it, the model is
fine-tuned for a few steps with those fake quantizers in place, then they are removed and
the adapted float weights go on to the recipe's Int8DynamicConfig lowering.

    recipe "int8-qat" = (Int8QatConfig(), Int8DynamicConfig())

The fake quantizers are torchao's (`QATConfig(activation_config=..., weight_config=...,
step="prepare")`, then `step="convert"`): int8 symmetric weights with one scale per output
channel, as XNNPACK's and onnxruntime's int8 weights; int8 asymmetric activations per
token, computed at run time (torchao 0.18's IntxFakeQuantizeConfig has no per-tensor
granularity; per token is its scheme for dynamic activations and the one XNNPACK's qd8
kernels use per row). Convolutions stay float in both, as dynamic int8 leaves them.

The loss is distillation from the float model (quantize/distill.py: no labels, no eval
data; the family's `distill_loss` where it has one) on its calibration inputs, so any
family or user module with calibration_inputs() or example inputs can take it. `distill`
keeps the starting weights if fine-tuning did not lower that loss.
"""

from __future__ import annotations

from dataclasses import dataclass

from avedge.quantize.api import recipe_context, register_handler
from avedge.quantize.configs import register_config
from avedge.runtime.errors import AvedgeError


@register_config
@dataclass(frozen=True)
class Int8QatConfig:
    """Quantization-aware fine-tuning for dynamic int8: `steps` Adam steps at `lr` with
    torchao's int8 fake quantizers on every nn.Linear, towards the float model's outputs on
    `batches` of its calibration inputs; the fake quantizers are removed after (the int8
    config that follows quantizes the adapted weights)."""

    steps: int = 200
    lr: float = 1e-4
    batches: int = 32

    def __post_init__(self):
        for name in ("steps", "batches"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (
                0 < self.lr < 1):
            raise ValueError(f"lr must be in (0, 1), got {self.lr!r}")


def qat_config(step: str):
    """torchao's QATConfig for dynamic int8 (`step` "prepare" or "convert")."""
    import torch
    from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig

    if step == "convert":
        return QATConfig(step="convert")
    return QATConfig(
        activation_config=IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False),
        weight_config=IntxFakeQuantizeConfig(torch.int8, "per_channel", is_symmetric=True),
        step="prepare")


def _is_linear(module, _fqn) -> bool:
    from torch import nn

    return type(module) is nn.Linear  # not FakeQuantizedLinear, not a subclass


@register_handler(Int8QatConfig)
def int8_qat(model, config: Int8QatConfig):
    from avedge.quantize.distill import calibration_batches, distill
    from avedge.quantize.weight_only import has_tensor_subclass_weights
    from torchao.quantization import quantize_ as torchao_quantize_

    ctx = recipe_context()
    if ctx.original is None:
        raise AvedgeError("Int8QatConfig fine-tunes towards the float model: use it in a "
                          "recipe (apply_recipe), or call quantize_ inside "
                          "avedge.quantize.api.using(float_model, inputs)")
    if has_tensor_subclass_weights(model):
        raise AvedgeError("Int8QatConfig trains float weights: put it before torchao "
                          "weight-quantizing configs in the recipe")
    if not any(_is_linear(m, n) for n, m in model.named_modules()):
        raise AvedgeError(f"Int8QatConfig fake-quantizes nn.Linear layers and "
                          f"{type(model).__name__} has none")
    inputs = calibration_batches(ctx.original, config.batches, "Int8QatConfig")
    torchao_quantize_(model, qat_config("prepare"), filter_fn=_is_linear)
    try:
        distill(model, ctx.original, inputs, config.steps, config.lr,
                getattr(ctx.original, "distill_loss", None))
    finally:  # back to plain nn.Linear, the adapted weights in them
        torchao_quantize_(model, qat_config("convert"))
    return model
