"""avedge export MODEL --target T [--recipe R] --out DIR

MODEL is a registered family (see models/registry.py) or package.module:factory,
where factory() returns (module, example_inputs).
"""

import dataclasses
import os
import sys
from pathlib import Path

from avedge.cli.common import print_json, quiet_native_logs
from avedge.runtime.errors import AvedgeError


def register(sub):
    p = sub.add_parser("export", help="lower a model for a target into an artifact directory")
    p.add_argument("model", help="registered family name or package.module:factory")
    p.add_argument("--target", required=True, help="device target (see `avedge targets`)")
    p.add_argument("--recipe", help="compression recipe (default: the target's)")
    p.add_argument("--out", required=True, help="artifact directory to write (atomically)")
    p.add_argument("--weights", help="weights file (.safetensors) for a registered family")
    p.add_argument("--npu-precision",
                   help="Ethos-U targets: a8w8-log16 (default: int8, int16 into logs), a8w8, "
                        "a16w8 (int16 activations, ~2x the cycles) or a8w4 (int4 weights)")
    p.add_argument("--allow-over-budget", action="store_true",
                   help="write the artifact even if it exceeds the target's weights budget")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=run)


def export_model(model, target, out, recipe: str | None = None, allow_over_budget: bool = False,
                 weights: str | None = None):
    """A resolved model -> artifact: one graph, or a composite for multi-graph families,
    each component with the recipe its family picks for the target (unless `recipe`)."""
    from avedge.targets import export_pipeline

    components = model.components
    if components is None:
        return target.export(model.module, model.example_inputs, out, recipe=recipe,
                             family=model.family, allow_over_budget=allow_over_budget)
    fam = model.family_module
    recipes = fam.component_recipes(target.precision, recipe)
    if (target.npu or target.budgets.flash_kib is not None) and hasattr(fam, "npu_components"):
        # A microcontroller board (NPU or CMSIS-NN): the family's NPU form (same function,
        # graphs shaped for batch-1 integer hardware); run-once parts may go to the
        # paired phone (NPU_COMPONENT_TARGETS), the rest take the board's integer recipe.
        components = fam.npu_components(model.module)
        recipes, targets = {}, getattr(fam, "NPU_COMPONENT_TARGETS", {})
    else:
        targets = {}
    extra = fam.export_extra() if hasattr(fam, "export_extra") else {}
    if weights is not None:
        extra["weights"] = Path(weights).name
    return export_pipeline(target, components, out, recipe=recipe, family=model.family,
                           recipes=recipes, targets=targets, extra=extra or None,
                           allow_over_budget=allow_over_budget)


def weights_for(family: str, target, weights: str | None) -> str | None:
    """The user's weights, else for an NPU target the family's NPU-fitted weights
    (pruned + quantization-aware fine-tuned for it) when they ship, else its plain-mask
    float weights (the form an NPU runs; the default float model may deep-filter) when
    they ship, else the default."""
    if weights is not None or not target.npu or ":" in family:
        return weights
    from avedge.models.registry import get_family

    fam = get_family(family)
    for attr in ("NPU_WEIGHTS_FILE", "MASK_WEIGHTS_FILE"):
        path = getattr(fam, attr, None)
        if path is not None and Path(path).exists():
            return str(path)
    return None


def run(args) -> int:
    quiet_native_logs()
    from avedge.models.registry import resolve_model
    from avedge.quantize import get_recipe
    from avedge.targets import get_target

    target = get_target(args.target)  # fail fast on names, before the slow model build
    if args.npu_precision:
        from avedge.targets.arm_precision import ACTIVATIONS

        schemes = sorted(set(ACTIVATIONS.values()))
        if args.npu_precision not in schemes:
            raise AvedgeError(f"--npu-precision {args.npu_precision!r} is not a scheme; "
                              f"accepted: {', '.join(schemes)}")
        if not target.npu:
            raise AvedgeError(f"--npu-precision applies to the Ethos-U targets; "
                              f"{target.name!r} has no NPU")
        target = dataclasses.replace(target, precision=args.npu_precision)
    if args.recipe:
        get_recipe(args.recipe)
    # Like `python -m`, let a user's own package in the working directory be imported.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    weights = weights_for(args.model, target, args.weights)
    model = resolve_model(args.model, weights=weights)
    art = export_model(model, target, args.out, recipe=args.recipe,
                       allow_over_budget=args.allow_over_budget, weights=weights)
    if args.json:
        print_json(art.manifest)
    elif art.manifest.get("kind") == "pipeline":
        print(f"wrote {args.out}: {model.family} for {target.name}"
              + (f" (weights {Path(weights).name})" if weights else "") + ", components: "
              + ", ".join(f"{n} ({c['recipe']})" for n, c in art.manifest["components"].items()))
    else:
        m = art.manifest
        files = ", ".join(f"{n} ({r['bytes'] / 1024:.0f} KiB)" for n, r in m["files"].items())
        parity = ", ".join(f"{f}: {p['max_abs_err']:.2e}" for f, p in m["parity"].items())
        quant = ", ".join(f"{f} {q['int8_compute_ops']}/{q['int8_compute_ops'] + q['float_compute_ops']}"
                          for f, q in m["quantization"].items())
        print(f"wrote {args.out}: {m['family']} for {m['target']} ({m['recipe']})\n"
              f"  files: {files}\n  parity vs eager (max abs err): {parity}\n"
              f"  compute ops in int8: {quant}")
        if m.get("npu_estimate"):  # Arm NPU targets: Vela's figures, labelled
            from avedge.targets.vela_report import format_estimate

            for line in format_estimate(m["npu_estimate"]):
                print(f"  npu: {line}")
            b = m["budgets"]
            print(f"  budgets: {b['estimated_chunk_ms']:.3f} / {b['chunk_latency_ms']:g} ms "
                  f"per chunk, SRAM {b['used_sram_kib']:.0f} / {b['sram_kib']:g} KiB, flash "
                  f"{b['used_flash_kib']:.0f} / {b['flash_kib']:g} KiB; TOSA check max "
                  f"{m['tosa_check']['max_lsb_diff']} LSB")
    return 0
