"""What each int8 recipe really quantizes, as recorded in the manifest."""

import pytest
from avedge.targets import get_target


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, tiny_model):
    model, example = tiny_model
    root = tmp_path_factory.mktemp("q")
    return {r: get_target("cpu").export(model, example, root / r, recipe=r)
            for r in ("int8", "int8-static")}


def test_static_int8_quantizes_every_conv_in_both_formats(artifacts):
    q = artifacts["int8-static"].manifest["quantization"]
    for fmt in ("pte", "onnx"):
        assert q[fmt]["int8_compute_ops"] == 4 and q[fmt]["float_compute_ops"] == 0
    files = artifacts["int8-static"].manifest["files"]
    assert files["model.pte"]["bytes"] < 0.7 * artifacts["int8"].manifest["files"]["model.pte"]["bytes"]


def test_dynamic_int8_leaves_pte_convs_float_and_says_so(artifacts):
    q = artifacts["int8"].manifest["quantization"]
    assert q["pte"] == {"int8_compute_ops": 0, "float_compute_ops": 4}
    assert q["onnx"]["int8_compute_ops"] == 4  # ORT's dynamic quantizer does take convs


def test_static_int8_stays_close_to_fp32(artifacts):
    for p in artifacts["int8-static"].manifest["parity"].values():
        assert 0 < p["rel_err"] < 0.05


def test_hearable_defaults_to_static_int8(tmp_path, tiny_model):
    model, example = tiny_model
    art = get_target("hearable").export(model, example, tmp_path / "h")
    assert art.manifest["recipe"] == "int8-static" and art.manifest["threads"] == 1
    assert art.manifest["budgets"]["weights_ok"] is True
