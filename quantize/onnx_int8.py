"""int8 for ONNX: onnxruntime's own quantizer over the exported fp32 graph —
dynamic (MatMulInteger/ConvInteger), or static QDQ with calibration."""

from __future__ import annotations

import logging
from pathlib import Path

from avedge.quantize.calibration import calibration_inputs
from avedge.quantize.configs import Int8DynamicConfig, Int8StaticConfig
from avedge.runtime.errors import AvedgeError


def quantize_onnx_int8(src: Path, dst: Path, config, module=None, example_inputs=(),
                       input_names=()) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    # ORT logs a "consider pre-processing" warning on every call; it is advice, not a fault.
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
    if isinstance(config, Int8DynamicConfig):
        try:
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                             per_channel=config.per_channel)
        except Exception as exc:  # ORT raises onnx InferenceError, RuntimeError, ...
            # Measured with onnxruntime 1.31: a Linear on a 2-D input exports as Gemm, and
            # the dynamic quantizer's Gemm rewrite failed shape inference (1.32 takes it).
            # Static QDQ works on both.
            raise AvedgeError(
                f"onnxruntime's dynamic int8 quantizer failed on this graph "
                f"({str(exc).splitlines()[0][:200]}); onnxruntime before 1.32 fails on Gemm "
                f"nodes (a Linear layer applied to a 2-D input). Use --recipe int8-static, "
                f"upgrade onnxruntime, or apply Linear layers to 3-D inputs (B, T, C)") from exc
        return
    assert isinstance(config, Int8StaticConfig)
    batches = calibration_inputs(module, example_inputs, config.calibration_batches)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{n: x.detach().numpy() for n, x in zip(input_names, b)}
                             for b in batches])

        def get_next(self):
            return next(self._it, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=config.per_channel, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8)
