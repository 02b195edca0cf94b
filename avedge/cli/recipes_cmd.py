"""avedge recipes [--json]: every named recipe, its configs, what each config applies to
(the module itself, through a quantize_ handler, or the lowering of which file formats)
and the targets that accept the recipe (targets.lowering.recipes_for)."""

from avedge.cli.common import print_json


def register(sub):
    p = sub.add_parser("recipes", help="list compression recipes, what they apply to and the "
                                       "targets that take them")
    p.add_argument("--json", action="store_true", help="machine-readable list")
    p.set_defaults(func=run)


def describe() -> list[dict]:
    from avedge.quantize import config_to_json, get_recipe, is_module_level, recipe_names
    from avedge.targets import list_targets
    from avedge.targets.lowering import FORMAT_LOWERERS, recipes_for

    accepted = {t.name: set(recipes_for(t)) for t in list_targets()}
    out = []
    for name in recipe_names():
        configs = []
        for c in get_recipe(name).configs:
            doc = " ".join((type(c).__doc__ or "").split())
            entry = {**config_to_json(c), "what": doc.split(". ")[0].rstrip(".")}
            if is_module_level(c):
                entry["applies_to"] = "module"  # quantize_ changes the module; every format
            else:
                entry["applies_to"] = "lowering"
                entry["formats"] = [f for f, low in FORMAT_LOWERERS.items()
                                    if isinstance(c, low.accepts)]
            configs.append(entry)
        out.append({"name": name, "configs": configs,
                    "targets": [t for t, names in accepted.items() if name in names]})
    return out


def parametric() -> list[dict]:
    """The parameterised recipe names (int8-keep-K, int8-keep-K@TABLE, ...): a pattern,
    what it does; K and TABLE are filled in by the user (e.g. int8-keep-2@sens.json)."""
    from avedge.quantize.recipes import PARAMETRIC, PARAMETRIC_HELP

    return [{"name": name, "pattern": pattern, "what": PARAMETRIC_HELP.get(name, "")}
            for name, (pattern, _) in PARAMETRIC.items()]


def _config_text(c: dict) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in c.items()
                     if k not in ("type", "what", "applies_to", "formats"))
    where = ("module (quantize_)" if c["applies_to"] == "module"
             else f"lowering of {', '.join(c['formats']) or 'no format'}")
    return f"{c['type']}({args}) -> {where}: {c['what']}"


def run(args) -> int:
    recipes = describe()
    if args.json:
        print_json(recipes)  # the named ones (a parametric name needs its K / TABLE filled in)
        return 0
    for r in recipes:
        print(r["name"])
        for c in r["configs"] or [{"none": True}]:
            print(f"  {_config_text(c)}" if "type" in c else "  (no compression: float32 as "
                                                               "trained)")
        print(f"  targets: {', '.join(r['targets']) or '(none)'}")
    print("parametric (K = layers kept fp32; TABLE = a file from `avedge sensitivity --out`)")
    for p in parametric():
        print(f"  {p['name']}: {p['what']}")
    return 0
