"""The torch path: a torch.export program (.pt2) the runtime loads without model code,
plus the plain weights (safetensors) for users who rebuild the module themselves."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from avedge.quantize import Fp16Config, Recipe
from avedge.quantize.configs import Bf16Config
from avedge.quantize.weight_only import plain_weights


def lower_pt2(module, example_inputs: tuple, recipe: Recipe, path: Path,
              weights_path: Path) -> None:
    from safetensors.torch import save_file

    # .pt2 takes fp16 and bf16 only (targets/lowering.py refuses int8 before we get here);
    # module-level configs were applied to `module` already. torchao weight-only subclasses
    # are flattened so the program and safetensors hold plain int8 tensors.
    module = plain_weights(module)
    half = (torch.float16 if recipe.find(Fp16Config)
            else torch.bfloat16 if recipe.find(Bf16Config) else None)
    if half is not None:
        from avedge.targets.lower_onnx import HalfInside

        module = HalfInside(copy.deepcopy(module), half).eval()
    program = torch.export.export(module, tuple(example_inputs))
    torch.export.save(program, str(path))
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(weights_path))
