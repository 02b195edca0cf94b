"""`avedge export FAMILY`: a multi-graph family becomes one composite artifact."""

import json

from avedge.cli import main


def test_speech_extractor_exports_as_a_pipeline_for_the_hearable(tmp_path, capsys):
    out = tmp_path / "se-hearable"
    assert main(["export", "speech-extractor", "--target", "hearable", "--out", str(out)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "pipeline" and m["target"] == "hearable"
    assert set(m["components"]) == {"speaker_encoder", "extractor"}
    assert m["recipe"] == "per-component"  # run-once encoder fp32, per-chunk extractor int8
    assert m["extra"]["algorithmic_latency_ms"] <= 12
    # The family metric: measured on the voice bank's val split, or null saying why not.
    metric = m["metric"]
    assert metric["name"] == "si_sdri_db" and metric["eval_set"]["split"] == "val"
    assert metric["value"] is not None or metric["reason"]
    assert "si_sdri_db: " in capsys.readouterr().out  # the export's summary says it
    ext = json.loads((out / "extractor" / "manifest.json").read_text())
    assert ext["stream"]["chunk_samples"] == 128 and ext["stream"]["conditions"]
    assert ext["budgets"]["weights_ok"] and ext["quantization"]["pte"]["int8_compute_ops"] > 0
    capsys.readouterr()
    assert main(["bench", str(out), "--runs", "5", "--json"]) == 0
    rows = {r["component"]: r for r in json.loads(capsys.readouterr().out)}
    assert "budget_ms" in rows["extractor"] and "budget_ms" not in rows["speaker_encoder"]
