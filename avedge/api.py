"""The one export path: a family (or a module) + a target -> an artifact directory.

    >>> import avedge
    >>> art = avedge.export("speech-extractor", target="hearable", out="art")  # doctest: +SKIP
    >>> sess = avedge.load("art")                                               # doctest: +SKIP

The CLI (`avedge export`), the demo, `benchmarks/` and the sweep all call `export`, so
Python and the command line give the same artifact. Policy lives here and only here:
which weights a target gets (the family's choice unless the user names a file), which
graphs (the family's export plan), and which recipe each graph takes:

    user's recipe  >  the family plan's recipe for that graph  >  the target's default

recorded per graph in the manifest as `recipe_source` ("user", "family", "target").

`plan(...)` makes those decisions without lowering anything (`avedge targets --family`
prints it); `export` writes exactly the plan it returns, then records the family's
metric (`Family.measure` on the staged files) in the manifest.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from avedge.models.registry import Component, Family, ResolvedModel, TargetFacts, resolve_model
from avedge.runtime import load
from avedge.runtime.errors import AvedgeError

__all__ = ["Plan", "choose_recipe", "export", "load", "plan", "resolve_weights",
           "target_facts"]


def target_facts(target) -> TargetFacts:
    return TargetFacts(name=target.name, precision=target.precision, npu=target.npu,
                       microcontroller=bool(target.npu or target.budgets.flash_kib is not None))


def choose_recipe(user: str | None, family: str | None, target) -> tuple[str, str]:
    """-> (recipe name, where it came from). Written once: user > family plan > target."""
    if user is not None:
        return user, "user"
    if family is not None:
        return family, "family"
    return target.default_recipe, "target"


def resolve_weights(spec: Family | None, target, weights: str | None) -> str | None:
    """The user's weights file, else the one the family picks for this target."""
    if weights is not None:
        if not Path(weights).is_file():
            raise AvedgeError(f"weights file {str(weights)!r} does not exist")
        return str(weights)
    if spec is None:
        return None
    for name in spec.weights_for(target_facts(target)):
        path = spec.weights.get(name)
        if path is not None and Path(path).is_file():
            return str(path)
    return None


@dataclasses.dataclass(frozen=True)
class Plan:
    """What an export will write, decided and not yet lowered (`plan()`).

    `components`: [(Component, recipe_source)], each with its recipe and target decided.
    `composite`: several graphs in one artifact (a family's export plan); else the one
    component is written as a plain model artifact. `weights`: the weights file the
    module was built from and who chose it ("user"; "family": the family's choice for
    this target; "default": build()'s own), None for a module passed in.
    """

    family: str
    target: object  # avedge.targets.Target (its precision overridden by --npu-precision)
    components: list
    composite: bool
    weights: str | None = None
    weights_source: str | None = None
    spec: Family | None = None
    module: object = None  # the module the graphs were drawn from, and its example inputs
    example_inputs: tuple | None = None

    def describe(self) -> dict:
        """The plan as data (what `avedge targets --family` prints)."""
        return {"family": self.family, "target": self.target.name,
                "kind": "pipeline" if self.composite else "model",
                "weights": Path(self.weights).name if self.weights else None,
                "weights_source": self.weights_source,
                "metric": self.spec.metric if self.spec else None,
                "components": [{"name": c.name, "recipe": c.recipe, "recipe_source": src,
                                "target": c.target} for c, src in self.components]}


def plan(model, target: str, recipe: str | None = None, weights: str | None = None, *,
         example_inputs=None, family: str | None = None,
         npu_precision: str | None = None) -> Plan:
    """Decide what `export` would write for `model` on `target`: the module (built with
    the chosen weights), its graphs, each graph's recipe (user > family > target) and
    target. Nothing is lowered. Arguments as for `export`."""
    from avedge.quantize import get_recipe
    from avedge.targets import get_target

    target = get_target(target)  # fail fast on names, before the slow model build
    if npu_precision is not None:
        target = _with_npu_precision(target, npu_precision)
    if recipe is not None:
        get_recipe(recipe)
    import torch

    # Example inputs (parity is measured on them, static int8 may calibrate on them) and
    # untrained weights are drawn at a fixed seed: the same call writes the same artifact,
    # from Python or the CLI. The caller's random state is left as it was.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        resolved = _resolve(model, target, weights, example_inputs, family)
        spec = resolved.spec
        graphs = (spec.export_plan(resolved.module, target_facts(target))
                  if spec is not None and spec.export_plan is not None else None)
    if graphs is not None:
        return Plan(resolved.family, target, _decide(graphs, recipe, target), True,
                    resolved.weights, resolved.weights_source, spec, resolved.module,
                    resolved.example_inputs)
    name, source = choose_recipe(recipe, None, target)
    one = Component(resolved.family, resolved.module, resolved.example_inputs, name,
                    target.name)
    return Plan(resolved.family, target, [(one, source)], False, resolved.weights,
                resolved.weights_source, spec, resolved.module, resolved.example_inputs)


