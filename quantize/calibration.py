"""Calibration inputs for static quantization, and where they came from.

The provenance is recorded in the manifest (quantization[fmt]["calibration"]) so a reader
can check that static scales were not fitted on the data the artifact is scored on.
"""

from __future__ import annotations

import torch

PERTURBED_SEED = 0


def calibration_inputs(module, example_inputs: tuple, n: int) -> list[tuple]:
    """The model's own calibration set if it has one, else `n` perturbed example copies.

    Perturbing keeps the shapes and rough scale of the example while spreading the
    observed ranges; a model that knows its real signal (speech, state after a few
    chunks) should define `calibration_inputs()` instead.
    """
    return calibration_set(module, example_inputs, n)[0]


def calibration_set(module, example_inputs: tuple, n: int) -> tuple[list[tuple], dict]:
    """-> (batches, provenance). Provenance: {"source", "batches", ...}; a module with
    `calibration_inputs()` may also describe its data with `calibration_provenance()`
    (e.g. which file, which split, which seed)."""
    if hasattr(module, "calibration_inputs"):
        batches = [tuple(b) for b in module.calibration_inputs()]
        if not batches:
            raise ValueError("module.calibration_inputs() returned no batches")
        described = getattr(module, "calibration_provenance", None)
        return batches, {"source": f"{type(module).__name__}.calibration_inputs()",
                         "batches": len(batches),
                         **(described() if callable(described) else {})}
    gen = torch.Generator().manual_seed(PERTURBED_SEED)
    batches = [tuple(example_inputs)]
    for _ in range(n - 1):
        batches.append(tuple(
            x + torch.randn(x.shape, generator=gen) * (x.abs().mean() + 1e-3)
            if x.is_floating_point() else x for x in example_inputs))
    return batches, {"source": "perturbed example inputs", "batches": len(batches),
                     "seed": PERTURBED_SEED,
                     "note": "the example inputs plus Gaussian copies at their mean level; "
                             "give the module calibration_inputs() for real signals"}
