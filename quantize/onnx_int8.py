"""int8 for ONNX: onnxruntime's own quantizer over the exported fp32 graph —
dynamic (`quantize_dynamic`: MatMul/Gemm/1-D Conv, scales per call), or static QDQ
(`quantize_static` with a CalibrationDataReader over the module's calibration inputs) —
optionally leaving the nodes of named modules in float (`nodes_to_exclude`)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

from avedge.quantize.calibration import calibration_set
from avedge.quantize.configs import Int8DynamicConfig, Int8StaticConfig
from avedge.quantize.pt2e_int8 import fixed_weights
from avedge.runtime.errors import AvedgeError

# torch's dynamo exporter records each node's module path in this metadata entry,
# e.g. "['', 'blocks.3', 'blocks.3.fc1', 'linear']".
NAME_SCOPES = "pkg.torch.onnx.name_scopes"
# Dynamic int8 reaches matrix products and 1-D convolutions; 2-D (image) convolutions stay
# float, as XNNPACK's dynamic quantizer leaves convs on the .pte path. onnxruntime's
# ConvInteger has no fast kernel for image convs: on the lip reader's rate-1 graph (1 thread,
# onnxruntime 1.32, this 2-core VM) all-ops dynamic int8 took 143 ms per window against
# 42 ms fp32, with 2-D convs float 41 ms and 5x lower output error. On the speech
# extractor's 1-D STFT conv ConvInteger costs nothing (0.307 vs 0.301 ms per chunk) and
# keeps the hearable file under its 2 MB budget (2.00 vs 2.12 MB).
# The static recipe (QDQ with calibration) quantizes every conv.
DYNAMIC_OPS = ("MatMul", "Gemm", "Conv")
# Static int8 with Int8StaticConfig(ops="compute"): the weighted operators only.
STATIC_COMPUTE_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")


def image_convs(model_path: Path) -> list[str]:
    """Names of the Conv nodes whose weight is 4-D (2-D convolutions)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    ranks = {t.name: len(t.dims) for t in graph.initializer}
    return [n.name for n in graph.node
            if n.op_type == "Conv" and len(n.input) > 1 and ranks.get(n.input[1], 0) == 4]


def nodes_with_weights(model_path: Path, weights: set[str]) -> list[str]:
    """Names of the weighted nodes (STATIC_COMPUTE_OPS) whose weight input is one of the
    named initializers (the exporter keeps a buffer's name: "stft.analysis")."""
    import onnx

    if not weights:
        return []
    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type in STATIC_COMPUTE_OPS
            and len(n.input) > 1 and n.input[1] in weights]


def nodes_of_modules(model_path: Path, modules: tuple[str, ...]) -> list[str]:
    """Names of the ONNX nodes that torch exported from the named modules (or inside them)."""
    import onnx

    if not modules:
        return []
    graph = onnx.load(str(model_path), load_external_data=False).graph
    wanted, out = set(modules), []
    for node in graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == NAME_SCOPES), None)
        if scopes is None:
            continue
        try:
            path = ast.literal_eval(scopes)
        except (ValueError, SyntaxError):
            continue
        if wanted & set(path):
            out.append(node.name)
    return out


def quantize_onnx_int8(src: Path, dst: Path, config, module=None, example_inputs=(),
                       input_names=(), keep_float: tuple[str, ...] = ()) -> dict | None:
    """Quantize `src` into `dst`; -> the calibration provenance (static) or None."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    # ORT logs a "consider pre-processing" warning on every call; it is advice, not a fault.
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
    exclude = nodes_of_modules(src, keep_float)
    if keep_float and not exclude:
        raise AvedgeError(f"none of the layers to keep in float ({', '.join(keep_float)}) "
                          f"names a node of the exported ONNX graph; give module names as "
                          f"named_modules() lists them")
    if isinstance(config, Int8DynamicConfig):
        try:
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                             per_channel=config.per_channel,
                             nodes_to_exclude=exclude + image_convs(src),
                             op_types_to_quantize=list(DYNAMIC_OPS))
        except Exception as exc:  # ORT raises onnx InferenceError, RuntimeError, ...
            # Measured with onnxruntime 1.31: a Linear on a 2-D input exports as Gemm, and
            # the dynamic quantizer's Gemm rewrite failed shape inference (1.32 takes it).
            # Static QDQ works on both.
            raise AvedgeError(
                f"onnxruntime's dynamic int8 quantizer failed on this graph "
                f"({str(exc).splitlines()[0][:200]}); onnxruntime before 1.32 fails on Gemm "
                f"nodes (a Linear layer applied to a 2-D input). Use --recipe int8-static, "
                f"upgrade onnxruntime, or apply Linear layers to 3-D inputs (B, T, C)") from exc
        return None
    assert isinstance(config, Int8StaticConfig)
    batches, provenance = calibration_set(module, example_inputs, config.calibration_batches)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{n: x.detach().numpy() for n, x in zip(input_names, b)}
                             for b in batches])

        def get_next(self):
            return next(self._it, None)

    # ops="compute": onnxruntime's QDQ pass would otherwise also quantize Add, Mul, Concat,
    # ... (every op it has a QDQ rule for); configs.Int8StaticConfig says why not. Ops
    # whose weight is one of the module's buffers (a fixed transform) stay float too
    # (pt2e_int8.fixed_weights says why).
    only = {}
    if config.ops == "compute":
        only = {"op_types_to_quantize": list(STATIC_COMPUTE_OPS)}
        exclude = exclude + nodes_with_weights(src, fixed_weights(module) if module else set())
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=config.per_channel, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, nodes_to_exclude=exclude, **only)
    return provenance
