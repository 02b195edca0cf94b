"""How `avedge export` and `avedge info` word an artifact's parity: against which module it
was measured, and how far the recipe itself moved the output.

Parity compares the artifact's files with the eager module the lowering was given. When
the recipe changed that module first (pruning, low-rank, weight-only int8: module-level
configs), that is the compressed module, and the manifest records the recipe's own
deviation from the uncompressed model beside it (recipe_deviation); otherwise it is the
uncompressed module, and any int8/fp16 of the recipe (applied in the lowering) is inside
the parity figure.
"""

from __future__ import annotations


def parity_against(manifest: dict) -> str:
    """What the parity figures were measured against, in words."""
    if manifest.get("recipe_deviation") is not None:
        return "the compressed eager module"
    if manifest.get("recipe") in (None, "fp32"):
        return "the eager module"
    return "the uncompressed eager module (the recipe's quantization is in the lowering)"


def deviation_line(manifest: dict) -> str | None:
    """The recipe's deviation from the uncompressed model, or None when not recorded."""
    dev = manifest.get("recipe_deviation")
    if dev is None:
        return None
    return (f"recipe deviation from the uncompressed model: relative error "
            f"{dev['rel_err']:.2e} (max abs err {dev['max_abs_err']:.2e}) on the example "
            f"inputs, the recipe's own effect, recorded, not a fault")
