"""The avedge op table: one entry per kernel, from which every list of op names derives
(the torch schemas in ops.py, `CUSTOM_OPS`, the ExecuTorch `.out` ops, the lazy entry
points of the package). Imports no torch: a device running only artifacts reads it.

A kernel here is its functional schema's arguments plus the names of its outputs; the
functional and the `.out` schema are both generated from them:

    flow_step(<args>) -> Tensor
    flow_step.out(<args>, *, Tensor(a!) out) -> Tensor(a!)
"""

from __future__ import annotations

from typing import NamedTuple

NAMESPACE = "avedge"


class Kernel(NamedTuple):
    args: str  # the functional schema's arguments
    outs: tuple[str, ...]  # names of the outputs (the .out overload's keyword arguments)


KERNELS: dict[str, Kernel] = {
    "joint_attention": Kernel("Tensor q_a, Tensor k_a, Tensor v_a, Tensor q_m, Tensor k_m, "
                              "Tensor v_m, Tensor pos_a, Tensor pos_m, float window, "
                              "float? scale=None", ("out_a", "out_m")),
    "flow_step": Kernel("Tensor x, Tensor v_c, Tensor? v_u, Tensor? x_pred, float dt, "
                        "float guidance=1.0", ("out",)),
    "mouth_warp": Kernel("Tensor image, Tensor flow", ("out",)),
}


def _returns(types: list[str]) -> str:
    return types[0] if len(types) == 1 else f"({', '.join(types)})"


def _schemas(name: str, k: Kernel) -> tuple[str, str]:
    aliases = [f"Tensor({chr(ord('a') + i)}!)" for i in range(len(k.outs))]
    outs = ", ".join(f"{a} {o}" for a, o in zip(aliases, k.outs))
    return (f"{name}({k.args}) -> {_returns(['Tensor'] * len(k.outs))}",
            f"{name}.out({k.args}, *, {outs}) -> {_returns(aliases)}")


SCHEMAS = [s for name, k in KERNELS.items() for s in _schemas(name, k)]
OP_NAMES = tuple(f"{NAMESPACE}::{name}" for name in KERNELS)  # what a manifest lists
ET_OPS = tuple(f"{op}.out" for op in OP_NAMES)  # what the ExecuTorch library registers
