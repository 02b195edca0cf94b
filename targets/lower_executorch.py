"""Lower to ExecuTorch: torch.export -> (PT2E int8) -> XNNPACK partition -> .pte."""

from __future__ import annotations

from pathlib import Path

import torch
from avedge.quantize import Fp16Config, Int8DynamicConfig, Int8StaticConfig, Recipe
from avedge.quantize.weight_only import plain_weights
from avedge.targets.quant_report import torch_graph_report


def lower_pte(module, example_inputs: tuple, recipe: Recipe, path: Path,
              custom_ops: list[str], keep_float: tuple[str, ...] = ()) -> dict:
    """Write the .pte; return how many compute ops run in int8 vs float (and, for static
    int8, where the calibration data came from). `keep_float`: modules left fp32."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    # Which configs reach here is decided once, in targets/lowering.py (prepare): .pte takes
    # dynamic and static int8 (with layers kept float) and fp16; module-level configs were
    # applied to `module` already.
    module = plain_weights(module)  # torchao weight-only subclasses -> plain tensors
    if recipe.find(Fp16Config):
        import copy

        from avedge.targets.lower_onnx import HalfInside

        # XNNPACK delegates fp16 (measured on an MLP: 4e-4 of the output scale, half the
        # file); the edges stay fp32 for callers.
        module = HalfInside(copy.deepcopy(module), torch.float16).eval()
    int8 = recipe.find(Int8DynamicConfig) or recipe.find(Int8StaticConfig)
    calibration = None
    if int8:
        from avedge.quantize.pt2e_int8 import quantize_pt2e_int8

        module, calibration = quantize_pt2e_int8(module, example_inputs, int8, keep_float)
    report = torch_graph_report(module if int8 else torch.export.export(
        module, tuple(example_inputs)).module())
    if calibration is not None:
        report["calibration"] = calibration
    program = torch.export.export(module, tuple(example_inputs))
    # Custom avedge ops are not core ATen: they stay outside the delegate as ExecuTorch
    # kernels, which the edge dialect's validity check would otherwise reject.
    config = EdgeCompileConfig(_check_ir_validity=not custom_ops)
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                       compile_config=config)
    path.write_bytes(edge.to_executorch().buffer)
    return report


def memory_plan(pte: bytes) -> dict:
    """What a device must reserve for one method call besides the constant weights: the
    planned activation arena (ExecuTorch's memory planning, summed over its buffers).
    Delegate scratch (e.g. XNNPACK's workspace) is allocated by the delegate and not
    included."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(pte)
    program = getattr(program, "program", program)
    plan = program.execution_plan[0]
    return {"activation_arena_bytes": int(sum(plan.non_const_buffer_sizes)),
            "note": "ExecuTorch planned arena; delegate scratch not included"}
