"""The torch path: a torch.export program (.pt2) the runtime loads without model code,
plus the plain weights (safetensors) for users who rebuild the module themselves."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from avedge.quantize import Fp16Config, Int8DynamicConfig, Int8StaticConfig, Recipe
from avedge.runtime.errors import AvedgeError


def lower_pt2(module, example_inputs: tuple, recipe: Recipe, path: Path,
              weights_path: Path) -> None:
    from safetensors.torch import save_file

    if recipe.find(Int8DynamicConfig) or recipe.find(Int8StaticConfig):
        raise AvedgeError(f"recipe {recipe.name!r} (int8) is not supported on the torch path; "
                          f"use fp32 or fp16 (int8 targets export .pte/.onnx)")
    if recipe.find(Fp16Config):
        from avedge.targets.lower_onnx import _HalfInside

        module = _HalfInside(copy.deepcopy(module)).eval()
    program = torch.export.export(module, tuple(example_inputs))
    torch.export.save(program, str(path))
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(weights_path))
