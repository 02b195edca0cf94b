"""The Target: a named device profile — backends in priority order, default recipe,
precision, threads, budgets — that lowers a model into an artifact directory.

    >>> from avedge.targets import get_target
    >>> art = get_target("cpu").export(module, example_inputs, "out/")   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

# Which file each backend consumes. A target's backends decide which files export writes.
BACKEND_FORMATS = {
    "executorch": "pte",
    "onnxruntime": "onnx",
    "onnxruntime-cuda": "onnx",
    "onnxruntime-tensorrt": "onnx",
    "torch": "pt2",
    "torch-cuda": "pt2",
    # Arm microcontrollers: a .pte for the Ethos-U delegate / CMSIS-NN kernels, which
    # the host's ExecuTorch runtime cannot load (targets/arm/).
    "ethos-u": "pte-ethos-u",
    "cortex-m": "pte-cortex-m",
}


@dataclass(frozen=True)
class Budgets:
    """What a model must fit on the device. None = no budget."""

    chunk_latency_ms: float | None = None  # per call of the exported graph, one chunk
    ram_mb: float | None = None  # peak resident memory of the runtime process
    weights_mb: float | None = None  # size of the largest model file
    sram_kib: float | None = None  # on-chip SRAM for activations/scratch (microcontroller NPUs)
    flash_kib: float | None = None  # flash/ROM for weights and command stream


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    backends: tuple[str, ...]  # priority order; the runtime picks the first available
    default_recipe: str
    precision: str  # "fp32", "fp16", "int8": the arithmetic the device runs
    threads: int | None  # None = all cores
    budgets: Budgets = field(default_factory=Budgets)
    cuda_arch: str | None = None  # e.g. "sm_87" for Jetson Orin
    npu: str | None = None  # e.g. "ethos-u55-128": the accelerator configuration
    clock_mhz: float | None = None  # core/NPU clock the estimates are made at

    @property
    def formats(self) -> tuple[str, ...]:
        """Model file formats this target's backends need, in priority order, deduplicated."""
        return tuple(dict.fromkeys(BACKEND_FORMATS[b] for b in self.backends))

    def to_json(self) -> dict:
        d = asdict(self)
        d["backends"] = list(self.backends)
        d["formats"] = list(self.formats)
        return d

    def export(self, model, example_inputs, out_dir: str | Path, recipe: str | None = None,
               **kwargs):
        """Lower `model` for this target into `out_dir` (written atomically). -> Artifact."""
        from avedge.targets.export import export

        return export(self, model, example_inputs, out_dir, recipe=recipe, **kwargs)
