"""Calibration inputs for static quantization."""

from __future__ import annotations

import torch


def calibration_inputs(module, example_inputs: tuple, n: int) -> list[tuple]:
    """The model's own calibration set if it has one, else `n` perturbed example copies.

    Perturbing keeps the shapes and rough scale of the example while spreading the
    observed ranges; a model that knows its real signal (speech, state after a few
    chunks) should define `calibration_inputs()` instead.
    """
    if hasattr(module, "calibration_inputs"):
        batches = [tuple(b) for b in module.calibration_inputs()]
        if not batches:
            raise ValueError("module.calibration_inputs() returned no batches")
        return batches
    gen = torch.Generator().manual_seed(0)
    batches = [tuple(example_inputs)]
    for _ in range(n - 1):
        batches.append(tuple(
            x + torch.randn(x.shape, generator=gen) * (x.abs().mean() + 1e-3)
            if x.is_floating_point() else x for x in example_inputs))
    return batches
