"""A short distillation fine-tune: after low-rank factorisation or pruning, train the
compressed model to reproduce the uncompressed one's outputs on calibration inputs.

`DistillConfig` goes in a recipe after the compression configs, e.g. (LowRankConfig(0.5),
DistillConfig()): the teacher is the module as it was before the recipe's module-level
configs (quantize/api.py `recipe_context().original`, never modified), so one config
serves every compression that comes before it and `quantize_` stays one config at a time.
No labels are needed: the loss is the teacher's own outputs (each output's mean squared
error relative to its power, so a small state tensor counts as much as the audio), or
the model's `distill_loss(student_outputs, teacher_outputs)` where the family defines one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from avedge.quantize.api import recipe_context, register_handler
from avedge.quantize.configs import register_config
from avedge.runtime.errors import AvedgeError


@register_config
@dataclass(frozen=True)
class DistillConfig:
    """Fine-tune the compressed model for `steps` Adam steps at `lr` towards the
    uncompressed model's outputs, over `batches` of the model's calibration_inputs() taken
    evenly across it (or perturbed copies of the example inputs)."""

    steps: int = 200
    # Measured on the shipped speech extractor after lowrank-0.5: 1e-3 and 3e-4 only made
    # the output error worse (kept the start), 1e-4 cut it ~4x in 200 steps.
    lr: float = 1e-4
    batches: int = 32  # spread over the model's calibration set (a stream: ~400 chunks)

    def __post_init__(self):
        for name in ("steps", "batches"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (
                0 < self.lr < 1):
            raise ValueError(f"lr must be in (0, 1), got {self.lr!r}")


def _floats(out) -> list:
    import torch

    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in outs if isinstance(o, torch.Tensor) and o.is_floating_point()]


def output_mse(student_out, teacher_out):
    """Sum over the float outputs of MSE / mean power of the teacher's output."""
    total = 0.0
    for s, t in zip(_floats(student_out), _floats(teacher_out), strict=True):
        total = total + (s - t).pow(2).mean() / t.pow(2).mean().clamp_min(1e-12)
    return total


def distill(student, teacher, inputs, steps: int, lr: float, loss=None) -> list[float]:
    """Train `student` (in place, eval mode: no dropout, norm statistics kept) towards
    `teacher`'s outputs over `inputs` (a list of argument tuples), cycling through them
    for `steps` Adam steps. `loss(student_out, teacher_out)` defaults to `output_mse`.
    Ends with the better of the starting and final weights by the loss over all inputs.
    -> [loss over all inputs before, after]."""
    import torch

    loss = loss or output_mse
    inputs = [tuple(b) for b in inputs]
    if not inputs:
        raise AvedgeError("distillation needs at least one input batch")
    teacher.eval()
    with torch.no_grad():
        targets = [teacher(*b) for b in inputs]

    def full_loss() -> float:
        with torch.no_grad():
            return float(sum(loss(student(*b), t) for b, t in zip(inputs, targets)))

    student.eval()
    params = [p for p in student.parameters() if p.is_floating_point()]
    before, start = full_loss(), copy.deepcopy(student.state_dict())
    with torch.enable_grad():
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=lr)
        for step in range(steps):
            b, t = inputs[step % len(inputs)], targets[step % len(inputs)]
            opt.zero_grad(set_to_none=True)
            loss(student(*b), t).backward()
            opt.step()
    after = full_loss()
    if not after <= before:  # too high a learning rate made it worse: keep what it was
        student.load_state_dict(start)
        after = before
    for p in params:
        p.grad = None
    return [before, after]


def calibration_batches(model, n: int, what: str) -> list[tuple]:
    """Up to `n` input batches for `model`: spread evenly over its calibration_inputs()
    where it has them, else the recipe's example inputs and perturbed copies."""
    from avedge.quantize.calibration import calibration_inputs

    ctx = recipe_context()
    if not hasattr(model, "calibration_inputs") and ctx.example_inputs is None:
        raise AvedgeError(f"{what} needs inputs: {type(model).__name__} has no "
                          f"calibration_inputs() and no example inputs were given (export with "
                          f"example_inputs, or quantize_ inside avedge.quantize.api.using())")
    batches = calibration_inputs(model, ctx.example_inputs or (), n)
    return batches[::max(1, len(batches) // n)][:n]


@register_handler(DistillConfig)
def distill_handler(model, config: DistillConfig):
    from avedge.quantize.weight_only import has_tensor_subclass_weights

    ctx = recipe_context()
    if ctx.original is None:
        raise AvedgeError("DistillConfig needs the uncompressed model as its teacher: put it "
                          "in a recipe after the compression configs (apply_recipe), or call "
                          "quantize_ inside avedge.quantize.api.using(teacher, inputs)")
    if has_tensor_subclass_weights(model):
        raise AvedgeError("DistillConfig trains float weights: put it before "
                          "Int8WeightOnlyConfig in the recipe")
    inputs = calibration_batches(ctx.original, config.batches, "DistillConfig")
    distill(model, ctx.original, inputs, config.steps, config.lr,
            getattr(ctx.original, "distill_loss", None))
    return model
