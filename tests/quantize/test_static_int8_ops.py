"""Static int8 puts int8 on the weighted ops only by default (Int8StaticConfig.ops
"compute"), on both CPU lowerings. A signal chain with a wide dynamic range (log power of
a spectrum -> Linear -> tanh mask x spectrum, the speech extractor's shape in miniature)
is wrecked when its elementwise ops get per-tensor int8 scales too (ops="all", what
int8-static did before: the power's scale rounds every quiet bin to 0, the folded eps
with it, and log() of 0 is -inf); with "compute" the output stays close to fp32."""

from __future__ import annotations

import pytest
import torch
from avedge.quantize.configs import Int8StaticConfig
from avedge.quantize.recipes import Recipe, get_recipe
from torch import nn

BINS = 32


def spectra(seed: int, batch: int = 4) -> torch.Tensor:
    """(batch, 2 * BINS) [re; im] with magnitudes spread over 80 dB, as speech spectra are."""
    g = torch.Generator().manual_seed(seed)
    mag = 10 ** (torch.rand(batch, BINS, generator=g) * 4 - 3)
    phase = torch.rand(batch, BINS, generator=g) * 6.2832
    return torch.cat([mag * torch.cos(phase), mag * torch.sin(phase)], dim=1)


class LogPowerMask(nn.Module):
    input_names = ("spec",)
    output_names = ("out",)

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.proj = nn.Linear(BINS, BINS)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(BINS, BINS, generator=g) / BINS ** 0.5)
            self.proj.bias.zero_()

    def forward(self, spec):
        re, im = spec[:, :BINS], spec[:, BINS:]
        feats = torch.log(re * re + im * im + 1e-6) * 0.1
        mask = torch.tanh(self.proj(feats))
        return torch.cat([mask * re, mask * im], dim=1)

    def calibration_inputs(self):
        return [(spectra(seed),) for seed in range(1, 17)]


def rel_err(got, want) -> float:
    return float((got - want).detach().norm() / want.detach().norm())


@pytest.fixture(scope="module")
def model():
    return LogPowerMask().eval()


def test_config_takes_compute_or_all_and_int8_static_means_compute():
    assert Int8StaticConfig().ops == "compute"
    assert get_recipe("int8-static").find(Int8StaticConfig).ops == "compute"
    assert get_recipe("int8-static-all").find(Int8StaticConfig).ops == "all"
    with pytest.raises(ValueError, match="ops must be one of compute, all"):
        Int8StaticConfig(ops="elementwise")


def test_pte_static_int8_keeps_elementwise_ops_float(model):
    from avedge.quantize.pt2e_int8 import quantize_pt2e_int8

    held_out = spectra(99)
    want = model(held_out)
    errs = {}
    for ops in ("all", "compute"):
        graph, provenance = quantize_pt2e_int8(model, (spectra(0),), Int8StaticConfig(ops=ops))
        assert provenance["source"] == "LogPowerMask.calibration_inputs()"
        errs[ops] = rel_err(graph(held_out), want)
        quantized = {n.args[0].name for n in graph.graph.nodes
                     if n.target == torch.ops.quantized_decomposed.quantize_per_tensor.default}
        if ops == "compute":  # the Linear's input (the scaled log power) and output only
            assert quantized == {"mul_2", "linear"}, quantized
        else:  # the power, its eps sum, the mask products and their cat too
            assert {"add", "add_1", "mul_3", "cat"} <= quantized, quantized
    assert errs["all"] > 0.3, errs  # the old int8-static: the mask is noise
    assert errs["compute"] < 0.05, errs


def test_onnx_static_int8_keeps_elementwise_ops_float(model, tmp_path):
    import onnxruntime as ort
    from avedge.targets.lower_onnx import lower_onnx

    held_out = spectra(99)
    want = model(held_out).detach()
    errs = {}
    for ops in ("all", "compute"):
        path = tmp_path / f"{ops}.onnx"
        provenance = lower_onnx(model, (spectra(0),), ["spec"], ["out"],
                                Recipe(ops, (Int8StaticConfig(ops=ops),)), path, [])
        assert provenance["batches"] == 16
        feeding = _ops_feeding_quantizers(path)
        if ops == "compute":  # the Linear's input and output only
            assert not feeding & {"Add", "Concat", "Log"}, feeding
        else:
            assert {"Add", "Concat"} <= feeding, feeding
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(sess.run(None, {"spec": held_out.numpy()})[0])
        errs[ops] = rel_err(got, want)
    assert errs["all"] > 0.3, errs
    assert errs["compute"] < 0.05, errs


def _ops_feeding_quantizers(path) -> set[str]:
    """Op types whose outputs onnxruntime put a QuantizeLinear on (activations only)."""
    import onnx

    graph = onnx.load(str(path)).graph
    producer = {out: n.op_type for n in graph.node for out in n.output}
    return {producer[n.input[0]] for n in graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] in producer}


class FixedFrontEnd(nn.Module):
    """A fixed transform (conv weights held as a buffer, as the conv-STFT's DFT rows are)
    before a learned Linear."""

    input_names = ("wave",)
    output_names = ("out",)

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("basis", torch.randn(16, 1, 32, generator=g))
        self.proj = nn.Linear(16, 8)

    def forward(self, wave):
        frames = nn.functional.conv1d(wave, self.basis, stride=16)  # (B, 16, T)
        return self.proj(frames.transpose(1, 2))


def test_ops_on_fixed_transform_weights_stay_float_in_both_formats(tmp_path):
    import onnx
    from avedge.quantize.pt2e_int8 import quantize_pt2e_int8
    from avedge.targets.lower_onnx import lower_onnx

    model = FixedFrontEnd().eval()
    example = (torch.randn(1, 1, 256, generator=torch.Generator().manual_seed(1)),)
    graph, _ = quantize_pt2e_int8(model, example, Int8StaticConfig())
    quantized = {n.args[0].name for n in graph.graph.nodes
                 if n.target == torch.ops.quantized_decomposed.quantize_per_tensor.default}
    assert "wave" not in quantized and "linear" in quantized, quantized
    path = tmp_path / "m.onnx"
    lower_onnx(model, example, ["wave"], ["out"], Recipe("s", (Int8StaticConfig(),)), path, [])
    nodes = onnx.load(str(path)).graph.node
    producer = {out: n.op_type for n in nodes for out in n.output}
    conv = next(n for n in nodes if n.op_type == "Conv")
    assert producer.get(conv.input[0]) != "DequantizeLinear"  # the waveform stays float
    assert conv.input[1] == "basis"
    assert any(n.op_type == "QuantizeLinear" for n in nodes)  # the Linear still int8
