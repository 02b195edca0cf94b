"""avedge: edge runtime for audio-visual speech models.

    import avedge
    art = avedge.export("speech-extractor", target="hearable", out="art")
    sess = avedge.load("art")

Attributes are imported on first use, so `import avedge` costs nothing and a device that
only runs artifacts never imports the export stack.
"""

_LAZY = {
    "export": ("avedge.api", "export"),
    "load": ("avedge.runtime", "load"),
    "get_target": ("avedge.targets", "get_target"),
    "list_targets": ("avedge.targets", "list_targets"),
    "family_names": ("avedge.models.registry", "family_names"),
    "get_family": ("avedge.models.registry", "get_family"),
}
__all__ = ["export", "family_names", "get_family", "get_target", "list_targets", "load"]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'avedge' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)
