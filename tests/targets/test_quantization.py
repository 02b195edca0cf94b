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
    assert q["onnx"]["int8_compute_ops"] == 4  # our ONNX dynamic int8 takes 1-D convs


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
    q = art.manifest["quantization"]["onnx"]
    assert (q["int8_compute_ops"], q["float_compute_ops"]) == (2, 0)


# ---------------------------------------------------------------- module-level recipes

class Mlp3D(torch.nn.Module):
    """Linear layers on (B, T, C) inputs with decaying spectra, as trained weights have."""

    def __init__(self, d=64, hidden=256):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc1, self.fc2 = torch.nn.Linear(d, hidden), torch.nn.Linear(hidden, d)
        with torch.no_grad():
            for lin in (self.fc1, self.fc2):
                out_f, in_f = lin.weight.shape
                r = min(out_f, in_f)
                u = torch.linalg.qr(torch.randn(out_f, r, generator=g))[0]
                v = torch.linalg.qr(torch.randn(in_f, r, generator=g))[0]
                s = torch.exp(-torch.arange(r, dtype=torch.float32) / 8)
                lin.weight.copy_(u @ torch.diag(s) @ v.T)
                lin.bias.normal_(0, 0.01, generator=g)

    def forward(self, x):  # (1, T, d)
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.fixture(scope="module")
def mlp():
    return Mlp3D().eval(), (torch.randn(1, 16, 64, generator=torch.Generator().manual_seed(1)),)


def test_a_config_no_format_of_the_target_takes_is_refused_before_lowering(
        tmp_path, monkeypatch, mlp):
    from dataclasses import dataclass

    from avedge.quantize import recipes
    from avedge.runtime.errors import AvedgeError
    from avedge.targets import lowering

    @dataclass(frozen=True)
    class Int3Config:
        pass

    def never(job):
        raise AssertionError("lowering ran")

    for fmt in ("pte", "onnx"):
        monkeypatch.setitem(lowering.FORMAT_LOWERERS, fmt,
                            lowering.FormatLowerer(never, lowering.FORMAT_LOWERERS[fmt].accepts))
    monkeypatch.setitem(recipes.RECIPES, "int3", (Int3Config(),))
    with pytest.raises(AvedgeError, match=r"recipe 'int3' holds Int3Config, which target 'cpu' "
                                          r"cannot apply: its 'pte' lowering takes "
                                          r"Int8DynamicConfig, Int8StaticConfig.*recipes for cpu: "
                                          r"fp32, fp16, 8da4w, int8, int8-static, int8-weight"):
        get_target("cpu").export(*mlp, tmp_path / "a", recipe="int3")
    # bf16 has no .pte or .onnx path here (measured): refused, naming the format.
    with pytest.raises(AvedgeError, match=r"Bf16Config.*'pte' lowering takes"):
        get_target("cpu").export(*mlp, tmp_path / "b", recipe="bf16")
    with pytest.raises(AvedgeError, match=r"Int8DynamicConfig.*'gpu'.*'pt2' lowering takes "
                                          r"Fp16Config, Bf16Config"):
        get_target("gpu").export(*mlp, tmp_path / "c", recipe="int8")
    assert not any(tmp_path.iterdir())


def test_low_rank_recipe_exports_for_cpu_and_records_its_parity(tmp_path, mlp):
    model, example = mlp
    art = get_target("cpu").export(model, example, tmp_path / "lr", recipe="lowrank-0.5")
    m = art.manifest
    assert m["recipe_configs"] == [{"type": "LowRankConfig", "rank_ratio": 0.5, "energy": None,
                                    "layers": "all"}]
    assert m["parameters"] < 0.8 * sum(p.numel() for p in model.parameters())
    assert isinstance(model.fc1, torch.nn.Linear)  # the caller's module is not touched
    # What the cut changed is the recipe's, recorded beside parity; parity is against the
    # compressed module, an fp32 lowering of it (the fp32 limit).
    assert 1e-4 < m["recipe_deviation"]["rel_err"] < 0.05, m["recipe_deviation"]
    for fmt in ("pte", "onnx"):
        assert m["parity"][fmt]["rel_err"] < 1e-4, m["parity"]


def test_weight_only_int8_lowers_correctly_to_pte_onnx_and_pt2(tmp_path, mlp):
    model, example = mlp
    fp32 = get_target("cpu").export(model, example, tmp_path / "fp32")
    art = get_target("cpu").export(model, example, tmp_path / "w8", recipe="int8-weight")
    m = art.manifest
    assert 0 < m["recipe_deviation"]["rel_err"] < 0.02  # int8 weights vs the float module
    for fmt in ("pte", "onnx"):  # the runtimes vs eager torchao: the same int8 weights
        assert m["parity"][fmt]["rel_err"] < 1e-3, m["parity"]
    assert m["quantization"]["pte"] == {"int8_compute_ops": 2, "float_compute_ops": 0}
    assert m["files"]["model.pte"]["bytes"] < 0.4 * fp32.manifest["files"]["model.pte"]["bytes"]
    gpu = get_target("gpu").export(model, example, tmp_path / "gpu", recipe="int8-weight")
    assert gpu.manifest["parity"]["pt2"]["rel_err"] < 1e-3


