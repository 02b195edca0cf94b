"""avedge export MODEL --target T [--recipe R] --out DIR

MODEL is a registered family (see models/registry.py) or package.module:factory,
where factory() returns (module, example_inputs).
"""

import os
import sys

from avedge.cli.common import print_json, quiet_native_logs
from avedge.cli.parity_text import deviation_line, parity_against


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


def run(args) -> int:
    quiet_native_logs()
    from avedge.api import export
    from avedge.targets import get_target

    # Like `python -m`, let a user's own package in the working directory be imported.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    art = export(args.model, args.target, args.out, recipe=args.recipe, weights=args.weights,
                 npu_precision=args.npu_precision, allow_over_budget=args.allow_over_budget)
    target = get_target(args.target)
    weights = art.manifest.get("extra", {}).get("weights")
    if args.json:
        print_json(art.manifest)
    elif art.manifest.get("kind") == "pipeline":
        print(f"wrote {args.out}: {art.manifest['family']} for {target.name}"
              + (f" (weights {weights})" if weights else "") + ", components: "
              + ", ".join(f"{n} ({c['recipe']})" for n, c in art.manifest["components"].items()))
        print_metric(art.manifest.get("metric"))
    else:
        m = art.manifest
        files = ", ".join(f"{n} ({r['bytes'] / 1024:.0f} KiB)" for n, r in m["files"].items())
        parity = ", ".join(f"{f}: {p['max_abs_err']:.2e}" for f, p in m["parity"].items())
        quant = ", ".join(f"{f} {q['int8_compute_ops']}/{q['int8_compute_ops'] + q['float_compute_ops']}"
                          for f, q in m["quantization"].items())
        print(f"wrote {args.out}: {m['family']} for {m['target']} ({m['recipe']})\n"
              f"  files: {files}\n  parity vs {parity_against(m)} (max abs err): {parity}")
        deviation = deviation_line(m)
        if deviation:
            print(f"  {deviation}")
        print(f"  compute ops in int8: {quant}")
        print_metric(m.get("metric"))
        if m.get("npu_estimate"):  # Arm NPU targets: Vela's figures, labelled
            from avedge.targets.arm.vela import format_estimate

            for line in format_estimate(m["npu_estimate"]):
                print(f"  npu: {line}")
            b = m["budgets"]
            print(f"  budgets: {b['estimated_chunk_ms']:.3f} / {b['chunk_latency_ms']:g} ms "
                  f"per chunk, SRAM {b['used_sram_kib']:.0f} / {b['sram_kib']:g} KiB, flash "
                  f"{b['used_flash_kib']:.0f} / {b['flash_kib']:g} KiB; TOSA check max "
                  f"{m['tosa_check']['max_lsb_diff']} LSB")
    return 0


ITEMS = {"si_sdri_db": "mixtures", "wer": "utterances", "pose_mae": "windows"}  # eval items


def print_metric(metric: dict | None) -> None:
    """The family metric the export measured, or why it could not."""
    if not metric:
        return
    if metric.get("value") is None:
        print(f"  {metric['name']}: not measured ({metric.get('reason', 'no reason given')})")
        return
    where = metric.get("eval_set", {})
    se = f" ± {metric['se_db']:.2f}" if metric.get("se_db") is not None else ""
    value = metric["value"]
    # A dB gain reads well signed with 2 decimals; an error (WER %, pose MAE ~0.01) as is.
    shown = f"{value:+.2f}" if "db" in metric["name"] else f"{value:.4g}"
    items = ITEMS.get(metric["name"], "items")
    print(f"  {metric['name']}: {shown}{se} on {metric['n']} {where.get('split', '')} "
          f"{items} through the runtime ({metric.get('backend')})")
