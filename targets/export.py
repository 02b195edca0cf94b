"""export(): lower a module for a target into an artifact directory, atomically.

The directory is built in a hidden sibling and renamed into place only when every
file is written, hashed and checked in the real runtime that will run it against the
eager module it was lowered from, i.e. with the recipe's module-level compression
applied (parity, in the manifest: it judges the lowering). What that compression did
to the output is recorded beside it (recipe_deviation: information, never a refusal;
its cost to accuracy is the family metric's to judge). A failed export leaves nothing
behind and never clobbers a previous artifact.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from avedge.quantize import get_recipe
from avedge.quantize.distill import DistillConfig
from avedge.quantize.low_rank import LowRankConfig
from avedge.quantize.prune import PruneChannelsConfig
from avedge.quantize.structured_prune import PruneHeadsConfig, StructuredPruneConfig
from avedge.runtime.errors import AvedgeError, RecipeNotApplicable
from avedge.runtime.fsutil import staged_dir
from avedge.runtime.loader import INIT_STATE_FILE, load
from avedge.runtime.manifest import (
    MANIFEST_NAME,
    ModelManifest,
    PipelineManifest,
    file_record,
    write_manifest,
)
from avedge.targets.lowering import FORMAT_LOWERERS, LoweringJob, check_recipe, prepare
from avedge.targets.registry import get_target
from avedge.targets.signature import as_tensors, describe

# The CPU runtime that checks each format at export (a Jetson artifact is checked here
# on onnxruntime's CPU provider; the device itself runs the same file on CUDA/TensorRT).
PARITY_BACKEND = {"pte": "executorch", "onnx": "onnxruntime", "pt2": "torch"}
# Above this relative error an fp32 export is broken, not merely imprecise.
FP32_PARITY_LIMIT = 1e-3
VERSIONED_PACKAGES = ("avedge", "torch", "executorch", "torchao", "onnx", "onnxruntime")


@dataclass
class Artifact:
    path: Path
    manifest: dict

    def load(self, backend: str | None = None, threads: int | None = None):
        return load(self.path, backend=backend, threads=threads)


def export(target, module, example_inputs, out_dir, recipe: str | None = None, *,
           family: str | None = None, metric: dict | None = None, extra: dict | None = None,
           allow_over_budget: bool = False, recipe_source: str | None = None,
           measure=None, uncompressed=None, decided: dict | None = None) -> Artifact:
    """One graph -> an artifact. `recipe_source` records who chose the recipe ("user",
    "family", "target"; avedge/api.py decides); by default the caller if it named one.
    `measure(staged_dir) -> dict | None` (the family metric) is recorded as "metric".

    `uncompressed`: given when `module` already holds the recipe's module-level configs
    (several graphs of one module compressed once, avedge/api.py); it is the same graph
    before the recipe. `decided`: lowering decisions made once for those graphs
    (lowering.shared_decisions)."""
    target = get_target(target)
    recipe_source = recipe_source or ("target" if recipe is None else "user")
    recipe_obj = get_recipe(recipe or target.default_recipe)
    example_inputs = tuple(example_inputs)
    if uncompressed is None:
        # Refuses a config the target's formats do not take, then applies the
        # module-level ones (pruning, low-rank, weight-only) to a copy.
        reference = module.eval()
        module = prepare(reference, recipe_obj, target, example_inputs)
    else:
        check_recipe(recipe_obj, target)
        reference, module = uncompressed.eval(), module.eval()
    sig = describe(reference, example_inputs)
    # Parity is against the module the lowering is given, so it measures the lowering
    # alone; what the recipe itself changed is recorded beside it (recipe_deviation).
    expected = sig.example_outputs if module is reference else eager_outputs(module,
                                                                             example_inputs)
    deviation = (None if module is reference
                 else output_error(expected, [t.detach().numpy() for t in sig.example_outputs]))
    custom_ops = find_custom_ops(module, example_inputs)
    in_names = [s["name"] for s in sig.inputs]
    out_names = [s["name"] for s in sig.outputs]
    with staged_dir(out_dir) as tmp:
        files, quantization, extra_keys = {}, {}, {}
        job = LoweringJob(module, example_inputs, in_names, out_names, recipe_obj, target,
                          custom_ops, tmp, cache=dict(decided or {}))
        for fmt in target.formats:
            lowered = FORMAT_LOWERERS[fmt](job)
            files.update({name: file_record(tmp / name, f) for name, f in lowered.files.items()})
            if lowered.quantization is not None:
                quantization[fmt] = lowered.quantization
            extra_keys.update(lowered.manifest)
        if sig.init_state:
            np.savez(tmp / INIT_STATE_FILE, **sig.init_state)
            files[INIT_STATE_FILE] = file_record(tmp / INIT_STATE_FILE, "npz")
        # The keys are runtime/manifest.ModelManifest's fields, checked as a reader will.
        spec = ModelManifest.new(
            family=family or getattr(module, "family", type(module).__name__),
            target=target.name,
            backends=list(target.backends),
            precision=target.precision,
            threads=target.threads,
            recipe=recipe_obj.name,
            recipe_source=recipe_source,
            recipe_configs=recipe_obj.to_json()["configs"],
            custom_ops=custom_ops,
            quantization=quantization,  # per file: compute ops in int8 vs float
            files=files,
            inputs=sig.inputs,
            outputs=sig.outputs,
            stream=sig.stream,
            token_rates=getattr(module, "token_rates", None),
            parameters=sum(p.numel() for p in module.parameters()),
            budgets=budget_report(target, files, extra_keys.get("npu_estimate"),
                                  extra_keys.get("memory_plan")),
            versions=versions(),
            created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            metric=metric,
            extra=extra or {},
            recipe_deviation=deviation,
            **extra_keys,
        )
        manifest = write_manifest(tmp, spec)
        parity = measure_parity(tmp, manifest, example_inputs, expected)
        manifest = write_manifest(tmp, ModelManifest.new(**{**manifest, "parity": parity}))
        check_parity(manifest, recipe_obj)
        check_budgets(manifest, allow_over_budget)
        if measure is not None:  # on the finished files, before they are renamed into place
            manifest = write_manifest(tmp, type(spec).new(**{**manifest, "metric": measure(tmp)}))
    return Artifact(Path(out_dir), manifest)


def export_pipeline(target, components: dict, out_dir, recipe: str | None = None, *,
                    recipes: dict | None = None, family: str | None = None,
                    metric: dict | None = None, extra: dict | None = None,
                    allow_over_budget: bool = False, targets: dict | None = None) -> Artifact:
    """Several graphs as one artifact, given as {name: (module, example_inputs)};
    `recipes` / `targets` set a component's recipe / target (the caller's choice: recorded
    as "user"). avedge/api.py passes a decided plan to `export_components` instead."""
    target = get_target(target)
    recipes, targets = recipes or {}, targets or {}
    decided = []
    for name, (module, example) in components.items():
        comp_target = get_target(targets.get(name, target))
        chosen = recipes.get(name, recipe if comp_target is target else None)
        decided.append((_Planned(name, module, example, chosen or comp_target.default_recipe,
                                 comp_target.name), "user" if chosen else "target"))
    return export_components(target, decided, out_dir, family=family, metric=metric,
                             extra=extra, allow_over_budget=allow_over_budget)


@dataclass(frozen=True)
class SharedCompression:
    """Graphs drawn from one module the recipe was applied to once (avedge/api.py)."""

    # graph name -> the same graph drawn from the uncompressed module; None: the recipe
    # has no module-level config (the graphs are the uncompressed ones)
    uncompressed: dict | None
    decided: dict  # lowering decisions made once on the compressed module (shared_decisions)


@dataclass(frozen=True)
class _Planned:  # the fields of models.registry.Component that export reads
    name: str
    module: object
    example_inputs: tuple
    recipe: str
    target: str


def export_components(target, decided: list, out_dir, *, family: str | None = None,
                      metric: dict | None = None, extra: dict | None = None,
                      allow_over_budget: bool = False, measure=None,
                      shared: SharedCompression | None = None) -> Artifact:
    """Several graphs as one artifact. `decided`: [(component, recipe_source)], each
    component with `name, module, example_inputs` and its recipe and target decided.
    `measure(staged_dir) -> dict | None` (the family metric) is recorded as "metric".
    `shared`: the graphs were drawn from one module compressed once (avedge/api.py)."""
    target = get_target(target)
    with staged_dir(out_dir) as tmp:
        parts, files = {}, {}
        for comp, source in decided:
            # The artifact's own Target object, not its name: it may carry an override
            # (avedge export --npu-precision) that the registered target lacks.
            comp_target = target if comp.target == target.name else comp.target
            try:
                art = export(comp_target, comp.module, comp.example_inputs, tmp / comp.name,
                             comp.recipe,
                             family=f"{family}/{comp.name}" if family else comp.name,
                             allow_over_budget=allow_over_budget, recipe_source=source,
                             uncompressed=(shared.uncompressed[comp.name]
                                           if shared and shared.uncompressed else None),
                             decided=shared.decided if shared else None)
            except RecipeNotApplicable as exc:
                raise RecipeNotApplicable(str(exc), graph=comp.name) from exc
            parts[comp.name] = {"dir": comp.name, "recipe": art.manifest["recipe"],
                                "recipe_source": source, "target": comp.target}
            files[f"{comp.name}/{MANIFEST_NAME}"] = file_record(tmp / comp.name / MANIFEST_NAME,
                                                                "manifest")
        used = {p["recipe"] for p in parts.values()}
        spec = PipelineManifest.new(
            family=family,
            target=target.name,
            backends=list(target.backends),
            recipe=used.pop() if len(used) == 1 else "per-component",
            components=parts,
            files=files,
            versions=versions(),
            created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            metric=metric,
            extra=extra or {},
        )
        manifest = write_manifest(tmp, spec)
        if measure is not None:  # on the finished files, before they are renamed into place
            manifest = write_manifest(tmp, type(spec).new(**{**manifest, "metric": measure(tmp)}))
    return Artifact(Path(out_dir), manifest)


def find_custom_ops(module, example_inputs) -> list[str]:
    """avedge ops in the traced graph: they need the avedge kernels at run time."""
    has_lib = any(ns == "avedge" for ns in dir(torch.ops) if not ns.startswith("_"))
    if not has_lib:
        return []
    graph = torch.export.export(module, tuple(example_inputs)).graph
    ops = {str(n.target.name()).split(".")[0] for n in graph.nodes
           if n.op == "call_function" and getattr(n.target, "namespace", None) == "avedge"}
    return sorted(ops)


def eager_outputs(module, example_inputs) -> list:
    with torch.no_grad():
        return as_tensors(module(*example_inputs))


def output_error(got: list, ref: list) -> dict:
    """{"max_abs_err", "rel_err"} of `got` against `ref` (arrays or tensors), relative
    to the reference's largest magnitude."""
    got = [np.asarray(g.detach().numpy() if isinstance(g, torch.Tensor) else g, np.float64)
           for g in got]
    ref = [np.asarray(r.detach().numpy() if isinstance(r, torch.Tensor) else r) for r in ref]
    err = max(float(np.max(np.abs(g - r))) if r.size else 0.0 for g, r in zip(got, ref))
    scale = max(float(np.max(np.abs(r))) if r.size else 0.0 for r in ref) or 1.0
    return {"max_abs_err": err, "rel_err": err / scale}


