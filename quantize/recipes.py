"""Named recipes: lists of compression configs, chosen by name on the command line.

Module-level configs (pruning, low-rank, weight-only int8) are applied to the module in
order, before lowering (quantize/api.py); the others are consumed by the lowering of each
format the target writes, which refuses a config it does not take (targets/lowering.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from avedge.quantize.configs import (
    Fp16Config,
    Int8DynamicConfig,
    Int8StaticConfig,
    config_to_json,
)
from avedge.quantize.low_rank import LowRankConfig
from avedge.quantize.prune import PruneChannelsConfig
from avedge.quantize.weight_only import Int8WeightOnlyConfig
from avedge.runtime.errors import UnknownNameError

RECIPES: dict[str, tuple] = {
    "fp32": (),
    "fp16": (Fp16Config(),),
    "int8": (Int8DynamicConfig(),),
    "int8-static": (Int8StaticConfig(),),
    "int8-weight": (Int8WeightOnlyConfig(),),  # torchao: int8 Linear weights, float compute
    "lowrank-0.5": (LowRankConfig(rank_ratio=0.5),),  # SVD: Linear / 1x1 conv at half rank
    "prune-0.25": (PruneChannelsConfig(ratio=0.25),),  # a quarter of the MLP units, by norm
}


@dataclass(frozen=True)
class Recipe:
    name: str
    configs: tuple

    def find(self, config_type):
        """The recipe's config of that type, or None."""
        return next((c for c in self.configs if isinstance(c, config_type)), None)

    def to_json(self) -> dict:
        return {"name": self.name, "configs": [config_to_json(c) for c in self.configs]}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise UnknownNameError("recipe", name, RECIPES)
    return Recipe(name, RECIPES[name])


def recipe_names() -> list[str]:
    return list(RECIPES)
