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


def test_every_board_is_one_registered_line_through_its_family_helper():
    """Adding a board is one `register(helper(...))` line; a family file holds the helper."""
    import ast
    from pathlib import Path

    import avedge.targets

    root = Path(avedge.targets.__file__).parent
    registered = 0
    for path in [*root.glob("*.py"), *root.glob("*/__init__.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "register":
                board = node.args[0]
                assert isinstance(board, ast.Call) and getattr(board.func, "id", "") != "Target", (
                    f"{path.name}:{node.lineno}: register a board through its family helper")
                registered += 1
    assert registered == len(list_targets())


def test_family_helpers_make_a_new_board_in_one_call():
    from avedge.targets.cpu import cpu_board
    from avedge.targets.jetson import jetson_board

    nano = jetson_board("jetson-orin-nano", "Jetson Orin Nano", cuda_arch="sm_87", ram_mb=2048.0)
    assert nano.formats == ("onnx", "pt2") and nano.precision == "fp16"
    assert nano.budgets.ram_mb == 2048.0 and "sm_87" in nano.description
    pi = cpu_board("pi5", "Raspberry Pi 5", "int8", recipe="int8-static", threads=4)
    assert pi.default_recipe == "int8-static" and pi.threads == 4 and pi.formats == ("pte", "onnx")
    assert cpu_board("x", "x", "fp16").default_recipe == "fp16"
