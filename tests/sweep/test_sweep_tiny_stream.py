"""A real sweep of tiny-stream: 3 recipes on the cpu target's two backends (4 exports, one
recipe that does not apply to the model), the four output files, and a rerun that runs
nothing again."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from avedge.runtime import load
from avedge.targets import get_target

from avedge.cli import main

RECIPES = ["fp32", "int8-static", "prune-0.25"]  # prune: tiny-stream has no MLP pairs to prune


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "tiny"
    argv = ["sweep", "tiny-stream", "--recipes", ",".join(RECIPES), "--targets", "cpu",
            "--runs", "30", "--warmup", "5", "--out", str(out)]
    assert main(argv) == 0
    return out, argv


def by_id(out: Path) -> dict[str, dict]:
    return {t["trial_id"]: t for t in json.loads((out / "results.json").read_text())["trials"]}


@pytest.mark.slow
def test_sweep_writes_every_trial_and_the_four_files(swept):
    out, _ = swept
    cpu = get_target("cpu")
    trials = by_id(out)
    assert sorted(trials) == sorted(f"{r}__cpu__{b}" for r in RECIPES for b in cpu.backends)
    ok = {k: t for k, t in trials.items() if t["status"] == "ok"}
    assert sorted(ok) == sorted(f"{r}__cpu__{b}" for r in ("fp32", "int8-static")
                          for b in cpu.backends)
    for t in ok.values():
        assert 0 < t["latency_median_ms"] <= t["latency_p90_ms"]
        assert t["latency_source"] == "measured" and t["runs"] == 30
        assert t["peak_rss_mb"] > 50  # torch + a runtime: the process's own peak
        assert t["metric"] == {"name": None, "value": None,
                               "reason": "family 'tiny-stream' has no metric"}
        # The size is the model file the backend runs, and the artifact runs on it.
        art = Path(t["artifact"])
        model_file = {"executorch": "model.pte", "onnxruntime": "model.onnx"}[t["backend"]]
        assert t["size_bytes"] == (art / model_file).stat().st_size
        assert load(art, backend=t["backend"]).backend == t["backend"]
        assert [c["type"] for c in t["recipe_configs"]] == (
            ["Int8StaticConfig"] if t["recipe"] == "int8-static" else [])
    # Static int8 quantizes the convolutions in both formats: int8 weights on disk.
    for b in cpu.backends:
        assert ok[f"int8-static__cpu__{b}"]["size_bytes"] < 0.7 * ok[f"fp32__cpu__{b}"]["size_bytes"]
    for b in cpu.backends:
        skipped = trials[f"prune-0.25__cpu__{b}"]
        assert skipped["status"] == "skipped"
        assert skipped["reason"].startswith("recipe 'prune-0.25' does not apply: "
                                            "PruneChannelsConfig found nothing to prune")

    summary = json.loads((out / "results.json").read_text())
    assert summary["counts"] == {"ok": 4, "skipped": 2, "failed": 0}
    machine = summary["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and machine["versions"]["torch"]
    timing = summary["timing"]
    assert timing["trials_run"] == 6 and 0 <= timing["overhead_s"] < timing["wall_s"]
    front = summary["pareto_front"]
    assert front and set(front) <= set(ok)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["trial_id"] for r in rows] == [t["trial_id"] for t in summary["trials"]]
    assert {r["trial_id"] for r in rows if r["on_front"] == "True"} == set(front)
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and machine["cpu"] in page
    assert all(f"<td>{tid}</td>" in page for tid in trials)
    assert "Int8StaticConfig" in page


@pytest.mark.slow
def test_rerunning_a_finished_sweep_runs_nothing_and_keeps_the_artifacts(swept, capsys):
    out, argv = swept
    before = {tid: (Path(t["artifact"]) / "manifest.json").stat().st_mtime_ns
              for tid, t in by_id(out).items() if t["status"] == "ok"}
    capsys.readouterr()
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "fp32__cpu__onnxruntime" in text and "sweep overhead" in text
    summary = json.loads((out / "results.json").read_text())
    assert summary["timing"]["trials_run"] == 0
    for tid, t in by_id(out).items():
        starts = (out / "trials" / tid / "starts.jsonl")
        assert len(starts.read_text().splitlines()) == 1, tid
        if tid in before:
            assert (Path(t["artifact"]) / "manifest.json").stat().st_mtime_ns == before[tid]


@pytest.mark.slow
def test_an_npu_target_records_the_compiler_estimate_labelled_as_such(tmp_path, capsys):
    """The host cannot run an Ethos-U graph: the trial keeps the artifact and records the
    export's Vela estimate as the latency, saying it is one; no metric (nothing ran)."""
    out = tmp_path / "npu"
    assert main(["sweep", "tiny-stream", "--recipes", "int8-static", "--targets",
                 "hearable-npu", "--out", str(out), "--json"]) == 0
    (t,) = json.loads(capsys.readouterr().out)["trials"]
    assert t["status"] == "ok" and t["backend"] == "ethos-u"
    manifest = json.loads((Path(t["artifact"]) / "manifest.json").read_text())
    est = manifest["npu_estimate"]
    assert t["latency_median_ms"] == t["latency_p90_ms"] == est["inference_ms_at_clock"]
    assert t["latency_source"].startswith(est["source"]) and "estimate" in est["source"]
    assert "cannot run" in t["latency_source"]
    assert t["metric"]["value"] is None and "run only on the device" in t["metric"]["reason"]
    assert t["size_bytes"] == (Path(t["artifact"]) / "model.pte").stat().st_size
