"""Mixed precision ranked by the task metric: `int8-keep-K@TABLE` keeps fp32 the K layers
whose int8 quantization alone cost the most metric in a sensitivity table (written by
`avedge sensitivity MODEL --out TABLE`, quantize/sensitivity.py `measure_table`).

`int8-keep-K` (no table) ranks layers at export by how far int8 in one layer moves the
graph's outputs, which needs no data; a table ranks them by what users measure (SI-SDRi,
WER), at the cost of scoring every layer once beforehand. Provenance is checked twice:
when the recipe is named (the table's format, its recipe against the recipe's int8 scheme,
a metric measured on a named eval set, K against its layers) and at export, against the
graph being lowered (the fingerprint of its weights: a table measured on other weights,
another family or another graph is refused, naming both). The kept layers, the ranking
and the table's provenance are in the config, so the manifest's recipe_configs say which
layers stayed float and why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from avedge.quantize.configs import (
    Int8DynamicConfig,
    Int8StaticConfig,
    KeepFloatConfig,
    register_config,
)
from avedge.runtime.errors import AvedgeError

TABLE_FORMAT = "avedge-sensitivity/1"  # as quantize/sensitivity.py writes it
SCHEMES = {"int8": Int8DynamicConfig, "int8-static": Int8StaticConfig}


@register_config
@dataclass(frozen=True)
class KeepFloatByMetricConfig(KeepFloatConfig):
    """Mixed precision from a task-metric sensitivity table: `layers` (the table's top K by
    metric drop) stay fp32; the table's provenance is recorded and checked against the
    graph at export (`check_module`)."""

    table: str = ""  # the table file, absolute
    ranked_by: str = ""  # e.g. "si_sdri_db drop (dB), int8 one layer at a time, 4 val ..."
    drops: tuple[float, ...] = ()  # each kept layer's metric drop, in `layers` order
    family: str = ""
    weights: str | None = None  # the weights file the table was measured on
    weights_sha256: str | None = None
    module_sha256: str = ""  # sensitivity.fingerprint of the graph's float weights

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.drops, list):  # from JSON
            object.__setattr__(self, "drops", tuple(self.drops))
        if not self.table or not self.module_sha256:
            raise ValueError("KeepFloatByMetricConfig needs the table it was read from "
                             "(keep_from_table builds one)")

    def check_module(self, module) -> None:
        """Refuse a graph other than the one the table was measured on."""
        from avedge.quantize.sensitivity import fingerprint

        got = fingerprint(module)
        if got != self.module_sha256:
            raise AvedgeError(
                f"sensitivity table {self.table} was measured on {self.family} weights "
                f"{Path(self.weights).name if self.weights else '(built, no file)'} "
                f"(sha256 {(self.weights_sha256 or '-')[:12]}, graph {self.module_sha256[:12]}); "
                f"the graph being exported has other weights (graph {got[:12]}): measure one "
                f"for these with `avedge sensitivity {self.family or 'MODEL'} --weights FILE "
                f"--out TABLE`")


def load_table(path) -> dict:
    """A sensitivity table from `path`, its format checked."""
    p = Path(path)
    if not p.is_file():
        raise AvedgeError(f"sensitivity table {str(path)!r} does not exist (write one with "
                          f"`avedge sensitivity MODEL --out {path}`)")
    try:
        table = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise AvedgeError(f"sensitivity table {str(path)!r} is not readable JSON ({exc})") from exc
    if not isinstance(table, dict) or table.get("format") != TABLE_FORMAT:
        raise AvedgeError(f"{str(path)!r} is not a sensitivity table (format "
                          f"{TABLE_FORMAT!r}, written by `avedge sensitivity --out`)")
    return table


def keep_from_table(path: str, k: int, scheme: str) -> KeepFloatByMetricConfig:
    """The config keeping the table's top `k` layers fp32 for int8 `scheme` ("int8" or
    "int8-static"); the table's provenance checked as far as it can be without the model."""
    table = load_table(path)
    if table.get("recipe") != scheme:
        raise AvedgeError(f"sensitivity table {path!r} ranks layers under "
                          f"{table.get('recipe')!r}; this recipe quantizes with {scheme!r}: "
                          f"measure one with `avedge sensitivity MODEL --recipe {scheme}`")
    metric = table.get("metric") or {}
    eval_set = metric.get("eval_set") or {}
    if metric.get("float") is None or not eval_set.get("name"):
        raise AvedgeError(f"sensitivity table {path!r} holds no metric measured on a named "
                          f"eval set; measure it again with `avedge sensitivity`")
    rows = table.get("layers") or []
    if k > len(rows):
        raise AvedgeError(f"keep {k} layers: sensitivity table {path!r} ranks "
                          f"{len(rows)} ({table.get('family')}, graph {table.get('graph')})")
    top = rows[:k]
    unit = f"{metric.get('name')} drop"
    ranked_by = (f"{unit}, {scheme} in one layer at a time (rest float), on "
                 f"{metric.get('n')} {eval_set['name']} items of the "
                 f"{eval_set.get('source', 'eval set')} (seed {eval_set.get('seed')}); "
                 f"float {metric['float']}")
    return KeepFloatByMetricConfig(
        layers=tuple(r["layer"] for r in top), table=str(Path(path).resolve()),
        ranked_by=ranked_by, drops=tuple(round(float(r["drop"]), 4) for r in top),
        family=table.get("family", ""), weights=table.get("weights"),
        weights_sha256=table.get("weights_sha256"), module_sha256=table["module_sha256"])


def keep_recipe(k: int, path: str, scheme: str) -> tuple:
    """The configs of int8-keep-K@TABLE / int8-static-keep-K@TABLE."""
    return (SCHEMES[scheme](), keep_from_table(path, k, scheme))
