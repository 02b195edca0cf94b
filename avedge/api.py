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
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from avedge.models.registry import Component, Family, ResolvedModel, TargetFacts, resolve_model
from avedge.runtime import load
from avedge.runtime.errors import AvedgeError

__all__ = ["choose_recipe", "export", "load", "target_facts"]


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


def export(model, target: str, out: str | Path, recipe: str | None = None,
           weights: str | None = None, *, example_inputs=None, family: str | None = None,
           npu_precision: str | None = None, allow_over_budget: bool = False):
    """Lower `model` for `target` into `out` (written atomically) -> Artifact.

    `model`: a registered family name, `package.module:factory`, or an nn.Module (then
    `example_inputs` is required; with `family` it goes through that family's export
    plan, e.g. a compressed or differently sized member of the family). `recipe`
    overrides every graph's recipe except where a component must run elsewhere;
    `weights` a family's shipped weights.
    """
    from avedge.quantize import get_recipe
    from avedge.targets import get_target
    from avedge.targets.export import export, export_components

    target = get_target(target)  # fail fast on names, before the slow model build
    if npu_precision is not None:
        target = _with_npu_precision(target, npu_precision)
    if recipe is not None:
        get_recipe(recipe)
    resolved = _resolve(model, target, weights, example_inputs, family)
    spec = resolved.spec
    facts = target_facts(target)
    extra = dict(spec.manifest_extra()) if spec else {}
    if resolved.weights is not None:
        extra["weights"] = Path(resolved.weights).name
    plan = spec.export_plan(resolved.module, facts) if spec and spec.export_plan else None
    if plan is None:
        name, source = choose_recipe(recipe, None, target)
        return export(target, resolved.module, resolved.example_inputs, out, name,
                             family=resolved.family, extra=extra or None,
                             recipe_source=source, allow_over_budget=allow_over_budget)
    return export_components(target, _decide(plan, recipe, target), out, family=resolved.family,
                           extra=extra or None, allow_over_budget=allow_over_budget)


@dataclasses.dataclass
class _Resolved(ResolvedModel):
    weights: str | None = None


def _resolve(model, target, weights, example_inputs, family) -> _Resolved:
    if isinstance(model, str):
        spec = None
        if ":" not in model:
            from avedge.models.registry import get_family

            spec = get_family(model)
        weights = resolve_weights(spec, target, weights)
        r = resolve_model(model, weights=weights)
        return _Resolved(r.module, r.example_inputs, r.family, r.spec, weights)
    if example_inputs is None:
        raise AvedgeError("exporting an nn.Module needs example_inputs (a tuple of tensors)")
    if not isinstance(example_inputs, (tuple, list)):
        example_inputs = (example_inputs,)
    if family is not None:
        from avedge.models.registry import get_family

        return _Resolved(model, tuple(example_inputs), family, get_family(family), None)
    return _Resolved(model, tuple(example_inputs),
                     getattr(model, "family", type(model).__name__), None, None)


def _decide(plan: list[Component], recipe: str | None, target) -> list[Component]:
    """Each component with its recipe and target decided. A component sent to another
    target (an NPU board's run-once encoder on the paired phone) keeps that target's
    default: the user's recipe is for the board."""
    from avedge.targets import get_target

    out = []
    for c in plan:
        comp_target = get_target(c.target or target.name)
        user = recipe if comp_target.name == target.name else None
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
