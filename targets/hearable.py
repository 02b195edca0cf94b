"""Hearable-class devices: one small application core, int8, tight budgets.

The budgets follow the hearable job: an 8 ms audio chunk must be processed in well
under 8 ms (1 ms leaves room for the codec, radio and the rest of the DSP chain),
and the weights must fit the flash a hearable spares for a model.
"""

from avedge.targets.registry import register
from avedge.targets.target import Budgets, Target

HEARABLE = register(Target(
    name="hearable",
    description="hearable SoC application core (Cortex-A class): 1 thread, int8",
    backends=("executorch", "onnxruntime"),
    default_recipe="int8-static",  # static: dynamic int8 leaves convs in fp32 on XNNPACK
    precision="int8",
    threads=1,
    budgets=Budgets(chunk_latency_ms=1.0, ram_mb=64.0, weights_mb=2.0),
))
