"""The speech extractor through a sweep: the SI-SDRi it records on N val mixtures is what
an independent evaluation of the saved artifact gives (tiny weights, a tiny val bank)."""

from __future__ import annotations

import json
import math

import pytest

from avedge.cli import main


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