def measure_parity(tmp: Path, manifest: dict, example_inputs, expected) -> dict:
    """Each model file run in its runtime against `expected`, the eager outputs of the
    module it was lowered from."""
    arrays = [x.detach().numpy() for x in example_inputs]
    parity = {}
    for rec in manifest["files"].values():
        backend = PARITY_BACKEND.get(rec["format"])
        if backend is None:
            continue
        got = load(tmp, backend=backend).run_ordered(arrays)
        parity[rec["format"]] = {"backend": backend, **output_error(got, expected)}
    return parity


# A lowering that quantizes (int8, fp16) is judged against the module it was given: its
# error is a property of the recipe, recorded, not a fault, until it exceeds the output's
# own scale: then the lowering broke it (measured: torchao weight-only int8 through XNNPACK
# unflattened gave a relative error of ~1e6).
COMPRESSED_PARITY_LIMIT = 1.0
# Module-level configs that keep the module in fp32 (structure and weights changed, no
# quantization): their lowering is an fp32 lowering of the compressed module, held to the
# fp32 limit. Their cost to accuracy is recipe_deviation's (and the metric's), not parity's.
FLOAT_MODULE_CONFIGS = (LowRankConfig, PruneChannelsConfig, PruneHeadsConfig,
                        StructuredPruneConfig, DistillConfig)


