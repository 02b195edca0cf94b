"""Dynamic int8 for ExecuTorch: PT2E with XNNPACK's quantizer (per-channel weights)."""

from __future__ import annotations

from avedge.quantize.configs import Int8DynamicConfig


def quantize_pt2e_dynamic_int8(module, example_inputs, config: Int8DynamicConfig):
    """-> a converted GraphModule with q/dq ops that XNNPACK lowers to int8 kernels."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=config.per_channel, is_dynamic=True)
    )
    graph = torch.export.export(module, tuple(example_inputs)).module()
    prepared = prepare_pt2e(graph, quantizer)
    prepared(*example_inputs)  # dynamic: one pass only to trace observers, no calibration
    return convert_pt2e(prepared)
