"""Lower to ONNX with torch's exporter; int8 by onnxruntime's quantizers (dynamic, or
static QDQ calibrated on the module's calibration inputs; named layers may stay float),
fp16 by exporting a half-precision copy whose edges cast to and from fp32."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path

import torch
from avedge.quantize import Fp16Config, Int8DynamicConfig, Int8StaticConfig, Recipe

ONNX_OPSET = 18


class HalfInside(torch.nn.Module):
    """fp32 in, half-precision (fp16 or bf16) arithmetic, fp32 out: callers keep feeding
    fp32."""

    def __init__(self, module, dtype=torch.float16):
        super().__init__()
        self.inner = module.to(dtype)
        self.dtype = dtype

    def forward(self, *args):
        out = self.inner(*(a.to(self.dtype) if a.is_floating_point() else a for a in args))
        if isinstance(out, (tuple, list)):
            return tuple(o.float() if o.is_floating_point() else o for o in out)
        return out.float()



def lower_onnx(module, example_inputs: tuple, input_names: list[str], output_names: list[str],
               recipe: Recipe, path: Path, custom_ops: list[str],
               keep_float: tuple[str, ...] = ()) -> dict | None:
    """Write the .onnx; -> the calibration provenance of static int8, else None."""
    import copy

    if recipe.find(Fp16Config):
        module = HalfInside(copy.deepcopy(module)).eval()
    table = None
    if custom_ops:
        from avedge.cpp_kernels import onnx_translation_table

        table = onnx_translation_table()
    int8 = recipe.find(Int8DynamicConfig) or recipe.find(Int8StaticConfig)
    with tempfile.TemporaryDirectory() as tmp:
        fp_path = Path(tmp) / "fp.onnx" if int8 else path
        _quiet_export(module, example_inputs, fp_path, input_names, output_names, table)
        if int8:
            from avedge.quantize.onnx_int8 import quantize_onnx_int8

            return quantize_onnx_int8(fp_path, path, int8, module, example_inputs, input_names,
                                      keep_float)
    return None


def _quiet_export(module, example_inputs, path, input_names, output_names, table) -> None:
    # The exporter prints progress lines and torchvision notices; they are not for users.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    kwargs = {"custom_translation_table": table} if table else {}
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(module, tuple(example_inputs), str(path), input_names=input_names,
                          output_names=output_names, dynamo=True, external_data=False,
                          opset_version=ONNX_OPSET, verbose=False, **kwargs)