def parity_limit(recipe_configs) -> float:
    """FP32_PARITY_LIMIT where the lowering runs the module it was given in fp32."""
    if all(isinstance(c, FLOAT_MODULE_CONFIGS) for c in recipe_configs):
        return FP32_PARITY_LIMIT
    return COMPRESSED_PARITY_LIMIT


def check_parity(manifest: dict, recipe) -> None:
    """Refuse an artifact whose files disagree with the module they were lowered from."""
    limit = parity_limit(recipe.configs)
    dev = manifest.get("recipe_deviation")
    against = ("eager PyTorch" if dev is None else
               f"the compressed eager module it was lowered from (the recipe itself moved "
               f"the output by {dev['rel_err']:.2e} of its scale: recorded, not a fault)")
    for fmt, p in manifest["parity"].items():
        if p["rel_err"] <= limit:
            continue
        if limit == FP32_PARITY_LIMIT:
            raise AvedgeError(f"recipe {recipe.name!r}: the {fmt} artifact disagrees with "
                              f"{against}: relative error {p['rel_err']:.2e} > "
                              f"{FP32_PARITY_LIMIT:g} on {p['backend']}; the lowering gets an "
                              f"op of this model wrong")
        raise AvedgeError(f"recipe {recipe.name!r}: the {fmt} artifact is broken, not "
                          f"just imprecise: relative error {p['rel_err']:.2e} against "
                          f"{against} on {p['backend']} (limit {limit:g}, the output's own "
                          f"scale); the lowering mishandles this compression; use another "
                          f"--recipe")


