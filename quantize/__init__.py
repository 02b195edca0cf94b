"""Compression: configs, named recipes, `quantize_` for module-level configs, and the
per-format quantizers."""

from avedge.quantize.api import apply_recipe, is_module_level, quantize_, register_handler
from avedge.quantize.configs import (
    Fp16Config,
    Int8DynamicConfig,
    Int8StaticConfig,
    config_from_json,
    config_to_json,
)
from avedge.quantize.low_rank import LowRankConfig
from avedge.quantize.prune import PruneChannelsConfig
from avedge.quantize.recipes import Recipe, get_recipe, recipe_names
from avedge.quantize.weight_only import Int8WeightOnlyConfig

__all__ = [
    "Fp16Config",
    "Int8DynamicConfig",
    "Int8StaticConfig",
    "Int8WeightOnlyConfig",
    "LowRankConfig",
    "PruneChannelsConfig",
    "Recipe",
    "apply_recipe",
    "config_from_json",
    "config_to_json",
    "get_recipe",
    "is_module_level",
    "quantize_",
    "recipe_names",
    "register_handler",
]
