"""What each int8 recipe really quantizes, as recorded in the manifest."""

import pytest
import torch
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


class TwoDLinear(torch.nn.Module):
    """Linear layers on 2-D inputs: exported as Gemm, which ORT's dynamic quantizer could
    not rewrite before onnxruntime 1.32 (shape inference failed)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(64, 32), torch.nn.Linear(32, 64)

    def forward(self, x):  # (1, 64)
        return self.b(torch.relu(self.a(x)))


def test_dynamic_int8_failure_is_a_clear_error_and_static_works(tmp_path, monkeypatch):
    import onnxruntime.quantization as ortq
    from avedge.runtime.errors import AvedgeError

    def gemm_failure(*args, **kwargs):  # what onnxruntime 1.31 raised on a Gemm
        raise RuntimeError("[ShapeInferenceError] Inferred shape and existing shape differ "
                           "in dimension 0 (Gemm)")

    monkeypatch.setattr(ortq, "quantize_dynamic", gemm_failure)
    example = (torch.randn(1, 64),)
    with pytest.raises(AvedgeError, match=r"ShapeInferenceError.*--recipe int8-static"):
        get_target("cpu").export(TwoDLinear(), example, tmp_path / "dyn", recipe="int8")
    assert not (tmp_path / "dyn").exists()  # a failed export leaves nothing behind
    monkeypatch.undo()
    art = get_target("cpu").export(TwoDLinear(), example, tmp_path / "static", recipe="int8-static")
    assert art.manifest["quantization"]["onnx"] == {"int8_compute_ops": 2, "float_compute_ops": 0}
