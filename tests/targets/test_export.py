import json

import numpy as np
import onnx
import pytest
import torch
from avedge.runtime import load
from avedge.runtime.errors import AvedgeError
from avedge.runtime.manifest import sha256_file
from avedge.targets import get_target


def test_cpu_artifact_manifest(cpu_artifact):
    m = json.loads((cpu_artifact.path / "manifest.json").read_text())
    assert m["target"] == "cpu" and m["recipe"] == "fp32" and m["family"] == "tiny-stream"
    assert {"model.pte", "model.onnx", "init_state.npz"} <= set(m["files"])
    for name, rec in m["files"].items():
        assert rec["sha256"] == sha256_file(cpu_artifact.path / name)
    assert m["inputs"][0]["name"] == "chunk"
    assert m["stream"]["chunk_samples"] == 128 and m["stream"]["lookahead_samples"] == 32
    assert len(m["stream"]["state"]) == 3 and m["stream"]["conditions"] == []
    assert m["versions"]["torch"].startswith("2.13") and m["versions"]["executorch"]
    for fmt in ("pte", "onnx"):
        assert m["parity"][fmt]["max_abs_err"] < 1e-5


class ImageAndTokens(torch.nn.Module):
    """A 2-D conv front-end and linear layers on (B, T, C) tokens, like the lip reader."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 64, 5, stride=4)
        self.a, self.b = torch.nn.Linear(64, 256), torch.nn.Linear(256, 64)

    def forward(self, x):  # (1, 1, 44, 44) -> (1, 100, 64)
        t = self.conv(x).flatten(2).transpose(1, 2)
        return self.b(torch.relu(self.a(t)))


def test_int8_onnx_quantizes_matmuls_and_1d_convs_not_2d_convs(tmp_path, tiny_model):
    mixed = get_target("cpu").export(ImageAndTokens().eval(), (torch.randn(1, 1, 44, 44),),
                                     tmp_path / "mixed", recipe="int8")
    ops = [n.op_type for n in onnx.load(str(mixed.path / "model.onnx")).graph.node]
    # onnxruntime's ConvInteger is slower than fp32 conv on image convs: they stay float
    assert ops.count("MatMulInteger") == 2 and "ConvInteger" not in ops and "Conv" in ops
    assert mixed.manifest["parity"]["onnx"]["max_abs_err"] > 0  # quantized: not bit-equal
    # the tiny streaming model's convs are 1-D: int8 weights, a smaller file
    model, example = tiny_model
    conv = get_target("cpu").export(model, example, tmp_path / "conv", recipe="int8")
    ops = {n.op_type for n in onnx.load(str(conv.path / "model.onnx")).graph.node}
    assert "ConvInteger" in ops
    fp32 = get_target("cpu").export(model, example, tmp_path / "fp32")
    assert conv.manifest["files"]["model.onnx"]["bytes"] < 0.6 * \
        fp32.manifest["files"]["model.onnx"]["bytes"]


def test_jetson_fp16_onnx_keeps_fp32_io(tmp_path, tiny_model):
    model, example = tiny_model
    art = get_target("jetson-orin").export(model, example, tmp_path / "orin")
    proto = onnx.load(str(art.path / "model.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    sess = load(art.path, backend="onnxruntime")
    assert sess.inputs[0]["dtype"] == "float32"
    assert art.manifest["parity"]["onnx"]["rel_err"] < 5e-3


def test_gpu_artifact_runs_on_the_torch_path(tmp_path, tiny_model):
    model, example = tiny_model
    art = get_target("gpu").export(model, example, tmp_path / "gpu")
    assert {"model.pt2", "weights.safetensors"} <= set(art.manifest["files"])
    sess = load(art.path, backend="torch")
    out = sess.run(**{s["name"]: x.numpy() for s, x in zip(sess.inputs, example)})
    np.testing.assert_allclose(out["out"], model(*example)[0].detach().numpy(), atol=1e-6)


def test_failed_export_leaves_old_artifact_untouched(tmp_path, tiny_model):
    model, example = tiny_model
    out = tmp_path / "art"
    get_target("gpu").export(model, example, out)
    before = (out / "manifest.json").read_text()

    class Broken(torch.nn.Module):
        def forward(self, x):
            return x.numpy()  # not a tensor: describe() refuses it

    with pytest.raises(AvedgeError):
        get_target("gpu").export(Broken(), (torch.zeros(2),), out)
    assert (out / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["art"]  # no temp dirs left


def test_refuses_to_overwrite_a_non_artifact_directory(tmp_path, tiny_model):
    model, example = tiny_model
    (tmp_path / "precious.txt").write_text("mine")
    with pytest.raises(AvedgeError, match="not an avedge artifact"):
        get_target("gpu").export(model, example, tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "mine"


def test_over_the_weights_budget_is_refused_with_figures(tmp_path):
    big = torch.nn.Linear(1024, 1024)  # 4 MB of fp32 weights, int8 ~1 MB + onnx fp32 copy
    big.output_names = ["y"]
    with pytest.raises(AvedgeError, match=r"over the hearable weights budget of 2.0 MB"):
        get_target("hearable").export(big, (torch.zeros(1, 1024),), tmp_path / "big",
                                      recipe="fp32")
    assert not (tmp_path / "big").exists()


def test_pte_manifest_records_its_planned_memory_against_the_ram_budget(tmp_path, tiny_model):
    model, example = tiny_model
    art = get_target("hearable").export(model, example, tmp_path / "h")
    arena = art.manifest["memory_plan"]["activation_arena_bytes"]
    # at least the chunk in and out live in the arena (float32)
    assert arena >= 2 * example[0].numel() * 4
    b = art.manifest["budgets"]
    pte = art.manifest["files"]["model.pte"]["bytes"]
    assert b["model_ram_mb"] == round((pte + arena) / 2**20, 4)
    assert b["ram_ok"] is (b["model_ram_mb"] <= b["ram_mb"])


def test_a_recipe_that_does_not_apply_names_the_graph_and_leaves_nothing(tmp_path, tiny_model):
    from avedge.models.registry import Component
    from avedge.runtime.errors import RecipeNotApplicable
    from avedge.targets.export import export_components

    model, example = tiny_model  # convolutions only: nothing for MLP pruning to take
    comp = Component("encoder", model, tuple(example), recipe="prune-0.25", target="cpu")
    with pytest.raises(RecipeNotApplicable, match="PruneChannelsConfig found nothing") as err:
        export_components("cpu", [(comp, "user")], tmp_path / "art", family="tiny")
    assert err.value.graph == "encoder"
    assert not (tmp_path / "art").exists()
