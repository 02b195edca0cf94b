"""Arm microcontroller backends (Ethos-U NPU, Cortex-M CMSIS-NN): known, never runnable here.

Their `.pte` files need ExecuTorch cross-built for the Cortex-M with the Ethos-U
driver (or CMSIS-NN kernels), running on a Corstone-300/320 FVP or a board; the host's
pip runtime has neither (`EthosUBackend is not registered`,
`cortex_m::quantize_per_tensor.out not found`). Registering them lets an artifact
name its backend, lets `load()` refuse it with a clear reason and the list of
backends that do run here, and lets `avedge bench` fall back to the export-time
estimate the manifest records (Vela's, for the NPU).
"""

from __future__ import annotations

from avedge.runtime.backends.base import Backend
from avedge.runtime.errors import BackendUnavailableError

_WHY = ("the host cannot run {what} .pte files: they need ExecuTorch cross-built for "
        "the Cortex-M{extra} on a Corstone FVP or a board")


class _ArmBackend(Backend):
    what = ""
    extra = ""

    @classmethod
    def unavailable_reason(cls):
        return _WHY.format(what=cls.what, extra=cls.extra)

    def __init__(self, model_bytes, manifest, threads):
        raise BackendUnavailableError(f"backend {self.name!r}: {self.unavailable_reason()}")

    def run(self, inputs):
        raise BackendUnavailableError(f"backend {self.name!r}: {self.unavailable_reason()}")


class EthosUBackend(_ArmBackend):
    name = "ethos-u"
    format = "pte-ethos-u"
    what = "Ethos-U NPU"
    extra = " with the Ethos-U driver (Corstone-300 for U55, Corstone-320 for U85)"


class CortexMBackend(_ArmBackend):
    name = "cortex-m"
    format = "pte-cortex-m"
    what = "Cortex-M (CMSIS-NN)"
    extra = " with the CMSIS-NN kernels (Corstone-300)"