def budget_report(target, files: dict, npu_estimate: dict | None = None,
                  memory_plan: dict | None = None) -> dict:
    b = target.budgets
    model_bytes = max((r["bytes"] for r in files.values() if r["format"] in FORMAT_LOWERERS),
                      default=0)
    report = {"chunk_latency_ms": b.chunk_latency_ms, "ram_mb": b.ram_mb,
              "weights_mb": b.weights_mb, "model_file_mb": round(model_bytes / 2**20, 4)}
    report["weights_ok"] = b.weights_mb is None or report["model_file_mb"] <= b.weights_mb
    if memory_plan is not None and b.ram_mb is not None:
        # A device's RAM for the model: its .pte loaded whole (weights included) plus the
        # planned activation arena; the runtime's own code and delegate scratch excluded.
        pte = files.get("model.pte", {}).get("bytes", 0)
        report["model_ram_mb"] = round((pte + memory_plan["activation_arena_bytes"]) / 2**20, 4)
        report["ram_ok"] = report["model_ram_mb"] <= b.ram_mb
    if b.sram_kib is not None or b.flash_kib is not None:
        # Microcontroller budgets: Vela's SRAM/flash figures where there is an NPU
        # estimate, else (CMSIS-NN) the model file itself must fit the flash.
        est = npu_estimate or {}
        report.update({"sram_kib": b.sram_kib, "flash_kib": b.flash_kib,
                       "used_sram_kib": est.get("sram_kib"),
                       "used_flash_kib": est.get("flash_kib",
                                                 round(model_bytes / 1024, 3))})
        report["sram_ok"] = (b.sram_kib is None or report["used_sram_kib"] is None
                             or report["used_sram_kib"] <= b.sram_kib)
        report["flash_ok"] = b.flash_kib is None or report["used_flash_kib"] <= b.flash_kib
        if est and b.chunk_latency_ms is not None:
            report["estimated_chunk_ms"] = est["inference_ms_at_clock"]
            report["latency_ok"] = est["inference_ms_at_clock"] <= b.chunk_latency_ms
    return report


def check_budgets(manifest: dict, allow_over_budget: bool) -> None:
    b = manifest["budgets"]
    for mem in ("sram", "flash"):
        if b.get(f"{mem}_ok") is False and not allow_over_budget:
            est = manifest.get("npu_estimate") or {}
            raise AvedgeError(
                f"the model needs {b[f'used_{mem}_kib']:.1f} KiB of {mem.upper()}, over the "
                f"{manifest['target']} budget of {b[f'{mem}_kib']:g} KiB (SRAM "
                f"{b.get('used_sram_kib')} KiB / {b.get('sram_kib')}, flash "
                f"{b.get('used_flash_kib')} KiB / {b.get('flash_kib')}"
                + (f"; {est['cycles_per_inference']} cycles = "
                   f"{est['inference_ms_at_clock']:.3f} ms at {est['clock_mhz']:g} MHz"
                   if est else "")
                + "); shrink or compress the model, or pass --allow-over-budget")
    if not b["weights_ok"] and not allow_over_budget:
        raise AvedgeError(f"the model file is {b['model_file_mb']:.2f} MB, over the "
                          f"{manifest['target']} weights budget of {b['weights_mb']} MB; compress "
                          f"it (another --recipe) or pass --allow-over-budget")


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in VERSIONED_PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out
