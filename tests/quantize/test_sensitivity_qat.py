"""int8-qat: torchao's int8 fake quantizers on the Linears, a short distillation from the
float model, then dynamic int8 (quantize/int8_qat.py)."""

import copy

import pytest
import torch
from avedge.quantize.api import quantize_, using
from avedge.quantize.int8_qat import Int8QatConfig, _is_linear, qat_config
from avedge.runtime.errors import AvedgeError


class Outlier(torch.nn.Module):
    """A Linear with one input column 30x the others: its per-channel int8 scales are set
    by that column, so every other weight lands on a coarse grid (int8 loses here)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = torch.nn.Linear(16, 64), torch.nn.Linear(64, 16)
        with torch.no_grad():
            self.a.weight[:, 0] *= 30

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def int8_sim(module):
    """The module as dynamic int8 computes it (torchao's fake quantizers, the QAT ones)."""
    q = copy.deepcopy(module)
    from torchao.quantization import quantize_ as torchao_quantize_

    torchao_quantize_(q, qat_config("prepare"), filter_fn=_is_linear)
    return q


@torch.no_grad()
def rel_err(module, ref, x) -> float:
    return float((int8_sim(module)(x) - ref).pow(2).mean() / ref.pow(2).mean())


def test_qat_lowers_the_int8_error_and_leaves_plain_linears():
    model = Outlier().eval()
    x = torch.randn(1, 32, 16, generator=torch.Generator().manual_seed(1))
    ref = model(x).detach()
    student = copy.deepcopy(model)
    with using(model, (x,)):
        quantize_(student, Int8QatConfig(steps=200, lr=1e-4))
    assert [type(m) for m in student.modules()][1:] == [torch.nn.Linear] * 2  # converted back
    assert torch.equal(model(x), ref)  # the teacher is untouched
    before, after = rel_err(model, ref, x), rel_err(student, ref, x)
    # measured: 8.3e-5 -> 7.1e-5 (the weights moved <= 0.01 towards the int8 grid)
    assert after < 0.95 * before, (before, after)
    with pytest.raises(AvedgeError, match="fine-tunes towards the float model"):
        quantize_(copy.deepcopy(model), Int8QatConfig())
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        Int8QatConfig(steps=0)


def test_int8_qat_is_a_recipe_taken_where_dynamic_int8_is():
    from avedge.quantize import get_recipe
    from avedge.quantize.configs import Int8DynamicConfig
    from avedge.targets import get_target
    from avedge.targets.lowering import recipes_for

    r = get_recipe("int8-qat")
    assert r.find(Int8QatConfig) and r.find(Int8DynamicConfig)
    assert [t for t in ("cpu", "hearable") if "int8-qat" in recipes_for(get_target(t))] == [
        "cpu", "hearable"]


@pytest.mark.slow
def test_qat_on_a_tiny_speech_extractor_does_not_lose_si_sdri(tiny_weights, val_bank,
                                                              monkeypatch):
    """The tiny untrained extractor loses ~0.03 dB to int8 (simulated, 2 val mixtures);
    QAT must not make int8 worse. (Measured: it keeps or barely moves the weights: no gain
    on this model; the gain shows where int8 error is large, test above.)"""
    from avedge.models.speech_extractor import model as se
    from avedge.models.speech_extractor.evaluate import score_module

    monkeypatch.setenv("AVEDGE_VOICEBANK", str(val_bank))
    model = se.load_weights(tiny_weights).eval()
    # A short calibration stream (the shipped one streams ~400 chunks: minutes here).
    gen = torch.Generator().manual_seed(3)
    ex = se.example_inputs(model)
    batches, state = [], ex[2:]
    with torch.no_grad():
        for _ in range(8):
            chunk = torch.randn(ex[0].shape, generator=gen) * 0.1
            batches.append((chunk, ex[1], *state))
            state = tuple(model(chunk, ex[1], *state)[1:])
    model.calibration_inputs = lambda: batches
    student = copy.deepcopy(model)
    with using(model, ex):
        quantize_(student, Int8QatConfig(steps=40, lr=1e-4, batches=8))
    plain = score_module(int8_sim(model), 2)["value"]
    qat = score_module(int8_sim(student), 2)["value"]
    assert score_module(model, 2)["value"] - plain > 0.0  # int8 loses something here
    assert qat >= plain - 0.01, (plain, qat)
