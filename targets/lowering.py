"""The lowering registry: one function per model-file format, with the compression
configs it consumes.

export() first runs `prepare(module, recipe, target)`: module-level configs (pruning,
low-rank, weight-only; quantize/api.py) are applied to a copy of the module, and a config
that is neither module-level nor taken by every format the target writes is refused,
naming it — before any lowering runs. Several graphs that are views of one module (the
lip reader's token rates) are compressed once instead (avedge/api.py: `prepare` on the
family's compression view, `shared_decisions` for the lowering decisions), and export()
only checks the recipe (`check_recipe`). Then, for each format, `FORMAT_LOWERERS[fmt](job)`
writes its files into `job.out_dir` and returns what they are. Adding a device family
(e.g. an NPU through another ExecuTorch backend) is one new lowerer registered here and
one backend in runtime/backends, not an edit of export().
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from avedge.quantize import (
    Fp16Config,
    Int8DynamicConfig,
    Int8StaticConfig,
    Recipe,
    apply_recipe,
    is_module_level,
)
from avedge.quantize.configs import Bf16Config, KeepFloatConfig
from avedge.quantize.recipes import RECIPES
from avedge.runtime.errors import AvedgeError, RecipeNotApplicable


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
    # Decisions shared by the formats of one export (e.g. which layers stay float).
    cache: dict = field(default_factory=dict)


@dataclass
class Lowered:
    files: dict[str, str]  # file name (in out_dir) -> format ("pte", "onnx", "safetensors", ...)
    quantization: dict | None = None  # {"int8_compute_ops", "float_compute_ops"}
    manifest: dict = field(default_factory=dict)  # extra top-level manifest keys


def _pte(job: LoweringJob) -> Lowered:
    from avedge.targets.lower_executorch import lower_pte, memory_plan

    keep, ranking = kept_float(job)
    report = lower_pte(job.module, job.example_inputs, job.recipe, job.out_dir / "model.pte",
                       job.custom_ops, keep)
    report.update(_keep_record(keep, ranking))
    plan = memory_plan((job.out_dir / "model.pte").read_bytes())
    return Lowered({"model.pte": "pte"}, report, {"memory_plan": plan})


def _onnx(job: LoweringJob) -> Lowered:
    from avedge.targets.lower_onnx import lower_onnx
    from avedge.targets.quant_report import onnx_report

    path = job.out_dir / "model.onnx"
    keep, ranking = kept_float(job)
    calibration = lower_onnx(job.module, job.example_inputs, job.input_names, job.output_names,
                             job.recipe, path, job.custom_ops, keep)
    report = onnx_report(path)
    if calibration is not None:
        report["calibration"] = calibration
    report.update(_keep_record(keep, ranking))
    return Lowered({"model.onnx": "onnx"}, report)


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


@dataclass(frozen=True)
class FormatLowerer:
    lower: Callable[[LoweringJob], Lowered]
    accepts: tuple[type, ...]  # the lowering-level configs this format consumes
    needs: tuple[type, ...] = ()  # one of these must be in the recipe (integer-only devices)
    needs_why: str = ""

    def __call__(self, job: LoweringJob) -> Lowered:
        return self.lower(job)


_INT8 = (Int8DynamicConfig, Int8StaticConfig)
# The Arm backends run integer arithmetic only; their quantizers are calibrated (static).
_ARM = {"accepts": (Int8StaticConfig,), "needs": (Int8StaticConfig,),
        "needs_why": "runs integer arithmetic only"}
# bf16 is the torch program's only (measured, onnxruntime 1.32 / executorch 1.5): ORT's CPU
# provider has no bf16 Gemm (the session refused to load), XNNPACK left a bf16 graph
# undelegated (portable kernels). fp16 .pte: XNNPACK delegates it; an MLP matched fp32 to
# 4e-4 of the output scale at half the file size.
FORMAT_LOWERERS = {
    "pte": FormatLowerer(_pte, (*_INT8, KeepFloatConfig, Fp16Config)),  # PT2E + XNNPACK
    # onnxruntime's quantizers (nodes_to_exclude keeps layers float); fp16 copy
    "onnx": FormatLowerer(_onnx, (*_INT8, KeepFloatConfig, Fp16Config)),
    # the torch program: no int8 kernels on CUDA
    "pt2": FormatLowerer(_pt2, (Fp16Config, Bf16Config)),
    "pte-ethos-u": FormatLowerer(_pte_ethos_u, **_ARM),
    "pte-cortex-m": FormatLowerer(_pte_cortex_m, **_ARM),
}


def refusal(recipe: Recipe, target) -> str | None:
    """Why `target` cannot take `recipe` (one line), or None if it can."""
    for fmt in target.formats:
        lowerer = FORMAT_LOWERERS[fmt]
        for config in recipe.configs:
            if is_module_level(config) or isinstance(config, lowerer.accepts):
                continue
            takes = ", ".join(t.__name__ for t in lowerer.accepts) or "no lowering configs"
            return (f"recipe {recipe.name!r} holds {type(config).__name__}, which target "
                    f"{target.name!r} cannot apply: its {fmt!r} lowering takes {takes} (and "
                    f"module-level configs), and no quantize_ handler applies "
                    f"{type(config).__name__} to the module")
        if recipe.find(KeepFloatConfig) and not any(isinstance(c, _INT8)
                                                    for c in recipe.configs):
            return (f"recipe {recipe.name!r} holds KeepFloatConfig (layers kept fp32) without "
                    f"an int8 config for the rest; add Int8DynamicConfig or Int8StaticConfig")
        if lowerer.needs and not any(isinstance(c, lowerer.needs) for c in recipe.configs):
            wants = ", ".join(t.__name__ for t in lowerer.needs)
            return (f"target {target.name!r} ({fmt}) {lowerer.needs_why}: recipe "
                    f"{recipe.name!r} is not accepted; it needs {wants}")
    return None


def kept_float(job: LoweringJob) -> tuple[tuple[str, ...], list[dict] | None]:
    """The layers the recipe's KeepFloatConfig keeps fp32 in every format of this export,
    and the sensitivity ranking that chose them (None when named explicitly)."""
    config = job.recipe.find(KeepFloatConfig)
    if config is None:
        return (), None
    if "kept_float" not in job.cache:
        job.cache["kept_float"] = _choose_kept(job.module, job.example_inputs, config)
    keep, ranking = job.cache["kept_float"]
    # Decided once on a module this graph is a view of (shared_decisions): the names must
    # be this graph's too, or the lowering would silently quantize what was to stay fp32.
    missing = [n for n in keep if n not in dict(job.module.named_modules())]
    if missing:
        raise AvedgeError(f"layers chosen to stay fp32 ({', '.join(missing)}) are not layers "
                          f"of {type(job.module).__name__}; the module they were ranked on "
                          f"must name its layers as the graph does")
    return keep, ranking


# Batches the export-time ranking (KeepFloatConfig.top) scores on: spread over the
# calibration set, few enough that ranking costs a few dozen forward passes.
RANKING_BATCHES = 8


def _choose_kept(module, example_inputs, config) -> tuple[tuple[str, ...], list[dict] | None]:
    from avedge.quantize.calibration import calibration_set
    from avedge.quantize.sensitivity import quantizable_layers, rank_by_output_error

    if hasattr(config, "check_module"):  # chosen from a sensitivity table: for this graph?
        config.check_module(module)
    layers = quantizable_layers(module)
    unknown = [n for n in config.layers if n not in layers]
    if unknown:
        raise AvedgeError(f"KeepFloatConfig names {', '.join(unknown)}, not a Linear/Conv layer "
                          f"of {type(module).__name__}; its layers: {', '.join(layers)}")
    if config.top > len(layers):
        raise AvedgeError(f"KeepFloatConfig(top={config.top}) keeps more layers than "
                          f"{type(module).__name__} has ({len(layers)})")
    keep, ranking = list(config.layers), None
    if config.top:
        batches = calibration_set(module, example_inputs, RANKING_BATCHES)[0]
        step = max(1, len(batches) // RANKING_BATCHES)
        ranking = rank_by_output_error(module, batches[::step][:RANKING_BATCHES], layers)
        keep += [r["layer"] for r in ranking if r["layer"] not in keep][:config.top]
    return tuple(keep), ranking


def _keep_record(keep: tuple[str, ...], ranking: list[dict] | None) -> dict:
    if not keep:
        return {}
    out = {"kept_float": list(keep)}
    if ranking is not None:  # how they were chosen: int8 alone in that layer, output error
        out["sensitivity"] = {"ranked_by": "relative output error, int8 fake-quant of one "
                                           "layer at a time, on the calibration inputs",
                              "layers": [{"layer": r["layer"], "drop": round(r["drop"], 6)}
                                         for r in ranking]}
    return out


def recipes_for(target) -> list[str]:
    """The named recipes `target` takes."""
    return [name for name, configs in RECIPES.items()
            if refusal(Recipe(name, configs), target) is None]


def check_recipe(recipe: Recipe, target) -> None:
    """Raise AvedgeError, before any work, when the recipe holds a config that neither a
    quantize_ handler nor every format the target writes handles."""
    reason = refusal(recipe, target)
    if reason:
        raise AvedgeError(f"{reason}; recipes for {target.name}: "
                          f"{', '.join(recipes_for(target))}")


def prepare(module, recipe: Recipe, target, example_inputs=None):
    """-> the module every format of `target` lowers: `module` with the recipe's
    module-level configs applied (to a copy; `module` itself when it has none). Refuses
    the recipe first (check_recipe)."""
    check_recipe(recipe, target)
    try:
        return apply_recipe(module, recipe, example_inputs)  # inputs: to trace/calibrate
    except RecipeNotApplicable:
        raise
    except AvedgeError as exc:  # a handler's refusal: the sweep records it as a skip
        raise RecipeNotApplicable(str(exc)) from exc


def shared_decisions(module, recipe: Recipe, example_inputs) -> dict:
    """The lowering decisions that depend on the module, made once on `module` (the
    compressed module several graphs are views of), to seed each graph's LoweringJob.cache
    so every graph gets the same ones: which layers KeepFloatConfig keeps fp32."""
    config = recipe.find(KeepFloatConfig)
    if config is None:
        return {}
    return {"kept_float": _choose_kept(module, example_inputs, config)}


def needs_module(recipe: Recipe) -> bool:
    """Whether the recipe does work on the module itself (module-level configs, or a
    sensitivity ranking): what a graph shared by several exports should have done once."""
    return any(is_module_level(c) or isinstance(c, KeepFloatConfig) for c in recipe.configs)
