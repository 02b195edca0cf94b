"""Targets registered by name; one line per board, one file per family."""

from __future__ import annotations

from avedge.runtime.errors import UnknownNameError
from avedge.targets.target import Target

_TARGETS: dict[str, Target] = {}


def register(target: Target) -> Target:
    if target.name in _TARGETS:
        raise ValueError(f"target {target.name!r} is registered twice")
    _TARGETS[target.name] = target
    return target


def get_target(name: str | Target) -> Target:
    if isinstance(name, Target):
        return name
    _load_families()
    if name not in _TARGETS:
        raise UnknownNameError("target", name, _TARGETS)
    return _TARGETS[name]


def list_targets() -> list[Target]:
    _load_families()
    return list(_TARGETS.values())


def _load_families() -> None:
    # Importing a family file registers its boards.
    from avedge.targets import arm, cpu, gpu, hearable, jetson  # noqa: F401
