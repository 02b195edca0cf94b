"""`quantize_(model, config)`: apply a module-level compression config to an nn.Module.

The torchao pattern: each config type that changes the module itself (pruning, low-rank
factorisation, weight-only quantization) registers one handler with
`@register_handler(ConfigType)`; `quantize_` dispatches on the config's type. A config
with a handler is "module-level": applied before lowering, so every format the target
writes sees the same compressed module. Configs without one (dynamic/static int8, fp16)
are consumed by a format's lowering step (targets/lowering.py says which).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
from collections.abc import Callable
from dataclasses import dataclass

from avedge.runtime.errors import AvedgeError

_HANDLERS: dict[type, Callable] = {}


def register_handler(config_type: type):
    """Decorator: `fn(model, config) -> model` applies configs of `config_type` in place."""
    def decorate(fn):
        if config_type in _HANDLERS:
            raise ValueError(f"a quantize_ handler for {config_type.__name__} is registered twice")
        _HANDLERS[config_type] = fn
        return fn
    return decorate


def handler_for(config) -> Callable | None:
    return next((_HANDLERS[t] for t in type(config).__mro__ if t in _HANDLERS), None)


def is_module_level(config) -> bool:
    return handler_for(config) is not None


def module_level_types() -> list[str]:
    return sorted(t.__name__ for t in _HANDLERS)


def quantize_(model, config):
    """Apply `config` to `model` in place (layers may be replaced); -> the model."""
    handler = handler_for(config)
    if handler is None:
        raise AvedgeError(
            f"{type(config).__name__} is not applied to the module (no quantize_ handler); "
            f"module-level configs are {', '.join(module_level_types())}; "
            f"{type(config).__name__} is consumed by a format's lowering step")
    out = handler(model, config)
    return model if out is None else out


@dataclass(frozen=True)
class RecipeContext:
    """What a handler may need beyond (model, config): `original`, the module before the
    recipe's module-level configs (a distillation teacher; never modified), and
    `example_inputs` (to trace a graph, or calibrate when the model has no
    calibration_inputs())."""

    original: object = None
    example_inputs: tuple | None = None


_CONTEXT: contextvars.ContextVar = contextvars.ContextVar("avedge_recipe", default=None)


def recipe_context() -> RecipeContext:
    """The context of the recipe being applied (empty outside `apply_recipe`/`using`)."""
    return _CONTEXT.get() or RecipeContext()


@contextlib.contextmanager
def using(original=None, example_inputs=None):
    """`with using(teacher, inputs): quantize_(model, config)`: the context apply_recipe
    gives its handlers, for calling quantize_ directly."""
    inputs = None if example_inputs is None else tuple(example_inputs)
    token = _CONTEXT.set(RecipeContext(original, inputs))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def apply_recipe(model, recipe, example_inputs=None):
    """The recipe's module-level configs applied in order to a copy of `model` (the
    caller's module is left as it was, and handlers see it as `recipe_context().original`);
    `model` itself when the recipe has none."""
    configs = [c for c in recipe.configs if is_module_level(c)]
    if not configs:
        return model
    original, model = model, copy.deepcopy(model)
    with using(original, example_inputs):
        for config in configs:
            model = quantize_(model, config)
    return model.eval()
