import pytest
from avedge.quantize import (
    Fp16Config,
    Int8DynamicConfig,
    Int8StaticConfig,
    config_from_json,
    config_to_json,
    get_recipe,
    recipe_names,
)
from avedge.runtime.errors import UnknownNameError

CONFIGS = [Int8DynamicConfig(), Int8DynamicConfig(per_channel=False), Int8StaticConfig(),
           Int8StaticConfig(calibration_batches=3), Fp16Config()]


@pytest.mark.parametrize("config", CONFIGS, ids=repr)
def test_configs_round_trip_through_json(config):
    import json

    assert config_from_json(json.loads(json.dumps(config_to_json(config)))) == config


@pytest.mark.parametrize("bad", [lambda: Int8DynamicConfig(per_channel="yes"),
                                 lambda: Int8StaticConfig(calibration_batches=0),
                                 lambda: Fp16Config(keep_io_fp32=False)])
def test_invalid_configs_are_refused(bad):
    with pytest.raises(ValueError):
        bad()


def test_unknown_config_type_and_recipe_list_what_exists():
    with pytest.raises(ValueError, match="Int8StaticConfig"):
        config_from_json({"type": "Int3Config"})
    with pytest.raises(UnknownNameError, match="int8-static"):
        get_recipe("int4-magic")
    assert {"fp32", "fp16", "int8", "int8-static"} <= set(recipe_names())
