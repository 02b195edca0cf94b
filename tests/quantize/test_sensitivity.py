"""Per-layer sensitivity and the mixed-precision recipe that keeps the worst layers fp32."""

from pathlib import Path

import pytest
import torch
from avedge.quantize.sensitivity import (
    int8_fake_quant,
    output_error_score,
    quantizable_layers,
    sensitivity,
)
from avedge.runtime.errors import AvedgeError


class Fragile(torch.nn.Module):
    """Three Linear layers; `fragile` has one huge weight per output row, so one int8 scale
    per row leaves its other weights at zero: int8 breaks it, and only it."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.inp, self.fragile, self.out = (torch.nn.Linear(32, 32) for _ in range(3))
        with torch.no_grad():
            for lin in (self.inp, self.fragile, self.out):
                lin.weight.copy_(torch.randn(32, 32, generator=g) / 6)
            self.fragile.weight[:, 0] = 40.0  # input 0 is near zero below: harmless in float

    def forward(self, x):  # (1, T, 32)
        h = torch.relu(self.inp(x))
        h = h * torch.cat([torch.full_like(h[..., :1], 1e-3), torch.ones_like(h[..., 1:])], -1)
        return self.out(torch.relu(self.fragile(h)))


@pytest.fixture(scope="module")
def fragile():
    x = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(1))
    return Fragile().eval(), (x,)


def test_sensitivity_ranks_the_fragile_layer_first_and_restores_the_model(fragile):
    model, (x,) = fragile
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ref = model(x).detach()

    def snr_db(m):  # a synthetic task metric: output SNR against the float model, dB
        err = (m(x) - ref).pow(2).mean()
        return float(10 * torch.log10(ref.pow(2).mean() / err.clamp(min=1e-20)))

    rows = sensitivity(model, snr_db)
    assert rows[0]["layer"] == "fragile"
    assert rows[0]["drop"] > rows[1]["drop"] + 10  # dB: clearly apart, not a tie
    assert {r["layer"] for r in rows} == {"inp", "fragile", "out"}
    assert all(r["kind"] == "Linear" and r["score"] < 200 for r in rows)  # each moved the output
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(model(x), ref)  # no hook left behind


def test_output_error_ranking_agrees_and_fake_quant_is_int8(fragile):
    model, (x,) = fragile
    rows = sensitivity(model, output_error_score(model, [(x,)]))
    assert rows[0]["layer"] == "fragile" and rows[-1]["drop"] > 0
    with int8_fake_quant(model, "inp"):
        w = model.inp.weight
        scale = w.abs().amax(1, keepdim=True) / 127
        assert torch.allclose(w / scale, torch.round(w / scale), atol=1e-3)  # on the grid
    with (pytest.raises(AvedgeError, match=r"'nope' is not a Linear/Conv layer.*inp, fragile"),
          int8_fake_quant(model, "nope")):
        pass
    assert quantizable_layers(model) == ["inp", "fragile", "out"]


@pytest.mark.slow
def test_mixed_precision_keeps_the_most_sensitive_layer_float(tmp_path, fragile):
    from avedge.targets import get_target

    model, example = fragile
    plain = get_target("cpu").export(model, example, tmp_path / "int8", recipe="int8")
    keep = get_target("cpu").export(model, example, tmp_path / "keep1", recipe="int8-keep-1")
    m = keep.manifest
    for fmt in ("pte", "onnx"):
        q = m["quantization"][fmt]
        assert q["kept_float"] == ["fragile"], q
        assert q["sensitivity"]["layers"][0]["layer"] == "fragile"
        assert (q["int8_compute_ops"], q["float_compute_ops"]) == (2, 1)
        assert plain.manifest["quantization"][fmt]["int8_compute_ops"] == 3
        # Keeping it float repairs what int8 broke, measured in the real runtime.
        assert m["parity"][fmt]["rel_err"] < 0.5 * plain.manifest["parity"][fmt]["rel_err"]
    assert m["recipe_configs"][1] == {"type": "KeepFloatConfig", "layers": [], "top": 1}


def test_a_layer_name_that_is_not_in_the_model_is_refused(tmp_path, monkeypatch, fragile):
    from avedge.quantize import recipes
    from avedge.quantize.configs import Int8DynamicConfig, KeepFloatConfig
    from avedge.targets import get_target

    monkeypatch.setitem(recipes.RECIPES, "keep-x",
                        (Int8DynamicConfig(), KeepFloatConfig(layers=("blocks.9",))))
    with pytest.raises(AvedgeError, match=r"KeepFloatConfig names blocks.9.*inp, fragile, out"):
        get_target("cpu").export(*fragile, tmp_path / "x", recipe="keep-x")
    with pytest.raises(AvedgeError, match=r"top=4\) keeps more layers than Fragile has \(3\)"):
        get_target("cpu").export(*fragile, tmp_path / "y", recipe="int8-keep-4")
    assert not any(tmp_path.iterdir())


def test_family_score_needs_a_metric():
    from avedge.models.registry import get_family
    from avedge.quantize.sensitivity import family_score

    with pytest.raises(AvedgeError, match="tiny-stream.*has no score_module"):
        family_score(get_family("tiny-stream"), 2)


@pytest.mark.slow
def test_speech_extractor_eager_score_matches_the_artifact_metric(tmp_path, monkeypatch):
    """score_module (eager, used by sensitivity) and measure (the exported artifact through
    the runtime) score the same val mixtures: on an fp32 export they agree."""
    from avedge.models.corpus import voicebank
    from avedge.models.corpus.voices import small_bank_voices
    from avedge.models.registry import get_family
    from avedge.models.speech_extractor import model as se

    import avedge

    bank = tmp_path / "bank"
    voicebank.build_bank(bank, voices=small_bank_voices({"val": 2}), n_per_voice={"espeak": 2},
                         seed=0)
    monkeypatch.setenv("AVEDGE_VOICEBANK", str(bank))
    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    se.save_weights(se.Extractor(se.Dims(d_model=16, d_hidden=32, n_blocks=2)), weights)
    art = avedge.export("speech-extractor", "cpu", tmp_path / "a", recipe="fp32",
                        weights=str(weights))
    fam = get_family("speech-extractor")
    eager = fam.score_module(se.load_weights(weights), art.manifest["metric"]["n"])
    assert eager["backend"] == "eager" and eager["eval_set"]["seed"] == art.manifest[
        "metric"]["eval_set"]["seed"]
    assert eager["value"] == pytest.approx(art.manifest["metric"]["value"], abs=0.02)


def test_static_ranges_and_lower_is_better_metrics(fragile):
    from avedge.quantize.sensitivity import activation_ranges

    model, (x,) = fragile
    ref = model(x).detach()
    ranges = activation_ranges(model, [(x,)], ["inp", "fragile", "out"])
    lo, hi = ranges["inp"]["input"]
    assert lo == pytest.approx(float(x.min())) and hi == pytest.approx(float(x.max()))

    def err(m):  # lower is better, like WER
        return float((m(x) - ref).abs().mean())

    rows = sensitivity(model, err, higher_is_better=False, ranges=ranges)
    assert rows[0]["layer"] == "fragile" and all(r["drop"] > 0 for r in rows)
    assert {r["params"] for r in rows} == {32 * 32 + 32}
    with int8_fake_quant(model, "out", ranges["out"]):  # output clamped to its range too
        assert not torch.equal(model(x), ref)
    assert torch.equal(model(x), ref)


@pytest.fixture(scope="module")
def table(tmp_path_factory, tiny_weights, val_bank):
    """`avedge sensitivity` on the tiny extractor, 2 val mixtures: (path, table dict)."""
    import json

    from avedge.cli import main

    out = tmp_path_factory.mktemp("sens") / "table.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AVEDGE_VOICEBANK", str(val_bank))
        assert main(["sensitivity", "speech-extractor", "--weights", tiny_weights,
                     "--eval", "2", "--out", str(out)]) == 0
    return out, json.loads(out.read_text())


def test_sensitivity_command_scores_each_layer_with_the_task_metric(table, tiny_weights,
                                                                     val_bank, monkeypatch):
    import hashlib

    from avedge.models.speech_extractor import model as se
    from avedge.models.speech_extractor.evaluate import score_module
    from avedge.quantize.sensitivity import fingerprint

    _, t = table
    assert (t["family"], t["graph"], t["recipe"]) == ("speech-extractor", "extractor", "int8")
    assert t["weights_sha256"] == hashlib.sha256(Path(tiny_weights).read_bytes()).hexdigest()
    module = se.load_weights(tiny_weights)
    assert t["module_sha256"] == fingerprint(module)
    # Only the per-chunk graph's Linear layers: not the run-once speaker encoder's.
    assert [r["layer"] for r in t["layers"]] != [] and all(
        r["kind"] == "Linear" and not r["layer"].startswith("speaker") for r in t["layers"])
    assert len(t["layers"]) == 3 + 2 * 2  # in_proj, film, out_proj, fc1/fc2 per block
    drops = [r["drop"] for r in t["layers"]]
    assert drops == sorted(drops, reverse=True)
    m = t["metric"]
    assert (m["name"], m["n"], m["eval_set"]["name"]) == ("si_sdri_db", 2, "val")
    # Each row is the metric of the eager model with that one layer in int8: re-measured.
    monkeypatch.setenv("AVEDGE_VOICEBANK", str(val_bank))
    assert m["float"] == score_module(module, 2)["value"]
    top = t["layers"][0]
    with int8_fake_quant(module, top["layer"]):
        assert score_module(module, 2)["value"] == top["score"]
    assert top["drop"] == pytest.approx(m["float"] - top["score"])


def test_sensitivity_command_refuses_bad_input_in_one_line(capsys, tmp_path):
    from avedge.cli import main

    assert main(["sensitivity", "tiny-stream"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'tiny-stream' has no task metric" in err and "speech-extractor" in err
    assert len(err.splitlines()) == 1
    assert main(["sensitivity", "speech-extractor", "--recipe", "int4"]) == 2
    assert "--recipe 'int4' is not one of int8, int8-static" in capsys.readouterr().err
    assert main(["sensitivity", "speech-extractor", "--eval", "0"]) == 2
    assert "--eval must be an integer >= 1" in capsys.readouterr().err
    bank = tmp_path / "nobank"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AVEDGE_VOICEBANK", str(bank))
        assert main(["sensitivity", "speech-extractor", "--out", str(tmp_path / "t.json")]) == 2
    assert f"no voice bank at {bank}" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


def test_keep_k_at_table_keeps_the_tables_top_layers_and_checks_provenance(table, tiny_weights,
                                                                          tmp_path):
    import json

    from avedge.models.speech_extractor import model as se
    from avedge.quantize import get_recipe
    from avedge.quantize.mixed_precision import KeepFloatByMetricConfig

    from avedge.sweep.plan import Sweep, trial_id, validate

    path, t = table
    recipe = get_recipe(f"int8-keep-2@{path}")
    keep = recipe.find(KeepFloatByMetricConfig)
    assert keep.layers == tuple(r["layer"] for r in t["layers"][:2])
    assert keep.drops == tuple(round(r["drop"], 4) for r in t["layers"][:2])
    assert "si_sdri_db drop" in keep.ranked_by and "2 val items" in keep.ranked_by
    keep.check_module(se.load_weights(tiny_weights))  # the weights it was measured on
    torch.manual_seed(7)
    other = se.Extractor(se.Dims(d_model=16, d_hidden=32, n_blocks=2))
    with pytest.raises(AvedgeError, match=r"measured on speech-extractor weights "
                                          r"tiny.safetensors.*other weights"):
        keep.check_module(other)
    with pytest.raises(AvedgeError, match=r"ranks layers under 'int8'.*--recipe int8-static"):
        get_recipe(f"int8-static-keep-1@{path}")
    with pytest.raises(AvedgeError, match=r"keep 8 layers: .* ranks 7"):
        get_recipe(f"int8-keep-8@{path}")
    with pytest.raises(AvedgeError, match=r"'nope.json' does not exist .*avedge sensitivity"):
        get_recipe("int8-keep-1@nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**t, "format": "x"}))
    with pytest.raises(AvedgeError, match="is not a sensitivity table"):
        get_recipe(f"int8-keep-1@{bad}")
    # A sweep takes it in --recipes, sweepable by K; a missing table stops it before writing.
    sweep = validate(Sweep("speech-extractor", [f"int8-keep-1@{path}", f"int8-keep-2@{path}"],
                           ["cpu"], weights=tiny_weights))
    assert len({trial_id(r, "cpu", "executorch") for r in sweep.recipes}) == 2
    with pytest.raises(AvedgeError, match="does not exist"):
        validate(Sweep("speech-extractor", ["int8-keep-1@missing.json"], ["cpu"]))


@pytest.mark.slow
def test_export_keeps_the_tables_layers_and_records_why(table, tiny_weights, tmp_path):
    import dataclasses

    from avedge.targets import get_target

    import avedge

    path, t = table
    cpu = dataclasses.replace(get_target("cpu"), backends=("executorch",))  # the .pte only
    art = avedge.export("speech-extractor", cpu, tmp_path / "a", recipe=f"int8-keep-1@{path}",
                        weights=tiny_weights, measure=False)
    import json

    m = json.loads((art.path / "extractor" / "manifest.json").read_text())
    keep = m["recipe_configs"][1]
    assert keep["type"] == "KeepFloatByMetricConfig" and keep["layers"] == [t["layers"][0]["layer"]]
    assert keep["module_sha256"] == t["module_sha256"] and keep["ranked_by"].startswith("si_sdri")
    assert m["quantization"]["pte"]["kept_float"] == keep["layers"]
    torch.manual_seed(7)
    from avedge.models.speech_extractor import model as se

    other = tmp_path / "other.safetensors"
    se.save_weights(se.Extractor(se.Dims(d_model=16, d_hidden=32, n_blocks=2)), other)
    with pytest.raises(AvedgeError, match="other weights"):
        avedge.export("speech-extractor", cpu, tmp_path / "b", recipe=f"int8-keep-1@{path}",
                      weights=str(other), measure=False)
    assert not (tmp_path / "b").exists()
