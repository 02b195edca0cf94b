"""The speech extractor through a sweep: the SI-SDRi it records on N val mixtures is what
an independent evaluation of the saved artifact gives (tiny weights, a tiny val bank)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from avedge.cli import main


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> str:
    from avedge.models.speech_extractor import model as se

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    se.save_weights(se.Extractor(se.Dims(d_model=16, d_hidden=32, n_blocks=2)), path)
    return str(path)


@pytest.fixture(scope="module")
def val_bank(tmp_path_factory):
    """Two espeak val-split voices (~1 s to build): enough for the val eval set."""
    from avedge.models.corpus import voicebank
    from avedge.models.corpus.voices import small_bank_voices

    d = tmp_path_factory.mktemp("bank")
    voicebank.build_bank(d, voices=small_bank_voices({"val": 2}), n_per_voice={"espeak": 2},
                         seed=0)
    return d


@pytest.mark.slow
def test_extractor_sweep_metric_equals_an_independent_evaluation(tmp_path, tiny_weights,
                                                                 val_bank, monkeypatch, capsys):
    from avedge.models.registry import get_family

    monkeypatch.setenv("AVEDGE_VOICEBANK", str(val_bank))  # trial processes inherit it
    out = tmp_path / "sweep"
    assert main(["sweep", "speech-extractor", "--recipes", "fp32", "--targets", "cpu",
                 "--backends", "onnxruntime", "--eval", "2", "--weights", tiny_weights,
                 "--runs", "20", "--out", str(out), "--json"]) == 0
    (trial,) = json.loads(capsys.readouterr().out)["trials"]
    assert trial["status"] == "ok", trial
    metric = trial["metric"]
    assert metric["name"] == "si_sdri_db" and metric["n"] == 2
    assert math.isfinite(metric["value"]) and metric["backend"] == "onnxruntime"
    assert metric["eval_set"]["bank"] == str(val_bank)
    # A composite artifact: the headline latency is the per-chunk graph's.
    comps = trial["component_latency"]
    assert comps["extractor"]["streaming"] and not comps["speaker_encoder"]["streaming"]
    assert trial["latency_median_ms"] == comps["extractor"]["median_ms"]
    assert set(trial["component_size_bytes"]) == {"extractor", "speaker_encoder"}

    again = get_family("speech-extractor").measure(trial["artifact"], n=2, backend="onnxruntime")
    assert again["value"] == metric["value"] and again["n"] == 2
