"""How much of a lowered graph really computes in int8.

A recipe name is an intent; what the quantizer did depends on the ops (dynamic int8
skips convs on XNNPACK, for one). Export records, per file, how many compute ops
(conv, matmul, linear) take int8 weights and how many stay float, and, when some of those
integer weights hold only 4-bit values (8da4w: torchao stores int4 in int8 containers),
how many: "int4_weight_ops".
"""

from __future__ import annotations

from pathlib import Path

ONNX_COMPUTE = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
ONNX_INT8 = {"ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul"}
TORCH_COMPUTE = ("conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "linear",
                 "matmul", "mm", "addmm", "bmm")


# Ops a weight may pass through between its stored form and the compute op (a weight-only
# int8 weight is cast to float, and often transposed, right before its matmul; torchao's
# intx weights are dequantized in float arithmetic: (q - zero) * scale).
ONNX_PASS = {"Cast", "Transpose", "Reshape", "Identity", "Sub", "Mul"}
WEIGHT_HOPS = 8


def _four_bit(values) -> bool:
    """Integer weights whose values all lie in int4's range [-8, 7]."""
    import numpy as np

    a = np.asarray(values)
    return a.size >= 16 and int(a.min()) >= -8 and int(a.max()) <= 7
TORCH_PASS = ("to", "_to_copy", "t", "permute", "transpose", "view", "reshape", "clone",
              "contiguous", "_assert_tensor_metadata")


def onnx_report(path: Path) -> dict:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {out: n for n in graph.node for out in n.output}
    int8_inits = {i.name: i for i in graph.initializer if i.data_type == onnx.TensorProto.INT8}

    def int8_weight(name: str) -> str | None:
        """"int8" / "int4" (the values an int8 weight holds), or None for a float weight."""
        # QDQ format: the weight arrives through a DequantizeLinear of int8 data; weight-only:
        # through a Cast of an int8 initializer; torchao intx: Cast, Sub, Mul of one.
        for _ in range(WEIGHT_HOPS):
            if name in int8_inits:
                return "int4" if _four_bit(numpy_helper.to_array(int8_inits[name])) else "int8"
            node = producer.get(name)
            if node is None:
                return None
            if node.op_type == "DequantizeLinear":
                return "int8"
            if node.op_type not in ONNX_PASS or not node.input:
                return None
            name = node.input[0]
        return None

    int8 = flt = int4 = 0
    for n in graph.node:
        if n.op_type in ONNX_INT8:
            int8 += 1
        elif n.op_type in ONNX_COMPUTE:
            kind = int8_weight(n.input[1]) if len(n.input) > 1 else None
            int8, flt, int4 = int8 + bool(kind), flt + (not kind), int4 + (kind == "int4")
    return _report(int8, flt, int4)


def _report(int8: int, flt: int, int4: int) -> dict:
    out = {"int8_compute_ops": int8, "float_compute_ops": flt}
    if int4:
        out["int4_weight_ops"] = int4  # of the int8_compute_ops
    return out


def torch_graph_report(graph_module) -> dict:
    """Compute ops whose weight comes through a dequantize (PT2E) or is stored as int8
    (weight-only)."""
    int8 = flt = int4 = 0
    for n in graph_module.graph.nodes:
        name = getattr(n.target, "__name__", str(n.target)).split(".")[0]
        if n.op != "call_function" or name not in TORCH_COMPUTE:
            continue
        weight = n.args[1] if len(n.args) > 1 else None
        kind = _int8_weight(weight, graph_module)
        int8, flt, int4 = int8 + bool(kind), flt + (not kind), int4 + (kind == "int4")
    return _report(int8, flt, int4)


def _attr(graph_module, node):
    t = graph_module
    for part in str(node.target).split("."):
        t = getattr(t, part, None)
    return t


def _int8_weight(node, graph_module) -> str | None:
    """"int8" / "int4" (the values an int8 weight holds), or None for a float weight."""
    import torch

    def kind(t) -> str:
        return "int4" if _four_bit(t.detach().cpu().numpy()) else "int8"

    for _ in range(4):
        if getattr(node, "op", None) == "get_attr":
            t = _attr(graph_module, node)
            return kind(t) if getattr(t, "dtype", None) == torch.int8 else None
        if getattr(node, "op", None) != "call_function":
            return None
        target = getattr(node.target, "__name__", str(node.target))
        if "dequantize" in target:
            src = node.args[0] if node.args else None
            t = _attr(graph_module, src) if getattr(src, "op", None) == "get_attr" else None
            return kind(t) if getattr(t, "dtype", None) == torch.int8 else "int8"
        val = node.meta.get("val")
        if getattr(val, "dtype", None) == torch.int8:
            return "int8"
        if target.split(".")[0] not in TORCH_PASS or not node.args:
            return None
        node = node.args[0]
    return None
