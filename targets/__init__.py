"""Device profiles and lowering: `get_target(name).export(model, example_inputs, out_dir)`."""

from avedge.targets.registry import get_target, list_targets
from avedge.targets.target import Budgets, Target


def export_pipeline(*args, **kwargs):
    """Export several graphs as one composite artifact (see targets/export.py)."""
    from avedge.targets.export import export_pipeline as _export_pipeline

    return _export_pipeline(*args, **kwargs)


__all__ = ["Budgets", "Target", "export_pipeline", "get_target", "list_targets"]
