"""Compression configs: one small frozen dataclass per technique, validated in
__post_init__, JSON round-trippable (`config_to_json` / `config_from_json`).

A config is either applied to the nn.Module before lowering (pruning, low-rank,
weight-only quantization — `quantize_(model, config)`), or consumed by a format's
lowering step (dynamic int8 is PT2E for `.pte`, onnxruntime's quantizer for `.onnx`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

_CONFIG_TYPES: dict[str, type] = {}
# Int8StaticConfig.ops: int8 on the weighted operators only, or on every quantizable one.
STATIC_OPS = ("compute", "all")


def register_config(cls):
    _CONFIG_TYPES[cls.__name__] = cls
    return cls


@register_config
@dataclass(frozen=True)
class Int8DynamicConfig:
    """int8 weights, activations quantized at run time per call (dynamic).

    The usual first step for speech models on CPUs: no calibration data needed, and
    the activation ranges of streaming audio vary too much for one static scale.
    """

    per_channel: bool = True  # one weight scale per output channel

    def __post_init__(self):
        if not isinstance(self.per_channel, bool):
            raise ValueError(f"per_channel must be a bool, got {self.per_channel!r}")  # noqa: TRY004


@register_config
@dataclass(frozen=True)
class Int8StaticConfig:
    """int8 weights and activations with scales fixed by calibration.

    Dynamic int8 only reaches linear layers (XNNPACK's dynamic quantizer skips convs,
    onnxruntime's ConvInteger is slower than fp32 conv); a conv-heavy model needs
    static scales. Calibration uses `module.calibration_inputs()` when the model
    provides it (real signals, real state), else perturbed copies of the example inputs.

    `ops`: which operators get int8 on the CPU lowerings (.pte PT2E/XNNPACK, .onnx
    onnxruntime QDQ). "compute" (default): the weighted ones (Linear/MatMul/Gemm, Conv,
    ConvTranspose), where the multiply-accumulates and the weights are; elementwise ops
    (add, mul, cat, ...) between them stay fp32, as under dynamic int8. "all": every op
    the quantizer knows, elementwise ones included. Measured on the speech extractor
    (benchmarks/RESULTS.md, "Static int8 of the speech extractor"): "all" cost 5 dB
    SI-SDRi, "compute" ~0.1 dB. One per-tensor int8 scale holds ~40 dB of range, and the
    elementwise chains of a signal model carry far more: spectra and powers (STFT bins
    span 80-120 dB; a power scale of 1.4 rounds every quiet bin to 0 and log() turns that
    into -inf clamped to the floor), the constants folded into them (an eps of 1e-6
    quantized with that scale is 0), mask x spectrum products, and a residual stream whose
    concatenations tie every block's state to the widest one's scale. Integer-only
    devices (the Arm lowerings) quantize every op whatever this says.
    """

    per_channel: bool = True
    calibration_batches: int = 16
    ops: str = "compute"

    def __post_init__(self):
        if not isinstance(self.per_channel, bool):
            raise ValueError(f"per_channel must be a bool, got {self.per_channel!r}")  # noqa: TRY004
        if self.ops not in STATIC_OPS:
            raise ValueError(f"ops must be one of {', '.join(STATIC_OPS)}, got {self.ops!r}")
        if not (isinstance(self.calibration_batches, int) and self.calibration_batches >= 1):
            raise ValueError(f"calibration_batches must be an int >= 1, got "
                             f"{self.calibration_batches!r}")


@register_config
@dataclass(frozen=True)
class Fp16Config:
    """Half-precision weights and arithmetic; inputs and outputs stay fp32 so callers
    need not care (the cast happens at the graph's edges)."""

    keep_io_fp32: bool = True

    def __post_init__(self):
        if not self.keep_io_fp32:
            raise ValueError("Fp16Config(keep_io_fp32=False) is not supported: artifacts take fp32")


@register_config
@dataclass(frozen=True)
class Bf16Config:
    """bfloat16 weights and arithmetic, fp32 at the graph's edges (like Fp16Config).

    bf16 keeps fp32's exponent range (no overflow where fp16 would) at 8 bits of mantissa.
    Only the torch program (.pt2) takes it: measured (onnxruntime 1.32, executorch 1.5),
    onnxruntime's CPU provider has no bf16 Gemm kernel (the session refuses to load) and
    XNNPACK does not delegate bf16 (the .pte ran on portable kernels); targets/lowering.py
    declares this."""

    keep_io_fp32: bool = True

    def __post_init__(self):
        if not self.keep_io_fp32:
            raise ValueError("Bf16Config(keep_io_fp32=False) is not supported: artifacts take fp32")


@register_config
@dataclass(frozen=True)
class KeepFloatConfig:
    """Mixed precision: layers that stay fp32 while the recipe's int8 config quantizes the
    rest (the sensitive ones: quantize/sensitivity.py ranks them).

    `layers` names modules (`named_modules()` names, e.g. "blocks.3.fc1"); `top` = K keeps
    the K layers whose int8 fake-quant alone moves the output most on the calibration
    inputs (sensitivity.rank_by_output_error, computed at export and recorded in the
    manifest). Both may be given. Consumed with Int8DynamicConfig / Int8StaticConfig by the
    .pte (PT2E: the quantizer skips those modules) and .onnx (onnxruntime's
    nodes_to_exclude) lowerings."""

    layers: tuple[str, ...] = ()
    top: int = 0

    def __post_init__(self):
        if isinstance(self.layers, list):  # from JSON
            object.__setattr__(self, "layers", tuple(self.layers))
        if not (isinstance(self.layers, tuple) and all(isinstance(n, str) and n
                                                        for n in self.layers)):
            raise ValueError(f"layers must be a tuple of module names, got {self.layers!r}")
        if not (isinstance(self.top, int) and not isinstance(self.top, bool) and self.top >= 0):
            raise ValueError(f"top must be an int >= 0, got {self.top!r}")
        if not self.layers and not self.top:
            raise ValueError("KeepFloatConfig keeps nothing: give layers=(names...) or top=K >= 1")


def config_to_json(config) -> dict:
    return {"type": type(config).__name__, **dataclasses.asdict(config)}


def config_from_json(data: dict):
    data = dict(data)
    name = data.pop("type", None)
    if name not in _CONFIG_TYPES:
        raise ValueError(f"unknown compression config type {name!r}; known: {sorted(_CONFIG_TYPES)}")
    return _CONFIG_TYPES[name](**data)
