"""The lip reader through a sweep (tiny weights, a tiny espeak bank with its ROI cache):
the WER a trial records is what an independent evaluation of the saved artifact gives,
and what the user-facing task (runtime.pipelines.lipread.lipread) reads on the same
items; latency and size are the rate-1 graph's (the one the WER is of); the Pareto front
treats lower WER as better; static int8 calibrates on the train split's ROIs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from avedge.cli import main

TINY = {"stem_channels": 4, "cnn_channels": (8, 8, 8), "d_model": 16, "heads": 2, "ffn": 16,
        "layers": 1, "n_mels": 16}


@pytest.fixture(scope="module")
def lip_bank(tmp_path_factory):
    """One train and two val espeak voices, 4 utterances each, and their ROI caches."""
    from avedge.models.corpus import voicebank
    from avedge.models.corpus.voices import small_bank_voices
    from avedge.models.lipreader import data as D

    d = tmp_path_factory.mktemp("lipbank")
    voicebank.build_bank(d, voices=small_bank_voices({"train": 1, "val": 2}),
                         n_per_voice={"espeak": 4}, seed=0)
    D.build_cache(d, splits=("train", "val"))
    return d


@pytest.fixture(scope="module")
def lip_weights(tmp_path_factory) -> str:
    """A tiny untrained lip reader whose rate heads are scaled up, so its log-probs are
    peaked and the beam reads words (an untrained head is near uniform: all blank)."""
    from avedge.models.lipreader import model as lr

    torch.manual_seed(0)
    m = lr.LipReader(lr.Dims(**TINY))
    with torch.no_grad():
        for head in m.heads:
            head.weight.mul_(8.0)
    path = tmp_path_factory.mktemp("w") / "tiny-lipreader.safetensors"
    lr.save_weights(m.eval(), path)
    return str(path)


def dominated(r: dict, others: list[dict]) -> bool:
    """Another point at most as slow and at most as wrong, and better in one of them."""
    lat, wer = r["latency_median_ms"], r["metric"]["value"]
    return any(o is not r and o["latency_median_ms"] <= lat and o["metric"]["value"] <= wer
               and (o["latency_median_ms"] < lat or o["metric"]["value"] < wer)
               for o in others)


def read_with_the_task(artifact: str, windows: list[dict], monkeypatch) -> list[str]:
    """The text lipread() gives for each eval window: the task users run, with only the
    file decode and the face tracker replaced by the cached mouth ROIs (the metric, like
    every recipe, takes the tracker out of the loop)."""
    from avedge.runtime import video_io
    from avedge.runtime.pipelines.lipread import lipread
    from avedge.runtime.vision import roi, track

    clips = {}
    for k, w in enumerate(windows):
        assert w["lead"] == 0  # an eval window is the whole utterance, padded after it
        clips[f"item{k}.mp4"] = w["video"][: w["frames"]]
    monkeypatch.setattr(video_io, "read_video", lambda path, fps, audio_rate:
                        SimpleNamespace(frames=clips[path], audio=None))
    monkeypatch.setattr(track, "track_mouth", lambda frames:
                        SimpleNamespace(interpolated=[], finder="cached ROIs"))
    monkeypatch.setattr(roi, "crop_rois", lambda frames, tr: frames)
    out = []
    for name, frames in clips.items():
        r = lipread(artifact, name, use_audio=False, rate=1, backend="onnxruntime")
        assert r["modality"] == "video" and r["frames"] == len(frames)
        out.append(r["text"])
    return out


@pytest.mark.slow
def test_lipreader_sweep_wer_equals_the_task_on_the_saved_artifact(tmp_path, lip_bank,
                                                                    lip_weights, monkeypatch,
                                                                    capsys):
    import jiwer
    from avedge.models.lipreader import evaluate

    monkeypatch.setenv("AVEDGE_VOICEBANK", str(lip_bank))  # trial processes inherit it
    out = tmp_path / "sweep"
    assert main(["sweep", "lipreader", "--recipes", "fp32,int8", "--targets", "cpu",
                 "--backends", "onnxruntime", "--eval", "2", "--weights", lip_weights,
                 "--runs", "5", "--warmup", "1", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    trials = {t["recipe"]: t for t in summary["trials"]}
    assert summary["counts"]["ok"] == 2, summary["trials"]

    windows, _ = evaluate.eval_items(2, lip_bank)
    refs = [" ".join(w["words"]) for w in windows]
    for t in trials.values():
        metric = t["metric"]
        assert metric["name"] == "wer" and metric["higher_is_better"] is False
        assert metric["n"] == 2 and metric["eval_set"]["bank"] == str(lip_bank)
        # Latency and size are of the graph the WER is of; the other rates are kept.
        assert metric["component"] == t["measured_graph"] == "rate1"
        assert set(t["component_latency"]) == set(t["component_size_bytes"]) == \
            {"rate1", "rate2", "rate4"}
        assert t["latency_median_ms"] == t["component_latency"]["rate1"]["median_ms"]
        assert t["latency_p90_ms"] == t["component_latency"]["rate1"]["p90_ms"]
        assert t["size_bytes"] == t["component_size_bytes"]["rate1"]
        assert 3 * t["size_bytes"] < 1.1 * t["artifact_bytes"]  # three graphs in the folder
        # fp32 and int8 change no eager module (int8 is the lowering's): no deviation.
        assert t["recipe_deviation"] is None
        assert t["component_recipe_deviation"] == {"rate1": None, "rate2": None, "rate4": None}

        # Independent re-evaluation of the saved artifact, in this process.
        again = evaluate.measure(t["artifact"], n=2, backend="onnxruntime")
        assert again["value"] == metric["value"] and again["eval_set"] == metric["eval_set"]
        # ... and the user-facing task on the same items, scored by jiwer directly.
        hyps = read_with_the_task(t["artifact"], windows, monkeypatch)
        assert any(hyps), "the tiny model read no word at all: the check would be vacuous"
        assert round(100 * jiwer.wer(refs, hyps), 2) == metric["value"]

    # The front with lower WER better: exactly the points no other point dominates.
    ok = [t for t in summary["trials"] if t["status"] == "ok"]
    assert set(summary["pareto_front"]) == {t["trial_id"] for t in ok
                                            if not dominated(t, ok)}


def test_pareto_front_takes_lower_wer_as_better():
    from avedge.sweep import pareto

    def trial(name, ms, wer):
        return {"trial_id": name, "status": "ok", "recipe": name, "target": "cpu",
                "backend": "onnxruntime", "latency_median_ms": ms, "size_bytes": 1000,
                "metric": {"name": "wer", "value": wer, "higher_is_better": False}}

    results = [trial("fp32", 10.0, 20.0), trial("int8", 5.0, 22.0),
               trial("prune", 7.0, 30.0),  # slower and worse than int8: off the front
               trial("lowrank", 12.0, 18.0), trial("slow-bad", 15.0, 25.0)]
    ax = pareto.axes(results)
    assert ax["name"] == "wer" and ax["higher_is_better"] is False
    png, on_front = pareto.plot_png(results, "lip reader")
    assert on_front == ["int8", "fp32", "lowrank"]  # fastest first, each one less wrong
    assert set(on_front) == {t["trial_id"] for t in results if not dominated(t, results)}
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # The flag is what decides: read as higher-is-better the same points give another front.
    flipped = [{**t, "metric": {**t["metric"], "higher_is_better": True}} for t in results]
    assert pareto.plot_png(flipped, "x")[1] == ["int8", "prune"]


def test_static_int8_calibrates_on_the_train_split(lip_bank, lip_weights, monkeypatch):
    from avedge.models.lipreader import FAMILY, calibration
    from avedge.models.lipreader import model as lr
    from avedge.models.registry import TargetFacts
    from avedge.quantize.calibration import calibration_set

    facts = TargetFacts("cpu", "fp32", None, False)
    module = lr.load_weights(lip_weights)
    monkeypatch.setenv("AVEDGE_VOICEBANK", str(lip_bank))
    comps = FAMILY.export_plan(module, facts)
    batches, prov = calibration_set(comps[0].module, comps[0].example_inputs, 16)
    assert prov["split"] == "train" and prov["source"] == "AtRate.calibration_inputs()"
    index = json.loads((lip_bank / "lipreader-cache" / "train" / "index.json").read_text())
    fits = [u for u in index["utterances"] if u["frames"] <= lr.WINDOW]
    assert len(batches) == prov["windows"] == min(calibration.N_WINDOWS, len(fits)) > 0
    for b in batches:  # shaped as the graph's example inputs, real (normalised) ROIs
        assert [x.shape for x in b] == [x.shape for x in comps[0].example_inputs]
        assert -3 < float(b[0].min()) and float(b[0].max()) < 3
    with torch.no_grad():
        assert torch.isfinite(comps[0].module(*batches[0])).all()
    # Without a cache: no calibration inputs, so quantization uses perturbed examples
    # and says so in its provenance.
    monkeypatch.setenv("AVEDGE_VOICEBANK", str(lip_bank / "nowhere"))
    bare = FAMILY.export_plan(module, facts)[0]
    assert not hasattr(bare.module, "calibration_inputs")
    assert calibration_set(bare.module, bare.example_inputs, 2)[1]["source"] == \
        "perturbed example inputs"
