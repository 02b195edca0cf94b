"""Per-op precision on the Ethos-U (int16 into a log) and the fake-quant model that
computes the NPU's int16 tables as the NPU does (targets/arm/precision.py)."""

import dataclasses

import pytest
import torch
from avedge.quantize import Int8StaticConfig
from avedge.targets import get_target
from avedge.targets.arm.lower import arm_toolchain_missing, quantize_for_ethos_u
from avedge.targets.arm.precision import as_npu_computes, log_feed
from torch import nn

MISSING = arm_toolchain_missing()
needs_arm = pytest.mark.skipif(MISSING is not None, reason=f"Ethos-U toolchain: {MISSING}")


class LogPower(nn.Module):
    """Spectrum-like input -> log power -> projection: quiet bins make the log steep."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(24, 8)

    def forward(self, x):  # (1, 2, 24): real and imaginary parts
        power = x[:, 0] * x[:, 0] + x[:, 1] * x[:, 1]
        return self.proj(torch.log(power * 0.0625 + 1e-6 / 16))

    def calibration_inputs(self):
        gen = torch.Generator().manual_seed(0)
        # Levels over 60 dB, like speech bins from loud harmonics to quiet gaps.
        return [(torch.randn(1, 2, 24, generator=gen) * 10 ** (-3 * torch.rand(1, 1, 24,
                                                                             generator=gen)),)
                for _ in range(8)]


def test_log_feed_is_the_log_and_what_computes_its_input():
    gm = torch.export.export(LogPower(), LogPower().calibration_inputs()[0]).module()
    ops = sorted(str(n.target).split(".")[-2] for n in log_feed(gm.graph))
    assert ops == ["add", "add", "log", "mul", "mul", "mul", "select", "select", "select",
                   "select"]
    assert all("linear" not in str(n.target) for n in log_feed(gm.graph))


@needs_arm
def test_int8_default_keeps_the_log_feed_in_int16():
    m = LogPower()
    fq, _, _, scheme = quantize_for_ethos_u(m, m.calibration_inputs()[0],
                                            get_target("hearable-npu"), Int8StaticConfig())
    assert scheme == "a8w8-log16"
    dq_into = {}  # op -> dtypes of the activations it reads (not its bias)
    for n in fq.graph.nodes:
        if n.op == "call_function" and "dequantize" in str(n.target):
            for u in n.users:
                if u.args[0] is n:
                    dq_into.setdefault(str(u.target), set()).add(n.args[-1])
    assert dq_into["aten.log.default"] == {torch.int16}
    assert dq_into["aten.linear.default"] == {torch.int8}  # the projection's input


@needs_arm
def test_emulated_tables_match_the_tosa_reference_model(tmp_path):
    """With int16 activations the log is a 513-entry interpolated table on the NPU: the
    export's TOSA check holds the emulating fake-quant model to a fraction of an 8-bit
    step (int16 rounding of each interpolation aside), which the exact log (plain
    fake-quant) misses by far on quiet inputs."""
    m = LogPower()
    target = dataclasses.replace(get_target("hearable-npu"), precision="a16w8")
    art = target.export(m, m.calibration_inputs()[0], tmp_path / "log16")
    check = art.manifest["tosa_check"]
    assert check["status"] == "TOSA_VALID" and not check["gross"], check
    assert check["max_lsb8_diff"] <= 1.0 and max(check["relative_rms_diff"]) < 0.01, check
    fq, batches, _, _ = quantize_for_ethos_u(m, m.calibration_inputs()[0], target,
                                             Int8StaticConfig())
    npu = as_npu_computes(fq)
    assert any(getattr(n.target, "__name__", "").startswith("int16_table") for n in npu.graph.nodes)
    with torch.no_grad():
        exact, table = fq(*batches[0]), npu(*batches[0])
    assert float((exact - table).norm() / table.norm()) > 0.02


@needs_arm
def test_mixed_int16_int8_graph_lowers_to_what_fake_quant_computes(tmp_path):
    m = LogPower()
    art = get_target("hearable-npu").export(m, m.calibration_inputs()[0], tmp_path / "mixed")
    check = art.manifest["tosa_check"]
    assert check["ok"] and check["max_lsb_diff"] <= 1.0, check


class RangedLogPower(nn.Module):
    """The speech extractor's NPU-form features: a linear "STFT" (int16 out, as in the
    model), then log power over 4 decades of bin levels as `ranges` int16 tables
    (models/speech_extractor/npu.py `ranged_log_power`)."""

    def __init__(self, ranges: int):
        super().__init__()
        self.ranges = ranges
        gen = torch.Generator().manual_seed(0)
        self.stft = nn.Linear(16, 128, bias=False)
        with torch.no_grad():  # bins 2 decades apart in amplitude, 4 in power
            self.stft.weight.copy_(torch.randn(128, 16, generator=gen)
                                   * 10 ** (-2 * torch.rand(128, 1, generator=gen)))

    def forward(self, x):  # (1, 16) -> (1, 64)
        from avedge.models.speech_extractor.npu import ranged_log_offset, ranged_log_power

        y = self.stft(x)
        return ranged_log_power(y[:, :64], y[:, 64:], 16.0, self.ranges) - ranged_log_offset(
            16.0, self.ranges)

    def calibration_inputs(self):
        gen = torch.Generator().manual_seed(1)
        return [(torch.randn(1, 16, generator=gen) * 2,) for _ in range(8)]


@needs_arm
def test_ranged_log_is_closer_to_the_log_on_the_npu_and_lowers_exactly(tmp_path):
    """One int16 table over a power spectrum's range is a straight line over most bins
    (they sit in its first segment); 4 tables each on their own span follow the log."""
    errors = {}
    for ranges in (1, 4):
        m = RangedLogPower(ranges)
        fq, batches, _, _ = quantize_for_ethos_u(m, m.calibration_inputs()[0],
                                                 get_target("hearable-npu"), Int8StaticConfig())
        npu = as_npu_computes(fq)
        with torch.no_grad():
            diff = torch.cat([(npu(*b) - m(*b)).flatten() for b in batches])
        errors[ranges] = float(diff.pow(2).mean().sqrt())
    assert errors[4] < 0.2 * errors[1], errors
    m = RangedLogPower(4)
    art = get_target("hearable-npu").export(m, m.calibration_inputs()[0], tmp_path / "ranged")
    check = art.manifest["tosa_check"]
    assert check["ok"] and check["max_lsb_diff"] <= 1.0, check
    assert art.manifest["npu_estimate"]["npu_op_share"] == 1.0
