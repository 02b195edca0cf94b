"""avedge targets [--family NAME] [--json]: the registered device profiles.

With --family, what `avedge export NAME --target T` would write for each target: the
graphs, each with its recipe, who chose that recipe (user > family > target) and the
target it runs on, and the weights file. Decided by avedge.api.plan, the code export
itself runs, so the listing cannot drift from the artifacts.
"""

from avedge.cli.common import print_json, print_table


def register(sub):
    p = sub.add_parser("targets", help="list device targets (with --family: what an export "
                                       "of that family holds on each)")
    p.add_argument("--family", help="a registered model family (see `avedge export --help`)")
    p.add_argument("--recipe", help="with --family: the recipe you would pass to export")
    p.add_argument("--weights", help="with --family: the weights file you would pass")
    p.add_argument("--json", action="store_true", help="machine-readable list")
    p.set_defaults(func=run)


def run(args) -> int:
    from avedge.targets import list_targets

    targets = list_targets()
    if args.family is not None:
        return _family(args, targets)
    if args.recipe or args.weights:
        from avedge.runtime.errors import AvedgeError

        raise AvedgeError("--recipe and --weights go with --family NAME")
    if args.json:
        print_json([t.to_json() for t in targets])
        return 0
    rows = [{"name": t.name, "backends": ",".join(t.backends), "recipe": t.default_recipe,
             "precision": t.precision, "threads": t.threads or "all",
             "budgets": _budgets(t.budgets)} for t in targets]
    print_table(rows, ["name", "backends", "recipe", "precision", "threads", "budgets"])
    return 0


def _family(args, targets) -> int:
    from avedge.api import plan
    from avedge.models.registry import get_family

    get_family(args.family)  # an unknown name fails here, naming the accepted ones
    plans = [_plan(plan, args, t.name) for t in targets]
    if args.json:
        print_json(plans)
        return 0
    rows = [{"target": p["target"], "component": c["name"], "recipe": c["recipe"],
             "chosen_by": c["recipe_source"], "runs_on": c["target"],
             "weights": _weights(p)} for p in plans for c in p.get("components", [])]
    print(f"{args.family}: what `avedge export {args.family} --target T` writes "
          f"(recipe chosen by: user > family > target)")
    print_table(rows, ["target", "component", "recipe", "chosen_by", "runs_on", "weights"])
    for p in plans:
        if "refused" in p:
            print(f"{p['target']}: export refused: {p['refused']}")
    return 0


def _plan(plan, args, target: str) -> dict:
    """One target's plan, or why export would refuse it (e.g. weights that do not fit the
    form a board runs): the other targets are still listed."""
    from avedge.runtime.errors import AvedgeError

    try:
        return plan(args.family, target, recipe=args.recipe, weights=args.weights).describe()
    except AvedgeError as exc:
        return {"family": args.family, "target": target, "refused": str(exc)}


def _weights(p: dict) -> str:
    return f"{p['weights']} ({p['weights_source']})" if p["weights"] else "-"


def _budgets(b) -> str:
    parts = [f"{k}={v}" for k, v in vars(b).items() if v is not None]
    return " ".join(parts) or "-"
