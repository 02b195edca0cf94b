"""A sweep's choices, validated before anything is written, and the trial specs they make.

A trial spec is a plain JSON dict (trial.py's contract), so any executor can ship it to
another process or host: {"trial_id", "model", "weights", "recipe", "target", "backend",
"eval_n", "metric", "runs", "warmup", "out_dir"}.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from avedge.runtime.errors import AvedgeError


@dataclass(frozen=True)
class Sweep:
    """`backends` None: each target's own backends. `metric`: "pkg.mod:function", called
    as function(session) -> {"name", "value"[, "higher_is_better"]} on the loaded
    artifact (a runtime Session, or a Pipeline for a composite artifact); it replaces the
    family's metric. `eval_n`: eval items the family metric is measured on."""

    model: str
    recipes: list[str]
    targets: list[str]
    backends: list[str] | None = None
    eval_n: int = 4
    weights: str | None = None
    metric: str | None = None
    runs: int = 200
    warmup: int = 20
    extra: dict = field(default_factory=dict)  # recorded in the settings, not interpreted

    def settings(self) -> dict:
        """What a resumed sweep must share with the one that wrote the folder: the trials
        it kept were measured this way. (Recipes, targets and backends may grow.)"""
        return {"model": self.model,
                "weights_sha256": _sha256(self.weights) if self.weights else None,
                "eval_n": self.eval_n, "metric": self.metric, "runs": self.runs,
                "warmup": self.warmup}


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(n.strip() for n in names if n.strip()))


def validate(sweep: Sweep) -> Sweep:
    """The sweep with names deduplicated, or AvedgeError (one line naming what was wrong
    and what is accepted) for anything a trial could not even start with."""
    from avedge.quantize.recipes import PARAMETRIC, RECIPES, get_recipe
    from avedge.runtime.backends import BACKEND_NAMES
    from avedge.runtime.errors import UnknownNameError
    from avedge.targets import get_target

    recipes, targets = _unique(sweep.recipes), _unique(sweep.targets)
    backends = _unique(sweep.backends) if sweep.backends is not None else None
    known = ", ".join([*RECIPES, *PARAMETRIC])  # parametric ones by their pattern name
    if not recipes:
        raise AvedgeError(f"--recipes names no recipe; known: {known}")
    unknown = [r for r in recipes if not _resolves(get_recipe, r)]
    if unknown:
        raise AvedgeError(f"unknown recipe{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(map(repr, unknown))}; known: {known}")
    if not targets:
        raise AvedgeError("--targets names no target; see `avedge targets`")
    for t in targets:
        get_target(t)
    if backends is not None:
        if not backends:
            raise AvedgeError(f"--backends names no backend; known: {', '.join(BACKEND_NAMES)}")
        for b in backends:
            if b not in BACKEND_NAMES:
                raise UnknownNameError("backend", b, BACKEND_NAMES)
    for name, value, least in (("--eval", sweep.eval_n, 1), ("--runs", sweep.runs, 1),
                               ("--warmup", sweep.warmup, 0)):
        if not isinstance(value, int) or value < least:
            raise AvedgeError(f"{name} must be an integer >= {least}, got {value!r}")
    _check_model(sweep.model, sweep.weights)
    if sweep.metric is not None:
        load_metric(sweep.metric)
    weights = str(Path(sweep.weights).resolve()) if sweep.weights else None  # any cwd
    return Sweep(sweep.model, recipes, targets, backends, sweep.eval_n, weights,
                 sweep.metric, sweep.runs, sweep.warmup, dict(sweep.extra))


def _check_model(model: str, weights: str | None) -> None:
    from avedge.models.registry import get_family

    if ":" in model:
        _import_attr(model, "model", "a factory returning (module, example_inputs)")
        if weights is not None:
            raise AvedgeError(f"--weights applies to a registered family; {model!r} builds its "
                              f"own module (load weights in the factory)")
    else:
        get_family(model)
    if weights is not None and not Path(weights).is_file():
        raise AvedgeError(f"--weights {weights!r} is not a file")


def load_metric(spec: str):
    """`pkg.mod:function` -> the function (called as function(session) -> {"name", "value"})."""
    return _import_attr(spec, "--metric", "function(session) -> {'name', 'value'}")


def _import_attr(spec: str, what: str, expected: str):
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise AvedgeError(f"{what} {spec!r} is not package.module:name ({expected})")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise AvedgeError(f"{what} {spec!r}: cannot import {mod_name!r} ({exc}); it must be on "
                          f"the Python path") from exc
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise AvedgeError(f"{what} {spec!r}: {mod_name!r} has no callable {attr!r} ({expected})")
    return fn


def trial_id(recipe: str, target: str, backend: str) -> str:
    """A folder name: recipe__target__backend (names are [A-Za-z0-9._-])."""
    tid = f"{recipe}__{target}__{backend}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", tid)


def trial_specs(sweep: Sweep, trials_dir: Path) -> list[dict]:
    """One spec per recipe x target x backend (each target's backends unless named)."""
    from avedge.targets import get_target

    specs = []
    for recipe in sweep.recipes:
        for target in sweep.targets:
            backends = sweep.backends or list(get_target(target).backends)
            for backend in backends:
                tid = trial_id(recipe, target, backend)
                specs.append({"trial_id": tid, "model": sweep.model, "weights": sweep.weights,
                              "recipe": recipe, "target": target, "backend": backend,
                              "eval_n": sweep.eval_n, "metric": sweep.metric,
                              "runs": sweep.runs, "warmup": sweep.warmup,
                              "out_dir": str((trials_dir / tid).resolve())})
    return specs


def _resolves(get_recipe, name: str) -> bool:
    """Whether `name` is a recipe (named, or parametric like int8-keep-2)."""
    from avedge.runtime.errors import UnknownNameError

    try:
        get_recipe(name)
    except UnknownNameError:
        return False
    return True
