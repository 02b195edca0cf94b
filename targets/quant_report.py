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


# Ops a weight may pass through between its stored form and the compute op (a weight-only
# int8 weight is cast to float, and often transposed, right before its matmul).
ONNX_PASS = {"Cast", "Transpose", "Reshape", "Identity"}
TORCH_PASS = ("to", "_to_copy", "t", "permute", "transpose", "view", "reshape", "clone",
              "contiguous", "_assert_tensor_metadata")


def onnx_report(path: Path) -> dict:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {out: n for n in graph.node for out in n.output}
    int8_inits = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.INT8}

    def int8_weight(name: str) -> bool:
        # QDQ format: the weight arrives through a DequantizeLinear of int8 data; weight-only:
        # through a Cast of an int8 initializer.
        for _ in range(4):
            if name in int8_inits:
                return True
            node = producer.get(name)
            if node is None:
                return False
            if node.op_type == "DequantizeLinear":
                return True
            if node.op_type not in ONNX_PASS or not node.input:
                return False
            name = node.input[0]
        return False

    int8 = flt = 0
    for n in graph.node:
        if n.op_type in ONNX_INT8:
            int8 += 1
        elif n.op_type in ONNX_COMPUTE:
            quantized = len(n.input) > 1 and int8_weight(n.input[1])
            int8, flt = int8 + quantized, flt + (not quantized)
    return {"int8_compute_ops": int8, "float_compute_ops": flt}


def torch_graph_report(graph_module) -> dict:
    """Compute ops whose weight comes through a dequantize (PT2E) or is stored as int8
    (weight-only)."""
    int8 = flt = 0
    for n in graph_module.graph.nodes:
        name = getattr(n.target, "__name__", str(n.target)).split(".")[0]
        if n.op != "call_function" or name not in TORCH_COMPUTE:
            continue
        weight = n.args[1] if len(n.args) > 1 else None
        quantized = _int8_weight(weight, graph_module)
        int8, flt = int8 + quantized, flt + (not quantized)
    return {"int8_compute_ops": int8, "float_compute_ops": flt}


def _int8_weight(node, graph_module) -> bool:
    import torch

    for _ in range(4):
        if getattr(node, "op", None) == "get_attr":
            t = graph_module
            for part in str(node.target).split("."):
                t = getattr(t, part, None)
            return getattr(t, "dtype", None) == torch.int8
        if getattr(node, "op", None) != "call_function":
            return False
        target = getattr(node.target, "__name__", str(node.target))
        if "dequantize" in target:
            return True
        val = node.meta.get("val")
        if getattr(val, "dtype", None) == torch.int8:
            return True
        if target.split(".")[0] not in TORCH_PASS or not node.args:
            return False
        node = node.args[0]
    return False
