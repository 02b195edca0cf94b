"""Named recipes: lists of compression configs, chosen by name on the command line."""

from __future__ import annotations

from dataclasses import dataclass

from avedge.quantize.configs import (
    Fp16Config,
    Int8DynamicConfig,
    Int8StaticConfig,
    config_to_json,
)
from avedge.runtime.errors import UnknownNameError

RECIPES: dict[str, tuple] = {
    "fp32": (),
    "fp16": (Fp16Config(),),
    "int8": (Int8DynamicConfig(),),
    "int8-static": (Int8StaticConfig(),),
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
