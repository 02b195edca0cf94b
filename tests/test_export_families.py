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
    ext = json.loads((out / "extractor" / "manifest.json").read_text())
    assert ext["stream"]["chunk_samples"] == 128 and ext["stream"]["conditions"]
    assert ext["budgets"]["weights_ok"] and ext["quantization"]["pte"]["int8_compute_ops"] > 0
    capsys.readouterr()
    assert main(["bench", str(out), "--runs", "5", "--json"]) == 0
    rows = {r["component"]: r for r in json.loads(capsys.readouterr().out)}
    assert "budget_ms" in rows["extractor"] and "budget_ms" not in rows["speaker_encoder"]
