"""Compression: configs, named recipes, and the per-format quantizers."""

from avedge.quantize.configs import (
    Fp16Config,
    Int8DynamicConfig,
    Int8StaticConfig,
    config_from_json,
    config_to_json,
)
from avedge.quantize.recipes import Recipe, get_recipe, recipe_names

__all__ = [
    "Fp16Config",
    "Int8DynamicConfig",
    "Int8StaticConfig",
    "Recipe",
    "config_from_json",
    "config_to_json",
    "get_recipe",
    "recipe_names",
]
