"""int8 for ExecuTorch: PT2E with XNNPACK's quantizer, dynamic or static (calibrated),
optionally leaving named modules in float (mixed precision)."""

from __future__ import annotations

from avedge.quantize.calibration import calibration_set
from avedge.quantize.configs import Int8DynamicConfig, Int8StaticConfig


def quantize_pt2e_int8(module, example_inputs, config: Int8DynamicConfig | Int8StaticConfig,
                       keep_float: tuple[str, ...] = ()):
    """-> (converted GraphModule with q/dq ops that XNNPACK lowers to int8 kernels,
    calibration provenance or None for dynamic). `keep_float`: module names
    (`named_modules()`) the quantizer leaves unannotated, so they stay fp32."""
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
    if keep_float:
        from torchao.quantization.pt2e.quantizer.utils import get_module_name_filter

        # set_module_name(name, None) is refused by executorch 1.5's XNNPACKQuantizer ("not
        # supported yet"); its filter function leaves the nodes of those modules unannotated.
        kept = [get_module_name_filter(name) for name in keep_float]
        quantizer.set_filter_function(lambda node: not any(f(node) for f in kept))
    graph = torch.export.export(module, tuple(example_inputs)).module()
    prepared = prepare_pt2e(graph, quantizer)
    provenance = None
    if dynamic:
        prepared(*example_inputs)  # one pass to trace observers; scales come at run time
    else:
        batches, provenance = calibration_set(module, example_inputs, config.calibration_batches)
        for batch in batches:
            prepared(*batch)
    return convert_pt2e(prepared), provenance
