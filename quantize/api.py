"""`quantize_(model, config)`: apply a module-level compression config to an nn.Module.

The torchao pattern: each config type that changes the module itself (pruning, low-rank
factorisation, weight-only quantization) registers one handler with
`@register_handler(ConfigType)`; `quantize_` dispatches on the config's type. A config
with a handler is "module-level": applied before lowering, so every format the target
writes sees the same compressed module. Configs without one (dynamic/static int8, fp16)
are consumed by a format's lowering step (targets/lowering.py says which).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

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


def apply_recipe(model, recipe):
    """The recipe's module-level configs applied in order to a copy of `model` (the
    caller's module is left as it was); `model` itself when the recipe has none."""
    configs = [c for c in recipe.configs if is_module_level(c)]
    if not configs:
        return model
    model = copy.deepcopy(model)
    for config in configs:
        model = quantize_(model, config)
    return model.eval()
