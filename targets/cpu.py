"""Application CPUs (x86-64, Arm Cortex-A): ExecuTorch + XNNPACK first, onnxruntime CPU second.

A board is one line: `register(cpu_board(name, what, ...))`. hearable.py adds the
hearable's application core the same way.
"""

from avedge.targets.registry import register
from avedge.targets.target import Budgets, Target

NO_BUDGETS = Budgets()

def cpu_board(name: str, what: str, precision: str = "fp32", recipe: str | None = None,
              threads: int | None = None, budgets: Budgets = NO_BUDGETS) -> Target:
    """A CPU board: `what` it is, the arithmetic it runs, its default recipe (the plain
    recipe of its precision unless given), threads (None = all cores) and budgets."""
    cores = f"{threads} thread{'s' if threads != 1 else ''}" if threads else "all cores"
    return Target(name=name,
                  description=f"{what}: ExecuTorch + XNNPACK and onnxruntime CPU, {cores}, "
                              f"{precision}",
                  backends=("executorch", "onnxruntime"), default_recipe=recipe or precision,
                  precision=precision, threads=threads, budgets=budgets)


register(cpu_board("cpu", "host CPU"))
