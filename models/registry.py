"""Model families, registered by name in one place, and resolution of a MODEL argument.

A family is a module that defines:
    NAME: str
    Dims: a dataclass of its dimensions (defaults = the shipped reference size)
    build(dims: Dims | None = None, weights: str | None = None) -> nn.Module
    example_inputs(module) -> tuple[torch.Tensor, ...]
and optionally `metric(...)`. A family whose artifact holds several graphs (e.g. a
speaker encoder run once and a streaming extractor) also defines
`components(module) -> {name: (module, example_inputs)}`,
`component_recipes(precision, recipe=None) -> {name: recipe}` and may define
`export_extra() -> dict` (recorded in the manifest), and `npu_components(module)`: the
same function as graphs shaped for a batch-1 NPU, exported for targets with an NPU. The module it builds carries the export contract
(see targets/signature.py): `input_names`, `output_names`, and for streaming
models `chunk_samples`, `lookahead_samples`, `sample_rate`, `init_state()`, with
`forward(chunk, *conditions, *state) -> (out, *new_state)`.

A user's own model enters as `package.module:factory`; the factory returns
`(module, example_inputs)`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from avedge.runtime.errors import AvedgeError, UnknownNameError

# name -> module path. Imported lazily: building one family never imports the others.
FAMILIES: dict[str, str] = {
    "tiny-stream": "avedge.models.tiny_stream",
    "face-renderer": "avedge.models.face_renderer",
    "speech-extractor": "avedge.models.speech_extractor",
}


def family_names() -> list[str]:
    return sorted(FAMILIES)


def get_family(name: str) -> ModuleType:
    if name not in FAMILIES:
        raise UnknownNameError("model family", name, FAMILIES)
    return importlib.import_module(FAMILIES[name])


@dataclass
class ResolvedModel:
    module: object  # torch.nn.Module
    example_inputs: tuple
    family: str
    family_module: ModuleType | None = None  # None for a user's package.module:factory

    @property
    def components(self) -> dict | None:
        """{name: (module, example_inputs)} for a composite family, else None."""
        fam = self.family_module
        return fam.components(self.module) if fam and hasattr(fam, "components") else None


def resolve_model(spec: str, weights: str | None = None) -> ResolvedModel:
    """`spec` is a registered family name or `package.module:factory`."""
    if ":" not in spec:
        fam = get_family(spec)
        module = fam.build(weights=weights)
        return ResolvedModel(module, tuple(fam.example_inputs(module)), fam.NAME, fam)
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