def test_a_compressed_artifact_worse_than_its_output_scale_is_refused(tmp_path, monkeypatch,
                                                                      mlp):
    from avedge.runtime.errors import AvedgeError
    from avedge.targets import lower_executorch

    # Unflattened torchao subclasses through XNNPACK: what gave ~1e6 relative error.
    monkeypatch.setattr(lower_executorch, "plain_weights", lambda module: module)
    with pytest.raises(AvedgeError, match=r"'int8-weight': the pte artifact is broken, not "
                                          r"just imprecise: relative error"):
        get_target("cpu").export(*mlp, tmp_path / "bad", recipe="int8-weight")
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------- half precision, 8da4w, calibration

def test_fp16_pte_is_delegated_and_close(tmp_path, tiny_model, cpu_artifact, mlp):
    art = get_target("cpu").export(*tiny_model, tmp_path / "fp16", recipe="fp16")
    m = art.manifest
    for fmt in ("pte", "onnx"):
        assert 0 < m["parity"][fmt]["rel_err"] < 2e-3, m["parity"]
    assert m["inputs"] == cpu_artifact.manifest["inputs"]  # the edges stay fp32
    # Linear weights are stored in fp16 (measured: XNNPACK keeps conv weights fp32 in the
    # file, so tiny-stream's convs do not shrink; an MLP's .pte halves).
    fp32 = get_target("cpu").export(*mlp, tmp_path / "mlp32").manifest["files"]["model.pte"]
    fp16 = get_target("cpu").export(*mlp, tmp_path / "mlp16", recipe="fp16").manifest["files"]
    assert fp16["model.pte"]["bytes"] < 0.6 * fp32["bytes"]


def test_bf16_goes_to_the_torch_program(tmp_path, mlp):
    model, example = mlp
    m = get_target("gpu").export(model, example, tmp_path / "bf16", recipe="bf16").manifest
    assert 1e-4 < m["parity"]["pt2"]["rel_err"] < 0.02  # bf16's 8-bit mantissa, not a fault
    from safetensors import safe_open

    with safe_open(str(tmp_path / "bf16" / "weights.safetensors"), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.bfloat16"}  # noqa: SIM118


@pytest.fixture(scope="module")
def w4(tmp_path_factory, mlp):
    model, example = mlp
    root = tmp_path_factory.mktemp("w4")
    return {r: get_target("cpu").export(model, example, root / r, recipe=r)
            for r in ("8da4w", "int8-weight")}


def test_8da4w_is_smaller_than_int8_and_says_its_weights_are_4_bit(w4):
    m, w8 = w4["8da4w"].manifest, w4["int8-weight"].manifest
    for fmt in ("pte", "onnx"):
        assert m["quantization"][fmt] == {"int8_compute_ops": 2, "float_compute_ops": 0,
                                          "int4_weight_ops": 2}
        assert "int4_weight_ops" not in w8["quantization"][fmt]
        # The runtimes agree with eager torchao (parity, and checked below) ...
        assert m["parity"][fmt]["rel_err"] < 0.01, m["parity"]
    # ... and 4-bit weights cost more than 8-bit ones (what the recipe itself changed).
    assert w8["recipe_deviation"]["rel_err"] < m["recipe_deviation"]["rel_err"] < 0.3
    # XNNPACK packs int4 (2 per byte); ONNX keeps the values in int8 bytes.
    assert m["files"]["model.pte"]["bytes"] < 0.7 * w8["files"]["model.pte"]["bytes"]
    assert m["recipe_configs"] == [{"type": "Int8DynActInt4WeightConfig", "group_size": 32}]


def test_8da4w_runtimes_match_eager_torchao(w4, mlp):
    import copy

    import numpy as np
    from avedge.quantize import quantize_
    from avedge.quantize.int4 import Int8DynActInt4WeightConfig
    from avedge.runtime import load

    model, (x,) = mlp
    eager = quantize_(copy.deepcopy(model), Int8DynActInt4WeightConfig())(x).detach().numpy()
    scale = float(np.abs(eager).max())
    for backend in ("executorch", "onnxruntime"):
        got = load(w4["8da4w"].path, backend=backend).run_ordered([x.numpy()])[0]
        assert float(np.abs(got - eager).max()) / scale < 0.01, backend


def test_8da4w_without_a_linear_layer_is_refused(tmp_path, tiny_model):
    from avedge.runtime.errors import AvedgeError

    with pytest.raises(AvedgeError, match=r"Int8DynActInt4WeightConfig.*TinyStream has no such "
                                          r"layer; use int8-static"):
        get_target("cpu").export(*tiny_model, tmp_path / "x", recipe="8da4w")


def test_static_int8_records_where_its_calibration_came_from(artifacts, tmp_path):
    for fmt in ("pte", "onnx"):
        cal = artifacts["int8-static"].manifest["quantization"][fmt]["calibration"]
        assert cal["source"] == "perturbed example inputs" and cal["batches"] == 16

    class Calibrated(Mlp3D):
        def calibration_inputs(self):
            g = torch.Generator().manual_seed(5)
            return [(torch.randn(1, 16, 64, generator=g),) for _ in range(3)]

        def calibration_provenance(self):
            return {"data": "three draws", "split": "val"}

    model = Calibrated().eval()
    m = get_target("cpu").export(model, model.calibration_inputs()[0], tmp_path / "c",
                                 recipe="int8-static").manifest
    for fmt in ("pte", "onnx"):
        assert m["quantization"][fmt]["calibration"] == {
            "source": "Calibrated.calibration_inputs()", "batches": 3, "data": "three draws",
            "split": "val"}