def export(model, target: str, out: str | Path, recipe: str | None = None,
           weights: str | None = None, *, example_inputs=None, family: str | None = None,
           npu_precision: str | None = None, allow_over_budget: bool = False,
           measure: bool = True):
    """Lower `model` for `target` into `out` (written atomically) -> Artifact.

    `model`: a registered family name, `package.module:factory`, or an nn.Module (then
    `example_inputs` is required; with `family` it goes through that family's export
    plan, e.g. a compressed or differently sized member of the family). `recipe`
    overrides every graph's recipe except where a component must run elsewhere;
    `weights` a family's shipped weights. `measure`: record the family's metric (its
    `measure` on the written files; null for families without one).
    """
    from avedge.targets.export import export as export_one
    from avedge.targets.export import export_components

    p = plan(model, target, recipe, weights, example_inputs=example_inputs, family=family,
             npu_precision=npu_precision)
    spec = p.spec
    extra = dict(spec.manifest_extra()) if spec else {}
    if p.weights is not None:
        extra["weights"] = Path(p.weights).name
    how = spec.measure if spec is not None and measure else None
    if p.composite:
        components, shared = compress_once(p)
        return export_components(p.target, components, out, family=p.family,
                                 extra=extra or None, allow_over_budget=allow_over_budget,
                                 measure=how, shared=shared)
    (one, source), = p.components
    return export_one(p.target, one.module, one.example_inputs, out, one.recipe,
                      family=p.family, extra=extra or None, recipe_source=source,
                      allow_over_budget=allow_over_budget, measure=how)


def compress_once(p: Plan) -> tuple[list, object]:
    """-> (the plan's components, SharedCompression | None). Where the family's graphs are
    views of one module (Family.compression_view) and all take one recipe on one target,
    the recipe's module-level work is done once, on that view: the graphs are drawn again
    from the compressed module (the same compressed weights in every graph, one pruning /
    calibration / fine-tune instead of one per graph) and the sensitivity ranking of
    KeepFloatConfig is made once. Else the components as planned (each compressed alone)."""
    from avedge.quantize import get_recipe, is_module_level
    from avedge.targets import get_target
    from avedge.targets.export import SharedCompression
    from avedge.targets.lowering import needs_module, prepare, shared_decisions

    view_of = p.spec.compression_view if p.spec is not None else None
    chosen = {(c.recipe, c.target) for c, _ in p.components}
    if view_of is None or p.module is None or len(chosen) != 1:
        return p.components, None
    (name, target_name), = chosen
    recipe = get_recipe(name)
    if not needs_module(recipe):
        return p.components, None
    target = p.target if target_name == p.target.name else get_target(target_name)
    example = tuple(p.example_inputs)
    compressed = prepare(view_of(p.module).eval(), recipe, target, example)
    decided = shared_decisions(compressed, recipe, example)
    if not any(is_module_level(c) for c in recipe.configs):  # the module is unchanged
        return p.components, SharedCompression(None, decided)
    drawn = {c.name: c for c in p.spec.export_plan(compressed.model, target_facts(p.target))}
    if set(drawn) != {c.name for c, _ in p.components}:
        raise AvedgeError(f"family {p.family!r}: its export plan drew graphs "
                          f"{sorted(drawn)} from the compressed module, "
                          f"{sorted(c.name for c, _ in p.components)} from the uncompressed one")
    components = [(dataclasses.replace(c, module=drawn[c.name].module,
                                       example_inputs=drawn[c.name].example_inputs), source)
                  for c, source in p.components]
    return components, SharedCompression({c.name: c.module for c, _ in p.components}, decided)


@dataclasses.dataclass
class _Resolved(ResolvedModel):
    weights: str | None = None
    weights_source: str | None = None


def _resolve(model, target, weights, example_inputs, family) -> _Resolved:
    from avedge.models.registry import get_family

    if isinstance(model, str):
        spec = get_family(model) if ":" not in model else None
        chosen = resolve_weights(spec, target, weights)
        r = resolve_model(model, weights=chosen)
        source = "user" if weights is not None else "family" if chosen is not None else None
        if chosen is None and spec is not None:  # build() loads its default, if it ships
            default = spec.weights.get("default")
            if default is not None and Path(default).is_file():
                chosen, source = str(default), "default"
        return _Resolved(r.module, r.example_inputs, r.family, r.spec, chosen, source)
    if example_inputs is None:
        raise AvedgeError("exporting an nn.Module needs example_inputs (a tuple of tensors)")
    if weights is not None:
        raise AvedgeError("weights apply to a family built by name; an nn.Module passed in "
                          "carries its own")
    if not isinstance(example_inputs, (tuple, list)):
        example_inputs = (example_inputs,)
    if family is not None:
        return _Resolved(model, tuple(example_inputs), family, get_family(family))
    return _Resolved(model, tuple(example_inputs),
                     getattr(model, "family", type(model).__name__), None)


def _decide(plan: list[Component], recipe: str | None, target) -> list[tuple[Component, str]]:
    """Each component with its recipe and target decided, with who chose the recipe. A
    component sent to another target (an NPU board's run-once encoder on the paired
    phone) keeps that target's default: the user's recipe is for the board; so does one
    the family marks `takes_user_recipe=False`."""
    from avedge.targets import get_target

    out = []
    for c in plan:
        comp_target = target if c.target in (None, target.name) else get_target(c.target)
        user = recipe if comp_target.name == target.name and c.takes_user_recipe else None
        name, source = choose_recipe(user, c.recipe, comp_target)
        out.append((dataclasses.replace(c, recipe=name, target=comp_target.name), source))
    return out


def _with_npu_precision(target, scheme: str):
    from avedge.targets.arm.precision import ACTIVATIONS

    schemes = sorted(set(ACTIVATIONS.values()))
    if scheme not in schemes:
        raise AvedgeError(f"--npu-precision {scheme!r} is not a scheme; "
                          f"accepted: {', '.join(schemes)}")
    if not target.npu:
        raise AvedgeError(f"--npu-precision applies to the Ethos-U targets; "
                          f"{target.name!r} has no NPU")
    return dataclasses.replace(target, precision=scheme)
