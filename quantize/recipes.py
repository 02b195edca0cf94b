"""Named recipes: lists of compression configs, chosen by name on the command line.

Module-level configs (pruning, low-rank, weight-only int8) are applied to the module in
order, before lowering (quantize/api.py); the others are consumed by the lowering of each
format the target writes, which refuses a config it does not take (targets/lowering.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from avedge.quantize.configs import (
    Bf16Config,
    Fp16Config,
    Int8DynamicConfig,
    Int8StaticConfig,
    KeepFloatConfig,
    config_to_json,
)
from avedge.quantize.distill import DistillConfig
from avedge.quantize.int4 import Int8DynActInt4WeightConfig
from avedge.quantize.int8_qat import Int8QatConfig
from avedge.quantize.low_rank import LowRankConfig
from avedge.quantize.mixed_precision import keep_recipe
from avedge.quantize.prune import PruneChannelsConfig
from avedge.quantize.structured_prune import PruneHeadsConfig, StructuredPruneConfig
from avedge.quantize.weight_only import Int8WeightOnlyConfig
from avedge.runtime.errors import UnknownNameError

RECIPES: dict[str, tuple] = {
    "fp32": (),
    "fp16": (Fp16Config(),),
    "bf16": (Bf16Config(),),  # the torch program (.pt2) only: see Bf16Config
    # torchao: int4 Linear weights (groups of 32), int8 activations per call
    "8da4w": (Int8DynActInt4WeightConfig(group_size=32),),
    "int8": (Int8DynamicConfig(),),
    "int8-static": (Int8StaticConfig(),),
    "int8-weight": (Int8WeightOnlyConfig(),),  # torchao: int8 Linear weights, float compute
    "lowrank-0.5": (LowRankConfig(rank_ratio=0.5),),  # SVD: Linear / 1x1 conv at half rank
    "prune-0.25": (PruneChannelsConfig(ratio=0.25),),  # a quarter of the MLP units, by norm
    # SVD of the attention projections only, at a quarter rank (half rank of a square
    # projection saves nothing); nn.MultiheadAttention is split into q/k/v/out first
    "lowrank-attn-0.25": (LowRankConfig(rank_ratio=0.25, layers="attention"),),
    # half rank, then 200 Adam steps towards the uncompressed model's outputs
    "lowrank-0.5-distill": (LowRankConfig(rank_ratio=0.5), DistillConfig()),
    "prune-heads-0.5": (PruneHeadsConfig(ratio=0.5),),  # half the heads of each attention
    # torch-pruning: a quarter of every hidden FFN/conv width, second-order Taylor score
    "prune-taylor-0.25": (StructuredPruneConfig(ratio=0.25, importance="taylor"),),
    "prune-taylor-0.25-distill": (StructuredPruneConfig(ratio=0.25, importance="taylor"),
                                  DistillConfig()),
    "prune-conv-0.25": (StructuredPruneConfig(ratio=0.25, target="conv"),),  # conv channels
    # torchao QAT: 200 steps with int8 fake quantizers on the Linears, distilled from the
    # float model on its calibration inputs, then dynamic int8 (quantize/int8_qat.py)
    "int8-qat": (Int8QatConfig(), Int8DynamicConfig()),
    # static int8 on every op XNNPACK/onnxruntime can quantize, elementwise ones included
    # (int8-static before issue #18's fix; 5 dB SI-SDRi lost on the speech extractor):
    # for integer-heavy graphs where that is measured to be safe, and for comparison
    "int8-static-all": (Int8StaticConfig(ops="all"),),
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


# Parameterised names, sweepable by K: "int8-keep-2" = dynamic int8 with the 2 layers whose
# quantization moves the output most kept fp32 (KeepFloatConfig; ranked at export);
# "int8-keep-2@sens.json" keeps the 2 whose quantization cost the most task metric in a
# sensitivity table (`avedge sensitivity MODEL --out sens.json`; mixed_precision.py).
PARAMETRIC: dict[str, tuple] = {
    "int8-keep-K": (r"int8-keep-(\d+)",
                    lambda k: (Int8DynamicConfig(), KeepFloatConfig(top=k))),
    "int8-static-keep-K": (r"int8-static-keep-(\d+)",
                           lambda k: (Int8StaticConfig(), KeepFloatConfig(top=k))),
    "int8-keep-K@TABLE": (r"int8-keep-(\d+)@(.+)",
                          lambda k, table: keep_recipe(k, table, "int8")),
    "int8-static-keep-K@TABLE": (r"int8-static-keep-(\d+)@(.+)",
                                 lambda k, table: keep_recipe(k, table, "int8-static")),
}
# What each parametric name does (`avedge recipes`).
PARAMETRIC_HELP: dict[str, str] = {
    "int8-keep-K": "dynamic int8; the K layers whose int8 moves the graph's output most "
                   "stay fp32 (ranked at export on calibration inputs)",
    "int8-static-keep-K": "static int8; the K layers whose int8 moves the output most stay "
                          "fp32",
    "int8-keep-K@TABLE": "dynamic int8; the K layers whose int8 cost the most task metric in "
                         "the sensitivity table TABLE (avedge sensitivity --out) stay fp32; "
                         "the table must be for these weights",
    "int8-static-keep-K@TABLE": "static int8; the K most metric-sensitive layers of TABLE "
                                "(avedge sensitivity --recipe int8-static --out) stay fp32",
}


def get_recipe(name: str) -> Recipe:
    if name in RECIPES:
        return Recipe(name, RECIPES[name])
    import re

    for pattern, configs in PARAMETRIC.values():
        match = re.fullmatch(pattern, name)
        if match and int(match.group(1)) >= 1:
            return Recipe(name, configs(int(match.group(1)), *match.groups()[1:]))
    raise UnknownNameError("recipe", name, [*RECIPES, *PARAMETRIC])


def recipe_names() -> list[str]:
    return list(RECIPES)
