"""int8 for ExecuTorch: PT2E with XNNPACK's quantizer, dynamic or static (calibrated)."""

from __future__ import annotations

from avedge.quantize.calibration import calibration_inputs
from avedge.quantize.configs import Int8DynamicConfig, Int8StaticConfig


def quantize_pt2e_int8(module, example_inputs, config: Int8DynamicConfig | Int8StaticConfig):
    """-> a converted GraphModule with q/dq ops that XNNPACK lowers to int8 kernels."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    dynamic = isinstance(config, Int8DynamicConfig)
    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=config.per_channel, is_dynamic=dynamic)
    )
    graph = torch.export.export(module, tuple(example_inputs)).module()
    prepared = prepare_pt2e(graph, quantizer)
    if dynamic:
        prepared(*example_inputs)  # one pass to trace observers; scales come at run time
    else:
        for batch in calibration_inputs(module, example_inputs, config.calibration_batches):
            prepared(*batch)
    return convert_pt2e(prepared)
