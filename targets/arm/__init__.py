"""Arm microcontroller NPU boards: Ethos-U55/U85 and Cortex-M55 (CMSIS-NN).

These lower through ExecuTorch's Arm backend: PT2E int8 (or int16-activation)
quantization, a TOSA graph, then Vela for the Ethos-U command stream. The host
cannot run the resulting `.pte` (it needs a cross-built runtime on a Corstone FVP
or a board), so export records Vela's estimate (cycles, time at the clock,
SRAM/flash) and checks the TOSA graph in the TOSA reference model instead.

Budgets follow the hearable job: an 8 ms chunk in <= 1 ms of NPU time, activations
in 512 KiB of SRAM, weights + command stream in 2 MiB of on-chip flash. The system
config each board is estimated with lives in `configs/` (documented there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avedge.targets.registry import register
from avedge.targets.target import Budgets, Target

CONFIG_DIR = Path(__file__).parent / "configs"
HEARABLE_INI = CONFIG_DIR / "hearable.ini"

_HEARABLE_BUDGETS = Budgets(chunk_latency_ms=1.0, weights_mb=2.0, sram_kib=512.0,
                            flash_kib=2048.0)


@dataclass(frozen=True)
class VelaSystem:
    """Which Vela system config / memory mode a board line is estimated with."""

    config_ini: Path
    system_config: str
    memory_mode: str


# Target name -> the Vela system its estimates use. The clock in the .ini must equal
# the target's clock_mhz (checked in tests), so manifest and Vela agree.
VELA_SYSTEMS = {
    "hearable-npu": VelaSystem(HEARABLE_INI, "Hearable_U55_160MHz", "Hearable_Sram_512KB"),
    "ethos-u85": VelaSystem(HEARABLE_INI, "Hearable_U85_200MHz", "Hearable_Sram_512KB"),
}

HEARABLE_NPU = register(Target(
    name="hearable-npu",
    description="hearable NPU: Ethos-U55-128 at 160 MHz, SRAM working memory, weights "
                "in on-chip flash; int8 (Vela estimate, no host runtime)",
    backends=("ethos-u",),
    default_recipe="int8-static",
    precision="int8",
    threads=1,
    budgets=_HEARABLE_BUDGETS,
    npu="ethos-u55-128",
    clock_mhz=160.0,
))

ETHOS_U85 = register(Target(
    name="ethos-u85",
    description="Ethos-U85-128 at 200 MHz, SRAM working memory, weights in on-chip flash; "
                "int8 (Vela estimate, no host runtime)",
    backends=("ethos-u",),
    default_recipe="int8-static",
    precision="int8",
    threads=1,
    budgets=_HEARABLE_BUDGETS,
    npu="ethos-u85-128",
    clock_mhz=200.0,
))

# No NPU: CMSIS-NN kernels on the M55's Helium vector unit. Vela does not apply, so
# there is no cycle estimate; the flash budget is checked against the .pte size.
CORTEX_M55 = register(Target(
    name="cortex-m55",
    description="Cortex-M55 with CMSIS-NN (Helium), no NPU; int8 (no host runtime)",
    backends=("cortex-m",),
    default_recipe="int8-static",
    precision="int8",
    threads=1,
    budgets=Budgets(chunk_latency_ms=1.0, weights_mb=2.0, flash_kib=2048.0),
    clock_mhz=160.0,
))
