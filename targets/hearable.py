"""Hearable-class devices: one small application core, int8, tight budgets.

The budgets follow the hearable job: an 8 ms audio chunk must be processed in well
under 8 ms (1 ms leaves room for the codec, radio and the rest of the DSP chain),
and the weights must fit the flash a hearable spares for a model. Static int8: dynamic
int8 leaves the convolutions in fp32 on XNNPACK.
"""

from avedge.targets.cpu import cpu_board
from avedge.targets.registry import register
from avedge.targets.target import Budgets

register(cpu_board("hearable", "hearable SoC application core (Cortex-A class)", "int8",
                   recipe="int8-static", threads=1,
                   budgets=Budgets(chunk_latency_ms=1.0, ram_mb=64.0, weights_mb=2.0)))
