"""The quantization configs of issue #18: JSON round trip, validation, recipe names, and
which targets take them (decided before any lowering)."""

import json

import pytest
from avedge.quantize import config_from_json, config_to_json, get_recipe, recipe_names
from avedge.quantize.configs import Bf16Config, KeepFloatConfig
from avedge.quantize.int4 import Int8DynActInt4WeightConfig
from avedge.runtime.errors import UnknownNameError

CONFIGS = [Bf16Config(), KeepFloatConfig(layers=("blocks.0.fc1", "out_proj")),
           KeepFloatConfig(top=2), KeepFloatConfig(layers=("a",), top=1),
           Int8DynActInt4WeightConfig(), Int8DynActInt4WeightConfig(group_size=64)]


@pytest.mark.parametrize("config", CONFIGS, ids=repr)
def test_configs_round_trip_through_json(config):
    assert config_from_json(json.loads(json.dumps(config_to_json(config)))) == config


@pytest.mark.parametrize("bad", [lambda: Bf16Config(keep_io_fp32=False),
                                 lambda: KeepFloatConfig(),
                                 lambda: KeepFloatConfig(top=-1),
                                 lambda: KeepFloatConfig(top=True),
                                 lambda: KeepFloatConfig(layers=("",)),
                                 lambda: KeepFloatConfig(layers="fc1"),
                                 lambda: Int8DynActInt4WeightConfig(group_size=33)])
def test_invalid_configs_are_refused(bad):
    with pytest.raises(ValueError):
        bad()


def test_named_and_parameterised_recipes_resolve():
    assert {"bf16", "8da4w"} <= set(recipe_names())
    assert get_recipe("8da4w").configs == (Int8DynActInt4WeightConfig(group_size=32),)
    keep3 = get_recipe("int8-keep-3")
    assert keep3.find(KeepFloatConfig) == KeepFloatConfig(top=3)
    assert json.loads(json.dumps(get_recipe("int8-static-keep-1").to_json()["configs"])) == [
        {"type": "Int8StaticConfig", "per_channel": True, "calibration_batches": 16,
         "ops": "compute"},
        {"type": "KeepFloatConfig", "layers": [], "top": 1}]
    for bad in ("int8-keep-0", "int8-keep-x", "int8-keep-"):
        with pytest.raises(UnknownNameError, match=r"available: .*int8-keep-K"):
            get_recipe(bad)


def test_each_format_declares_the_half_precisions_it_takes():
    from avedge.targets import get_target
    from avedge.targets.lowering import recipes_for, refusal

    assert "bf16" in recipes_for(get_target("gpu"))
    assert {"fp16", "8da4w", "int8-static"} <= set(recipes_for(get_target("cpu")))
    why = refusal(get_recipe("bf16"), get_target("cpu"))
    assert "Bf16Config" in why and "'pte' lowering takes" in why
    assert "'onnx' lowering takes" in refusal(get_recipe("bf16"), get_target("jetson-orin"))
    # Layers kept float only mean something next to an int8 config for the rest.
    from avedge.quantize import Recipe

    lone = refusal(Recipe("keep", (KeepFloatConfig(top=1),)), get_target("cpu"))
    assert "without an int8 config" in lone
    assert "Int8DynamicConfig" in refusal(get_recipe("int8-keep-1"), get_target("gpu"))
