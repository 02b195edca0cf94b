"""avedge targets [--json]: the registered device profiles."""

from avedge.cli.common import print_json, print_table


def register(sub):
    p = sub.add_parser("targets", help="list device targets")
    p.add_argument("--json", action="store_true", help="machine-readable list")
    p.set_defaults(func=run)


def run(args) -> int:
    from avedge.targets import list_targets

    targets = list_targets()
    if args.json:
        print_json([t.to_json() for t in targets])
        return 0
    rows = [{"name": t.name, "backends": ",".join(t.backends), "recipe": t.default_recipe,
             "precision": t.precision, "threads": t.threads or "all",
             "budgets": _budgets(t.budgets)} for t in targets]
    print_table(rows, ["name", "backends", "recipe", "precision", "threads", "budgets"])
    return 0


def _budgets(b) -> str:
    parts = [f"{k}={v}" for k, v in vars(b).items() if v is not None]
    return " ".join(parts) or "-"
