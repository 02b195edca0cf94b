"""Arm NPU targets: export through ExecuTorch's Arm backend + Vela, TOSA reference check,
bad input (unsupported ops, over budget), and the host's refusal to run the .pte.

Each export costs a few seconds of lowering, so the artifacts are made once per module.
Everything that needs the Ethos-U toolchain skips, with the reason, when it is absent.
"""

import configparser
import csv
import dataclasses
import json

import numpy as np
import pytest
import torch
from avedge.runtime import load
from avedge.runtime.errors import AvedgeError, BackendUnavailableError
from avedge.runtime.manifest import sha256_file
from avedge.targets import Budgets, get_target
from avedge.targets.arm import VELA_SYSTEMS
from avedge.targets.arm.lower import arm_toolchain_missing
from torch import nn

from avedge.cli import main

MISSING = arm_toolchain_missing()
needs_arm = pytest.mark.skipif(MISSING is not None, reason=f"Ethos-U toolchain: {MISSING}")


class Speechy(nn.Module):
    """A small streaming conv model, calibrated on speech-like signals (not noise)."""

    family = "speechy"

    def __init__(self, pool: nn.Module | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.c1 = nn.Conv1d(4, 16, 3, padding=1)
        self.pool = pool or nn.Identity()
        self.c2 = nn.Conv1d(16, 4, 1)

    def forward(self, x):  # (1, 4, 32) -> (1, 4, T')
        return self.c2(self.pool(torch.tanh(self.c1(x))))

    def calibration_inputs(self):
        t = torch.arange(32) / 16000
        return [(0.3 * torch.stack([torch.sin(2 * torch.pi * f * (k + 1) * t)
                                    for k in range(4)])[None],) for f in (220.0, 330.0, 440.0,
                                                                          550.0, 660.0)]


def example():
    return Speechy().calibration_inputs()[0]


def speechy_factory():  # for `avedge export test_arm:speechy_factory`
    return Speechy(), example()


@pytest.fixture(scope="module")
def npu_art(tmp_path_factory):
    if MISSING:
        pytest.skip(f"Ethos-U toolchain: {MISSING}")
    return get_target("hearable-npu").export(Speechy(), example(),
                                             tmp_path_factory.mktemp("arm") / "npu")


def test_board_lines_and_their_vela_system_agree():
    npu, u85, m55 = (get_target(n) for n in ("hearable-npu", "ethos-u85", "cortex-m55"))
    assert npu.npu == "ethos-u55-128" and 150 <= npu.clock_mhz <= 200
    assert u85.npu == "ethos-u85-128" and m55.npu is None
    assert npu.formats == ("pte-ethos-u",) and m55.formats == ("pte-cortex-m",)
    assert npu.budgets.sram_kib == 512 and npu.budgets.flash_kib == 2048
    for name, system in VELA_SYSTEMS.items():
        ini = configparser.ConfigParser()
        ini.read(system.config_ini)
        clock = float(ini[f"System_Config.{system.system_config}"]["core_clock"])
        assert clock == get_target(name).clock_mhz * 1e6  # manifest clock == Vela's clock
        mode = ini[f"Memory_Mode.{system.memory_mode}"]
        assert mode["arena_mem_area"] == "Axi0"  # working memory in SRAM only
        assert "Dram" not in ini[f"System_Config.{system.system_config}"].values()


def test_a_board_is_one_line_and_its_vela_system_travels_with_it(monkeypatch):
    from avedge.targets.arm import boards
    from avedge.targets.arm.lower import ethos_u_spec

    monkeypatch.setattr(boards, "VELA_SYSTEMS", dict(boards.VELA_SYSTEMS))
    board = boards.ethos_u_board("u55-256-test", npu="ethos-u55-256", mhz=250, system="X")
    assert board.formats == ("pte-ethos-u",) and board.clock_mhz == 250.0
    assert board.precision == "int8" and board.budgets.sram_kib == 512
    assert "Ethos-U55-256 at 250 MHz" in board.description
    assert boards.VELA_SYSTEMS["u55-256-test"] == boards.VelaSystem(boards.HEARABLE_INI, "X",
                                                                   "Hearable_Sram_512KB")
    with pytest.raises(ValueError, match="defined twice"):
        boards.ethos_u_board("u55-256-test", npu="ethos-u55-256", mhz=250, system="X")
    with pytest.raises(AvedgeError, match="'renamed' names no Vela system.*hearable-npu"):
        ethos_u_spec(dataclasses.replace(board, name="renamed"))
    # The configs ship inside the package (pyproject package-data "*.ini").
    assert boards.HEARABLE_INI.is_file() and boards.CONFIG_DIR.parent.name == "arm"


def test_float_recipe_is_refused_with_what_is_accepted(tmp_path):
    with pytest.raises(AvedgeError, match="integer arithmetic only.*int8-static"):
        get_target("hearable-npu").export(Speechy(), example(), tmp_path / "x", recipe="fp32")
    assert not (tmp_path / "x").exists()


@needs_arm
def test_export_records_vela_figures_and_keeps_its_files(npu_art):
    m = npu_art.manifest
    files = m["files"]
    assert {"model.pte", "model.tosa", "vela_summary.csv", "vela_per_layer.csv"} <= set(files)
    assert files["model.pte"]["format"] == "pte-ethos-u"
    for name, rec in files.items():  # every kept file is hashed
        assert rec["sha256"] == sha256_file(npu_art.path / name)
    est = m["npu_estimate"]
    assert est["source"] == "estimate (Vela), not a measurement"
    with open(npu_art.path / "vela_summary.csv", newline="") as f:
        summary = next(csv.DictReader(f))
    assert est["cycles_per_inference"] == int(float(summary["cycles_total"])) > 0
    assert est["inference_ms_at_clock"] == pytest.approx(
        est["cycles_per_inference"] / (est["clock_mhz"] * 1e3), rel=1e-4)
    assert est["inference_ms_at_clock"] == pytest.approx(
        float(summary["inference_time"]) * 1e3, rel=1e-3)
    assert est["clock_mhz"] == 160 and summary["system_config"] == "Hearable_U55_160MHz"
    assert 0 < est["sram_kib"] < 512 and 0 < est["flash_kib"] < 2048
    assert est["npu_op_share"] == 1.0 and est["ops_on_cpu"] == [] and not est["cpu_fallback"]
    with open(npu_art.path / "vela_per_layer.csv", newline="") as f:
        layers = list(csv.DictReader(f))
    assert {r["Target"] for r in layers} == {"NPU"}
    assert sum(int(r["MAC Count"]) for r in layers) == est["macs"] > 0
    b = m["budgets"]
    assert b["sram_ok"] and b["flash_ok"] and b["used_sram_kib"] == est["sram_kib"]


@needs_arm
def test_tosa_reference_model_matches_the_fake_quant_model(npu_art):
    check = npu_art.manifest["tosa_check"]
    assert check["ok"] and check["max_lsb_diff"] <= 1.0 and check["batches"] >= 4


@needs_arm
def test_tosa_disagreement_fails_the_export(tmp_path, monkeypatch):
    from avedge.targets.arm import tosa as tosa_check

    real = tosa_check._run_tosa

    def off_by_forty(tosa, inputs, like):  # an NPU graph with a wrong scale or op
        return [(o.int() + 40).clamp(-128, 127).to(o.dtype) for o in real(tosa, inputs, like)]

    monkeypatch.setattr(tosa_check, "_run_tosa", off_by_forty)
    with pytest.raises(AvedgeError, match=r"disagrees with the fake-quant model by [34]\d"):
        get_target("hearable-npu").export(Speechy(), example(), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


@needs_arm
def test_unsupported_op_is_named_and_falls_back_to_the_cpu(tmp_path):
    model = Speechy(pool=nn.AdaptiveAvgPool1d(4))  # the Ethos-U partitioner rejects it
    with pytest.warns(UserWarning, match=r"_adaptive_avg_pool2d.*at pool.*fall back to the "
                                         r"Cortex-M CPU"):
        art = get_target("hearable-npu").export(model, example(), tmp_path / "fb")
    est = art.manifest["npu_estimate"]
    ops = {o["op"]: o for o in est["ops_on_cpu"]}
    assert any("adaptive_avg_pool" in op for op in ops) and est["cpu_fallback"]
    assert all(o["where"] == ["pool"] for o in ops.values())
    assert 0 < est["npu_op_share"] < 1 and len(est["delegates"]) == 2
    assert {"model.delegate0.tosa", "vela_per_layer.delegate1.csv"} <= set(art.manifest["files"])
    assert art.manifest["tosa_check"]["ok"]  # checked through the CPU op too


@needs_arm
def test_over_budget_model_is_refused_with_its_figures(tmp_path):
    tight = dataclasses.replace(get_target("hearable-npu"),
                                budgets=Budgets(chunk_latency_ms=1.0, sram_kib=0.25,
                                                flash_kib=2048.0))
    with pytest.raises(AvedgeError, match=r"needs [\d.]+ KiB of SRAM, over the hearable-npu "
                                          r"budget of 0.25 KiB.*cycles"):
        tight.export(Speechy(), example(), tmp_path / "big")
    assert not (tmp_path / "big").exists()


@needs_arm
def test_load_says_the_host_cannot_run_it_and_lists_what_can(npu_art):
    with pytest.raises(BackendUnavailableError) as err:
        load(npu_art.path)
    msg = str(err.value)
    assert "host cannot run Ethos-U NPU .pte files" in msg and "Corstone" in msg
    assert "available here:" in msg and "onnxruntime" in msg
    with pytest.raises(BackendUnavailableError, match="available: .*onnxruntime"):
        load(npu_art.path, backend="ethos-u")


@needs_arm
def test_bench_prints_the_labelled_estimate(npu_art, capsys):
    assert main(["bench", str(npu_art.path)]) == 0
    out = capsys.readouterr().out
    assert "not timed" in out and "estimate (Vela), not a measurement" in out
    assert str(npu_art.manifest["npu_estimate"]["cycles_per_inference"]) in out
    assert main(["bench", str(npu_art.path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["measured"] is False and data["within_budget"] is True
    assert data["estimate_ms"] == npu_art.manifest["npu_estimate"]["inference_ms_at_clock"]


@needs_arm
def test_info_shows_the_npu_figures(npu_art, capsys):
    assert main(["info", str(npu_art.path)]) == 0
    out = capsys.readouterr().out
    assert "npu: Ethos_U55_128 at 160 MHz" in out and "SRAM" in out and "100.0 %" in out
    assert "tosa check: max" in out


def test_rewrites_compute_the_same_function():
    from avedge.targets.arm.rewrites import for_cmsis_nn, for_npu

    class Frame(nn.Module):  # a one-frame strided analysis + synthesis, like a conv-STFT
        def __init__(self):
            super().__init__()
            self.register_buffer("a", torch.randn(10, 1, 12))
            self.register_buffer("s", torch.randn(10, 1, 12))
            self.pool = nn.AdaptiveAvgPool1d(1)

        def forward(self, x):  # (1, 12)
            spec = nn.functional.conv1d(x[:, None], self.a, stride=8)  # (1, 10, 1)
            y = nn.functional.conv_transpose1d(torch.tanh(spec), self.s, stride=8)
            return y[:, 0], self.pool(spec)

    model, x = Frame().eval(), (torch.randn(1, 12),)
    rewritten, done = for_npu(model, x)
    assert len(done) == 3 and any("conv_transpose1d" in d for d in done)
    names = [str(n.target) for n in rewritten.graph.nodes if n.op == "call_function"]
    assert not any("conv" in n for n in names) and any("linear" in n for n in names)
    for a, b in zip(model(*x), rewritten(*x)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    convs = nn.Sequential(nn.Conv1d(3, 5, 3, padding=1, dilation=2, stride=2))
    m2, done2 = for_cmsis_nn(convs, (torch.randn(1, 3, 20),))
    assert done2 == ["0: Conv1d -> Conv2d (B, C, 1, T)"]
    xin = torch.randn(1, 3, 20)
    np.testing.assert_allclose(m2(xin).detach(), convs(xin).detach(), atol=1e-6)


@needs_arm
def test_cortex_m55_maps_convs_to_cmsis_nn_and_cannot_run_here(tmp_path, capsys):
    art = get_target("cortex-m55").export(Speechy(), example(), tmp_path / "m55")
    cm = art.manifest["cortex_m"]
    assert cm["cmsis_nn_ops"].get("cortex_m.quantized_conv2d.default") == 2
    assert not any("convolution" in op for op in cm["portable_ops"])
    assert art.manifest["files"]["model.pte"]["format"] == "pte-cortex-m"
    assert art.manifest["budgets"]["flash_ok"] and "npu_estimate" not in art.manifest
    with pytest.raises(BackendUnavailableError, match="host cannot run Cortex-M"):
        load(art.path)
    assert main(["bench", str(art.path)]) != 0
    assert "no cycle estimate" in capsys.readouterr().err


@needs_arm
def test_cli_export_prints_the_npu_figures(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["export", "test_arm:speechy_factory", "--target", "hearable-npu",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "npu: Ethos_U55_128 at 160 MHz" in text and "estimate (Vela)" in text
    assert "/ 1 ms per chunk" in text and "TOSA check max" in text
    assert "Network summary" not in text  # Vela's own report stays out of the output
    assert (out / "vela_per_layer.csv").is_file()


@needs_arm
def test_a_graph_the_reference_model_calls_unpredictable_is_refused(tmp_path, monkeypatch):
    from avedge.targets.arm import tosa as tosa_check

    def unpredictable(tosa, inputs, like):
        raise tosa_check.UnpredictableGraph("TOSA_UNPREDICTABLE")

    monkeypatch.setattr(tosa_check, "_run_tosa", unpredictable)
    with pytest.raises(AvedgeError, match="rejects the lowered graph as TOSA_UNPREDICTABLE.*"
                                          "int8 activations"):
        get_target("hearable-npu").export(Speechy(), example(), tmp_path / "u")
    assert not (tmp_path / "u").exists()
