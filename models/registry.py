"""Model families: one frozen `Family` spec each, registered by one line in FAMILIES.

A family lives in `models/<family>/` (or one file for a small one) and defines
`FAMILY = Family(...)`. The spec is the whole contract the rest of avedge reads: how to
build the module, example inputs, the named weights files and which one a target gets,
the export plan (which graphs, each with its recipe and target), the metric measured on
an artifact, and the trainers. Nothing reads optional module attributes with hasattr.

The module a family builds carries the streaming export contract (targets/signature.py):
`input_names`, `output_names`, and for streaming models `chunk_samples`,
`lookahead_samples`, `sample_rate`, `init_state()`, with
`forward(chunk, *conditions, *state) -> (out, *new_state)`.

A user's own model enters as `package.module:factory`; the factory returns
`(module, example_inputs)` and is exported as one graph.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avedge.runtime.errors import AvedgeError, UnknownNameError

# name -> "module.path:ATTRIBUTE" of its Family. Imported lazily: building one family
# never imports the others.
FAMILIES: dict[str, str] = {
    "tiny-stream": "avedge.models.tiny_stream:FAMILY",
    "face-renderer": "avedge.models.face_renderer:FAMILY",
    "speech-extractor": "avedge.models.speech_extractor:FAMILY",
    "lipreader": "avedge.models.lipreader:FAMILY",
    "lips-pose": "avedge.models.lipsync:FAMILY",
}


@dataclass(frozen=True)
class Component:
    """One graph of an artifact, as a family's export plan emits it.

    recipe None: the target's default (after the user's recipe, which wins; see
    avedge/api.py `choose_recipe`). target None: the artifact's target.
    """

    name: str
    module: Any  # torch.nn.Module
    example_inputs: tuple
    recipe: str | None = None
    target: str | None = None
    # Where static int8 takes its activation ranges from: "module" (the module's own
    # calibration_inputs(), real signals) or None (perturbed copies of the examples).
    calibration: str | None = None
    # False: the user's --recipe does not reach this graph, which keeps the plan's recipe
    # (a run-once graph beside a per-chunk one: the recipe a user sweeps is for the
    # compute that repeats).
    takes_user_recipe: bool = True


@dataclass(frozen=True)
class TargetFacts:
    """What an export plan may look at: the target's name, precision and device kind."""

    name: str
    precision: str  # "fp32", "fp16", "int8", or an NPU scheme ("a8w8", ...)
    npu: str | None  # e.g. "ethos-u55-128"
    microcontroller: bool  # an NPU or CMSIS-NN board (flash budget, batch-1 integer graphs)


@dataclass(frozen=True)
class Family:
    name: str
    summary: str
    build: Callable[..., Any]  # (dims=None, weights=None) -> nn.Module
    example_inputs: Callable[[Any], tuple]  # module -> example inputs of its main graph
    dims: type | None = None  # the dimensions dataclass (defaults = the shipped size)
    # Named weights files that ship; "default" is what build() loads with weights=None.
    weights: dict[str, Path] = field(default_factory=dict)
    # Target facts -> the names (keys of `weights`) a target prefers when the user names
    # none, best first; the first that exists is used, else build()'s default.
    weights_for: Callable[[TargetFacts], tuple[str, ...]] = lambda facts: ()
    # (module, target facts) -> the graphs to export. None: one graph, the module itself.
    export_plan: Callable[[Any, TargetFacts], list[Component]] | None = None
    # module -> one nn.Module that computes every graph of the export plan on the shared
    # weights (the lip reader: all token rates on one set of features), holding `module`
    # as its `.model`, naming layers as the graphs do, with calibration inputs where the
    # family has them. Given: a recipe every graph takes is applied to this view once
    # (data-dependent recipes see every graph's path) and the plan is drawn from the
    # compressed `.model`, so the graphs carry the same compressed weights. None: each
    # graph is compressed on its own.
    compression_view: Callable[[Any], Any] | None = None
    # The figure the family is judged by (e.g. "si_sdri_db"); None: it has none.
    metric: str | None = None
    # (artifact dir, n=..., backend=None) -> {"name": metric, "value": ..., "n", "eval_set":
    # {its provenance}}, measured through the runtime on n items of a small eval set (at
    # export, and by the sweep on the backend it names); "value" None with a
    # "reason" where the data or a runtime for the graphs is absent; optional
    # "higher_is_better" (default True) and "component" (the graph the metric is of: a
    # sweep reports that graph's latency and size). None: no metric.
    measure: Callable[[Path], dict | None] | None = None
    # (eager module, n) -> the same metric dict as measure, computed on the nn.Module itself
    # (no export) over n items of the eval set measure uses, so the two compare; used by
    # quantization sensitivity (quantize/sensitivity.py). None: the family has none.
    score_module: Callable[[Any, int], dict] | None = None
    # The family's fixed evaluation sets, by name, and (name, n, data_dir=None) -> n
    # examples of one (benchmarks and final scores draw from these, not their own).
    eval_sets: tuple[str, ...] = ()
    eval_set: Callable[..., list] | None = None
    # (corpus dir, n) -> record: writes the data static int8 calibrates on (the module's
    # calibration_inputs() reads it; Component.calibration says which graphs use it).
    write_calibration_set: Callable[..., dict] | None = None
    # Recorded in the manifest's "extra".
    manifest_extra: Callable[[], dict] = dict
    # trainer name -> module path of a trainer (models/common/trainer.py contract).
    trainers: dict[str, str] = field(default_factory=dict)


def family_names() -> list[str]:
    return sorted(FAMILIES)


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise UnknownNameError("model family", name, FAMILIES)
    mod, _, attr = FAMILIES[name].partition(":")
    fam = getattr(importlib.import_module(mod), attr)
    if fam.name != name:
        raise ValueError(f"FAMILIES[{name!r}] points at family {fam.name!r}")
    return fam


def trainers() -> dict[str, str]:
    """Every trainer of every family: name -> module path."""
    out: dict[str, str] = {}
    for name in family_names():
        out.update(get_family(name).trainers)
    return out


def family_of_trainer(trainer: str) -> Family:
    """The family whose spec lists `trainer`."""
    for name in family_names():
        fam = get_family(name)
        if trainer in fam.trainers:
            return fam
    raise UnknownNameError("trainer", trainer, trainers())


@dataclass
class ResolvedModel:
    module: Any  # torch.nn.Module
    example_inputs: tuple
    family: str
    spec: Family | None = None  # None for a user's package.module:factory


def resolve_model(spec: str, weights: str | None = None) -> ResolvedModel:
    """`spec` is a registered family name or `package.module:factory`."""
    if ":" not in spec:
        fam = get_family(spec)
        module = fam.build(weights=weights)
        return ResolvedModel(module, tuple(fam.example_inputs(module)), fam.name, fam)
    mod_name, _, attr = spec.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise AvedgeError(
            f"cannot import {mod_name!r} for model {spec!r} ({exc}); give a registered family "
            f"({', '.join(family_names())}) or package.module:factory on the Python path"
        ) from exc
    factory = getattr(mod, attr, None)
    if not callable(factory):
        raise AvedgeError(f"{mod_name!r} has no callable {attr!r} (model {spec!r})")
    result = factory()
    if not (isinstance(result, tuple) and len(result) == 2):
        raise AvedgeError(
            f"factory {spec!r} must return (module, example_inputs); got {type(result).__name__}"
        )
    module, example = result
    if not isinstance(example, (tuple, list)):
        example = (example,)
    return ResolvedModel(module, tuple(example), getattr(module, "family", spec))
