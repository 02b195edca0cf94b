"""Dynamic int8 for ONNX: onnxruntime's own quantizer over the exported fp32 graph."""

from __future__ import annotations

import logging
from pathlib import Path

from avedge.quantize.configs import Int8DynamicConfig


def quantize_onnx_dynamic_int8(src: Path, dst: Path, config: Int8DynamicConfig) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # ORT logs a "consider pre-processing" warning on every call; it is advice, not a fault.
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
    quantize_dynamic(
        str(src), str(dst), weight_type=QuantType.QInt8, per_channel=config.per_channel
    )
