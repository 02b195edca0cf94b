"""avedge.api: Python and the CLI write the same artifact; `avedge targets --family` says
what an export holds; the family metric is measured at export and recorded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from avedge.runtime.errors import AvedgeError, UnknownNameError

import avedge
from avedge.api import plan
from avedge.cli import main


def artifact_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def assert_same_artifact(a: Path, b: Path) -> None:
    """Equal file by file; manifests equal but for when they were written."""
    fa, fb = artifact_files(a), artifact_files(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        if Path(name).name == "manifest.json":
            ma, mb = json.loads(fa[name]), json.loads(fb[name])
            ma.pop("created"), mb.pop("created")
            if "files" in ma:  # a pipeline's record of its components' manifests: their
                for m in (ma, mb):  # hashes differ by "created" alone (checked above)
                    for f, rec in m["files"].items():
                        if f.endswith("manifest.json"):
                            rec.pop("sha256", None), rec.pop("bytes", None)
            assert ma == mb, name
        else:
            assert fa[name] == fb[name], name


def targets_family(capsys, family: str, *args: str) -> dict[str, dict]:
    capsys.readouterr()
    assert main(["targets", "--family", family, "--json", *args]) == 0
    return {p["target"]: p for p in json.loads(capsys.readouterr().out)}


# ------------------------------------------------------------------ tiny-stream, one graph

def test_python_and_cli_write_the_same_tiny_stream_artifact(tmp_path):
    py = avedge.export("tiny-stream", target="cpu", out=tmp_path / "py")
    assert main(["export", "tiny-stream", "--target", "cpu", "--out", str(tmp_path / "cli")]) == 0
    assert_same_artifact(py.path, tmp_path / "cli")
    assert py.manifest["metric"] is None  # tiny-stream has no metric


@pytest.mark.slow
def test_target_export_of_a_module_and_avedge_export_agree_with_targets_listing(tmp_path,
                                                                                 capsys):
    from avedge.models.tiny_stream import build, example_inputs
    from avedge.targets import get_target

    said = targets_family(capsys, "tiny-stream")["hearable"]
    (comp,) = said["components"]
    module = build()
    direct = get_target("hearable").export(module, example_inputs(module), tmp_path / "d")
    api = avedge.export("tiny-stream", "hearable", tmp_path / "a")
    for m in (direct.manifest, api.manifest):
        assert (m["recipe"], m["recipe_source"], m["target"]) == (
            comp["recipe"], comp["recipe_source"], comp["target"]) == ("int8-static",
                                                                       "target", "hearable")
    assert api.manifest["files"] == direct.manifest["files"]  # same graph, same bytes


# ------------------------------------------------- speech extractor, the composite artifact

@pytest.mark.slow
def test_python_and_cli_write_the_same_hearable_speech_extractor(tmp_path, tiny_weights,
                                                                  val_bank, monkeypatch,
                                                                  capsys):
    monkeypatch.setenv("AVEDGE_VOICEBANK", str(val_bank))
    py = avedge.export("speech-extractor", target="hearable", out=tmp_path / "py",
                       weights=tiny_weights)
    assert main(["export", "speech-extractor", "--target", "hearable", "--out",
                 str(tmp_path / "cli"), "--weights", tiny_weights]) == 0
    assert_same_artifact(py.path, tmp_path / "cli")

    # The family metric, measured through the runtime on 4 val mixtures, and recorded.
    metric = py.manifest["metric"]
    assert metric["name"] == "si_sdri_db" and metric["n"] == 4
    assert np.isfinite(metric["value"]) and metric["backend"]
    assert metric["eval_set"]["split"] == "val" and metric["eval_set"]["bank"] == str(val_bank)
    on_disk = json.loads((tmp_path / "cli" / "manifest.json").read_text())["metric"]
    assert on_disk == metric

    # What `avedge targets --family` says for the hearable is what the artifact holds.
    listing = targets_family(capsys, "speech-extractor", "--weights", tiny_weights)
    # These weights deep-filter; the NPU form an NPU board runs refuses them, as export would.
    assert "plain complex mask" in listing["hearable-npu"]["refused"]
    said = listing["hearable"]
    assert said["weights"] == "tiny.safetensors" == py.manifest["extra"]["weights"]
    held = {n: (c["recipe"], c["recipe_source"], c["target"])
            for n, c in py.manifest["components"].items()}
    assert held == {c["name"]: (c["recipe"], c["recipe_source"], c["target"])
                    for c in said["components"]}
    assert held["extractor"] == ("int8", "family", "hearable")


def test_metric_is_null_with_a_reason_where_there_is_no_voice_bank(tmp_path, monkeypatch):
    from avedge.models.registry import get_family

    monkeypatch.setenv("AVEDGE_VOICEBANK", str(tmp_path / "no-bank"))
    m = get_family("speech-extractor").measure(tmp_path)  # returns before loading anything
    assert m["value"] is None and m["n"] == 0
    assert "no voice bank at" in m["reason"] and "AVEDGE_VOICEBANK" in m["reason"]


def test_metric_is_null_with_a_reason_where_the_artifact_cannot_load_here(tmp_path, val_bank):
    from avedge.models.speech_extractor.evaluate import measure

    (tmp_path / "manifest.json").write_text("{}")  # not an artifact this runtime can load
    m = measure(tmp_path, bank_dir=val_bank)
    assert m["value"] is None and m["reason"]


def test_family_eval_sets_are_named_on_the_spec(val_bank):
    from avedge.models.registry import get_family
    from avedge.models.speech_extractor import evaluate

    fam = get_family("speech-extractor")
    assert fam.eval_sets == tuple(evaluate.EVAL_SETS) and fam.metric == evaluate.METRIC
    exs = fam.eval_set("val", 2, val_bank)
    assert len(exs) == 2 and {"mixture", "target", "enrollment"} <= set(exs[0])
    with pytest.raises(UnknownNameError, match="heldout_voices"):
        fam.eval_set("nope", 1, val_bank)


# ------------------------------------------------------------------------- plan, no lowering

def test_plan_decides_without_lowering_and_names_the_weights(tiny_weights):
    p = plan("speech-extractor", "hearable", weights=tiny_weights)
    d = p.describe()
    assert d["kind"] == "pipeline" and d["weights"] == "tiny.safetensors"
    assert d["weights_source"] == "user"
    assert [(c["name"], c["recipe"], c["recipe_source"]) for c in d["components"]] == [
        ("speaker_encoder", "fp32", "family"), ("extractor", "int8", "family")]
    user = plan("speech-extractor", "hearable", recipe="fp16", weights=tiny_weights)
    # the user's recipe reaches the per-chunk graph; the run-once encoder keeps the family's
    assert [c["recipe_source"] for c in user.describe()["components"]] == ["family", "user"]


def test_plan_sends_the_npu_encoder_to_the_phone_and_keeps_the_precision_override():
    p = plan("speech-extractor", "hearable-npu", npu_precision="a16w8")
    assert p.target.precision == "a16w8"
    comps = {c.name: (c.target, src) for c, src in p.components}
    assert comps == {"speaker_encoder": ("cpu", "target"),
                     "extractor": ("hearable-npu", "target")}
    assert p.describe()["weights_source"] in ("family", "default")


def test_plan_is_reproducible_and_leaves_the_callers_random_state(tiny_weights):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = plan("speech-extractor", "cpu", weights=tiny_weights)
    assert torch.equal(torch.rand(1), before)  # fork_rng: the caller's stream untouched
    b = plan("speech-extractor", "cpu", weights=tiny_weights)
    for (ca, _), (cb, _) in zip(a.components, b.components):
        assert all(torch.equal(x, y) for x, y in zip(ca.example_inputs, cb.example_inputs))


def test_weights_for_a_module_passed_in_are_refused(tmp_path):
    from avedge.models.tiny_stream import build, example_inputs

    m = build()
    with pytest.raises(AvedgeError, match="carries its own"):
        plan(m, "cpu", weights=str(tmp_path / "w.safetensors"), example_inputs=example_inputs(m))


def test_targets_family_refuses_a_recipe_without_a_family(capsys):
    assert main(["targets", "--recipe", "int8"]) != 0
    assert "--recipe and --weights go with --family NAME" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- metrics

def test_torch_and_runtime_si_sdr_agree():
    from avedge.models.common.metrics import si_sdr, si_sdri
    from avedge.runtime.pipelines.extraction import si_sdr_db

    rng = np.random.default_rng(0)
    ref = rng.standard_normal(4000).astype(np.float32)
    est = (0.7 * ref + 0.3 * rng.standard_normal(4000)).astype(np.float32)
    mix = (ref + rng.standard_normal(4000)).astype(np.float32)
    got = float(si_sdr(torch.from_numpy(est), torch.from_numpy(ref)))
    assert got == pytest.approx(si_sdr_db(est, ref), abs=1e-3)
    gain = float(si_sdri(*(torch.from_numpy(x) for x in (est, ref, mix))))
    assert gain == pytest.approx(si_sdr_db(est, ref) - si_sdr_db(mix, ref), abs=1e-3)
    assert float(si_sdr(torch.from_numpy(ref) * 3, torch.from_numpy(ref))) > 60  # scale-free
