"""The lowering registry: one function per model-file format.

export() runs, for each format its target needs, `FORMAT_LOWERERS[fmt](job)`; the
lowerer writes its files into `job.out_dir` and returns what they are. Adding a
device family (e.g. an NPU through another ExecuTorch backend) is one new lowerer
registered here and one backend in runtime/backends, not an edit of export().
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from avedge.quantize import Recipe


@dataclass
class LoweringJob:
    module: object  # torch.nn.Module, eval mode
    example_inputs: tuple
    input_names: list[str]
    output_names: list[str]
    recipe: Recipe
    target: object  # Target
    custom_ops: list[str]
    out_dir: Path


@dataclass
class Lowered:
    files: dict[str, str]  # file name (in out_dir) -> format ("pte", "onnx", "safetensors", ...)
    quantization: dict | None = None  # {"int8_compute_ops", "float_compute_ops"}
    manifest: dict = field(default_factory=dict)  # extra top-level manifest keys


def _pte(job: LoweringJob) -> Lowered:
    from avedge.targets.lower_executorch import lower_pte, memory_plan

    report = lower_pte(job.module, job.example_inputs, job.recipe, job.out_dir / "model.pte",
                       job.custom_ops)
    plan = memory_plan((job.out_dir / "model.pte").read_bytes())
    return Lowered({"model.pte": "pte"}, report, {"memory_plan": plan})


def _onnx(job: LoweringJob) -> Lowered:
    from avedge.targets.lower_onnx import lower_onnx
    from avedge.targets.quant_report import onnx_report

    path = job.out_dir / "model.onnx"
    lower_onnx(job.module, job.example_inputs, job.input_names, job.output_names, job.recipe,
               path, job.custom_ops)
    return Lowered({"model.onnx": "onnx"}, onnx_report(path))


def _pt2(job: LoweringJob) -> Lowered:
    from avedge.targets.lower_torch import lower_pt2

    lower_pt2(job.module, job.example_inputs, job.recipe, job.out_dir / "model.pt2",
              job.out_dir / "weights.safetensors")
    return Lowered({"model.pt2": "pt2", "weights.safetensors": "safetensors"})


def _pte_ethos_u(job: LoweringJob) -> Lowered:
    from avedge.targets.arm.lower import lower_ethos_u

    return lower_ethos_u(job)


def _pte_cortex_m(job: LoweringJob) -> Lowered:
    from avedge.targets.arm.lower import lower_cortex_m

    return lower_cortex_m(job)


FORMAT_LOWERERS = {"pte": _pte, "onnx": _onnx, "pt2": _pt2,
                   "pte-ethos-u": _pte_ethos_u, "pte-cortex-m": _pte_cortex_m}
