"""avedge sensitivity MODEL [--recipe int8|int8-static] [--eval N] [--weights FILE]
[--target T] [--json] [--out FILE]: quantize one layer at a time (the rest float), score
each with the family's task metric and list the layers by how much metric each cost
(quantize/sensitivity.py). The table written by --out drives int8-keep-K@FILE."""

import sys

from avedge.cli.common import print_json, print_table, quiet_native_logs


def register(sub):
    p = sub.add_parser(
        "sensitivity", help="task-metric cost of quantizing each layer alone",
        description="For each layer the recipe quantizes in the graph the user's recipe "
                    "reaches: int8 in that layer only, the family's task metric (SI-SDRi "
                    "for the speech extractor) on its eval set, and the drop against the "
                    "float model. --out writes the table that the recipes "
                    "int8-keep-K@FILE / int8-static-keep-K@FILE keep the top K of fp32.")
    p.add_argument("model", help="a registered family with a task metric (e.g. "
                                 "speech-extractor)")
    p.add_argument("--recipe", default="int8", metavar="int8|int8-static",
                   help="the int8 scheme each layer is quantized in: int8 (dynamic, Linear "
                        "layers) or int8-static (calibrated, Linear and Conv; default int8)")
    p.add_argument("--eval", type=int, default=4, dest="eval_n", metavar="N",
                   help="eval items each layer is scored on (default 4)")
    p.add_argument("--weights", metavar="FILE", help="a weights file for the family (default: "
                                                     "its own for --target)")
    p.add_argument("--target", default="cpu", help="the target whose graphs are ranked "
                                                   "(default cpu)")
    p.add_argument("--out", metavar="FILE", help="write the table (JSON) here")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=run)


def scored_families() -> list[str]:
    """The registered families with a score_module (one that fails to import is left out:
    a family still being written must not break the message naming the others)."""
    from avedge.models.registry import family_names, get_family

    out = []
    for name in family_names():
        try:
            if getattr(get_family(name), "score_module", None) is not None:
                out.append(name)
        except Exception:  # noqa: BLE001, S112 - see the docstring
            continue
    return out


def measure_table(model: str, recipe: str = "int8", n: int = 4, weights: str | None = None,
                  target: str = "cpu", progress=None) -> dict:
    """The task-metric sensitivity table of a registered family with its provenance."""
    import hashlib
    from pathlib import Path

    from avedge import api
    from avedge.quantize.sensitivity import (
        RECIPE_LAYERS,
        TABLE_FORMAT,
        family_score,
        layer_table,
        root_of,
    )
    from avedge.runtime.errors import AvedgeError

    if recipe not in RECIPE_LAYERS:
        raise AvedgeError(f"--recipe {recipe!r} is not one of {', '.join(RECIPE_LAYERS)} "
                          f"(the int8 schemes a layer can be quantized alone in)")
    if not isinstance(n, int) or n < 1:
        raise AvedgeError(f"--eval must be an integer >= 1, got {n!r}")
    if ":" in model:
        raise AvedgeError(f"{model!r}: sensitivity scores a registered family's task metric; "
                          f"for your own module call avedge.quantize.sensitivity.sensitivity("
                          f"model, score) with your score function")
    plan = api.plan(model, target, recipe, weights)
    if getattr(plan.spec, "score_module", None) is None:
        raise AvedgeError(f"model family {plan.family!r} has no task metric on an eager "
                          f"module (score_module); families that have one: "
                          f"{', '.join(scored_families()) or 'none'}")
    mine = [c for c, source in plan.components if source == "user"]
    if len(mine) != 1:
        raise AvedgeError(f"{plan.family} on {target}: the recipe reaches {len(mine)} graphs; "
                          f"sensitivity ranks the layers of one")
    comp = mine[0]
    score, results = family_score(plan.spec, n, keep=True)
    higher = [True]

    def scored(module) -> float:  # the metric's direction, from the first result
        value = score(module)
        higher[0] = results[0].get("higher_is_better", True)
        return value

    table = layer_table(root_of(comp.module, [c.module for c, _ in plan.components]),
                        comp.module, comp.example_inputs, recipe, scored, True, progress)
    if not higher[0]:  # rows were ranked as if higher were better: flip the drops
        for r in table["layers"]:
            r["drop"] = -r["drop"]
        table["layers"].sort(key=lambda r: r["drop"], reverse=True)
    first = results[0]
    return {"format": TABLE_FORMAT, "family": plan.family, "graph": comp.name,
            "target": target, "recipe": recipe,
            "weights": str(Path(plan.weights).resolve()) if plan.weights else None,
            "weights_sha256": (hashlib.sha256(Path(plan.weights).read_bytes()).hexdigest()
                               if plan.weights else None),
            "module_sha256": table["module_sha256"],
            "metric": {"name": first.get("name", plan.spec.metric), "higher_is_better": higher[0],
                       "n": first.get("n", n), "eval_set": first.get("eval_set"),
                       "float": table["float"]},
            **{k: table[k] for k in ("fake_quant", "calibration") if k in table},
            "layers": table["layers"]}


def run(args) -> int:
    quiet_native_logs()
    from avedge.runtime.errors import AvedgeError
    from avedge.runtime.fsutil import atomic_write_json

    if args.out and args.out.endswith("/"):
        raise AvedgeError(f"--out {args.out!r} names a folder; give a file (e.g. table.json)")

    def progress(i, n, name):
        if not args.json:
            print(f"\r[{i}/{n}] {name}".ljust(60), end="" if i < n else "\n",
                  file=sys.stderr, flush=True)

    table = measure_table(args.model, args.recipe, args.eval_n, args.weights, args.target,
                          progress)
    if args.out:
        atomic_write_json(args.out, table)
    if args.json:
        print_json(table)
        return 0
    m = table["metric"]
    print(f"{table['family']} graph {table['graph']!r}, {table['recipe']} one layer at a "
          f"time; {m['name']} on {m['n']} {m['eval_set']['name']} items, float model "
          f"{m['float']:.3f}" + ("" if m["higher_is_better"] else " (lower is better)"))
    print_table([{"layer": r["layer"], "kind": r["kind"], "params": r["params"],
                  m["name"]: f"{r['score']:.3f}", "drop": f"{r['drop']:+.3f}"}
                 for r in table["layers"]], ["layer", "kind", "params", m["name"], "drop"])
    if args.out:
        print(f"wrote {args.out} (use it as int8-keep-K@{args.out})"
              if table["recipe"] == "int8" else
              f"wrote {args.out} (use it as int8-static-keep-K@{args.out})")
    return 0
