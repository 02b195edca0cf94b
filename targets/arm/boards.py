"""Board helpers for Arm microcontrollers: the facts every Ethos-U or Cortex-M line shares,
so that a board is one registered line in targets/arm/__init__.py.

An Ethos-U board also names the Vela system config and memory mode (in `configs/`) its
estimates use; `VELA_SYSTEMS` maps the board name to them for the lowering
(`lower.ethos_u_spec`). The .ini's clock must equal the board's `mhz` (checked in
tests/targets/test_arm.py), so the manifest and Vela agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avedge.targets.target import Budgets, Target

CONFIG_DIR = Path(__file__).parent / "configs"
HEARABLE_INI = CONFIG_DIR / "hearable.ini"

# The hearable job: an 8 ms chunk in <= 1 ms, activations in 512 KiB of SRAM, weights +
# command stream in 2 MiB of on-chip flash.
HEARABLE_BUDGETS = Budgets(chunk_latency_ms=1.0, weights_mb=2.0, sram_kib=512.0,
                           flash_kib=2048.0)
# No SRAM budget without an NPU: CMSIS-NN's scratch is not planned by Vela.
CORTEX_M_BUDGETS = Budgets(chunk_latency_ms=1.0, weights_mb=2.0, flash_kib=2048.0)


@dataclass(frozen=True)
class VelaSystem:
    """Which Vela system config / memory mode a board line is estimated with."""

    config_ini: Path
    system_config: str
    memory_mode: str


VELA_SYSTEMS: dict[str, VelaSystem] = {}


def ethos_u_board(name: str, npu: str, mhz: float, system: str,
                  memory_mode: str = "Hearable_Sram_512KB", config_ini: Path = HEARABLE_INI,
                  budgets: Budgets = HEARABLE_BUDGETS, label: str = "") -> Target:
    """A board with an Ethos-U NPU (`npu` as Vela names it, e.g. "ethos-u55-128") at `mhz`,
    int8, estimated by Vela with `system` / `memory_mode` of `config_ini`."""
    if name in VELA_SYSTEMS:
        raise ValueError(f"Ethos-U board {name!r} is defined twice")
    VELA_SYSTEMS[name] = VelaSystem(Path(config_ini), system, memory_mode)
    accelerator = npu.replace("ethos-u", "Ethos-U")
    return Target(
        name=name,
        description=f"{label}{accelerator} at {mhz:g} MHz, SRAM working memory, weights in "
                    f"on-chip flash; int8 (Vela estimate, no host runtime)",
        backends=("ethos-u",), default_recipe="int8-static", precision="int8", threads=1,
        budgets=budgets, npu=npu, clock_mhz=float(mhz))


def cortex_m_board(name: str, mhz: float, budgets: Budgets = CORTEX_M_BUDGETS) -> Target:
    """A Cortex-M core without an NPU: int8 CMSIS-NN kernels on its Helium vector unit. Vela
    does not apply, so there is no cycle estimate; the flash budget is checked against the
    .pte size."""
    core = name.replace("cortex-m", "Cortex-M")
    return Target(
        name=name, description=f"{core} with CMSIS-NN (Helium), no NPU; int8 (no host runtime)",
        backends=("cortex-m",), default_recipe="int8-static", precision="int8", threads=1,
        budgets=budgets, clock_mhz=float(mhz))
