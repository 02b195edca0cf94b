"""Arm microcontroller boards: Ethos-U55/U85 NPUs and Cortex-M55 (CMSIS-NN), one line each.

Everything Arm lives in this folder: the board helpers (boards.py), the lowering through
ExecuTorch's Arm backend (lower.py: PT2E int8 or int16-activation quantization, a TOSA
graph, then Vela for the Ethos-U command stream), the precision schemes and the NPU's
int16 tables (precision.py), the NPU-friendly rewrites (rewrites.py), the TOSA reference
check (tosa.py), Vela's report (vela.py) and the Vela system configs (configs/).

The host cannot run the resulting `.pte` (it needs a cross-built runtime on a Corstone FVP
or a board), so export records Vela's estimate (cycles, time at the clock, SRAM/flash) and
checks the TOSA graph in the TOSA reference model instead.
"""

from __future__ import annotations

from avedge.targets.arm.boards import (
    CONFIG_DIR,
    HEARABLE_INI,
    VELA_SYSTEMS,
    VelaSystem,
    cortex_m_board,
    ethos_u_board,
)
from avedge.targets.registry import register

register(ethos_u_board("hearable-npu", npu="ethos-u55-128", mhz=160, system="Hearable_U55_160MHz",
                       label="hearable NPU: "))
register(ethos_u_board("ethos-u85", npu="ethos-u85-128", mhz=200, system="Hearable_U85_200MHz"))
register(cortex_m_board("cortex-m55", mhz=160))

__all__ = ["CONFIG_DIR", "HEARABLE_INI", "VELA_SYSTEMS", "VelaSystem", "cortex_m_board",
           "ethos_u_board"]
