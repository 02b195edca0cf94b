import json

import pytest
from avedge.runtime.errors import UnknownNameError
from avedge.targets import get_target, list_targets

from avedge.cli import main


def test_four_targets_with_backends_precision_budgets():
    names = {t.name for t in list_targets()}
    assert {"cpu", "hearable", "jetson-orin", "gpu"} <= names
    hearable = get_target("hearable")
    assert hearable.threads == 1 and hearable.precision == "int8"
    assert hearable.budgets.chunk_latency_ms and hearable.budgets.weights_mb
    assert get_target("jetson-orin").cuda_arch == "sm_87"
    assert get_target("cpu").formats == ("pte", "onnx")
    assert get_target("gpu").formats == ("pt2",)


def test_unknown_target_lists_the_available_ones():
    with pytest.raises(UnknownNameError) as err:
        get_target("tpu-v9")
    assert "cpu" in str(err.value) and "jetson-orin" in str(err.value)


def test_targets_json_cli(capsys):
    assert main(["targets", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by_name = {t["name"]: t for t in data}
    assert set(by_name) >= {"cpu", "hearable", "jetson-orin", "gpu"}
    for t in data:
        assert {"name", "backends", "precision", "budgets"} <= set(t)
        assert isinstance(t["backends"], list) and t["backends"]
    assert by_name["hearable"]["budgets"]["weights_mb"] == 2.0
