"""`avedge export speech-extractor --target hearable-npu`: the family's NPU form as a pipeline.

The enrollment encoder (+ FiLM projection) goes to the paired phone's CPU (fp32, runs on
this host); the per-chunk extractor goes through the Arm backend and Vela with its
dilated history as ring-buffer taps. A tiny extractor keeps the lowering to seconds.
"""

import json

import numpy as np
import pytest
import torch
from avedge.models.speech_extractor import model as se
from avedge.models.speech_extractor import npu
from avedge.runtime import load
from avedge.targets.arm.lower import arm_toolchain_missing

from avedge.api import export

MISSING = arm_toolchain_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"Ethos-U toolchain: {MISSING}")

TINY = se.Dims(d_model=16, d_hidden=32, n_blocks=3, dilation_cycle=3, df_order=1,
               speaker=se.SpeakerDims(channels=16, emb_dim=8, layers=1))


@pytest.fixture(scope="module")
def npu_artifact(tmp_path_factory):
    torch.manual_seed(0)
    m = se.Extractor(TINY).eval()
    torch.nn.init.normal_(m.film.weight, std=0.5)
    out = tmp_path_factory.mktemp("npu") / "se-npu"
    art = export(m, "hearable-npu", out, example_inputs=se.example_inputs(m), family=se.NAME,
                 allow_over_budget=True)
    return m, out, art.manifest


def test_components_and_where_they_run(npu_artifact):
    _, _, manifest = npu_artifact
    comps = manifest["components"]
    encoder = {k: v for k, v in comps["speaker_encoder"].items() if k != "recipe_source"}
    assert encoder == {"dir": "speaker_encoder", "recipe": "fp32", "target": "cpu"}
    assert comps["extractor"]["target"] == "hearable-npu"
    assert comps["extractor"]["recipe"] == "int8-static"
    for comp in comps.values():  # who chose each recipe (user > family > target)
        assert comp["recipe_source"] in ("user", "family", "target")


def test_extractor_is_all_on_the_npu_with_the_ring_contract(npu_artifact):
    _, out, _ = npu_artifact
    man = json.loads((out / "extractor" / "manifest.json").read_text())
    est = man["npu_estimate"]
    assert est["npu_op_share"] == 1.0 and est["cpu_ops"] == 0
    assert est["cycles_per_inference"] > 0 and est["sram_kib"] > 0
    assert man["tosa_check"]["status"] == "TOSA_VALID"
    # Within one LSB of the fake-quant model (int16 log tables emulated, each block's
    # ring at its own scale) on real speech inputs.
    assert man["tosa_check"]["ok"] and man["tosa_check"]["max_lsb_diff"] <= 1.0
    ring = man["stream"]["rings"][0]
    assert (ring["input"], ring["output"]) == ("taps_0", "frames_0")
    assert len(man["stream"]["rings"]) == TINY.n_blocks  # one ring (own int8 scale) per block
    assert [p["input"] for p in man["stream"]["state"]] == ["stft_state", "ola_state"]
    assert man["stream"]["conditions"] == ["film"]
    assert {"model.tosa", "vela_per_layer.csv", "vela_summary.csv"} <= set(man["files"])


def test_phone_side_condition_runs_here_and_matches_the_model(npu_artifact):
    m, out, _ = npu_artifact
    enc = load(out / "speaker_encoder", backend="executorch")
    enroll = (np.random.default_rng(0).standard_normal((1, se.ENROLL_SAMPLES)) * 0.1
              ).astype(np.float32)
    film = enc.run_ordered([enroll])[0]
    with torch.no_grad():
        ref = npu.FilmCondition(m)(torch.from_numpy(enroll)).numpy()
    assert film.shape == (1, 2 * TINY.n_blocks * TINY.d_model)
    assert np.abs(film - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_info_and_bench_describe_both_sides(npu_artifact, capsys):
    from avedge.cli import main

    _, out, _ = npu_artifact
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "component speaker_encoder: speaker_encoder/ (fp32, target cpu)" in text
    assert "ring frames_0 -> taps_0" in text and "not a measurement" in text
    assert main(["bench", str(out), "--runs", "3", "--warmup", "1", "--json"]) == 0
    rows = {r["component"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["extractor"]["measured"] is False and rows["extractor"]["estimate_ms"] > 0
    assert rows["extractor"]["budget_ms"] == 1.0
    assert rows["speaker_encoder"]["median_ms"] > 0  # timed on this host


def test_cmsis_nn_board_takes_the_same_split(tmp_path):
    torch.manual_seed(0)
    m = se.Extractor(TINY).eval()
    art = export(m, "cortex-m55", tmp_path / "m55", example_inputs=se.example_inputs(m),
                 family=se.NAME, allow_over_budget=True)
    comps = art.manifest["components"]
    assert comps["speaker_encoder"]["target"] == "cpu"
    assert comps["extractor"]["target"] == "cortex-m55"
    man = json.loads((tmp_path / "m55" / "extractor" / "manifest.json").read_text())
    assert man["stream"]["rings"][0]["input"] == "taps_0"
    assert man["quantization"]["pte-cortex-m"]["int8_compute_ops"] > 0
