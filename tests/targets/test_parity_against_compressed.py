"""Parity judges the lowering, not the recipe: the exported file is compared with the
compressed eager module it was lowered from, and what the recipe itself changed is
recorded beside it (recipe_deviation) as information, never refused."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from avedge.runtime.errors import AvedgeError
from avedge.targets import get_target


class Cancelling(torch.nn.Module):
    """a(x) - x @ w.T with w a slightly perturbed copy of a's weight, held as a plain
    parameter (no layer the recipe factorises): the output is a small difference of two
    large terms, so factorising `a` at half rank moves it far beyond its own scale (as
    lowrank-0.5 without fine-tune did to lips-pose: 1.7x its scale)."""

    input_names = ("x",)
    output_names = ("y",)

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = torch.nn.Linear(64, 16, bias=False)
        with torch.no_grad():  # drawn from g, not the global generator: the same every run
            self.a.weight.copy_(torch.randn(16, 64, generator=g) / 8)
        self.w = torch.nn.Parameter(self.a.weight.detach()
                                    + torch.randn(16, 64, generator=g) / 800)

    def forward(self, x):
        return self.a(x) - torch.nn.functional.linear(x, self.w)


@pytest.fixture
def onnx_cpu():
    """The cpu target writing its .onnx only (one lowering per export: fast)."""
    return dataclasses.replace(get_target("cpu"), backends=("onnxruntime",))


@pytest.fixture
def cancelling():
    return Cancelling().eval(), (torch.randn(1, 8, 64, generator=torch.Generator().manual_seed(1)),)


def test_a_recipe_that_ruins_the_output_is_recorded_not_refused(tmp_path, onnx_cpu, cancelling):
    model, example = cancelling
    art = onnx_cpu.export(model, example, tmp_path / "lr", recipe="lowrank-0.5")
    m = art.manifest
    # The recipe moved the output past its own scale: information, not a failure ...
    assert m["recipe_deviation"]["rel_err"] > 1.0, m["recipe_deviation"]
    # ... while the file runs exactly the compressed module (held to the fp32 limit: the
    # recipe keeps fp32, so the lowering has no excuse).
    assert m["parity"]["onnx"]["rel_err"] < 1e-4, m["parity"]
    assert isinstance(model.a, torch.nn.Linear)  # the caller's module is not touched
    # A recipe without module-level configs changes no eager module: nothing to record.
    assert "recipe_deviation" not in onnx_cpu.export(model, example, tmp_path / "fp32").manifest


def test_a_lowering_that_loses_the_compression_is_refused_as_a_lowering_fault(
        tmp_path, monkeypatch, onnx_cpu, cancelling):
    from avedge.targets import lowering

    # A lowering that writes the module it was given before compression (as if it had
    # dropped the factorised layers): the artifact then disagrees with the compressed
    # module it was given, and that is the lowering's fault.
    model, example = cancelling
    real = lowering.FORMAT_LOWERERS["onnx"]

    def drops_the_compression(job):
        return real.lower(dataclasses.replace(job, module=model))

    monkeypatch.setitem(lowering.FORMAT_LOWERERS, "onnx",
                        dataclasses.replace(real, lower=drops_the_compression))
    with pytest.raises(AvedgeError, match=r"'lowrank-0.5': the onnx artifact disagrees with the "
                                          r"compressed eager module it was lowered from .*"
                                          r"the lowering gets an op of this model wrong"):
        onnx_cpu.export(model, example, tmp_path / "bad", recipe="lowrank-0.5")
    assert not (tmp_path / "bad").exists()


def test_quantizing_lowerings_keep_the_output_scale_limit():
    from avedge.quantize import get_recipe
    from avedge.targets.export import COMPRESSED_PARITY_LIMIT, FP32_PARITY_LIMIT, parity_limit

    assert parity_limit(get_recipe("fp32").configs) == FP32_PARITY_LIMIT
    assert parity_limit(get_recipe("prune-taylor-0.25-distill").configs) == FP32_PARITY_LIMIT
    for name in ("int8", "int8-weight", "8da4w", "fp16", "int8-qat"):
        assert parity_limit(get_recipe(name).configs) == COMPRESSED_PARITY_LIMIT, name
