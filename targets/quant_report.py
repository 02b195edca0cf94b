"""How much of a lowered graph really computes in int8.

A recipe name is an intent; what the quantizer did depends on the ops (dynamic int8
skips convs on XNNPACK, for one). Export records, per file, how many compute ops
(conv, matmul, linear) take int8 weights and how many stay float.
"""

from __future__ import annotations

from pathlib import Path

ONNX_COMPUTE = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
ONNX_INT8 = {"ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul"}
TORCH_COMPUTE = ("conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "linear",
                 "matmul", "mm", "addmm", "bmm")


def onnx_report(path: Path) -> dict:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    produced_by = {out: n.op_type for n in graph.node for out in n.output}
    int8 = flt = 0
    for n in graph.node:
        if n.op_type in ONNX_INT8:
            int8 += 1
        elif n.op_type in ONNX_COMPUTE:
            # QDQ format: the weight arrives through a DequantizeLinear of int8 data.
            quantized = len(n.input) > 1 and produced_by.get(n.input[1]) == "DequantizeLinear"
            int8, flt = int8 + quantized, flt + (not quantized)
    return {"int8_compute_ops": int8, "float_compute_ops": flt}


def torch_graph_report(graph_module) -> dict:
    """For a PT2E-converted graph: compute ops whose weight comes through a dequantize."""
    int8 = flt = 0
    for n in graph_module.graph.nodes:
        name = getattr(n.target, "__name__", str(n.target)).split(".")[0]
        if n.op != "call_function" or name not in TORCH_COMPUTE:
            continue
        weight = n.args[1] if len(n.args) > 1 else None
        quantized = getattr(weight, "op", None) == "call_function" and "dequantize" in str(
            weight.target)
        int8, flt = int8 + quantized, flt + (not quantized)
    return {"int8_compute_ops": int8, "float_compute_ops": flt}
